//! Resolution settings and EvaluateCart against PostgreSQL (a fresh database per test) and
//! SQLite, through the service's API object: defaults, etags, idempotent updates, refused
//! groups; a cart with a cash desk reward, a purchase bonus and a presented voucher; an
//! exclusive group seen by the next evaluation; another partner's rules invisible; the
//! cache dropped by the RewardsChanged consumer of another instance.
use loyalty_platform::Role;
use loyalty_proto::{
    events::v1 as ev,
    rewards::v1::{self as pb, rewards_service_server::RewardsService},
};
use loyalty_testkit::{error_reason, violated_fields};
use tonic::{Code, Request};
use uuid::Uuid;

use crate::{
    api::RewardsApi,
    store::test_support::{TestApi, request},
};

pub(super) enum Resolution {}
pub(super) type Fixture = TestApi<Resolution>;

impl Fixture {
    pub(super) fn req_as<T>(partner: Uuid, role: Role, message: T) -> Request<T> {
        request(partner, role, message)
    }

    pub(super) fn req<T>(&self, message: T) -> Request<T> {
        Self::req_as(self.partner, Role::Admin, message)
    }

    async fn reward(&self, name: &str, kind: pb::RewardType, basis_points: i32) -> String {
        self.create_reward(pb::Reward {
            display_name: name.into(),
            r#type: kind as i32,
            benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                pb::CartPercentageDiscount { basis_points },
            )),
            // Stacking is what these carts exercise; a reward combines only when it says so.
            combinable: true,
            ..Default::default()
        })
        .await
        .expect("reward")
        .id
    }

    async fn bonus(&self, points: i64, per_spend_minor: i64) -> String {
        self.api
            .create_purchase_bonus(self.req(pb::CreatePurchaseBonusRequest {
                idempotency_key: Uuid::now_v7().to_string(),
                purchase_bonus: Some(pb::PurchaseBonus {
                    display_name: "Points for spending".into(),
                    points,
                    spend_amount_minor: per_spend_minor,
                    currency_code: "EUR".into(),
                    ..Default::default()
                }),
            }))
            .await
            .expect("bonus")
            .into_inner()
            .purchase_bonus
            .expect("bonus")
            .id
    }

    async fn voucher(&self, reward_id: &str, customer: Uuid) -> String {
        self.issue(reward_id, customer).await.expect("voucher").code
    }

    async fn update(
        &self,
        key: &str,
        settings: pb::ResolutionSettings,
        paths: &[&str],
        etag: &str,
    ) -> Result<pb::ResolutionSettings, tonic::Status> {
        Ok(self
            .api
            .update_resolution_settings(self.req(pb::UpdateResolutionSettingsRequest {
                idempotency_key: key.into(),
                settings: Some(settings),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
                etag: etag.into(),
            }))
            .await?
            .into_inner()
            .settings
            .expect("settings"))
    }

    async fn get(&self) -> pb::ResolutionSettings {
        self.api
            .get_resolution_settings(Self::req_as(
                self.partner,
                Role::Pos,
                pb::GetResolutionSettingsRequest {},
            ))
            .await
            .expect("get")
            .into_inner()
            .settings
            .expect("settings")
    }
}

fn exclusive(name: &str, ids: &[&str]) -> pb::RuleGroup {
    pb::RuleGroup {
        name: name.into(),
        mode: pb::RuleGroupMode::Exclusive as i32,
        rule_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Two units at 10.00 for `customer`, base earn 1 point per 1.00.
fn cart(customer: Uuid, codes: &[&str]) -> pb::EvaluateCartRequest {
    pb::EvaluateCartRequest {
        lines: vec![pb::EvaluationLine {
            product_code: "COFFEE-1KG".into(),
            quantity: 2,
            unit_price_minor: 1000,
            ..Default::default()
        }],
        customer_id: customer.to_string(),
        voucher_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        base_earn_points: 1,
        base_earn_per_spend_minor: 100,
        ..Default::default()
    }
}

pub(super) async fn evaluate(
    api: &RewardsApi,
    partner: Uuid,
    request: pb::EvaluateCartRequest,
) -> pb::EvaluateCartResponse {
    api.evaluate_cart(Fixture::req_as(partner, Role::Pos, request))
        .await
        .expect("evaluate")
        .into_inner()
}

pub(super) fn not_applied(r: &pb::EvaluateCartResponse, rule_id: &str) -> String {
    r.rules_not_applied
        .iter()
        .find(|n| n.rule_id == rule_id)
        .map(|n| n.reason.clone())
        .unwrap_or_default()
}

async fn settings_are_defaulted_updated_under_etag_and_idempotent(f: Fixture) {
    let defaults = f.get().await;
    assert_eq!(defaults.etag, "r0");
    assert_eq!(
        defaults.discount_mode,
        pb::ResolutionMode::HighestAward as i32
    );
    assert_eq!(defaults.offer_mode, pb::ResolutionMode::All as i32);
    assert!(defaults.update_time.is_none());
    let r1 = f.reward("Ten off", pb::RewardType::CashDesk, 1000).await;
    let b1 = f.bonus(1, 100).await;
    let sent = pb::ResolutionSettings {
        discount_mode: pb::ResolutionMode::Priority as i32,
        max_rules_per_purchase: 2,
        max_vouchers_per_purchase: 3,
        offer_mode: pb::ResolutionMode::LowestAward as i32,
        rule_groups: vec![exclusive("weekly", &[&r1, &b1])],
        ..Default::default()
    };
    let paths = [
        "discount_mode",
        "max_rules_per_purchase",
        "max_vouchers_per_purchase",
        "rule_groups",
    ];
    let changed = f
        .update("s-1", sent.clone(), &paths, "r0")
        .await
        .expect("update");
    assert_eq!(changed.etag, "r1");
    assert_eq!(changed.discount_mode, pb::ResolutionMode::Priority as i32);
    // Not in the mask: unchanged.
    assert_eq!(changed.offer_mode, pb::ResolutionMode::All as i32);
    assert_eq!(changed.rule_groups, sent.rule_groups);
    assert_eq!(changed.max_rules_per_purchase, 2);
    assert!(changed.update_time.is_some());
    assert_eq!(f.get().await, changed);
    // A retry answers the first call's result and changes nothing more.
    let retried = f
        .update("s-1", sent.clone(), &paths, "r0")
        .await
        .expect("retry");
    assert_eq!(retried, changed);
    assert_eq!(f.get().await.etag, "r1");
    // A stale etag is refused.
    let stale = f
        .update("s-2", sent.clone(), &["offer_mode"], "r0")
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");
    let second = f
        .update("s-3", sent, &["offer_mode"], "r1")
        .await
        .expect("second");
    assert_eq!(second.etag, "r2");
    assert_eq!(second.offer_mode, pb::ResolutionMode::LowestAward as i32);
    // Reward, bonus and two settings changes: four RewardsChanged.
    assert_eq!(f.events("loyalty.events.v1.RewardsChanged").await, 4);
    // The POS reads but does not change them.
    let denied = f
        .api
        .update_resolution_settings(Fixture::req_as(
            f.partner,
            Role::Pos,
            pb::UpdateResolutionSettingsRequest {
                idempotency_key: "s-4".into(),
                settings: Some(Default::default()),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["offer_mode".into()],
                }),
                etag: String::new(),
            },
        ))
        .await
        .expect_err("denied");
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn settings_are_defaulted_updated_under_etag_and_idempotent_on_postgres() {
    settings_are_defaulted_updated_under_etag_and_idempotent(Fixture::postgres().await).await;
}

#[tokio::test]
async fn settings_are_defaulted_updated_under_etag_and_idempotent_on_sqlite() {
    settings_are_defaulted_updated_under_etag_and_idempotent(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn overlapping_empty_unknown_and_foreign_groups_are_refused_by_field() {
    let f = Fixture::postgres().await;
    let r1 = f.reward("Ten off", pb::RewardType::CashDesk, 1000).await;
    let r2 = f.reward("Five off", pb::RewardType::CashDesk, 500).await;
    // A reward of another partner is no rule of this one.
    let other = f.another_partner();
    let foreign = other.reward("Theirs", pb::RewardType::CashDesk, 1000).await;
    let refused = f
        .update(
            "bad",
            pb::ResolutionSettings {
                rule_groups: vec![
                    exclusive("a", &[&r1, &r2]),
                    exclusive("b", &[&r2, &foreign]),
                    exclusive("c", &[]),
                    exclusive("d", &["not-a-uuid"]),
                    pb::RuleGroup {
                        name: "e".into(),
                        mode: 0,
                        rule_ids: vec![Uuid::now_v7().to_string()],
                    },
                ],
                discount_mode: pb::ResolutionMode::LowestAward as i32,
                ..Default::default()
            },
            &["rule_groups", "discount_mode"],
            "",
        )
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        [
            "settings.rule_groups[3].rule_ids[0]",
            "settings.rule_groups[4].mode",
        ]
    );
    // With the parse errors gone, the engine's own checks name the rest.
    let refused = f
        .update(
            "bad-2",
            pb::ResolutionSettings {
                rule_groups: vec![
                    exclusive("a", &[&r1, &r2]),
                    exclusive("b", &[&r2, &foreign]),
                    exclusive("c", &[]),
                ],
                discount_mode: pb::ResolutionMode::LowestAward as i32,
                ..Default::default()
            },
            &["rule_groups", "discount_mode"],
            "",
        )
        .await
        .expect_err("refused");
    assert_eq!(
        violated_fields(&refused),
        [
            "settings.discount_mode",
            "settings.rule_groups[1].rule_ids[0]",
            "settings.rule_groups[1].rule_ids[1]",
            "settings.rule_groups[2].rule_ids",
        ]
    );
    assert_eq!(f.get().await.etag, "r0", "nothing was written");
}

async fn a_cart_gets_the_cash_desk_reward_the_bonus_and_the_voucher(f: Fixture) {
    let customer = Uuid::now_v7();
    let cash_desk = f.reward("Ten off", pb::RewardType::CashDesk, 1000).await;
    let campaign = f.reward("Twenty off", pb::RewardType::Campaign, 2000).await;
    let bonus = f.bonus(10, 100).await;
    let code = f.voucher(&campaign, customer).await;

    let e = evaluate(
        &f.api,
        f.partner,
        cart(customer, &[&code.to_lowercase(), "BOGUS-CODE"]),
    )
    .await;
    // 20.00 − 10 % (2.00) − 20 % of the rest (3.60) = 14.40.
    assert_eq!(e.gross_minor, 2000);
    assert_eq!(e.discount_minor, 560);
    assert_eq!(e.total_minor, 1440);
    let line = &e.lines[0];
    assert_eq!(line.product_code, "COFFEE-1KG");
    let discounts: Vec<(&str, i64)> = line
        .discounts
        .iter()
        .map(|d| (d.rule_id.as_str(), d.amount_minor))
        .collect();
    assert_eq!(
        discounts,
        [(cash_desk.as_str(), 200), (campaign.as_str(), 360)]
    );
    assert_eq!(line.discounts[0].reason, "PERCENTAGE_DISCOUNT");
    assert!(
        line.discounts[0]
            .explanation
            .starts_with("Ten off: 10 % off"),
        "{}",
        line.discounts[0].explanation
    );
    // Base earn 14 on 14.40, the bonus 10 per full 1.00 of 14.40: 14 steps = 140.
    assert_eq!(line.points, 154);
    assert_eq!(e.points, 154);
    assert!(
        line.points_detail
            .iter()
            .any(|p| p.rule_id == bonus && p.points == 140 && p.reason == "BONUS_POINTS")
    );
    assert_eq!(e.vouchers_to_redeem, std::slice::from_ref(&code));
    let rejected: Vec<(&str, &str)> = e
        .rejected_vouchers
        .iter()
        .map(|r| (r.code.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(rejected, [("BOGUS-CODE", "VOUCHER_UNKNOWN")]);
    let applied: Vec<&str> = e.applied_rules.iter().map(|a| a.rule_id.as_str()).collect();
    assert_eq!(
        applied,
        [cash_desk.as_str(), campaign.as_str(), bonus.as_str()]
    );
    assert_eq!(e.applied_rules[1].voucher_code, code);
    assert!(e.rules_not_applied.is_empty());

    // Without the voucher, the campaign reward says why it did not apply; another customer's
    // voucher is refused with the reason ValidateVoucher gives.
    let e = evaluate(&f.api, f.partner, cart(customer, &[])).await;
    assert_eq!(e.total_minor, 1800);
    assert_eq!(not_applied(&e, &campaign), "VOUCHER_REQUIRED");
    let e = evaluate(&f.api, f.partner, cart(Uuid::now_v7(), &[&code])).await;
    assert_eq!(e.rejected_vouchers[0].reason, "VOUCHER_OTHER_CUSTOMER");
    assert!(e.vouchers_to_redeem.is_empty());
}

#[tokio::test]
async fn a_cart_gets_the_cash_desk_reward_the_bonus_and_the_voucher_on_postgres() {
    a_cart_gets_the_cash_desk_reward_the_bonus_and_the_voucher(Fixture::postgres().await).await;
}

#[tokio::test]
async fn a_cart_gets_the_cash_desk_reward_the_bonus_and_the_voucher_on_sqlite() {
    a_cart_gets_the_cash_desk_reward_the_bonus_and_the_voucher(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn an_exclusive_group_and_a_voucher_cap_are_seen_by_the_next_evaluation() {
    let f = Fixture::postgres().await;
    let customer = Uuid::now_v7();
    let ten = f.reward("Ten off", pb::RewardType::CashDesk, 1000).await;
    let fifteen = f
        .reward("Fifteen off", pb::RewardType::CashDesk, 1500)
        .await;
    let campaign = f.reward("Twenty off", pb::RewardType::Campaign, 2000).await;
    let first = f.voucher(&campaign, customer).await;
    let again = f.reward("Again", pb::RewardType::Campaign, 500).await;
    let second = f.voucher(&again, customer).await;
    // Warm the cache: both stack.
    let e = evaluate(&f.api, f.partner, cart(customer, &[])).await;
    assert_eq!(e.applied_rules.len(), 2);

    f.update(
        "group",
        pb::ResolutionSettings {
            rule_groups: vec![exclusive("cash desk", &[&ten, &fifteen])],
            max_vouchers_per_purchase: 1,
            ..Default::default()
        },
        &["rule_groups", "max_vouchers_per_purchase"],
        "",
    )
    .await
    .expect("update");
    let e = evaluate(&f.api, f.partner, cart(customer, &[&first, &second])).await;
    // The best for the customer wins the group.
    let applied: Vec<&str> = e.applied_rules.iter().map(|a| a.rule_id.as_str()).collect();
    assert!(applied.contains(&fifteen.as_str()), "{applied:?}");
    assert_eq!(not_applied(&e, &ten), "LOST_EXCLUSIVE_GROUP");
    assert_eq!(e.vouchers_to_redeem, [first]);
    assert_eq!(e.rejected_vouchers[0].code, second);
    assert_eq!(e.rejected_vouchers[0].reason, "VOUCHER_LIMIT_PER_PURCHASE");
    // A reward created afterwards is seen at once (the write dropped the cached rules).
    let new = f.reward("Latecomer", pb::RewardType::CashDesk, 100).await;
    let e = evaluate(&f.api, f.partner, cart(customer, &[])).await;
    assert!(e.applied_rules.iter().any(|a| a.rule_id == new));
}

#[tokio::test]
async fn another_partners_rules_and_vouchers_are_invisible() {
    let f = Fixture::postgres().await;
    let customer = Uuid::now_v7();
    f.reward("Ten off", pb::RewardType::CashDesk, 1000).await;
    let campaign = f.reward("Twenty off", pb::RewardType::Campaign, 2000).await;
    let code = f.voucher(&campaign, customer).await;
    let stranger = Uuid::now_v7();
    let e = evaluate(&f.api, stranger, cart(customer, &[&code])).await;
    assert_eq!(e.total_minor, 2000);
    assert!(e.applied_rules.is_empty());
    assert!(e.rules_not_applied.is_empty());
    assert_eq!(e.rejected_vouchers[0].reason, "VOUCHER_UNKNOWN");
}

#[tokio::test]
async fn another_instances_change_reaches_the_cache_through_the_event() {
    let f = Fixture::postgres().await;
    let customer = Uuid::now_v7();
    // A second instance of the service on the same database, its cache warm and empty.
    let other = RewardsApi::new(f.db.clone());
    let e = evaluate(&other, f.partner, cart(customer, &[])).await;
    assert!(e.applied_rules.is_empty());
    let ten = f.reward("Ten off", pb::RewardType::CashDesk, 1000).await;
    let stale = evaluate(&other, f.partner, cart(customer, &[])).await;
    assert!(stale.applied_rules.is_empty(), "served from memory");
    let on_event = other.rules_cache().on_event();
    let event = |event_type: &str, partner: Uuid| ev::EventEnvelope {
        event_type: event_type.into(),
        producer: "rewards".into(),
        partner_id: partner.to_string(),
        ..Default::default()
    };
    // Other events and other partners' changes leave the entry alone.
    on_event(&event("loyalty.events.v1.VoucherIssued", f.partner));
    on_event(&event("loyalty.events.v1.RewardsChanged", Uuid::now_v7()));
    let still = evaluate(&other, f.partner, cart(customer, &[])).await;
    assert!(still.applied_rules.is_empty());
    on_event(&event("loyalty.events.v1.RewardsChanged", f.partner));
    let fresh = evaluate(&other, f.partner, cart(customer, &[])).await;
    assert_eq!(fresh.applied_rules[0].rule_id, ten);
}

#[tokio::test]
async fn bad_carts_are_refused_by_field() {
    let f = Fixture::postgres().await;
    let refused = f
        .api
        .evaluate_cart(Fixture::req_as(
            f.partner,
            Role::Pos,
            pb::EvaluateCartRequest {
                lines: vec![
                    pb::EvaluationLine {
                        product_code: "".into(),
                        quantity: 0,
                        unit_price_minor: -1,
                        ..Default::default()
                    },
                    pb::EvaluationLine {
                        product_code: "A B".into(),
                        quantity: 1,
                        ..Default::default()
                    },
                ],
                customer_id: "x".into(),
                segment_ids: vec!["y".into()],
                voucher_codes: vec!["  ".into()],
                utc_offset_minutes: 900,
                base_earn_points: 1,
                ..Default::default()
            },
        ))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        [
            "lines[0].product_code",
            "lines[0].quantity",
            "lines[0].unit_price_minor",
            "lines[1].product_code",
            "customer_id",
            "segment_ids[0]",
            "voucher_codes[0]",
            "utc_offset_minutes",
            "base_earn_per_spend_minor",
        ]
    );
    let empty = f
        .api
        .evaluate_cart(Fixture::req_as(
            f.partner,
            Role::Pos,
            pb::EvaluateCartRequest::default(),
        ))
        .await
        .expect_err("refused");
    assert_eq!(violated_fields(&empty), ["lines"]);
}

#[tokio::test]
async fn an_evaluation_at_another_moment_uses_the_rules_active_then() {
    let f = Fixture::postgres().await;
    let customer = Uuid::now_v7();
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let reward = f
        .api
        .create_reward(f.req(pb::CreateRewardRequest {
            idempotency_key: "later".into(),
            reward: Some(pb::Reward {
                display_name: "From tonight".into(),
                r#type: pb::RewardType::CashDesk as i32,
                benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                    pb::CartPercentageDiscount { basis_points: 1000 },
                )),
                valid_from_time: Some(loyalty_platform::time::to_timestamp(later)),
                ..Default::default()
            }),
        }))
        .await
        .expect("reward")
        .into_inner()
        .reward
        .expect("reward")
        .id;
    let now = evaluate(&f.api, f.partner, cart(customer, &[])).await;
    assert!(now.applied_rules.is_empty() && now.rules_not_applied.is_empty());
    let mut tonight = cart(customer, &[]);
    tonight.evaluate_time = Some(loyalty_platform::time::to_timestamp(
        later + chrono::Duration::hours(1),
    ));
    let e = evaluate(&f.api, f.partner, tonight).await;
    assert_eq!(e.applied_rules[0].rule_id, reward);
    assert_eq!(e.total_minor, 1800);
}
