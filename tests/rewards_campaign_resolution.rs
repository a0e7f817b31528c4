//! A campaign price against a reward discount on the same product through gRPC (issue #6),
//! the services running as processes on PostgreSQL: by default the better of the two applies
//! on each line and the other is reported forgone; with `combine_campaign_products` set in the
//! resolution settings, the reward applies on what the campaign price leaves.
use loyalty_proto::{
    identity::v1 as identity,
    rewards::v1::{self as pb, campaign_product::Discount},
    types::v1::{Money, ProductScope, SalesChannel},
};
use loyalty_testkit::{Backend, Suite, authed};
use prost_types::{FieldMask, Timestamp};

fn eur(amount_minor: i64) -> Money {
    Money {
        currency_code: "EUR".into(),
        amount_minor,
    }
}

/// Now plus `hours` (may be negative).
fn hours_from_now(hours: i64) -> Option<Timestamp> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    Some(Timestamp {
        seconds: now + hours * 3600,
        nanos: 0,
    })
}

/// 2 × ESP at 2.50 and 1 × TEA at 3.00, at the cash desk.
fn cart() -> pb::EvaluateCartRequest {
    let line = |code: &str, quantity, unit_price_minor| pb::EvaluationLine {
        product_code: code.into(),
        quantity,
        unit_price_minor,
        ..Default::default()
    };
    pb::EvaluateCartRequest {
        lines: vec![line("ESP", 2, 250), line("TEA", 1, 300)],
        channel: SalesChannel::Pos as i32,
        ..Default::default()
    }
}

fn forgone(line: &pb::EvaluatedLine) -> Vec<(&str, i64, &str)> {
    line.forgone_discounts
        .iter()
        .map(|d| (d.rule_id.as_str(), d.amount_minor, d.reason.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_price_and_a_reward_resolve_per_line_by_the_partners_setting()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Cafe", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut r = suite.rewards().await?;

    for (code, price) in [("ESP", 250), ("TEA", 300)] {
        r.create_product(authed(
            pb::CreateProductRequest {
                idempotency_key: format!("p-{code}"),
                product: Some(pb::Product {
                    code: code.into(),
                    display_name: code.into(),
                    list_price: Some(eur(price)),
                    active: true,
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?;
    }
    let espresso = r
        .create_campaign_product(authed(
            pb::CreateCampaignProductRequest {
                idempotency_key: "espresso".into(),
                campaign_product: Some(pb::CampaignProduct {
                    display_name: "Espresso for 1.99".into(),
                    products: Some(ProductScope {
                        product_codes: vec!["ESP".into()],
                        ..Default::default()
                    }),
                    discount: Some(Discount::FixedUnitPrice(eur(199))),
                    valid_from_time: hours_from_now(-1),
                    valid_until_time: hours_from_now(24 * 30),
                    active: true,
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?
        .into_inner()
        .campaign_product
        .expect("campaign product")
        .id;
    let ten_off = r
        .create_reward(authed(
            pb::CreateRewardRequest {
                idempotency_key: "ten-off".into(),
                reward: Some(pb::Reward {
                    display_name: "Ten off".into(),
                    r#type: pb::RewardType::CashDesk as i32,
                    benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                        pb::CartPercentageDiscount { basis_points: 1000 },
                    )),
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?
        .into_inner()
        .reward
        .expect("reward")
        .id;

    // Default (not combined): the espressos cost 3.98 by the campaign price (1.02 off beats
    // the reward's 0.50), the tea 2.70 by the reward.
    let e = r.evaluate_cart(authed(cart(), &key)).await?.into_inner();
    let totals: Vec<i64> = e.lines.iter().map(|l| l.total_minor).collect();
    assert_eq!(totals, [398, 270]);
    assert_eq!(e.lines[0].discounts.len(), 1);
    assert_eq!(e.lines[0].discounts[0].rule_id, espresso);
    assert_eq!(e.lines[0].discounts[0].reason, "FIXED_PRICE");
    assert_eq!(
        forgone(&e.lines[0]),
        [(ten_off.as_str(), 50, "BETTER_CAMPAIGN_PRICE")]
    );
    assert!(
        e.lines[0].forgone_discounts[0]
            .explanation
            .contains("Ten off")
    );
    assert!(e.lines[1].forgone_discounts.is_empty());
    let applied: Vec<(&str, i64)> = e
        .applied_rules
        .iter()
        .map(|a| (a.rule_id.as_str(), a.discount_minor))
        .collect();
    assert_eq!(applied, [(espresso.as_str(), 102), (ten_off.as_str(), 30)]);
    assert!(e.rules_not_applied.is_empty());

    // Combined: 10 % of the 3.98 the campaign price leaves (0.39), and of the tea.
    let update = pb::UpdateResolutionSettingsRequest {
        idempotency_key: "combine".into(),
        settings: Some(pb::ResolutionSettings {
            combine_campaign_products: true,
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["combine_campaign_products".into()],
        }),
        etag: String::new(),
    };
    let settings = r
        .update_resolution_settings(authed(update.clone(), &key))
        .await?
        .into_inner()
        .settings
        .expect("settings");
    assert!(settings.combine_campaign_products);
    // A retry answers the same.
    let again = r
        .update_resolution_settings(authed(update, &key))
        .await?
        .into_inner()
        .settings
        .expect("settings");
    assert_eq!(again, settings);
    let e = r.evaluate_cart(authed(cart(), &key)).await?.into_inner();
    let totals: Vec<i64> = e.lines.iter().map(|l| l.total_minor).collect();
    assert_eq!(totals, [359, 270]);
    let on_espresso: Vec<(&str, i64)> = e.lines[0]
        .discounts
        .iter()
        .map(|d| (d.rule_id.as_str(), d.amount_minor))
        .collect();
    assert_eq!(
        on_espresso,
        [(espresso.as_str(), 102), (ten_off.as_str(), 39)]
    );
    assert!(e.lines.iter().all(|l| l.forgone_discounts.is_empty()));

    // Another partner: neither the campaign price nor the reward.
    let e = r.evaluate_cart(authed(cart(), &rival)).await?.into_inner();
    assert_eq!(e.total_minor, 800);
    assert!(e.applied_rules.is_empty() && e.rules_not_applied.is_empty());

    suite.stop().await
}
