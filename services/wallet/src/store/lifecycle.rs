//! Identity's customer lifecycle events applied to the wallet: a merge moves the merged
//! customer's points to the surviving one, an erasure scrubs client-written text.
use chrono::Utc;
use loyalty_platform::events::{self, DomainEvent, EventHandler};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    sea_query::OnConflict,
};
use uuid::Uuid;

use super::merged_customers;
use crate::domain::{merge_entries, merge_lots};

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

/// Records that `merged` now lives on as `surviving` and moves its lots there, in the
/// caller's transaction. Applying it again moves nothing more.
pub async fn merge(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    merged: Uuid,
    surviving: Uuid,
) -> anyhow::Result<()> {
    let now = Utc::now();
    // The merged wallet stays locked until commit: an award racing the merge either lands
    // before (and is moved) or sees the mapping (and is redirected).
    super::lock_wallet(txn, partner_id, merged).await?;
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
    let entries = super::entries(txn, partner_id, merged).await?;
    let lots = merge_lots(&entries, now);
    for lot in &lots {
        for entry in merge_entries(*lot, merged, target, now) {
            super::insert(txn, partner_id, &entry).await?;
        }
    }
    tracing::info!(%merged, %surviving, %target, lots = lots.len(), "wallet merged");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Against a real PostgreSQL database, migrated with the wallet Migrator.
    use chrono::{DateTime, Duration};
    use loyalty_testkit::TestDb;
    use sea_orm::{Database, DatabaseConnection, TransactionTrait};
    use sea_orm_migration::MigratorTrait;

    use super::*;
    use crate::{
        domain::{Award, Balance, EntryKind, LedgerEntry},
        store,
    };

    /// A time `days` from now at the microsecond precision PostgreSQL stores.
    fn in_days(days: i64) -> DateTime<Utc> {
        let t = Utc::now() + Duration::days(days);
        DateTime::from_timestamp_micros(t.timestamp_micros()).expect("in range")
    }

    async fn database() -> (TestDb, DatabaseConnection) {
        let test_db = TestDb::postgres()
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        let db = Database::connect(test_db.url()).await.expect("connect");
        crate::migration::Migrator::up(&db, None)
            .await
            .expect("migrate");
        (test_db, db)
    }

    fn envelope<E: DomainEvent>(partner_id: Uuid, event: &E) -> ev::EventEnvelope {
        ev::EventEnvelope {
            event_id: Uuid::now_v7().to_string(),
            event_type: E::TYPE.into(),
            producer: "identity".into(),
            partner_id: partner_id.to_string(),
            payload: event.encode_to_vec(),
            ..Default::default()
        }
    }

    async fn apply(db: &DatabaseConnection, e: &ev::EventEnvelope) {
        let txn = db.begin().await.expect("begin");
        CustomerLifecycle.apply(&txn, e).await.expect("apply");
        txn.commit().await.expect("commit");
    }

    fn merged(partner_id: Uuid, merged: Uuid, surviving: Uuid) -> ev::EventEnvelope {
        envelope(
            partner_id,
            &ev::CustomerMerged {
                surviving_customer_id: surviving.to_string(),
                merged_customer_id: merged.to_string(),
            },
        )
    }

    async fn award(
        db: &DatabaseConnection,
        partner_id: Uuid,
        customer_id: Uuid,
        points: i64,
        expires_at: Option<DateTime<Utc>>,
        released_at: Option<DateTime<Utc>>,
    ) {
        let entry = Award {
            customer_id,
            points,
            reason: "birthday of Jane Doe".into(),
            reference: "jane@example.com".into(),
            expires_at,
            released_at,
        }
        .into_entry(Utc::now());
        store::insert(db, partner_id, &entry).await.expect("award");
    }

    async fn entries(db: &DatabaseConnection, partner_id: Uuid, c: Uuid) -> Vec<LedgerEntry> {
        store::entries(db, partner_id, c).await.expect("entries")
    }

    async fn balance(db: &DatabaseConnection, partner_id: Uuid, c: Uuid) -> Balance {
        Balance::of(&entries(db, partner_id, c).await, Utc::now())
    }

    #[tokio::test]
    async fn a_merge_moves_the_balance_and_keeps_expiry_and_release_times() {
        let (_t, db) = database().await;
        let (p, a, b) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let soon = in_days(30);
        let later = in_days(14);
        award(&db, p, a, 100, None, None).await;
        award(&db, p, a, 40, Some(soon), None).await;
        award(&db, p, a, 25, None, Some(later)).await;
        award(&db, p, b, 10, None, None).await;
        let before_a = entries(&db, p, a).await.len();

        apply(&db, &merged(p, a, b)).await;

        let (ba, bb) = (balance(&db, p, a).await, balance(&db, p, b).await);
        assert_eq!((ba.available, ba.pending), (0, 0));
        assert_eq!((bb.available, bb.pending), (150, 25));
        assert_eq!(bb.next_expiry, Some((soon, 40)));
        // Appended only: the merged wallet's awards are still there, plus one debit per lot.
        let after_a = entries(&db, p, a).await;
        assert_eq!(after_a.len(), before_a + 3);
        let credits: Vec<_> = entries(&db, p, b)
            .await
            .into_iter()
            .filter(|e| e.kind == EntryKind::Merge)
            .map(|e| (e.points, e.expires_at, e.released_at))
            .collect();
        assert_eq!(credits.len(), 3);
        assert!(credits.contains(&(40, Some(soon), None)));
        assert!(credits.contains(&(25, None, Some(later))));
        assert!(credits.contains(&(100, None, None)));
        assert!(
            after_a
                .iter()
                .filter(|e| e.kind == EntryKind::Merge)
                .all(|e| e.points < 0 && e.reference.contains(&b.to_string()))
        );
    }

    #[tokio::test]
    async fn applying_a_merge_twice_moves_the_points_once() {
        let (_t, db) = database().await;
        let (p, a, b) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        award(&db, p, a, 70, Some(in_days(3)), None).await;
        apply(&db, &merged(p, a, b)).await;
        let count = entries(&db, p, b).await.len();
        apply(&db, &merged(p, a, b)).await;
        assert_eq!(entries(&db, p, b).await.len(), count);
        assert_eq!(balance(&db, p, b).await.available, 70);
        assert_eq!(balance(&db, p, a).await.available, 0);
    }

    #[tokio::test]
    async fn awards_for_a_merged_customer_go_to_the_survivor() {
        let (_t, db) = database().await;
        let (p, a, b, c) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        apply(&db, &merged(p, a, b)).await;
        apply(&db, &merged(p, b, c)).await;
        assert_eq!(store::resolve_customer(&db, p, a).await.unwrap(), c);
        assert_eq!(store::resolve_customer(&db, p, c).await.unwrap(), c);
        // Another partner's merge does not redirect this partner's customer.
        assert_eq!(
            store::resolve_customer(&db, Uuid::now_v7(), a)
                .await
                .unwrap(),
            a
        );
    }

    #[tokio::test]
    async fn a_merge_of_another_partner_moves_nothing() {
        let (_t, db) = database().await;
        let (p, a, b) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        award(&db, p, a, 12, None, None).await;
        apply(&db, &merged(Uuid::now_v7(), a, b)).await;
        assert_eq!(balance(&db, p, a).await.available, 12);
        assert!(entries(&db, p, b).await.is_empty());
    }

    #[tokio::test]
    async fn an_erasure_scrubs_free_text_and_keeps_amounts() {
        let (_t, db) = database().await;
        let (p, a, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        award(&db, p, a, 30, None, None).await;
        award(&db, p, other, 5, None, None).await;
        let e = envelope(
            p,
            &ev::CustomerErased {
                customer_id: a.to_string(),
            },
        );
        apply(&db, &e).await;
        let scrubbed = entries(&db, p, a).await;
        assert_eq!(scrubbed.len(), 1);
        assert_eq!(scrubbed[0].reason, crate::domain::ERASED_REASON);
        assert_eq!(scrubbed[0].reference, "");
        assert_eq!(scrubbed[0].points, 30);
        let untouched = entries(&db, p, other).await;
        assert_eq!(untouched[0].reference, "jane@example.com");
    }

    #[tokio::test]
    async fn an_erasure_also_scrubs_the_wallets_merged_into_the_customer() {
        let (_t, db) = database().await;
        let (p, dup, survivor) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        award(&db, p, dup, 30, None, None).await;
        apply(&db, &merged(p, dup, survivor)).await;
        let e = envelope(
            p,
            &ev::CustomerErased {
                customer_id: survivor.to_string(),
            },
        );
        apply(&db, &e).await;
        let dup_entries = entries(&db, p, dup).await;
        let award_entry = dup_entries
            .iter()
            .find(|e| e.kind == EntryKind::Award)
            .expect("award");
        assert_eq!(award_entry.reason, crate::domain::ERASED_REASON);
        assert_eq!(award_entry.reference, "");
        // The merge entries keep their ids-only text and the balances stay.
        assert!(
            dup_entries
                .iter()
                .filter(|e| e.kind == EntryKind::Merge)
                .all(|e| e.reference.starts_with("merge:"))
        );
        assert_eq!(balance(&db, p, survivor).await.available, 30);
    }

    #[tokio::test]
    async fn malformed_events_are_skipped() {
        let (_t, db) = database().await;
        let p = Uuid::now_v7();
        let mut bad_payload = merged(p, Uuid::now_v7(), Uuid::now_v7());
        bad_payload.payload = vec![0xff, 0xff, 0xff];
        let bad_ids = envelope(
            p,
            &ev::CustomerMerged {
                surviving_customer_id: "nope".into(),
                merged_customer_id: Uuid::now_v7().to_string(),
            },
        );
        let a = Uuid::now_v7();
        let self_merge = merged(p, a, a);
        let mut bad_partner = merged(p, Uuid::now_v7(), Uuid::now_v7());
        bad_partner.partner_id = "x".into();
        for e in [bad_payload, bad_ids, self_merge, bad_partner] {
            let txn = db.begin().await.expect("begin");
            assert!(CustomerLifecycle.apply(&txn, &e).await.is_ok());
            txn.commit().await.expect("commit");
        }
        assert_eq!(store::resolve_customer(&db, p, a).await.unwrap(), a);
    }

    #[tokio::test]
    async fn merge_and_erasure_work_on_sqlite_too() {
        let db = Database::connect("sqlite::memory:").await.expect("sqlite");
        crate::migration::Migrator::up(&db, None)
            .await
            .expect("migrate");
        let (p, a, b) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        award(&db, p, a, 80, Some(in_days(10)), None).await;
        for _ in 0..2 {
            let txn = loyalty_platform::db::begin_write(&db).await.expect("begin");
            CustomerLifecycle
                .apply(&txn, &merged(p, a, b))
                .await
                .expect("merge");
            txn.commit().await.expect("commit");
        }
        assert_eq!(balance(&db, p, a).await.available, 0);
        assert_eq!(balance(&db, p, b).await.available, 80);
        assert_eq!(store::resolve_customer(&db, p, a).await.unwrap(), b);
        let erased = envelope(
            p,
            &ev::CustomerErased {
                customer_id: a.to_string(),
            },
        );
        apply(&db, &erased).await;
        let award_entry = entries(&db, p, a)
            .await
            .into_iter()
            .find(|e| e.kind == EntryKind::Award)
            .expect("award");
        assert_eq!(award_entry.reference, "");
    }
}
