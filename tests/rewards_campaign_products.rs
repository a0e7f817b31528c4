//! Campaign products and purchase bonuses through gRPC (issue #6), the services running as
//! processes on PostgreSQL: a campaign price on a catalogue product created, listed as active,
//! updated and deleted; a restricted purchase bonus kept whole, paused and deleted; invalid
//! entries refused naming the field; another partner's ids not found.
use loyalty_proto::{
    identity::v1 as identity,
    rewards::v1::{self as pb, campaign_product::Discount},
    types::v1::{DayOfWeek, HourRange, Money, ProductScope, SalesChannel},
};
use loyalty_testkit::{Backend, Suite, authed, error_reason, violated_fields};
use prost_types::{FieldMask, Timestamp};
use tonic::{Code, Status};
use uuid::Uuid;

fn fails<T: std::fmt::Debug>(r: Result<T, Status>) -> Status {
    r.expect_err("the call should have been refused")
}

fn eur(amount_minor: i64) -> Money {
    Money {
        currency_code: "EUR".into(),
        amount_minor,
    }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// 2026-12-01T00:00:00Z plus `days`.
fn december(days: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: 1_796_083_200 + days * 86_400,
        nanos: 0,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn campaign_products_and_purchase_bonuses_are_managed_per_partner() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Cafe", &[identity::Role::Marketing])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut r = suite.rewards().await?;
    let shop = Uuid::now_v7().to_string();

    r.create_product(authed(
        pb::CreateProductRequest {
            idempotency_key: "esp".into(),
            product: Some(pb::Product {
                code: "ESP".into(),
                display_name: "Espresso".into(),
                list_price: Some(eur(250)),
                active: true,
                ..Default::default()
            }),
        },
        &key,
    ))
    .await?;

    // Espresso for 1.99 in December, in one shop at the cash desk.
    let deal = pb::CampaignProduct {
        display_name: "Espresso for 1.99".into(),
        products: Some(ProductScope {
            product_codes: vec!["ESP".into()],
            ..Default::default()
        }),
        discount: Some(Discount::FixedUnitPrice(eur(199))),
        valid_from_time: december(0),
        valid_until_time: december(31),
        business_unit_ids: vec![shop.clone()],
        channels: vec![SalesChannel::Pos as i32],
        image_url: "https://cdn.example.com/espresso.png".into(),
        active: true,
        ..Default::default()
    };
    let create = |k: &str, c: pb::CampaignProduct| {
        authed(
            pb::CreateCampaignProductRequest {
                idempotency_key: k.into(),
                campaign_product: Some(c),
            },
            &key,
        )
    };
    let created = r
        .create_campaign_product(create("deal-1", deal.clone()))
        .await?
        .into_inner()
        .campaign_product
        .expect("entry");
    assert_eq!(created.etag, "r1");
    let retry = r
        .create_campaign_product(create("deal-1", deal.clone()))
        .await?
        .into_inner()
        .campaign_product
        .expect("entry");
    assert_eq!(retry.id, created.id);

    let err = fails(
        r.create_campaign_product(create(
            "deal-bad",
            pb::CampaignProduct {
                products: Some(ProductScope {
                    product_codes: vec!["NOPE".into()],
                    ..Default::default()
                }),
                discount: Some(Discount::FixedUnitPrice(eur(-1))),
                ..deal.clone()
            },
        ))
        .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields = violated_fields(&err);
    assert!(
        fields.contains(&"campaign_product.fixed_unit_price.amount_minor".to_owned()),
        "{fields:?}"
    );

    let list_active = |at: Option<Timestamp>, unit: &str| {
        authed(
            pb::ListCampaignProductsRequest {
                active_time: at,
                business_unit_id: unit.into(),
                channel: SalesChannel::Pos as i32,
                ..Default::default()
            },
            &key,
        )
    };
    let active = r
        .list_campaign_products(list_active(december(10), &shop))
        .await?
        .into_inner()
        .campaign_products;
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id, created.id);
    let other_shop = Uuid::now_v7().to_string();
    let elsewhere = r
        .list_campaign_products(list_active(december(10), &other_shop))
        .await?
        .into_inner()
        .campaign_products;
    assert!(elsewhere.is_empty());
    let january = r
        .list_campaign_products(list_active(december(31), &shop))
        .await?
        .into_inner()
        .campaign_products;
    assert!(january.is_empty());

    let updated = r
        .update_campaign_product(authed(
            pb::UpdateCampaignProductRequest {
                idempotency_key: "deal-upd".into(),
                campaign_product: Some(pb::CampaignProduct {
                    id: created.id.clone(),
                    discount: Some(Discount::PercentageBasisPoints(2000)),
                    valid_until_time: december(62),
                    ..Default::default()
                }),
                update_mask: mask(&["percentage_basis_points", "valid_until_time"]),
                etag: created.etag.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .campaign_product
        .expect("entry");
    assert_eq!(
        updated.discount,
        Some(Discount::PercentageBasisPoints(2000))
    );
    assert_eq!(updated.etag, "r2");
    assert_eq!(updated.image_url, created.image_url);
    let january = r
        .list_campaign_products(list_active(december(31), &shop))
        .await?
        .into_inner()
        .campaign_products;
    assert_eq!(january.len(), 1);

    // Another partner: not found, whatever the call.
    let err = fails(
        r.get_campaign_product(authed(
            pb::GetCampaignProductRequest {
                campaign_product_id: created.id.clone(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    let err = fails(
        r.update_campaign_product(authed(
            pb::UpdateCampaignProductRequest {
                idempotency_key: "rival-upd".into(),
                campaign_product: Some(pb::CampaignProduct {
                    id: created.id.clone(),
                    active: false,
                    ..Default::default()
                }),
                update_mask: mask(&["active"]),
                etag: String::new(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    let rival_list = r
        .list_campaign_products(authed(pb::ListCampaignProductsRequest::default(), &rival))
        .await?
        .into_inner()
        .campaign_products;
    assert!(rival_list.is_empty());

    let delete = |k: &str, etag: &str| {
        authed(
            pb::DeleteCampaignProductRequest {
                idempotency_key: k.into(),
                campaign_product_id: created.id.clone(),
                etag: etag.into(),
            },
            &key,
        )
    };
    let err = fails(r.delete_campaign_product(delete("deal-del-0", "r1")).await);
    assert_eq!(error_reason(&err), "ETAG_MISMATCH");
    r.delete_campaign_product(delete("deal-del", "r2")).await?;
    let err = fails(
        r.get_campaign_product(authed(
            pb::GetCampaignProductRequest {
                campaign_product_id: created.id.clone(),
            },
            &key,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);

    // A Friday-evening double-points bonus at the cash desk, with every restriction.
    let bonus = pb::PurchaseBonus {
        display_name: "Friday evening double points".into(),
        points: 1,
        spend_amount_minor: 100,
        currency_code: "EUR".into(),
        multiplier_basis_points: 20_000,
        products: Some(ProductScope {
            product_codes: vec!["ESP".into()],
            ..Default::default()
        }),
        business_unit_ids: vec![shop.clone()],
        channels: vec![SalesChannel::Pos as i32],
        days_of_week: vec![DayOfWeek::Friday as i32],
        hour_ranges: vec![HourRange {
            start_hour: 17,
            end_hour: 22,
        }],
        max_points_per_purchase: 200,
        ..Default::default()
    };
    let created = r
        .create_purchase_bonus(authed(
            pb::CreatePurchaseBonusRequest {
                idempotency_key: "bonus-1".into(),
                purchase_bonus: Some(bonus.clone()),
            },
            &key,
        ))
        .await?
        .into_inner()
        .purchase_bonus
        .expect("bonus");
    assert_eq!(created.days_of_week, bonus.days_of_week);
    assert_eq!(created.hour_ranges, bonus.hour_ranges);
    assert_eq!(created.max_points_per_purchase, 200);
    let active = |who: &str| authed(pb::ListActivePurchaseBonusesRequest::default(), who);
    let listed = r
        .list_active_purchase_bonuses(active(&key))
        .await?
        .into_inner()
        .purchase_bonuses;
    assert_eq!(listed.len(), 1);
    let paused = r
        .update_purchase_bonus(authed(
            pb::UpdatePurchaseBonusRequest {
                idempotency_key: "bonus-pause".into(),
                purchase_bonus: Some(pb::PurchaseBonus {
                    id: created.id.clone(),
                    state: pb::PurchaseBonusState::Inactive as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["state"]),
                etag: created.etag.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .purchase_bonus
        .expect("bonus");
    assert_eq!(paused.state, pb::PurchaseBonusState::Inactive as i32);
    let listed = r
        .list_active_purchase_bonuses(active(&key))
        .await?
        .into_inner()
        .purchase_bonuses;
    assert!(listed.is_empty());
    let all = r
        .list_purchase_bonuses(authed(pb::ListPurchaseBonusesRequest::default(), &key))
        .await?
        .into_inner()
        .purchase_bonuses;
    assert_eq!(all.len(), 1);
    let err = fails(
        r.get_purchase_bonus(authed(
            pb::GetPurchaseBonusRequest {
                purchase_bonus_id: created.id.clone(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    let err = fails(
        r.delete_purchase_bonus(authed(
            pb::DeletePurchaseBonusRequest {
                idempotency_key: "rival-del".into(),
                purchase_bonus_id: created.id.clone(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    r.delete_purchase_bonus(authed(
        pb::DeletePurchaseBonusRequest {
            idempotency_key: "bonus-del".into(),
            purchase_bonus_id: created.id.clone(),
        },
        &key,
    ))
    .await?;
    let all = r
        .list_purchase_bonuses(authed(pb::ListPurchaseBonusesRequest::default(), &key))
        .await?
        .into_inner()
        .purchase_bonuses;
    assert!(all.is_empty());
    Ok(())
}
