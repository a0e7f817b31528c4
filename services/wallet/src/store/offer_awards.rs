//! Reward offer awards (rewards' `OfferAwarded`) credited to the wallet: money to the commerce
//! balance of the partner's CREDIT type in that currency (to the open balance at once for an
//! instantly redeemable offer), points to the award's points type. The platform's consumer
//! records the event id in the same transaction as the posting, and rewards publishes one event
//! per recorded award, so an award is credited exactly once however often it is delivered.
use chrono::Utc;
use loyalty_platform::{
    ApiError,
    events::{self, DomainEvent, EventHandler},
    time::from_timestamp,
};
use loyalty_proto::events::v1 as ev;
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::{
    catalog::{TypeFilter, list_types},
    ledger::Note,
    ops::{self, AwardInput, Target},
};
use crate::domain::{Cause, Unit};

/// Consumes rewards' `OfferAwarded`.
pub struct OfferAwards;

/// The CREDIT type of `currency` (its code), if the partner has one active.
async fn credit_type(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    currency: &str,
) -> Result<Option<String>, ApiError> {
    let types = list_types(txn, partner_id, TypeFilter::default(), None, 1000).await?;
    Ok(types
        .into_iter()
        .find(|t| t.definition.unit == Unit::Credit && t.definition.currency_code == currency)
        .map(|t| t.id.to_string()))
}

#[async_trait::async_trait]
impl EventHandler for OfferAwards {
    fn handles(&self, event_type: &str) -> bool {
        event_type == ev::OfferAwarded::TYPE
    }

    /// A malformed award is logged and skipped: retrying would never succeed and would hold up
    /// every later event. A money award in a currency without a CREDIT type is skipped the
    /// same way (logged), since the partner has nowhere to hold it.
    async fn apply(&self, txn: &DatabaseTransaction, e: &ev::EventEnvelope) -> anyhow::Result<()> {
        let skip = |why: &str| {
            tracing::warn!(event_id = %e.event_id, "skipping OfferAwarded: {why}");
            Ok(())
        };
        let Some(award) = events::decode::<ev::OfferAwarded>(e) else {
            return skip("payload does not decode");
        };
        let (Ok(partner_id), Ok(customer_id)) = (
            Uuid::parse_str(&e.partner_id),
            Uuid::parse_str(&award.customer_id),
        ) else {
            return skip("partner or customer id is not a UUID");
        };
        let (amount, points_type, auto_redeem) = match &award.amount {
            Some(m) if m.amount_minor > 0 => {
                match credit_type(txn, partner_id, &m.currency_code).await? {
                    Some(t) => (m.amount_minor, t, award.auto_redeem),
                    None => return skip("no active CREDIT points type in the award's currency"),
                }
            }
            Some(_) => return skip("award amount is not positive"),
            // Points never go to a commerce balance.
            None if award.points > 0 => (award.points, award.points_type_id.clone(), false),
            // A voucher award is the rewards service's (it issued the voucher): nothing to post.
            None if !award.reward_id.is_empty() => return Ok(()),
            None => return skip("award has neither money nor points"),
        };
        let now = Utc::now();
        let expire_at = award
            .expire_time
            .as_ref()
            .and_then(from_timestamp)
            .filter(|x| *x > now);
        if award.expire_time.is_some() && expire_at.is_none() {
            return skip("award expired before it could be credited");
        }
        let target = Target {
            partner_id,
            customer_id,
            points_type,
            now,
        };
        let input = AwardInput {
            amount,
            note: Note {
                cause: Some(Cause::Reward),
                reason: "reward offer award".to_owned(),
                reference: format!("offer-award:{}", award.award_id),
                business_unit_id: Uuid::parse_str(&award.business_unit_id).ok(),
                ..Note::default()
            },
            expire_at,
            release_at: None,
            auto_redeem,
        };
        match ops::award(txn, &target, input).await {
            Ok(_) => Ok(()),
            // A rule refusing it (unknown or inactive points type) will refuse it every time.
            Err(
                e @ (ApiError::NotFound(_)
                | ApiError::FailedPrecondition { .. }
                | ApiError::InvalidArgument(_)),
            ) => skip(&format!("the wallet refuses it: {e}")),
            Err(e) => Err(anyhow::anyhow!(
                "crediting offer award {}: {e}",
                award.award_id
            )),
        }
    }
}
