//! gRPC adapter of `RewardsService`.
mod catalogue;
mod evaluate;
mod vouchers;

use chrono::Utc;
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::check_idempotency_key,
    events,
    idempotency::{self, IdempotencyScope},
    paging::{next_page_token, page_size, parse_page_token},
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{
    events::v1 as ev,
    rewards::v1::{
        self as pb, reward::Benefit as PbBenefit, rewards_service_server::RewardsService,
    },
};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{
        Benefit, PurchaseBonus, Reward, RewardType, Validity, parse_segment_ids,
        vouchers::VoucherRules,
    },
    store,
};

/// Who may read the active benefits (checkout reads them with the POS's key).
const READERS: &[Role] = &[Role::Pos, Role::Marketing, Role::Service, Role::Support];

pub struct RewardsApi {
    db: DatabaseConnection,
    /// Each partner's active rules for EvaluateCart; writes here drop the partner's entry.
    rules: std::sync::Arc<store::rules_cache::RulesCache>,
}

impl RewardsApi {
    pub fn new(db: DatabaseConnection) -> Self {
        let rules =
            store::rules_cache::RulesCache::new(db.clone(), store::rules_cache::DEFAULT_TTL);
        Self { db, rules }
    }

    /// The cache of active rules (every replica follows its own events into it).
    pub fn rules_cache(&self) -> std::sync::Arc<store::rules_cache::RulesCache> {
        self.rules.clone()
    }
}

fn parse_time(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<chrono::DateTime<Utc>> {
    let t = t?;
    let parsed = from_timestamp(t);
    if parsed.is_none() {
        v.add(field, "must be a valid timestamp");
    }
    parsed
}

fn reward_type(v: &mut Violations, t: i32) -> RewardType {
    match pb::RewardType::try_from(t).unwrap_or_default() {
        pb::RewardType::CashDesk => RewardType::CashDesk,
        pb::RewardType::Campaign => RewardType::Campaign,
        pb::RewardType::Coupon => RewardType::Coupon,
        pb::RewardType::Simple => RewardType::Simple,
        pb::RewardType::Gift => RewardType::Gift,
        pb::RewardType::Unspecified => {
            v.add("reward.type", "is required");
            RewardType::CashDesk
        }
    }
}

fn reward_type_to_proto(t: RewardType) -> pb::RewardType {
    match t {
        RewardType::CashDesk => pb::RewardType::CashDesk,
        RewardType::Campaign => pb::RewardType::Campaign,
        RewardType::Coupon => pb::RewardType::Coupon,
        RewardType::Simple => pb::RewardType::Simple,
        RewardType::Gift => pb::RewardType::Gift,
    }
}

/// Refuses settings whose behaviour lands with issue #6 rather than silently ignoring them.
fn not_yet(v: &mut Violations, field: &str, set: bool) {
    if set {
        v.add(field, "is not supported yet (lands with issue #6)");
    }
}

/// The proto field name of a benefit variant (`CartFixedDiscount(..)` → `cart_fixed_discount`),
/// derived from the variant so that variants the contract gains are named too.
fn benefit_field(b: &PbBenefit) -> String {
    let debug = format!("{b:?}");
    let variant = debug.split(['(', ' ', '{']).next().unwrap_or_default();
    let mut field = String::new();
    for c in variant.chars() {
        if c.is_ascii_uppercase() {
            if !field.is_empty() {
                field.push('_');
            }
            field.push(c.to_ascii_lowercase());
        } else {
            field.push(c);
        }
    }
    if field.is_empty() {
        "benefit".to_owned()
    } else {
        field
    }
}

fn reward_from_proto(v: &mut Violations, r: pb::Reward) -> Reward {
    let benefit = match r.benefit {
        Some(PbBenefit::CartPercentageDiscount(d)) => Benefit::CartPercentageDiscount {
            basis_points: u32::try_from(d.basis_points).unwrap_or(0),
        },
        Some(other) => {
            v.add(
                format!("reward.{}", benefit_field(&other)),
                "is not supported yet: only cart_percentage_discount is (others land with issue #6)",
            );
            Benefit::CartPercentageDiscount { basis_points: 1 }
        }
        None => {
            v.add("reward.benefit", "is required");
            Benefit::CartPercentageDiscount { basis_points: 1 }
        }
    };
    not_yet(v, "reward.cart_condition", r.cart_condition.is_some());
    not_yet(v, "reward.tier_ids", !r.tier_ids.is_empty());
    not_yet(v, "reward.image_url", !r.image_url.is_empty());
    not_yet(v, "reward.priority", r.priority != 0);
    Reward {
        id: Uuid::now_v7(),
        display_name: r.display_name.trim().to_owned(),
        description: r.description,
        reward_type: reward_type(v, r.r#type),
        benefit,
        segment_ids: parse_segment_ids(v, "reward.segment_ids", &r.segment_ids),
        validity: Validity {
            from: parse_time(v, "reward.valid_from_time", r.valid_from_time.as_ref()),
            until: parse_time(v, "reward.valid_until_time", r.valid_until_time.as_ref()),
        },
        created_at: Utc::now(),
    }
}

fn reward_to_proto(r: &Reward) -> pb::Reward {
    pb::Reward {
        id: r.id.to_string(),
        display_name: r.display_name.clone(),
        description: r.description.clone(),
        r#type: reward_type_to_proto(r.reward_type) as i32,
        benefit: Some(match r.benefit {
            Benefit::CartPercentageDiscount { basis_points } => {
                PbBenefit::CartPercentageDiscount(pb::CartPercentageDiscount {
                    basis_points: basis_points as i32,
                })
            }
        }),
        segment_ids: r.segment_ids.iter().map(Uuid::to_string).collect(),
        valid_from_time: r.validity.from.map(to_timestamp),
        valid_until_time: r.validity.until.map(to_timestamp),
        create_time: Some(to_timestamp(r.created_at)),
        state: pb::RewardState::Active as i32,
        ..Default::default()
    }
}

fn bonus_from_proto(v: &mut Violations, b: pb::PurchaseBonus) -> PurchaseBonus {
    not_yet(v, "purchase_bonus.products", b.products.is_some());
    not_yet(
        v,
        "purchase_bonus.business_unit_ids",
        !b.business_unit_ids.is_empty(),
    );
    not_yet(v, "purchase_bonus.channels", !b.channels.is_empty());
    not_yet(v, "purchase_bonus.days_of_week", !b.days_of_week.is_empty());
    not_yet(v, "purchase_bonus.hour_ranges", !b.hour_ranges.is_empty());
    not_yet(v, "purchase_bonus.tier_ids", !b.tier_ids.is_empty());
    not_yet(
        v,
        "purchase_bonus.points_type_id",
        !b.points_type_id.is_empty(),
    );
    PurchaseBonus {
        id: Uuid::now_v7(),
        display_name: b.display_name.trim().to_owned(),
        points: b.points,
        spend_amount_minor: b.spend_amount_minor,
        currency_code: b.currency_code,
        multiplier_basis_points: if b.multiplier_basis_points == 0 {
            10_000
        } else {
            b.multiplier_basis_points
        },
        segment_ids: parse_segment_ids(v, "purchase_bonus.segment_ids", &b.segment_ids),
        validity: Validity {
            from: parse_time(
                v,
                "purchase_bonus.valid_from_time",
                b.valid_from_time.as_ref(),
            ),
            until: parse_time(
                v,
                "purchase_bonus.valid_until_time",
                b.valid_until_time.as_ref(),
            ),
        },
        created_at: Utc::now(),
    }
}

fn bonus_to_proto(b: &PurchaseBonus) -> pb::PurchaseBonus {
    pb::PurchaseBonus {
        id: b.id.to_string(),
        display_name: b.display_name.clone(),
        points: b.points,
        spend_amount_minor: b.spend_amount_minor,
        currency_code: b.currency_code.clone(),
        multiplier_basis_points: b.multiplier_basis_points,
        segment_ids: b.segment_ids.iter().map(Uuid::to_string).collect(),
        valid_from_time: b.validity.from.map(to_timestamp),
        valid_until_time: b.validity.until.map(to_timestamp),
        create_time: Some(to_timestamp(b.created_at)),
        state: pb::PurchaseBonusState::Active as i32,
        ..Default::default()
    }
}

/// Page parameters shared by the List calls.
fn page(
    active_time: Option<&prost_types::Timestamp>,
    size: i32,
    token: &str,
) -> Result<(chrono::DateTime<Utc>, u64, Option<Uuid>), ApiError> {
    let mut v = Violations::new();
    let at = parse_time(&mut v, "active_time", active_time).unwrap_or_else(Utc::now);
    let limit = page_size(&mut v, size);
    let after = parse_page_token(&mut v, token);
    v.finish(|| (at, limit, after))
}

#[tonic::async_trait]
impl RewardsService for RewardsApi {
    #[tracing::instrument(skip_all)]
    async fn create_reward(
        &self,
        request: Request<pb::CreateRewardRequest>,
    ) -> Result<Response<pb::CreateRewardResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "CreateReward", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let Some(proto) = req.reward else {
            return Err(ApiError::invalid("reward", "is required").into());
        };
        let rules = vouchers::rules_from_proto(&mut v, &proto);
        let reward = reward_from_proto(&mut v, proto);
        reward.validate(&mut v);
        v.into_result()?;
        let (reward, rules): (Reward, VoucherRules) =
            idempotency::run(&self.db, scope, move |txn| {
                Box::pin(async move {
                    store::insert_reward(txn, partner_id, &reward).await?;
                    store::vouchers::insert_rules(txn, partner_id, reward.id, &rules).await?;
                    events::enqueue(
                        txn,
                        Some(partner_id),
                        &ev::RewardsChanged {
                            benefit_id: reward.id.to_string(),
                        },
                    )
                    .await?;
                    Ok((reward, rules))
                })
            })
            .await?;
        self.rules.invalidate(partner_id);
        let mut reward = reward_to_proto(&reward);
        vouchers::rules_into_proto(&rules, &mut reward);
        Ok(Response::new(pb::CreateRewardResponse {
            reward: Some(reward),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_active_rewards(
        &self,
        request: Request<pb::ListActiveRewardsRequest>,
    ) -> Result<Response<pb::ListActiveRewardsResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let (at, limit, after) = page(req.active_time.as_ref(), req.page_size, &req.page_token)?;
        let rewards = store::active_rewards(&self.db, partner_id, at, after, limit).await?;
        let ids: Vec<Uuid> = rewards.iter().map(|r| r.id).collect();
        let rules: std::collections::HashMap<Uuid, VoucherRules> =
            store::vouchers::rules_of(&self.db, partner_id, &ids)
                .await?
                .into_iter()
                .collect();
        Ok(Response::new(pb::ListActiveRewardsResponse {
            next_page_token: next_page_token(rewards.len(), limit, rewards.last().map(|r| r.id)),
            rewards: rewards
                .iter()
                .map(|r| {
                    let mut p = reward_to_proto(r);
                    if let Some(rules) = rules.get(&r.id) {
                        vouchers::rules_into_proto(rules, &mut p);
                    }
                    p
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_purchase_bonus(
        &self,
        request: Request<pb::CreatePurchaseBonusRequest>,
    ) -> Result<Response<pb::CreatePurchaseBonusResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(
            partner_id,
            "CreatePurchaseBonus",
            &req.idempotency_key,
            &req,
        );
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let Some(proto) = req.purchase_bonus else {
            return Err(ApiError::invalid("purchase_bonus", "is required").into());
        };
        let bonus = bonus_from_proto(&mut v, proto);
        bonus.validate(&mut v);
        v.into_result()?;
        let bonus: PurchaseBonus = idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                store::insert_purchase_bonus(txn, partner_id, &bonus).await?;
                events::enqueue(
                    txn,
                    Some(partner_id),
                    &ev::RewardsChanged {
                        benefit_id: bonus.id.to_string(),
                    },
                )
                .await?;
                Ok(bonus)
            })
        })
        .await?;
        self.rules.invalidate(partner_id);
        Ok(Response::new(pb::CreatePurchaseBonusResponse {
            purchase_bonus: Some(bonus_to_proto(&bonus)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_active_purchase_bonuses(
        &self,
        request: Request<pb::ListActivePurchaseBonusesRequest>,
    ) -> Result<Response<pb::ListActivePurchaseBonusesResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let (at, limit, after) = page(req.active_time.as_ref(), req.page_size, &req.page_token)?;
        let bonuses =
            store::active_purchase_bonuses(&self.db, partner_id, at, after, limit).await?;
        Ok(Response::new(pb::ListActivePurchaseBonusesResponse {
            next_page_token: next_page_token(bonuses.len(), limit, bonuses.last().map(|b| b.id)),
            purchase_bonuses: bonuses.iter().map(bonus_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::CreateProductResponse>, Status> {
        catalogue::create_product(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::GetProductResponse>, Status> {
        catalogue::get_product(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        catalogue::list_products(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::UpdateProductResponse>, Status> {
        catalogue::update_product(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_product(
        &self,
        request: Request<pb::DeleteProductRequest>,
    ) -> Result<Response<pb::DeleteProductResponse>, Status> {
        catalogue::delete_product(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn import_products(
        &self,
        request: Request<pb::ImportProductsRequest>,
    ) -> Result<Response<pb::ImportProductsResponse>, Status> {
        catalogue::import_products(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_product_group(
        &self,
        request: Request<pb::CreateProductGroupRequest>,
    ) -> Result<Response<pb::CreateProductGroupResponse>, Status> {
        catalogue::create_product_group(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_product_group(
        &self,
        request: Request<pb::GetProductGroupRequest>,
    ) -> Result<Response<pb::GetProductGroupResponse>, Status> {
        catalogue::get_product_group(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_product_groups(
        &self,
        request: Request<pb::ListProductGroupsRequest>,
    ) -> Result<Response<pb::ListProductGroupsResponse>, Status> {
        catalogue::list_product_groups(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_product_group(
        &self,
        request: Request<pb::UpdateProductGroupRequest>,
    ) -> Result<Response<pb::UpdateProductGroupResponse>, Status> {
        catalogue::update_product_group(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_product_group(
        &self,
        request: Request<pb::DeleteProductGroupRequest>,
    ) -> Result<Response<pb::DeleteProductGroupResponse>, Status> {
        catalogue::delete_product_group(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_brand(
        &self,
        request: Request<pb::CreateBrandRequest>,
    ) -> Result<Response<pb::CreateBrandResponse>, Status> {
        catalogue::create_brand(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_brand(
        &self,
        request: Request<pb::GetBrandRequest>,
    ) -> Result<Response<pb::GetBrandResponse>, Status> {
        catalogue::get_brand(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_brands(
        &self,
        request: Request<pb::ListBrandsRequest>,
    ) -> Result<Response<pb::ListBrandsResponse>, Status> {
        catalogue::list_brands(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_brand(
        &self,
        request: Request<pb::UpdateBrandRequest>,
    ) -> Result<Response<pb::UpdateBrandResponse>, Status> {
        catalogue::update_brand(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_brand(
        &self,
        request: Request<pb::DeleteBrandRequest>,
    ) -> Result<Response<pb::DeleteBrandResponse>, Status> {
        catalogue::delete_brand(&self.db, request).await
    }

    async fn issue_voucher(
        &self,
        request: Request<pb::IssueVoucherRequest>,
    ) -> Result<Response<pb::IssueVoucherResponse>, Status> {
        vouchers::issue(self, request).await
    }

    async fn get_voucher(
        &self,
        request: Request<pb::GetVoucherRequest>,
    ) -> Result<Response<pb::GetVoucherResponse>, Status> {
        vouchers::get(self, request).await
    }

    async fn list_vouchers(
        &self,
        request: Request<pb::ListVouchersRequest>,
    ) -> Result<Response<pb::ListVouchersResponse>, Status> {
        vouchers::list(self, request).await
    }

    async fn redeem_voucher(
        &self,
        request: Request<pb::RedeemVoucherRequest>,
    ) -> Result<Response<pb::RedeemVoucherResponse>, Status> {
        vouchers::redeem(self, request).await
    }

    async fn cancel_voucher(
        &self,
        request: Request<pb::CancelVoucherRequest>,
    ) -> Result<Response<pb::CancelVoucherResponse>, Status> {
        vouchers::cancel(self, request).await
    }

    async fn reinstate_voucher(
        &self,
        request: Request<pb::ReinstateVoucherRequest>,
    ) -> Result<Response<pb::ReinstateVoucherResponse>, Status> {
        vouchers::reinstate(self, request).await
    }

    async fn validate_voucher(
        &self,
        request: Request<pb::ValidateVoucherRequest>,
    ) -> Result<Response<pb::ValidateVoucherResponse>, Status> {
        vouchers::validate(self, request).await
    }

    async fn reserve_voucher(
        &self,
        request: Request<pb::ReserveVoucherRequest>,
    ) -> Result<Response<pb::ReserveVoucherResponse>, Status> {
        vouchers::reserve(self, request).await
    }

    async fn release_voucher(
        &self,
        request: Request<pb::ReleaseVoucherRequest>,
    ) -> Result<Response<pb::ReleaseVoucherResponse>, Status> {
        vouchers::release(self, request).await
    }

    async fn generate_voucher_codes(
        &self,
        request: Request<pb::GenerateVoucherCodesRequest>,
    ) -> Result<Response<pb::GenerateVoucherCodesResponse>, Status> {
        vouchers::generate(self, request).await
    }

    async fn get_resolution_settings(
        &self,
        request: Request<pb::GetResolutionSettingsRequest>,
    ) -> Result<Response<pb::GetResolutionSettingsResponse>, Status> {
        evaluate::get_settings(self, request).await
    }

    async fn update_resolution_settings(
        &self,
        request: Request<pb::UpdateResolutionSettingsRequest>,
    ) -> Result<Response<pb::UpdateResolutionSettingsResponse>, Status> {
        evaluate::update_settings(self, request).await
    }

    async fn evaluate_cart(
        &self,
        request: Request<pb::EvaluateCartRequest>,
    ) -> Result<Response<pb::EvaluateCartResponse>, Status> {
        evaluate::evaluate_cart(self, request).await
    }

    loyalty_platform::rpcs_not_yet_implemented! {
        "lands with issue #6 (rewards engine)";
        get_reward(pb::GetRewardRequest) -> pb::GetRewardResponse;
        list_rewards(pb::ListRewardsRequest) -> pb::ListRewardsResponse;
        update_reward(pb::UpdateRewardRequest) -> pb::UpdateRewardResponse;
        archive_reward(pb::ArchiveRewardRequest) -> pb::ArchiveRewardResponse;
        list_available_rewards(pb::ListAvailableRewardsRequest) -> pb::ListAvailableRewardsResponse;
        create_campaign_product(pb::CreateCampaignProductRequest) -> pb::CreateCampaignProductResponse;
        get_campaign_product(pb::GetCampaignProductRequest) -> pb::GetCampaignProductResponse;
        list_campaign_products(pb::ListCampaignProductsRequest) -> pb::ListCampaignProductsResponse;
        update_campaign_product(pb::UpdateCampaignProductRequest) -> pb::UpdateCampaignProductResponse;
        delete_campaign_product(pb::DeleteCampaignProductRequest) -> pb::DeleteCampaignProductResponse;
        get_purchase_bonus(pb::GetPurchaseBonusRequest) -> pb::GetPurchaseBonusResponse;
        list_purchase_bonuses(pb::ListPurchaseBonusesRequest) -> pb::ListPurchaseBonusesResponse;
        update_purchase_bonus(pb::UpdatePurchaseBonusRequest) -> pb::UpdatePurchaseBonusResponse;
        delete_purchase_bonus(pb::DeletePurchaseBonusRequest) -> pb::DeletePurchaseBonusResponse;
        create_tier(pb::CreateTierRequest) -> pb::CreateTierResponse;
        get_tier(pb::GetTierRequest) -> pb::GetTierResponse;
        list_tiers(pb::ListTiersRequest) -> pb::ListTiersResponse;
        update_tier(pb::UpdateTierRequest) -> pb::UpdateTierResponse;
        delete_tier(pb::DeleteTierRequest) -> pb::DeleteTierResponse;
        get_customer_tier(pb::GetCustomerTierRequest) -> pb::GetCustomerTierResponse;
        set_customer_tier(pb::SetCustomerTierRequest) -> pb::SetCustomerTierResponse;
        create_reward_scheme(pb::CreateRewardSchemeRequest) -> pb::CreateRewardSchemeResponse;
        get_reward_scheme(pb::GetRewardSchemeRequest) -> pb::GetRewardSchemeResponse;
        list_reward_schemes(pb::ListRewardSchemesRequest) -> pb::ListRewardSchemesResponse;
        update_reward_scheme(pb::UpdateRewardSchemeRequest) -> pb::UpdateRewardSchemeResponse;
        delete_reward_scheme(pb::DeleteRewardSchemeRequest) -> pb::DeleteRewardSchemeResponse;
        sign_up(pb::SignUpRequest) -> pb::SignUpResponse;
        leave_scheme(pb::LeaveSchemeRequest) -> pb::LeaveSchemeResponse;
        list_scheme_memberships(pb::ListSchemeMembershipsRequest) -> pb::ListSchemeMembershipsResponse;
        create_reward_offer(pb::CreateRewardOfferRequest) -> pb::CreateRewardOfferResponse;
        get_reward_offer(pb::GetRewardOfferRequest) -> pb::GetRewardOfferResponse;
        list_reward_offers(pb::ListRewardOffersRequest) -> pb::ListRewardOffersResponse;
        update_reward_offer(pb::UpdateRewardOfferRequest) -> pb::UpdateRewardOfferResponse;
        delete_reward_offer(pb::DeleteRewardOfferRequest) -> pb::DeleteRewardOfferResponse;
        list_offer_progress(pb::ListOfferProgressRequest) -> pb::ListOfferProgressResponse;
        create_commercial_terms(pb::CreateCommercialTermsRequest) -> pb::CreateCommercialTermsResponse;
        get_commercial_terms(pb::GetCommercialTermsRequest) -> pb::GetCommercialTermsResponse;
        list_commercial_terms(pb::ListCommercialTermsRequest) -> pb::ListCommercialTermsResponse;
        update_commercial_terms(pb::UpdateCommercialTermsRequest) -> pb::UpdateCommercialTermsResponse;
        delete_commercial_terms(pb::DeleteCommercialTermsRequest) -> pb::DeleteCommercialTermsResponse;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsupported_benefit_is_reported_under_its_own_field() {
        let mut v = Violations::new();
        reward_from_proto(
            &mut v,
            pb::Reward {
                display_name: "Five off".into(),
                r#type: pb::RewardType::CashDesk as i32,
                benefit: Some(PbBenefit::CartFixedDiscount(Default::default())),
                ..Default::default()
            },
        );
        let text = v.into_result().unwrap_err().to_string();
        assert!(text.contains("reward.cart_fixed_discount"), "{text}");
        assert!(text.contains("not supported yet"), "{text}");
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
}
