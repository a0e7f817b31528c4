//! Partners, customer listing and search, blocking and merging, end to end against the real
//! services (PostgreSQL + Redis; one scenario in embedded mode).
use std::{collections::BTreeMap, collections::HashSet, time::Duration};

use loyalty_proto::{identity::v1 as identity, types::v1 as types};
use loyalty_testkit::{Backend, Suite, authed, error_reason as reason, eventually};
use tonic::Code;

use identity::identity_service_client::IdentityServiceClient;
type Client = IdentityServiceClient<tonic::transport::Channel>;

const SUPPORT: &[identity::Role] = &[identity::Role::Support, identity::Role::Marketing];

fn card(number: &str) -> types::IdentifierRef {
    types::IdentifierRef {
        r#type: types::IdentifierType::Card as i32,
        value: number.to_owned(),
    }
}

async fn create(
    identity: &mut Client,
    key: &str,
    idem: &str,
    customer: identity::Customer,
    cards: &[&str],
) -> anyhow::Result<identity::Customer> {
    Ok(identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: idem.into(),
                customer: Some(customer),
                identifiers: cards.iter().map(|c| card(c)).collect(),
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer"))
}

async fn search(
    identity: &mut Client,
    key: &str,
    query: &str,
    properties: &[(&str, &str)],
) -> anyhow::Result<Vec<identity::CustomerSearchResult>> {
    Ok(identity
        .search_customers(authed(
            identity::SearchCustomersRequest {
                query: query.into(),
                property_filters: properties
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .results)
}

/// Waits until `query` finds exactly the customers `ids` (the index follows identity's events).
async fn wait_search(
    identity: &Client,
    key: &str,
    query: &str,
    properties: &[(&str, &str)],
    ids: &[&str],
) -> anyhow::Result<Vec<identity::CustomerSearchResult>> {
    let want: HashSet<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    eventually(Duration::from_secs(20), || {
        let mut identity = identity.clone();
        let want = want.clone();
        async move {
            let hits = search(&mut identity, key, query, properties).await?;
            let got: HashSet<String> = hits
                .iter()
                .map(|h| h.customer.as_ref().expect("customer").id.clone())
                .collect();
            Ok((got == want).then_some(hits))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_customers_by_name_prefix_email_phone_card_and_property() -> anyhow::Result<()>
{
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite.partner_with_key("Shop", SUPPORT).await?;
    let (_, rival) = suite.partner_with_key("Rival", SUPPORT).await?;
    let mut identity = suite.identity().await?;
    let jana = create(
        &mut identity,
        &key,
        "jana",
        identity::Customer {
            first_name: "Jana".into(),
            last_name: "Dvořáková".into(),
            email: "Jana.D@example.cz".into(),
            phone: "+420 601 234 567".into(),
            properties: BTreeMap::from([("tier".to_owned(), "gold".to_owned())]),
            ..Default::default()
        },
        &["2000 0000 0001"],
    )
    .await?;
    let petr = create(
        &mut identity,
        &key,
        "petr",
        identity::Customer {
            first_name: "Petr".into(),
            last_name: "Dvořák".into(),
            properties: BTreeMap::from([("tier".to_owned(), "silver".to_owned())]),
            ..Default::default()
        },
        &[],
    )
    .await?;
    // Another partner's namesake is never found.
    create(
        &mut identity,
        &rival,
        "rival-jana",
        identity::Customer {
            first_name: "Jana".into(),
            last_name: "Dvořáková".into(),
            ..Default::default()
        },
        &[],
    )
    .await?;

    let both = wait_search(&identity, &key, "dvorak", &[], &[&jana.id, &petr.id]).await?;
    assert!(both.iter().all(|h| h.matched_field == "last_name"));
    let exact = wait_search(&identity, &key, "DVOŘÁK", &[], &[&jana.id, &petr.id]).await?;
    assert_eq!(
        exact[0].customer.as_ref().unwrap().id,
        petr.id,
        "an exact word match ranks before a prefix match"
    );
    assert!(exact[0].score > exact[1].score);
    wait_search(&identity, &key, "jana dvo", &[], &[&jana.id]).await?;
    let by_email = wait_search(&identity, &key, "jana.d@ex", &[], &[&jana.id]).await?;
    assert_eq!(by_email[0].matched_field, "email");
    wait_search(&identity, &key, "601 234", &[], &[&jana.id]).await?;
    let by_card = wait_search(&identity, &key, "2000 0000", &[], &[&jana.id]).await?;
    assert_eq!(by_card[0].matched_field, "identifier");
    wait_search(&identity, &key, "", &[("tier", "gold")], &[&jana.id]).await?;
    wait_search(&identity, &key, "dvo", &[("tier", "silver")], &[&petr.id]).await?;

    let short = identity
        .search_customers(authed(
            identity::SearchCustomersRequest {
                query: "j".into(),
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect_err("one character is too short");
    assert_eq!(short.code(), Code::InvalidArgument);

    // ListCustomers: property and email filters.
    let gold = identity
        .list_customers(authed(
            identity::ListCustomersRequest {
                property_filters: vec!["tier=gold".into()],
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customers;
    assert_eq!(
        gold.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![jana.id.clone()]
    );
    let by_email = identity
        .list_customers(authed(
            identity::ListCustomersRequest {
                email: "JANA.D@example.cz".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customers;
    assert_eq!(by_email.len(), 1);
    let none = identity
        .list_customers(authed(
            identity::ListCustomersRequest {
                contact_source_id: "0190c0de-0000-7000-8000-000000000001".into(),
                interest_id: "0190c0de-0000-7000-8000-000000000002".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customers;
    assert!(
        none.is_empty(),
        "nobody has that contact source and interest"
    );
    let bad = identity
        .list_customers(authed(
            identity::ListCustomersRequest {
                property_filters: vec!["no-equals-sign".into()],
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect_err("not key=value");
    assert_eq!(bad.code(), Code::InvalidArgument);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn list_customers_pages_without_duplicates_or_gaps() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite.partner_with_key("Shop", SUPPORT).await?;
    let mut identity = suite.identity().await?;
    let mut created = Vec::new();
    for i in 0..7 {
        let c = create(
            &mut identity,
            &key,
            &format!("c{i}"),
            identity::Customer {
                first_name: format!("Novak{i}"),
                last_name: "Novák".into(),
                ..Default::default()
            },
            &[],
        )
        .await?;
        created.push(c.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = identity
            .list_customers(authed(
                identity::ListCustomersRequest {
                    page_size: 3,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &key,
            ))
            .await?
            .into_inner();
        seen.extend(page.customers.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, created, "every customer once, in creation order");

    // Search pages: the same set, no duplicates.
    let refs: Vec<&str> = created.iter().map(String::as_str).collect();
    wait_search(&identity, &key, "novak", &[], &refs).await?;
    let mut found = Vec::new();
    let mut token = String::new();
    loop {
        let page = identity
            .search_customers(authed(
                identity::SearchCustomersRequest {
                    query: "novak".into(),
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &key,
            ))
            .await?
            .into_inner();
        found.extend(
            page.results
                .into_iter()
                .map(|r| r.customer.expect("customer").id),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let unique: HashSet<&String> = found.iter().collect();
    assert_eq!(found.len(), created.len(), "no duplicates: {found:?}");
    assert_eq!(unique.len(), created.len(), "no gaps");
    Ok(())
}

async fn block_resolve_unblock(backend: Backend) -> anyhow::Result<()> {
    let suite = Suite::start(backend).await?;
    let (_, key) = suite
        .partner_with_key(
            "Shop",
            &[
                identity::Role::Support,
                identity::Role::Pos,
                identity::Role::Marketing,
            ],
        )
        .await?;
    let (_, rival) = suite.partner_with_key("Rival", SUPPORT).await?;
    let mut identity = suite.identity().await?;
    let jana = create(
        &mut identity,
        &key,
        "jana",
        identity::Customer {
            first_name: "Jana".into(),
            ..Default::default()
        },
        &["3000 0001"],
    )
    .await?;
    let resolve = |identity: &mut Client| {
        let mut identity = identity.clone();
        let key = key.clone();
        async move {
            identity
                .resolve_identifier(authed(
                    identity::ResolveIdentifierRequest {
                        identifier: Some(card("3000 0001")),
                    },
                    &key,
                ))
                .await
        }
    };
    // Warm the resolution cache first: blocking must still take effect at once.
    assert_eq!(
        resolve(&mut identity).await?.into_inner().customer_id,
        jana.id
    );
    let block = |idem: &str, key: &str| {
        authed(
            identity::BlockCustomerRequest {
                idempotency_key: idem.into(),
                customer_id: jana.id.clone(),
                reason: "card fraud".into(),
            },
            key,
        )
    };
    let missing = identity
        .block_customer(block("b0", &rival))
        .await
        .expect_err("another partner's customer");
    assert_eq!(missing.code(), Code::NotFound);
    let blocked = identity
        .block_customer(block("b1", &key))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(blocked.state, identity::CustomerState::Blocked as i32);
    assert_eq!(blocked.block_reason, "card fraud");
    let retry = identity
        .block_customer(block("b1", &key))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(retry, blocked, "a retry returns the same answer");

    let refused = resolve(&mut identity).await.expect_err("blocked");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "CUSTOMER_BLOCKED");

    let unblocked = identity
        .unblock_customer(authed(
            identity::UnblockCustomerRequest {
                idempotency_key: "u1".into(),
                customer_id: jana.id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(unblocked.state, identity::CustomerState::Active as i32);
    assert!(unblocked.block_time.is_none());
    assert_eq!(
        resolve(&mut identity).await?.into_inner().customer_id,
        jana.id
    );
    // The account history (fed by identity's own event feed or stream) shows both.
    eventually(Duration::from_secs(20), || {
        let mut identity = identity.clone();
        let (id, key) = (jana.id.clone(), key.clone());
        async move {
            let entries = identity
                .list_account_history(authed(
                    identity::ListAccountHistoryRequest {
                        customer_id: id,
                        ..Default::default()
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .entries;
            let summaries: Vec<&str> = entries.iter().map(|e| e.summary.as_str()).collect();
            Ok(summaries
                .starts_with(&["Account unblocked", "Account blocked"])
                .then_some(()))
        }
    })
    .await?;
    let missing = identity
        .unblock_customer(authed(
            identity::UnblockCustomerRequest {
                idempotency_key: "u2".into(),
                customer_id: jana.id.clone(),
            },
            &rival,
        ))
        .await
        .expect_err("another partner's customer");
    assert_eq!(missing.code(), Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_customers_card_is_refused_at_once_and_resolves_again_after_unblock()
-> anyhow::Result<()> {
    block_resolve_unblock(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_customers_card_is_refused_at_once_in_embedded_mode() -> anyhow::Result<()> {
    block_resolve_unblock(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn merging_moves_cards_consents_and_events_to_the_survivor_and_marks_the_duplicate_merged()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite.partner_with_key("Rival", SUPPORT).await?;
    let mut identity = suite.identity().await?;
    let survivor = create(
        &mut identity,
        &key,
        "a",
        identity::Customer {
            first_name: "Jana".into(),
            ..Default::default()
        },
        &["4000 0001"],
    )
    .await?;
    let duplicate = create(
        &mut identity,
        &key,
        "b",
        identity::Customer {
            first_name: "Jana".into(),
            last_name: "Dup".into(),
            ..Default::default()
        },
        &["4000 0002", "4000 0003"],
    )
    .await?;
    // The duplicate's consent and tracked event follow it into the survivor.
    let newsletter = identity
        .create_consent_type(authed(
            identity::CreateConsentTypeRequest {
                idempotency_key: "newsletter".into(),
                consent_type: Some(identity::ConsentType {
                    code: "newsletter".into(),
                    display_name: "Newsletter".into(),
                    purpose: identity::ConsentPurpose::Marketing as i32,
                    channels: vec![types::CommunicationChannel::Email as i32],
                    text: "We may send you offers by email.".into(),
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?
        .into_inner()
        .consent_type
        .expect("consent type");
    identity
        .grant_consent(authed(
            identity::GrantConsentRequest {
                idempotency_key: "grant".into(),
                customer_id: duplicate.id.clone(),
                consent_type_id: newsletter.id.clone(),
                source: "eshop".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?;
    identity
        .track_event(authed(
            identity::TrackEventRequest {
                idempotency_key: "quiz".into(),
                customer_id: duplicate.id.clone(),
                event_type_id: "custom".into(),
                properties: BTreeMap::from([("name".to_owned(), "quiz_done".to_owned())]),
                ..Default::default()
            },
            &key,
        ))
        .await?;
    // Cache the duplicate's card resolution: the merge must drop it.
    let resolver = identity.clone();
    let resolve = |number: &'static str| {
        let mut identity = resolver.clone();
        let key = key.clone();
        async move {
            identity
                .resolve_identifier(authed(
                    identity::ResolveIdentifierRequest {
                        identifier: Some(card(number)),
                    },
                    &key,
                ))
                .await
        }
    };
    assert_eq!(
        resolve("4000 0002").await?.into_inner().customer_id,
        duplicate.id
    );
    let merge = |idem: &str, a: &str, b: &str, key: &str| {
        authed(
            identity::MergeCustomersRequest {
                idempotency_key: idem.into(),
                surviving_customer_id: a.into(),
                merged_customer_id: b.into(),
                reason: "same person".into(),
            },
            key,
        )
    };
    let same = identity
        .merge_customers(merge("m0", &survivor.id, &survivor.id, &key))
        .await
        .expect_err("same ids");
    assert_eq!(same.code(), Code::InvalidArgument);
    let foreign = identity
        .merge_customers(merge("m0", &survivor.id, &duplicate.id, &rival))
        .await
        .expect_err("another partner's customers");
    assert_eq!(foreign.code(), Code::NotFound);

    let merged = identity
        .merge_customers(merge("m1", &survivor.id, &duplicate.id, &key))
        .await?
        .into_inner();
    assert_eq!(merged.moved_identifier_count, 2);
    assert_eq!(merged.customer.expect("customer").id, survivor.id);
    let retry = identity
        .merge_customers(merge("m1", &survivor.id, &duplicate.id, &key))
        .await?
        .into_inner();
    assert_eq!(retry.moved_identifier_count, 2, "a retry answers the same");

    assert_eq!(
        resolve("4000 0002").await?.into_inner().customer_id,
        survivor.id,
        "the duplicate's card resolves to the survivor"
    );
    assert_eq!(
        resolve("4000 0003").await?.into_inner().customer_id,
        survivor.id
    );
    let dup = identity
        .get_customer(authed(
            identity::GetCustomerRequest {
                customer_id: duplicate.id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(dup.state, identity::CustomerState::Merged as i32);
    assert_eq!(dup.merged_into_customer_id, survivor.id);
    let consents = identity
        .list_customer_consents(authed(
            identity::ListCustomerConsentsRequest {
                customer_id: survivor.id.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .consents;
    assert!(
        consents.iter().any(|c| c.consent_type_id == newsletter.id
            && c.state == identity::ConsentState::Granted as i32),
        "the duplicate's consent moved: {consents:?}"
    );
    let events = identity
        .list_customer_events(authed(
            identity::ListCustomerEventsRequest {
                customer_id: survivor.id.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .events;
    assert_eq!(events.len(), 1, "the duplicate's tracked event moved");
    let again = identity
        .merge_customers(merge("m2", &survivor.id, &duplicate.id, &key))
        .await
        .expect_err("already merged");
    assert_eq!(reason(&again), "CUSTOMER_MERGED");
    let listed = identity
        .list_customers(authed(identity::ListCustomersRequest::default(), &key))
        .await?
        .into_inner()
        .customers;
    assert_eq!(listed.len(), 1, "merged accounts are not listed by default");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn partners_are_listed_for_the_platform_admin_and_updated_with_etags() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (shop_id, admin) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let (rival_id, support) = suite
        .partner_with_key("Rival", &[identity::Role::Support])
        .await?;
    let mut identity = suite.identity().await?;
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = identity
            .list_partners(suite.as_admin(identity::ListPartnersRequest {
                page_size: 1,
                page_token: token.clone(),
            }))
            .await?
            .into_inner();
        ids.extend(page.partners.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&shop_id) && ids.contains(&rival_id));
    let own = identity
        .list_partners(authed(identity::ListPartnersRequest::default(), &admin))
        .await?
        .into_inner()
        .partners;
    assert_eq!(
        own.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![shop_id.clone()],
        "a partner key sees only its own partner"
    );
    let current = own[0].clone();
    assert_eq!(current.time_zone, "UTC");
    let update = |idem: &str, tz: &str, etag: &str, id: &str| identity::UpdatePartnerRequest {
        idempotency_key: idem.into(),
        partner: Some(identity::Partner {
            id: id.into(),
            time_zone: tz.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["time_zone".into()],
        }),
        etag: etag.into(),
    };
    let updated = identity
        .update_partner(authed(
            update("u1", "Europe/Prague", &current.etag, &shop_id),
            &admin,
        ))
        .await?
        .into_inner()
        .partner
        .expect("partner");
    assert_eq!(updated.time_zone, "Europe/Prague");
    assert_eq!(updated.display_name, "Shop", "unmasked fields stay");
    assert_ne!(updated.etag, current.etag);
    let read = identity
        .get_partner(authed(
            identity::GetPartnerRequest {
                partner_id: shop_id.clone(),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .partner
        .expect("partner");
    assert_eq!(
        (read.time_zone.as_str(), read.etag.as_str()),
        ("Europe/Prague", updated.etag.as_str()),
        "GetPartner shows the settings UpdatePartner wrote"
    );
    let stale = identity
        .update_partner(authed(
            update("u2", "Europe/Vienna", &current.etag, &shop_id),
            &admin,
        ))
        .await
        .expect_err("stale etag");
    assert_eq!(reason(&stale), "ETAG_MISMATCH");
    let bad = identity
        .update_partner(authed(update("u3", "Mars/Base", "", &shop_id), &admin))
        .await
        .expect_err("not a time zone");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let foreign = identity
        .update_partner(authed(update("u4", "UTC", "", &shop_id), &support))
        .await
        .expect_err("another partner");
    assert_eq!(foreign.code(), Code::NotFound);
    let not_admin = identity
        .update_partner(authed(update("u5", "UTC", "", &rival_id), &support))
        .await
        .expect_err("support may not change the partner");
    assert_eq!(not_admin.code(), Code::PermissionDenied);
    Ok(())
}
