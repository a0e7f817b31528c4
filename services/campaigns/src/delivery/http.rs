//! SMS, push and Viber through a provider's HTTP API: one JSON `POST` per message to the
//! configured endpoint, with the provider's token and our message id as the idempotency key.
//! 2xx is accepted (the provider's id read from `{"id": ...}` when it answers one); 408, 429
//! and 5xx are temporary; any other answer is a rejection.
use std::time::Duration;

use loyalty_platform::config::HttpProviderSettings;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{ChannelAdapter, Outgoing, SendError};

pub struct HttpAdapter {
    client: reqwest::Client,
    endpoint: String,
    token: Option<String>,
}

/// What is posted.
#[derive(Serialize)]
struct Body<'a> {
    message_id: String,
    channel: &'a str,
    to: &'a str,
    sender: &'a str,
    subject: &'a str,
    text: &'a str,
    link_url: &'a str,
}

#[derive(Deserialize)]
struct Accepted {
    id: Option<String>,
}

impl HttpAdapter {
    pub fn new(settings: &HttpProviderSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms.max(1)))
            .build()?;
        Ok(HttpAdapter {
            client,
            endpoint: settings.endpoint.clone(),
            token: settings
                .token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
        })
    }
}

/// How an HTTP status is taken.
fn classify(status: StatusCode) -> Option<bool> {
    match status {
        s if s.is_success() => None,
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => Some(true),
        s if s.is_server_error() => Some(true),
        _ => Some(false),
    }
}

#[async_trait::async_trait]
impl ChannelAdapter for HttpAdapter {
    async fn send(&self, m: &Outgoing) -> Result<String, SendError> {
        let body = Body {
            message_id: m.message_id.to_string(),
            channel: m.channel.as_str(),
            to: &m.to,
            sender: &m.sender_name,
            subject: &m.subject,
            text: &m.body,
            link_url: &m.link_url,
        };
        let mut request = self
            .client
            .post(&self.endpoint)
            .header("idempotency-key", m.message_id.to_string())
            .json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("{}: {e}", self.endpoint)))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match classify(status) {
            None => Ok(serde_json::from_str::<Accepted>(&text)
                .ok()
                .and_then(|a| a.id)
                .unwrap_or_else(|| m.message_id.to_string())),
            Some(transient) => {
                let why = format!("{status}: {}", text.chars().take(500).collect::<String>());
                Err(if transient {
                    SendError::Transient(why)
                } else {
                    SendError::Rejected(why)
                })
            }
        }
    }
}
