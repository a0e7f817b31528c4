//! Channel adapters: how a rendered message reaches its recipient. Email goes over SMTP
//! ([`smtp`], lettre); SMS, push and Viber go to a provider's HTTP API ([`http`]); `loyalty dev`
//! writes everything to a file ([`file`]). All sit behind one trait, so the sending pipeline
//! does not care which one a channel uses.
pub mod file;
pub mod http;
pub mod smtp;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, sync::Arc};

use loyalty_platform::config::DeliverySettings;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::Channel;

/// One message, rendered, for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outgoing {
    /// Our id of the message; providers get it as an idempotency key, so a message sent
    /// again after a crash is not delivered twice.
    pub message_id: Uuid,
    pub channel: Channel,
    /// Email address, phone number (E.164), push token or Viber user id.
    pub to: String,
    pub sender_name: String,
    pub sender_address: String,
    pub subject: String,
    /// HTML for email, plain text otherwise.
    pub body: String,
    /// Email only: the plain-text alternative; empty = HTML only.
    pub text_body: String,
    pub link_url: String,
}

/// Why a message was not handed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later: the provider was unreachable, slow or overloaded (network
    /// errors, HTTP 408/429/5xx, SMTP 4xx).
    #[error("temporary failure: {0}")]
    Transient(String),
    /// Never deliverable as it is: the provider refused the recipient or the message (HTTP
    /// 4xx, SMTP 5xx, a malformed address).
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Hands messages of one channel to a provider.
#[async_trait::async_trait]
pub trait ChannelAdapter: Send + Sync {
    /// Sends `m`; answers the provider's id of the message.
    async fn send(&self, m: &Outgoing) -> Result<String, SendError>;

    /// Sends a batch, answering in its order; by default `concurrency` at a time.
    async fn send_batch(
        &self,
        batch: &[Outgoing],
        concurrency: usize,
    ) -> Vec<Result<String, SendError>> {
        use futures::StreamExt;
        let sends: Vec<_> = batch.iter().map(|m| self.send(m)).collect();
        futures::stream::iter(sends)
            .buffered(concurrency.max(1))
            .collect()
            .await
    }
}

/// The adapter of each configured channel.
#[derive(Clone, Default)]
pub struct Adapters {
    by_channel: HashMap<Channel, Arc<dyn ChannelAdapter>>,
}

impl Adapters {
    /// The adapters `settings` configure: every channel to the file when `file_path` is set,
    /// else SMTP for email and an HTTP provider per other channel, where configured.
    pub fn from_settings(settings: &DeliverySettings) -> anyhow::Result<Self> {
        let mut by_channel: HashMap<Channel, Arc<dyn ChannelAdapter>> = HashMap::new();
        if let Some(path) = &settings.file_path {
            let file: Arc<dyn ChannelAdapter> = Arc::new(file::FileAdapter::new(path.into()));
            for c in [Channel::Email, Channel::Sms, Channel::Push, Channel::Viber] {
                by_channel.insert(c, file.clone());
            }
            return Ok(Adapters { by_channel });
        }
        if let Some(smtp) = &settings.smtp {
            by_channel.insert(Channel::Email, Arc::new(smtp::SmtpAdapter::new(smtp)?));
        }
        for (channel, provider) in [
            (Channel::Sms, &settings.sms),
            (Channel::Push, &settings.push),
            (Channel::Viber, &settings.viber),
        ] {
            if let Some(p) = provider {
                by_channel.insert(channel, Arc::new(http::HttpAdapter::new(p)?));
            }
        }
        Ok(Adapters { by_channel })
    }

    /// The adapter of `channel`, if one is configured.
    pub fn get(&self, channel: Channel) -> Option<Arc<dyn ChannelAdapter>> {
        self.by_channel.get(&channel).cloned()
    }

    /// The channels that can be sent.
    pub fn channels(&self) -> Vec<Channel> {
        let mut out: Vec<Channel> = self.by_channel.keys().copied().collect();
        out.sort_by_key(|c| c.as_str());
        out
    }
}

/// The secret unsubscribe links are signed with: `delivery.link_secret`, else the platform
/// key; `None` when neither is set (no links can be made or checked).
pub fn link_secret(settings: &loyalty_platform::Settings) -> Option<Vec<u8>> {
    use secrecy::ExposeSecret;
    settings
        .delivery
        .link_secret
        .as_ref()
        .or(settings.auth.bootstrap_key.as_ref())
        .map(|k| k.expose_secret().as_bytes().to_vec())
}
