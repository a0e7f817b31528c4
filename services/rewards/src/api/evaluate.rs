//! gRPC adapter of EvaluateCart and of the resolution settings (Get/Update).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_etag, check_idempotency_key, mask_paths},
    idempotency::{self, IdempotencyScope},
    time::to_timestamp,
};
use loyalty_proto::{rewards::v1 as pb, types::v1::SalesChannel};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{RewardsApi, parse_time};
use crate::{
    domain::{
        engine::{self, CartLine, CustomerContext, EarnRate, Evaluation, PresentedVoucher},
        resolution::{ResolutionMode, ResolutionSettings},
        vouchers::{Usage, normalise_code},
    },
    store::{
        self,
        evaluation_cache::ProductFacts,
        rules_cache::{DEFAULT_TTL, PartnerRules},
        vouchers::{self as vstore, VoucherKey},
    },
};

/// Who evaluates carts (checkout with the POS's key, back offices, support).
const EVALUATORS: &[Role] = &[Role::Pos, Role::Service, Role::Marketing, Role::Support];
/// Who reads the resolution settings: every role.
const SETTINGS_READERS: &[Role] = &[Role::Pos, Role::Service, Role::Marketing, Role::Support];
/// Who changes them.
const SETTINGS_WRITERS: &[Role] = &[Role::Marketing];
const SETTINGS_UPDATABLE: &[&str] = &[
    "offer_mode",
    "max_awards_per_event",
    "discount_mode",
    "combine_campaign_products",
    "max_vouchers_per_purchase",
    "max_rules_per_purchase",
    "rule_groups",
];

const MAX_LINES: usize = 500;
const MAX_SEGMENTS: usize = 1000;
const MAX_VOUCHERS: usize = 50;
/// A voucher presented beyond `max_vouchers_per_purchase`.
const LIMIT_PER_PURCHASE: &str = "VOUCHER_LIMIT_PER_PURCHASE";

// ---- resolution settings ----

fn mode_from_proto(
    v: &mut Violations,
    field: &str,
    m: i32,
    unset: ResolutionMode,
) -> ResolutionMode {
    match pb::ResolutionMode::try_from(m) {
        Ok(pb::ResolutionMode::Unspecified) => unset,
        Ok(pb::ResolutionMode::All) => ResolutionMode::All,
        Ok(pb::ResolutionMode::HighestAward) => ResolutionMode::HighestAward,
        Ok(pb::ResolutionMode::Priority) => ResolutionMode::Priority,
        Ok(pb::ResolutionMode::LowestAward) => ResolutionMode::LowestAward,
        Err(_) => {
            v.add(field, "must be a resolution mode");
            unset
        }
    }
}

fn mode_to_proto(m: ResolutionMode) -> pb::ResolutionMode {
    match m {
        ResolutionMode::All => pb::ResolutionMode::All,
        ResolutionMode::HighestAward => pb::ResolutionMode::HighestAward,
        ResolutionMode::Priority => pb::ResolutionMode::Priority,
        ResolutionMode::LowestAward => pb::ResolutionMode::LowestAward,
    }
}

fn count(v: &mut Violations, field: &str, n: i32) -> u32 {
    u32::try_from(n).unwrap_or_else(|_| {
        v.add(field, "must not be negative");
        0
    })
}

fn groups_from_proto(v: &mut Violations, groups: &[pb::RuleGroup]) -> Vec<engine::RuleGroup> {
    groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let f = format!("settings.rule_groups[{g}]");
            let mode = match pb::RuleGroupMode::try_from(group.mode) {
                Ok(pb::RuleGroupMode::Exclusive) => engine::GroupMode::Exclusive,
                Ok(pb::RuleGroupMode::Stackable) => engine::GroupMode::Stackable,
                _ => {
                    v.add(format!("{f}.mode"), "must be EXCLUSIVE or STACKABLE");
                    engine::GroupMode::Exclusive
                }
            };
            let rule_ids = group
                .rule_ids
                .iter()
                .enumerate()
                .filter_map(|(i, id)| match Uuid::parse_str(id) {
                    Ok(id) => Some(id),
                    Err(_) => {
                        v.add(
                            format!("{f}.rule_ids[{i}]"),
                            "must be a reward or purchase bonus UUID",
                        );
                        None
                    }
                })
                .collect();
            engine::RuleGroup {
                name: group.name.trim().to_owned(),
                mode,
                rule_ids,
            }
        })
        .collect()
}

fn settings_to_proto(s: &ResolutionSettings) -> pb::ResolutionSettings {
    pb::ResolutionSettings {
        offer_mode: mode_to_proto(s.offer_mode) as i32,
        max_awards_per_event: s.max_awards_per_event as i32,
        discount_mode: mode_to_proto(s.discount_mode) as i32,
        combine_campaign_products: s.combine_campaign_products,
        max_vouchers_per_purchase: s.max_vouchers_per_purchase as i32,
        etag: s.etag(),
        update_time: s.updated_at.map(to_timestamp),
        rule_groups: s
            .groups
            .iter()
            .map(|g| pb::RuleGroup {
                name: g.name.clone(),
                mode: match g.mode {
                    engine::GroupMode::Exclusive => pb::RuleGroupMode::Exclusive,
                    engine::GroupMode::Stackable => pb::RuleGroupMode::Stackable,
                } as i32,
                rule_ids: g.rule_ids.iter().map(Uuid::to_string).collect(),
            })
            .collect(),
        max_rules_per_purchase: s.max_rules_per_purchase as i32,
    }
}

pub(super) async fn get_settings(
    api: &RewardsApi,
    request: Request<pb::GetResolutionSettingsRequest>,
) -> Result<Response<pb::GetResolutionSettingsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(SETTINGS_READERS)?;
    let settings = store::resolution::settings(&api.db, partner_id).await?;
    Ok(Response::new(pb::GetResolutionSettingsResponse {
        settings: Some(settings_to_proto(&settings)),
    }))
}

pub(super) async fn update_settings(
    api: &RewardsApi,
    request: Request<pb::UpdateResolutionSettingsRequest>,
) -> Result<Response<pb::UpdateResolutionSettingsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(SETTINGS_WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "UpdateResolutionSettings",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let paths = mask_paths(&mut v, req.update_mask, SETTINGS_UPDATABLE);
    let sent = req.settings.unwrap_or_default();
    // The sent values, checked now; only the masked ones are applied.
    let mut new = ResolutionSettings {
        offer_mode: mode_from_proto(
            &mut v,
            "settings.offer_mode",
            sent.offer_mode,
            ResolutionMode::All,
        ),
        max_awards_per_event: count(
            &mut v,
            "settings.max_awards_per_event",
            sent.max_awards_per_event,
        ),
        discount_mode: mode_from_proto(
            &mut v,
            "settings.discount_mode",
            sent.discount_mode,
            ResolutionMode::HighestAward,
        ),
        combine_campaign_products: sent.combine_campaign_products,
        max_vouchers_per_purchase: count(
            &mut v,
            "settings.max_vouchers_per_purchase",
            sent.max_vouchers_per_purchase,
        ),
        max_rules_per_purchase: count(
            &mut v,
            "settings.max_rules_per_purchase",
            sent.max_rules_per_purchase,
        ),
        groups: groups_from_proto(&mut v, &sent.rule_groups),
        ..ResolutionSettings::default()
    };
    v.into_result()?;
    // Microseconds, as the database keeps it: the answer equals what Get reads later.
    let (sent_etag, at) = (req.etag, store::catalogue::now());
    let settings: ResolutionSettings = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::resolution::lock(txn, partner_id).await?;
            let mut s = store::resolution::settings(txn, partner_id).await?;
            check_etag(&sent_etag, &s.etag(), "resolution settings")?;
            for path in &paths {
                match path.as_str() {
                    "offer_mode" => s.offer_mode = new.offer_mode,
                    "max_awards_per_event" => s.max_awards_per_event = new.max_awards_per_event,
                    "discount_mode" => s.discount_mode = new.discount_mode,
                    "combine_campaign_products" => {
                        s.combine_campaign_products = new.combine_campaign_products
                    }
                    "max_vouchers_per_purchase" => {
                        s.max_vouchers_per_purchase = new.max_vouchers_per_purchase
                    }
                    "max_rules_per_purchase" => {
                        s.max_rules_per_purchase = new.max_rules_per_purchase
                    }
                    "rule_groups" => s.groups = std::mem::take(&mut new.groups),
                    _ => {}
                }
            }
            let known = store::resolution::rule_ids(txn, partner_id).await?;
            let mut v = Violations::new();
            s.validate(&mut v, &known);
            v.into_result()?;
            s.revision += 1;
            s.updated_at = Some(at);
            store::resolution::save(txn, partner_id, &s, at).await?;
            // The rules' policy changed: every instance drops its cached rules.
            super::rules_changed(txn, partner_id, None).await?;
            Ok(s)
        })
    })
    .await?;
    api.rules.invalidate(partner_id);
    Ok(Response::new(pb::UpdateResolutionSettingsResponse {
        settings: Some(settings_to_proto(&settings)),
    }))
}

// ---- EvaluateCart ----

fn optional_uuid(v: &mut Violations, field: &str, s: &str) -> Option<Uuid> {
    if s.is_empty() {
        return None;
    }
    let id = Uuid::parse_str(s).ok();
    if id.is_none() {
        v.add(field, "must be a UUID");
    }
    id
}

fn code_field(v: &mut Violations, field: &str, s: &str, required: bool) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        if required {
            v.add(field, "is required");
        }
        return None;
    }
    if s.chars().count() > 64 || s.chars().any(char::is_whitespace) {
        v.add(field, "must be 1..64 characters without spaces");
    }
    Some(s.to_owned())
}

fn channel_name(v: &mut Violations, c: i32) -> Option<String> {
    match SalesChannel::try_from(c) {
        Ok(SalesChannel::Unspecified) => None,
        Ok(SalesChannel::Pos) => Some("pos".into()),
        Ok(SalesChannel::Eshop) => Some("eshop".into()),
        Ok(SalesChannel::MobileApp) => Some("mobile_app".into()),
        Ok(SalesChannel::Kiosk) => Some("kiosk".into()),
        Err(_) => {
            v.add("channel", "must be a sales channel");
            None
        }
    }
}

/// The request, checked and converted.
struct Input {
    lines: Vec<CartLine>,
    ctx: CustomerContext,
    at: Option<DateTime<Utc>>,
    voucher_codes: Vec<String>,
    business_unit: Option<Uuid>,
    channel: Option<i32>,
    transaction_id: Option<String>,
    use_customer_tier: bool,
    omit_rules_not_applied: bool,
}

fn input(req: pb::EvaluateCartRequest) -> Result<Input, ApiError> {
    let mut v = Violations::new();
    if req.lines.is_empty() || req.lines.len() > MAX_LINES {
        v.add("lines", "must have 1..500 lines");
    }
    let lines = req
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let f = |name: &str| format!("lines[{i}].{name}");
            let product_id =
                code_field(&mut v, &f("product_code"), &l.product_code, true).unwrap_or_default();
            let quantity = match u32::try_from(l.quantity) {
                Ok(q @ 1..=1_000_000) => q,
                _ => {
                    v.add(f("quantity"), "must be 1..1000000");
                    0
                }
            };
            if !(0..=1_000_000_000_000).contains(&l.unit_price_minor) {
                v.add(f("unit_price_minor"), "must be 0..10^12 minor units");
            }
            CartLine {
                product_id,
                group: code_field(
                    &mut v,
                    &f("product_group_code"),
                    &l.product_group_code,
                    false,
                ),
                brand: code_field(&mut v, &f("brand_code"), &l.brand_code, false),
                quantity,
                unit_price_minor: l.unit_price_minor,
                no_reward_application: l.no_reward_application,
                pay_only_with_points: l.pay_only_with_points,
            }
        })
        .collect();
    let customer_id = optional_uuid(&mut v, "customer_id", &req.customer_id);
    if req.segment_ids.len() > MAX_SEGMENTS {
        v.add("segment_ids", "at most 1000 segments");
    }
    let segment_ids = req
        .segment_ids
        .iter()
        .enumerate()
        .filter_map(|(i, s)| optional_uuid(&mut v, &format!("segment_ids[{i}]"), s))
        .collect();
    let level_id = optional_uuid(&mut v, "tier_id", &req.tier_id);
    let business_unit = optional_uuid(&mut v, "business_unit_id", &req.business_unit_id);
    let channel = channel_name(&mut v, req.channel);
    if req.voucher_codes.len() > MAX_VOUCHERS {
        v.add("voucher_codes", "at most 50 codes");
    }
    let mut seen = HashSet::new();
    let mut voucher_codes = Vec::new();
    for (i, c) in req.voucher_codes.iter().enumerate() {
        let code = normalise_code(c);
        if code.is_empty() || code.len() > 64 {
            v.add(format!("voucher_codes[{i}]"), "must be 1..64 characters");
        } else if seen.insert(code.clone()) {
            voucher_codes.push(code);
        }
    }
    let at = parse_time(&mut v, "evaluate_time", req.evaluate_time.as_ref());
    if !(-840..=840).contains(&req.utc_offset_minutes) {
        v.add("utc_offset_minutes", "must be -840..840");
    }
    if !(0..=1_000_000).contains(&req.base_earn_points) {
        v.add("base_earn_points", "must be 0..1000000");
    }
    let earn_rate = if req.base_earn_points == 0 {
        EarnRate::default()
    } else {
        if req.base_earn_per_spend_minor < 1 {
            v.add(
                "base_earn_per_spend_minor",
                "must be at least 1 with base_earn_points",
            );
        }
        EarnRate {
            points: req.base_earn_points,
            per_spend_minor: req.base_earn_per_spend_minor.max(1),
        }
    };
    if req.transaction_id.chars().count() > 128 {
        v.add("transaction_id", "must be at most 128 characters");
    }
    v.into_result()?;
    Ok(Input {
        lines,
        ctx: CustomerContext {
            customer_id,
            segment_ids,
            level_id,
            vouchers: Vec::new(),
            at: at.unwrap_or_else(Utc::now),
            utc_offset_minutes: req.utc_offset_minutes,
            business_unit: business_unit.map(|b| b.to_string()),
            channel,
            earn_rate,
            usage: BTreeMap::new(),
        },
        at,
        voucher_codes,
        business_unit,
        channel: (req.channel != 0).then_some(req.channel),
        transaction_id: (!req.transaction_id.is_empty()).then_some(req.transaction_id),
        use_customer_tier: req.use_customer_tier,
        omit_rules_not_applied: req.omit_rules_not_applied,
    })
}

/// Fills the group and brand of lines that came without them from the product catalogue
/// (the first group of the product; codes the catalogue does not know stay without).
async fn fill_from_catalogue(
    api: &RewardsApi,
    partner_id: Uuid,
    lines: &mut [CartLine],
) -> Result<(), ApiError> {
    let missing: Vec<String> = lines
        .iter()
        .filter(|l| l.group.is_none() || l.brand.is_none())
        .map(|l| l.product_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // From memory where known; the rest from the database, kept for the next carts.
    let (mut known, missing, generation) = api.hot.products(partner_id, missing);
    if !missing.is_empty() {
        let products =
            store::catalogue::products_by_code(&api.db, partner_id, missing.clone()).await?;
        let loaded: Vec<(String, Option<ProductFacts>)> = missing
            .into_iter()
            .map(|code| {
                let facts = products.get(&code).map(|p| ProductFacts {
                    group: p.spec.product_group_codes.first().cloned(),
                    brand: (!p.spec.brand_code.is_empty()).then(|| p.spec.brand_code.clone()),
                });
                (code, facts)
            })
            .collect();
        api.hot.keep_products(partner_id, generation, &loaded);
        known.extend(loaded);
    }
    let facts: HashMap<String, ProductFacts> = known
        .into_iter()
        .filter_map(|(code, f)| f.map(|f| (code, f)))
        .collect();
    for l in lines.iter_mut() {
        if let Some(p) = facts.get(&l.product_id) {
            if l.group.is_none() {
                l.group = p.group.clone();
            }
            if l.brand.is_none() {
                l.brand = p.brand.clone();
            }
        }
    }
    Ok(())
}

/// Looks the presented codes up as ValidateVoucher does; the engine gets the reward of each
/// usable voucher and the reason of each unusable one. Codes beyond the partner's
/// `max_vouchers_per_purchase` are refused before.
async fn presented_vouchers(
    api: &RewardsApi,
    partner_id: Uuid,
    input: &Input,
    max: u32,
) -> Result<(Vec<PresentedVoucher>, Vec<engine::RejectedVoucher>), ApiError> {
    let usage = Usage {
        customer_id: input.ctx.customer_id,
        business_unit_id: input.business_unit,
        channel: input.channel,
        transaction_id: input.transaction_id.clone(),
    };
    let take = if max == 0 {
        input.voucher_codes.len()
    } else {
        (max as usize).min(input.voucher_codes.len())
    };
    let mut presented = Vec::new();
    for code in &input.voucher_codes[..take] {
        let found =
            vstore::voucher(&api.db, partner_id, &VoucherKey::Code(code.clone()), false).await?;
        let Some(voucher) = found else {
            presented.push(PresentedVoucher {
                code: code.clone(),
                reward_id: None,
                rejection: None,
                value_minor: None,
            });
            continue;
        };
        let reward = vstore::reward_for_vouchers(&api.db, partner_id, voucher.reward_id, false)
            .await?
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("voucher {} without reward", voucher.id))
            })?;
        let rejection = voucher
            .check_usable(&reward.rules, &usage, input.ctx.at)
            .err()
            .map(str::to_owned);
        presented.push(PresentedVoucher {
            code: code.clone(),
            reward_id: Some(voucher.reward_id),
            rejection,
            value_minor: voucher.value.as_ref().map(|a| a.minor),
        });
    }
    let over = input.voucher_codes[take..]
        .iter()
        .map(|code| engine::RejectedVoucher {
            code: code.clone(),
            reason: LIMIT_PER_PURCHASE.to_owned(),
        })
        .collect();
    Ok((presented, over))
}

fn discount_to_proto(d: engine::LineDiscount) -> pb::EvaluatedDiscount {
    pb::EvaluatedDiscount {
        rule_id: d.rule_id.to_string(),
        amount_minor: d.amount_minor,
        reason: d.reason.to_owned(),
        explanation: d.explanation.to_string(),
    }
}

fn evaluation_to_proto(e: Evaluation) -> pb::EvaluateCartResponse {
    pb::EvaluateCartResponse {
        lines: e
            .lines
            .into_iter()
            .map(|l| pb::EvaluatedLine {
                line_index: l.index as i32,
                product_code: l.product_id,
                gross_minor: l.gross_minor,
                discounts: l.discounts.into_iter().map(discount_to_proto).collect(),
                forgone_discounts: l.forgone.into_iter().map(discount_to_proto).collect(),
                total_minor: l.total_minor,
                points: l.points,
                points_detail: l
                    .points_detail
                    .into_iter()
                    .map(|p| pb::EvaluatedPoints {
                        rule_id: p.rule_id.map(|r| r.to_string()).unwrap_or_default(),
                        points: p.points,
                        reason: p.reason.to_owned(),
                    })
                    .collect(),
                no_reward_application: l.no_reward_application,
                pay_only_with_points: l.pay_only_with_points,
            })
            .collect(),
        gross_minor: e.gross_minor,
        discount_minor: e.discount_minor,
        total_minor: e.total_minor,
        points: e.points,
        cart_points: e
            .cart_points
            .into_iter()
            .map(|c| pb::EvaluatedCartPoints {
                rule_id: c.rule_id.to_string(),
                points: c.points,
                explanation: c.explanation,
            })
            .collect(),
        applied_rules: e
            .applied
            .into_iter()
            .map(|a| pb::RuleApplied {
                rule_id: a.rule_id.to_string(),
                discount_minor: a.discount_minor,
                points: a.points,
                voucher_code: a.voucher_code.unwrap_or_default(),
                explanation: a.explanation,
                // Named by `evaluate_cart`, which has the rules at hand.
                rule_display_name: String::new(),
                rule_type: String::new(),
            })
            .collect(),
        vouchers_to_redeem: e.vouchers_to_redeem,
        rejected_vouchers: e
            .rejected_vouchers
            .into_iter()
            .map(|r| pb::VoucherRejected {
                code: r.code,
                reason: r.reason,
            })
            .collect(),
        rules_not_applied: e
            .not_applied
            .into_iter()
            .map(|n| pb::RuleNotApplied {
                rule_id: n.rule_id.to_string(),
                reason: n.reason.code().to_owned(),
                explanation: n.explanation.to_string(),
            })
            .collect(),
        points_payable: e.points_payable.map(|p| pb::PointsPayable {
            rule_id: p.rule_id.to_string(),
            points_per_step: p.points_per_step,
            value_per_step_minor: p.value_per_step_minor,
            max_points: p.max_points,
            max_value_minor: p.max_value_minor,
            pay_only_with_points_points: p.pay_only_with_points_points,
            explanation: p.explanation,
        }),
        tier_id: String::new(),
    }
}

pub(super) async fn evaluate_cart(
    api: &RewardsApi,
    request: Request<pb::EvaluateCartRequest>,
) -> Result<Response<pb::EvaluateCartResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(EVALUATORS)?;
    let mut input = input(request.into_inner())?;
    // The cached rules are those active now; another moment loads its own.
    let rules: Arc<PartnerRules> = match input.at {
        Some(at)
            if (at - Utc::now()).abs()
                > chrono::Duration::from_std(DEFAULT_TTL).unwrap_or_default() =>
        {
            Arc::new(api.rules.load(partner_id, at).await?)
        }
        _ => api.rules.get(partner_id).await?,
    };
    if input.use_customer_tier
        && input.ctx.level_id.is_none()
        && let Some(customer_id) = input.ctx.customer_id
    {
        let at = input.ctx.at;
        input.ctx.level_id = api
            .hot
            .tier(partner_id, customer_id, at, || {
                super::tiers::effective_tier(&api.db, partner_id, customer_id, at)
            })
            .await?;
    }
    fill_from_catalogue(api, partner_id, &mut input.lines).await?;
    let (presented, over_limit) =
        presented_vouchers(api, partner_id, &input, rules.max_vouchers_per_purchase).await?;
    input.ctx.vouchers = presented;
    let mut evaluation = engine::evaluate_compiled(&input.lines, &input.ctx, &rules.rules);
    evaluation.rejected_vouchers.extend(over_limit);
    if input.omit_rules_not_applied {
        evaluation.not_applied.clear();
    }
    let tier_id = input
        .ctx
        .level_id
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut response = evaluation_to_proto(evaluation);
    response.tier_id = tier_id;
    // Receipts name the rules that applied.
    for applied in &mut response.applied_rules {
        if let Some(rule) = applied
            .rule_id
            .parse()
            .ok()
            .and_then(|id| rules.rules.rule(&id))
        {
            applied.rule_display_name = rule.name.clone();
            applied.rule_type = match rule.kind {
                engine::RuleKind::Reward => "reward",
                engine::RuleKind::PurchaseBonus => "purchase_bonus",
                engine::RuleKind::CampaignProduct => "campaign_product",
            }
            .to_owned();
        }
    }
    Ok(Response::new(response))
}
