//! Page size and page tokens of List calls. Lists are ordered by id (UUID v7, so by creation);
//! a token is the id of the last item of the previous page.
use uuid::Uuid;

use crate::error::Violations;

/// The page size asked for: 0 = 100, otherwise 1..=1000 (reported under `page_size`).
pub fn page_size(v: &mut Violations, size: i32) -> u64 {
    match size {
        0 => 100,
        1..=1000 => size as u64,
        _ => {
            v.add("page_size", "must be 0..1000");
            100
        }
    }
}

/// The id to continue after (reported under `page_token` when it is not one we issued).
pub fn parse_page_token(v: &mut Violations, token: &str) -> Option<Uuid> {
    if token.is_empty() {
        return None;
    }
    let parsed = Uuid::try_parse(token).ok();
    if parsed.is_none() {
        v.add("page_token", "is not a token this service issued");
    }
    parsed
}

/// The token of the next page: empty when this page was not full.
pub fn next_page_token(len: usize, limit: u64, last: Option<Uuid>) -> String {
    match last {
        Some(id) if len as u64 == limit => id.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tokens_are_checked_and_a_short_page_ends_the_list() {
        let mut v = Violations::new();
        assert_eq!(page_size(&mut v, 0), 100);
        assert_eq!(page_size(&mut v, 7), 7);
        assert!(v.is_empty());
        assert_eq!(page_size(&mut v, 5000), 100);
        assert_eq!(parse_page_token(&mut v, "zzz"), None);
        let text = v.into_result().unwrap_err().to_string();
        assert!(text.contains("page_size") && text.contains("page_token"));
        let id = Uuid::now_v7();
        assert_eq!(next_page_token(10, 10, Some(id)), id.to_string());
        assert_eq!(next_page_token(9, 10, Some(id)), "");
    }
}
