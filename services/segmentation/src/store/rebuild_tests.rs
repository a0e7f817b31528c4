//! Rebuilding the feature projection: project a history of events, empty the projection and
//! forget what was consumed, replay the same feed through the platform's consumer path, and
//! get the same features; erased customers stay erased and memberships are not touched.
use std::collections::BTreeMap;

use loyalty_platform::{
    entities::{consumer_cursors, outbox},
    events,
};
use loyalty_proto::events::v1::{self as ev, EventEnvelope};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use uuid::Uuid;

use super::entities::{customer_features, customer_tombstones};
use super::features::{FeatureProjector, features_from};
use super::rebuild::reset_projection;
use super::tests::{create, customer_in, envelope, id, postgres, purchase, segment, sqlite};
use super::{Store, features};
use crate::SERVICE;
use crate::domain::Features;
use loyalty_criteria::{Operator, Value};

const SOURCE: &str = "feed:identity";

/// Consumes the feed as the platform's feed consumer does; returns how many events were
/// applied (not skipped as already consumed).
async fn consume(db: &DatabaseConnection, feed: &[EventEnvelope]) -> usize {
    let mut applied = 0;
    for e in feed {
        let cursor = Some((SOURCE, e.sequence));
        if events::apply_once(db, SERVICE, &FeatureProjector, e, cursor)
            .await
            .unwrap()
        {
            applied += 1;
        }
    }
    applied
}

/// Every feature row: the features and their search form (the update time differs).
async fn projection(
    db: &DatabaseConnection,
) -> BTreeMap<(Uuid, Uuid), (Features, serde_json::Value)> {
    customer_features::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            (
                (m.partner_id, m.customer_id),
                (features_from(&m), m.criteria_facts.clone()),
            )
        })
        .collect()
}

async fn rebuild_replays_to_the_same_features(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let (jana, duplicate, erased) = (
        customer_in("Praha"),
        customer_in("Brno"),
        customer_in("Praha"),
    );
    let campaign = Uuid::now_v7();
    let mut feed: Vec<EventEnvelope> = vec![
        envelope(partner, &jana),
        envelope(partner, &duplicate),
        envelope(partner, &erased),
        envelope(partner, &purchase(&jana, 1_000)),
        envelope(partner, &purchase(&duplicate, 2_500)),
        envelope(partner, &purchase(&erased, 300)),
        envelope(
            partner,
            &ev::ConsentChanged {
                customer_id: jana.customer_id.clone(),
                consent_type_code: "newsletter".into(),
                state: "granted".into(),
                purpose: "marketing".into(),
                ..Default::default()
            },
        ),
        envelope(
            partner,
            &ev::EventTracked {
                customer_id: duplicate.customer_id.clone(),
                customer_event_id: Uuid::now_v7().to_string(),
                event_type_code: "visit".into(),
                ..Default::default()
            },
        ),
        envelope(
            partner,
            &ev::MessageOpened {
                message_id: Uuid::now_v7().to_string(),
                customer_id: jana.customer_id.clone(),
                campaign_id: campaign.to_string(),
                first: true,
            },
        ),
        envelope(
            partner,
            &ev::CustomerMerged {
                surviving_customer_id: jana.customer_id.clone(),
                merged_customer_id: duplicate.customer_id.clone(),
            },
        ),
        envelope(
            partner,
            &ev::CustomerErased {
                customer_id: erased.customer_id.clone(),
            },
        ),
    ];
    for (i, e) in feed.iter_mut().enumerate() {
        e.sequence = i as i64 + 1;
    }
    assert_eq!(consume(&db, &feed).await, feed.len());
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
    let before = projection(&db).await;
    assert_eq!(before.len(), 1, "only Jana is left: {before:?}");
    let folded = &before[&(partner, id(&jana))].0;
    assert_eq!(
        (folded.purchase_count, folded.total_spent_minor),
        (2, 3_500)
    );
    let published = outbox::Entity::find().count(&db).await.unwrap();

    assert_eq!(reset_projection(&db, SERVICE).await.unwrap(), 1);
    assert!(projection(&db).await.is_empty());
    assert!(
        consumer_cursors::Entity::find_by_id(SOURCE.to_owned())
            .one(&db)
            .await
            .unwrap()
            .is_none(),
        "the feed is read again from the start"
    );
    // Tombstones are kept, so the erased customer's replayed events stay dropped.
    assert_eq!(
        customer_tombstones::Entity::find()
            .count(&db)
            .await
            .unwrap(),
        2
    );

    // Every event is applied again (none is remembered as consumed), to the same result.
    assert_eq!(consume(&db, &feed).await, feed.len());
    assert_eq!(projection(&db).await, before);
    assert!(
        features::features(&db, partner, id(&erased))
            .await
            .unwrap()
            .eq(&Features::default())
    );
    // Memberships are not part of the projection: untouched, nothing published.
    assert_eq!(
        store
            .segment(partner, praha.id)
            .await
            .unwrap()
            .unwrap()
            .member_count,
        1
    );
    assert_eq!(outbox::Entity::find().count(&db).await.unwrap(), published);
    // A second rebuild works the same.
    reset_projection(&db, SERVICE).await.unwrap();
    consume(&db, &feed).await;
    assert_eq!(projection(&db).await, before);
}

#[tokio::test]
async fn a_rebuild_replays_the_feed_to_the_same_features_on_postgres() {
    let (_db, db) = postgres().await;
    rebuild_replays_to_the_same_features(db).await;
}

#[tokio::test]
async fn a_rebuild_replays_the_feed_to_the_same_features_on_sqlite() {
    let (_dir, db) = sqlite().await;
    rebuild_replays_to_the_same_features(db).await;
}
