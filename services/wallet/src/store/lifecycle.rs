//! Identity's customer lifecycle events applied to the wallet: a merge moves the merged
//! customer's points to the surviving one, an erasure scrubs client-written text.
use chrono::Utc;
use loyalty_platform::events::{self, DomainEvent, EventHandler};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    sea_query::OnConflict,
};
use uuid::Uuid;

use super::{entities::ledger_accounts as accounts, ledger, merged_customers};

/// Consumes identity's `CustomerMerged` and `CustomerErased`.
pub struct CustomerLifecycle;

#[async_trait::async_trait]
impl EventHandler for CustomerLifecycle {
    fn handles(&self, event_type: &str) -> bool {
        [ev::CustomerMerged::TYPE, ev::CustomerErased::TYPE].contains(&event_type)
    }

    /// A malformed event (bad ids, undecodable payload) is logged and skipped: retrying it
    /// would never succeed and would hold up every later event.
    async fn apply(&self, txn: &DatabaseTransaction, e: &ev::EventEnvelope) -> anyhow::Result<()> {
        let skip = |why: &str| {
            tracing::warn!(event_id = %e.event_id, event_type = %e.event_type, "skipping event: {why}");
            Ok(())
        };
        let Ok(partner_id) = Uuid::parse_str(&e.partner_id) else {
            return skip("partner_id is not a UUID");
        };
        if let Some(m) = events::decode::<ev::CustomerMerged>(e) {
            let (Ok(merged), Ok(surviving)) = (
                Uuid::parse_str(&m.merged_customer_id),
                Uuid::parse_str(&m.surviving_customer_id),
            ) else {
                return skip("a customer id is not a UUID");
            };
            if merged == surviving {
                return skip("a customer cannot be merged into itself");
            }
            merge(txn, partner_id, merged, surviving).await
        } else if let Some(x) = events::decode::<ev::CustomerErased>(e) {
            let Ok(customer_id) = Uuid::parse_str(&x.customer_id) else {
                return skip("customer_id is not a UUID");
            };
            erase(txn, partner_id, customer_id).await
        } else {
            skip("payload does not decode")
        }
    }
}

/// Scrubs the free text of the erased customer's entries and of the customers merged into it
/// (duplicate accounts of the same person), in the caller's transaction.
pub async fn erase(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
) -> anyhow::Result<()> {
    let mut pending = vec![customer_id];
    let mut seen = std::collections::HashSet::new();
    let mut scrubbed = 0;
    while let Some(c) = pending.pop() {
        if !seen.insert(c) {
            continue;
        }
        scrubbed += super::scrub_text(txn, partner_id, c).await?;
        pending.extend(
            merged_customers::Entity::find()
                .filter(merged_customers::Column::PartnerId.eq(partner_id))
                .filter(merged_customers::Column::SurvivingCustomerId.eq(c))
                .all(txn)
                .await?
                .into_iter()
                .map(|m| m.merged_customer_id),
        );
    }
    tracing::info!(%customer_id, wallets = seen.len(), scrubbed, "wallet text of an erased customer scrubbed");
    Ok(())
}

/// Records that `merged` now lives on as `surviving` and moves its wallets there, in the
/// caller's transaction. Applying it again moves nothing more.
pub async fn merge(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    merged: Uuid,
    surviving: Uuid,
) -> anyhow::Result<()> {
    let now = Utc::now();
    // The merged customer stays locked until commit: an award racing the merge either lands
    // before (and is moved) or sees the mapping (and is redirected).
    super::lock_customer(txn, partner_id, merged).await?;
    // Where the points go: the survivor, or whoever it was merged into meanwhile. A cycle
    // back to the merged customer would strand points; refuse it loudly.
    let target = super::resolve_customer(txn, partner_id, surviving).await?;
    if target == merged {
        tracing::warn!(%merged, %surviving, "skipping merge: it would close a merge cycle");
        return Ok(());
    }
    merged_customers::Entity::insert(merged_customers::ActiveModel {
        partner_id: Set(partner_id),
        merged_customer_id: Set(merged),
        surviving_customer_id: Set(surviving),
        merged_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            merged_customers::Column::PartnerId,
            merged_customers::Column::MergedCustomerId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    let type_ids: Vec<Uuid> = accounts::Entity::find()
        .select_only()
        .column(accounts::Column::PointsTypeId)
        .distinct()
        .filter(accounts::Column::PartnerId.eq(partner_id))
        .filter(accounts::Column::CustomerId.eq(merged))
        .into_tuple()
        .all(txn)
        .await?;
    let mut moved = 0;
    for type_id in type_ids {
        let Some(ty) = ledger::find_type(txn, partner_id, &type_id.to_string()).await? else {
            continue;
        };
        let op = Uuid::now_v7();
        // Wallet locks in customer-id order, as transfers take them.
        let (mut from, mut to) = if merged < target {
            let f = ledger::lock_wallet(txn, partner_id, &ty, merged, now, op).await?;
            let t = ledger::lock_wallet(txn, partner_id, &ty, target, now, op).await?;
            (f, t)
        } else {
            let t = ledger::lock_wallet(txn, partner_id, &ty, target, now, op).await?;
            let f = ledger::lock_wallet(txn, partner_id, &ty, merged, now, op).await?;
            (f, t)
        };
        moved += from.merge_into(txn, &mut to).await?;
        from.flush(txn).await?;
        to.flush(txn).await?;
    }
    tracing::info!(%merged, %surviving, %target, lots = moved, "wallet merged");
    Ok(())
}
