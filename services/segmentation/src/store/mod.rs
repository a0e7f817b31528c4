//! Persistence of the segmentation service: segments and their memberships here, the
//! customer feature store in [`features`]. Every query is scoped by partner.
pub mod entities;
pub mod features;

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

use crate::domain::{Segment, SegmentKind, StoredMembership};
use entities::{membership_history, segment_members, segments};

/// Rows written per INSERT when filling a segment.
const INSERT_CHUNK: usize = 500;

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

fn segment_from(m: segments::Model) -> Result<Segment, ApiError> {
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
        Self { db }
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

    /// Adds members to a segment and records their entry in the membership history.
    pub async fn add_members(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        segment_id: Uuid,
        customers: &[Uuid],
        at: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        for chunk in customers.chunks(INSERT_CHUNK) {
            segment_members::Entity::insert_many(chunk.iter().map(|c| {
                segment_members::ActiveModel {
                    segment_id: Set(segment_id),
                    customer_id: Set(*c),
                    partner_id: Set(partner_id),
                    added_at: Set(at),
                }
            }))
            .exec_without_returning(conn)
            .await?;
            membership_history::Entity::insert_many(chunk.iter().map(|c| {
                membership_history::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    partner_id: Set(partner_id),
                    segment_id: Set(segment_id),
                    customer_id: Set(*c),
                    change: Set("entered".to_owned()),
                    at: Set(at),
                }
            }))
            .exec_without_returning(conn)
            .await?;
        }
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
        let members = segment_members::Entity::find()
            .filter(segment_members::Column::PartnerId.eq(partner_id))
            .filter(segment_members::Column::CustomerId.eq(customer_id))
            .order_by_asc(segment_members::Column::AddedAt)
            .order_by_asc(segment_members::Column::SegmentId)
            .all(&self.db)
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let names: BTreeMap<Uuid, String> = segments::Entity::find()
            .filter(segments::Column::PartnerId.eq(partner_id))
            .filter(segments::Column::Id.is_in(members.iter().map(|m| m.segment_id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| (s.id, s.display_name))
            .collect();
        Ok(members
            .into_iter()
            .filter_map(|m| {
                Some(StoredMembership {
                    segment_display_name: names.get(&m.segment_id)?.clone(),
                    segment_id: m.segment_id,
                    added_at: m.added_at,
                })
            })
            .collect())
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
        let members = if segment.criterion.uses_cart() {
            Vec::new()
        } else {
            features::admitted(conn, partner_id, &segment, now).await?
        };
        segment.recalculated(members.len(), now);
        self.insert_segment(conn, partner_id, &segment).await?;
        self.add_members(conn, partner_id, segment.id, &members, now)
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
mod tests {
    use super::*;
    use crate::domain::{Cart, CartLine, SegmentDraft, memberships};
    use loyalty_criteria::{Operator, RawCriterion, Value};
    use loyalty_platform::events::EventHandler;
    use loyalty_proto::events::v1::EventEnvelope;
    use sea_orm::TransactionTrait;

    async fn sqlite() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = loyalty_platform::Settings::defaults("segmentation", 0);
        settings.database.url =
            format!("sqlite://{}/test.db?mode=rwc", dir.path().display()).into();
        let db = loyalty_platform::db::connect_and_migrate::<crate::migration::Migrator>(&settings)
            .await
            .expect("sqlite");
        (dir, db)
    }

    fn envelope<E: events::DomainEvent>(partner_id: Uuid, event: &E) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::now_v7().to_string(),
            event_type: E::TYPE.to_owned(),
            partner_id: partner_id.to_string(),
            occur_time: Some(loyalty_platform::time::to_timestamp(Utc::now())),
            payload: event.encode_to_vec(),
            ..Default::default()
        }
    }

    async fn apply(db: &DatabaseConnection, e: EventEnvelope) {
        let txn = db.begin().await.unwrap();
        features::FeatureProjector.apply(&txn, &e).await.unwrap();
        txn.commit().await.unwrap();
    }

    fn customer_in(city: &str) -> ev::CustomerCreated {
        ev::CustomerCreated {
            customer_id: Uuid::now_v7().to_string(),
            attributes: [("city".to_owned(), city.to_owned())].into(),
            properties: Default::default(),
        }
    }

    fn segment(field: &str, op: Operator, value: Value, online: bool) -> Segment {
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
                    properties: Default::default(),
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
        let txn = db.begin().await.unwrap();
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
        let txn = db.begin().await.unwrap();
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
}
