//! Page size and page tokens of List calls. Lists are ordered by id (UUID v7, so by creation);
//! a token is the id of the last item of the previous page.
use uuid::Uuid;

use crate::error::{ApiError, Violations};

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

/// The code to continue after, for lists ordered by a text code. Tokens are the hex of the
/// last code, so they stay opaque to clients.
pub fn parse_code_token(v: &mut Violations, token: &str) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    let decoded = hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    if decoded.is_none() {
        v.add("page_token", "is not a token this service issued");
    }
    decoded
}

/// The page size and the code to continue after of a List call ordered by code, the only
/// parameters it checks: INVALID_ARGUMENT naming `page_size` and/or `page_token` otherwise.
pub fn code_page(size: i32, token: &str) -> Result<(u64, Option<String>), ApiError> {
    let mut v = Violations::new();
    let limit = page_size(&mut v, size);
    let after = parse_code_token(&mut v, token);
    v.finish(|| (limit, after))
}

/// The token after `last` (a code): empty when this page was not full.
pub fn next_code_token(len: usize, limit: u64, last: Option<&str>) -> String {
    match last {
        Some(code) if len as u64 == limit => hex::encode(code),
        _ => String::new(),
    }
}

/// The time and id to continue after, for lists ordered newest first.
pub fn parse_time_token(
    v: &mut Violations,
    token: &str,
) -> Option<(chrono::DateTime<chrono::Utc>, Uuid)> {
    if token.is_empty() {
        return None;
    }
    let parsed = hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (micros, id) = s.split_once('_')?;
            Some((
                chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?,
                Uuid::try_parse(id).ok()?,
            ))
        });
    if parsed.is_none() {
        v.add("page_token", "is not a token this service issued");
    }
    parsed
}

/// The token after `last` (time and id): empty when this page was not full.
pub fn next_time_token(
    len: usize,
    limit: u64,
    last: Option<(chrono::DateTime<chrono::Utc>, Uuid)>,
) -> String {
    match last {
        Some((at, id)) if len as u64 == limit => {
            hex::encode(format!("{}_{}", at.timestamp_micros(), id))
        }
        _ => String::new(),
    }
}

/// The rows after `(at, id)` in a newest-first keyset order on `(time, id)`.
pub fn older_than(
    time: impl sea_orm::ColumnTrait,
    id: impl sea_orm::ColumnTrait,
    (at, last): (chrono::DateTime<chrono::Utc>, Uuid),
) -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(time.lt(at))
        .add(sea_orm::Condition::all().add(time.eq(at)).add(id.lt(last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_time_tokens_round_trip_and_foreign_ones_are_refused() {
        let mut v = Violations::new();
        let code = next_code_token(2, 2, Some("newsletter"));
        assert_eq!(
            parse_code_token(&mut v, &code).as_deref(),
            Some("newsletter")
        );
        assert_eq!(
            next_code_token(1, 2, Some("x")),
            "",
            "a short page ends the list"
        );
        let at = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let time = next_time_token(3, 3, Some((at, id)));
        assert_eq!(parse_time_token(&mut v, &time), Some((at, id)));
        assert!(v.is_empty());
        assert_eq!(parse_time_token(&mut v, "zz"), None);
        assert_eq!(parse_code_token(&mut v, "zz"), None);
        assert_eq!(v.into_vec().len(), 2);
    }

    #[test]
    fn a_code_page_is_its_size_and_code_or_names_both_bad_fields() {
        let token = next_code_token(1, 1, Some("gold"));
        assert_eq!(code_page(0, "").unwrap(), (100, None));
        assert_eq!(code_page(5, &token).unwrap(), (5, Some("gold".to_owned())));
        match code_page(5000, "zz") {
            Err(ApiError::InvalidArgument(v)) => assert_eq!(
                v.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(),
                ["page_size", "page_token"]
            ),
            other => panic!("not an invalid argument: {other:?}"),
        }
    }

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
