//! The adapters against real local servers: an SMTP server (mailin-embedded) and an HTTP
//! server (axum), each on a free port; and the file adapter on a temporary file.
use std::{
    net::{IpAddr, TcpListener},
    sync::{Arc, Mutex},
};

use axum::{Json, Router, http::HeaderMap, http::StatusCode, routing::post};
use loyalty_platform::config::{DeliverySettings, HttpProviderSettings, SmtpSettings};
use mailin_embedded::{Handler, Response, Server, SslConfig, response};
use uuid::Uuid;

use super::{Adapters, ChannelAdapter, Outgoing, SendError};
use crate::domain::Channel;

fn message(channel: Channel, to: &str) -> Outgoing {
    Outgoing {
        message_id: Uuid::now_v7(),
        channel,
        to: to.into(),
        sender_name: String::new(),
        sender_address: String::new(),
        subject: "Spring is here".into(),
        body: "<p>Hi Jana</p>".into(),
        text_body: String::new(),
        link_url: String::new(),
    }
}

/// One mail the SMTP server took: envelope recipients and the raw data.
#[derive(Debug, Clone)]
struct Mail {
    to: Vec<String>,
    data: String,
}

#[derive(Clone, Default)]
struct Inbox {
    mails: Arc<Mutex<Vec<Mail>>>,
    current: Arc<Mutex<Option<Mail>>>,
}

impl Handler for Inbox {
    fn rcpt(&mut self, to: &str) -> Response {
        // A mailbox the server does not have, and one whose server is busy.
        if to.starts_with("nobody@") {
            response::NO_MAILBOX
        } else if to.starts_with("busy@") {
            response::OUT_OF_SPACE
        } else {
            response::OK
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        *self.current.lock().unwrap() = Some(Mail {
            to: to.to_vec(),
            data: String::new(),
        });
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(m) = self.current.lock().unwrap().as_mut() {
            m.data.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(m) = self.current.lock().unwrap().take() {
            self.mails.lock().unwrap().push(m);
        }
        response::OK
    }

    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> Response {
        response::OK
    }
}

/// An SMTP server on a free port, serving until the test process ends.
fn smtp_server() -> (u16, Inbox) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = Inbox::default();
    let mut server = Server::new(inbox.clone());
    server
        .with_name("mail.test")
        .with_ssl(SslConfig::None)
        .unwrap()
        .with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (port, inbox)
}

fn smtp_settings(port: u16) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        tls: "none".into(),
        username: None,
        password: None,
        from_address: "news@shop.example".into(),
        from_name: "Shop".into(),
        timeout_ms: 5_000,
    }
}

#[tokio::test]
async fn email_goes_over_smtp_with_its_text_part_and_message_id() {
    let (port, inbox) = smtp_server();
    let adapter = super::smtp::SmtpAdapter::new(&smtp_settings(port)).unwrap();
    let mut m = message(Channel::Email, "jana@example.com");
    m.text_body = "Hi Jana".into();
    let id = adapter.send(&m).await.unwrap();
    assert!(!id.is_empty());
    let mails = inbox.mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.to, ["jana@example.com"]);
    for expected in [
        "From: Shop <news@shop.example>",
        "Subject: Spring is here",
        &format!("Message-ID: <{}@loyalty>", m.message_id),
        "multipart/alternative",
        "text/plain",
        "text/html",
        "Hi Jana",
    ] {
        assert!(mail.data.contains(expected), "{expected} in {}", mail.data);
    }

    // The template's own sender wins; HTML only without a text part.
    let mut own = message(Channel::Email, "petr@example.com");
    own.sender_name = "Spring team".into();
    own.sender_address = "spring@shop.example".into();
    adapter.send(&own).await.unwrap();
    let mail = inbox.mails.lock().unwrap()[1].clone();
    assert!(
        mail.data.contains("Spring team") && mail.data.contains("<spring@shop.example>"),
        "{}",
        mail.data
    );
    assert!(!mail.data.contains("multipart/alternative"));
}

#[tokio::test]
async fn smtp_refusals_are_rejections_or_temporary_by_their_code() {
    let (port, inbox) = smtp_server();
    let adapter = super::smtp::SmtpAdapter::new(&smtp_settings(port)).unwrap();
    let rejected = adapter
        .send(&message(Channel::Email, "nobody@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(rejected, SendError::Rejected(_)), "{rejected:?}");
    let busy = adapter
        .send(&message(Channel::Email, "busy@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(busy, SendError::Transient(_)), "{busy:?}");
    let malformed = adapter
        .send(&message(Channel::Email, "not an address"))
        .await
        .unwrap_err();
    assert!(matches!(malformed, SendError::Rejected(_)), "{malformed:?}");
    assert!(inbox.mails.lock().unwrap().is_empty());

    // Nobody listening: temporary.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = super::smtp::SmtpAdapter::new(&smtp_settings(port)).unwrap();
    let e = down
        .send(&message(Channel::Email, "jana@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Transient(_)), "{e:?}");
}

/// What the HTTP provider received: headers and JSON bodies.
type Received = Arc<Mutex<Vec<(HeaderMap, serde_json::Value)>>>;

/// An HTTP provider on a free port: `/ok` accepts with an id, `/bad` answers 400, `/busy`
/// 503, `/slow-down` 429, `/plain` 202 without a body.
async fn http_provider() -> (String, Received) {
    let received: Received = Arc::default();
    let record = |status: StatusCode, body: serde_json::Value| {
        let received = received.clone();
        move |headers: HeaderMap, Json(json): Json<serde_json::Value>| {
            let received = received.clone();
            let body = body.clone();
            async move {
                received.lock().unwrap().push((headers, json));
                (status, Json(body))
            }
        }
    };
    let app = Router::new()
        .route(
            "/ok",
            post(record(StatusCode::OK, serde_json::json!({"id": "prov-1"}))),
        )
        .route(
            "/bad",
            post(record(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "invalid number"}),
            )),
        )
        .route(
            "/busy",
            post(record(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({}),
            )),
        )
        .route(
            "/slow-down",
            post(record(StatusCode::TOO_MANY_REQUESTS, serde_json::json!({}))),
        )
        .route(
            "/plain",
            post(record(StatusCode::ACCEPTED, serde_json::Value::Null)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

fn provider(endpoint: String) -> HttpProviderSettings {
    HttpProviderSettings {
        endpoint,
        token: Some("secret-token".to_owned().into()),
        timeout_ms: 5_000,
    }
}

#[tokio::test]
async fn sms_push_and_viber_go_to_the_providers_http_api() {
    let (base, received) = http_provider().await;
    let ok = super::http::HttpAdapter::new(&provider(format!("{base}/ok"))).unwrap();
    let mut sms = message(Channel::Sms, "+420601234567");
    sms.body = "Hi Jana, 20 % off today".into();
    assert_eq!(ok.send(&sms).await.unwrap(), "prov-1");
    let (headers, body) = received.lock().unwrap()[0].clone();
    assert_eq!(headers["authorization"], "Bearer secret-token");
    assert_eq!(
        headers["idempotency-key"],
        sms.message_id.to_string().as_str()
    );
    assert_eq!(body["channel"], "sms");
    assert_eq!(body["to"], "+420601234567");
    assert_eq!(body["text"], "Hi Jana, 20 % off today");
    assert_eq!(body["message_id"], sms.message_id.to_string());

    let mut viber = message(Channel::Viber, "viber-user-7");
    viber.link_url = "https://shop.example/spring".into();
    let plain = super::http::HttpAdapter::new(&provider(format!("{base}/plain"))).unwrap();
    assert_eq!(
        plain.send(&viber).await.unwrap(),
        viber.message_id.to_string(),
        "without an id in the answer, ours"
    );
    assert_eq!(
        received.lock().unwrap()[1].1["link_url"],
        "https://shop.example/spring"
    );

    for (path, transient) in [("bad", false), ("busy", true), ("slow-down", true)] {
        let a = super::http::HttpAdapter::new(&provider(format!("{base}/{path}"))).unwrap();
        let e = a
            .send(&message(Channel::Push, "token-1"))
            .await
            .unwrap_err();
        assert_eq!(
            matches!(e, SendError::Transient(_)),
            transient,
            "{path}: {e:?}"
        );
    }
    let refused = super::http::HttpAdapter::new(&provider("http://127.0.0.1:1/".into())).unwrap();
    let e = refused
        .send(&message(Channel::Push, "token-1"))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Transient(_)), "{e:?}");
}

#[tokio::test]
async fn the_file_adapter_writes_one_json_line_per_message_for_every_channel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.jsonl");
    let settings = DeliverySettings {
        file_path: Some(path.display().to_string()),
        ..Default::default()
    };
    let adapters = Adapters::from_settings(&settings).unwrap();
    assert_eq!(adapters.channels().len(), 4);
    let (email, sms) = (
        message(Channel::Email, "jana@example.com"),
        message(Channel::Sms, "+420601234567"),
    );
    for m in [&email, &sms] {
        let id = adapters.get(m.channel).unwrap().send(m).await.unwrap();
        assert_eq!(id, format!("file:{}", m.message_id));
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["to"], "jana@example.com");
    assert_eq!(lines[1]["message_id"], sms.message_id.to_string());

    // Without a file, only the configured channels have an adapter.
    let only_sms = DeliverySettings {
        sms: Some(provider("http://127.0.0.1:1/".into())),
        ..Default::default()
    };
    let adapters = Adapters::from_settings(&only_sms).unwrap();
    assert_eq!(adapters.channels(), [Channel::Sms]);
    assert!(adapters.get(Channel::Email).is_none());
}
