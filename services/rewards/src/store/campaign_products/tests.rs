//! Campaign products and purchase bonuses against PostgreSQL (a fresh database per test) and
//! SQLite, through the service's own API object so that transactions, idempotency and the
//! catalogue checks are the real ones.
use loyalty_platform::{Role, events::DomainEvent, time::to_timestamp};
use loyalty_proto::{
    events::v1 as ev,
    rewards::v1::{self as pb, campaign_product::Discount, rewards_service_server::RewardsService},
    types::v1::{DayOfWeek, HourRange, Money, ProductScope, SalesChannel},
};
use loyalty_testkit::{error_reason, violated_fields};
use prost_types::FieldMask;
use sea_orm::{ConnectionTrait, Statement};
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::store::test_support::{TestApi, request};

enum CampaignProducts {}
type Fixture = TestApi<CampaignProducts>;

impl Fixture {
    /// The partner with the brand `lavazza` and its product `ESP` at 2.50 EUR.
    async fn with_espresso(self) -> Fixture {
        self.api
            .create_brand(self.req(pb::CreateBrandRequest {
                idempotency_key: "brand".into(),
                brand: Some(pb::Brand {
                    code: "lavazza".into(),
                    display_name: "Lavazza".into(),
                    ..Default::default()
                }),
            }))
            .await
            .expect("brand");
        self.api
            .create_product(self.req(pb::CreateProductRequest {
                idempotency_key: "product".into(),
                product: Some(pb::Product {
                    code: "ESP".into(),
                    display_name: "Espresso".into(),
                    brand_code: "lavazza".into(),
                    list_price: Some(eur(250)),
                    active: true,
                    ..Default::default()
                }),
            }))
            .await
            .expect("product");
        self
    }

    fn req<T>(&self, message: T) -> Request<T> {
        self.req_as(self.partner, message)
    }

    fn req_as<T>(&self, partner: Uuid, message: T) -> Request<T> {
        request(partner, Role::Marketing, message)
    }

    async fn rewards_changed(&self) -> i64 {
        self.events(ev::RewardsChanged::TYPE).await
    }

    async fn create_entry(
        &self,
        key: &str,
        c: pb::CampaignProduct,
    ) -> Result<pb::CampaignProduct, Status> {
        Ok(self
            .api
            .create_campaign_product(self.req(pb::CreateCampaignProductRequest {
                idempotency_key: key.into(),
                campaign_product: Some(c),
            }))
            .await?
            .into_inner()
            .campaign_product
            .expect("entry"))
    }

    async fn list_entries(&self, r: pb::ListCampaignProductsRequest) -> Vec<String> {
        self.api
            .list_campaign_products(self.req(r))
            .await
            .expect("list")
            .into_inner()
            .campaign_products
            .into_iter()
            .map(|c| c.display_name)
            .collect()
    }

    async fn create_bonus(
        &self,
        key: &str,
        b: pb::PurchaseBonus,
    ) -> Result<pb::PurchaseBonus, Status> {
        Ok(self
            .api
            .create_purchase_bonus(self.req(pb::CreatePurchaseBonusRequest {
                idempotency_key: key.into(),
                purchase_bonus: Some(b),
            }))
            .await?
            .into_inner()
            .purchase_bonus
            .expect("bonus"))
    }
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

fn ts(rfc3339: &str) -> Option<prost_types::Timestamp> {
    Some(to_timestamp(
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .expect("time")
            .into(),
    ))
}

fn espresso_deal(name: &str) -> pb::CampaignProduct {
    pb::CampaignProduct {
        display_name: name.into(),
        products: Some(ProductScope {
            product_codes: vec!["ESP".into()],
            ..Default::default()
        }),
        discount: Some(Discount::FixedUnitPrice(eur(199))),
        valid_from_time: ts("2026-12-01T00:00:00Z"),
        valid_until_time: ts("2027-01-01T00:00:00Z"),
        channels: vec![SalesChannel::Pos as i32],
        active: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn campaign_products_are_created_listed_updated_and_deleted() {
    let f = Fixture::postgres().await.with_espresso().await;
    let before = f.rewards_changed().await;
    let created = f
        .create_entry("c1", espresso_deal("Espresso 1.99"))
        .await
        .expect("create");
    assert_eq!(created.etag, "r1");
    // A retry answers the same entry and writes nothing more.
    let again = f
        .create_entry("c1", espresso_deal("Espresso 1.99"))
        .await
        .expect("retry");
    assert_eq!(again.id, created.id);
    let lavazza = pb::CampaignProduct {
        products: Some(ProductScope {
            brand_codes: vec!["lavazza".into()],
            ..Default::default()
        }),
        discount: Some(Discount::PercentageBasisPoints(1000)),
        channels: vec![SalesChannel::Eshop as i32],
        valid_from_time: ts("2027-01-01T00:00:00Z"),
        valid_until_time: None,
        ..espresso_deal("Lavazza 10 %")
    };
    f.create_entry("c2", lavazza)
        .await
        .expect("create brand entry");
    assert_eq!(f.rewards_changed().await, before + 2);

    let got = f
        .api
        .get_campaign_product(f.req(pb::GetCampaignProductRequest {
            campaign_product_id: created.id.clone(),
        }))
        .await
        .expect("get")
        .into_inner()
        .campaign_product
        .expect("entry");
    assert_eq!(got, created);

    let all = f.list_entries(Default::default()).await;
    assert_eq!(all, vec!["Espresso 1.99", "Lavazza 10 %"]);
    let in_december = f
        .list_entries(pb::ListCampaignProductsRequest {
            active_time: ts("2026-12-24T12:00:00Z"),
            ..Default::default()
        })
        .await;
    assert_eq!(in_december, vec!["Espresso 1.99"]);
    let eshop = f
        .list_entries(pb::ListCampaignProductsRequest {
            channel: SalesChannel::Eshop as i32,
            ..Default::default()
        })
        .await;
    assert_eq!(eshop, vec!["Lavazza 10 %"]);
    // ESP is a Lavazza product: both entries cover it; an unknown code only by code.
    let esp = f
        .list_entries(pb::ListCampaignProductsRequest {
            product_code: "ESP".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(esp.len(), 2);
    let tea = f
        .list_entries(pb::ListCampaignProductsRequest {
            product_code: "TEA".into(),
            ..Default::default()
        })
        .await;
    assert!(tea.is_empty());
    let page = f
        .api
        .list_campaign_products(f.req(pb::ListCampaignProductsRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .expect("page")
        .into_inner();
    assert_eq!(page.campaign_products.len(), 1);
    let rest = f
        .list_entries(pb::ListCampaignProductsRequest {
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await;
    assert_eq!(rest, vec!["Lavazza 10 %"]);

    // Update: a price not below the list price is refused, a stale etag too.
    let update = |key: &str, etag: &str, c: pb::CampaignProduct, paths: &[&str]| {
        f.api
            .update_campaign_product(f.req(pb::UpdateCampaignProductRequest {
                idempotency_key: key.into(),
                campaign_product: Some(c),
                update_mask: mask(paths),
                etag: etag.into(),
            }))
    };
    let dear = pb::CampaignProduct {
        id: created.id.clone(),
        discount: Some(Discount::FixedUnitPrice(eur(260))),
        ..Default::default()
    };
    let err = update("u0", "r1", dear, &["fixed_unit_price"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        vec!["campaign_product.fixed_unit_price.amount_minor"]
    );
    let renamed = pb::CampaignProduct {
        id: created.id.clone(),
        display_name: "Espresso for 1.89".into(),
        discount: Some(Discount::FixedUnitPrice(eur(189))),
        active: false,
        ..Default::default()
    };
    let updated = update(
        "u1",
        "r1",
        renamed.clone(),
        &["display_name", "fixed_unit_price", "active"],
    )
    .await
    .expect("update")
    .into_inner()
    .campaign_product
    .expect("entry");
    assert_eq!(updated.display_name, "Espresso for 1.89");
    assert_eq!(updated.discount, Some(Discount::FixedUnitPrice(eur(189))));
    assert_eq!(updated.etag, "r2");
    assert!(!updated.active);
    // Unmasked fields keep their values.
    assert_eq!(updated.channels, created.channels);
    assert_eq!(updated.valid_from_time, created.valid_from_time);
    let stale = update("u2", "r1", renamed, &["display_name"])
        .await
        .unwrap_err();
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");
    // Paused: not listed as active any more.
    let in_december = f
        .list_entries(pb::ListCampaignProductsRequest {
            active_time: ts("2026-12-24T12:00:00Z"),
            ..Default::default()
        })
        .await;
    assert!(in_december.is_empty());

    let delete = |key: &str, etag: &str| {
        f.api
            .delete_campaign_product(f.req(pb::DeleteCampaignProductRequest {
                idempotency_key: key.into(),
                campaign_product_id: created.id.clone(),
                etag: etag.into(),
            }))
    };
    let stale = delete("d0", "r1").await.unwrap_err();
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");
    delete("d1", "r2").await.expect("delete");
    delete("d1", "r2").await.expect("a retry answers the same");
    let gone = f
        .api
        .get_campaign_product(f.req(pb::GetCampaignProductRequest {
            campaign_product_id: created.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(f.rewards_changed().await, before + 4);
}

#[tokio::test]
async fn bad_campaign_products_are_refused_naming_the_field_and_other_partners_see_nothing() {
    let f = Fixture::postgres().await.with_espresso().await;
    let unknown = pb::CampaignProduct {
        products: Some(ProductScope {
            product_codes: vec!["ESP".into(), "NOPE".into()],
            ..Default::default()
        }),
        ..espresso_deal("Unknown")
    };
    let err = f.create_entry("bad1", unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        vec!["campaign_product.products.product_codes[1]"]
    );
    let inverted = pb::CampaignProduct {
        valid_from_time: ts("2027-01-01T00:00:00Z"),
        valid_until_time: ts("2026-12-01T00:00:00Z"),
        discount: Some(Discount::PercentageBasisPoints(0)),
        products: None,
        ..espresso_deal("")
    };
    let err = f.create_entry("bad2", inverted).await.unwrap_err();
    let fields = violated_fields(&err);
    for want in [
        "campaign_product.display_name",
        "campaign_product.products",
        "campaign_product.percentage_basis_points",
        "campaign_product.valid_until_time",
    ] {
        assert!(fields.iter().any(|f| f == want), "{want} in {fields:?}");
    }
    let not_below = pb::CampaignProduct {
        discount: Some(Discount::FixedUnitPrice(eur(250))),
        ..espresso_deal("Same price")
    };
    let err = f.create_entry("bad3", not_below).await.unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["campaign_product.fixed_unit_price.amount_minor"]
    );

    let mine = f
        .create_entry("ok", espresso_deal("Mine"))
        .await
        .expect("create");
    let rival = Uuid::now_v7();
    let err = f
        .api
        .get_campaign_product(f.req_as(
            rival,
            pb::GetCampaignProductRequest {
                campaign_product_id: mine.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = f
        .api
        .delete_campaign_product(f.req_as(
            rival,
            pb::DeleteCampaignProductRequest {
                idempotency_key: "rival".into(),
                campaign_product_id: mine.id.clone(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = f
        .api
        .list_campaign_products(f.req_as(rival, Default::default()))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.campaign_products.is_empty());
}

fn friday_bonus() -> pb::PurchaseBonus {
    pb::PurchaseBonus {
        display_name: "Friday evening double points".into(),
        points: 1,
        spend_amount_minor: 100,
        currency_code: "EUR".into(),
        multiplier_basis_points: 20_000,
        products: Some(ProductScope {
            brand_codes: vec!["lavazza".into()],
            ..Default::default()
        }),
        business_unit_ids: vec![Uuid::now_v7().to_string()],
        channels: vec![SalesChannel::Pos as i32],
        days_of_week: vec![DayOfWeek::Friday as i32],
        hour_ranges: vec![HourRange {
            start_hour: 17,
            end_hour: 22,
        }],
        tier_ids: vec![Uuid::now_v7().to_string()],
        points_type_id: "bonus-points".into(),
        max_points_per_purchase: 500,
        ..Default::default()
    }
}

async fn purchase_bonus_lifecycle(f: &Fixture) {
    let created = f.create_bonus("b1", friday_bonus()).await.expect("create");
    assert_eq!(created.state, pb::PurchaseBonusState::Active as i32);
    assert_eq!(created.etag, "r1");
    // Every restriction is kept.
    let sent = friday_bonus();
    assert_eq!(created.products, sent.products);
    assert_eq!(created.channels, sent.channels);
    assert_eq!(created.days_of_week, sent.days_of_week);
    assert_eq!(created.hour_ranges, sent.hour_ranges);
    assert_eq!(created.points_type_id, "bonus-points");
    assert_eq!(created.max_points_per_purchase, 500);
    let got = f
        .api
        .get_purchase_bonus(f.req(pb::GetPurchaseBonusRequest {
            purchase_bonus_id: created.id.clone(),
        }))
        .await
        .expect("get")
        .into_inner()
        .purchase_bonus
        .expect("bonus");
    assert_eq!(got, created);
    let plain = pb::PurchaseBonus {
        display_name: "Everyday".into(),
        points: 1,
        spend_amount_minor: 100,
        currency_code: "EUR".into(),
        ..Default::default()
    };
    let everyday = f.create_bonus("b2", plain).await.expect("create plain");

    let update = |key: &str, etag: &str, b: pb::PurchaseBonus, paths: &[&str]| {
        f.api
            .update_purchase_bonus(f.req(pb::UpdatePurchaseBonusRequest {
                idempotency_key: key.into(),
                purchase_bonus: Some(b),
                update_mask: mask(paths),
                etag: etag.into(),
            }))
    };
    let paused = update(
        "u1",
        "r1",
        pb::PurchaseBonus {
            id: created.id.clone(),
            state: pb::PurchaseBonusState::Inactive as i32,
            points: 3,
            ..Default::default()
        },
        &["state", "points"],
    )
    .await
    .expect("pause")
    .into_inner()
    .purchase_bonus
    .expect("bonus");
    assert_eq!(paused.state, pb::PurchaseBonusState::Inactive as i32);
    assert_eq!(paused.points, 3);
    assert_eq!(paused.etag, "r2");
    assert_eq!(paused.channels, created.channels);
    let err = update(
        "u2",
        "r2",
        pb::PurchaseBonus {
            id: created.id.clone(),
            currency_code: "CZK".into(),
            ..Default::default()
        },
        &["currency_code"],
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["update_mask"]);
    let err = update(
        "u3",
        "r1",
        pb::PurchaseBonus {
            id: created.id.clone(),
            display_name: "x".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap_err();
    assert_eq!(error_reason(&err), "ETAG_MISMATCH");

    // Newest first; the state filter; the active list leaves the paused one out.
    let list = |state: pb::PurchaseBonusState| {
        f.api
            .list_purchase_bonuses(f.req(pb::ListPurchaseBonusesRequest {
                state: state as i32,
                ..Default::default()
            }))
    };
    let names = |r: pb::ListPurchaseBonusesResponse| -> Vec<String> {
        r.purchase_bonuses.into_iter().map(|b| b.id).collect()
    };
    let all = names(
        list(pb::PurchaseBonusState::Unspecified)
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(all, vec![everyday.id.clone(), created.id.clone()]);
    let inactive = names(
        list(pb::PurchaseBonusState::Inactive)
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(inactive, vec![created.id.clone()]);
    let active = f
        .api
        .list_active_purchase_bonuses(f.req(Default::default()))
        .await
        .expect("active")
        .into_inner();
    let ids: Vec<String> = active.purchase_bonuses.into_iter().map(|b| b.id).collect();
    assert_eq!(ids, vec![everyday.id.clone()]);

    let delete = |key: &str, id: &str| {
        f.api
            .delete_purchase_bonus(f.req(pb::DeletePurchaseBonusRequest {
                idempotency_key: key.into(),
                purchase_bonus_id: id.into(),
            }))
    };
    delete("d1", &created.id).await.expect("delete");
    delete("d1", &created.id)
        .await
        .expect("a retry answers the same");
    let err = delete("d2", &created.id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = f
        .api
        .get_purchase_bonus(f.req_as(
            Uuid::now_v7(),
            pb::GetPurchaseBonusRequest {
                purchase_bonus_id: everyday.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn purchase_bonuses_keep_their_restrictions_and_are_updated_listed_and_deleted() {
    purchase_bonus_lifecycle(&Fixture::postgres().await.with_espresso().await).await;
}

#[tokio::test]
async fn purchase_bonuses_work_on_sqlite_too() {
    purchase_bonus_lifecycle(&Fixture::sqlite().await.with_espresso().await).await;
}

#[tokio::test]
async fn bad_purchase_bonuses_are_refused_naming_the_field() {
    let f = Fixture::postgres().await.with_espresso().await;
    let bad = pb::PurchaseBonus {
        products: Some(ProductScope {
            brand_codes: vec!["illy".into()],
            ..Default::default()
        }),
        ..friday_bonus()
    };
    let err = f.create_bonus("bad1", bad).await.unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["purchase_bonus.products.brand_codes[0]"]
    );
    let bad = pb::PurchaseBonus {
        channels: vec![0],
        days_of_week: vec![9],
        hour_ranges: vec![
            HourRange {
                start_hour: 8,
                end_hour: 10,
            },
            HourRange {
                start_hour: 18,
                end_hour: 20,
            },
        ],
        tier_ids: vec!["gold".into()],
        max_points_per_purchase: -1,
        ..friday_bonus()
    };
    let err = f.create_bonus("bad2", bad).await.unwrap_err();
    let fields = violated_fields(&err);
    for want in [
        "purchase_bonus.channels[0]",
        "purchase_bonus.days_of_week[0]",
        "purchase_bonus.hour_ranges",
        "purchase_bonus.tier_ids[0]",
        "purchase_bonus.max_points_per_purchase",
    ] {
        assert!(fields.iter().any(|f| f == want), "{want} in {fields:?}");
    }
}

#[tokio::test]
async fn campaign_products_work_on_sqlite_too() {
    let f = Fixture::sqlite().await.with_espresso().await;
    let c = f
        .create_entry("c1", espresso_deal("Espresso 1.99"))
        .await
        .expect("create");
    let listed = f
        .list_entries(pb::ListCampaignProductsRequest {
            active_time: ts("2026-12-02T00:00:00Z"),
            product_code: "ESP".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(listed, vec!["Espresso 1.99"]);
    f.api
        .delete_campaign_product(f.req(pb::DeleteCampaignProductRequest {
            idempotency_key: "d".into(),
            campaign_product_id: c.id,
            etag: "r1".into(),
        }))
        .await
        .expect("delete");
    assert!(f.list_entries(Default::default()).await.is_empty());
}

#[tokio::test]
async fn a_bonus_stored_before_restrictions_existed_reads_as_active_and_unrestricted() {
    let f = Fixture::postgres().await.with_espresso().await;
    let id = Uuid::now_v7();
    // The columns of m0001 only, as rows written before m0005 look.
    f.db.execute(Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        "INSERT INTO purchase_bonuses (id, partner_id, display_name, points, spend_amount_minor, \
         currency_code, multiplier_basis_points, segment_ids, valid_from, valid_until, created_at) \
         VALUES ($1, $2, 'Old', 1, 100, 'EUR', 10000, '[]', NULL, NULL, now())",
        [id.into(), f.partner.into()],
    ))
    .await
    .expect("insert");
    let old = f
        .api
        .get_purchase_bonus(f.req(pb::GetPurchaseBonusRequest {
            purchase_bonus_id: id.to_string(),
        }))
        .await
        .expect("get")
        .into_inner()
        .purchase_bonus
        .expect("bonus");
    assert_eq!(old.state, pb::PurchaseBonusState::Active as i32);
    assert_eq!(old.etag, "r1");
    assert_eq!(old.products, None);
    assert!(old.channels.is_empty() && old.days_of_week.is_empty());
    assert_eq!(old.update_time, old.create_time);
    let active = f
        .api
        .list_active_purchase_bonuses(f.req(Default::default()))
        .await
        .expect("active")
        .into_inner()
        .purchase_bonuses;
    assert_eq!(active.len(), 1);
}

/// 3 espressos at 2.50 and a tea at 3.00 on 24 December, in `channel` and `business_unit`.
fn december_cart(channel: SalesChannel, business_unit: Option<Uuid>) -> pb::EvaluateCartRequest {
    let line = |code: &str, quantity, unit_price_minor| pb::EvaluationLine {
        product_code: code.into(),
        quantity,
        unit_price_minor,
        ..Default::default()
    };
    pb::EvaluateCartRequest {
        lines: vec![line("ESP", 3, 250), line("TEA", 1, 300)],
        channel: channel as i32,
        business_unit_id: business_unit.map(|b| b.to_string()).unwrap_or_default(),
        evaluate_time: ts("2026-12-24T12:00:00Z"),
        ..Default::default()
    }
}

async fn evaluate_as(
    f: &Fixture,
    partner: Uuid,
    r: pb::EvaluateCartRequest,
) -> pb::EvaluateCartResponse {
    f.api
        .evaluate_cart(f.req_as(partner, r))
        .await
        .expect("evaluate")
        .into_inner()
}

async fn evaluate_cart_prices_active_campaign_products(f: Fixture) {
    let prague = Uuid::now_v7();
    let entry = f
        .create_entry(
            "c1",
            pb::CampaignProduct {
                business_unit_ids: vec![prague.to_string()],
                ..espresso_deal("Espresso 1.99")
            },
        )
        .await
        .expect("create");
    // A paused entry prices nothing.
    let paused = f
        .create_entry(
            "c2",
            pb::CampaignProduct {
                discount: Some(Discount::PercentageBasisPoints(5000)),
                active: false,
                ..espresso_deal("Half price espresso (paused)")
            },
        )
        .await
        .expect("create paused");

    // In Prague at the till: each espresso at 1.99 (1.53 off), the tea untouched.
    let at_till = evaluate_as(
        &f,
        f.partner,
        december_cart(SalesChannel::Pos, Some(prague)),
    )
    .await;
    assert_eq!(at_till.discount_minor, 153);
    assert_eq!(at_till.total_minor, 597 + 300);
    let esp = &at_till.lines[0];
    assert_eq!(esp.discounts.len(), 1);
    assert_eq!(esp.discounts[0].rule_id, entry.id);
    assert_eq!(esp.discounts[0].reason, "FIXED_PRICE");
    assert!(at_till.lines[1].discounts.is_empty());
    assert!(at_till.applied_rules.iter().any(|a| a.rule_id == entry.id));
    assert!(!at_till.applied_rules.iter().any(|a| a.rule_id == paused.id));

    // In the e-shop, in another business unit, or in January: no campaign price, and why.
    let reason_of = |r: &pb::EvaluateCartResponse| {
        r.rules_not_applied
            .iter()
            .find(|n| n.rule_id == entry.id)
            .map(|n| n.reason.clone())
            .unwrap_or_default()
    };
    let eshop = evaluate_as(
        &f,
        f.partner,
        december_cart(SalesChannel::Eshop, Some(prague)),
    )
    .await;
    assert_eq!(eshop.discount_minor, 0);
    assert_eq!(reason_of(&eshop), "CHANNEL_NOT_INCLUDED");
    let brno = evaluate_as(
        &f,
        f.partner,
        december_cart(SalesChannel::Pos, Some(Uuid::now_v7())),
    )
    .await;
    assert_eq!(brno.discount_minor, 0);
    assert_eq!(reason_of(&brno), "BUSINESS_UNIT_NOT_INCLUDED");
    let january = evaluate_as(
        &f,
        f.partner,
        pb::EvaluateCartRequest {
            evaluate_time: ts("2027-01-02T12:00:00Z"),
            ..december_cart(SalesChannel::Pos, Some(prague))
        },
    )
    .await;
    assert_eq!(january.discount_minor, 0);

    // Another partner's carts never get this partner's campaign prices.
    let other = evaluate_as(
        &f,
        Uuid::now_v7(),
        december_cart(SalesChannel::Pos, Some(prague)),
    )
    .await;
    assert_eq!(other.discount_minor, 0);
    assert!(other.rules_not_applied.is_empty());

    // Deleting the entry takes the price off the next evaluation.
    f.api
        .delete_campaign_product(f.req(pb::DeleteCampaignProductRequest {
            idempotency_key: "d".into(),
            campaign_product_id: entry.id.clone(),
            etag: "r1".into(),
        }))
        .await
        .expect("delete");
    let after = evaluate_as(
        &f,
        f.partner,
        december_cart(SalesChannel::Pos, Some(prague)),
    )
    .await;
    assert_eq!(after.discount_minor, 0);
}

#[tokio::test]
async fn evaluate_cart_prices_active_campaign_products_on_postgres() {
    evaluate_cart_prices_active_campaign_products(Fixture::postgres().await.with_espresso().await)
        .await;
}

#[tokio::test]
async fn evaluate_cart_prices_active_campaign_products_on_sqlite() {
    evaluate_cart_prices_active_campaign_products(Fixture::sqlite().await.with_espresso().await)
        .await;
}

/// A campaign price and a reward on the same espressos: by default the better of the two on
/// the line, the other forgone; with `combine_campaign_products` set, both.
async fn the_combine_setting_decides_how_a_campaign_price_meets_a_reward(f: Fixture) {
    let entry = f
        .create_entry("c1", espresso_deal("Espresso 1.99"))
        .await
        .expect("create");
    let reward = f
        .api
        .create_reward(f.req(pb::CreateRewardRequest {
            idempotency_key: "ten-off".into(),
            reward: Some(pb::Reward {
                display_name: "Ten off".into(),
                r#type: pb::RewardType::CashDesk as i32,
                benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                    pb::CartPercentageDiscount { basis_points: 1000 },
                )),
                valid_from_time: ts("2026-11-01T00:00:00Z"),
                ..Default::default()
            }),
        }))
        .await
        .expect("reward")
        .into_inner()
        .reward
        .expect("reward");
    let totals = |r: &pb::EvaluateCartResponse| -> Vec<i64> {
        r.lines.iter().map(|l| l.total_minor).collect()
    };

    // 3 espressos: the campaign price takes 1.53 off, the reward 0.75: the campaign price.
    let apart = evaluate_as(&f, f.partner, december_cart(SalesChannel::Pos, None)).await;
    assert_eq!(totals(&apart), [597, 270]);
    let esp = &apart.lines[0];
    assert_eq!(esp.discounts.len(), 1);
    assert_eq!(esp.discounts[0].rule_id, entry.id);
    assert_eq!(esp.forgone_discounts.len(), 1);
    assert_eq!(esp.forgone_discounts[0].rule_id, reward.id);
    assert_eq!(esp.forgone_discounts[0].amount_minor, 75);
    assert_eq!(esp.forgone_discounts[0].reason, "BETTER_CAMPAIGN_PRICE");

    f.api
        .update_resolution_settings(f.req(pb::UpdateResolutionSettingsRequest {
            idempotency_key: "combine".into(),
            settings: Some(pb::ResolutionSettings {
                combine_campaign_products: true,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["combine_campaign_products".into()],
            }),
            etag: String::new(),
        }))
        .await
        .expect("settings");
    // Combined: 10 % of the 5.97 left (0.59), the next evaluation already.
    let together = evaluate_as(&f, f.partner, december_cart(SalesChannel::Pos, None)).await;
    assert_eq!(totals(&together), [538, 270]);
    assert!(together.lines[0].forgone_discounts.is_empty());
    assert_eq!(together.lines[0].discounts.len(), 2);
    assert_eq!(together.lines[0].discounts[0].rule_id, entry.id);
}

#[tokio::test]
async fn the_combine_setting_decides_how_a_campaign_price_meets_a_reward_on_postgres() {
    the_combine_setting_decides_how_a_campaign_price_meets_a_reward(
        Fixture::postgres().await.with_espresso().await,
    )
    .await;
}

#[tokio::test]
async fn the_combine_setting_decides_how_a_campaign_price_meets_a_reward_on_sqlite() {
    the_combine_setting_decides_how_a_campaign_price_meets_a_reward(
        Fixture::sqlite().await.with_espresso().await,
    )
    .await;
}

#[tokio::test]
async fn an_amount_off_per_unit_for_at_most_two_units_prices_the_cart() {
    let f = Fixture::postgres().await.with_espresso().await;
    let entry = f
        .create_entry(
            "c1",
            pb::CampaignProduct {
                discount: Some(Discount::AmountOffPerUnit(eur(50))),
                max_quantity_per_purchase: 2,
                ..espresso_deal("0.50 off up to two espressos")
            },
        )
        .await
        .expect("amount off per unit with a unit cap");
    assert_eq!(entry.discount, Some(Discount::AmountOffPerUnit(eur(50))));
    assert_eq!(entry.max_quantity_per_purchase, 2);
    let e = evaluate_as(&f, f.partner, december_cart(SalesChannel::Pos, None)).await;
    // 3 espressos: 2 × 0.50 off; the tea untouched.
    assert_eq!(e.discount_minor, 100);
    assert_eq!(e.lines[0].discounts[0].reason, "UNIT_AMOUNT_DISCOUNT");
    assert_eq!(e.lines[0].discounts[0].rule_id, entry.id);

    let refused = f
        .create_entry(
            "c2",
            pb::CampaignProduct {
                discount: Some(Discount::AmountOffPerUnit(eur(0))),
                max_quantity_per_purchase: -1,
                ..espresso_deal("Bad")
            },
        )
        .await
        .expect_err("refused");
    let fields = violated_fields(&refused);
    for want in [
        "campaign_product.amount_off_per_unit.amount_minor",
        "campaign_product.max_quantity_per_purchase",
    ] {
        assert!(fields.iter().any(|x| x == want), "{want} in {fields:?}");
    }
}
