//! Message template rules: channels, sizes and personalisation placeholders.
pub mod campaign;
pub mod message;
pub mod template;
pub mod workflow;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use template::{Markup, TextProblem};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    Email,
    Sms,
    Push,
    Viber,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::Viber => "viber",
        }
    }

    pub fn parse_str(s: &str) -> Option<Channel> {
        Some(match s {
            "email" => Channel::Email,
            "sms" => Channel::Sms,
            "push" => Channel::Push,
            "viber" => Channel::Viber,
            _ => return None,
        })
    }
}

/// Campaign templates need marketing consent; system templates only data-processing consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplateKind {
    Campaign,
    System,
}

impl TemplateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateKind::Campaign => "campaign",
            TemplateKind::System => "system",
        }
    }

    pub fn parse_str(s: &str) -> Option<TemplateKind> {
        Some(match s {
            "campaign" => TemplateKind::Campaign,
            "system" => TemplateKind::System,
            _ => return None,
        })
    }
}

/// Longest link a push notification may open.
pub const MAX_LINK_CHARS: usize = 2048;

pub(crate) fn is_email(s: &str) -> bool {
    s.len() <= 254
        && !s.chars().any(char::is_whitespace)
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
}

/// An `https://` link or an app deep link (`myapp://offers/12`); never `http`, `javascript`,
/// `data`, `file` or `vbscript`.
fn is_push_link(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase())
        && scheme
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    let forbidden = ["http", "javascript", "data", "file", "vbscript"].contains(&scheme);
    scheme_ok
        && !forbidden
        && !rest.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn first_version() -> i64 {
    1
}

/// A template rendered for one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderedMessage {
    pub subject: String,
    pub body: String,
    pub text_body: String,
    /// Variables the texts read that had no value (rendered empty).
    pub missing: Vec<String>,
    /// SMS only: the segments the body takes.
    pub sms_segments: usize,
}

/// A template's texts parsed once (see [`MessageTemplate::compile`]).
pub struct CompiledMessage {
    compiled: template::Compiled,
    markups: [(&'static str, Markup); 3],
}

impl CompiledMessage {
    /// Subject, body and text body for one recipient. Missing variables render empty (the
    /// queue does not report them; previews do).
    pub fn render(
        &self,
        variables: &BTreeMap<String, String>,
    ) -> Result<RenderedMessage, (String, TextProblem)> {
        let mut out = RenderedMessage::default();
        for (field, markup) in self.markups {
            let text = self
                .compiled
                .render(field, markup, variables)
                .map_err(|e| {
                    (
                        format!("message_template.{field}"),
                        TextProblem {
                            line: e.line().unwrap_or(1),
                            column: 1,
                            message: e
                                .detail()
                                .map_or_else(|| e.kind().to_string(), str::to_owned),
                        },
                    )
                })?;
            match field {
                "subject" => out.subject = text,
                "body" => out.body = text,
                _ => out.text_body = text,
            }
        }
        Ok(out)
    }
}

/// A message template. `version` grows with every change; its etag is `"v<version>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageTemplate {
    pub id: Uuid,
    pub display_name: String,
    pub channel: Channel,
    pub kind: TemplateKind,
    pub subject: String,
    pub body: String,
    /// Email only: the plain-text alternative of the HTML body; empty = none.
    #[serde(default)]
    pub text_body: String,
    pub sender_name: String,
    pub sender_address: String,
    /// What a push notification opens; empty for other channels.
    #[serde(default)]
    pub link_url: String,
    #[serde(default = "first_version")]
    pub version: i64,
    pub created_at: DateTime<Utc>,
    /// When it last changed; `None` until it does.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl MessageTemplate {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// The template texts with their field names and how each is written out: an email's
    /// body is HTML, everything else plain text.
    pub fn texts(&self) -> [(&'static str, &str, Markup); 3] {
        let body = if self.channel == Channel::Email {
            Markup::Html
        } else {
            Markup::Plain
        };
        [
            ("subject", self.subject.as_str(), Markup::Plain),
            ("body", self.body.as_str(), body),
            ("text_body", self.text_body.as_str(), Markup::Plain),
        ]
    }

    /// Whether any of its texts reads `variable`.
    pub fn reads(&self, variable: &str) -> bool {
        self.texts()
            .iter()
            .any(|(_, text, _)| template::reads(text, variable))
    }

    /// The template rendered with `variables` (dotted names → values).
    pub fn render(
        &self,
        variables: &BTreeMap<String, String>,
    ) -> Result<RenderedMessage, (String, TextProblem)> {
        let mut out = RenderedMessage::default();
        for (field, text, markup) in self.texts() {
            let r = template::render(text, markup, variables)
                .map_err(|p| (format!("message_template.{field}"), p))?;
            out.missing.extend(r.missing);
            match field {
                "subject" => out.subject = r.text,
                "body" => out.body = r.text,
                _ => out.text_body = r.text,
            }
        }
        out.missing.sort();
        out.missing.dedup();
        if self.channel == Channel::Sms {
            out.sms_segments = template::sms_segments(&out.body);
        }
        Ok(out)
    }

    /// The template parsed once, to render for many recipients.
    pub fn compile(&self) -> Result<CompiledMessage, (String, TextProblem)> {
        let texts = self.texts();
        let compiled = template::Compiled::new(&texts)
            .map_err(|(field, p)| (format!("message_template.{field}"), p))?;
        Ok(CompiledMessage {
            compiled,
            markups: texts.map(|(field, _, markup)| (field, markup)),
        })
    }

    /// Checks every field, reporting under `message_template.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        let f = |n: &str| format!("message_template.{n}");
        if !(1..=200).contains(&self.display_name.trim().chars().count()) {
            v.add(f("display_name"), "must be 1..200 characters");
        }
        let subject_len = self.subject.chars().count();
        if self.channel == Channel::Email && !(1..=998).contains(&subject_len) {
            v.add(
                f("subject"),
                "an email needs a subject of 1..998 characters",
            );
        } else if subject_len > 998 {
            v.add(f("subject"), "must be at most 998 characters");
        }
        let max_body = match self.channel {
            Channel::Sms => 1_600,
            Channel::Viber => 1_000,
            Channel::Email | Channel::Push => 100_000,
        };
        if !(1..=max_body).contains(&self.body.chars().count()) {
            v.add(f("body"), format!("must be 1..{max_body} characters"));
        }
        if self.channel != Channel::Email && !self.text_body.is_empty() {
            v.add(f("text_body"), "only an email has a plain-text alternative");
        } else if self.text_body.chars().count() > 100_000 {
            v.add(f("text_body"), "must be at most 100000 characters");
        }
        if self.sender_name.chars().count() > 200 {
            v.add(f("sender_name"), "must be at most 200 characters");
        }
        let address = &self.sender_address;
        if !address.is_empty() {
            match self.channel {
                Channel::Email if !is_email(address) => {
                    v.add(f("sender_address"), "must be an email address");
                }
                Channel::Sms
                    if !(address.len() <= 11
                        && address.chars().all(|c| c.is_ascii_alphanumeric())) =>
                {
                    v.add(
                        f("sender_address"),
                        "an SMS sender id is 1..11 letters and digits",
                    );
                }
                Channel::Push | Channel::Viber => {
                    v.add(
                        f("sender_address"),
                        "a push notification or Viber message has no sender address",
                    );
                }
                _ => {}
            }
        }
        if !self.link_url.is_empty() {
            let fits = match self.channel {
                Channel::Push => is_push_link(&self.link_url),
                Channel::Viber => {
                    self.link_url.starts_with("https://") && is_push_link(&self.link_url)
                }
                Channel::Email | Channel::Sms => {
                    v.add(
                        f("link_url"),
                        "only a push notification or a Viber message opens a link",
                    );
                    true
                }
            };
            if !fits || self.link_url.chars().count() > MAX_LINK_CHARS {
                v.add(
                    f("link_url"),
                    format!(
                        "must be an https:// link (a push notification may open an app deep \
                         link, scheme://…) of at most {MAX_LINK_CHARS} characters"
                    ),
                );
            }
        }
        for (field, text, markup) in self.texts() {
            for problem in template::check(text, markup) {
                v.add(f(field), problem.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(channel: Channel, subject: &str, body: &str) -> MessageTemplate {
        MessageTemplate {
            id: Uuid::now_v7(),
            display_name: "Welcome".into(),
            channel,
            kind: TemplateKind::Campaign,
            subject: subject.into(),
            body: body.into(),
            text_body: String::new(),
            sender_name: String::new(),
            sender_address: String::new(),
            link_url: String::new(),
            version: 1,
            created_at: Utc::now(),
            updated_at: None,
        }
    }

    fn problems(t: &MessageTemplate) -> String {
        let mut v = Violations::new();
        t.validate(&mut v);
        v.into_result()
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn a_compiled_template_renders_as_the_template_does() {
        let mut t = template(
            Channel::Email,
            "Hi {{ customer.first_name }}",
            "<p>{{ customer.first_name }}: {{ voucher.code }}</p>",
        );
        t.text_body = "{% if voucher.code %}Code {{ voucher.code }}{% endif %}".into();
        let compiled = t.compile().unwrap();
        for vars in [
            BTreeMap::from([
                ("customer.first_name".to_owned(), "<Jana>".to_owned()),
                ("voucher.code".to_owned(), "SPRING-1".to_owned()),
            ]),
            BTreeMap::new(),
        ] {
            let once = t.render(&vars).unwrap();
            let fast = compiled.render(&vars).unwrap();
            assert_eq!(
                (fast.subject, fast.body, fast.text_body),
                (once.subject, once.body, once.text_body)
            );
        }
        let broken = template(Channel::Email, "{{ x", "b");
        assert_eq!(
            broken.compile().err().unwrap().0,
            "message_template.subject"
        );
    }

    #[test]
    fn a_lone_closing_pair_is_plain_text_as_in_css() {
        let css = template(
            Channel::Email,
            "Hi",
            "<style>@media(max-width:600px){.a{color:red}}</style>",
        );
        assert!(problems(&css).is_empty());
    }

    #[test]
    fn an_email_needs_a_subject_and_known_variables() {
        let text = problems(&template(
            Channel::Email,
            "",
            "Hello {{ customer.shoe_size }}",
        ));
        assert!(text.contains("message_template.subject"));
        assert!(
            text.contains(
                "message_template.body: line 1, column 10: unknown variable `customer.shoe_size`"
            ),
            "{text}"
        );
        assert!(problems(&template(Channel::Sms, "", "Hi {{customer.first_name}}")).is_empty());
    }

    #[test]
    fn every_text_is_checked_under_its_own_field() {
        let mut t = template(Channel::Email, "Hi {{ customer.nickname }}", "Body");
        t.text_body = "Hi\n{% if %}".into();
        let text = problems(&t);
        assert!(
            text.contains(
                "message_template.subject: line 1, column 7: unknown variable `customer.nickname`"
            ),
            "{text}"
        );
        assert!(
            text.contains("message_template.text_body: line 2"),
            "{text}"
        );
        assert!(!text.contains("message_template.body:"), "{text}");
        let mut sms = template(Channel::Sms, "", "Hi");
        sms.text_body = "Hi".into();
        assert!(problems(&sms).contains("message_template.text_body"));
    }

    #[test]
    fn a_template_renders_every_text_and_reports_missing_values() {
        let mut t = template(
            Channel::Email,
            "{{ customer.first_name }}, your voucher",
            "<p>Code <b>{{ voucher.code }}</b>{% if customer.city == \"Praha\" %} in Prague{% endif %}</p>",
        );
        t.text_body = "Code {{ voucher.code }}".into();
        let vars: BTreeMap<String, String> = [
            ("customer.first_name".to_owned(), "Jana".to_owned()),
            ("customer.city".to_owned(), "Praha".to_owned()),
        ]
        .into();
        let r = t.render(&vars).unwrap();
        assert_eq!(r.subject, "Jana, your voucher");
        assert_eq!(r.body, "<p>Code <b></b> in Prague</p>");
        assert_eq!(r.text_body, "Code ");
        assert_eq!(r.missing, ["voucher.code"]);
        let sms = template(Channel::Sms, "", "{{ customer.first_name }} ř");
        assert_eq!(sms.render(&vars).unwrap().sms_segments, 1);
    }

    #[test]
    fn an_sms_is_at_most_1600_characters() {
        assert!(
            problems(&template(Channel::Sms, "", &"x".repeat(1_601)))
                .contains("message_template.body")
        );
        assert!(problems(&template(Channel::Sms, "", &"x".repeat(1_600))).is_empty());
    }

    #[test]
    fn a_sender_address_fits_its_channel() {
        let mut email = template(Channel::Email, "Hi", "Body");
        email.sender_address = "news@shop.example".into();
        assert!(problems(&email).is_empty());
        email.sender_address = "not an address".into();
        assert!(problems(&email).contains("message_template.sender_address"));
        let mut sms = template(Channel::Sms, "", "Body");
        sms.sender_address = "SHOP2024".into();
        assert!(problems(&sms).is_empty());
        sms.sender_address = "SHOP-LONG-NAME".into();
        assert!(problems(&sms).contains("message_template.sender_address"));
    }

    #[test]
    fn only_a_push_notification_opens_a_safe_link() {
        let mut push = template(Channel::Push, "Title", "Body");
        for ok in ["https://shop.example/offers", "myapp://offers/12"] {
            push.link_url = ok.into();
            assert!(problems(&push).is_empty(), "{ok}");
        }
        for bad in [
            "http://shop.example",
            "javascript://alert(1)",
            "shop.example/offers",
            "https://",
        ] {
            push.link_url = bad.into();
            assert!(
                problems(&push).contains("message_template.link_url"),
                "{bad}"
            );
        }
        let mut email = template(Channel::Email, "Hi", "Body");
        email.link_url = "https://shop.example".into();
        assert!(problems(&email).contains("message_template.link_url"));
        // A Viber button opens https only, and a Viber text is at most 1000 characters.
        let mut viber = template(Channel::Viber, "", "Hi {{ customer.first_name }}");
        viber.link_url = "https://shop.example/offers".into();
        assert!(problems(&viber).is_empty());
        viber.link_url = "myapp://offers/12".into();
        assert!(problems(&viber).contains("message_template.link_url"));
        viber.link_url.clear();
        viber.body = "x".repeat(1_001);
        assert!(problems(&viber).contains("message_template.body"));
    }
}
