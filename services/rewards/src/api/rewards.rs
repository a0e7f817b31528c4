//! gRPC adapter of the reward definition RPCs: create, get, list, update, archive, and the
//! catalogue of rewards available to a customer. Every change is one idempotent transaction
//! that publishes `RewardsChanged` through the outbox.
use std::collections::HashMap;

use chrono::Utc;
use loyalty_platform::{
    ApiError, Principal, Role, Violations,
    auth::principal,
    client::outgoing,
    error::{check_etag, check_idempotency_key, mask_paths},
    idempotency::{self, IdempotencyScope},
    paging::{next_page_token, page_size, parse_page_token},
    time::to_timestamp,
};
use loyalty_proto::{
    rewards::v1::{self as pb, reward::Benefit as PbBenefit},
    segmentation::v1::{
        self as segmentation, segmentation_service_client::SegmentationServiceClient,
    },
    types::v1::{Money, ProductScope},
    wallet::v1::{self as wallet, wallet_service_client::WalletServiceClient},
};
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{RewardsApi, parse_time, reward_type, reward_type_to_proto, vouchers};
use crate::{
    domain::{
        Validity,
        catalogue::etag,
        parse_segment_ids,
        rewards::{
            Amount, Benefit, Budget, BudgetKind, Caps, CartCondition, RequiredProducts, Reward,
            RewardState, Scope, UsagePeriod, check_state_change, reason,
        },
        vouchers::VoucherRules,
    },
    store::{
        catalogue::now,
        rewards::{self as store, RewardFilter},
        vouchers as vstore,
    },
};

const WRITERS: &[Role] = &[Role::Marketing];
const READERS: &[Role] = &[Role::Pos, Role::Marketing, Role::Service, Role::Support];

/// Update mask paths besides the benefit members.
const UPDATABLE: &[&str] = &[
    "display_name",
    "description",
    "image_url",
    "segment_ids",
    "valid_from_time",
    "valid_until_time",
    "state",
    "priority",
    "combinable",
    "stacking_group",
    "tier_ids",
    "caps",
    "budget",
    "cart_condition",
    "points_price",
    "voucher_validity_days",
    "max_vouchers_per_customer",
    "max_vouchers_total",
    "voucher_code_prefix",
    "business_unit_ids",
    "channels",
    "cart_percentage_discount",
    "cart_fixed_discount",
    "product_percentage_discount",
    "product_fixed_discount",
    "free_product",
    "points_payment",
    "bonus_points",
    "gift_value",
    "fixed_price",
    "buy_x_get_y",
    "spend_x_save_y",
    "points_multiplier",
];

const BENEFIT_PATHS: &[&str] = &[
    "cart_percentage_discount",
    "cart_fixed_discount",
    "product_percentage_discount",
    "product_fixed_discount",
    "free_product",
    "points_payment",
    "bonus_points",
    "gift_value",
    "fixed_price",
    "buy_x_get_y",
    "spend_x_save_y",
    "points_multiplier",
];

const VOUCHER_PATHS: &[&str] = &[
    "points_price",
    "voucher_validity_days",
    "max_vouchers_per_customer",
    "max_vouchers_total",
    "voucher_code_prefix",
    "business_unit_ids",
    "channels",
];

// ---- proto → domain ----

pub(super) fn amount(v: &mut Violations, field: &str, m: Option<&Money>) -> Amount {
    match m {
        Some(m) => Amount {
            currency: m.currency_code.trim().to_ascii_uppercase(),
            minor: m.amount_minor,
        },
        None => {
            v.add(field, "is required");
            Amount {
                currency: "XXX".into(),
                minor: 1,
            }
        }
    }
}

pub(super) fn money(a: &Amount) -> Money {
    Money {
        currency_code: a.currency.clone(),
        amount_minor: a.minor,
    }
}

fn codes(list: &[String]) -> Vec<String> {
    list.iter().map(|c| c.trim().to_owned()).collect()
}

fn scope(s: Option<&ProductScope>) -> Scope {
    s.map(|s| Scope {
        product_codes: codes(&s.product_codes),
        group_codes: codes(&s.product_group_codes),
        brand_codes: codes(&s.brand_codes),
        excluded_product_codes: codes(&s.excluded_product_codes),
    })
    .unwrap_or_default()
}

fn scope_to_proto(s: &Scope) -> Option<ProductScope> {
    (!s.is_empty()).then(|| ProductScope {
        product_codes: s.product_codes.clone(),
        product_group_codes: s.group_codes.clone(),
        brand_codes: s.brand_codes.clone(),
        excluded_product_codes: s.excluded_product_codes.clone(),
    })
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// A `max_quantity` (units per purchase, 0 = every unit).
fn max_units(v: &mut Violations, member: &str, n: i64) -> u32 {
    match u32::try_from(n) {
        Ok(n) if n <= 1_000_000 => n,
        _ => {
            v.add(
                format!("reward.{member}.max_quantity"),
                "must be 0 (every unit)..1000000",
            );
            0
        }
    }
}

fn benefit_from_proto(v: &mut Violations, b: Option<PbBenefit>) -> Benefit {
    match b {
        None => {
            v.add("reward.benefit", "is required");
            Benefit::CartPercentageDiscount { basis_points: 1 }
        }
        Some(PbBenefit::CartPercentageDiscount(d)) => Benefit::CartPercentageDiscount {
            basis_points: count(d.basis_points),
        },
        Some(PbBenefit::CartFixedDiscount(d)) => Benefit::CartFixedDiscount {
            amount: amount(v, "reward.cart_fixed_discount.amount", d.amount.as_ref()),
        },
        Some(PbBenefit::ProductPercentageDiscount(d)) => Benefit::ProductPercentageDiscount {
            products: scope(d.products.as_ref()),
            basis_points: count(d.basis_points),
            max_quantity: max_units(v, "product_percentage_discount", d.max_quantity),
        },
        Some(PbBenefit::ProductFixedDiscount(d)) => Benefit::ProductFixedDiscount {
            products: scope(d.products.as_ref()),
            amount_per_unit: amount(
                v,
                "reward.product_fixed_discount.amount_per_unit",
                d.amount_per_unit.as_ref(),
            ),
            max_quantity: max_units(v, "product_fixed_discount", d.max_quantity),
        },
        Some(PbBenefit::PointsPayment(d)) => Benefit::PointsPayment {
            points_per_step: d.points_per_step,
            value_per_step: amount(
                v,
                "reward.points_payment.value_per_step",
                d.value_per_step.as_ref(),
            ),
            max_points: d.max_points,
            max_cart_basis_points: u32::try_from(d.max_cart_basis_points).unwrap_or(u32::MAX),
        },
        Some(PbBenefit::FreeProduct(d)) => Benefit::FreeProduct {
            product_code: d.product_code.trim().to_owned(),
            quantity: u32::try_from(d.quantity).unwrap_or(0),
        },
        Some(PbBenefit::BonusPoints(d)) => Benefit::BonusPoints {
            points: d.points,
            points_type_id: d.points_type_id.trim().to_owned(),
        },
        Some(PbBenefit::GiftValue(d)) => Benefit::GiftValue {
            allowed_values: d
                .allowed_values
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    amount(
                        v,
                        &format!("reward.gift_value.allowed_values[{i}]"),
                        Some(m),
                    )
                })
                .collect(),
        },
        Some(PbBenefit::FixedPrice(d)) => Benefit::FixedPrice {
            products: scope(d.products.as_ref()),
            unit_price: amount(v, "reward.fixed_price.unit_price", d.unit_price.as_ref()),
        },
        Some(PbBenefit::BuyXGetY(d)) => Benefit::BuyXGetY {
            products: scope(d.products.as_ref()),
            buy: count(d.buy_quantity),
            get: count(d.get_quantity),
            discount_basis_points: if d.discount_basis_points == 0 {
                10_000
            } else {
                count(d.discount_basis_points)
            },
        },
        Some(PbBenefit::SpendXSaveY(d)) => Benefit::SpendXSaveY {
            products: scope(d.products.as_ref()),
            spend: amount(v, "reward.spend_x_save_y.spend", d.spend.as_ref()),
            save: amount(v, "reward.spend_x_save_y.save", d.save.as_ref()),
            repeat: d.repeat,
        },
        Some(PbBenefit::PointsMultiplier(d)) => Benefit::PointsMultiplier {
            products: scope(d.products.as_ref()),
            multiplier_basis_points: count(d.multiplier_basis_points),
        },
    }
}

fn benefit_to_proto(b: &Benefit) -> PbBenefit {
    match b {
        Benefit::CartPercentageDiscount { basis_points } => {
            PbBenefit::CartPercentageDiscount(pb::CartPercentageDiscount {
                basis_points: *basis_points as i32,
            })
        }
        Benefit::CartFixedDiscount { amount } => {
            PbBenefit::CartFixedDiscount(pb::CartFixedDiscount {
                amount: Some(money(amount)),
            })
        }
        Benefit::ProductPercentageDiscount {
            products,
            basis_points,
            max_quantity,
        } => PbBenefit::ProductPercentageDiscount(pb::ProductPercentageDiscount {
            products: scope_to_proto(products),
            basis_points: *basis_points as i32,
            max_quantity: i64::from(*max_quantity),
        }),
        Benefit::ProductFixedDiscount {
            products,
            amount_per_unit,
            max_quantity,
        } => PbBenefit::ProductFixedDiscount(pb::ProductFixedDiscount {
            products: scope_to_proto(products),
            amount_per_unit: Some(money(amount_per_unit)),
            max_quantity: i64::from(*max_quantity),
        }),
        Benefit::FixedPrice {
            products,
            unit_price,
        } => PbBenefit::FixedPrice(pb::FixedPrice {
            products: scope_to_proto(products),
            unit_price: Some(money(unit_price)),
        }),
        Benefit::FreeProduct {
            product_code,
            quantity,
        } => PbBenefit::FreeProduct(pb::FreeProduct {
            product_code: product_code.clone(),
            quantity: i64::from(*quantity),
        }),
        Benefit::BuyXGetY {
            products,
            buy,
            get,
            discount_basis_points,
        } => PbBenefit::BuyXGetY(pb::BuyXGetY {
            products: scope_to_proto(products),
            buy_quantity: *buy as i32,
            get_quantity: *get as i32,
            discount_basis_points: *discount_basis_points as i32,
        }),
        Benefit::SpendXSaveY {
            products,
            spend,
            save,
            repeat,
        } => PbBenefit::SpendXSaveY(pb::SpendXSaveY {
            products: scope_to_proto(products),
            spend: Some(money(spend)),
            save: Some(money(save)),
            repeat: *repeat,
        }),
        Benefit::BonusPoints {
            points,
            points_type_id,
        } => PbBenefit::BonusPoints(pb::BonusPoints {
            points: *points,
            points_type_id: points_type_id.clone(),
        }),
        Benefit::PointsMultiplier {
            products,
            multiplier_basis_points,
        } => PbBenefit::PointsMultiplier(pb::PointsMultiplier {
            products: scope_to_proto(products),
            multiplier_basis_points: *multiplier_basis_points as i32,
        }),
        Benefit::GiftValue { allowed_values } => PbBenefit::GiftValue(pb::GiftValue {
            allowed_values: allowed_values.iter().map(money).collect(),
        }),
        Benefit::PointsPayment {
            points_per_step,
            value_per_step,
            max_points,
            max_cart_basis_points,
        } => PbBenefit::PointsPayment(pb::PointsPayment {
            points_per_step: *points_per_step,
            value_per_step: Some(money(value_per_step)),
            max_points: *max_points,
            max_cart_basis_points: *max_cart_basis_points as i32,
        }),
    }
}

fn condition_from_proto(v: &mut Violations, c: pb::CartCondition) -> CartCondition {
    CartCondition {
        minimum_spend: c
            .minimum_spend
            .as_ref()
            .map(|m| amount(v, "reward.cart_condition.minimum_spend", Some(m))),
        minimum_quantity: c.minimum_quantity,
        required_products: c
            .required_products
            .iter()
            .map(|r| RequiredProducts {
                products: scope(r.products.as_ref()),
                minimum_quantity: r.minimum_quantity,
            })
            .collect(),
        spend_products: scope(c.spend_products.as_ref()),
    }
}

fn condition_to_proto(c: &CartCondition) -> pb::CartCondition {
    pb::CartCondition {
        minimum_spend: c.minimum_spend.as_ref().map(money),
        minimum_quantity: c.minimum_quantity,
        required_products: c
            .required_products
            .iter()
            .map(|r| pb::RequiredProducts {
                products: scope_to_proto(&r.products),
                minimum_quantity: r.minimum_quantity,
            })
            .collect(),
        spend_products: scope_to_proto(&c.spend_products),
    }
}

fn state_from_proto(v: &mut Violations, s: i32) -> Option<RewardState> {
    match pb::RewardState::try_from(s) {
        Ok(pb::RewardState::Unspecified) => None,
        Ok(pb::RewardState::Draft) => Some(RewardState::Draft),
        Ok(pb::RewardState::Active) => Some(RewardState::Active),
        Ok(pb::RewardState::Archived) => Some(RewardState::Archived),
        Err(_) => {
            v.add("reward.state", "must be a reward state");
            None
        }
    }
}

fn state_to_proto(s: RewardState) -> pb::RewardState {
    match s {
        RewardState::Draft => pb::RewardState::Draft,
        RewardState::Active => pb::RewardState::Active,
        RewardState::Archived => pb::RewardState::Archived,
    }
}

fn caps_from_proto(v: &mut Violations, c: Option<pb::RewardCaps>) -> Caps {
    let Some(c) = c else {
        return Caps::default();
    };
    let period = match pb::UsagePeriod::try_from(c.period) {
        Ok(pb::UsagePeriod::Unspecified) => None,
        Ok(pb::UsagePeriod::Day) => Some(UsagePeriod::Day),
        Ok(pb::UsagePeriod::Week) => Some(UsagePeriod::Week),
        Ok(pb::UsagePeriod::Month) => Some(UsagePeriod::Month),
        Ok(pb::UsagePeriod::Year) => Some(UsagePeriod::Year),
        Err(_) => {
            v.add("reward.caps.period", "must be a usage period");
            None
        }
    };
    Caps {
        max_discount_per_transaction: c
            .max_discount_per_transaction
            .as_ref()
            .map(|m| amount(v, "reward.caps.max_discount_per_transaction", Some(m))),
        max_points_per_transaction: c.max_points_per_transaction,
        max_applications_per_transaction: c.max_applications_per_transaction,
        max_uses_per_customer: c.max_uses_per_customer,
        max_uses_per_period: c.max_uses_per_period,
        period,
    }
}

fn caps_to_proto(c: &Caps) -> Option<pb::RewardCaps> {
    (*c != Caps::default()).then(|| pb::RewardCaps {
        max_discount_per_transaction: c.max_discount_per_transaction.as_ref().map(money),
        max_points_per_transaction: c.max_points_per_transaction,
        max_applications_per_transaction: c.max_applications_per_transaction,
        max_uses_per_customer: c.max_uses_per_customer,
        max_uses_per_period: c.max_uses_per_period,
        period: (match c.period {
            None => pb::UsagePeriod::Unspecified,
            Some(UsagePeriod::Day) => pb::UsagePeriod::Day,
            Some(UsagePeriod::Week) => pb::UsagePeriod::Week,
            Some(UsagePeriod::Month) => pb::UsagePeriod::Month,
            Some(UsagePeriod::Year) => pb::UsagePeriod::Year,
        }) as i32,
    })
}

/// A budget as sent; `remaining` is the server's and starts at the total.
fn budget_from_proto(v: &mut Violations, b: Option<pb::RewardBudget>) -> Option<Budget> {
    let b = b?;
    let kind = match pb::BudgetKind::try_from(b.kind) {
        Ok(pb::BudgetKind::Points) => BudgetKind::Points,
        Ok(pb::BudgetKind::Money) => BudgetKind::Money,
        _ => {
            v.add("reward.budget.kind", "is required: POINTS or MONEY");
            BudgetKind::Money
        }
    };
    Some(Budget {
        kind,
        total: b.total,
        currency: b.currency_code.trim().to_ascii_uppercase(),
        remaining: b.total,
    })
}

fn budget_to_proto(b: &Budget) -> pb::RewardBudget {
    pb::RewardBudget {
        kind: (match b.kind {
            BudgetKind::Points => pb::BudgetKind::Points,
            BudgetKind::Money => pb::BudgetKind::Money,
        }) as i32,
        total: b.total,
        currency_code: b.currency.clone(),
        remaining: b.remaining,
    }
}

fn uuids(v: &mut Violations, field: &str, ids: &[String]) -> Vec<Uuid> {
    let mut out = Vec::new();
    for (i, s) in ids.iter().enumerate() {
        match Uuid::parse_str(s) {
            Ok(id) if !out.contains(&id) => out.push(id),
            Ok(_) => {}
            Err(_) => v.add(format!("{field}[{i}]"), "must be a UUID"),
        }
    }
    out
}

/// A reward as sent in CreateReward (or the new values of an UpdateReward). Server-assigned
/// fields are ignored; the state defaults to ACTIVE.
pub(super) fn reward_from_proto(v: &mut Violations, r: pb::Reward) -> Reward {
    let cart_condition = r.cart_condition.map(|c| condition_from_proto(v, c));
    let now = now();
    let state = state_from_proto(v, r.state).unwrap_or(RewardState::Active);
    Reward {
        id: Uuid::now_v7(),
        display_name: r.display_name.trim().to_owned(),
        description: r.description,
        reward_type: reward_type(v, r.r#type),
        benefit: benefit_from_proto(v, r.benefit),
        segment_ids: parse_segment_ids(v, "reward.segment_ids", &r.segment_ids),
        validity: Validity {
            from: parse_time(v, "reward.valid_from_time", r.valid_from_time.as_ref()),
            until: parse_time(v, "reward.valid_until_time", r.valid_until_time.as_ref()),
        },
        created_at: now,
        state,
        image_url: r.image_url.trim().to_owned(),
        tier_ids: uuids(v, "reward.tier_ids", &r.tier_ids),
        priority: r.priority,
        combinable: r.combinable,
        stacking_group: r.stacking_group.trim().to_owned(),
        caps: caps_from_proto(v, r.caps),
        budget: budget_from_proto(v, r.budget),
        cart_condition: cart_condition.filter(|c| !c.is_empty()),
        revision: 1,
        updated_at: now,
        archived_at: None,
    }
}

/// A reward as answered: with its voucher settings and stock when known.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Shown {
    pub reward: Reward,
    pub rules: Option<VoucherRules>,
    /// (max_total, issued)
    pub stock: Option<(i64, i64)>,
}

pub(super) fn reward_to_proto(r: &Reward) -> pb::Reward {
    pb::Reward {
        id: r.id.to_string(),
        display_name: r.display_name.clone(),
        description: r.description.clone(),
        r#type: reward_type_to_proto(r.reward_type) as i32,
        benefit: Some(benefit_to_proto(&r.benefit)),
        segment_ids: r.segment_ids.iter().map(Uuid::to_string).collect(),
        valid_from_time: r.validity.from.map(to_timestamp),
        valid_until_time: r.validity.until.map(to_timestamp),
        create_time: Some(to_timestamp(r.created_at)),
        state: state_to_proto(r.state) as i32,
        image_url: r.image_url.clone(),
        combinable: r.combinable,
        priority: r.priority,
        tier_ids: r.tier_ids.iter().map(Uuid::to_string).collect(),
        etag: etag(r.revision),
        update_time: Some(to_timestamp(r.updated_at)),
        archive_time: r.archived_at.map(to_timestamp),
        caps: caps_to_proto(&r.caps),
        budget: r.budget.as_ref().map(budget_to_proto),
        cart_condition: r.cart_condition.as_ref().map(condition_to_proto),
        stacking_group: r.stacking_group.clone(),
        vouchers_remaining: -1,
        ..Default::default()
    }
}

fn shown_to_proto(s: &Shown) -> pb::Reward {
    let mut p = reward_to_proto(&s.reward);
    if let Some(rules) = &s.rules {
        vouchers::rules_into_proto(rules, &mut p);
    }
    let (max_total, issued) = s.stock.unwrap_or((0, 0));
    p.vouchers_issued = issued;
    p.vouchers_remaining = if max_total > 0 {
        (max_total - issued).max(0)
    } else {
        -1
    };
    p
}

async fn shown_all(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    rewards: Vec<Reward>,
) -> Result<Vec<Shown>, ApiError> {
    let ids: Vec<Uuid> = rewards.iter().map(|r| r.id).collect();
    let mut rules: HashMap<Uuid, VoucherRules> = vstore::rules_of(conn, partner_id, &ids)
        .await?
        .into_iter()
        .collect();
    let stock = store::voucher_stock(conn, partner_id, &ids).await?;
    Ok(rewards
        .into_iter()
        .map(|r| Shown {
            rules: Some(rules.remove(&r.id).unwrap_or_default()),
            stock: stock.get(&r.id).copied(),
            reward: r,
        })
        .collect())
}

async fn shown_one(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward: Reward,
) -> Result<Shown, ApiError> {
    shown_all(conn, partner_id, vec![reward])
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("reward vanished")))
}

/// Rewards answered by ListActiveRewards (the same shape as every other reward answer).
pub(super) async fn shown_protos(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    rewards: Vec<Reward>,
) -> Result<Vec<pb::Reward>, ApiError> {
    Ok(shown_all(conn, partner_id, rewards)
        .await?
        .iter()
        .map(shown_to_proto)
        .collect())
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("reward {id}"))
}

fn required_uuid(v: &mut Violations, field: &str, s: &str) -> Uuid {
    if s.is_empty() {
        v.add(field, "is required");
        return Uuid::nil();
    }
    Uuid::parse_str(s).unwrap_or_else(|_| {
        v.add(field, "must be a UUID");
        Uuid::nil()
    })
}

// ---- RPCs ----

pub(super) async fn create(
    api: &RewardsApi,
    request: Request<pb::CreateRewardRequest>,
) -> Result<Response<pb::CreateRewardResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateReward", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(proto) = req.reward else {
        return Err(ApiError::invalid("reward", "is required").into());
    };
    let rules = vouchers::rules_from_proto(&mut v, &proto);
    let reward = reward_from_proto(&mut v, proto);
    if reward.state == RewardState::Archived {
        v.add("reward.state", "must be DRAFT or ACTIVE (unset = ACTIVE)");
    }
    reward.validate(&mut v);
    v.into_result()?;
    let shown: Shown = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::insert_reward(txn, partner_id, &reward).await?;
            vstore::insert_rules(txn, partner_id, reward.id, &rules).await?;
            super::rules_changed(txn, partner_id, Some(reward.id)).await?;
            Ok(Shown {
                stock: Some((rules.max_total, 0)),
                rules: Some(rules),
                reward,
            })
        })
    })
    .await?;
    Ok(Response::new(pb::CreateRewardResponse {
        reward: Some(shown_to_proto(&shown)),
    }))
}

pub(super) async fn get(
    api: &RewardsApi,
    request: Request<pb::GetRewardRequest>,
) -> Result<Response<pb::GetRewardResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let id = required_uuid(&mut v, "reward_id", &req.reward_id);
    v.into_result()?;
    let reward = store::find_reward(&api.db, partner_id, id, false)
        .await?
        .ok_or_else(|| not_found(id))?;
    let shown = shown_one(&api.db, partner_id, reward).await?;
    Ok(Response::new(pb::GetRewardResponse {
        reward: Some(shown_to_proto(&shown)),
    }))
}

pub(super) async fn list(
    api: &RewardsApi,
    request: Request<pb::ListRewardsRequest>,
) -> Result<Response<pb::ListRewardsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let limit = page_size(&mut v, req.page_size);
    let before = parse_page_token(&mut v, &req.page_token);
    let reward_type = match pb::RewardType::try_from(req.r#type) {
        Ok(pb::RewardType::Unspecified) => None,
        Ok(_) => Some(reward_type(&mut v, req.r#type)),
        Err(_) => {
            v.add("type", "must be a reward type");
            None
        }
    };
    let states = match pb::RewardState::try_from(req.state) {
        Ok(pb::RewardState::Unspecified) => vec![RewardState::Draft, RewardState::Active],
        Ok(pb::RewardState::Draft) => vec![RewardState::Draft],
        Ok(pb::RewardState::Active) => vec![RewardState::Active],
        Ok(pb::RewardState::Archived) => vec![RewardState::Archived],
        Err(_) => {
            v.add("state", "must be a reward state");
            vec![]
        }
    };
    v.into_result()?;
    let filter = RewardFilter {
        reward_type,
        states,
    };
    let rewards = store::list_rewards(&api.db, partner_id, &filter, before, limit).await?;
    let next = next_page_token(rewards.len(), limit, rewards.last().map(|r| r.id));
    Ok(Response::new(pb::ListRewardsResponse {
        rewards: shown_protos(&api.db, partner_id, rewards).await?,
        next_page_token: next,
    }))
}

/// Applies the masked fields of `new` (and its voucher settings) to `current`.
fn apply_mask(
    v: &mut Violations,
    paths: &[String],
    current: &mut Reward,
    rules: &mut VoucherRules,
    new: Reward,
    new_rules: VoucherRules,
) {
    for path in paths {
        match path.as_str() {
            "display_name" => current.display_name = new.display_name.clone(),
            "description" => current.description = new.description.clone(),
            "image_url" => current.image_url = new.image_url.clone(),
            "segment_ids" => current.segment_ids = new.segment_ids.clone(),
            "valid_from_time" => current.validity.from = new.validity.from,
            "valid_until_time" => current.validity.until = new.validity.until,
            "priority" => current.priority = new.priority,
            "combinable" => current.combinable = new.combinable,
            "stacking_group" => current.stacking_group = new.stacking_group.clone(),
            "tier_ids" => current.tier_ids = new.tier_ids.clone(),
            "caps" => current.caps = new.caps.clone(),
            "cart_condition" => current.cart_condition = new.cart_condition.clone(),
            "state" => {
                if let Err(why) = check_state_change(current.state, new.state) {
                    v.add("reward.state", why);
                }
                current.state = new.state;
            }
            "budget" => current.budget = rebudget(v, current.budget.as_ref(), new.budget.clone()),
            "points_price" => rules.points_price = new_rules.points_price,
            "voucher_validity_days" => rules.validity_days = new_rules.validity_days,
            "max_vouchers_per_customer" => rules.max_per_customer = new_rules.max_per_customer,
            "max_vouchers_total" => rules.max_total = new_rules.max_total,
            "voucher_code_prefix" => rules.code_prefix = new_rules.code_prefix.clone(),
            "business_unit_ids" => rules.business_unit_ids = new_rules.business_unit_ids.clone(),
            "channels" => rules.channels = new_rules.channels.clone(),
            benefit => {
                if new.benefit.field() == benefit {
                    current.benefit = new.benefit.clone();
                } else {
                    v.add(
                        format!("reward.{benefit}"),
                        "is in update_mask but not set in reward",
                    );
                }
            }
        }
    }
}

/// A new budget keeps what was already consumed: remaining = new total − consumed.
fn rebudget(v: &mut Violations, old: Option<&Budget>, new: Option<Budget>) -> Option<Budget> {
    let consumed = old.map(|b| b.total - b.remaining).unwrap_or(0);
    let mut new = new?;
    if let Some(old) = old
        && consumed > 0
        && (old.kind != new.kind || old.currency != new.currency)
    {
        v.add(
            "reward.budget.kind",
            "cannot change kind or currency once some of the budget is consumed",
        );
    }
    if new.total < consumed {
        v.add(
            "reward.budget.total",
            format!("must be at least what is already consumed ({consumed})"),
        );
    }
    new.remaining = (new.total - consumed).max(0);
    Some(new)
}

pub(super) async fn update(
    api: &RewardsApi,
    request: Request<pb::UpdateRewardRequest>,
) -> Result<Response<pb::UpdateRewardResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateReward", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let proto = req.reward.unwrap_or_default();
    let id = required_uuid(&mut v, "reward.id", &proto.id);
    let type_path = req
        .update_mask
        .as_ref()
        .is_some_and(|m| m.paths.iter().any(|p| p == "type"));
    if type_path {
        v.add("reward.type", "is immutable: create a new reward");
    }
    let mask = req.update_mask.map(|mut m| {
        m.paths.retain(|p| p != "type");
        m
    });
    let paths = if type_path && mask.as_ref().is_some_and(|m| m.paths.is_empty()) {
        Vec::new()
    } else {
        mask_paths(&mut v, mask, UPDATABLE)
    };
    if paths
        .iter()
        .filter(|p| BENEFIT_PATHS.contains(&p.as_str()))
        .count()
        > 1
    {
        v.add("update_mask", "name at most one benefit member");
    }
    // Parsed without the type's and benefit's own checks: only masked fields are taken.
    let mut parse = Violations::new();
    let new_rules = vouchers::rules_from_proto(&mut parse, &proto);
    if proto.state == pb::RewardState::Unspecified as i32 && paths.iter().any(|p| p == "state") {
        v.add("reward.state", "is required when masked");
    }
    let new = reward_from_proto(&mut parse, proto);
    for f in parse.into_vec() {
        let root = f
            .field
            .trim_start_matches("reward.")
            .split(['.', '['])
            .next()
            .unwrap_or_default()
            .to_owned();
        if paths.contains(&root) {
            v.add(f.field, f.description);
        }
    }
    v.into_result()?;
    let sent_etag = req.etag;
    let shown: Shown = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let mut reward = store::find_reward(txn, partner_id, id, true)
                .await?
                .ok_or_else(|| not_found(id))?;
            check_etag(&sent_etag, &etag(reward.revision), "reward")?;
            if reward.state == RewardState::Archived {
                return Err(ApiError::precondition(
                    reason::REWARD_ARCHIVED,
                    "the reward is archived: create a new one",
                ));
            }
            let mut rules = vstore::rules_of(txn, partner_id, &[id])
                .await?
                .pop()
                .map(|(_, r)| r)
                .unwrap_or_default();
            let mut v = Violations::new();
            apply_mask(&mut v, &paths, &mut reward, &mut rules, new, new_rules);
            reward.validate(&mut v);
            rules.validate(&mut v);
            v.into_result()?;
            reward.revision += 1;
            reward.updated_at = now();
            store::update_reward(txn, partner_id, &reward).await?;
            if paths.iter().any(|p| VOUCHER_PATHS.contains(&p.as_str())) {
                store::update_voucher_rules(txn, partner_id, id, &rules).await?;
            }
            super::rules_changed(txn, partner_id, Some(id)).await?;
            shown_one(txn, partner_id, reward).await
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateRewardResponse {
        reward: Some(shown_to_proto(&shown)),
    }))
}

pub(super) async fn archive(
    api: &RewardsApi,
    request: Request<pb::ArchiveRewardRequest>,
) -> Result<Response<pb::ArchiveRewardResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "ArchiveReward", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = required_uuid(&mut v, "reward_id", &req.reward_id);
    v.into_result()?;
    let cancel_vouchers = req.cancel_vouchers;
    let shown: Shown = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            if store::find_reward(txn, partner_id, id, false)
                .await?
                .is_none()
            {
                return Err(not_found(id));
            }
            let now = now();
            // Vouchers before the reward's row: redemptions lock in the same order (voucher,
            // then the reward's budget), so the two cannot deadlock.
            let cancelled = if cancel_vouchers {
                store::cancel_unredeemed_vouchers(
                    txn,
                    partner_id,
                    id,
                    now,
                    "the reward was archived",
                )
                .await?
            } else {
                0
            };
            let mut changes = cancelled > 0;
            let mut reward = store::find_reward(txn, partner_id, id, true)
                .await?
                .ok_or_else(|| not_found(id))?;
            if reward.state != RewardState::Archived {
                reward.state = RewardState::Archived;
                reward.archived_at = Some(now);
                reward.revision += 1;
                reward.updated_at = now;
                store::update_reward(txn, partner_id, &reward).await?;
                changes = true;
            }
            if changes {
                super::rules_changed(txn, partner_id, Some(id)).await?;
            }
            shown_one(txn, partner_id, reward).await
        })
    })
    .await?;
    Ok(Response::new(pb::ArchiveRewardResponse {
        reward: Some(shown_to_proto(&shown)),
    }))
}

/// Consumes the budget of a voucher's reward for one redemption, in the caller's
/// transaction: FAILED_PRECONDITION REWARD_BUDGET_EXHAUSTED when the rest does not cover it,
/// INVALID_ARGUMENT when the value is unknown. Returns what was consumed.
pub(super) async fn consume_budget(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    voucher_id: Uuid,
    granted_value: i64,
) -> Result<i64, ApiError> {
    let Some(reward) = store::find_reward(conn, partner_id, reward_id, false).await? else {
        return Ok(0);
    };
    let amount = match reward.budget_consumption(granted_value) {
        Ok(Some(a)) => a,
        Ok(None) => return Ok(0),
        Err(why) => return Err(ApiError::invalid("granted_value", why)),
    };
    if !store::consume_budget(conn, partner_id, reward_id, voucher_id, amount).await? {
        return Err(ApiError::precondition(
            reason::REWARD_BUDGET_EXHAUSTED,
            format!("the reward's budget does not cover {amount} more"),
        ));
    }
    Ok(amount)
}

/// Gives back the budget a redemption of the voucher consumed (in the caller's transaction).
pub(super) async fn refund_budget(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    voucher_id: Uuid,
) -> Result<(), ApiError> {
    store::refund_budget(conn, partner_id, voucher_id).await?;
    Ok(())
}

/// Whether vouchers of a reward may be issued now: ACTIVE (drafts and archived rewards issue
/// nothing).
pub(super) async fn issuable(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
) -> Result<bool, ApiError> {
    Ok(store::find_reward(conn, partner_id, reward_id, false)
        .await?
        .is_some_and(|r| r.issuable_at(Utc::now())))
}

// ---- the catalogue of a customer ----

/// The services ListAvailableRewards asks about a customer.
#[derive(Clone)]
pub struct CustomerPeers {
    segmentation: SegmentationServiceClient<Channel>,
    wallet: WalletServiceClient<Channel>,
}

impl CustomerPeers {
    pub fn new(segmentation: Channel, wallet: Channel) -> Self {
        CustomerPeers {
            segmentation: SegmentationServiceClient::new(segmentation),
            wallet: WalletServiceClient::new(wallet),
        }
    }

    pub(super) async fn segments(
        &self,
        who: &Principal,
        customer_id: Uuid,
    ) -> Result<Vec<Uuid>, ApiError> {
        let resp = self
            .segmentation
            .clone()
            .get_customer_memberships(outgoing(
                segmentation::GetCustomerMembershipsRequest {
                    customer_id: customer_id.to_string(),
                    cart: None,
                },
                who,
            ))
            .await
            .map_err(|s| ApiError::from_upstream("segmentation", s))?
            .into_inner();
        Ok(resp
            .memberships
            .iter()
            .filter_map(|m| m.segment_id.parse().ok())
            .collect())
    }

    async fn points(&self, who: &Principal, customer_id: Uuid) -> Result<i64, ApiError> {
        let resp = self
            .wallet
            .clone()
            .get_balance(outgoing(
                wallet::GetBalanceRequest {
                    customer_id: customer_id.to_string(),
                    ..Default::default()
                },
                who,
            ))
            .await
            .map_err(|s| ApiError::from_upstream("wallet", s))?
            .into_inner();
        Ok(resp.balance.map(|b| b.available_points).unwrap_or(0))
    }
}

/// Catalogue rewards considered per call; a partner's catalogue is far smaller.
const CATALOGUE_SCAN: u64 = 10_000;

/// Whether a catalogue reward is offered to a customer in `segments` on `channel`, and how
/// many more vouchers of it the customer may take (-1 = unlimited). Tiers are not checked here:
/// redemption at checkout applies them.
pub(super) fn offered(
    s: &Shown,
    segments: &[Uuid],
    channel: Option<i32>,
    held: i64,
) -> Option<i32> {
    let r = &s.reward;
    if !r.segment_ids.is_empty() && !r.segment_ids.iter().any(|id| segments.contains(id)) {
        return None;
    }
    let rules = s.rules.clone().unwrap_or_default();
    if let Some(c) = channel
        && !rules.channels.is_empty()
        && !rules.channels.contains(&c)
    {
        return None;
    }
    if let Some((max_total, issued)) = s.stock
        && max_total > 0
        && issued >= max_total
    {
        return None;
    }
    if rules.max_per_customer > 0 {
        let left = i64::from(rules.max_per_customer) - held;
        return (left > 0).then(|| i32::try_from(left).unwrap_or(i32::MAX));
    }
    Some(-1)
}

pub(super) async fn available(
    api: &RewardsApi,
    request: Request<pb::ListAvailableRewardsRequest>,
) -> Result<Response<pb::ListAvailableRewardsResponse>, Status> {
    let who = principal(&request)?;
    let partner_id = who.partner_with_role(READERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let customer_id = required_uuid(&mut v, "customer_id", &req.customer_id);
    let channel = match loyalty_proto::types::v1::SalesChannel::try_from(req.channel) {
        Ok(loyalty_proto::types::v1::SalesChannel::Unspecified) => None,
        Ok(_) => Some(req.channel),
        Err(_) => {
            v.add("channel", "must be a sales channel");
            None
        }
    };
    let limit = page_size(&mut v, req.page_size);
    let after = parse_page_token(&mut v, &req.page_token);
    v.into_result()?;
    let peers = api.customer_peers.as_ref().ok_or_else(|| {
        ApiError::Unavailable("segmentation and wallet are not configured".into())
    })?;
    let segments = peers.segments(&who, customer_id).await?;
    let points = peers.points(&who, customer_id).await?;
    let now = Utc::now();
    let catalogue =
        store::catalogue_rewards(&api.db, partner_id, now, None, CATALOGUE_SCAN).await?;
    let mut offers = Vec::new();
    for s in shown_all(&api.db, partner_id, catalogue).await? {
        let held = i64::try_from(
            vstore::customer_voucher_count(&api.db, partner_id, s.reward.id, customer_id).await?,
        )
        .unwrap_or(i64::MAX);
        if let Some(left) = offered(&s, &segments, channel, held) {
            offers.push((s, left));
        }
    }
    // By priority, then newest first; the page token is the last reward answered.
    offers.sort_by(|(a, _), (b, _)| {
        b.reward
            .priority
            .cmp(&a.reward.priority)
            .then(b.reward.id.cmp(&a.reward.id))
    });
    let start = after
        .and_then(|id| offers.iter().position(|(s, _)| s.reward.id == id))
        .map_or(0, |i| i + 1);
    let page: Vec<_> = offers
        .into_iter()
        .skip(start)
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect();
    Ok(Response::new(pb::ListAvailableRewardsResponse {
        next_page_token: next_page_token(page.len(), limit, page.last().map(|(s, _)| s.reward.id)),
        rewards: page
            .iter()
            .map(|(s, left)| {
                let reward = shown_to_proto(s);
                pb::AvailableReward {
                    affordable: points >= reward.points_price,
                    remaining_for_customer: *left,
                    reward: Some(reward),
                }
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(benefit: PbBenefit, t: pb::RewardType) -> pb::Reward {
        pb::Reward {
            display_name: "A reward".into(),
            r#type: t as i32,
            benefit: Some(benefit),
            ..Default::default()
        }
    }

    #[test]
    fn an_empty_condition_is_none_and_a_missing_step_value_is_named() {
        let mut v = Violations::new();
        let mut p = proto(
            PbBenefit::PointsPayment(Default::default()),
            pb::RewardType::CashDesk,
        );
        // An empty condition is no condition.
        p.cart_condition = Some(Default::default());
        let r = reward_from_proto(&mut v, p);
        assert_eq!(r.cart_condition, None);
        let text = v.into_result().unwrap_err().to_string();
        assert!(
            text.contains("reward.points_payment.value_per_step"),
            "{text}"
        );
        assert!(!text.contains("reward.cart_condition"), "{text}");
    }

    #[test]
    fn a_cart_condition_round_trips_through_the_contract() {
        let condition = pb::CartCondition {
            minimum_spend: Some(Money {
                currency_code: "EUR".into(),
                amount_minor: 2000,
            }),
            minimum_quantity: 3,
            required_products: vec![pb::RequiredProducts {
                products: Some(ProductScope {
                    product_codes: vec!["A".into()],
                    brand_codes: vec!["acme".into()],
                    excluded_product_codes: vec!["B".into()],
                    ..Default::default()
                }),
                minimum_quantity: 2,
            }],
            spend_products: Some(ProductScope {
                product_group_codes: vec!["coffee".into()],
                ..Default::default()
            }),
        };
        let mut p = proto(
            PbBenefit::CartPercentageDiscount(pb::CartPercentageDiscount { basis_points: 500 }),
            pb::RewardType::CashDesk,
        );
        p.cart_condition = Some(condition.clone());
        let mut v = Violations::new();
        let r = reward_from_proto(&mut v, p);
        r.validate(&mut v);
        assert!(v.is_empty(), "{:?}", v.into_vec());
        assert_eq!(reward_to_proto(&r).cart_condition, Some(condition));
    }

    #[test]
    fn every_benefit_round_trips_through_the_contract() {
        let eur = |m| Money {
            currency_code: "EUR".into(),
            amount_minor: m,
        };
        let skus = || {
            Some(ProductScope {
                product_codes: vec!["SKU-1".into()],
                ..Default::default()
            })
        };
        let cases = [
            (
                PbBenefit::CartPercentageDiscount(pb::CartPercentageDiscount {
                    basis_points: 1000,
                }),
                pb::RewardType::CashDesk,
            ),
            (
                PbBenefit::CartFixedDiscount(pb::CartFixedDiscount {
                    amount: Some(eur(500)),
                }),
                pb::RewardType::Coupon,
            ),
            (
                PbBenefit::ProductPercentageDiscount(pb::ProductPercentageDiscount {
                    products: skus(),
                    basis_points: 2500,
                    max_quantity: 0,
                }),
                pb::RewardType::Campaign,
            ),
            (
                PbBenefit::FixedPrice(pb::FixedPrice {
                    products: skus(),
                    unit_price: Some(eur(99)),
                }),
                pb::RewardType::CashDesk,
            ),
            (
                PbBenefit::ProductPercentageDiscount(pb::ProductPercentageDiscount {
                    products: skus(),
                    basis_points: 5000,
                    max_quantity: 2,
                }),
                pb::RewardType::CashDesk,
            ),
            (
                PbBenefit::ProductFixedDiscount(pb::ProductFixedDiscount {
                    products: skus(),
                    amount_per_unit: Some(eur(150)),
                    max_quantity: 0,
                }),
                pb::RewardType::CashDesk,
            ),
            (
                PbBenefit::FreeProduct(pb::FreeProduct {
                    product_code: "COFFEE".into(),
                    quantity: 1,
                }),
                pb::RewardType::Simple,
            ),
            (
                PbBenefit::BuyXGetY(pb::BuyXGetY {
                    products: skus(),
                    buy_quantity: 2,
                    get_quantity: 1,
                    discount_basis_points: 10_000,
                }),
                pb::RewardType::CashDesk,
            ),
            (
                PbBenefit::SpendXSaveY(pb::SpendXSaveY {
                    products: None,
                    spend: Some(eur(5000)),
                    save: Some(eur(500)),
                    repeat: true,
                }),
                pb::RewardType::CashDesk,
            ),
            (
                PbBenefit::BonusPoints(pb::BonusPoints {
                    points: 100,
                    points_type_id: String::new(),
                }),
                pb::RewardType::Coupon,
            ),
            (
                PbBenefit::PointsMultiplier(pb::PointsMultiplier {
                    products: None,
                    multiplier_basis_points: 20_000,
                }),
                pb::RewardType::CashDesk,
            ),
            (
                PbBenefit::GiftValue(pb::GiftValue {
                    allowed_values: vec![eur(2000), eur(5000)],
                }),
                pb::RewardType::Gift,
            ),
            (
                PbBenefit::PointsPayment(pb::PointsPayment {
                    points_per_step: 100,
                    value_per_step: Some(eur(100)),
                    max_points: 5000,
                    max_cart_basis_points: 5000,
                }),
                pb::RewardType::CashDesk,
            ),
        ];
        for (b, t) in cases {
            let mut v = Violations::new();
            let r = reward_from_proto(&mut v, proto(b.clone(), t));
            r.validate(&mut v);
            assert!(v.is_empty(), "{b:?}: {:?}", v.into_vec());
            assert_eq!(reward_to_proto(&r).benefit, Some(b));
        }
    }

    #[test]
    fn buy_x_get_y_without_a_discount_gives_the_units_free() {
        let mut v = Violations::new();
        let r = reward_from_proto(
            &mut v,
            proto(
                PbBenefit::BuyXGetY(pb::BuyXGetY {
                    products: Some(ProductScope {
                        product_codes: vec!["A".into()],
                        ..Default::default()
                    }),
                    buy_quantity: 2,
                    get_quantity: 1,
                    discount_basis_points: 0,
                }),
                pb::RewardType::CashDesk,
            ),
        );
        assert!(v.is_empty());
        assert!(matches!(
            r.benefit,
            Benefit::BuyXGetY {
                discount_basis_points: 10_000,
                ..
            }
        ));
    }

    #[test]
    fn the_catalogue_offers_by_segment_channel_stock_and_customer_limit() {
        let mut v = Violations::new();
        let mut reward = reward_from_proto(
            &mut v,
            proto(
                PbBenefit::FreeProduct(pb::FreeProduct {
                    product_code: "ESPRESSO".into(),
                    quantity: 1,
                }),
                pb::RewardType::Simple,
            ),
        );
        let gold = Uuid::now_v7();
        reward.segment_ids = vec![gold];
        let shown = |rules: VoucherRules, stock| Shown {
            reward: reward.clone(),
            rules: Some(rules),
            stock,
        };
        let eshop = loyalty_proto::types::v1::SalesChannel::Eshop as i32;
        let pos = loyalty_proto::types::v1::SalesChannel::Pos as i32;
        let open = VoucherRules::default();
        assert_eq!(
            offered(&shown(open.clone(), None), &[gold], None, 0),
            Some(-1)
        );
        assert_eq!(offered(&shown(open.clone(), None), &[], None, 0), None);
        let eshop_only = VoucherRules {
            channels: vec![eshop],
            ..VoucherRules::default()
        };
        assert_eq!(
            offered(&shown(eshop_only.clone(), None), &[gold], Some(eshop), 0),
            Some(-1)
        );
        assert_eq!(
            offered(&shown(eshop_only, None), &[gold], Some(pos), 0),
            None
        );
        assert_eq!(
            offered(&shown(open.clone(), Some((5, 5))), &[gold], None, 0),
            None
        );
        let two_each = VoucherRules {
            max_per_customer: 2,
            ..VoucherRules::default()
        };
        assert_eq!(
            offered(&shown(two_each.clone(), Some((5, 1))), &[gold], None, 1),
            Some(1)
        );
        assert_eq!(
            offered(&shown(two_each, Some((5, 2))), &[gold], None, 2),
            None
        );
    }

    #[test]
    fn voucher_settings_are_accepted_and_checked() {
        let mut v = Violations::new();
        reward_from_proto(
            &mut v,
            pb::Reward {
                display_name: "Ten percent".into(),
                r#type: pb::RewardType::CashDesk as i32,
                benefit: Some(PbBenefit::CartPercentageDiscount(
                    pb::CartPercentageDiscount { basis_points: 1000 },
                )),
                max_vouchers_total: 5,
                voucher_code_prefix: "GOLD".into(),
                ..Default::default()
            },
        );
        assert!(v.is_empty());
        let mut v = Violations::new();
        vouchers::rules_from_proto(
            &mut v,
            &pb::Reward {
                max_vouchers_total: -1,
                voucher_code_prefix: "GOLD-XL".into(),
                business_unit_ids: vec!["x".into()],
                ..Default::default()
            },
        );
        let text = v.into_result().unwrap_err().to_string();
        assert!(text.contains("reward.max_vouchers_total"), "{text}");
        assert!(text.contains("reward.voucher_code_prefix"), "{text}");
        assert!(text.contains("reward.business_unit_ids[0]"), "{text}");
    }

    #[test]
    fn a_budget_needs_its_kind_and_keeps_what_was_consumed() {
        let mut v = Violations::new();
        let b = budget_from_proto(
            &mut v,
            Some(pb::RewardBudget {
                total: 100,
                ..Default::default()
            }),
        );
        assert!(b.is_some());
        assert!(
            v.into_result()
                .unwrap_err()
                .to_string()
                .contains("reward.budget.kind")
        );
        let old = Budget {
            kind: BudgetKind::Money,
            total: 1000,
            currency: "EUR".into(),
            remaining: 400,
        };
        let mut v = Violations::new();
        let new = rebudget(
            &mut v,
            Some(&old),
            Some(Budget {
                total: 2000,
                remaining: 2000,
                ..old.clone()
            }),
        );
        assert!(v.is_empty());
        assert_eq!(new.map(|b| b.remaining), Some(1400));
        let mut v = Violations::new();
        rebudget(
            &mut v,
            Some(&old),
            Some(Budget {
                total: 500,
                remaining: 500,
                ..old.clone()
            }),
        );
        assert!(
            v.into_result()
                .unwrap_err()
                .to_string()
                .contains("reward.budget.total")
        );
    }
}
