//! Cards through their life: resolve (cached in Redis), block with a reason, unblock, remove,
//! re-assign — every change visible to the very next resolve and to checkout.
use loyalty_proto::{checkout::v1 as checkout, identity::v1 as identity, types::v1 as types};
use loyalty_testkit::{Backend, Suite, authed};
use tonic::Code;
use tonic_types::StatusExt;

fn card(number: &str) -> types::IdentifierRef {
    types::IdentifierRef {
        r#type: types::IdentifierType::Card as i32,
        value: number.to_owned(),
    }
}

async fn partner_key(suite: &Suite, name: &str) -> anyhow::Result<String> {
    let mut identity = suite.identity().await?;
    let partner = identity
        .create_partner(authed(
            identity::CreatePartnerRequest {
                idempotency_key: name.into(),
                partner: Some(identity::Partner {
                    display_name: name.into(),
                    default_currency_code: "EUR".into(),
                    ..Default::default()
                }),
            },
            suite.admin_key(),
        ))
        .await?
        .into_inner()
        .partner
        .expect("partner");
    Ok(identity
        .create_api_key(authed(
            identity::CreateApiKeyRequest {
                idempotency_key: name.into(),
                partner_id: partner.id,
                display_name: "support desk".into(),
                roles: vec![identity::Role::Support as i32, identity::Role::Pos as i32],
            },
            suite.admin_key(),
        ))
        .await?
        .into_inner()
        .secret)
}

async fn customer(
    suite: &Suite,
    key: &str,
    name: &str,
    cards: &[&str],
) -> anyhow::Result<identity::CreateCustomerResponse> {
    Ok(suite
        .identity()
        .await?
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: format!("register-{name}"),
                customer: Some(identity::Customer {
                    first_name: name.into(),
                    ..Default::default()
                }),
                identifiers: cards.iter().map(|c| card(c)).collect(),
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner())
}

async fn resolve(suite: &Suite, key: &str, number: &str) -> Result<String, tonic::Status> {
    let mut identity = suite.identity().await.expect("identity");
    identity
        .resolve_identifier(authed(
            identity::ResolveIdentifierRequest {
                identifier: Some(card(number)),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner().customer_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_card_is_refused_at_once_and_a_removed_one_can_be_given_out_again()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let key = partner_key(&suite, "Shop").await?;
    let rival = partner_key(&suite, "Rival").await?;
    let jana = customer(&suite, &key, "jana", &["1111 2222"]).await?;
    let jana_id = jana.customer.clone().expect("customer").id;
    let card_id = jana.identifiers[0].id.clone();
    let mut identity = suite.identity().await?;

    // Resolving twice: the second answer comes from the cache.
    assert_eq!(resolve(&suite, &key, "11112222").await?, jana_id);
    assert_eq!(resolve(&suite, &key, "1111 2222").await?, jana_id);

    let blocked = identity
        .block_identifier(authed(
            identity::BlockIdentifierRequest {
                idempotency_key: "block-1".into(),
                identifier_id: card_id.clone(),
                reason: "reported stolen".into(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .identifier
        .expect("identifier");
    assert_eq!(blocked.state, identity::IdentifierState::Blocked as i32);
    assert_eq!(blocked.block_reason, "reported stolen");

    let refused = resolve(&suite, &key, "11112222")
        .await
        .expect_err("blocked");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused
            .get_error_details()
            .error_info()
            .expect("reason")
            .reason,
        "IDENTIFIER_BLOCKED"
    );
    assert!(
        refused.message().contains("reported stolen"),
        "{}",
        refused.message()
    );

    let at_checkout = suite
        .checkout()
        .await?
        .evaluate(authed(
            checkout::EvaluateRequest {
                identifier: Some(card("11112222")),
                cart: Some(types::Cart {
                    currency_code: "EUR".into(),
                    lines: vec![types::CartLine {
                        line_id: "1".into(),
                        product_id: "SKU".into(),
                        quantity: 1,
                        unit_price_minor: 100,
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect_err("checkout refuses a blocked card");
    assert_eq!(at_checkout.code(), Code::FailedPrecondition);

    identity
        .unblock_identifier(authed(
            identity::UnblockIdentifierRequest {
                idempotency_key: "unblock-1".into(),
                identifier_id: card_id.clone(),
            },
            &key,
        ))
        .await?;
    assert_eq!(resolve(&suite, &key, "11112222").await?, jana_id);

    // Another partner's identifier does not exist for the rival.
    let foreign = identity
        .block_identifier(authed(
            identity::BlockIdentifierRequest {
                idempotency_key: "rival-block".into(),
                identifier_id: card_id.clone(),
                reason: String::new(),
            },
            &rival,
        ))
        .await
        .expect_err("another partner's card");
    assert_eq!(foreign.code(), Code::NotFound);
    let foreign_list = identity
        .list_identifiers(authed(
            identity::ListIdentifiersRequest {
                customer_id: jana_id.clone(),
                ..Default::default()
            },
            &rival,
        ))
        .await
        .expect_err("another partner's customer");
    assert_eq!(foreign_list.code(), Code::NotFound);

    identity
        .remove_identifier(authed(
            identity::RemoveIdentifierRequest {
                idempotency_key: "remove-1".into(),
                identifier_id: card_id.clone(),
            },
            &key,
        ))
        .await?;
    assert_eq!(
        resolve(&suite, &key, "11112222")
            .await
            .expect_err("removed")
            .code(),
        Code::NotFound
    );
    let again = identity
        .unblock_identifier(authed(
            identity::UnblockIdentifierRequest {
                idempotency_key: "unblock-2".into(),
                identifier_id: card_id.clone(),
            },
            &key,
        ))
        .await
        .expect_err("a removed card stays removed");
    assert_eq!(
        again
            .get_error_details()
            .error_info()
            .expect("reason")
            .reason,
        "IDENTIFIER_REMOVED"
    );

    // The number is free again: Petr gets it.
    let petr = customer(&suite, &key, "petr", &["11112222"]).await?;
    assert_eq!(
        resolve(&suite, &key, "11112222").await?,
        petr.customer.expect("customer").id
    );

    let history = identity
        .list_identifiers(authed(
            identity::ListIdentifiersRequest {
                customer_id: jana_id.clone(),
                include_removed: true,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(history.identifiers.len(), 1);
    assert_eq!(
        history.identifiers[0].state,
        identity::IdentifierState::Removed as i32
    );
    let current = identity
        .list_identifiers(authed(
            identity::ListIdentifiersRequest {
                customer_id: jana_id,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert!(current.identifiers.is_empty());

    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_registrations_of_one_card_number_have_exactly_one_winner()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let key = partner_key(&suite, "Shop").await?;
    let attempts = (0..8).map(|i| {
        let (suite, key) = (&suite, key.clone());
        async move { customer(suite, &key, &format!("racer-{i}"), &["9999 0000"]).await }
    });
    let results = futures::future::join_all(attempts).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for r in results.into_iter().filter_map(Result::err) {
        let status = r.downcast::<tonic::Status>().expect("a gRPC status");
        assert_eq!(status.code(), Code::AlreadyExists);
    }
    suite.stop().await
}
