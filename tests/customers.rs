//! Updating a customer: masked fields only, etags against lost updates, and the change reaching
//! segmentation through `CustomerUpdated`, so an online segment sees the new tier.
use std::{collections::BTreeMap, time::Duration};

use loyalty_proto::{identity::v1 as identity, segmentation::v1 as segmentation};
use loyalty_testkit::{Backend, Suite, authed, eventually};
use tonic::Code;
use tonic_types::StatusExt;

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
                display_name: "crm".into(),
                roles: vec![
                    identity::Role::Support as i32,
                    identity::Role::Marketing as i32,
                ],
            },
            suite.admin_key(),
        ))
        .await?
        .into_inner()
        .secret)
}

fn update(
    idem: &str,
    customer: identity::Customer,
    paths: &[&str],
    etag: &str,
    key: &str,
) -> tonic::Request<identity::UpdateCustomerRequest> {
    authed(
        identity::UpdateCustomerRequest {
            idempotency_key: idem.into(),
            customer: Some(customer),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            etag: etag.into(),
        },
        key,
    )
}

fn first_field(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_changes_masked_fields_guards_with_etags_and_reaches_segments()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let key = partner_key(&suite, "Shop").await?;
    let rival = partner_key(&suite, "Rival").await?;
    let mut identity = suite.identity().await?;
    let created = identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "jana".into(),
                customer: Some(identity::Customer {
                    first_name: "Jana".into(),
                    city: "Praha".into(),
                    properties: BTreeMap::from([("tier".to_owned(), "silver".to_owned())]),
                    ..Default::default()
                }),
                identifiers: vec![],
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer");

    let mut segmentation = suite.segmentation().await?;
    let gold = segmentation
        .create_segment(authed(
            segmentation::CreateSegmentRequest {
                idempotency_key: "gold".into(),
                segment: Some(loyalty_testkit::segment_where_equals(
                    "Gold",
                    "customer.properties.tier",
                    "gold",
                )),
            },
            &key,
        ))
        .await?
        .into_inner()
        .segment
        .expect("segment");

    let mut change = identity::Customer {
        id: created.id.clone(),
        city: "Brno".into(),
        first_name: "not in the mask".into(),
        ..Default::default()
    };
    change.properties.insert("tier".into(), "gold".into());
    let updated = identity
        .update_customer(update(
            "u1",
            change.clone(),
            &["city", "properties.tier"],
            &created.etag,
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(updated.city, "Brno");
    assert_eq!(updated.first_name, "Jana", "fields outside the mask stay");
    assert_eq!(
        updated.properties.get("tier").map(String::as_str),
        Some("gold")
    );
    assert_ne!(updated.etag, created.etag);

    let stale = identity
        .update_customer(update("u2", change.clone(), &["city"], &created.etag, &key))
        .await
        .expect_err("stale etag");
    assert_eq!(
        stale
            .get_error_details()
            .error_info()
            .expect("reason")
            .reason,
        "ETAG_MISMATCH"
    );

    let mut bad = change.clone();
    bad.email = "not-an-email".into();
    let invalid = identity
        .update_customer(update("u3", bad, &["email"], "", &key))
        .await
        .expect_err("bad email");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(first_field(&invalid), "customer.email");
    let unknown = identity
        .update_customer(update("u4", change.clone(), &["state"], "", &key))
        .await
        .expect_err("state is not updatable");
    assert_eq!(first_field(&unknown), "update_mask");
    let foreign = identity
        .update_customer(update("u5", change, &["city"], "", &rival))
        .await
        .expect_err("another partner's customer");
    assert_eq!(foreign.code(), Code::NotFound);

    // The new tier reaches segmentation's feature store through CustomerUpdated.
    eventually(Duration::from_secs(20), || {
        let mut segmentation = segmentation.clone();
        let (customer_id, segment_id, key) = (created.id.clone(), gold.id.clone(), key.clone());
        async move {
            let m = segmentation
                .get_customer_memberships(authed(
                    segmentation::GetCustomerMembershipsRequest {
                        customer_id,
                        cart: None,
                    },
                    &key,
                ))
                .await?
                .into_inner();
            Ok(m.memberships
                .iter()
                .any(|m| m.segment_id == segment_id)
                .then_some(()))
        }
    })
    .await?;

    let read = identity
        .get_customer(authed(
            identity::GetCustomerRequest {
                customer_id: created.id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(read.etag, updated.etag);
    suite.stop().await
}

/// Who referred a customer is kept on the account: GetCustomer shows it, an update keeps it
/// (and cannot change it), a merge of the referrer points it to the survivor and an erasure of
/// the referrer clears it.
#[tokio::test(flavor = "multi_thread")]
async fn the_referrer_is_kept_on_the_account_through_merges_and_erasures() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let key = partner_key(&suite, "Cafe").await?;
    let mut identity = suite.identity().await?;
    let (ids, k) = (identity.clone(), key.clone());
    let create = move |idem: &'static str, referrer: String| {
        let (mut identity, key) = (ids.clone(), k.clone());
        async move {
            anyhow::Ok(
                identity
                    .create_customer(authed(
                        identity::CreateCustomerRequest {
                            idempotency_key: idem.into(),
                            customer: Some(identity::Customer {
                                first_name: idem.into(),
                                ..Default::default()
                            }),
                            referrer_customer_id: referrer,
                            ..Default::default()
                        },
                        &key,
                    ))
                    .await?
                    .into_inner()
                    .customer
                    .expect("customer"),
            )
        }
    };
    let jana = create("jana", String::new()).await?;
    assert_eq!(jana.referrer_customer_id, "", "not referred");
    let petr = create("petr", jana.id.clone()).await?;
    assert_eq!(petr.referrer_customer_id, jana.id);
    let survivor = create("anna", String::new()).await?;
    let (ids, k) = (identity.clone(), key.clone());
    let get = move |id: &str| {
        let (mut identity, key, id) = (ids.clone(), k.clone(), id.to_owned());
        async move {
            anyhow::Ok(
                identity
                    .get_customer(authed(
                        identity::GetCustomerRequest { customer_id: id },
                        &key,
                    ))
                    .await?
                    .into_inner()
                    .customer
                    .expect("customer"),
            )
        }
    };
    assert_eq!(get(&petr.id).await?.referrer_customer_id, jana.id);

    // An update keeps the referrer; the referrer is not a field a client can change.
    let renamed = identity
        .update_customer(update(
            "rename",
            identity::Customer {
                id: petr.id.clone(),
                first_name: "Petr".into(),
                referrer_customer_id: survivor.id.clone(),
                ..Default::default()
            },
            &["first_name"],
            "",
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(renamed.referrer_customer_id, jana.id);
    let refused = identity
        .update_customer(update(
            "re-refer",
            identity::Customer {
                id: petr.id.clone(),
                referrer_customer_id: survivor.id.clone(),
                ..Default::default()
            },
            &["referrer_customer_id"],
            "",
            &key,
        ))
        .await
        .expect_err("the referrer is output only");
    assert_eq!(refused.code(), Code::InvalidArgument);

    // Jana is merged into Anna: Petr was referred by the account that survives.
    identity
        .merge_customers(authed(
            identity::MergeCustomersRequest {
                idempotency_key: "merge".into(),
                surviving_customer_id: survivor.id.clone(),
                merged_customer_id: jana.id.clone(),
                reason: "same person".into(),
            },
            &key,
        ))
        .await?;
    let after_merge = get(&petr.id).await?;
    assert_eq!(after_merge.referrer_customer_id, survivor.id);
    assert_ne!(
        after_merge.etag, renamed.etag,
        "the change shows in the etag"
    );

    // Anna is erased: nobody is known to have referred Petr any more.
    identity
        .erase_customer(authed(
            identity::EraseCustomerRequest {
                idempotency_key: "erase".into(),
                customer_id: survivor.id.clone(),
                reason: "GDPR request 2026/18".into(),
            },
            &key,
        ))
        .await?;
    assert_eq!(get(&petr.id).await?.referrer_customer_id, "");
    // Erasing a referred customer forgets their referrer too.
    let eva = create("eva", petr.id.clone()).await?;
    identity
        .erase_customer(authed(
            identity::EraseCustomerRequest {
                idempotency_key: "erase-eva".into(),
                customer_id: eva.id.clone(),
                reason: "GDPR request 2026/19".into(),
            },
            &key,
        ))
        .await?;
    assert_eq!(get(&eva.id).await?.referrer_customer_id, "");
    suite.stop().await
}
