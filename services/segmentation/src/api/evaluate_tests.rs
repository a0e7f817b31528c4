//! `EvaluateCriterion` called in process, against a fresh database: a customer matching or
//! not a criterion on a feature, on the triggering event's properties, a purchase window
//! and a badge; an invalid criterion; an unknown customer.
use std::collections::BTreeMap;

use chrono::Utc;
use loyalty_platform::{Principal, Role};
use loyalty_proto::{
    events::v1 as ev,
    segmentation::v1::{self as pb, segmentation_service_server::SegmentationService},
};
use loyalty_testkit::violated_fields;
use sea_orm::DatabaseConnection;
use tonic::{Code, Request};
use uuid::Uuid;

use super::SegmentationApi;
use crate::{
    domain::{BadgeDraft, BadgeKind, Icon, ManualChange},
    store::{
        Store,
        cache::MembershipCache,
        tests::{apply, customer_in, envelope, id, postgres, sqlite},
    },
};

/// A purchase of the customer now, as checkout publishes it.
fn bought(customer: &ev::CustomerCreated, amount_minor: i64) -> ev::PurchaseCompleted {
    ev::PurchaseCompleted {
        purchase_id: Uuid::now_v7().to_string(),
        customer_id: customer.customer_id.clone(),
        net_amount_minor: amount_minor,
        currency_code: "CZK".into(),
        purchase_time: Some(loyalty_platform::time::to_timestamp(Utc::now())),
        ..Default::default()
    }
}

fn condition(
    field: &str,
    operator: pb::ComparisonOperator,
    values: Vec<pb::Value>,
) -> pb::Criterion {
    pb::Criterion {
        kind: Some(pb::criterion::Kind::Condition(pb::Condition {
            field: field.into(),
            operator: operator as i32,
            values,
        })),
    }
}

fn all(criteria: Vec<pb::Criterion>) -> pb::Criterion {
    pb::Criterion {
        kind: Some(pb::criterion::Kind::All(pb::CriterionGroup { criteria })),
    }
}

fn string(s: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::StringValue(s.into())),
    }
}

fn int(n: i64) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::IntValue(n)),
    }
}

fn boolean(b: bool) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::BoolValue(b)),
    }
}

/// The request as campaigns' workflow engine sends it, with its service key.
fn request(
    partner: Uuid,
    customer: Uuid,
    criterion: pb::Criterion,
    event: &[(&str, &str)],
) -> Request<pb::EvaluateCriterionRequest> {
    let event_properties: BTreeMap<String, String> = event
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let message = pb::EvaluateCriterionRequest {
        customer_id: customer.to_string(),
        criterion: Some(criterion),
        event_properties,
    };
    authed(partner, Role::Service, message)
}

/// A request of the partner's caller with `role`.
fn authed<T>(partner: Uuid, role: Role, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(Principal {
        partner_id: Some(partner),
        api_key_id: None,
        roles: vec![role],
        platform_admin: false,
        credential: String::new().into(),
    });
    request
}

async fn matches(
    api: &SegmentationApi,
    partner: Uuid,
    customer: Uuid,
    criterion: pb::Criterion,
    event: &[(&str, &str)],
) -> bool {
    api.evaluate_criterion(request(partner, customer, criterion, event))
        .await
        .expect("evaluated")
        .into_inner()
        .matches
}

async fn one_customer_is_decided_now(db: DatabaseConnection) {
    use pb::ComparisonOperator as Op;
    let partner = Uuid::now_v7();
    let (jana, petr) = (customer_in("Praha"), customer_in("Brno"));
    for c in [&jana, &petr] {
        apply(&db, envelope(partner, c)).await;
    }
    apply(&db, envelope(partner, &bought(&jana, 700))).await;
    apply(&db, envelope(partner, &bought(&jana, 300))).await;
    let (j, p) = (id(&jana), id(&petr));
    let store = Store::new(db.clone());
    let vip = BadgeDraft {
        display_name: "VIP".into(),
        kind: Some(BadgeKind::Manual),
        criterion: None,
        icon: Icon::new("https://cdn.example.com/vip.png".into(), "image/png"),
        visible_to_customer: true,
        note: String::new(),
    }
    .into_badge(Uuid::now_v7(), Utc::now())
    .unwrap();
    let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
    let vip = store.create_badge(&txn, partner, vip).await.unwrap();
    store
        .assign_badge(&txn, partner, vip.id, j, ManualChange::Operator, Utc::now())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    // Events below are applied without the service's invalidation, so no cache here.
    let api = SegmentationApi::new(
        store,
        MembershipCache::new(
            loyalty_platform::cache::Cache::local(10),
            std::time::Duration::ZERO,
        ),
    );

    // A feature.
    let buyer = || condition("features.purchase_count", Op::GreaterOrEqual, vec![int(2)]);
    assert!(matches(&api, partner, j, buyer(), &[]).await);
    assert!(!matches(&api, partner, p, buyer(), &[]).await);
    // A purchase window (read for this criterion, no online segment reads purchases).
    let spent = condition(
        "purchases.last_30_days.sum_minor",
        Op::Equal,
        vec![int(1_000)],
    );
    assert!(matches(&api, partner, j, spent, &[]).await);
    // A badge held.
    let holds_vip = || {
        condition(
            &format!("badges.{}", vip.id),
            Op::Equal,
            vec![boolean(true)],
        )
    };
    assert!(matches(&api, partner, j, holds_vip(), &[]).await);
    assert!(!matches(&api, partner, p, holds_vip(), &[]).await);

    // The triggering event's properties, with the customer's own facts.
    let in_prague = || {
        all(vec![
            condition("customer.city", Op::Equal, vec![string("praha")]),
            condition("event.store", Op::Equal, vec![string("prague")]),
        ])
    };
    assert!(matches(&api, partner, j, in_prague(), &[("store", "Prague")]).await);
    assert!(!matches(&api, partner, j, in_prague(), &[("store", "Brno")]).await);
    assert!(
        !matches(&api, partner, j, in_prague(), &[]).await,
        "no event (a date trigger)"
    );
    assert!(!matches(&api, partner, p, in_prague(), &[("store", "Prague")]).await);
    let big = || condition("event.total_minor", Op::Greater, vec![int(500)]);
    assert!(matches(&api, partner, p, big(), &[("total_minor", "1200")]).await);
    assert!(!matches(&api, partner, p, big(), &[("total_minor", "120")]).await);

    // A bad criterion: INVALID_ARGUMENT naming every field, the customer unread.
    let bad = all(vec![
        condition("customer.shoe_size", Op::Equal, vec![string("44")]),
        condition("event.Store", Op::Equal, vec![string("x")]),
    ]);
    let status = api
        .evaluate_criterion(request(partner, j, bad, &[("bad-key", "x")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "criterion.all.criteria[0].condition.field",
            "criterion.all.criteria[1].condition.field",
            "event_properties",
        ]
    );
    let cart = condition("cart.total_minor", Op::Greater, vec![int(1)]);
    let status = api
        .evaluate_criterion(request(partner, j, cart, &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["criterion.condition.field"]);
    let mut none = request(partner, j, buyer(), &[]);
    none.get_mut().criterion = None;
    none.get_mut().customer_id = "nope".into();
    let status = api.evaluate_criterion(none).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["customer_id", "criterion"]);

    // A customer segmentation never heard of, or another partner's: NOT_FOUND.
    for (partner, customer) in [(partner, Uuid::now_v7()), (Uuid::now_v7(), j)] {
        let status = api
            .evaluate_criterion(request(partner, customer, buyer(), &[]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
}

#[tokio::test]
async fn one_customer_is_decided_now_on_postgres() {
    let (_test_db, db) = postgres().await;
    one_customer_is_decided_now(db).await;
}

#[tokio::test]
async fn one_customer_is_decided_now_on_sqlite() {
    let (_dir, db) = sqlite().await;
    one_customer_is_decided_now(db).await;
}

/// ValidateCriterion and ListCriterionFields agree with EvaluateCriterion: `event.<key>` is a
/// field of the WORKFLOW target only, and a workflow criterion reading it counts no stored
/// customer.
#[tokio::test]
async fn only_the_workflow_target_knows_event_fields() {
    use pb::ComparisonOperator as Op;
    let (_dir, db) = sqlite().await;
    let partner = Uuid::now_v7();
    apply(&db, envelope(partner, &customer_in("Praha"))).await;
    let api = SegmentationApi::new(
        Store::new(db),
        MembershipCache::new(
            loyalty_platform::cache::Cache::local(10),
            std::time::Duration::ZERO,
        ),
    );
    let store_is = || condition("event.store", Op::NotEqual, vec![string("brno")]);
    let validate = async |target: pb::CriterionTarget| {
        api.validate_criterion(authed(
            partner,
            Role::Marketing,
            pb::ValidateCriterionRequest {
                criterion: Some(store_is()),
                target: target as i32,
                count_matches: true,
            },
        ))
        .await
        .unwrap()
        .into_inner()
    };
    let workflow = validate(pb::CriterionTarget::Workflow).await;
    assert!(workflow.valid, "{:?}", workflow.violations);
    assert_eq!(workflow.match_count, 0, "no stored customer has an event");
    for target in [pb::CriterionTarget::Segment, pb::CriterionTarget::Audience] {
        let other = validate(target).await;
        assert!(!other.valid);
        assert_eq!(other.violations.len(), 1);
        assert_eq!(other.violations[0].path, "condition.field");
    }

    let fields = async |target: pb::CriterionTarget| -> Vec<String> {
        api.list_criterion_fields(authed(
            partner,
            Role::Marketing,
            pb::ListCriterionFieldsRequest {
                target: target as i32,
                page_size: 1000,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .fields
        .into_iter()
        .map(|f| f.field)
        .collect()
    };
    assert!(
        fields(pb::CriterionTarget::Workflow)
            .await
            .contains(&"event.<key>".to_owned())
    );
    assert!(
        !fields(pb::CriterionTarget::OnlineSegment)
            .await
            .iter()
            .any(|f| f.starts_with("event."))
    );
}
