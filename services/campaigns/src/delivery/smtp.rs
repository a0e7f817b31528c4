//! Email over SMTP (lettre): an HTML body, with its plain-text alternative as
//! `multipart/alternative` when the template has one, and our message id as the `Message-ID`.
//! SMTP 5xx answers and malformed addresses are rejections; 4xx answers and connection
//! problems are temporary.
use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, SinglePart, header::ContentType},
    transport::smtp::authentication::Credentials,
};
use loyalty_platform::config::SmtpSettings;
use secrecy::ExposeSecret;

use super::{ChannelAdapter, Outgoing, SendError};

pub struct SmtpAdapter {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from_address: String,
    from_name: String,
}

impl SmtpAdapter {
    pub fn new(s: &SmtpSettings) -> anyhow::Result<Self> {
        let builder = match s.tls.as_str() {
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)?,
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)?,
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
            other => {
                anyhow::bail!("delivery.smtp.tls must be starttls, tls or none, not {other:?}")
            }
        };
        let mut builder = builder
            .port(s.port)
            .timeout(Some(Duration::from_millis(s.timeout_ms.max(1))));
        if let (Some(user), Some(password)) = (&s.username, &s.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(SmtpAdapter {
            transport: builder.build(),
            from_address: s.from_address.clone(),
            from_name: s.from_name.clone(),
        })
    }

    fn message(&self, m: &Outgoing) -> Result<Message, SendError> {
        let address = if m.sender_address.is_empty() {
            &self.from_address
        } else {
            &m.sender_address
        };
        let name = if m.sender_name.is_empty() {
            &self.from_name
        } else {
            &m.sender_name
        };
        let from = Mailbox::new(
            (!name.is_empty()).then(|| name.clone()),
            address
                .parse()
                .map_err(|e| SendError::Rejected(format!("sender {address:?}: {e}")))?,
        );
        let to: Mailbox =
            m.to.parse()
                .map_err(|e| SendError::Rejected(format!("recipient {:?}: {e}", m.to)))?;
        let builder = Message::builder()
            .from(from)
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(format!("<{}@loyalty>", m.message_id)));
        let html = SinglePart::builder()
            .header(ContentType::TEXT_HTML)
            .body(m.body.clone());
        let built = if m.text_body.is_empty() {
            builder.singlepart(html)
        } else {
            builder.multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(m.text_body.clone()),
                    )
                    .singlepart(html),
            )
        };
        built.map_err(|e| SendError::Rejected(format!("not a valid email: {e}")))
    }
}

#[async_trait::async_trait]
impl ChannelAdapter for SmtpAdapter {
    async fn send(&self, m: &Outgoing) -> Result<String, SendError> {
        let message = self.message(m)?;
        match self.transport.send(message).await {
            Ok(response) => Ok(response
                .message()
                .next()
                .map_or_else(|| m.message_id.to_string(), str::to_owned)),
            Err(e) if e.is_permanent() => Err(SendError::Rejected(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }
}
