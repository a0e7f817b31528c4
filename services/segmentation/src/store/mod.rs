//! Persistence of the segmentation service: segments and their memberships here, the
//! customer feature store in [`features`]. Every query is scoped by partner.
#[cfg(test)]
mod activity_tests;
#[cfg(test)]
mod audience_bench;
#[cfg(test)]
mod audience_tests;
pub mod audiences;
pub mod badges;
#[cfg(test)]
mod badges_tests;
pub mod cache;
#[cfg(test)]
mod compiled_criteria_tests;
#[cfg(test)]
mod dataset_tests;
pub mod entities;
pub mod features;
pub(crate) mod groups;
mod lifecycle;
#[cfg(test)]
mod lists_tests;
pub mod membership;
pub mod purchases;
#[cfg(test)]
mod purchases_tests;
pub mod rebuild;
#[cfg(test)]
mod rebuild_tests;
mod references;
#[cfg(test)]
mod references_tests;
pub mod rfm;
#[cfg(test)]
mod slicing_tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use loyalty_criteria::Criterion;
use loyalty_platform::{ApiError, events};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use crate::domain::{
    GroupKind, MembershipCause, Segment, SegmentKind, StoredMembership, stored_memberships,
};
use entities::segments;

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    slicing: features::Slicing,
}

pub(crate) fn segment_from(m: segments::Model) -> Result<Segment, ApiError> {
    let id = m.id;
    let bad = |what: String| ApiError::Internal(anyhow::anyhow!("segment {id}: {what}"));
    Ok(Segment {
        id: m.id,
        kind: SegmentKind::parse_str(&m.kind)
            .ok_or_else(|| bad(format!("unknown kind {:?}", m.kind)))?,
        criterion: Criterion::from_json(&m.criterion)
            .map_err(|e| bad(format!("stored criterion: {e}")))?,
        display_name: m.display_name,
        online_recalculation: m.online_recalculation,
        note: m.note,
        member_count: m.member_count,
        last_recalculated_at: m.last_recalculated_at,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            slicing: features::Slicing::OFF,
        }
    }

    /// How selections over a whole partner are split (`jobs.selection_slices`).
    pub fn with_slicing(mut self, slicing: features::Slicing) -> Self {
        self.slicing = slicing;
        self
    }

    /// Every customer of `partner_id` whom `criterion` admits at `now`, by id, in slices
    /// when the partner is large ([`features::admitted_sliced`]). Call it before writing in
    /// `conn`'s transaction: the slices do not see its uncommitted writes.
    pub(crate) async fn admitted(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        criterion: &Criterion,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, ApiError> {
        features::admitted_sliced(&self.db, self.slicing, conn, partner_id, criterion, now).await
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn insert_segment(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        s: &Segment,
    ) -> Result<(), ApiError> {
        segments::Entity::insert(segments::ActiveModel {
            id: Set(s.id),
            partner_id: Set(partner_id),
            display_name: Set(s.display_name.clone()),
            kind: Set(s.kind.as_str().to_owned()),
            online_recalculation: Set(s.online_recalculation),
            criterion: Set(s.criterion.to_json()),
            note: Set(s.note.clone()),
            member_count: Set(s.member_count),
            last_recalculated_at: Set(s.last_recalculated_at),
            created_at: Set(s.created_at),
            version: Set(s.version),
            updated_at: Set(s.updated_at),
        })
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }

    /// A segment of `partner_id`; another partner's segment is `None`.
    pub async fn segment(&self, partner_id: Uuid, id: Uuid) -> Result<Option<Segment>, ApiError> {
        segments::Entity::find_by_id(id)
            .filter(segments::Column::PartnerId.eq(partner_id))
            .one(&self.db)
            .await?
            .map(segment_from)
            .transpose()
    }

    /// The partner's segments recalculated online.
    pub async fn online_segments(&self, partner_id: Uuid) -> Result<Vec<Segment>, ApiError> {
        segments::Entity::find()
            .filter(segments::Column::PartnerId.eq(partner_id))
            .filter(segments::Column::OnlineRecalculation.eq(true))
            .order_by_asc(segments::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(segment_from)
            .collect()
    }

    /// The segments a customer is stored as a member of, oldest membership first.
    pub async fn memberships(
        &self,
        partner_id: Uuid,
        customer_id: Uuid,
    ) -> Result<Vec<StoredMembership>, ApiError> {
        let rows = cache::member_rows(&self.db, partner_id, customer_id).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let segments: BTreeMap<Uuid, Segment> = segments::Entity::find()
            .filter(segments::Column::PartnerId.eq(partner_id))
            .filter(segments::Column::Id.is_in(rows.iter().map(|r| r.segment_id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| segment_from(s).map(|s| (s.id, s)))
            .collect::<Result<_, _>>()?;
        Ok(stored_memberships(&rows, &segments))
    }

    /// Records a new segment filled with every customer of the partner who fulfils its
    /// criterion now, and publishes `SegmentChanged`, in the caller's transaction.
    pub async fn create_segment(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        mut segment: Segment,
    ) -> Result<Segment, ApiError> {
        let now = segment.created_at;
        let me = (GroupKind::Segment, segment.id);
        self.check_references(
            conn,
            partner_id,
            me,
            "segment.criterion",
            &segment.criterion,
        )
        .await?;
        let members = if segment.criterion.uses_cart() {
            Vec::new()
        } else {
            self.admitted(conn, partner_id, &segment.criterion, now)
                .await?
        };
        segment.recalculated(members.len(), now);
        self.insert_segment(conn, partner_id, &segment).await?;
        membership::enter_many(
            conn,
            partner_id,
            segment.group(),
            &members,
            now,
            MembershipCause::Creation,
            None,
        )
        .await?;
        events::enqueue(
            conn,
            Some(partner_id),
            &ev::SegmentChanged {
                segment_id: segment.id.to_string(),
            },
        )
        .await?;
        Ok(segment)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Cart, CartLine, SegmentDraft, memberships};
    use chrono::Utc;
    use entities::membership_history;
    use loyalty_criteria::{Operator, RawCriterion, Value};
    use loyalty_platform::events::EventHandler;
    use loyalty_proto::events::v1::EventEnvelope;
    use std::collections::BTreeSet;

    pub(crate) async fn sqlite() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = loyalty_platform::Settings::defaults("segmentation", 0);
        settings.database.url =
            format!("sqlite://{}/test.db?mode=rwc", dir.path().display()).into();
        let db = loyalty_platform::db::connect_and_migrate::<crate::migration::Migrator>(&settings)
            .await
            .expect("sqlite");
        (dir, db)
    }

    /// A membership cache that keeps nothing, for tests about something else.
    pub(crate) fn no_cache() -> cache::MembershipCache {
        cache::MembershipCache::new(
            loyalty_platform::cache::Cache::local(10),
            std::time::Duration::ZERO,
        )
    }

    pub(crate) async fn postgres() -> (loyalty_testkit::TestDb, DatabaseConnection) {
        let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
        let mut settings = loyalty_platform::Settings::defaults("segmentation", 0);
        settings.database.url = test_db.url().into();
        let db = loyalty_platform::db::connect_and_migrate::<crate::migration::Migrator>(&settings)
            .await
            .expect("postgres");
        (test_db, db)
    }

    pub(crate) fn envelope<E: events::DomainEvent>(partner_id: Uuid, event: &E) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::now_v7().to_string(),
            event_type: E::TYPE.to_owned(),
            partner_id: partner_id.to_string(),
            occur_time: Some(loyalty_platform::time::to_timestamp(Utc::now())),
            payload: event.encode_to_vec(),
            ..Default::default()
        }
    }

    pub(crate) async fn apply(db: &DatabaseConnection, e: EventEnvelope) {
        let txn = loyalty_platform::db::begin_write(db).await.unwrap();
        features::FeatureProjector.apply(&txn, &e).await.unwrap();
        txn.commit().await.unwrap();
    }

    pub(crate) fn customer_in(city: &str) -> ev::CustomerCreated {
        ev::CustomerCreated {
            customer_id: Uuid::now_v7().to_string(),
            attributes: [("city".to_owned(), city.to_owned())].into(),
            ..Default::default()
        }
    }

    pub(crate) fn segment(field: &str, op: Operator, value: Value, online: bool) -> Segment {
        SegmentDraft {
            display_name: "Segment".into(),
            kind: Some(SegmentKind::Standard),
            online_recalculation: online,
            criterion: Some(
                Criterion::parse(RawCriterion::Condition {
                    field: field.into(),
                    operator: Some(op),
                    values: vec![value],
                })
                .unwrap(),
            ),
            note: String::new(),
        }
        .into_segment(Uuid::now_v7(), Utc::now())
        .unwrap()
    }

    #[tokio::test]
    async fn a_new_segment_is_filled_from_the_feature_store_of_its_partner_only() {
        let (_dir, db) = sqlite().await;
        let store = Store::new(db.clone());
        let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
        let jana = customer_in("Praha");
        let petr = customer_in("Brno");
        apply(&db, envelope(partner, &jana)).await;
        apply(&db, envelope(partner, &petr)).await;
        apply(&db, envelope(other, &customer_in("Praha"))).await;
        apply(
            &db,
            envelope(
                partner,
                &ev::PurchaseCompleted {
                    customer_id: petr.customer_id.clone(),
                    net_amount_minor: 4_200,
                    ..Default::default()
                },
            ),
        )
        .await;
        // Redelivery of a profile change keeps the purchases.
        apply(
            &db,
            envelope(
                partner,
                &ev::CustomerUpdated {
                    customer_id: petr.customer_id.clone(),
                    attributes: [("city".to_owned(), "Praha".to_owned())].into(),
                    ..Default::default()
                },
            ),
        )
        .await;

        let praha = segment(
            "customer.city",
            Operator::Equal,
            Value::String("praha".into()),
            false,
        );
        let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
        let created = store.create_segment(&txn, partner, praha).await.unwrap();
        txn.commit().await.unwrap();
        assert_eq!(created.member_count, 2);
        assert!(created.last_recalculated_at.is_some());

        let petr_id: Uuid = petr.customer_id.parse().unwrap();
        let stored = store.memberships(partner, petr_id).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].segment_id, created.id);
        assert!(store.memberships(other, petr_id).await.unwrap().is_empty());
        assert_eq!(
            store.segment(partner, created.id).await.unwrap().as_ref(),
            Some(&created)
        );
        assert_eq!(store.segment(other, created.id).await.unwrap(), None);

        let petr_features = features::features(&db, partner, petr_id).await.unwrap();
        assert_eq!(petr_features.purchase_count, 1);
        assert_eq!(petr_features.total_spent_minor, 4_200);
        assert_eq!(
            petr_features.attributes.get("city").map(String::as_str),
            Some("Praha")
        );
    }

    #[tokio::test]
    async fn an_online_cart_segment_stores_no_members_and_is_found_at_checkout() {
        let (_dir, db) = sqlite().await;
        let store = Store::new(db.clone());
        let partner = Uuid::now_v7();
        let jana = customer_in("Praha");
        apply(&db, envelope(partner, &jana)).await;
        let big_cart = segment(
            "cart.total_minor",
            Operator::GreaterOrEqual,
            Value::Int(5_000),
            true,
        );
        let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
        let created = store.create_segment(&txn, partner, big_cart).await.unwrap();
        txn.commit().await.unwrap();
        assert_eq!(created.member_count, 0);

        let jana_id: Uuid = jana.customer_id.parse().unwrap();
        let online = store.online_segments(partner).await.unwrap();
        let mut facts = features::features(&db, partner, jana_id)
            .await
            .unwrap()
            .facts(Utc::now());
        Cart {
            currency_code: "EUR".into(),
            lines: vec![CartLine {
                product_id: "A".into(),
                product_group_ids: vec![],
                brand_id: String::new(),
                quantity: 2,
                unit_price_minor: 3_000,
            }],
        }
        .add_facts(&mut facts);
        let stored = store.memberships(partner, jana_id).await.unwrap();
        let found = memberships(&stored, &online, &facts);
        assert_eq!(found.len(), 1);
        assert!(found[0].online);
        assert_eq!(found[0].segment_id, created.id);
    }

    #[tokio::test]
    async fn a_malformed_event_is_skipped_not_retried_forever() {
        let (_dir, db) = sqlite().await;
        let mut e = envelope(Uuid::now_v7(), &customer_in("Praha"));
        e.partner_id = "not-a-uuid".into();
        apply(&db, e).await;
        let mut e = envelope(
            Uuid::now_v7(),
            &ev::PurchaseCompleted {
                customer_id: "nope".into(),
                ..Default::default()
            },
        );
        e.payload = vec![0xff, 0xff];
        apply(&db, e).await;
    }

    pub(crate) fn purchase(
        customer: &ev::CustomerCreated,
        amount_minor: i64,
    ) -> ev::PurchaseCompleted {
        ev::PurchaseCompleted {
            customer_id: customer.customer_id.clone(),
            net_amount_minor: amount_minor,
            ..Default::default()
        }
    }

    pub(crate) fn id(customer: &ev::CustomerCreated) -> Uuid {
        customer.customer_id.parse().unwrap()
    }

    pub(crate) async fn in_txn<T>(
        db: &DatabaseConnection,
        work: impl AsyncFnOnce(&sea_orm::DatabaseTransaction) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let txn = loyalty_platform::db::begin_write(db).await?;
        let r = work(&txn).await?;
        txn.commit().await?;
        Ok(r)
    }

    /// How many events of type `E` the partner's changes put in the outbox.
    pub(crate) async fn published<E: events::DomainEvent>(
        db: &DatabaseConnection,
        partner: Uuid,
    ) -> usize {
        use loyalty_platform::entities::outbox;
        outbox::Entity::find()
            .filter(outbox::Column::PartnerId.eq(partner))
            .filter(outbox::Column::EventType.eq(E::TYPE))
            .all(db)
            .await
            .unwrap()
            .len()
    }

    /// The FAILED_PRECONDITION reason of an error (or a description of another error).
    pub(crate) fn reason(e: ApiError) -> String {
        match e {
            ApiError::FailedPrecondition { reason, .. }
            | ApiError::PreconditionWithMetadata { reason, .. } => reason.to_owned(),
            other => format!("not a precondition: {other:?}"),
        }
    }

    pub(crate) async fn create(store: &Store, partner: Uuid, s: Segment) -> Segment {
        let txn = loyalty_platform::db::begin_write(store.db()).await.unwrap();
        let created = store.create_segment(&txn, partner, s).await.unwrap();
        txn.commit().await.unwrap();
        created
    }

    async fn member_count(store: &Store, partner: Uuid, segment: Uuid) -> i64 {
        store
            .segment(partner, segment)
            .await
            .unwrap()
            .unwrap()
            .member_count
    }

    async fn segment_ids(store: &Store, partner: Uuid, customer: Uuid) -> BTreeSet<Uuid> {
        store
            .memberships(partner, customer)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.segment_id)
            .collect()
    }

    async fn features_row(
        db: &DatabaseConnection,
        partner: Uuid,
        customer: Uuid,
    ) -> Option<entities::customer_features::Model> {
        entities::customer_features::Entity::find_by_id((partner, customer))
            .one(db)
            .await
            .unwrap()
    }

    /// The kinds of membership changes recorded for a customer, sorted.
    async fn history_of(db: &DatabaseConnection, partner: Uuid, customer: Uuid) -> Vec<String> {
        let mut changes = membership_history::Entity::find()
            .filter(membership_history::Column::PartnerId.eq(partner))
            .filter(membership_history::Column::CustomerId.eq(customer))
            .order_by_asc(membership_history::Column::Id)
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.change)
            .collect::<Vec<_>>();
        // Order of changes made within one millisecond is not significant here.
        changes.sort();
        changes
    }

    /// `SegmentChanged` events published for the partner's segments.
    async fn segment_changes(db: &DatabaseConnection, partner: Uuid) -> usize {
        use loyalty_platform::entities::outbox;
        outbox::Entity::find()
            .filter(outbox::Column::PartnerId.eq(partner))
            .filter(outbox::Column::EventType.eq(<ev::SegmentChanged as events::DomainEvent>::TYPE))
            .all(db)
            .await
            .unwrap()
            .len()
    }

    /// The `SegmentEntered`/`SegmentLeft` events published for a customer, oldest first, as
    /// `(entered, segment, cause)`.
    async fn membership_events(
        db: &DatabaseConnection,
        partner: Uuid,
        customer: Uuid,
    ) -> Vec<(bool, Uuid, String)> {
        use loyalty_platform::entities::outbox;
        use sea_orm::QueryOrder;
        let rows = outbox::Entity::find()
            .filter(outbox::Column::PartnerId.eq(partner))
            .order_by_asc(outbox::Column::Sequence)
            .all(db)
            .await
            .unwrap();
        let mut out = Vec::new();
        for row in rows {
            let e = EventEnvelope {
                event_type: row.event_type.clone(),
                payload: row.payload.clone(),
                ..Default::default()
            };
            let (entered, segment, who, cause) =
                if let Some(x) = events::decode::<ev::SegmentEntered>(&e) {
                    (true, x.segment_id, x.customer_id, x.cause)
                } else if let Some(x) = events::decode::<ev::SegmentLeft>(&e) {
                    (false, x.segment_id, x.customer_id, x.cause)
                } else {
                    continue;
                };
            if who == customer.to_string() {
                out.push((entered, segment.parse().unwrap(), cause));
            }
        }
        out
    }

    pub(crate) fn flexi(mut s: Segment) -> Segment {
        s.kind = SegmentKind::Flexi;
        s
    }

    /// Jana (Praha, one purchase) absorbs her duplicate account (Brno, two purchases).
    async fn a_merge_folds_the_duplicate_into_the_survivor(db: DatabaseConnection) {
        let store = Store::new(db.clone());
        let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
        let jana = customer_in("Praha");
        let duplicate = customer_in("Brno");
        apply(&db, envelope(partner, &jana)).await;
        apply(&db, envelope(partner, &duplicate)).await;
        apply(&db, envelope(partner, &purchase(&jana, 1_000))).await;
        apply(&db, envelope(partner, &purchase(&duplicate, 2_000))).await;
        apply(&db, envelope(partner, &purchase(&duplicate, 500))).await;
        // The same customer id at another partner is a different customer.
        apply(&db, envelope(other, &duplicate)).await;

        let brno = || {
            segment(
                "customer.city",
                Operator::Equal,
                Value::String("brno".into()),
                false,
            )
        };
        // Standard: fixed, so the survivor keeps the duplicate's membership.
        let standard_brno = create(&store, partner, brno()).await;
        // Flexi: re-run on the folded features.
        let flexi_brno = create(&store, partner, flexi(brno())).await;
        let flexi_buyers = create(
            &store,
            partner,
            flexi(segment(
                "features.purchase_count",
                Operator::GreaterOrEqual,
                Value::Int(3),
                false,
            )),
        )
        .await;
        let other_brno = create(&store, other, brno()).await;
        assert_eq!(
            segment_ids(&store, partner, id(&duplicate)).await,
            [standard_brno.id, flexi_brno.id].into()
        );
        assert!(segment_ids(&store, partner, id(&jana)).await.is_empty());

        let merge = envelope(
            partner,
            &ev::CustomerMerged {
                surviving_customer_id: jana.customer_id.clone(),
                merged_customer_id: duplicate.customer_id.clone(),
            },
        );
        apply(&db, merge.clone()).await;

        let check = || async {
            let folded = features::features(&db, partner, id(&jana)).await.unwrap();
            assert_eq!(folded.purchase_count, 3);
            assert_eq!(folded.total_spent_minor, 3_500);
            assert!(folded.last_purchase_at.is_some());
            assert_eq!(
                folded.attributes.get("city").map(String::as_str),
                Some("Praha")
            );
            assert_eq!(features_row(&db, partner, id(&duplicate)).await, None);
            assert!(
                segment_ids(&store, partner, id(&duplicate))
                    .await
                    .is_empty()
            );
            assert_eq!(
                segment_ids(&store, partner, id(&jana)).await,
                [standard_brno.id, flexi_buyers.id].into()
            );
            assert_eq!(member_count(&store, partner, standard_brno.id).await, 1);
            assert_eq!(member_count(&store, partner, flexi_brno.id).await, 0);
            assert_eq!(member_count(&store, partner, flexi_buyers.id).await, 1);
            assert_eq!(
                history_of(&db, partner, id(&duplicate)).await,
                ["entered", "entered", "left", "left"]
            );
            assert_eq!(
                history_of(&db, partner, id(&jana)).await,
                ["entered", "entered"]
            );
            // The other partner's customer with the same id is untouched.
            assert_eq!(
                segment_ids(&store, other, id(&duplicate)).await,
                [other_brno.id].into()
            );
            assert!(features_row(&db, other, id(&duplicate)).await.is_some());
            // Three creations, then one change per segment the merge touched.
            assert_eq!(segment_changes(&db, partner).await, 6);
            // One event per customer and change: the duplicate entered both Brno segments at
            // their creation and left them at the merge; Jana entered the two she now holds.
            let removed = MembershipCause::CustomerRemoved.as_str().to_owned();
            let recalculated = MembershipCause::Recalculation.as_str().to_owned();
            let created = MembershipCause::Creation.as_str().to_owned();
            let dup_events = membership_events(&db, partner, id(&duplicate)).await;
            assert_eq!(dup_events.len(), 4, "{dup_events:?}");
            assert_eq!(
                dup_events[..2].iter().cloned().collect::<BTreeSet<_>>(),
                [
                    (true, standard_brno.id, created.clone()),
                    (true, flexi_brno.id, created.clone())
                ]
                .into()
            );
            assert_eq!(
                dup_events[2..].iter().cloned().collect::<BTreeSet<_>>(),
                [
                    (false, standard_brno.id, removed.clone()),
                    (false, flexi_brno.id, removed.clone())
                ]
                .into()
            );
            assert_eq!(
                membership_events(&db, partner, id(&jana))
                    .await
                    .into_iter()
                    .collect::<BTreeSet<_>>(),
                [
                    (true, standard_brno.id, recalculated.clone()),
                    (true, flexi_buyers.id, recalculated.clone())
                ]
                .into()
            );
        };
        check().await;

        // Redelivered (same event) or published again (new event id): nothing changes.
        apply(&db, merge).await;
        check().await;
        apply(
            &db,
            envelope(
                partner,
                &ev::CustomerMerged {
                    surviving_customer_id: jana.customer_id.clone(),
                    merged_customer_id: duplicate.customer_id.clone(),
                },
            ),
        )
        .await;
        check().await;
    }

    #[tokio::test]
    async fn a_merge_folds_the_duplicate_into_the_survivor_on_postgres() {
        let (_db, db) = postgres().await;
        a_merge_folds_the_duplicate_into_the_survivor(db).await;
    }

    #[tokio::test]
    async fn a_merge_folds_the_duplicate_into_the_survivor_on_sqlite() {
        let (_dir, db) = sqlite().await;
        a_merge_folds_the_duplicate_into_the_survivor(db).await;
    }

    #[tokio::test]
    async fn a_merge_into_a_survivor_unknown_here_carries_the_duplicates_purchases() {
        let (_db, db) = postgres().await;
        let partner = Uuid::now_v7();
        let duplicate = customer_in("Brno");
        apply(&db, envelope(partner, &duplicate)).await;
        apply(&db, envelope(partner, &purchase(&duplicate, 700))).await;
        let survivor = Uuid::now_v7();
        apply(
            &db,
            envelope(
                partner,
                &ev::CustomerMerged {
                    surviving_customer_id: survivor.to_string(),
                    merged_customer_id: duplicate.customer_id.clone(),
                },
            ),
        )
        .await;
        let folded = features::features(&db, partner, survivor).await.unwrap();
        assert_eq!(folded.purchase_count, 1);
        assert_eq!(folded.total_spent_minor, 700);
        assert!(
            folded.attributes.is_empty(),
            "the profile is the survivor's"
        );
        assert_eq!(features_row(&db, partner, id(&duplicate)).await, None);
    }

    async fn an_erased_customer_leaves_no_features_memberships_or_history(db: DatabaseConnection) {
        let store = Store::new(db.clone());
        let partner = Uuid::now_v7();
        let jana = customer_in("Praha");
        let petr = customer_in("Praha");
        apply(&db, envelope(partner, &jana)).await;
        apply(&db, envelope(partner, &petr)).await;
        apply(&db, envelope(partner, &purchase(&jana, 1_000))).await;
        let praha = create(
            &store,
            partner,
            segment(
                "customer.city",
                Operator::Equal,
                Value::String("praha".into()),
                false,
            ),
        )
        .await;
        assert_eq!(praha.member_count, 2);

        let erase = envelope(
            partner,
            &ev::CustomerErased {
                customer_id: jana.customer_id.clone(),
            },
        );
        apply(&db, erase.clone()).await;
        let check = || async {
            assert_eq!(features_row(&db, partner, id(&jana)).await, None);
            assert!(segment_ids(&store, partner, id(&jana)).await.is_empty());
            assert!(history_of(&db, partner, id(&jana)).await.is_empty());
            assert_eq!(member_count(&store, partner, praha.id).await, 1);
            assert_eq!(
                segment_ids(&store, partner, id(&petr)).await,
                [praha.id].into()
            );
            assert!(features_row(&db, partner, id(&petr)).await.is_some());
            assert_eq!(segment_changes(&db, partner).await, 2);
            // Jana entered at creation and left when erased, once however often it is applied.
            assert_eq!(
                membership_events(&db, partner, id(&jana)).await,
                [
                    (
                        true,
                        praha.id,
                        MembershipCause::Creation.as_str().to_owned()
                    ),
                    (
                        false,
                        praha.id,
                        MembershipCause::CustomerRemoved.as_str().to_owned()
                    )
                ]
            );
        };
        check().await;
        apply(&db, erase).await;
        check().await;
    }

    #[tokio::test]
    async fn an_erased_customer_leaves_no_features_memberships_or_history_on_postgres() {
        let (_db, db) = postgres().await;
        an_erased_customer_leaves_no_features_memberships_or_history(db).await;
    }

    #[tokio::test]
    async fn an_erased_customer_leaves_no_features_memberships_or_history_on_sqlite() {
        let (_dir, db) = sqlite().await;
        an_erased_customer_leaves_no_features_memberships_or_history(db).await;
    }

    #[tokio::test]
    async fn a_malformed_merge_or_erasure_is_skipped() {
        let (_dir, db) = sqlite().await;
        let partner = Uuid::now_v7();
        let jana = customer_in("Praha");
        apply(&db, envelope(partner, &jana)).await;
        apply(&db, envelope(partner, &purchase(&jana, 1_000))).await;
        for bad in [
            ev::CustomerMerged {
                surviving_customer_id: jana.customer_id.clone(),
                merged_customer_id: jana.customer_id.clone(),
            },
            ev::CustomerMerged {
                surviving_customer_id: "nope".into(),
                merged_customer_id: jana.customer_id.clone(),
            },
            ev::CustomerMerged {
                surviving_customer_id: Uuid::now_v7().to_string(),
                merged_customer_id: String::new(),
            },
        ] {
            apply(&db, envelope(partner, &bad)).await;
        }
        apply(
            &db,
            envelope(
                partner,
                &ev::CustomerErased {
                    customer_id: "not-a-uuid".into(),
                },
            ),
        )
        .await;
        let mut undecodable = envelope(
            partner,
            &ev::CustomerErased {
                customer_id: jana.customer_id.clone(),
            },
        );
        undecodable.payload = vec![0xff, 0xff];
        apply(&db, undecodable).await;
        let kept = features::features(&db, partner, id(&jana)).await.unwrap();
        assert_eq!(kept.purchase_count, 1);
        assert_eq!(kept.total_spent_minor, 1_000);
    }

    #[tokio::test]
    async fn late_events_of_a_merged_account_reach_the_survivor_and_of_an_erased_one_are_dropped() {
        let (_db, db) = postgres().await;
        let partner = Uuid::now_v7();
        let jana = customer_in("Praha");
        let duplicate = customer_in("Brno");
        apply(&db, envelope(partner, &jana)).await;
        apply(&db, envelope(partner, &duplicate)).await;
        apply(
            &db,
            envelope(
                partner,
                &ev::CustomerMerged {
                    surviving_customer_id: jana.customer_id.clone(),
                    merged_customer_id: duplicate.customer_id.clone(),
                },
            ),
        )
        .await;
        // Checkout's stream is not ordered with identity's: a purchase may arrive later.
        apply(&db, envelope(partner, &purchase(&duplicate, 900))).await;
        apply(
            &db,
            envelope(
                partner,
                &ev::CustomerUpdated {
                    customer_id: duplicate.customer_id.clone(),
                    attributes: [("city".to_owned(), "Ostrava".to_owned())].into(),
                    ..Default::default()
                },
            ),
        )
        .await;
        let survivor = features::features(&db, partner, id(&jana)).await.unwrap();
        assert_eq!(survivor.purchase_count, 1);
        assert_eq!(survivor.total_spent_minor, 900);
        assert_eq!(
            survivor.attributes.get("city").map(String::as_str),
            Some("Praha")
        );
        assert_eq!(features_row(&db, partner, id(&duplicate)).await, None);

        apply(
            &db,
            envelope(
                partner,
                &ev::CustomerErased {
                    customer_id: jana.customer_id.clone(),
                },
            ),
        )
        .await;
        apply(&db, envelope(partner, &purchase(&duplicate, 100))).await;
        apply(&db, envelope(partner, &purchase(&jana, 100))).await;
        apply(
            &db,
            envelope(
                partner,
                &ev::CustomerUpdated {
                    customer_id: jana.customer_id.clone(),
                    attributes: [("city".to_owned(), "Praha".to_owned())].into(),
                    ..Default::default()
                },
            ),
        )
        .await;
        assert_eq!(features_row(&db, partner, id(&jana)).await, None);
        assert_eq!(features_row(&db, partner, id(&duplicate)).await, None);
    }
}
