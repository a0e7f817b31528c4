//! The wallet calls that pay for vouchers with points: hold, capture, release and refund,
//! each on behalf of the caller (its key is forwarded) and each with an idempotency key
//! derived from the voucher and the step (see `domain::payments::keys`).
use loyalty_platform::{ApiError, Principal, client::outgoing};
use loyalty_proto::wallet::v1::{self as wallet, wallet_service_client::WalletServiceClient};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::domain::{
    payments::{HOLD_SECONDS, keys},
    vouchers::reason,
};

/// The wallet as rewards uses it; `None` when no wallet is configured (payments are then
/// refused with POINTS_PAYMENT_UNAVAILABLE rather than given away).
#[derive(Clone, Default)]
pub struct PointsWallet(Option<WalletServiceClient<Channel>>);

/// The wallet's reason for a reservation that is no longer held (captured, released,
/// expired).
const RESERVATION_NOT_HELD: &str = "RESERVATION_NOT_HELD";

fn upstream(s: tonic::Status) -> ApiError {
    ApiError::from_upstream("wallet", s)
}

/// Whether the wallet refused because the hold is no longer held (captured elsewhere,
/// released, lapsed).
pub(super) fn not_held(e: &ApiError) -> bool {
    matches!(e, ApiError::FailedPrecondition { reason, .. } if *reason == RESERVATION_NOT_HELD)
}

fn uuid_of(s: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("wallet answered a bad {what}")))
}

impl PointsWallet {
    pub fn new(channel: Option<Channel>) -> Self {
        Self(channel.map(WalletServiceClient::new))
    }

    fn client(&self) -> Result<WalletServiceClient<Channel>, ApiError> {
        self.0.clone().ok_or_else(|| {
            ApiError::precondition(
                reason::POINTS_PAYMENT_UNAVAILABLE,
                "the reward has a points price and no wallet is configured to pay it",
            )
        })
    }

    /// Fails early (before any voucher change) when points cannot be moved at all.
    pub fn available(&self) -> Result<(), ApiError> {
        self.client().map(|_| ())
    }

    /// Holds `points` of the customer's default points type. Insufficient points and a
    /// spending block come back as the wallet's FAILED_PRECONDITION reasons.
    pub async fn hold(
        &self,
        who: &Principal,
        key: String,
        customer_id: Uuid,
        points: i64,
        reference: String,
    ) -> Result<Uuid, ApiError> {
        let r = self
            .client()?
            .reserve_points(outgoing(
                wallet::ReservePointsRequest {
                    idempotency_key: key,
                    customer_id: customer_id.to_string(),
                    points,
                    reference,
                    ttl_seconds: HOLD_SECONDS,
                    ..Default::default()
                },
                who,
            ))
            .await
            .map_err(upstream)?
            .into_inner();
        uuid_of(
            &r.reservation.map(|r| r.id).unwrap_or_default(),
            "reservation id",
        )
    }

    /// Turns the hold that paid for a voucher into a spend with reference
    /// "voucher:<voucher id>"; returns the posting. A retry answers the same posting.
    pub async fn capture(
        &self,
        who: &Principal,
        voucher_id: Uuid,
        reservation_id: Uuid,
    ) -> Result<Uuid, ApiError> {
        let r = self
            .client()?
            .capture_points(outgoing(
                wallet::CapturePointsRequest {
                    idempotency_key: keys::capture(voucher_id, reservation_id),
                    reservation_id: reservation_id.to_string(),
                    points: 0,
                    reason: "voucher".to_owned(),
                    reference: format!("voucher:{voucher_id}"),
                    cause: wallet::PostingCause::Reward as i32,
                },
                who,
            ))
            .await
            .map_err(upstream)?
            .into_inner();
        let id = r
            .postings
            .iter()
            .find(|p| p.kind == wallet::PostingKind::Capture as i32)
            .map(|p| p.id.clone())
            .unwrap_or_default();
        uuid_of(&id, "capture posting id")
    }

    /// Gives a hold back (the voucher change it was for did not happen). Best effort: an
    /// unreleased hold lapses on its own after `HOLD_SECONDS`.
    pub async fn release(&self, who: &Principal, reservation_id: Uuid) {
        let Ok(mut client) = self.client() else {
            return;
        };
        let released = client
            .release_points(outgoing(
                wallet::ReleasePointsRequest {
                    idempotency_key: keys::release(reservation_id),
                    reservation_id: reservation_id.to_string(),
                },
                who,
            ))
            .await;
        match released {
            Ok(_) => {}
            Err(s) if not_held(&upstream(s.clone())) => {}
            Err(s) => tracing::warn!(
                %reservation_id,
                error = %s,
                "releasing a voucher payment hold failed; it lapses on its own"
            ),
        }
    }

    /// Gives back the points of the payment made through `reservation_id`: the capture is
    /// asked for again (the wallet answers its posting, or captures a hold still pending) and
    /// then reversed. A hold that lapsed uncaptured took nothing, so there is nothing to
    /// give back.
    pub async fn refund(
        &self,
        who: &Principal,
        voucher_id: Uuid,
        reservation_id: Uuid,
        why: &str,
    ) -> Result<(), ApiError> {
        let posting = match self.capture(who, voucher_id, reservation_id).await {
            Ok(p) => p,
            Err(e) if not_held(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.client()?
            .reverse_posting(outgoing(
                wallet::ReversePostingRequest {
                    idempotency_key: keys::refund(voucher_id, reservation_id),
                    posting_id: posting.to_string(),
                    amount: 0,
                    reason: why.chars().take(200).collect(),
                    reference: format!("voucher:{voucher_id}"),
                    cause: wallet::PostingCause::Reward as i32,
                },
                who,
            ))
            .await
            .map_err(upstream)?;
        Ok(())
    }
}
