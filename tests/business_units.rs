//! Business units: create, read by id or code, list by code, update with etags, a hierarchy
//! without loops, delete — all scoped to the partner.
use loyalty_proto::identity::v1 as identity;
use loyalty_testkit::{Backend, Suite, authed, error_reason as reason};
use tonic::Code;
use tonic_types::StatusExt;

async fn partner_key(
    suite: &Suite,
    name: &str,
    roles: &[identity::Role],
) -> anyhow::Result<String> {
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
                idempotency_key: format!("{name}-{roles:?}"),
                partner_id: partner.id,
                display_name: "back office".into(),
                roles: roles.iter().map(|r| *r as i32).collect(),
            },
            suite.admin_key(),
        ))
        .await?
        .into_inner()
        .secret)
}

fn unit(code: &str, parent: &str) -> identity::BusinessUnit {
    identity::BusinessUnit {
        code: code.into(),
        display_name: format!("Store {code}"),
        r#type: identity::BusinessUnitType::Store as i32,
        parent_business_unit_id: parent.into(),
        city: "Praha".into(),
        country_code: "CZ".into(),
        time_zone: "Europe/Prague".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn business_units_form_a_partner_scoped_hierarchy_with_etags() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let admin = partner_key(&suite, "Shop", &[identity::Role::Admin]).await?;
    let pos = partner_key(&suite, "Shop", &[identity::Role::Pos]).await?;
    let rival = partner_key(&suite, "Rival", &[identity::Role::Admin]).await?;
    let mut identity = suite.identity().await?;
    let create = |key: &str, idem: &str, u: identity::BusinessUnit| {
        authed(
            identity::CreateBusinessUnitRequest {
                idempotency_key: idem.into(),
                business_unit: Some(u),
            },
            key,
        )
    };

    let region = identity
        .create_business_unit(create(&admin, "r", unit("CZ-PRG", "")))
        .await?
        .into_inner()
        .business_unit
        .expect("unit");
    let store = identity
        .create_business_unit(create(&admin, "s", unit("PRG-01", &region.id)))
        .await?
        .into_inner()
        .business_unit
        .expect("unit");
    identity
        .create_business_unit(create(&admin, "t", unit("PRG-02", &region.id)))
        .await?;
    assert_eq!(store.etag, "v1");

    let duplicate = identity
        .create_business_unit(create(&admin, "d", unit("PRG-01", "")))
        .await
        .expect_err("code taken");
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let by_pos = identity
        .create_business_unit(create(&pos, "p", unit("PRG-09", "")))
        .await
        .expect_err("pos may not");
    assert_eq!(by_pos.code(), Code::PermissionDenied);
    let mut bad = unit("PRG-03", "");
    bad.time_zone = "Prague".into();
    let invalid = identity
        .create_business_unit(create(&admin, "b", bad))
        .await
        .expect_err("bad time zone");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        invalid
            .get_error_details()
            .bad_request()
            .expect("details")
            .field_violations[0]
            .field,
        "business_unit.time_zone"
    );

    let get = |key: &str, id: &str| {
        authed(
            identity::GetBusinessUnitRequest {
                business_unit_id: id.into(),
            },
            key,
        )
    };
    assert_eq!(
        identity
            .get_business_unit(get(&pos, "PRG-01"))
            .await?
            .into_inner()
            .business_unit
            .expect("unit")
            .id,
        store.id
    );
    assert_eq!(
        identity
            .get_business_unit(get(&pos, &store.id))
            .await?
            .into_inner()
            .business_unit
            .expect("unit")
            .code,
        "PRG-01"
    );
    assert_eq!(
        identity
            .get_business_unit(get(&rival, &store.id))
            .await
            .expect_err("foreign")
            .code(),
        Code::NotFound
    );

    let mut codes = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = identity
            .list_business_units(authed(
                identity::ListBusinessUnitsRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &pos,
            ))
            .await?
            .into_inner();
        codes.extend(page.business_units.into_iter().map(|u| u.code));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(codes, ["CZ-PRG", "PRG-01", "PRG-02"]);

    let update = |idem: &str, u: identity::BusinessUnit, paths: &[&str], etag: &str| {
        authed(
            identity::UpdateBusinessUnitRequest {
                idempotency_key: idem.into(),
                business_unit: Some(u),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
                etag: etag.into(),
            },
            &admin,
        )
    };
    let mut renamed = store.clone();
    renamed.display_name = "Praha Chodov".into();
    let updated = identity
        .update_business_unit(update("u1", renamed.clone(), &["display_name"], "v1"))
        .await?
        .into_inner()
        .business_unit
        .expect("unit");
    assert_eq!(updated.display_name, "Praha Chodov");
    assert_eq!(updated.etag, "v2");
    assert_eq!(updated.city, "Praha", "fields outside the mask stay");
    let stale = identity
        .update_business_unit(update("u2", renamed, &["display_name"], "v1"))
        .await
        .expect_err("stale etag");
    assert_eq!(reason(&stale), "ETAG_MISMATCH");

    let mut looped = region.clone();
    looped.parent_business_unit_id = store.id.clone();
    let cycle = identity
        .update_business_unit(update("u3", looped, &["parent_business_unit_id"], ""))
        .await
        .expect_err("cycle");
    assert_eq!(reason(&cycle), "BUSINESS_UNIT_CYCLE");

    let delete = |key: &str, idem: &str, id: &str| {
        authed(
            identity::DeleteBusinessUnitRequest {
                idempotency_key: idem.into(),
                business_unit_id: id.into(),
                etag: String::new(),
            },
            key,
        )
    };
    assert_eq!(
        reason(
            &identity
                .delete_business_unit(delete(&admin, "x1", &region.id))
                .await
                .expect_err("has children")
        ),
        "BUSINESS_UNIT_IN_USE"
    );
    assert_eq!(
        identity
            .delete_business_unit(delete(&rival, "x2", &store.id))
            .await
            .expect_err("foreign")
            .code(),
        Code::NotFound
    );
    identity
        .delete_business_unit(delete(&admin, "x3", &store.id))
        .await?;
    assert_eq!(
        identity
            .get_business_unit(get(&pos, &store.id))
            .await
            .expect_err("deleted")
            .code(),
        Code::NotFound
    );
    // The code is free again once the unit is deleted.
    identity
        .create_business_unit(create(&admin, "again", unit("PRG-01", "")))
        .await?;

    suite.stop().await
}
