//! gRPC adapter of `RewardsService`.
mod campaign_products;
mod catalogue;
mod evaluate;
mod payments;
mod product_stream;
mod purchase_bonuses;
mod rewards;
mod schemes;
pub(crate) mod tiers;
mod vouchers;

use chrono::Utc;
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    paging::{next_page_token, page_size, parse_page_token},
    time::from_timestamp,
};
use loyalty_proto::rewards::v1::{self as pb, rewards_service_server::RewardsService};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status, transport::Channel};
use uuid::Uuid;

use crate::{domain::RewardType, store};

/// Who may read the active benefits (checkout reads them with the POS's key).
const READERS: &[Role] = &[Role::Pos, Role::Marketing, Role::Service, Role::Support];

pub struct RewardsApi {
    db: DatabaseConnection,
    customer_peers: Option<rewards::CustomerPeers>,
    /// Identity, for sign-ups to CLOSED schemes by email domain.
    identity: Option<schemes::IdentityPeer>,
    /// Segmentation, asked for a customer's segments when they sign up to a CRITERIA scheme
    /// (the same peer as the offer consumer's; UNAVAILABLE without one).
    segments: std::sync::Arc<dyn store::schemes::CustomerSegments>,
    wallet: payments::PointsWallet,
    /// Each partner's active rules for EvaluateCart; writes here drop the partner's entry.
    rules: std::sync::Arc<store::rules_cache::RulesCache>,
    /// Customers' levels and products' groups for EvaluateCart.
    hot: std::sync::Arc<store::evaluation_cache::EvaluationCache>,
}

impl RewardsApi {
    /// Without a wallet: vouchers with a points price are refused POINTS_PAYMENT_UNAVAILABLE.
    pub fn new(db: DatabaseConnection) -> Self {
        let rules =
            store::rules_cache::RulesCache::new(db.clone(), store::rules_cache::DEFAULT_TTL);
        Self {
            db,
            customer_peers: None,
            identity: None,
            segments: std::sync::Arc::new(store::schemes::NoSegmentation),
            wallet: payments::PointsWallet::default(),
            rules,
            hot: store::evaluation_cache::EvaluationCache::new(),
        }
    }

    /// Segmentation and wallet, asked by ListAvailableRewards (UNAVAILABLE without them).
    pub fn with_customer_peers(mut self, segmentation: Channel, wallet: Channel) -> Self {
        self.customer_peers = Some(rewards::CustomerPeers::new(segmentation, wallet));
        self
    }

    /// Identity, asked for a customer's emails when they sign up to a scheme by email domain
    /// (UNAVAILABLE without it).
    pub fn with_identity(mut self, channel: Channel) -> Self {
        self.identity = Some(schemes::IdentityPeer::new(channel));
        self
    }

    /// Segmentation, asked for a customer's segments when they sign up to a CRITERIA scheme
    /// (UNAVAILABLE without it).
    pub fn with_segments(
        mut self,
        segments: std::sync::Arc<dyn store::schemes::CustomerSegments>,
    ) -> Self {
        self.segments = segments;
        self
    }

    /// Pays vouchers with points through the wallet service behind `channel`.
    pub fn with_wallet(mut self, channel: Option<Channel>) -> Self {
        self.wallet = payments::PointsWallet::new(channel);
        self
    }

    /// The cache of active rules (every replica follows its own events into it).
    pub fn rules_cache(&self) -> std::sync::Arc<store::rules_cache::RulesCache> {
        self.rules.clone()
    }

    /// The cache of levels and products (every replica follows its own events into it).
    pub fn evaluation_cache(&self) -> std::sync::Arc<store::evaluation_cache::EvaluationCache> {
        self.hot.clone()
    }

    /// Drops cached levels once a write that changes them succeeded (one customer's, or the
    /// partner's when the ladder changed), so the next EvaluateCart of this replica sees it
    /// at once (the others follow TierChanged and RewardsChanged).
    fn levels_changed<T>(
        &self,
        partner: Option<Uuid>,
        customer: Option<Uuid>,
        answer: Result<T, Status>,
    ) -> Result<T, Status> {
        if let (Ok(_), Some(partner)) = (&answer, partner) {
            match customer {
                Some(customer) => self.hot.forget_tier(partner, customer),
                None => self.hot.forget_partner_tiers(partner),
            }
        }
        answer
    }

    /// Drops the partner's cached products once a catalogue write succeeded (the other
    /// replicas follow CatalogueChanged).
    fn catalogue_changed<T>(
        &self,
        partner: Option<Uuid>,
        answer: Result<T, Status>,
    ) -> Result<T, Status> {
        if let (Ok(_), Some(partner)) = (&answer, partner) {
            self.hot.forget_products(partner);
        }
        answer
    }

    /// Drops the partner's cached rules once a write that changes them succeeded, so the next
    /// EvaluateCart of this replica sees it at once (the others follow RewardsChanged).
    fn refreshed<T>(&self, partner: Option<Uuid>, answer: Result<T, Status>) -> Result<T, Status> {
        if let (Ok(_), Some(partner)) = (&answer, partner) {
            self.rules.invalidate(partner);
        }
        answer
    }
}

/// Announces in the write's transaction that a partner's rules changed (`RewardsChanged`),
/// so that every replica drops its cached rules; `None` for partner-wide settings.
async fn rules_changed(
    conn: &impl sea_orm::ConnectionTrait,
    partner_id: Uuid,
    benefit_id: Option<Uuid>,
) -> Result<(), ApiError> {
    loyalty_platform::events::enqueue(
        conn,
        Some(partner_id),
        &loyalty_proto::events::v1::RewardsChanged {
            benefit_id: benefit_id.map(|id| id.to_string()).unwrap_or_default(),
        },
    )
    .await?;
    Ok(())
}

/// A required UUID naming a stored item: empty → INVALID_ARGUMENT on `field`; malformed →
/// `not_found`, like another partner's id (it cannot name a stored item).
fn stored_id(field: &str, id: &str, not_found: fn(&str) -> ApiError) -> Result<Uuid, ApiError> {
    if id.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    Uuid::parse_str(id).map_err(|_| not_found(id))
}

/// The caller's partner, for dropping its cached rules after a write.
fn partner_of<T>(request: &Request<T>) -> Option<Uuid> {
    principal(request).ok().and_then(|p| p.partner_id)
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
        let partner = partner_of(&request);
        self.refreshed(partner, rewards::create(self, request).await)
    }

    #[tracing::instrument(skip_all)]
    async fn list_active_rewards(
        &self,
        request: Request<pb::ListActiveRewardsRequest>,
    ) -> Result<Response<pb::ListActiveRewardsResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let (at, limit, after) = page(req.active_time.as_ref(), req.page_size, &req.page_token)?;
        let found = store::active_rewards(&self.db, partner_id, at, after, limit).await?;
        Ok(Response::new(pb::ListActiveRewardsResponse {
            next_page_token: next_page_token(found.len(), limit, found.last().map(|r| r.id)),
            rewards: rewards::shown_protos(&self.db, partner_id, found).await?,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_purchase_bonus(
        &self,
        request: Request<pb::CreatePurchaseBonusRequest>,
    ) -> Result<Response<pb::CreatePurchaseBonusResponse>, Status> {
        let partner = partner_of(&request);
        self.refreshed(partner, purchase_bonuses::create(&self.db, request).await)
    }

    #[tracing::instrument(skip_all)]
    async fn list_active_purchase_bonuses(
        &self,
        request: Request<pb::ListActivePurchaseBonusesRequest>,
    ) -> Result<Response<pb::ListActivePurchaseBonusesResponse>, Status> {
        purchase_bonuses::list_active(&self.db, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::CreateProductResponse>, Status> {
        let partner = partner_of(&request);
        self.catalogue_changed(partner, catalogue::create_product(&self.db, request).await)
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
        let partner = partner_of(&request);
        self.catalogue_changed(partner, catalogue::update_product(&self.db, request).await)
    }

    #[tracing::instrument(skip_all)]
    async fn delete_product(
        &self,
        request: Request<pb::DeleteProductRequest>,
    ) -> Result<Response<pb::DeleteProductResponse>, Status> {
        let partner = partner_of(&request);
        self.catalogue_changed(partner, catalogue::delete_product(&self.db, request).await)
    }

    #[tracing::instrument(skip_all)]
    async fn import_products(
        &self,
        request: Request<pb::ImportProductsRequest>,
    ) -> Result<Response<pb::ImportProductsResponse>, Status> {
        let partner = partner_of(&request);
        self.catalogue_changed(partner, catalogue::import_products(&self.db, request).await)
    }

    #[tracing::instrument(skip_all)]
    async fn stream_import_products(
        &self,
        request: Request<tonic::Streaming<pb::StreamImportProductsRequest>>,
    ) -> Result<Response<pb::StreamImportProductsResponse>, Status> {
        let partner = partner_of(&request);
        self.catalogue_changed(
            partner,
            product_stream::stream_import_products(&self.db, request).await,
        )
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
        let partner = partner_of(&request);
        self.catalogue_changed(
            partner,
            catalogue::update_product_group(&self.db, request).await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn delete_product_group(
        &self,
        request: Request<pb::DeleteProductGroupRequest>,
    ) -> Result<Response<pb::DeleteProductGroupResponse>, Status> {
        let partner = partner_of(&request);
        self.catalogue_changed(
            partner,
            catalogue::delete_product_group(&self.db, request).await,
        )
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
        let partner = partner_of(&request);
        self.catalogue_changed(partner, catalogue::update_brand(&self.db, request).await)
    }

    #[tracing::instrument(skip_all)]
    async fn delete_brand(
        &self,
        request: Request<pb::DeleteBrandRequest>,
    ) -> Result<Response<pb::DeleteBrandResponse>, Status> {
        let partner = partner_of(&request);
        self.catalogue_changed(partner, catalogue::delete_brand(&self.db, request).await)
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

    #[tracing::instrument(skip_all)]
    async fn issue_vouchers(
        &self,
        request: Request<pb::IssueVouchersRequest>,
    ) -> Result<Response<pb::IssueVouchersResponse>, Status> {
        vouchers::issue_batch(self, request).await
    }

    async fn create_campaign_product(
        &self,
        request: Request<pb::CreateCampaignProductRequest>,
    ) -> Result<Response<pb::CreateCampaignProductResponse>, Status> {
        let partner = partner_of(&request);
        self.refreshed(partner, campaign_products::create(&self.db, request).await)
    }

    async fn get_campaign_product(
        &self,
        request: Request<pb::GetCampaignProductRequest>,
    ) -> Result<Response<pb::GetCampaignProductResponse>, Status> {
        campaign_products::get(&self.db, request).await
    }

    async fn list_campaign_products(
        &self,
        request: Request<pb::ListCampaignProductsRequest>,
    ) -> Result<Response<pb::ListCampaignProductsResponse>, Status> {
        campaign_products::list(&self.db, request).await
    }

    async fn update_campaign_product(
        &self,
        request: Request<pb::UpdateCampaignProductRequest>,
    ) -> Result<Response<pb::UpdateCampaignProductResponse>, Status> {
        let partner = partner_of(&request);
        self.refreshed(partner, campaign_products::update(&self.db, request).await)
    }

    async fn delete_campaign_product(
        &self,
        request: Request<pb::DeleteCampaignProductRequest>,
    ) -> Result<Response<pb::DeleteCampaignProductResponse>, Status> {
        let partner = partner_of(&request);
        self.refreshed(partner, campaign_products::delete(&self.db, request).await)
    }

    async fn get_purchase_bonus(
        &self,
        request: Request<pb::GetPurchaseBonusRequest>,
    ) -> Result<Response<pb::GetPurchaseBonusResponse>, Status> {
        purchase_bonuses::get(&self.db, request).await
    }

    async fn list_purchase_bonuses(
        &self,
        request: Request<pb::ListPurchaseBonusesRequest>,
    ) -> Result<Response<pb::ListPurchaseBonusesResponse>, Status> {
        purchase_bonuses::list(&self.db, request).await
    }

    async fn update_purchase_bonus(
        &self,
        request: Request<pb::UpdatePurchaseBonusRequest>,
    ) -> Result<Response<pb::UpdatePurchaseBonusResponse>, Status> {
        let partner = partner_of(&request);
        self.refreshed(partner, purchase_bonuses::update(&self.db, request).await)
    }

    async fn delete_purchase_bonus(
        &self,
        request: Request<pb::DeletePurchaseBonusRequest>,
    ) -> Result<Response<pb::DeletePurchaseBonusResponse>, Status> {
        let partner = partner_of(&request);
        self.refreshed(partner, purchase_bonuses::delete(&self.db, request).await)
    }

    async fn get_reward(
        &self,
        request: Request<pb::GetRewardRequest>,
    ) -> Result<Response<pb::GetRewardResponse>, Status> {
        rewards::get(self, request).await
    }

    async fn list_rewards(
        &self,
        request: Request<pb::ListRewardsRequest>,
    ) -> Result<Response<pb::ListRewardsResponse>, Status> {
        rewards::list(self, request).await
    }

    async fn update_reward(
        &self,
        request: Request<pb::UpdateRewardRequest>,
    ) -> Result<Response<pb::UpdateRewardResponse>, Status> {
        let partner = partner_of(&request);
        self.refreshed(partner, rewards::update(self, request).await)
    }

    async fn archive_reward(
        &self,
        request: Request<pb::ArchiveRewardRequest>,
    ) -> Result<Response<pb::ArchiveRewardResponse>, Status> {
        let partner = partner_of(&request);
        self.refreshed(partner, rewards::archive(self, request).await)
    }

    async fn list_available_rewards(
        &self,
        request: Request<pb::ListAvailableRewardsRequest>,
    ) -> Result<Response<pb::ListAvailableRewardsResponse>, Status> {
        rewards::available(self, request).await
    }

    async fn create_tier(
        &self,
        request: Request<pb::CreateTierRequest>,
    ) -> Result<Response<pb::CreateTierResponse>, Status> {
        let partner = partner_of(&request);
        self.levels_changed(partner, None, tiers::create_tier(&self.db, request).await)
    }

    async fn get_tier(
        &self,
        request: Request<pb::GetTierRequest>,
    ) -> Result<Response<pb::GetTierResponse>, Status> {
        tiers::get_tier(&self.db, request).await
    }

    async fn list_tiers(
        &self,
        request: Request<pb::ListTiersRequest>,
    ) -> Result<Response<pb::ListTiersResponse>, Status> {
        tiers::list_tiers(&self.db, request).await
    }

    async fn update_tier(
        &self,
        request: Request<pb::UpdateTierRequest>,
    ) -> Result<Response<pb::UpdateTierResponse>, Status> {
        let partner = partner_of(&request);
        self.levels_changed(partner, None, tiers::update_tier(&self.db, request).await)
    }

    async fn delete_tier(
        &self,
        request: Request<pb::DeleteTierRequest>,
    ) -> Result<Response<pb::DeleteTierResponse>, Status> {
        let partner = partner_of(&request);
        self.levels_changed(partner, None, tiers::delete_tier(&self.db, request).await)
    }

    async fn get_customer_tier(
        &self,
        request: Request<pb::GetCustomerTierRequest>,
    ) -> Result<Response<pb::GetCustomerTierResponse>, Status> {
        tiers::get_customer_tier(&self.db, request).await
    }

    async fn set_customer_tier(
        &self,
        request: Request<pb::SetCustomerTierRequest>,
    ) -> Result<Response<pb::SetCustomerTierResponse>, Status> {
        let partner = partner_of(&request);
        let customer = request.get_ref().customer_id.parse().ok();
        self.levels_changed(
            partner,
            customer,
            tiers::set_customer_tier(&self.db, request).await,
        )
    }

    async fn list_customer_tier_history(
        &self,
        request: Request<pb::ListCustomerTierHistoryRequest>,
    ) -> Result<Response<pb::ListCustomerTierHistoryResponse>, Status> {
        tiers::list_customer_tier_history(&self.db, request).await
    }

    async fn create_reward_scheme(
        &self,
        request: Request<pb::CreateRewardSchemeRequest>,
    ) -> Result<Response<pb::CreateRewardSchemeResponse>, Status> {
        schemes::create_scheme(self, request).await
    }

    async fn get_reward_scheme(
        &self,
        request: Request<pb::GetRewardSchemeRequest>,
    ) -> Result<Response<pb::GetRewardSchemeResponse>, Status> {
        schemes::get_scheme(self, request).await
    }

    async fn list_reward_schemes(
        &self,
        request: Request<pb::ListRewardSchemesRequest>,
    ) -> Result<Response<pb::ListRewardSchemesResponse>, Status> {
        schemes::list_schemes(self, request).await
    }

    async fn update_reward_scheme(
        &self,
        request: Request<pb::UpdateRewardSchemeRequest>,
    ) -> Result<Response<pb::UpdateRewardSchemeResponse>, Status> {
        schemes::update_scheme(self, request).await
    }

    async fn delete_reward_scheme(
        &self,
        request: Request<pb::DeleteRewardSchemeRequest>,
    ) -> Result<Response<pb::DeleteRewardSchemeResponse>, Status> {
        schemes::delete_scheme(self, request).await
    }

    async fn sign_up(
        &self,
        request: Request<pb::SignUpRequest>,
    ) -> Result<Response<pb::SignUpResponse>, Status> {
        schemes::sign_up(self, request).await
    }

    async fn leave_scheme(
        &self,
        request: Request<pb::LeaveSchemeRequest>,
    ) -> Result<Response<pb::LeaveSchemeResponse>, Status> {
        schemes::leave_scheme(self, request).await
    }

    async fn list_scheme_memberships(
        &self,
        request: Request<pb::ListSchemeMembershipsRequest>,
    ) -> Result<Response<pb::ListSchemeMembershipsResponse>, Status> {
        schemes::list_memberships(self, request).await
    }

    async fn create_reward_offer(
        &self,
        request: Request<pb::CreateRewardOfferRequest>,
    ) -> Result<Response<pb::CreateRewardOfferResponse>, Status> {
        schemes::create_offer(self, request).await
    }

    async fn get_reward_offer(
        &self,
        request: Request<pb::GetRewardOfferRequest>,
    ) -> Result<Response<pb::GetRewardOfferResponse>, Status> {
        schemes::get_offer(self, request).await
    }

    async fn list_reward_offers(
        &self,
        request: Request<pb::ListRewardOffersRequest>,
    ) -> Result<Response<pb::ListRewardOffersResponse>, Status> {
        schemes::list_offers(self, request).await
    }

    async fn update_reward_offer(
        &self,
        request: Request<pb::UpdateRewardOfferRequest>,
    ) -> Result<Response<pb::UpdateRewardOfferResponse>, Status> {
        schemes::update_offer(self, request).await
    }

    async fn delete_reward_offer(
        &self,
        request: Request<pb::DeleteRewardOfferRequest>,
    ) -> Result<Response<pb::DeleteRewardOfferResponse>, Status> {
        schemes::delete_offer(self, request).await
    }

    async fn list_offer_progress(
        &self,
        request: Request<pb::ListOfferProgressRequest>,
    ) -> Result<Response<pb::ListOfferProgressResponse>, Status> {
        schemes::list_progress(self, request).await
    }

    async fn create_commercial_terms(
        &self,
        request: Request<pb::CreateCommercialTermsRequest>,
    ) -> Result<Response<pb::CreateCommercialTermsResponse>, Status> {
        schemes::create_terms(self, request).await
    }

    async fn get_commercial_terms(
        &self,
        request: Request<pb::GetCommercialTermsRequest>,
    ) -> Result<Response<pb::GetCommercialTermsResponse>, Status> {
        schemes::get_terms(self, request).await
    }

    async fn list_commercial_terms(
        &self,
        request: Request<pb::ListCommercialTermsRequest>,
    ) -> Result<Response<pb::ListCommercialTermsResponse>, Status> {
        schemes::list_terms(self, request).await
    }

    async fn update_commercial_terms(
        &self,
        request: Request<pb::UpdateCommercialTermsRequest>,
    ) -> Result<Response<pb::UpdateCommercialTermsResponse>, Status> {
        schemes::update_terms(self, request).await
    }

    async fn delete_commercial_terms(
        &self,
        request: Request<pb::DeleteCommercialTermsRequest>,
    ) -> Result<Response<pb::DeleteCommercialTermsResponse>, Status> {
        schemes::delete_terms(self, request).await
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
}
