//! Identity's merges and erasures reaching segmentation: a duplicate account merged into a
//! survivor hands its stored memberships over, and an erased customer's go away.
use std::time::Duration;

use loyalty_proto::{identity::v1 as identity, segmentation::v1 as segmentation};
use loyalty_testkit::{Backend, Suite, authed, create_customer, eventually};

fn city_is(city: &str) -> segmentation::Criterion {
    segmentation::Criterion {
        kind: Some(segmentation::criterion::Kind::Condition(
            segmentation::Condition {
                field: "customer.city".into(),
                operator: segmentation::ComparisonOperator::Equal as i32,
                values: vec![segmentation::Value {
                    kind: Some(segmentation::value::Kind::StringValue(city.into())),
                }],
            },
        )),
    }
}

async fn create_segment(
    segmentation: &mut segmentation::segmentation_service_client::SegmentationServiceClient<
        tonic::transport::Channel,
    >,
    key: &str,
    name: &str,
    online: bool,
) -> anyhow::Result<String> {
    Ok(segmentation
        .create_segment(authed(
            segmentation::CreateSegmentRequest {
                idempotency_key: name.into(),
                segment: Some(segmentation::Segment {
                    display_name: name.into(),
                    kind: segmentation::SegmentKind::Standard as i32,
                    online_recalculation: online,
                    criterion: Some(city_is("Brno")),
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .segment
        .expect("segment")
        .id)
}

/// Polls until the customer's memberships (stored and online) are exactly `expected`.
async fn memberships_become(
    suite: &Suite,
    key: &str,
    customer_id: &str,
    expected: &[(&str, bool)],
) -> anyhow::Result<()> {
    let segmentation = suite.segmentation().await?;
    let mut want: Vec<(String, bool)> = expected
        .iter()
        .map(|(id, online)| ((*id).to_owned(), *online))
        .collect();
    want.sort();
    eventually(Duration::from_secs(20), || {
        let mut segmentation = segmentation.clone();
        let (customer_id, key, want) = (customer_id.to_owned(), key.to_owned(), want.clone());
        async move {
            let mut got: Vec<(String, bool)> = segmentation
                .get_customer_memberships(authed(
                    segmentation::GetCustomerMembershipsRequest {
                        customer_id,
                        cart: None,
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .memberships
                .into_iter()
                .map(|m| (m.segment_id, m.online))
                .collect();
            got.sort();
            Ok((got == want).then_some(()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merged_duplicate_hands_its_segments_to_the_survivor_and_an_erasure_clears_them()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key(
            "Merge shop",
            &[identity::Role::Support, identity::Role::Marketing],
        )
        .await?;
    let mut identity = suite.identity().await?;
    let mut segmentation = suite.segmentation().await?;
    let jana = create_customer(&mut identity, &key, "Jana", "Praha").await?;
    let duplicate = create_customer(&mut identity, &key, "Jana B", "Brno").await?;

    // An online segment reads the feature store live: once the duplicate is in it, both
    // customers have reached segmentation (identity's events arrive in order).
    let live_brno = create_segment(&mut segmentation, &key, "Live Brno", true).await?;
    memberships_become(&suite, &key, &duplicate, &[(&live_brno, true)]).await?;
    // A standard segment is filled now, with the duplicate only.
    let brno = create_segment(&mut segmentation, &key, "Brno", false).await?;
    memberships_become(
        &suite,
        &key,
        &duplicate,
        &[(&brno, false), (&live_brno, true)],
    )
    .await?;
    memberships_become(&suite, &key, &jana, &[]).await?;

    identity
        .merge_customers(authed(
            identity::MergeCustomersRequest {
                idempotency_key: "merge-jana".into(),
                surviving_customer_id: jana.clone(),
                merged_customer_id: duplicate.clone(),
                reason: "same person".into(),
            },
            &key,
        ))
        .await?;
    // The survivor keeps the fixed segment's membership; her own profile (Praha) keeps her
    // out of the live one. The duplicate holds nothing any more.
    memberships_become(&suite, &key, &jana, &[(&brno, false)]).await?;
    memberships_become(&suite, &key, &duplicate, &[]).await?;

    identity
        .erase_customer(authed(
            identity::EraseCustomerRequest {
                idempotency_key: "erase-jana".into(),
                customer_id: jana.clone(),
                reason: "GDPR request 42".into(),
            },
            &key,
        ))
        .await?;
    memberships_become(&suite, &key, &jana, &[]).await?;
    suite.stop().await
}
