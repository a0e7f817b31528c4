//! The membership cache end to end, as a differential test: GetCustomerMemberships answers the
//! same with Redis warm, after FLUSHALL and with redis-server killed; a membership change made
//! while Redis is down is never hidden by the stale entries Redis reloads when it comes back.
//! The suite runs on this test's own redis-server, so stopping it disturbs no other test.
use std::time::Duration;

use loyalty_proto::{identity::v1 as identity, segmentation::v1 as seg, types::v1 as types};
use loyalty_testkit::{Backend, OwnRedis, Suite, authed, create_customer, eventually, free_port};
use tonic::transport::Channel;

type Client = seg::segmentation_service_client::SegmentationServiceClient<Channel>;

fn condition(
    field: &str,
    operator: seg::ComparisonOperator,
    value: seg::value::Kind,
) -> seg::Criterion {
    seg::Criterion {
        kind: Some(seg::criterion::Kind::Condition(seg::Condition {
            field: field.into(),
            operator: operator as i32,
            values: vec![seg::Value { kind: Some(value) }],
        })),
    }
}

fn city_is(city: &str) -> seg::Criterion {
    condition(
        "customer.city",
        seg::ComparisonOperator::Equal,
        seg::value::Kind::StringValue(city.into()),
    )
}

async fn create_segment(
    client: &mut Client,
    key: &str,
    name: &str,
    kind: seg::SegmentKind,
    online: bool,
    criterion: seg::Criterion,
) -> anyhow::Result<seg::Segment> {
    Ok(client
        .create_segment(authed(
            seg::CreateSegmentRequest {
                idempotency_key: name.into(),
                segment: Some(seg::Segment {
                    display_name: name.into(),
                    kind: kind as i32,
                    online_recalculation: online,
                    criterion: Some(criterion),
                    note: format!("{name} note"),
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .segment
        .expect("segment"))
}

fn cart(total_minor: i64) -> types::Cart {
    types::Cart {
        currency_code: "EUR".into(),
        lines: vec![types::CartLine {
            line_id: "1".into(),
            product_id: "COFFEE".into(),
            product_group_ids: vec!["DRINKS".into()],
            quantity: 1,
            unit_price_minor: total_minor,
            ..Default::default()
        }],
    }
}

/// Every customer's answer, without a cart, with a small and with a big cart.
async fn answers(
    client: &mut Client,
    key: &str,
    customers: &[String],
) -> anyhow::Result<Vec<seg::GetCustomerMembershipsResponse>> {
    let mut all = Vec::new();
    for customer in customers {
        for cart in [None, Some(cart(1_200)), Some(cart(9_900))] {
            all.push(
                client
                    .get_customer_memberships(authed(
                        seg::GetCustomerMembershipsRequest {
                            customer_id: customer.clone(),
                            cart,
                        },
                        key,
                    ))
                    .await?
                    .into_inner(),
            );
        }
    }
    Ok(all)
}

fn names(answer: &seg::GetCustomerMembershipsResponse) -> Vec<(&str, bool)> {
    let mut names: Vec<(&str, bool)> = answer
        .memberships
        .iter()
        .map(|m| (m.segment_display_name.as_str(), m.online))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn memberships_are_the_same_with_redis_warm_flushed_and_killed_and_never_stale_after_an_outage()
-> anyhow::Result<()> {
    let redis_dir = tempfile::tempdir()?;
    let port = free_port();
    let redis = OwnRedis::start(port, redis_dir.path()).await?;
    let suite = Suite::start_with_redis(Backend::Postgres, &redis.url()).await?;
    let roles = [
        identity::Role::Marketing,
        identity::Role::Support,
        identity::Role::Service,
    ];
    let (_, key) = suite.partner_with_key("Cache shop", &roles).await?;
    let mut identity = suite.identity().await?;
    let mut client = suite.segmentation().await?;
    let jana = create_customer(&mut identity, &key, "Jana", "Praha").await?;
    let petr = create_customer(&mut identity, &key, "Petr", "Brno").await?;
    let eva = create_customer(&mut identity, &key, "Eva", "Praha").await?;
    let customers = [jana.clone(), petr.clone(), eva.clone()];

    // Online segments are decided at request time: once the city is known for each
    // customer, identity's events have been projected (and have dropped their entries).
    create_segment(
        &mut client,
        &key,
        "Praha online",
        seg::SegmentKind::Standard,
        true,
        city_is("Praha"),
    )
    .await?;
    create_segment(
        &mut client,
        &key,
        "Brno online",
        seg::SegmentKind::Standard,
        true,
        city_is("Brno"),
    )
    .await?;
    eventually(Duration::from_secs(30), || {
        let (mut client, key, customers) = (client.clone(), key.clone(), customers.clone());
        async move {
            let seen = answers(&mut client, &key, &customers).await?;
            Ok(seen
                .iter()
                .all(|a| a.memberships.iter().any(|m| m.online))
                .then_some(()))
        }
    })
    .await?;
    create_segment(
        &mut client,
        &key,
        "Big cart",
        seg::SegmentKind::Standard,
        true,
        condition(
            "cart.total_minor",
            seg::ComparisonOperator::GreaterOrEqual,
            seg::value::Kind::IntValue(5_000),
        ),
    )
    .await?;
    let praha = create_segment(
        &mut client,
        &key,
        "Praha",
        seg::SegmentKind::Standard,
        false,
        city_is("Praha"),
    )
    .await?;
    assert_eq!(praha.member_count, 2);
    let flexi_brno = create_segment(
        &mut client,
        &key,
        "Brno Flexi",
        seg::SegmentKind::Flexi,
        false,
        city_is("Brno"),
    )
    .await?;
    assert_eq!(flexi_brno.member_count, 1);

    // Warm: the first round fills the cache, the second is answered from it.
    let truth = answers(&mut client, &key, &customers).await?;
    assert_eq!(
        names(&truth[2]),
        [("Big cart", true), ("Praha", false), ("Praha online", true)],
        "Jana with a big cart"
    );
    assert_eq!(
        names(&truth[3]),
        [("Brno Flexi", false), ("Brno online", true)],
        "Petr without a cart"
    );
    assert!(
        !redis.keys("*:cache:seg:*:customer:*").await?.is_empty(),
        "the answers were cached"
    );
    assert_eq!(answers(&mut client, &key, &customers).await?, truth, "warm");

    redis.command(&["FLUSHALL"]).await?;
    assert_eq!(
        answers(&mut client, &key, &customers).await?,
        truth,
        "flushed"
    );
    assert_eq!(
        answers(&mut client, &key, &customers).await?,
        truth,
        "warm again"
    );

    // Redis keeps a snapshot of the warm entries, then dies.
    redis.command(&["SAVE"]).await?;
    redis.kill().await?;
    assert_eq!(
        answers(&mut client, &key, &customers).await?,
        truth,
        "killed"
    );

    // While Redis is down, Petr is added to Praha by hand: everyone's answer changes
    // (Petr's memberships, the count Jana and Eva see).
    let added = client
        .add_customer_to_segment(authed(
            seg::AddCustomerToSegmentRequest {
                idempotency_key: "add-petr".into(),
                segment_id: praha.id.clone(),
                customer_id: petr.clone(),
                cause: seg::MembershipCause::Manual as i32,
                workflow_execution_id: String::new(),
            },
            &key,
        ))
        .await?
        .into_inner();
    assert!(added.membership.is_some());
    let changed = answers(&mut client, &key, &customers).await?;
    assert_ne!(changed, truth);
    assert_eq!(
        names(&changed[3]),
        [
            ("Brno Flexi", false),
            ("Brno online", true),
            ("Praha", false)
        ]
    );
    let praha_count = |a: &seg::GetCustomerMembershipsResponse| {
        a.memberships
            .iter()
            .find(|m| m.segment_display_name == "Praha")
            .map(|m| m.member_count)
    };
    assert_eq!(praha_count(&changed[0]), Some(3));

    // Redis comes back with the stale entries of its snapshot: they are never answered.
    let redis = OwnRedis::start(port, redis_dir.path()).await?;
    assert!(
        !redis.keys("*:cache:seg:*:customer:*").await?.is_empty(),
        "the snapshot brought back the entries from before the change"
    );
    assert_eq!(
        answers(&mut client, &key, &customers).await?,
        changed,
        "right after Redis came back"
    );
    assert_eq!(
        answers(&mut client, &key, &customers).await?,
        changed,
        "asked again"
    );

    // And segmentation uses Redis again: the deletions pending since the outage go through,
    // then the answers come from Redis (its hit counter moves), still the new ones.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let before = redis.hits().await?;
        assert_eq!(
            answers(&mut client, &key, &customers).await?,
            changed,
            "while Redis is taken back into use"
        );
        if redis.hits().await? > before {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "segmentation did not read Redis again within 30 s of its restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    suite.stop().await?;
    redis.kill().await
}
