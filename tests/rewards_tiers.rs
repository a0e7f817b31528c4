//! Membership levels through the real binaries: the tier ladder created, read by UUID and
//! code, listed by rank, updated under an etag and deleted; code and rank unique; validation
//! naming the bad fields; a manual tier set, read back with progress, listed in the history
//! and cleared; another partner's tier not found.
use loyalty_proto::{identity::v1 as identity, rewards::v1 as pb, types::v1::Money};
use loyalty_testkit::{Backend, Suite, authed, error_reason, violated_fields};
use prost_types::FieldMask;
use tonic::{Code, Status, transport::Channel};

type Rewards = pb::rewards_service_client::RewardsServiceClient<Channel>;

fn fails<T: std::fmt::Debug>(r: Result<T, Status>) -> Status {
    r.expect_err("the call should have been refused")
}

fn tier(code: &str, rank: i32, min_spend_minor: i64) -> pb::Tier {
    pb::Tier {
        code: code.into(),
        display_name: code.to_uppercase(),
        rank,
        qualification: Some(pb::TierQualification {
            minimum_spend: Some(Money {
                currency_code: "EUR".into(),
                amount_minor: min_spend_minor,
            }),
            period_type: pb::TierPeriodType::CalendarYear as i32,
            ..Default::default()
        }),
        points_multiplier_basis_points: 12_500,
        color: "#C0C0C0".into(),
        ..Default::default()
    }
}

async fn create(r: &mut Rewards, key: &str, idem: &str, t: pb::Tier) -> Result<pb::Tier, Status> {
    Ok(r.create_tier(authed(
        pb::CreateTierRequest {
            idempotency_key: idem.into(),
            tier: Some(t),
        },
        key,
    ))
    .await?
    .into_inner()
    .tier
    .expect("tier"))
}

#[tokio::test(flavor = "multi_thread")]
async fn tiers_are_managed_set_manually_and_kept_per_partner() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Cafe", &[identity::Role::Marketing])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut r = suite.rewards().await?;

    // ---- CRUD ----
    let silver = create(&mut r, &key, "silver", tier("silver", 1, 100_000)).await?;
    let again = create(&mut r, &key, "silver", tier("silver", 1, 100_000)).await?;
    assert_eq!(again.id, silver.id, "a retry answers the same tier");
    let gold = create(&mut r, &key, "gold", tier("gold", 2, 500_000)).await?;
    assert_eq!(gold.points_multiplier_basis_points, 12_500);
    assert_eq!(
        gold.downgrade_mode,
        pb::TierDowngradeMode::ToQualified as i32,
        "unspecified is stored as TO_QUALIFIED"
    );

    let err = fails(create(&mut r, &key, "dup-code", tier("silver", 5, 1)).await);
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let err = fails(create(&mut r, &key, "dup-rank", tier("bronze", 2, 1)).await);
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("rank 2"), "{err:?}");

    let mut bad = tier("Bad Code", 0, 100);
    bad.color = "silver".into();
    bad.qualification = Some(pb::TierQualification {
        minimum_points: 10,
        ..Default::default()
    });
    let err = fails(create(&mut r, &key, "bad", bad).await);
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields = violated_fields(&err);
    for f in [
        "tier.code",
        "tier.rank",
        "tier.color",
        "tier.qualification.period_months",
    ] {
        assert!(fields.contains(&f.to_owned()), "{f} in {fields:?}");
    }

    let by_code = r
        .get_tier(authed(
            pb::GetTierRequest {
                tier_id: "gold".into(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .tier
        .expect("tier");
    assert_eq!(by_code.id, gold.id);
    let page = r
        .list_tiers(authed(
            pb::ListTiersRequest {
                page_size: 1,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(page.tiers.len(), 1);
    assert_eq!(page.tiers[0].code, "silver");
    let rest = r
        .list_tiers(authed(
            pb::ListTiersRequest {
                page_size: 1,
                page_token: page.next_page_token,
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(rest.tiers[0].code, "gold", "by increasing rank");

    let mut change = gold.clone();
    change.display_name = "Gold club".into();
    change.downgrade_mode = pb::TierDowngradeMode::OneLevel as i32;
    let update = |idem: &str, etag: &str, t: pb::Tier| pb::UpdateTierRequest {
        idempotency_key: idem.into(),
        tier: Some(t),
        update_mask: Some(FieldMask {
            paths: vec!["display_name".into(), "downgrade_mode".into()],
        }),
        etag: etag.into(),
    };
    let updated = r
        .update_tier(authed(update("u1", &gold.etag, change.clone()), &key))
        .await?
        .into_inner()
        .tier
        .expect("tier");
    assert_eq!(updated.display_name, "Gold club");
    assert_eq!(
        updated.downgrade_mode,
        pb::TierDowngradeMode::OneLevel as i32
    );
    assert_ne!(updated.etag, gold.etag);
    let err = fails(
        r.update_tier(authed(update("u2", &gold.etag, change), &key))
            .await,
    );
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&err), "ETAG_MISMATCH");

    // ---- Another partner ----
    for id in [gold.id.as_str(), "gold"] {
        let err = fails(
            r.get_tier(authed(pb::GetTierRequest { tier_id: id.into() }, &rival))
                .await,
        );
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    let customer = uuid::Uuid::now_v7().to_string();
    let err = fails(
        r.set_customer_tier(authed(
            pb::SetCustomerTierRequest {
                idempotency_key: "rival-set".into(),
                customer_id: customer.clone(),
                tier_id: gold.id.clone(),
                reason: "x".into(),
                ..Default::default()
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // ---- A customer's tier ----
    let get = |customer: &str| pb::GetCustomerTierRequest {
        customer_id: customer.into(),
    };
    let none = r
        .get_customer_tier(authed(get(&customer), &key))
        .await?
        .into_inner()
        .customer_tier
        .expect("customer tier");
    assert_eq!(none.rank, 0, "no activity, no tier");
    assert_eq!(none.next_tier_id, silver.id);
    assert_eq!(
        none.spend_to_next_tier.map(|m| m.amount_minor),
        Some(100_000)
    );
    assert!(none.period_end_time.is_some(), "the end of this year");

    let set = |idem: &str, tier: &str| pb::SetCustomerTierRequest {
        idempotency_key: idem.into(),
        customer_id: customer.clone(),
        tier_id: tier.into(),
        reason: "VIP guest".into(),
        ..Default::default()
    };
    let manual = r
        .set_customer_tier(authed(set("set-gold", "gold"), &key))
        .await?
        .into_inner()
        .customer_tier
        .expect("customer tier");
    assert_eq!(
        (manual.tier_id.as_str(), manual.manual),
        (gold.id.as_str(), true)
    );
    assert_eq!(manual.next_tier_id, "", "gold is the top");
    let retry = r
        .set_customer_tier(authed(set("set-gold", "gold"), &key))
        .await?
        .into_inner()
        .customer_tier
        .expect("customer tier");
    assert_eq!(retry, manual, "a retry answers the same");
    let read = r
        .get_customer_tier(authed(get(&customer), &key))
        .await?
        .into_inner()
        .customer_tier
        .expect("customer tier");
    assert_eq!((read.tier_code.as_str(), read.manual), ("gold", true));

    let err = fails(
        r.set_customer_tier(authed(
            pb::SetCustomerTierRequest {
                reason: String::new(),
                customer_id: "nope".into(),
                ..set("bad-set", "gold")
            },
            &key,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields = violated_fields(&err);
    assert!(fields.contains(&"reason".to_owned()), "{fields:?}");
    assert!(fields.contains(&"customer_id".to_owned()), "{fields:?}");

    let cleared = r
        .set_customer_tier(authed(set("clear", ""), &key))
        .await?
        .into_inner()
        .customer_tier
        .expect("customer tier");
    assert_eq!((cleared.rank, cleared.manual), (0, false));

    let history = r
        .list_customer_tier_history(authed(
            pb::ListCustomerTierHistoryRequest {
                customer_id: customer.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .changes;
    let causes: Vec<i32> = history.iter().map(|h| h.cause).collect();
    assert_eq!(
        causes,
        [
            pb::TierChangeCause::ManualSet as i32,
            pb::TierChangeCause::ManualCleared as i32,
        ]
    );
    assert_eq!(history[0].reason, "VIP guest");
    assert_eq!(history[0].tier_id, gold.id);
    let theirs = r
        .list_customer_tier_history(authed(
            pb::ListCustomerTierHistoryRequest {
                customer_id: customer.clone(),
                ..Default::default()
            },
            &rival,
        ))
        .await?
        .into_inner()
        .changes;
    assert!(theirs.is_empty(), "another partner sees no history");

    // ---- Delete ----
    let err = fails(
        r.delete_tier(authed(
            pb::DeleteTierRequest {
                idempotency_key: "rival-delete".into(),
                tier_id: silver.id.clone(),
                etag: String::new(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    r.delete_tier(authed(
        pb::DeleteTierRequest {
            idempotency_key: "delete-silver".into(),
            tier_id: silver.id.clone(),
            etag: silver.etag.clone(),
        },
        &key,
    ))
    .await?;
    let err = fails(
        r.get_tier(authed(
            pb::GetTierRequest {
                tier_id: silver.id.clone(),
            },
            &key,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    // The rank is free again.
    create(&mut r, &key, "bronze", tier("bronze", 1, 10_000)).await?;

    suite.stop().await
}
