//! Quotes: what Evaluate answered, sealed so that Commit can honour it without Evaluate
//! writing anything. A quote id is `q1.<payload>.<mac>`: the payload is the deflated JSON of
//! [`QuoteBody`], the MAC an HMAC-SHA-256 over it with the checkout's quote secret, both
//! base64url. A POS cannot change a quoted price without breaking the MAC.
use std::{cell::RefCell, io::Read};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use super::Pricing;

const PREFIX: &str = "q1.";
/// Longest quote id accepted (a 500-line cart with several discounts a line stays below it).
pub const MAX_QUOTE_ID_LEN: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteBody {
    pub partner_id: Uuid,
    pub customer_id: Uuid,
    /// [`super::priced_request_hash`] of what was priced.
    pub request_hash: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub pricing: Pricing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("is not a quote id")]
    Malformed,
    #[error("is not a quote of this service")]
    BadSignature,
}

fn mac(secret: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"checkout-quote:");
    mac.update(payload.as_bytes());
    mac
}

thread_local! {
    // One compressor per thread, reset for each quote: a new one allocates and zeroes some
    // 300 KB of tables, which cost Evaluate more than the compression itself.
    static DEFLATE: RefCell<flate2::Compress> =
        RefCell::new(flate2::Compress::new(flate2::Compression::fast(), false));
}

/// Raw deflate (what `DeflateDecoder` reads) at the fastest level.
fn deflate(data: &[u8]) -> Vec<u8> {
    DEFLATE.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        loop {
            let read = c.total_in() as usize;
            match c.compress_vec(&data[read..], &mut out, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => return out,
                Ok(_) => out.reserve(out.capacity().max(64)),
                Err(e) => unreachable!("deflating into memory cannot fail: {e}"),
            }
        }
    })
}

/// Seals a quote into its id.
pub fn seal(body: &QuoteBody, secret: &[u8]) -> String {
    let json = serde_json::to_vec(body).expect("a quote serializes");
    let payload = URL_SAFE_NO_PAD.encode(deflate(&json));
    let tag = URL_SAFE_NO_PAD.encode(mac(secret, &payload).finalize().into_bytes());
    format!("{PREFIX}{payload}.{tag}")
}

/// Opens a quote id: checks its MAC (in constant time) before reading anything in it.
pub fn open(id: &str, secret: &[u8]) -> Result<QuoteBody, QuoteError> {
    if id.len() > MAX_QUOTE_ID_LEN {
        return Err(QuoteError::Malformed);
    }
    let rest = id.strip_prefix(PREFIX).ok_or(QuoteError::Malformed)?;
    let (payload, tag) = rest.split_once('.').ok_or(QuoteError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| QuoteError::Malformed)?;
    mac(secret, payload)
        .verify_slice(&tag)
        .map_err(|_| QuoteError::BadSignature)?;
    let compressed = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| QuoteError::Malformed)?;
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(compressed.as_slice())
        .take(16 * MAX_QUOTE_ID_LEN as u64)
        .read_to_end(&mut json)
        .map_err(|_| QuoteError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| QuoteError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PricedLine, Totals};

    fn body() -> QuoteBody {
        let now = Utc::now();
        QuoteBody {
            partner_id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            request_hash: "abc".into(),
            issued_at: now,
            expires_at: now + chrono::Duration::minutes(15),
            pricing: Pricing {
                lines: vec![PricedLine {
                    line_id: "1".into(),
                    product_id: "SKU-1".into(),
                    product_group_ids: vec![],
                    brand_id: String::new(),
                    quantity: 2,
                    unit_price_minor: 1250,
                    gross_minor: 2500,
                    discounts: vec![],
                    net_minor: 2500,
                    points: 25,
                }],
                totals: Totals {
                    currency_code: "EUR".into(),
                    gross_minor: 2500,
                    discount_minor: 0,
                    net_minor: 2500,
                    points_payment_minor: 0,
                    credit_payment_minor: 0,
                },
                applied: vec![],
                points_to_earn: 25,
                vouchers: vec![],
                rejected_vouchers: vec![],
                points_payment: None,
                points_spendable: 0,
                credit_payment: None,
                credit_spendable_minor: 0,
            },
        }
    }

    #[test]
    fn a_sealed_quote_opens_with_its_secret_only() {
        let b = body();
        let id = seal(&b, b"secret");
        assert!(id.starts_with("q1."));
        assert_eq!(open(&id, b"secret"), Ok(b));
        assert_eq!(open(&id, b"other"), Err(QuoteError::BadSignature));
    }

    #[test]
    fn a_500_line_quote_opens_and_the_reused_compressor_starts_afresh() {
        let mut big = body();
        let line = big.pricing.lines[0].clone();
        big.pricing.lines = (0..500)
            .map(|i| PricedLine {
                line_id: i.to_string(),
                product_id: format!("SKU-{i:05}"),
                ..line.clone()
            })
            .collect();
        let id = seal(&big, b"secret");
        assert!(id.len() < MAX_QUOTE_ID_LEN, "{} bytes", id.len());
        assert_eq!(open(&id, b"secret"), Ok(big));
        // The same thread's compressor, reset: the same quote seals the same.
        let small = body();
        assert_eq!(seal(&small, b"secret"), seal(&small, b"secret"));
    }

    #[test]
    fn a_changed_quote_is_refused() {
        let id = seal(&body(), b"secret");
        let (head, tag) = id.rsplit_once('.').unwrap();
        // Another payload under the old MAC.
        let mut cheaper = body();
        cheaper.pricing.totals.net_minor = 1;
        let forged = seal(&cheaper, b"guess");
        let (forged_head, _) = forged.rsplit_once('.').unwrap();
        assert_eq!(
            open(&format!("{forged_head}.{tag}"), b"secret"),
            Err(QuoteError::BadSignature)
        );
        assert_eq!(open(head, b"secret"), Err(QuoteError::Malformed));
        assert_eq!(open("", b"secret"), Err(QuoteError::Malformed));
        assert_eq!(open("q1.%%%.%%%", b"secret"), Err(QuoteError::Malformed));
        assert_eq!(
            open(&"q".repeat(MAX_QUOTE_ID_LEN + 1), b"secret"),
            Err(QuoteError::Malformed)
        );
    }
}
