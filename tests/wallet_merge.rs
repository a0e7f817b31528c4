//! The wallet follows identity's customer lifecycle: a merge moves the merged customer's
//! points to the surviving one, and later awards for the merged id land on the survivor.
use std::time::Duration;

use loyalty_proto::{identity::v1 as identity, wallet::v1 as wallet};
use loyalty_testkit::{Backend, Suite, authed, eventually};

async fn customer(
    identity: &mut identity::identity_service_client::IdentityServiceClient<
        tonic::transport::Channel,
    >,
    key: &str,
    email: &str,
) -> anyhow::Result<String> {
    Ok(identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: email.into(),
                customer: Some(identity::Customer {
                    first_name: "Jana".into(),
                    email: email.into(),
                    ..Default::default()
                }),
                identifiers: vec![],
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer")
        .id)
}

fn award(idem: &str, customer_id: &str, points: i64) -> wallet::AwardPointsRequest {
    wallet::AwardPointsRequest {
        idempotency_key: idem.into(),
        customer_id: customer_id.into(),
        points,
        reason: "purchase".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn merging_customers_moves_the_merged_points_to_the_survivor() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key(
            "Shop",
            &[identity::Role::Support, identity::Role::Marketing],
        )
        .await?;
    let mut identity = suite.identity().await?;
    let mut points = suite.wallet().await?;
    let survivor = customer(&mut identity, &key, "jana@example.cz").await?;
    let duplicate = customer(&mut identity, &key, "jana.n@example.cz").await?;
    points
        .award_points(authed(award("a1", &survivor, 100), &key))
        .await?;
    points
        .award_points(authed(award("a2", &duplicate, 40), &key))
        .await?;

    identity
        .merge_customers(authed(
            identity::MergeCustomersRequest {
                idempotency_key: "merge".into(),
                surviving_customer_id: survivor.clone(),
                merged_customer_id: duplicate.clone(),
                reason: "same person".into(),
            },
            &key,
        ))
        .await?;

    let reader = points.clone();
    let available = |customer_id: String| {
        let (mut points, key) = (reader.clone(), key.clone());
        async move {
            let b = points
                .get_balance(authed(
                    wallet::GetBalanceRequest {
                        customer_id,
                        ..Default::default()
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .balance
                .expect("balance");
            anyhow::Ok(b.available_points)
        }
    };
    eventually(Duration::from_secs(30), || {
        let (s, d) = (available(survivor.clone()), available(duplicate.clone()));
        async move { Ok((s.await? == 140 && d.await? == 0).then_some(())) }
    })
    .await?;

    // An award that still names the merged customer lands on the survivor.
    let late = points
        .award_points(authed(award("a3", &duplicate, 5), &key))
        .await?
        .into_inner();
    assert_eq!(late.wallet.expect("wallet").customer_id, survivor);
    assert_eq!(available(survivor.clone()).await?, 145);
    assert_eq!(available(duplicate.clone()).await?, 0);
    Ok(())
}
