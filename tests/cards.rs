//! Cards: a partner's card number format (length, prefix, EAN-13/Luhn check digit), replacing
//! a lost or damaged card (the old one never resolves again and stays taken), and API keys
//! revoked in identity being refused by the other services at once.
use std::time::Duration;

use loyalty_proto::{
    checkout::v1 as checkout, identity::v1 as identity, types::v1 as types, wallet::v1 as wallet,
};
use loyalty_testkit::{Backend, Suite, authed, error_reason as reason, eventually};
use tonic::Code;
use tonic_types::StatusExt;

use identity::Role;

fn card(number: &str) -> types::IdentifierRef {
    types::IdentifierRef {
        r#type: types::IdentifierType::Card as i32,
        value: number.to_owned(),
    }
}

fn email(address: &str) -> types::IdentifierRef {
    types::IdentifierRef {
        r#type: types::IdentifierType::Email as i32,
        value: address.to_owned(),
    }
}

/// The (field, description) pairs of an INVALID_ARGUMENT.
fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

async fn register(
    suite: &Suite,
    key: &str,
    name: &str,
    identifiers: Vec<types::IdentifierRef>,
) -> Result<identity::CreateCustomerResponse, tonic::Status> {
    suite
        .identity()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: format!("register-{name}"),
                customer: Some(identity::Customer {
                    first_name: name.into(),
                    ..Default::default()
                }),
                identifiers,
                ..Default::default()
            },
            key,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn add_card(
    suite: &Suite,
    key: &str,
    idempotency_key: &str,
    customer_id: &str,
    number: &str,
) -> Result<identity::Identifier, tonic::Status> {
    suite
        .identity()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .add_identifier(authed(
            identity::AddIdentifierRequest {
                idempotency_key: idempotency_key.into(),
                customer_id: customer_id.into(),
                identifier: Some(card(number)),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner().identifier.unwrap_or_default())
}

async fn resolve(suite: &Suite, key: &str, number: &str) -> Result<String, tonic::Status> {
    suite
        .identity()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .resolve_identifier(authed(
            identity::ResolveIdentifierRequest {
                identifier: Some(card(number)),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner().customer_id)
}

fn replace(
    idempotency_key: &str,
    identifier_id: &str,
    new_number: &str,
    state: identity::ReplacedCardState,
    why: &str,
) -> identity::ReplaceCardRequest {
    identity::ReplaceCardRequest {
        idempotency_key: idempotency_key.into(),
        identifier_id: identifier_id.into(),
        new_card_number: new_number.into(),
        old_card_state: state as i32,
        reason: why.into(),
    }
}

async fn replace_card(
    suite: &Suite,
    key: &str,
    request: identity::ReplaceCardRequest,
) -> Result<identity::ReplaceCardResponse, tonic::Status> {
    suite
        .identity()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .replace_card(authed(request, key))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_number_format_refuses_a_wrong_check_digit_naming_the_field_and_accepts_a_right_one_on_postgres()
-> anyhow::Result<()> {
    a_card_number_format_refuses_a_wrong_check_digit_naming_the_field_and_accepts_a_right_one(
        Backend::Postgres,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_number_format_refuses_a_wrong_check_digit_naming_the_field_and_accepts_a_right_one_on_sqlite()
-> anyhow::Result<()> {
    a_card_number_format_refuses_a_wrong_check_digit_naming_the_field_and_accepts_a_right_one(
        Backend::Sqlite,
    )
    .await
}

async fn a_card_number_format_refuses_a_wrong_check_digit_naming_the_field_and_accepts_a_right_one(
    backend: Backend,
) -> anyhow::Result<()> {
    let suite = Suite::start(backend).await?;
    let (partner_id, admin) = suite.partner_with_key("Shop", &[Role::Admin]).await?;
    let mut identity = suite.identity().await?;
    let till = identity
        .create_api_key(authed(
            identity::CreateApiKeyRequest {
                idempotency_key: "till".into(),
                partner_id,
                display_name: "till".into(),
                roles: vec![Role::Pos as i32],
            },
            &admin,
        ))
        .await?
        .into_inner()
        .secret;

    // Until a format is set, any card number is taken as before.
    let unset = identity
        .get_card_number_format(authed(identity::GetCardNumberFormatRequest {}, &till))
        .await?
        .into_inner()
        .card_number_format
        .expect("format");
    assert!(unset.update_time.is_none(), "{unset:?}");
    register(&suite, &till, "early", vec![card("12-AB")]).await?;

    let ean13 = identity::CardNumberFormat {
        digits_only: true,
        prefixes: vec!["400".into(), "590".into()],
        checksum: identity::CardChecksum::Ean13 as i32,
        ..Default::default()
    };
    let update = |key: &str, format: identity::CardNumberFormat| {
        authed(
            identity::UpdateCardNumberFormatRequest {
                idempotency_key: key.into(),
                card_number_format: Some(format),
            },
            &admin,
        )
    };
    let denied = identity
        .update_card_number_format(authed(
            identity::UpdateCardNumberFormatRequest {
                idempotency_key: "till-tries".into(),
                card_number_format: Some(ean13.clone()),
            },
            &till,
        ))
        .await
        .expect_err("a pos key may not set the format");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let inconsistent = identity
        .update_card_number_format(update(
            "bad-format",
            identity::CardNumberFormat {
                digits_only: false,
                ..ean13.clone()
            },
        ))
        .await
        .expect_err("EAN-13 needs digits only");
    assert_eq!(inconsistent.code(), Code::InvalidArgument);
    assert!(
        violations(&inconsistent)
            .iter()
            .any(|(f, _)| f == "card_number_format.digits_only"),
        "{inconsistent:?}"
    );

    let set = identity
        .update_card_number_format(update("ean13", ean13.clone()))
        .await?
        .into_inner()
        .card_number_format
        .expect("format");
    assert_eq!((set.min_length, set.max_length), (13, 13));
    assert!(set.update_time.is_some());
    let retried = identity
        .update_card_number_format(update("ean13", ean13.clone()))
        .await?
        .into_inner()
        .card_number_format
        .expect("format");
    assert_eq!(retried, set, "a retry answers the same");
    let read = identity
        .get_card_number_format(authed(identity::GetCardNumberFormatRequest {}, &till))
        .await?
        .into_inner()
        .card_number_format
        .expect("format");
    assert_eq!(read, set, "the new format is read at once");

    let wrong = register(
        &suite,
        &till,
        "wrong",
        vec![email("jana@example.cz"), card("4006381333932")],
    )
    .await
    .expect_err("wrong check digit");
    assert_eq!(wrong.code(), Code::InvalidArgument);
    let found = violations(&wrong);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "identifiers[1].value");
    assert!(found[0].1.contains("check digit"), "{found:?}");

    let jana = register(&suite, &till, "jana", vec![card("4006381-333931")]).await?;
    let jana_id = jana.customer.expect("customer").id;
    assert_eq!(
        jana.identifiers[0].value, "4006381333931",
        "stored without dashes"
    );
    assert_eq!(resolve(&suite, &till, "4006381333931").await?, jana_id);
    assert_eq!(
        resolve(&suite, &till, "4006381-333931").await?,
        jana_id,
        "found however it is typed"
    );

    for (idem, number, what) in [
        ("short", "400638133393", "13 characters"),
        ("prefix", "1234567890128", "must start with one of 400, 590"),
        ("letters", "400638133393A", "digits only"),
    ] {
        let refused = add_card(&suite, &till, idem, &jana_id, number)
            .await
            .expect_err(number);
        assert_eq!(refused.code(), Code::InvalidArgument);
        let found = violations(&refused);
        assert_eq!(found[0].0, "identifier.value", "{found:?}");
        assert!(found[0].1.contains(what), "{number}: {found:?}");
    }
    let second = add_card(&suite, &till, "second", &jana_id, "5901234123457").await?;
    assert_eq!(second.state, identity::IdentifierState::Active as i32);
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_replaced_as_lost_is_refused_at_once_and_its_number_stays_taken_on_postgres()
-> anyhow::Result<()> {
    a_card_replaced_as_lost_is_refused_at_once_and_its_number_stays_taken(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_replaced_as_lost_is_refused_at_once_and_its_number_stays_taken_on_sqlite()
-> anyhow::Result<()> {
    a_card_replaced_as_lost_is_refused_at_once_and_its_number_stays_taken(Backend::Sqlite).await
}

async fn a_card_replaced_as_lost_is_refused_at_once_and_its_number_stays_taken(
    backend: Backend,
) -> anyhow::Result<()> {
    let suite = Suite::start(backend).await?;
    let (_, key) = suite
        .partner_with_key("Shop", &[Role::Support, Role::Pos])
        .await?;
    let (_, rival) = suite.partner_with_key("Rival", &[Role::Admin]).await?;
    let jana = register(
        &suite,
        &key,
        "jana",
        vec![card("1111 2222"), email("jana@example.cz")],
    )
    .await?;
    let jana_id = jana.customer.clone().expect("customer").id;
    let old_id = jana.identifiers[0].id.clone();
    let email_id = jana.identifiers[1].id.clone();
    // Cached by this resolve: the replacement must drop it.
    assert_eq!(resolve(&suite, &key, "11112222").await?, jana_id);

    let lost = replace(
        "replace-1",
        &old_id,
        "3333 4444",
        identity::ReplacedCardState::Lost,
        "stolen at the bus stop",
    );
    let foreign = replace_card(&suite, &rival, lost.clone())
        .await
        .expect_err("another partner's card");
    assert_eq!(foreign.code(), Code::NotFound);

    let done = replace_card(&suite, &key, lost.clone()).await?;
    let (old, new) = (
        done.old_card.clone().expect("old"),
        done.new_card.clone().expect("new"),
    );
    assert_eq!(old.state, identity::IdentifierState::Lost as i32);
    assert_eq!(new.state, identity::IdentifierState::Active as i32);
    assert_eq!(
        (new.customer_id.as_str(), new.value.as_str()),
        (jana_id.as_str(), "33334444")
    );
    let again = replace_card(&suite, &key, lost.clone()).await?;
    assert_eq!(
        again, done,
        "a retry answers the same and replaces nothing more"
    );

    let refused = resolve(&suite, &key, "11112222")
        .await
        .expect_err("a lost card");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "IDENTIFIER_LOST");
    assert!(
        refused.message().contains("stolen at the bus stop"),
        "{refused:?}"
    );
    assert!(
        !refused.message().contains("33334444"),
        "the new card stays secret"
    );
    assert_eq!(resolve(&suite, &key, "3333-4444").await?, jana_id);

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
        .expect_err("checkout refuses a lost card");
    assert_eq!(at_checkout.code(), Code::FailedPrecondition);

    // The lost number stays taken, for Jana and for anyone else.
    let petr = register(&suite, &key, "petr", vec![]).await?;
    let petr_id = petr.customer.expect("customer").id;
    let taken = add_card(&suite, &key, "reuse", &petr_id, "1111 2222")
        .await
        .expect_err("a lost number is not free");
    assert_eq!(taken.code(), Code::AlreadyExists);
    let taken = register(&suite, &key, "thief", vec![card("11112222")])
        .await
        .expect_err("a lost number is not free");
    assert_eq!(taken.code(), Code::AlreadyExists);

    // A lost card changes no more; an email is no card; a taken number is refused.
    let twice = replace_card(
        &suite,
        &key,
        replace(
            "replace-2",
            &old_id,
            "5555 6666",
            identity::ReplacedCardState::Replaced,
            "",
        ),
    )
    .await
    .expect_err("already replaced");
    assert_eq!(reason(&twice), "IDENTIFIER_LOST");
    let unblock = suite
        .identity()
        .await?
        .unblock_identifier(authed(
            identity::UnblockIdentifierRequest {
                idempotency_key: "unblock-lost".into(),
                identifier_id: old_id.clone(),
            },
            &key,
        ))
        .await
        .expect_err("a lost card never comes back");
    assert_eq!(reason(&unblock), "IDENTIFIER_LOST");
    let not_a_card = replace_card(
        &suite,
        &key,
        replace(
            "replace-3",
            &email_id,
            "5555 6666",
            identity::ReplacedCardState::Lost,
            "",
        ),
    )
    .await
    .expect_err("an email");
    assert_eq!(reason(&not_a_card), "IDENTIFIER_NOT_A_CARD");
    let taken = replace_card(
        &suite,
        &key,
        replace(
            "replace-4",
            &new.id,
            "1111 2222",
            identity::ReplacedCardState::Replaced,
            "",
        ),
    )
    .await
    .expect_err("the new number is taken");
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert_eq!(
        resolve(&suite, &key, "33334444").await?,
        jana_id,
        "a refused replacement changes nothing"
    );

    // A damaged card is REPLACED, refused with its own reason.
    let damaged = replace_card(
        &suite,
        &key,
        replace(
            "replace-5",
            &new.id,
            "7777 8888",
            identity::ReplacedCardState::Replaced,
            "damaged",
        ),
    )
    .await?;
    assert_eq!(
        damaged.old_card.expect("old").state,
        identity::IdentifierState::Replaced as i32
    );
    let refused = resolve(&suite, &key, "33334444")
        .await
        .expect_err("replaced");
    assert_eq!(reason(&refused), "IDENTIFIER_REPLACED");
    assert_eq!(resolve(&suite, &key, "77778888").await?, jana_id);

    let listed = suite
        .identity()
        .await?
        .list_identifiers(authed(
            identity::ListIdentifiersRequest {
                customer_id: jana_id,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    let states: Vec<(String, i32)> = listed
        .identifiers
        .iter()
        .filter(|i| i.r#type == types::IdentifierType::Card as i32)
        .map(|i| (i.value.clone(), i.state))
        .collect();
    assert_eq!(
        states,
        [
            (
                "11112222".to_owned(),
                identity::IdentifierState::Lost as i32
            ),
            (
                "33334444".to_owned(),
                identity::IdentifierState::Replaced as i32
            ),
            (
                "77778888".to_owned(),
                identity::IdentifierState::Active as i32
            ),
        ]
    );
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_replacements_and_additions_of_one_new_number_have_exactly_one_winner()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Shop", &[Role::Support, Role::Pos])
        .await?;
    let mut old_cards = Vec::new();
    let mut customers = Vec::new();
    for i in 0..4 {
        let c = register(
            &suite,
            &key,
            &format!("c{i}"),
            vec![card(&format!("1000{i}"))],
        )
        .await?;
        old_cards.push((format!("1000{i}"), c.identifiers[0].id.clone()));
        customers.push(c.customer.expect("customer").id);
    }
    let replacements = old_cards.iter().enumerate().map(|(i, (_, id))| {
        let (suite, key) = (&suite, key.clone());
        let request = replace(
            &format!("race-replace-{i}"),
            id,
            "9999 0000",
            identity::ReplacedCardState::Lost,
            "",
        );
        async move { replace_card(suite, &key, request).await.map(|_| ()) }
    });
    let additions = customers.iter().enumerate().map(|(i, customer_id)| {
        let (suite, key) = (&suite, key.clone());
        async move {
            add_card(
                suite,
                &key,
                &format!("race-add-{i}"),
                customer_id,
                "99990000",
            )
            .await
            .map(|_| ())
        }
    });
    let (replaced, added) = futures::future::join(
        futures::future::join_all(replacements),
        futures::future::join_all(additions),
    )
    .await;
    let all: Vec<_> = replaced.iter().chain(added.iter()).collect();
    assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 1, "{all:?}");
    for r in all.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), Code::AlreadyExists, "{r:?}");
    }
    // A replacement that lost the race changed nothing: its old card still resolves.
    for ((number, _), result) in old_cards.iter().zip(&replaced) {
        let resolved = resolve(&suite, &key, number).await;
        assert_eq!(resolved.is_ok(), result.is_err(), "{number}: {resolved:?}");
    }
    assert!(resolve(&suite, &key, "99990000").await.is_ok());
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_revoked_in_identity_is_refused_by_wallet_and_checkout_shortly_after_on_postgres()
-> anyhow::Result<()> {
    a_key_revoked_in_identity_is_refused_by_wallet_and_checkout_shortly_after(Backend::Postgres)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_revoked_in_identity_is_refused_by_wallet_and_checkout_shortly_after_on_sqlite()
-> anyhow::Result<()> {
    a_key_revoked_in_identity_is_refused_by_wallet_and_checkout_shortly_after(Backend::Sqlite).await
}

async fn a_key_revoked_in_identity_is_refused_by_wallet_and_checkout_shortly_after(
    backend: Backend,
) -> anyhow::Result<()> {
    let suite = Suite::start(backend).await?;
    let (partner_id, admin) = suite.partner_with_key("Shop", &[Role::Admin]).await?;
    let mut identity = suite.identity().await?;
    let till = identity
        .create_api_key(authed(
            identity::CreateApiKeyRequest {
                idempotency_key: "till".into(),
                partner_id,
                display_name: "till".into(),
                roles: vec![Role::Pos as i32],
            },
            &admin,
        ))
        .await?
        .into_inner();
    let secret = till.secret.clone();
    let customer_id = register(&suite, &admin, "jana", vec![card("12345678")])
        .await?
        .customer
        .expect("customer")
        .id;
    let balance = || {
        let (suite, secret, customer_id) = (&suite, secret.clone(), customer_id.clone());
        async move {
            suite
                .wallet()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?
                .get_balance(authed(
                    wallet::GetBalanceRequest {
                        customer_id,
                        ..Default::default()
                    },
                    &secret,
                ))
                .await
                .map(|_| ())
        }
    };
    let evaluate = || {
        let (suite, secret) = (&suite, secret.clone());
        async move {
            suite
                .checkout()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?
                .evaluate(authed(
                    checkout::EvaluateRequest {
                        identifier: Some(card("12345678")),
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
                    &secret,
                ))
                .await
                .map(|_| ())
        }
    };
    // Both services now hold the key's principal in their caches.
    balance().await?;
    evaluate().await?;

    identity
        .revoke_api_key(authed(
            identity::RevokeApiKeyRequest {
                idempotency_key: "revoke-till".into(),
                api_key_id: till.api_key.expect("key").id,
            },
            &admin,
        ))
        .await?;
    // Well within the 30 s the services would otherwise keep the cached principal.
    let refused = |r: Result<(), tonic::Status>| -> anyhow::Result<Option<()>> {
        Ok(matches!(r, Err(s) if s.code() == Code::Unauthenticated).then_some(()))
    };
    eventually(Duration::from_secs(10), || async {
        refused(balance().await)
    })
    .await?;
    eventually(Duration::from_secs(10), || async {
        refused(evaluate().await)
    })
    .await?;
    suite.stop().await
}
