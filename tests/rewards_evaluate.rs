//! EvaluateCart and the resolution settings through gRPC (issue #6), the services running as
//! processes on PostgreSQL and Redis: a cash desk reward, a campaign reward behind a voucher
//! and a purchase bonus price a cart; an exclusive group set in the resolution settings
//! changes the next evaluation; the evaluation writes nothing; another partner sees nothing.
use loyalty_proto::{identity::v1 as identity, rewards::v1 as pb};
use loyalty_testkit::{Backend, Suite, authed, error_reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

fn reward(name: &str, kind: pb::RewardType, basis_points: i32) -> pb::Reward {
    pb::Reward {
        display_name: name.into(),
        r#type: kind as i32,
        benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
            pb::CartPercentageDiscount { basis_points },
        )),
        // Stacking is what these carts exercise; a reward combines only when it says so.
        combinable: true,
        ..Default::default()
    }
}

fn cart(customer: &str, codes: &[&str]) -> pb::EvaluateCartRequest {
    pb::EvaluateCartRequest {
        lines: vec![
            pb::EvaluationLine {
                product_code: "COFFEE-1KG".into(),
                quantity: 2,
                unit_price_minor: 1000,
                product_group_code: "coffee".into(),
                ..Default::default()
            },
            pb::EvaluationLine {
                product_code: "TOBACCO".into(),
                quantity: 1,
                unit_price_minor: 800,
                no_reward_application: true,
                ..Default::default()
            },
        ],
        customer_id: customer.into(),
        voucher_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        channel: loyalty_proto::types::v1::SalesChannel::Pos as i32,
        base_earn_points: 1,
        base_earn_per_spend_minor: 100,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cart_is_priced_by_rewards_bonus_and_voucher_and_by_the_resolution_settings()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, admin) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut r = suite.rewards().await?;
    let customer = Uuid::now_v7().to_string();

    let create = |key: &'static str, reward: pb::Reward| {
        let mut r = r.clone();
        let admin = admin.clone();
        async move {
            anyhow::Ok(
                r.create_reward(authed(
                    pb::CreateRewardRequest {
                        idempotency_key: key.into(),
                        reward: Some(reward),
                    },
                    &admin,
                ))
                .await?
                .into_inner()
                .reward
                .expect("reward")
                .id,
            )
        }
    };
    let cash_desk = create("r-1", reward("Ten off", pb::RewardType::CashDesk, 1000)).await?;
    let campaign = create("r-2", reward("Twenty off", pb::RewardType::Campaign, 2000)).await?;
    let bonus = r
        .create_purchase_bonus(authed(
            pb::CreatePurchaseBonusRequest {
                idempotency_key: "b-1".into(),
                purchase_bonus: Some(pb::PurchaseBonus {
                    display_name: "Ten points per euro".into(),
                    points: 10,
                    spend_amount_minor: 100,
                    currency_code: "EUR".into(),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .purchase_bonus
        .expect("bonus")
        .id;
    let code = r
        .issue_voucher(authed(
            pb::IssueVoucherRequest {
                idempotency_key: "v-1".into(),
                reward_id: campaign.clone(),
                customer_id: customer.clone(),
                source: pb::VoucherSource::Campaign as i32,
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .voucher
        .expect("voucher")
        .code;

    // Coffee 20.00: 10 % (2.00), then 20 % of the rest (3.60) → 14.40; tobacco untouched.
    let e = r
        .evaluate_cart(authed(cart(&customer, &[&code, "NOPE-NOPE"]), &admin))
        .await?
        .into_inner();
    assert_eq!(e.gross_minor, 2800);
    assert_eq!(e.discount_minor, 560);
    assert_eq!(e.total_minor, 2240);
    assert_eq!(e.lines[0].total_minor, 1440);
    assert_eq!(e.lines[1].total_minor, 800);
    assert!(e.lines[1].discounts.is_empty());
    // Points: base 14 + bonus 140 (14 full steps of 1.00) on the coffee, base 8 on the tobacco.
    assert_eq!(e.lines[0].points, 154);
    assert_eq!(e.lines[1].points, 8);
    assert_eq!(e.points, 162);
    let applied: Vec<&str> = e.applied_rules.iter().map(|a| a.rule_id.as_str()).collect();
    assert_eq!(
        applied,
        [cash_desk.as_str(), campaign.as_str(), bonus.as_str()]
    );
    assert_eq!(e.vouchers_to_redeem, std::slice::from_ref(&code));
    assert_eq!(e.rejected_vouchers.len(), 1);
    assert_eq!(e.rejected_vouchers[0].reason, "VOUCHER_UNKNOWN");
    assert!(e.lines[0].discounts[1].explanation.contains("Twenty off"));

    // Evaluation wrote nothing: the voucher is still valid.
    let still = r
        .validate_voucher(authed(
            pb::ValidateVoucherRequest {
                code: code.clone(),
                customer_id: customer.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert!(still.valid);

    // An exclusive group: only the better of the two rewards applies from now on.
    let settings = r
        .get_resolution_settings(authed(pb::GetResolutionSettingsRequest {}, &admin))
        .await?
        .into_inner()
        .settings
        .expect("settings");
    assert_eq!(settings.etag, "r0");
    let update = |key: &str, ids: Vec<String>| pb::UpdateResolutionSettingsRequest {
        idempotency_key: key.into(),
        settings: Some(pb::ResolutionSettings {
            rule_groups: vec![pb::RuleGroup {
                name: "cash desk".into(),
                mode: pb::RuleGroupMode::Exclusive as i32,
                rule_ids: ids,
            }],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["rule_groups".into()],
        }),
        etag: settings.etag.clone(),
    };
    let refused = r
        .update_resolution_settings(authed(update("s-0", vec![]), &admin))
        .await
        .expect_err("an empty group");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        ["settings.rule_groups[0].rule_ids"]
    );
    let changed = r
        .update_resolution_settings(authed(
            update("s-1", vec![cash_desk.clone(), campaign.clone()]),
            &admin,
        ))
        .await?
        .into_inner()
        .settings
        .expect("settings");
    assert_eq!(changed.etag, "r1");
    let e = r
        .evaluate_cart(authed(cart(&customer, &[&code]), &admin))
        .await?
        .into_inner();
    assert_eq!(e.lines[0].total_minor, 1600);
    let lost = e
        .rules_not_applied
        .iter()
        .find(|n| n.rule_id == cash_desk)
        .expect("the cash desk reward lost");
    assert_eq!(lost.reason, "LOST_EXCLUSIVE_GROUP");
    let stale = r
        .update_resolution_settings(authed(
            update("s-2", vec![cash_desk.clone(), campaign.clone()]),
            &admin,
        ))
        .await
        .expect_err("stale etag");
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");

    // Another partner: none of these rules, no such voucher, its own default settings.
    let e = r
        .evaluate_cart(authed(cart(&customer, &[&code]), &rival))
        .await?
        .into_inner();
    assert_eq!(e.total_minor, 2800);
    assert!(e.applied_rules.is_empty() && e.rules_not_applied.is_empty());
    assert_eq!(e.rejected_vouchers[0].reason, "VOUCHER_UNKNOWN");
    let theirs = r
        .get_resolution_settings(authed(pb::GetResolutionSettingsRequest {}, &rival))
        .await?
        .into_inner()
        .settings
        .expect("settings");
    assert_eq!(theirs.etag, "r0");
    assert!(theirs.rule_groups.is_empty());

    suite.stop().await
}
