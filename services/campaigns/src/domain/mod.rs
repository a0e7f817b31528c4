//! Message template rules: channels, sizes and personalisation placeholders.
use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Variables a template may use, written `{{customer.first_name}}`.
pub const VARIABLES: &[&str] = &[
    "customer.first_name",
    "customer.last_name",
    "customer.email",
    "customer.city",
    "partner.display_name",
    "voucher.code",
    "points.balance",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    Email,
    Sms,
    Push,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }

    pub fn parse_str(s: &str) -> Option<Channel> {
        Some(match s {
            "email" => Channel::Email,
            "sms" => Channel::Sms,
            "push" => Channel::Push,
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

/// Why a placeholder is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceholderError {
    /// A `{{` without its closing `}}`.
    Unclosed,
    /// `{{}}`, `{{ {{x}} }}` or a name that is not dotted `[a-z0-9_]` words.
    Malformed(String),
}

impl std::fmt::Display for PlaceholderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceholderError::Unclosed => f.write_str("has a '{{' without a closing '}}'"),
            PlaceholderError::Malformed(name) => write!(
                f,
                "has a malformed placeholder {{{{{name}}}}}; write variables like \
                 {{{{customer.first_name}}}}"
            ),
        }
    }
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// The placeholders of a text (`{{ name }}`, spaces inside the braces allowed), in order of
/// appearance, or the first malformed one. A lone `}}` is plain text (CSS has them).
pub fn placeholders(text: &str) -> Result<Vec<String>, PlaceholderError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(PlaceholderError::Unclosed);
        };
        let name = after[..end].trim();
        if !is_variable_name(name) {
            return Err(PlaceholderError::Malformed(name.to_owned()));
        }
        out.push(name.to_owned());
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Checks the placeholders of `text`, reporting under `field`: malformed ones, and each
/// unknown variable once.
pub fn check_placeholders(v: &mut Violations, field: &str, text: &str) {
    match placeholders(text) {
        Err(e) => v.add(field, e.to_string()),
        Ok(names) => {
            let mut reported: Vec<&str> = Vec::new();
            for name in names.iter().map(String::as_str) {
                if VARIABLES.contains(&name) || reported.contains(&name) {
                    continue;
                }
                reported.push(name);
                v.add(
                    field,
                    format!(
                        "unknown variable {{{{{name}}}}}; known: {}",
                        VARIABLES.join(", ")
                    ),
                );
            }
        }
    }
}

fn is_email(s: &str) -> bool {
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

/// A message template. `version` grows with every change; its etag is `"v<version>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageTemplate {
    pub id: Uuid,
    pub display_name: String,
    pub channel: Channel,
    pub kind: TemplateKind,
    pub subject: String,
    pub body: String,
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
        let max_body = if self.channel == Channel::Sms {
            1_600
        } else {
            100_000
        };
        if !(1..=max_body).contains(&self.body.chars().count()) {
            v.add(f("body"), format!("must be 1..{max_body} characters"));
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
                Channel::Push => {
                    v.add(
                        f("sender_address"),
                        "a push notification has no sender address",
                    );
                }
                _ => {}
            }
        }
        if !self.link_url.is_empty() {
            if self.channel != Channel::Push {
                v.add(f("link_url"), "only a push notification opens a link");
            } else if self.link_url.chars().count() > MAX_LINK_CHARS
                || !is_push_link(&self.link_url)
            {
                v.add(
                    f("link_url"),
                    format!(
                        "must be an https:// link or an app deep link (scheme://…) of at most \
                         {MAX_LINK_CHARS} characters"
                    ),
                );
            }
        }
        check_placeholders(v, &f("subject"), &self.subject);
        check_placeholders(v, &f("body"), &self.body);
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
    fn placeholders_are_found_in_order_with_spaces_allowed() {
        assert_eq!(
            placeholders("Hi {{ customer.first_name }}, you have {{points.balance}} points")
                .unwrap(),
            ["customer.first_name", "points.balance"]
        );
        assert_eq!(placeholders("no variables").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_unclosed_or_malformed_placeholder_is_refused() {
        assert_eq!(
            placeholders("Hi {{customer.first_name"),
            Err(PlaceholderError::Unclosed)
        );
        for bad in [
            "Hi {{}}",
            "Hi {{ {{customer.city}} }}",
            "Hi {{Customer.City}}",
            "Hi {{customer..city}}",
            "Hi {{customer city}}",
        ] {
            assert!(
                matches!(placeholders(bad), Err(PlaceholderError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_lone_closing_pair_is_plain_text_as_in_css() {
        assert_eq!(
            placeholders("<style>@media(max-width:600px){.a{color:red}}</style>").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_email_needs_a_subject_and_known_variables() {
        let text = problems(&template(
            Channel::Email,
            "",
            "Hello {{customer.shoe_size}}",
        ));
        assert!(text.contains("message_template.subject"));
        assert!(text.contains("message_template.body: unknown variable {{customer.shoe_size}}"));
        assert!(problems(&template(Channel::Sms, "", "Hi {{customer.first_name}}")).is_empty());
    }

    #[test]
    fn an_unknown_variable_in_the_subject_names_the_subject() {
        let text = problems(&template(
            Channel::Email,
            "Hi {{customer.nickname}}",
            "Body",
        ));
        assert!(
            text.contains("message_template.subject: unknown variable {{customer.nickname}}"),
            "{text}"
        );
        assert!(!text.contains("message_template.body"));
    }

    #[test]
    fn each_unknown_variable_is_reported_once() {
        let text = problems(&template(Channel::Sms, "", "{{a.b}} {{a.b}} {{c}} {{a.b}}"));
        assert_eq!(text.matches("{{a.b}}").count(), 1, "{text}");
        assert_eq!(text.matches("{{c}}").count(), 1, "{text}");
    }

    #[test]
    fn every_known_variable_is_accepted() {
        let body: String = VARIABLES.iter().map(|n| format!("{{{{{n}}}}} ")).collect();
        assert!(problems(&template(Channel::Email, "Hi", &body)).is_empty());
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
    }
}
