//! Message texts rendered by a real template engine (minijinja, Jinja2 syntax): variables
//! (`{{ customer.first_name }}`), conditions showing parts of the content
//! (`{% if customer.city == "Praha" %}…{% else %}…{% endif %}`), loops and filters
//! (`{{ customer.first_name | default("friend") }}`). A text is checked when a template is
//! saved: a syntax error, an unknown variable, or an error a trial render with sample values
//! meets (an unknown filter) is reported with its line and column.
use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

/// The variables a message may read, with the sample value a trial render and a preview
/// without a customer use.
pub const VARIABLES: &[(&str, &str)] = &[
    ("customer.first_name", "Jana"),
    ("customer.last_name", "Nováková"),
    ("customer.email", "jana.novakova@example.com"),
    ("customer.phone", "+420601234567"),
    ("customer.city", "Praha"),
    ("customer.birth_date", "1990-04-01"),
    ("partner.display_name", "Shop"),
    ("campaign.display_name", "Spring sale"),
    ("voucher.code", "SPRING-7KQ2-M9XD"),
    ("points.balance", "1250"),
    ("unsubscribe_url", "https://example.com/unsubscribe/token"),
];

/// Whether `name` is a variable or a namespace of variables (`customer`).
fn known(name: &str) -> bool {
    VARIABLES.iter().any(|(v, _)| {
        *v == name || (v.starts_with(name) && v.as_bytes().get(name.len()) == Some(&b'.'))
    })
}

/// A problem with a text, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextProblem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for TextProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// How a text is written out: HTML escapes every value it inserts (an email's HTML body),
/// plain text inserts them as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    Html,
    Plain,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A variable without a value renders empty (a preview reports it as missing); reading
    // an attribute of it is not an error either.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

fn name(markup: Markup) -> &'static str {
    match markup {
        Markup::Html => "text.html",
        Markup::Plain => "text.txt",
    }
}

/// Line and column (1-based, in characters) of byte `offset` of `source`.
fn position(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn problem_of(source: &str, e: &minijinja::Error) -> TextProblem {
    let message = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    let (line, column) = match (e.range(), e.line()) {
        (Some(r), _) if r.start <= source.len() => position(source, r.start),
        (_, Some(line)) => (line, 1),
        _ => (1, 1),
    };
    TextProblem {
        line,
        column,
        message,
    }
}

/// Byte offset of the first use of variable `name` inside a tag (`{{ … }}` or `{% … %}`):
/// the name not preceded or followed by another identifier character or a dot.
fn first_use(source: &str, name: &str) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    let mut from = 0;
    while let Some(i) = source[from..].find(name) {
        let at = from + i;
        let end = at + name.len();
        let before_ok = source[..at].chars().next_back().is_none_or(|c| !ident(c));
        let after_ok = source[end..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let in_tag = {
            let open = source[..at].rfind("{{").max(source[..at].rfind("{%"));
            let close = source[..at].rfind("}}").max(source[..at].rfind("%}"));
            open.is_some() && open > close
        };
        if before_ok && after_ok && in_tag {
            return Some(at);
        }
        from = end;
    }
    None
}

/// Whether `url` is an http(s) URL with nothing HTML would read as markup (no quotes,
/// angle brackets, ampersand entities or spaces).
pub fn is_plain_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '`')
        })
}

/// The values of `variables` (dotted names) as the nested context a template reads.
fn context(variables: &BTreeMap<String, String>) -> Value {
    let mut root: BTreeMap<String, Value> = BTreeMap::new();
    let mut nested: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, value) in variables {
        match name.split_once('.') {
            Some((ns, key)) => {
                nested
                    .entry(ns.to_owned())
                    .or_default()
                    .insert(key.to_owned(), value.clone());
            }
            // The platform makes this link from a checked base URL and a hex token; escaping
            // it would turn every `/` into `&#x2f;`.
            None if name == "unsubscribe_url" && is_plain_url(value) => {
                root.insert(name.clone(), Value::from_safe_string(value.clone()));
            }
            None => {
                root.insert(name.clone(), Value::from(value.clone()));
            }
        }
    }
    for (ns, map) in nested {
        root.insert(ns, Value::from_serialize(map));
    }
    Value::from_serialize(root)
}

/// The sample values of every variable.
pub fn samples() -> BTreeMap<String, String> {
    VARIABLES
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// Checks a text: its syntax, that every variable it reads is known, and that it renders
/// with the sample values. Every unknown variable is reported once, at its first use.
pub fn check(source: &str, markup: Markup) -> Vec<TextProblem> {
    let env = environment();
    let template = match env.template_from_named_str(name(markup), source) {
        Ok(t) => t,
        Err(e) => return vec![problem_of(source, &e)],
    };
    let mut unknown: Vec<String> = template
        .undeclared_variables(true)
        .into_iter()
        .filter(|v| !known(v))
        .collect();
    unknown.sort();
    if !unknown.is_empty() {
        let known_list: Vec<&str> = VARIABLES.iter().map(|(n, _)| *n).collect();
        let mut out: Vec<TextProblem> = unknown
            .into_iter()
            .map(|v| {
                let (line, column) =
                    first_use(source, &v).map_or((1, 1), |at| position(source, at));
                TextProblem {
                    line,
                    column,
                    message: format!("unknown variable `{v}`; known: {}", known_list.join(", ")),
                }
            })
            .collect();
        out.sort_by_key(|p| (p.line, p.column));
        return out;
    }
    match template.render(context(&samples())) {
        Ok(_) => Vec::new(),
        Err(e) => vec![problem_of(source, &e)],
    }
}

/// Whether a text reads `variable` (e.g. `voucher.code`); a text that does not parse reads
/// nothing.
pub fn reads(source: &str, variable: &str) -> bool {
    let env = environment();
    env.template_from_str(source)
        .is_ok_and(|t| t.undeclared_variables(true).contains(variable))
}

/// Texts parsed once and rendered for many recipients (the send queue renders a template
/// for every message of a batch).
pub struct Compiled {
    env: Environment<'static>,
}

/// The name a text is kept under: its field, and the markup that decides escaping.
fn compiled_name(field: &str, markup: Markup) -> String {
    format!(
        "{field}.{}",
        if markup == Markup::Html {
            "html"
        } else {
            "txt"
        }
    )
}

impl Compiled {
    /// Parses `texts` (field, source, markup); the first that does not parse is the error.
    pub fn new(texts: &[(&'static str, &str, Markup)]) -> Result<Compiled, (String, TextProblem)> {
        let mut env = environment();
        for (field, source, markup) in texts {
            env.add_template_owned(compiled_name(field, *markup), (*source).to_owned())
                .map_err(|e| ((*field).to_owned(), problem_of(source, &e)))?;
        }
        Ok(Compiled { env })
    }

    /// Renders the text of `field` with `variables`.
    pub fn render(
        &self,
        field: &str,
        markup: Markup,
        variables: &BTreeMap<String, String>,
    ) -> Result<String, minijinja::Error> {
        self.env
            .get_template(&compiled_name(field, markup))?
            .render(context(variables))
    }
}

/// A rendered text and the variables it read that had no value (rendered empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub missing: Vec<String>,
}

/// Renders a text with `variables` (dotted names → values).
pub fn render(
    source: &str,
    markup: Markup,
    variables: &BTreeMap<String, String>,
) -> Result<Rendered, TextProblem> {
    let env = environment();
    let template = env
        .template_from_named_str(name(markup), source)
        .map_err(|e| problem_of(source, &e))?;
    let mut missing: Vec<String> = template
        .undeclared_variables(true)
        .into_iter()
        .filter(|v| VARIABLES.iter().any(|(n, _)| n == v) && !variables.contains_key(v))
        .collect();
    missing.sort();
    let text = template
        .render(context(variables))
        .map_err(|e| problem_of(source, &e))?;
    Ok(Rendered { text, missing })
}

/// How many SMS segments a text takes: GSM 7-bit texts 160 characters alone or 153 per part,
/// anything else (UCS-2) 70 alone or 67 per part. Characters of the GSM extension table count
/// twice.
pub fn sms_segments(text: &str) -> usize {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENDED: &str = "^{}\\[~]|€\u{c}";
    let gsm = text
        .chars()
        .all(|c| BASIC.contains(c) || EXTENDED.contains(c));
    let (units, single, part) = if gsm {
        let units: usize = text
            .chars()
            .map(|c| if EXTENDED.contains(c) { 2 } else { 1 })
            .sum();
        (units, 160, 153)
    } else {
        // UTF-16 code units: a character outside the BMP takes two.
        (text.encode_utf16().count(), 70, 67)
    };
    match units {
        0 => 0,
        u if u <= single => 1,
        u => u.div_ceil(part),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn variables_and_conditions_render() {
        let text = "Hi {{ customer.first_name | default(\"friend\") }}!\n\
                    {% if customer.city == \"Praha\" %}See you in Prague.{% else %}Visit us.{% endif %}";
        let praha = render(
            text,
            Markup::Plain,
            &vars(&[("customer.first_name", "Jana"), ("customer.city", "Praha")]),
        )
        .unwrap();
        assert_eq!(praha.text, "Hi Jana!\nSee you in Prague.");
        assert!(praha.missing.is_empty());
        let nobody = render(text, Markup::Plain, &BTreeMap::new()).unwrap();
        assert_eq!(nobody.text, "Hi friend!\nVisit us.");
        assert_eq!(nobody.missing, ["customer.city", "customer.first_name"]);
    }

    #[test]
    fn the_unsubscribe_link_is_inserted_as_it_is_unless_it_could_break_out() {
        let link = vars(&[(
            "unsubscribe_url",
            "https://shop.example/unsubscribe?token=ab.cd&x=1",
        )]);
        let html = render(
            "<a href=\"{{ unsubscribe_url }}\">x</a>",
            Markup::Html,
            &link,
        )
        .unwrap();
        assert_eq!(
            html.text,
            "<a href=\"https://shop.example/unsubscribe?token=ab.cd&x=1\">x</a>"
        );
        let evil = vars(&[("unsubscribe_url", "https://x\"><script>")]);
        let html = render("{{ unsubscribe_url }}", Markup::Html, &evil).unwrap();
        assert!(!html.text.contains('<'), "{}", html.text);
    }

    #[test]
    fn a_text_knows_which_variables_it_reads() {
        assert!(reads("Your code: {{ voucher.code }}", "voucher.code"));
        assert!(reads("{% if voucher.code %}x{% endif %}", "voucher.code"));
        assert!(!reads("Hi {{ customer.first_name }}", "voucher.code"));
        assert!(!reads("{{ broken", "voucher.code"));
    }

    #[test]
    fn html_escapes_inserted_values_and_plain_text_does_not() {
        let evil = vars(&[("customer.first_name", "<b>Jana</b> & co")]);
        let html = render("<p>{{ customer.first_name }}</p>", Markup::Html, &evil).unwrap();
        assert_eq!(html.text, "<p>&lt;b&gt;Jana&lt;&#x2f;b&gt; &amp; co</p>");
        let plain = render("{{ customer.first_name }}", Markup::Plain, &evil).unwrap();
        assert_eq!(plain.text, "<b>Jana</b> & co");
    }

    #[test]
    fn an_unknown_variable_is_reported_at_its_first_use() {
        let text = "Hello {{ customer.first_name }},\n\n  your size: {{ customer.shoe_size }}\n{{ customer.shoe_size }}";
        let problems = check(text, Markup::Plain);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!((problems[0].line, problems[0].column), (3, 17));
        assert!(
            problems[0]
                .message
                .starts_with("unknown variable `customer.shoe_size`")
        );
        assert!(
            problems[0]
                .to_string()
                .starts_with("line 3, column 17: unknown variable")
        );
        // In a condition too, and a top-level name.
        let problems = check("{% if vip %}Hi{% endif %}", Markup::Plain);
        assert_eq!((problems[0].line, problems[0].column), (1, 7));
        assert!(problems[0].message.contains("`vip`"));
    }

    #[test]
    fn a_syntax_error_is_reported_with_line_and_column() {
        let problems = check(
            "Hi {{ customer.first_name }}\n{% if customer.city %}no end",
            Markup::Plain,
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 2, "{problems:?}");
        let problems = check("line one\n  {{ customer.first_name ", Markup::Plain);
        assert_eq!(problems[0].line, 2, "{problems:?}");
        assert!(problems[0].column >= 3, "{problems:?}");
    }

    #[test]
    fn an_unknown_filter_is_found_by_the_trial_render() {
        let problems = check("{{ customer.first_name | shout }}", Markup::Plain);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 1);
    }

    #[test]
    fn every_known_variable_and_namespace_is_accepted() {
        let text: String = VARIABLES
            .iter()
            .map(|(n, _)| format!("{{{{ {n} }}}} "))
            .collect();
        assert!(check(&text, Markup::Html).is_empty());
        let all = render(&text, Markup::Plain, &samples()).unwrap();
        assert!(all.missing.is_empty());
        assert!(all.text.contains("SPRING-7KQ2-M9XD"));
        assert!(check("{% for k in customer %}{{ k }}{% endfor %}", Markup::Plain).is_empty());
    }

    #[test]
    fn sms_segments_follow_the_encoding() {
        assert_eq!(sms_segments(""), 0);
        assert_eq!(sms_segments(&"a".repeat(160)), 1);
        assert_eq!(sms_segments(&"a".repeat(161)), 2);
        assert_eq!(sms_segments(&"a".repeat(306)), 2);
        assert_eq!(sms_segments(&"a".repeat(307)), 3);
        // The euro sign is GSM but counts twice.
        assert_eq!(sms_segments(&"€".repeat(80)), 1);
        assert_eq!(sms_segments(&"€".repeat(81)), 2);
        // Czech diacritics beyond GSM make it UCS-2.
        assert_eq!(sms_segments(&"ř".repeat(70)), 1);
        assert_eq!(sms_segments(&"ř".repeat(71)), 2);
    }
}
