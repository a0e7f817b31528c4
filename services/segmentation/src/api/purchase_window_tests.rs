//! Purchase windows read at request time: `GetCustomerMemberships` decides an online segment
//! over them, and `GetCustomerFeatures` reports the first purchase and the last 12 months.
use chrono::{Duration, Utc};
use loyalty_criteria::{Operator, Value};
use loyalty_platform::{Principal, Role};
use loyalty_proto::{
    events::v1 as ev,
    segmentation::v1::{self as pb, segmentation_service_server::SegmentationService},
    types::v1 as types,
};
use sea_orm::DatabaseConnection;
use tonic::Request;
use uuid::Uuid;

use super::SegmentationApi;
use crate::store::{
    Store,
    tests::{apply, create, envelope, postgres, segment, sqlite},
};

async fn buy(db: &DatabaseConnection, partner: Uuid, customer: Uuid, days_ago: i64) {
    let purchase = ev::PurchaseCompleted {
        purchase_id: Uuid::now_v7().to_string(),
        customer_id: customer.to_string(),
        net_amount_minor: 1_000,
        currency_code: "CZK".into(),
        purchase_time: Some(loyalty_platform::time::to_timestamp(
            Utc::now() - Duration::days(days_ago),
        )),
        ..Default::default()
    };
    apply(db, envelope(partner, &purchase)).await;
}

/// The ids of the customer's memberships computed online, read with a POS key.
async fn online_memberships(api: &SegmentationApi, partner: Uuid, customer: Uuid) -> Vec<String> {
    online_with_cart(api, partner, customer, None).await
}

/// The same, with the cart checkout is about to commit.
async fn online_with_cart(
    api: &SegmentationApi,
    partner: Uuid,
    customer: Uuid,
    cart: Option<types::Cart>,
) -> Vec<String> {
    let mut request = Request::new(pb::GetCustomerMembershipsRequest {
        customer_id: customer.to_string(),
        cart,
    });
    request.extensions_mut().insert(Principal {
        partner_id: Some(partner),
        api_key_id: None,
        roles: vec![Role::Pos],
        platform_admin: false,
        credential: String::new().into(),
    });
    api.get_customer_memberships(request)
        .await
        .unwrap()
        .into_inner()
        .memberships
        .into_iter()
        .filter(|m| m.online)
        .map(|m| m.segment_id)
        .collect()
}

async fn an_online_segment_on_purchases_in_thirty_days_is_decided_at_request_time(
    db: DatabaseConnection,
) {
    let (partner, jana, petr) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    buy(&db, partner, jana, 2).await;
    buy(&db, partner, jana, 20).await;
    buy(&db, partner, petr, 2).await;
    buy(&db, partner, petr, 45).await;
    let store = Store::new(db.clone());
    let regulars = create(
        &store,
        partner,
        segment(
            "purchases.last_30_days.count",
            Operator::GreaterOrEqual,
            Value::Int(2),
            true,
        ),
    )
    .await;
    // Events below are applied without the service's invalidation, so no cache here.
    let api = SegmentationApi::new(
        store,
        crate::store::cache::MembershipCache::new(
            loyalty_platform::cache::Cache::local(10),
            std::time::Duration::ZERO,
        ),
    );
    assert_eq!(
        online_memberships(&api, partner, jana).await,
        [regulars.id.to_string()]
    );
    assert!(online_memberships(&api, partner, petr).await.is_empty());
    // The cart checkout is about to commit counts as a purchase now: it would make Petr a
    // regular, and checkout learns so before the purchase.
    let cart = types::Cart {
        currency_code: "CZK".into(),
        lines: vec![types::CartLine {
            line_id: "1".into(),
            product_id: "SKU-1".into(),
            quantity: 1,
            unit_price_minor: 100,
            ..Default::default()
        }],
    };
    assert_eq!(
        online_with_cart(&api, partner, petr, Some(cart)).await,
        [regulars.id.to_string()]
    );
    assert!(online_memberships(&api, partner, petr).await.is_empty());
    // Petr's next purchase makes him a regular at the next call.
    buy(&db, partner, petr, 0).await;
    assert_eq!(
        online_memberships(&api, partner, petr).await,
        [regulars.id.to_string()]
    );
}

#[tokio::test]
async fn an_online_segment_on_purchases_in_thirty_days_is_decided_at_request_time_on_postgres() {
    let (_test_db, db) = postgres().await;
    an_online_segment_on_purchases_in_thirty_days_is_decided_at_request_time(db).await;
}

#[tokio::test]
async fn an_online_segment_on_purchases_in_thirty_days_is_decided_at_request_time_on_sqlite() {
    let (_dir, db) = sqlite().await;
    an_online_segment_on_purchases_in_thirty_days_is_decided_at_request_time(db).await;
}

/// GetCustomerFeatures reads the first purchase and the last 12 months from the purchases.
async fn customer_features_count_the_last_twelve_months(db: DatabaseConnection) {
    let (partner, jana, petr) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    buy(&db, partner, jana, 500).await;
    buy(&db, partner, jana, 100).await;
    buy(&db, partner, jana, 3).await;
    // Two messages opened (one twice) and one clicked this year, one opened 400 days ago.
    let message = Uuid::now_v7().to_string();
    for (days_ago, first) in [(400, true), (20, true), (10, true), (9, false)] {
        let mut opened = envelope(
            partner,
            &ev::MessageOpened {
                message_id: message.clone(),
                customer_id: jana.to_string(),
                campaign_id: String::new(),
                first,
            },
        );
        let at = Utc::now() - Duration::days(days_ago);
        opened.occur_time = Some(loyalty_platform::time::to_timestamp(at));
        apply(&db, opened).await;
    }
    let clicked = ev::MessageClicked {
        message_id: message,
        customer_id: jana.to_string(),
        first: true,
        ..Default::default()
    };
    apply(&db, envelope(partner, &clicked)).await;
    let api = SegmentationApi::new(
        Store::new(db.clone()),
        crate::store::cache::MembershipCache::new(
            loyalty_platform::cache::Cache::local(10),
            std::time::Duration::ZERO,
        ),
    );
    let features = async |customer: Uuid| {
        let mut request = Request::new(pb::GetCustomerFeaturesRequest {
            customer_id: customer.to_string(),
        });
        request.extensions_mut().insert(Principal {
            partner_id: Some(partner),
            api_key_id: None,
            roles: vec![Role::Marketing],
            platform_admin: false,
            credential: String::new().into(),
        });
        api.get_customer_features(request)
            .await
            .unwrap()
            .into_inner()
            .features
            .unwrap()
    };
    let f = features(jana).await;
    assert_eq!(f.purchase_count, 3);
    assert_eq!((f.purchase_count_12m, f.spent_12m_minor), (2, 2_000));
    assert_eq!(f.currency_code, "CZK");
    assert_eq!((f.email_open_count_12m, f.click_count_12m), (2, 1));
    assert_eq!(f.extra.get("messages.opened.count"), Some(&3));
    let first = f.first_purchase_time.expect("first purchase");
    let days = (Utc::now().timestamp() - first.seconds) / 86_400;
    assert_eq!(days, 500, "the purchase of 500 days ago");
    let never = features(petr).await;
    assert_eq!(
        (
            never.purchase_count_12m,
            never.spent_12m_minor,
            never.first_purchase_time,
            never.email_open_count_12m,
            never.currency_code.as_str()
        ),
        (0, 0, None, 0, "")
    );
}

#[tokio::test]
async fn customer_features_count_the_last_twelve_months_on_postgres() {
    let (_test_db, db) = postgres().await;
    customer_features_count_the_last_twelve_months(db).await;
}

#[tokio::test]
async fn customer_features_count_the_last_twelve_months_on_sqlite() {
    let (_dir, db) = sqlite().await;
    customer_features_count_the_last_twelve_months(db).await;
}
