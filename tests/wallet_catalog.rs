//! The wallet's catalogue through gRPC: points groups and points types created, read, listed,
//! updated and deleted by the partner's ADMIN keys; validation naming every bad field; exactly
//! one default type; immutable code, unit and currency; types and groups in use kept; etags,
//! idempotent retries and other partners' ids; a type's rules applied to later awards.
use loyalty_proto::{identity::v1 as identity, wallet::v1 as wallet};
use loyalty_testkit::{Backend, Suite, authed, error_reason, violated_fields};
use prost_types::FieldMask;
use tonic::{Code, Status, transport::Channel};
use uuid::Uuid;

type Wallet = wallet::wallet_service_client::WalletServiceClient<Channel>;

/// A partner's ADMIN key and a POS key of the same partner.
async fn partner_keys(suite: &Suite, name: &str) -> anyhow::Result<(String, String)> {
    let (partner_id, admin) = suite
        .partner_with_key(name, &[identity::Role::Admin])
        .await?;
    let pos = suite
        .identity()
        .await?
        .create_api_key(suite.as_admin(identity::CreateApiKeyRequest {
            idempotency_key: format!("pos-{name}"),
            partner_id,
            display_name: format!("{name} till"),
            roles: vec![identity::Role::Pos as i32],
        }))
        .await?
        .into_inner()
        .secret;
    Ok((admin, pos))
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn fails<T: std::fmt::Debug>(r: Result<T, Status>) -> Status {
    r.expect_err("the call should have been refused")
}

fn points_type(code: &str) -> wallet::PointsType {
    wallet::PointsType {
        code: code.into(),
        display_name: format!("{code} points"),
        expiry_rule: wallet::ExpiryRule::Never as i32,
        spendable: true,
        ..Default::default()
    }
}

fn group(code: &str) -> wallet::PointsGroup {
    wallet::PointsGroup {
        code: code.into(),
        display_name: format!("{code} group"),
        ..Default::default()
    }
}

async fn create_type(
    w: &mut Wallet,
    key: &str,
    t: wallet::PointsType,
) -> Result<wallet::PointsType, Status> {
    Ok(w.create_points_type(authed(
        wallet::CreatePointsTypeRequest {
            idempotency_key: format!("create-{}-{}", t.code, t.display_name),
            points_type: Some(t),
        },
        key,
    ))
    .await?
    .into_inner()
    .points_type
    .expect("points type"))
}

async fn get_type(w: &mut Wallet, key: &str, id: &str) -> Result<wallet::PointsType, Status> {
    Ok(w.get_points_type(authed(
        wallet::GetPointsTypeRequest {
            points_type_id: id.into(),
        },
        key,
    ))
    .await?
    .into_inner()
    .points_type
    .expect("points type"))
}

async fn update_type(
    w: &mut Wallet,
    key: &str,
    idem: &str,
    t: wallet::PointsType,
    paths: &[&str],
    etag: &str,
) -> Result<wallet::PointsType, Status> {
    Ok(w.update_points_type(authed(
        wallet::UpdatePointsTypeRequest {
            idempotency_key: idem.into(),
            points_type: Some(t),
            update_mask: mask(paths),
            etag: etag.into(),
        },
        key,
    ))
    .await?
    .into_inner()
    .points_type
    .expect("points type"))
}

async fn delete_type(w: &mut Wallet, key: &str, idem: &str, id: &str) -> Result<(), Status> {
    w.delete_points_type(authed(
        wallet::DeletePointsTypeRequest {
            idempotency_key: idem.into(),
            points_type_id: id.into(),
        },
        key,
    ))
    .await?;
    Ok(())
}

async fn list_types(
    w: &mut Wallet,
    key: &str,
    group: &str,
    include_inactive: bool,
) -> Result<Vec<String>, Status> {
    Ok(w.list_points_types(authed(
        wallet::ListPointsTypesRequest {
            points_group_id: group.into(),
            include_inactive,
            ..Default::default()
        },
        key,
    ))
    .await?
    .into_inner()
    .points_types
    .into_iter()
    .map(|t| t.code)
    .collect())
}

fn award(
    idem: &str,
    customer_id: &str,
    points: i64,
    points_type: &str,
) -> wallet::AwardPointsRequest {
    wallet::AwardPointsRequest {
        idempotency_key: idem.into(),
        customer_id: customer_id.into(),
        points,
        reason: "purchase".into(),
        points_type_id: points_type.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn points_groups_are_managed_by_admins_read_by_everyone_and_kept_while_in_use()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (admin, pos) = partner_keys(&suite, "Shop").await?;
    let (rival, _) = partner_keys(&suite, "Rival").await?;
    let mut w = suite.wallet().await?;
    let create = |key: &str, idem: &str, g: wallet::PointsGroup| {
        authed(
            wallet::CreatePointsGroupRequest {
                idempotency_key: idem.into(),
                points_group: Some(g),
            },
            key,
        )
    };

    let fuel = w
        .create_points_group(create(&admin, "g-fuel", group("fuel")))
        .await?
        .into_inner()
        .points_group
        .expect("group");
    assert_eq!(fuel.code, "fuel");
    assert_eq!(fuel.etag, "1");
    assert!(Uuid::try_parse(&fuel.id).is_ok());
    assert!(fuel.create_time.is_some() && fuel.create_time == fuel.update_time);

    let denied = fails(
        w.create_points_group(create(&pos, "g-pos", group("till")))
            .await,
    );
    assert_eq!(denied.code(), Code::PermissionDenied);

    let invalid = fails(
        w.create_points_group(create(
            &admin,
            "g-bad",
            wallet::PointsGroup {
                code: "Fuel Points".into(),
                display_name: " ".into(),
                description: "x".repeat(2001),
                ..Default::default()
            },
        ))
        .await,
    );
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&invalid),
        [
            "points_group.code",
            "points_group.display_name",
            "points_group.description"
        ]
    );
    let taken = fails(
        w.create_points_group(create(&admin, "g-fuel-again", group("fuel")))
            .await,
    );
    assert_eq!(taken.code(), Code::AlreadyExists);

    for code in ["coffee", "bakery"] {
        w.create_points_group(create(&admin, code, group(code)))
            .await?;
    }
    // A retry answers the first group; the same key for another group is refused.
    let retried = w
        .create_points_group(create(&admin, "g-fuel", group("fuel")))
        .await?
        .into_inner()
        .points_group
        .expect("group");
    assert_eq!(retried, fuel);
    let reused = fails(
        w.create_points_group(create(&admin, "g-fuel", group("wash")))
            .await,
    );
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(error_reason(&reused), "IDEMPOTENCY_KEY_REUSED");

    // Listed by code, page by page, by any role.
    let first = w
        .list_points_groups(authed(
            wallet::ListPointsGroupsRequest {
                page_size: 2,
                page_token: String::new(),
            },
            &pos,
        ))
        .await?
        .into_inner();
    let codes: Vec<_> = first
        .points_groups
        .iter()
        .map(|g| g.code.as_str())
        .collect();
    assert_eq!(codes, ["bakery", "coffee"]);
    assert!(!first.next_page_token.is_empty());
    let second = w
        .list_points_groups(authed(
            wallet::ListPointsGroupsRequest {
                page_size: 2,
                page_token: first.next_page_token,
            },
            &pos,
        ))
        .await?
        .into_inner();
    let codes: Vec<_> = second
        .points_groups
        .iter()
        .map(|g| g.code.as_str())
        .collect();
    assert_eq!(codes, ["fuel"]);
    assert_eq!(second.next_page_token, "");
    let bad_token = fails(
        w.list_points_groups(authed(
            wallet::ListPointsGroupsRequest {
                page_size: 2,
                page_token: "not a token".into(),
            },
            &pos,
        ))
        .await,
    );
    assert_eq!(violated_fields(&bad_token), ["page_token"]);

    // Read by UUID or code; another partner sees nothing.
    for id in [fuel.id.as_str(), "fuel"] {
        let got = w
            .get_points_group(authed(
                wallet::GetPointsGroupRequest {
                    points_group_id: id.into(),
                },
                &pos,
            ))
            .await?
            .into_inner()
            .points_group
            .expect("group");
        assert_eq!(got, fuel);
    }
    let hidden = fails(
        w.get_points_group(authed(
            wallet::GetPointsGroupRequest {
                points_group_id: fuel.id.clone(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(hidden.code(), Code::NotFound);

    // Updates move the etag on; a stale etag and the immutable code are refused.
    let update = |key: &str, idem: &str, g: wallet::PointsGroup, paths: &[&str], etag: &str| {
        authed(
            wallet::UpdatePointsGroupRequest {
                idempotency_key: idem.into(),
                points_group: Some(g),
                update_mask: mask(paths),
                etag: etag.into(),
            },
            key,
        )
    };
    let renamed = w
        .update_points_group(update(
            &admin,
            "u1",
            wallet::PointsGroup {
                id: fuel.id.clone(),
                display_name: "Fuel and car wash".into(),
                description: "Points earned at the pump".into(),
                code: "ignored".into(),
                ..Default::default()
            },
            &["display_name", "description"],
            "1",
        ))
        .await?
        .into_inner()
        .points_group
        .expect("group");
    assert_eq!(renamed.display_name, "Fuel and car wash");
    assert_eq!(renamed.description, "Points earned at the pump");
    assert_eq!(renamed.code, "fuel");
    assert_eq!(renamed.etag, "2");
    assert_eq!(renamed.create_time, fuel.create_time);
    let stale = fails(
        w.update_points_group(update(
            &admin,
            "u2",
            wallet::PointsGroup {
                id: fuel.id.clone(),
                display_name: "Fuel".into(),
                ..Default::default()
            },
            &["display_name"],
            "1",
        ))
        .await,
    );
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");
    let immutable = fails(
        w.update_points_group(update(
            &admin,
            "u3",
            wallet::PointsGroup {
                id: fuel.id.clone(),
                code: "petrol".into(),
                ..Default::default()
            },
            &["code"],
            "",
        ))
        .await,
    );
    assert_eq!(violated_fields(&immutable), ["points_group.code"]);
    let foreign = fails(
        w.update_points_group(update(
            &rival,
            "u4",
            wallet::PointsGroup {
                id: fuel.id.clone(),
                display_name: "Mine".into(),
                ..Default::default()
            },
            &["display_name"],
            "",
        ))
        .await,
    );
    assert_eq!(foreign.code(), Code::NotFound);

    // A group with a type in it stays; an empty one goes.
    create_type(
        &mut w,
        &admin,
        wallet::PointsType {
            points_group_id: "fuel".into(),
            ..points_type("fuel_points")
        },
    )
    .await?;
    let delete = |key: &str, idem: &str, id: &str| {
        authed(
            wallet::DeletePointsGroupRequest {
                idempotency_key: idem.into(),
                points_group_id: id.into(),
            },
            key,
        )
    };
    let in_use = fails(w.delete_points_group(delete(&admin, "d1", &fuel.id)).await);
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&in_use), "POINTS_GROUP_IN_USE");
    let foreign = fails(w.delete_points_group(delete(&rival, "d2", &fuel.id)).await);
    assert_eq!(foreign.code(), Code::NotFound);
    w.delete_points_group(delete(&admin, "d3", "bakery"))
        .await?;
    // The retry of a delete answers as the first call did.
    w.delete_points_group(delete(&admin, "d3", "bakery"))
        .await?;
    let gone = fails(
        w.get_points_group(authed(
            wallet::GetPointsGroupRequest {
                points_group_id: "bakery".into(),
            },
            &admin,
        ))
        .await,
    );
    assert_eq!(gone.code(), Code::NotFound);
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn points_types_keep_one_default_and_their_code_unit_and_currency() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (admin, pos) = partner_keys(&suite, "Shop").await?;
    let mut w = suite.wallet().await?;

    let invalid = fails(
        create_type(
            &mut w,
            &admin,
            wallet::PointsType {
                code: "Stars!".into(),
                display_name: String::new(),
                unit: wallet::PointsUnit::Credit as i32,
                currency_code: "euro".into(),
                expiry_rule: wallet::ExpiryRule::RollingDays as i32,
                validity_days: 0,
                pending_days: 400,
                overdraft_limit: -5,
                reservation_ttl_seconds: 100_000,
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&invalid),
        [
            "points_type.code",
            "points_type.display_name",
            "points_type.currency_code",
            "points_type.validity_days",
            "points_type.pending_days",
            "points_type.overdraft_limit",
            "points_type.reservation_ttl_seconds",
        ]
    );
    let no_rule = fails(
        create_type(
            &mut w,
            &admin,
            wallet::PointsType {
                expiry_rule: 0,
                currency_code: "EUR".into(),
                ..points_type("stars")
            },
        )
        .await,
    );
    assert_eq!(
        violated_fields(&no_rule),
        ["points_type.currency_code", "points_type.expiry_rule"]
    );
    let no_group = fails(
        create_type(
            &mut w,
            &admin,
            wallet::PointsType {
                points_group_id: Uuid::now_v7().to_string(),
                ..points_type("stars")
            },
        )
        .await,
    );
    assert_eq!(no_group.code(), Code::NotFound);
    let denied = fails(create_type(&mut w, &pos, points_type("stars")).await);
    assert_eq!(denied.code(), Code::PermissionDenied);

    // The first type becomes the default, with the documented defaults filled in.
    let stars = create_type(&mut w, &admin, points_type("stars")).await?;
    assert!(stars.default && stars.active && stars.spendable);
    assert_eq!(stars.etag, "1");
    assert_eq!(stars.unit, wallet::PointsUnit::Points as i32);
    assert_eq!(stars.rounding, wallet::Rounding::Down as i32);
    assert_eq!(stars.reservation_ttl_seconds, 900);
    assert_eq!(stars.currency_code, "");
    assert_eq!(get_type(&mut w, &pos, "stars").await?, stars);
    assert_eq!(get_type(&mut w, &pos, &stars.id).await?, stars);

    let taken = fails(
        create_type(
            &mut w,
            &admin,
            wallet::PointsType {
                display_name: "Stars again".into(),
                ..points_type("stars")
            },
        )
        .await,
    );
    assert_eq!(taken.code(), Code::AlreadyExists);

    let miles = create_type(
        &mut w,
        &admin,
        wallet::PointsType {
            expiry_rule: wallet::ExpiryRule::EndOfYear as i32,
            validity_months: 12,
            rounding: wallet::Rounding::HalfUp as i32,
            ..points_type("miles")
        },
    )
    .await?;
    assert!(!miles.default);
    assert_eq!(miles.validity_months, 12);
    assert_eq!(miles.rounding, wallet::Rounding::HalfUp as i32);

    // A new default takes the flag (and moves the etag of the one that loses it).
    let credit = create_type(
        &mut w,
        &admin,
        wallet::PointsType {
            unit: wallet::PointsUnit::Credit as i32,
            currency_code: "EUR".into(),
            default: true,
            overdraft_limit: 500,
            ..points_type("store_credit")
        },
    )
    .await?;
    assert!(credit.default);
    assert_eq!(credit.unit, wallet::PointsUnit::Credit as i32);
    assert_eq!(credit.currency_code, "EUR");
    let stars = get_type(&mut w, &admin, "stars").await?;
    assert!(!stars.default);
    assert_eq!(stars.etag, "2");
    assert_eq!(
        list_types(&mut w, &pos, "", false).await?,
        ["miles", "stars", "store_credit"]
    );

    let stars = update_type(
        &mut w,
        &admin,
        "stars-default",
        wallet::PointsType {
            id: stars.id.clone(),
            default: true,
            ..Default::default()
        },
        &["default"],
        &stars.etag,
    )
    .await?;
    assert!(stars.default);
    assert_eq!(stars.etag, "3");
    assert!(!get_type(&mut w, &admin, "store_credit").await?.default);

    // The default stays active and default until another type takes over.
    for (idem, t, paths) in [
        (
            "deactivate-default",
            wallet::PointsType {
                id: stars.id.clone(),
                active: false,
                ..Default::default()
            },
            ["active"],
        ),
        (
            "undefault",
            wallet::PointsType {
                id: stars.id.clone(),
                default: false,
                ..Default::default()
            },
            ["default"],
        ),
    ] {
        let refused = fails(update_type(&mut w, &admin, idem, t, &paths, "").await);
        assert_eq!(refused.code(), Code::FailedPrecondition, "{idem}");
        assert_eq!(error_reason(&refused), "DEFAULT_POINTS_TYPE", "{idem}");
    }
    let refused = fails(delete_type(&mut w, &admin, "delete-default", &stars.id).await);
    assert_eq!(error_reason(&refused), "DEFAULT_POINTS_TYPE");

    // Code, unit and currency are fixed; each is named.
    let immutable = fails(
        update_type(
            &mut w,
            &admin,
            "immutable",
            wallet::PointsType {
                id: credit.id.clone(),
                code: "credit".into(),
                unit: wallet::PointsUnit::Points as i32,
                display_name: "Credit".into(),
                ..Default::default()
            },
            &["code", "unit", "currency_code", "display_name"],
            "",
        )
        .await,
    );
    assert_eq!(immutable.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&immutable),
        [
            "points_type.code",
            "points_type.unit",
            "points_type.currency_code"
        ]
    );
    let unknown = fails(
        update_type(
            &mut w,
            &admin,
            "unknown-path",
            wallet::PointsType {
                id: credit.id.clone(),
                ..Default::default()
            },
            &["etag"],
            "",
        )
        .await,
    );
    assert_eq!(violated_fields(&unknown), ["update_mask"]);

    // A stale etag is refused; the current one is accepted.
    let stale = fails(
        update_type(
            &mut w,
            &admin,
            "stale",
            wallet::PointsType {
                id: miles.id.clone(),
                display_name: "Air miles".into(),
                ..Default::default()
            },
            &["display_name"],
            "7",
        )
        .await,
    );
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");

    // Rule changes are validated as a whole: the rule brings its parameters along.
    let bad_rule = fails(
        update_type(
            &mut w,
            &admin,
            "bad-rule",
            wallet::PointsType {
                id: miles.id.clone(),
                expiry_rule: wallet::ExpiryRule::RollingDays as i32,
                validity_days: 0,
                ..Default::default()
            },
            &["expiry_rule"],
            "",
        )
        .await,
    );
    assert_eq!(violated_fields(&bad_rule), ["points_type.validity_days"]);
    let miles = update_type(
        &mut w,
        &admin,
        "miles-rule",
        wallet::PointsType {
            id: miles.id.clone(),
            display_name: "Air miles".into(),
            expiry_rule: wallet::ExpiryRule::RollingDays as i32,
            validity_days: 90,
            pending_days: 14,
            ..Default::default()
        },
        &["display_name", "expiry_rule", "pending_days"],
        &miles.etag,
    )
    .await?;
    assert_eq!(miles.display_name, "Air miles");
    assert_eq!(miles.expiry_rule, wallet::ExpiryRule::RollingDays as i32);
    assert_eq!((miles.validity_days, miles.validity_months), (90, 0));
    assert_eq!(miles.pending_days, 14);
    assert_eq!(miles.etag, "2");
    assert_eq!(miles.rounding, wallet::Rounding::HalfUp as i32, "unmasked");
    let at = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
    assert!(at(&miles.update_time) > at(&miles.create_time));

    // Groups filter the list; inactive types are hidden unless asked for.
    w.create_points_group(authed(
        wallet::CreatePointsGroupRequest {
            idempotency_key: "g-travel".into(),
            points_group: Some(group("travel")),
        },
        &admin,
    ))
    .await?;
    let miles = update_type(
        &mut w,
        &admin,
        "miles-travel",
        wallet::PointsType {
            id: miles.id.clone(),
            points_group_id: "travel".into(),
            active: false,
            ..Default::default()
        },
        &["points_group_id", "active"],
        "",
    )
    .await?;
    assert!(!miles.active);
    assert!(Uuid::try_parse(&miles.points_group_id).is_ok());
    assert_eq!(
        list_types(&mut w, &pos, "travel", false).await?,
        Vec::<String>::new()
    );
    assert_eq!(list_types(&mut w, &pos, "travel", true).await?, ["miles"]);
    assert_eq!(
        list_types(&mut w, &pos, &miles.points_group_id, true).await?,
        ["miles"]
    );
    assert_eq!(
        list_types(&mut w, &pos, "", false).await?,
        ["stars", "store_credit"]
    );
    let unknown_group = fails(list_types(&mut w, &pos, "nowhere", true).await);
    assert_eq!(unknown_group.code(), Code::NotFound);
    // An inactive type keeps its definition but takes no awards.
    let customer = Uuid::now_v7().to_string();
    let inactive = fails(
        w.award_points(authed(award("a-miles", &customer, 10, "miles"), &admin))
            .await,
    );
    assert_eq!(error_reason(&inactive), "POINTS_TYPE_INACTIVE");
    // An inactive type cannot become the default.
    let refused = fails(
        update_type(
            &mut w,
            &admin,
            "miles-default",
            wallet::PointsType {
                id: miles.id.clone(),
                default: true,
                ..Default::default()
            },
            &["default"],
            "",
        )
        .await,
    );
    assert_eq!(error_reason(&refused), "DEFAULT_POINTS_TYPE");
    suite.stop().await
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The civil (year, month) of a day since 1970-01-01.
fn year_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m)
}

#[tokio::test(flavor = "multi_thread")]
async fn types_in_use_stay_and_their_rules_shape_later_awards() -> anyhow::Result<()> {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(year_month(days_from_civil(2024, 2, 29)), (2024, 2));
    assert_eq!(
        days_from_civil(2026, 3, 1) - days_from_civil(2026, 2, 1),
        28
    );

    let suite = Suite::start(Backend::Postgres).await?;
    let (admin, pos) = partner_keys(&suite, "Shop").await?;
    let (rival, _) = partner_keys(&suite, "Rival").await?;
    let mut w = suite.wallet().await?;
    let customer = Uuid::now_v7().to_string();

    create_type(&mut w, &admin, points_type("stars")).await?;
    let monthly = create_type(
        &mut w,
        &admin,
        wallet::PointsType {
            expiry_rule: wallet::ExpiryRule::EndOfMonth as i32,
            validity_months: 1,
            ..points_type("monthly")
        },
    )
    .await?;

    // END_OF_MONTH + 1: the lot expires at the first instant of the month after next.
    let posted = w
        .award_points(authed(award("a-monthly", &customer, 100, "monthly"), &pos))
        .await?
        .into_inner();
    let posting = posted.posting.expect("posting");
    assert_eq!(posting.points_type_id, monthly.id);
    let created = posting.create_time.expect("create time").seconds;
    let (y, m) = year_month(created.div_euclid(86_400));
    let months = y * 12 + (m - 1) + 2;
    let expected = days_from_civil(months.div_euclid(12), months.rem_euclid(12) + 1, 1) * 86_400;
    let expire = posting.expire_time.expect("expire time");
    assert_eq!((expire.seconds, expire.nanos), (expected, 0));
    assert_eq!(posting.release_time, None);

    // Pending and rolling validity count from the award.
    let rolling = create_type(
        &mut w,
        &admin,
        wallet::PointsType {
            expiry_rule: wallet::ExpiryRule::RollingDays as i32,
            validity_days: 30,
            pending_days: 14,
            ..points_type("rolling")
        },
    )
    .await?;
    let posting = w
        .award_points(authed(award("a-rolling", &customer, 5, &rolling.id), &pos))
        .await?
        .into_inner()
        .posting
        .expect("posting");
    let created = posting.create_time.expect("create time");
    let release = posting.release_time.expect("release time");
    let expire = posting.expire_time.expect("expire time");
    assert_eq!(release.seconds - created.seconds, 14 * 86_400);
    assert_eq!(expire.seconds - created.seconds, 30 * 86_400);
    assert_eq!(
        (release.nanos, expire.nanos),
        (created.nanos, created.nanos)
    );

    // A type with postings stays; deactivating it is the way out.
    let in_use = fails(delete_type(&mut w, &admin, "del-monthly", "monthly").await);
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&in_use), "POINTS_TYPE_IN_USE");
    update_type(
        &mut w,
        &admin,
        "monthly-off",
        wallet::PointsType {
            id: monthly.id.clone(),
            active: false,
            ..Default::default()
        },
        &["active"],
        "",
    )
    .await?;
    assert!(!get_type(&mut w, &pos, "monthly").await?.active);

    // An unused type goes (with its system accounts), and its code is free again.
    let unused = create_type(&mut w, &admin, points_type("unused")).await?;
    let foreign = fails(delete_type(&mut w, &rival, "del-foreign", &unused.id).await);
    assert_eq!(foreign.code(), Code::NotFound);
    let denied = fails(delete_type(&mut w, &pos, "del-pos", &unused.id).await);
    assert_eq!(denied.code(), Code::PermissionDenied);
    delete_type(&mut w, &admin, "del-unused", &unused.id).await?;
    delete_type(&mut w, &admin, "del-unused", &unused.id).await?;
    assert_eq!(
        fails(get_type(&mut w, &admin, &unused.id).await).code(),
        Code::NotFound
    );
    let again = create_type(
        &mut w,
        &admin,
        wallet::PointsType {
            display_name: "Unused again".into(),
            ..points_type("unused")
        },
    )
    .await?;
    assert_ne!(again.id, unused.id);

    // Another partner sees none of it, and may use the same codes.
    for id in [monthly.id.as_str(), "monthly"] {
        assert_eq!(
            fails(get_type(&mut w, &rival, id).await).code(),
            Code::NotFound
        );
    }
    let foreign = fails(
        update_type(
            &mut w,
            &rival,
            "rival-update",
            wallet::PointsType {
                id: monthly.id.clone(),
                display_name: "Mine".into(),
                ..Default::default()
            },
            &["display_name"],
            "",
        )
        .await,
    );
    assert_eq!(foreign.code(), Code::NotFound);
    let theirs = create_type(&mut w, &rival, points_type("monthly")).await?;
    assert!(theirs.default, "the rival's first type is its default");
    assert_eq!(list_types(&mut w, &rival, "", true).await?, ["monthly"]);

    // Retries answer the first call; the same key for another request is refused.
    let request = |display_name: &str| {
        authed(
            wallet::UpdatePointsTypeRequest {
                idempotency_key: "rename-stars".into(),
                points_type: Some(wallet::PointsType {
                    id: "stars".into(),
                    display_name: display_name.into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            &admin,
        )
    };
    let first = w
        .update_points_type(request("Gold stars"))
        .await?
        .into_inner();
    let retry = w
        .update_points_type(request("Gold stars"))
        .await?
        .into_inner();
    assert_eq!(first, retry);
    assert_eq!(
        get_type(&mut w, &pos, "stars").await?.etag,
        first.points_type.expect("type").etag
    );
    let reused = fails(w.update_points_type(request("Silver stars")).await);
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(error_reason(&reused), "IDEMPOTENCY_KEY_REUSED");
    let create = |code: &str| {
        authed(
            wallet::CreatePointsTypeRequest {
                idempotency_key: "create-once".into(),
                points_type: Some(points_type(code)),
            },
            &admin,
        )
    };
    let made = w.create_points_type(create("bonus")).await?.into_inner();
    assert_eq!(
        w.create_points_type(create("bonus")).await?.into_inner(),
        made
    );
    let reused = fails(w.create_points_type(create("other")).await);
    assert_eq!(error_reason(&reused), "IDEMPOTENCY_KEY_REUSED");
    suite.stop().await
}

/// A partner that awarded before defining any type has the lazily created "points" default;
/// types created afterwards leave it the default until one is made the default.
async fn created_types_respect_the_lazily_created_default(backend: Backend) -> anyhow::Result<()> {
    let suite = Suite::start(backend).await?;
    let (admin, pos) = partner_keys(&suite, "Shop").await?;
    let mut w = suite.wallet().await?;
    let customer = Uuid::now_v7().to_string();

    let first = w
        .award_points(authed(award("a1", &customer, 10, ""), &pos))
        .await?
        .into_inner();
    assert_eq!(first.wallet.expect("wallet").points_type_code, "points");
    let points = get_type(&mut w, &pos, "points").await?;
    assert!(points.default);

    let stars = create_type(&mut w, &admin, points_type("stars")).await?;
    assert!(!stars.default, "the partner has a default already");
    let taken = fails(
        create_type(
            &mut w,
            &admin,
            wallet::PointsType {
                display_name: "My points".into(),
                ..points_type("points")
            },
        )
        .await,
    );
    assert_eq!(taken.code(), Code::AlreadyExists);

    update_type(
        &mut w,
        &admin,
        "stars-default",
        wallet::PointsType {
            id: stars.id.clone(),
            default: true,
            ..Default::default()
        },
        &["default"],
        &stars.etag,
    )
    .await?;
    assert!(!get_type(&mut w, &pos, "points").await?.default);
    let second = w
        .award_points(authed(award("a2", &customer, 5, ""), &pos))
        .await?
        .into_inner();
    assert_eq!(second.wallet.expect("wallet").points_type_code, "stars");
    let in_use = fails(delete_type(&mut w, &admin, "del-points", "points").await);
    assert_eq!(error_reason(&in_use), "POINTS_TYPE_IN_USE");
    assert_eq!(
        list_types(&mut w, &pos, "", false).await?,
        ["points", "stars"]
    );
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn created_types_respect_the_lazily_created_default_on_postgres() -> anyhow::Result<()> {
    created_types_respect_the_lazily_created_default(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn created_types_respect_the_lazily_created_default_on_sqlite() -> anyhow::Result<()> {
    created_types_respect_the_lazily_created_default(Backend::Sqlite).await
}
