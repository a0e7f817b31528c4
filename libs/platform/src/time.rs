//! Conversions between `chrono` and `google.protobuf.Timestamp`.
use chrono::{DateTime, TimeZone, Utc};

pub fn to_timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// `None` for an out-of-range timestamp.
pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    Utc.timestamp_opt(t.seconds, t.nanos as u32).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_bad_nanos_are_refused() {
        let now = Utc::now();
        assert_eq!(from_timestamp(&to_timestamp(now)), Some(now));
        assert_eq!(
            from_timestamp(&prost_types::Timestamp {
                seconds: 0,
                nanos: -1
            }),
            None
        );
    }
}
