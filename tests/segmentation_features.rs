//! The feature-store RPCs end to end: a customer's tracked event reaches GetCustomerFeatures
//! (count and last_days_ago); ValidateCriterion answers violations by path and counts matches
//! with the compiled statement; ListCriterionFields pages through the catalogue per target;
//! another partner sees nothing.
use std::time::Duration;

use loyalty_proto::{identity::v1 as identity, segmentation::v1 as seg};
use loyalty_testkit::{Backend, Suite, authed, eventually, violated_fields};
use tonic::Code;

fn condition(field: &str, op: seg::ComparisonOperator, value: Option<i64>) -> seg::Criterion {
    seg::Criterion {
        kind: Some(seg::criterion::Kind::Condition(seg::Condition {
            field: field.into(),
            operator: op as i32,
            values: value
                .map(|n| seg::Value {
                    kind: Some(seg::value::Kind::IntValue(n)),
                })
                .into_iter()
                .collect(),
        })),
    }
}

fn all(criteria: Vec<seg::Criterion>) -> seg::Criterion {
    seg::Criterion {
        kind: Some(seg::criterion::Kind::All(seg::CriterionGroup { criteria })),
    }
}

fn validate(c: seg::Criterion, target: seg::CriterionTarget) -> seg::ValidateCriterionRequest {
    seg::ValidateCriterionRequest {
        criterion: Some(c),
        target: target as i32,
        count_matches: true,
    }
}

async fn all_fields(
    client: &mut seg::segmentation_service_client::SegmentationServiceClient<
        tonic::transport::Channel,
    >,
    key: &str,
    target: seg::CriterionTarget,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_criterion_fields(authed(
                seg::ListCriterionFieldsRequest {
                    target: target as i32,
                    page_size: 7,
                    page_token: token.clone(),
                },
                key,
            ))
            .await?
            .into_inner();
        assert!(page.fields.len() <= 7);
        out.extend(page.fields.into_iter().map(|f| f.field));
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn features_criteria_validation_and_the_field_catalogue() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Sqlite).await?;
    let (_, key) = suite
        .partner_with_key("Features shop", &[identity::Role::Admin])
        .await?;
    let (_, other_key) = suite
        .partner_with_key("Other shop", &[identity::Role::Admin])
        .await?;
    let mut identity = suite.identity().await?;
    let mut client = suite.segmentation().await?;
    let jana = identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "jana".into(),
                customer: Some(identity::Customer {
                    first_name: "Jana".into(),
                    city: "Praha".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer")
        .id;
    identity
        .track_event(authed(
            identity::TrackEventRequest {
                idempotency_key: "view-1".into(),
                customer_id: jana.clone(),
                event_type_id: "page_view".into(),
                properties: [("url".to_owned(), "https://shop.example/".to_owned())].into(),
                ..Default::default()
            },
            &key,
        ))
        .await?;

    // The tracked event reaches the feature store.
    let features = eventually(Duration::from_secs(20), || {
        let (mut client, key, jana) = (client.clone(), key.clone(), jana.clone());
        async move {
            let f = client
                .get_customer_features(authed(
                    seg::GetCustomerFeaturesRequest { customer_id: jana },
                    &key,
                ))
                .await?
                .into_inner()
                .features
                .expect("features");
            Ok((f.event_counts.get("page_view") == Some(&1)).then_some(f))
        }
    })
    .await?;
    assert_eq!(features.customer_id, jana);
    assert_eq!(features.purchase_count, 0);
    assert_eq!(features.last_purchase_days_ago, -1, "never bought");
    assert_eq!(
        features.extra.get("events.page_view.last_days_ago"),
        Some(&0)
    );
    assert_eq!(features.extra.get("messages.opened.count"), Some(&0));
    assert!(features.update_time.is_some());

    // Another partner does not know her: zeros.
    let theirs = client
        .get_customer_features(authed(
            seg::GetCustomerFeaturesRequest {
                customer_id: jana.clone(),
            },
            &other_key,
        ))
        .await?
        .into_inner()
        .features
        .expect("features");
    assert!(theirs.event_counts.is_empty() && theirs.update_time.is_none());
    let bad = client
        .get_customer_features(authed(
            seg::GetCustomerFeaturesRequest {
                customer_id: "x".into(),
            },
            &key,
        ))
        .await
        .expect_err("not a UUID");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["customer_id"]);

    // A valid criterion is counted by the compiled statement, per partner.
    use seg::ComparisonOperator as Op;
    let viewed_today = condition("events.page_view.last_days_ago", Op::LessOrEqual, Some(0));
    let ok = client
        .validate_criterion(authed(
            validate(viewed_today.clone(), seg::CriterionTarget::Audience),
            &key,
        ))
        .await?
        .into_inner();
    assert!(ok.valid && ok.violations.is_empty(), "{ok:?}");
    assert_eq!(ok.match_count, 1);
    let other = client
        .validate_criterion(authed(
            validate(viewed_today, seg::CriterionTarget::Segment),
            &other_key,
        ))
        .await?
        .into_inner();
    assert_eq!((other.valid, other.match_count), (true, 0));

    // An invalid one is an answer with the offending paths, not an error.
    let invalid = client
        .validate_criterion(authed(
            validate(
                all(vec![
                    condition("features.purchase_count", Op::GreaterOrEqual, Some(1)),
                    condition("customer.shoe_size", Op::Exists, None),
                ]),
                seg::CriterionTarget::Segment,
            ),
            &key,
        ))
        .await?
        .into_inner();
    assert!(!invalid.valid);
    assert_eq!(invalid.match_count, 0);
    let paths: Vec<&str> = invalid.violations.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(paths, ["all.criteria[1].condition.field"]);
    // The cart is only for online segments.
    let cart = condition("cart.total_minor", Op::Greater, Some(100));
    let refused = client
        .validate_criterion(authed(
            validate(cart.clone(), seg::CriterionTarget::Segment),
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(
        refused
            .violations
            .iter()
            .map(|v| v.path.as_str())
            .collect::<Vec<_>>(),
        ["condition.field"]
    );
    let online = client
        .validate_criterion(authed(
            validate(cart, seg::CriterionTarget::OnlineSegment),
            &key,
        ))
        .await?
        .into_inner();
    assert!(online.valid);
    let missing = client
        .validate_criterion(authed(seg::ValidateCriterionRequest::default(), &key))
        .await
        .expect_err("criterion is required");
    assert_eq!(violated_fields(&missing), ["criterion"]);

    // The catalogue, paged, per target.
    let segment_fields = all_fields(&mut client, &key, seg::CriterionTarget::Segment).await?;
    let online_fields = all_fields(&mut client, &key, seg::CriterionTarget::OnlineSegment).await?;
    assert!(segment_fields.iter().all(|f| !f.starts_with("cart.")));
    assert!(online_fields.iter().any(|f| f == "cart.total_minor"));
    assert!(
        segment_fields
            .iter()
            .any(|f| f == "events.<event_type_code>.last_days_ago")
    );
    assert!(
        segment_fields
            .iter()
            .any(|f| f == "campaigns.<campaign_id>.opened")
    );
    assert_eq!(
        online_fields.len(),
        segment_fields.len() + 4,
        "the four cart fields"
    );
    let bad_token = client
        .list_criterion_fields(authed(
            seg::ListCriterionFieldsRequest {
                page_token: "zz".into(),
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect_err("not a token");
    assert_eq!(violated_fields(&bad_token), ["page_token"]);

    suite.stop().await?;
    Ok(())
}
