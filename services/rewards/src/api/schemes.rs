//! CRM.COM reward schemes (with sign-up and leave), reward offers with their goals, each
//! customer's offer progress, and the commercial terms of merchants' offers. ADMIN and
//! MARKETING keys define them; POS, SERVICE, SUPPORT and MARKETING keys sign customers up.
//! Every change is one idempotent transaction; events go through the outbox.
use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError, Principal, Role, Violations,
    auth::principal,
    client::outgoing,
    error::{check_etag, check_idempotency_key, mask_paths},
    idempotency::{self, IdempotencyScope},
    paging::{next_code_token, next_page_token, page_size, parse_code_token, parse_page_token},
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{
    identity::v1::{self as identity, identity_service_client::IdentityServiceClient},
    rewards::v1::{self as pb, offer_award::Kind as PbAwardKind, offer_goal::Kind as PbGoalKind},
    types::v1::{IdentifierType, Money, ProductScope as PbScope},
};
use tonic::{Request, Response, Status, transport::Channel};
use uuid::Uuid;

use super::RewardsApi;
use crate::{
    domain::{
        Validity,
        schemes::{
            Applicant, Award, AwardKind, Goal, GoalGroup, Membership, Offer, OfferSpec, OfferState,
            ProductScope, Progress, Scheme, SignUpOption, Standing, Terms, TermsSpec,
            check_merchant_offer, check_sign_up, etag, needs_emails, needs_segments,
            voucher_award_allowed,
        },
    },
    store::{catalogue::now, schemes as store, vouchers as vstore},
};

const WRITERS: &[Role] = &[Role::Admin, Role::Marketing];
const READERS: &[Role] = &[
    Role::Admin,
    Role::Marketing,
    Role::Pos,
    Role::Service,
    Role::Support,
];
/// Who signs customers up and out.
const ENROLLERS: &[Role] = &[Role::Pos, Role::Service, Role::Support, Role::Marketing];

const SCHEME_UPDATABLE: &[&str] = &[
    "display_name",
    "description",
    "sign_up_option",
    "sign_up_codes",
    "email_domains",
    "sign_up_segment_ids",
    "max_members",
    "active",
];
const OFFER_UPDATABLE: &[&str] = &[
    "display_name",
    "description",
    "state",
    "scheme_id",
    "goal_group",
    "goals",
    "award",
    "auto_redeem",
    "merchant_business_unit_id",
    "commercial_terms_id",
    "priority",
    "business_unit_ids",
    "segment_ids",
    "max_awards_per_customer",
    "period_days",
    "valid_from_time",
    "valid_until_time",
];
const TERMS_UPDATABLE: &[&str] = &[
    "display_name",
    "allow_merchant_offers",
    "max_active_offers",
    "merchant_funding_basis_points",
    "transaction_fee_basis_points",
    "transaction_fee",
    "network_spend",
    "settlement_period_days",
    "valid_from_time",
    "valid_until_time",
];

fn not_found(what: &str, key: &str) -> ApiError {
    ApiError::NotFound(format!("{what} {key:?}"))
}

fn required(v: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        v.add(field, "is required");
    }
}

fn time(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    let t = t?;
    let parsed = from_timestamp(t);
    if parsed.is_none() {
        v.add(field, "must be a valid timestamp");
    }
    parsed
}

/// An optional UUID field: empty = none.
fn opt_uuid(v: &mut Violations, field: &str, s: &str) -> Option<Uuid> {
    if s.is_empty() {
        return None;
    }
    let parsed = Uuid::parse_str(s).ok();
    if parsed.is_none() {
        v.add(field, "must be a UUID");
    }
    parsed
}

fn uuid(v: &mut Violations, field: &str, s: &str) -> Uuid {
    if s.is_empty() {
        v.add(field, "is required");
        return Uuid::nil();
    }
    opt_uuid(v, field, s).unwrap_or_default()
}

fn uuids(v: &mut Violations, field: &str, list: &[String]) -> Vec<Uuid> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match Uuid::parse_str(s) {
            Ok(id) if !out.contains(&id) => out.push(id),
            Ok(_) => {}
            Err(_) => v.add(format!("{field}[{i}]"), "must be a UUID"),
        }
    }
    out
}

fn money(m: &Option<Money>) -> Option<(i64, String)> {
    m.as_ref()
        .map(|m| (m.amount_minor, m.currency_code.clone()))
}

fn to_money((amount_minor, currency_code): &(i64, String)) -> Money {
    Money {
        currency_code: currency_code.clone(),
        amount_minor: *amount_minor,
    }
}

// ---- Schemes: conversions ----

fn sign_up_option(v: &mut Violations, field: &str, o: i32) -> SignUpOption {
    match pb::SignUpOption::try_from(o).unwrap_or_default() {
        pb::SignUpOption::Auto => SignUpOption::Auto,
        pb::SignUpOption::OptIn => SignUpOption::OptIn,
        pb::SignUpOption::Closed => SignUpOption::Closed,
        pb::SignUpOption::Criteria => SignUpOption::Criteria,
        pb::SignUpOption::Unspecified => {
            v.add(field, "is required");
            SignUpOption::OptIn
        }
    }
}

fn scheme_to_proto(s: &Scheme, show_codes: bool) -> pb::RewardScheme {
    pb::RewardScheme {
        id: s.id.to_string(),
        code: s.code.clone(),
        display_name: s.display_name.clone(),
        description: s.description.clone(),
        sign_up_option: match s.sign_up_option {
            SignUpOption::Auto => pb::SignUpOption::Auto,
            SignUpOption::OptIn => pb::SignUpOption::OptIn,
            SignUpOption::Closed => pb::SignUpOption::Closed,
            SignUpOption::Criteria => pb::SignUpOption::Criteria,
        } as i32,
        sign_up_codes: if show_codes {
            s.sign_up_codes.clone()
        } else {
            Vec::new()
        },
        email_domains: s.email_domains.clone(),
        sign_up_segment_ids: s.sign_up_segment_ids.iter().map(Uuid::to_string).collect(),
        max_members: s.max_members,
        member_count: s.member_count,
        active: s.active,
        etag: etag(s.revision),
        create_time: Some(to_timestamp(s.created_at)),
        update_time: Some(to_timestamp(s.updated_at)),
    }
}

fn membership_to_proto(m: &Membership) -> pb::SchemeMembership {
    pb::SchemeMembership {
        scheme_id: m.scheme_id.to_string(),
        customer_id: m.customer_id.to_string(),
        join_time: Some(to_timestamp(m.join_time)),
        leave_time: m.leave_time.map(to_timestamp),
    }
}

/// Sign-up codes are secrets of the scheme's owners: `pos` keys never see them.
fn shows_codes<T>(request: &Request<T>) -> Result<bool, Status> {
    let p = principal(request)?;
    Ok(p.roles.iter().any(|r| {
        matches!(
            r,
            Role::Admin | Role::Marketing | Role::Support | Role::Service
        )
    }))
}

fn scheme_page(size: i32, token: &str) -> Result<(u64, Option<String>), ApiError> {
    let mut v = Violations::new();
    let limit = page_size(&mut v, size);
    let after = parse_code_token(&mut v, token);
    v.finish(|| (limit, after))
}

fn id_page(size: i32, token: &str) -> Result<(u64, Option<Uuid>), ApiError> {
    let mut v = Violations::new();
    let limit = page_size(&mut v, size);
    let after = parse_page_token(&mut v, token);
    v.finish(|| (limit, after))
}

/// Identity, asked for a customer's emails when they sign up to a CLOSED scheme by email
/// domain.
#[derive(Clone)]
pub struct IdentityPeer(IdentityServiceClient<Channel>);

impl IdentityPeer {
    pub fn new(channel: Channel) -> Self {
        IdentityPeer(IdentityServiceClient::new(channel))
    }

    /// The customer's contact email and active email identifiers, with the caller's key
    /// (another partner's customer is `NOT_FOUND` there, and so here).
    async fn emails(&self, who: &Principal, customer_id: Uuid) -> Result<Vec<String>, ApiError> {
        let resp = self
            .0
            .clone()
            .get_customer(outgoing(
                identity::GetCustomerRequest {
                    customer_id: customer_id.to_string(),
                },
                who,
            ))
            .await
            .map_err(|s| ApiError::from_upstream("identity", s))?
            .into_inner();
        let mut emails: Vec<String> = resp
            .customer
            .map(|c| c.email)
            .filter(|e| !e.is_empty())
            .into_iter()
            .collect();
        emails.extend(
            resp.identifiers
                .into_iter()
                .filter(|i| {
                    i.r#type == IdentifierType::Email as i32
                        && i.state == identity::IdentifierState::Active as i32
                })
                .map(|i| i.value),
        );
        Ok(emails)
    }
}

// ---- Schemes: handlers ----

pub async fn create_scheme(
    api: &RewardsApi,
    request: Request<pb::CreateRewardSchemeRequest>,
) -> Result<Response<pb::CreateRewardSchemeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let show = shows_codes(&request)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateRewardScheme", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(p) = req.reward_scheme else {
        return Err(ApiError::invalid("reward_scheme", "is required").into());
    };
    let at = now();
    let scheme = Scheme {
        id: Uuid::now_v7(),
        code: p.code,
        display_name: p.display_name.trim().to_owned(),
        description: p.description,
        sign_up_option: sign_up_option(&mut v, "reward_scheme.sign_up_option", p.sign_up_option),
        sign_up_codes: p.sign_up_codes,
        email_domains: p.email_domains.iter().map(|d| d.to_lowercase()).collect(),
        sign_up_segment_ids: uuids(
            &mut v,
            "reward_scheme.sign_up_segment_ids",
            &p.sign_up_segment_ids,
        ),
        max_members: p.max_members,
        member_count: 0,
        active: p.active,
        revision: 1,
        created_at: at,
        updated_at: at,
    };
    scheme.validate(&mut v, "reward_scheme");
    v.into_result()?;
    let scheme: Scheme = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::insert_scheme(txn, partner_id, &scheme).await?;
            Ok(scheme)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateRewardSchemeResponse {
        reward_scheme: Some(scheme_to_proto(&scheme, show)),
    }))
}

pub async fn get_scheme(
    api: &RewardsApi,
    request: Request<pb::GetRewardSchemeRequest>,
) -> Result<Response<pb::GetRewardSchemeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let show = shows_codes(&request)?;
    let key = request.into_inner().reward_scheme_id;
    if key.is_empty() {
        return Err(ApiError::invalid("reward_scheme_id", "is required").into());
    }
    let scheme = store::find_scheme(&api.db, partner_id, &key)
        .await?
        .ok_or_else(|| not_found("reward scheme", &key))?;
    Ok(Response::new(pb::GetRewardSchemeResponse {
        reward_scheme: Some(scheme_to_proto(&scheme, show)),
    }))
}

pub async fn list_schemes(
    api: &RewardsApi,
    request: Request<pb::ListRewardSchemesRequest>,
) -> Result<Response<pb::ListRewardSchemesResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let show = shows_codes(&request)?;
    let req = request.into_inner();
    let (limit, after) = scheme_page(req.page_size, &req.page_token)?;
    let schemes =
        store::list_schemes(&api.db, partner_id, req.include_inactive, after, limit).await?;
    Ok(Response::new(pb::ListRewardSchemesResponse {
        next_page_token: next_code_token(
            schemes.len(),
            limit,
            schemes.last().map(|s| s.code.as_str()),
        ),
        reward_schemes: schemes.iter().map(|s| scheme_to_proto(s, show)).collect(),
    }))
}

pub async fn update_scheme(
    api: &RewardsApi,
    request: Request<pb::UpdateRewardSchemeRequest>,
) -> Result<Response<pb::UpdateRewardSchemeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let show = shows_codes(&request)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateRewardScheme", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.reward_scheme.unwrap_or_default();
    required(&mut v, "reward_scheme.id", &p.id);
    let paths = mask_paths(&mut v, req.update_mask, SCHEME_UPDATABLE);
    v.into_result()?;
    let (sent_etag, at) = (req.etag, now());
    let scheme: Scheme = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            let current = store::find_scheme(txn, partner_id, &p.id)
                .await?
                .ok_or_else(|| not_found("reward scheme", &p.id))?;
            check_etag(&sent_etag, &etag(current.revision), "reward scheme")?;
            let mut v = Violations::new();
            let mut s = current.clone();
            for path in &paths {
                match path.as_str() {
                    "display_name" => s.display_name = p.display_name.trim().to_owned(),
                    "description" => s.description = p.description.clone(),
                    "sign_up_option" => {
                        s.sign_up_option =
                            sign_up_option(&mut v, "reward_scheme.sign_up_option", p.sign_up_option)
                    }
                    "sign_up_codes" => s.sign_up_codes = p.sign_up_codes.clone(),
                    "email_domains" => {
                        s.email_domains = p.email_domains.iter().map(|d| d.to_lowercase()).collect()
                    }
                    "sign_up_segment_ids" => {
                        s.sign_up_segment_ids = uuids(
                            &mut v,
                            "reward_scheme.sign_up_segment_ids",
                            &p.sign_up_segment_ids,
                        )
                    }
                    "max_members" => s.max_members = p.max_members,
                    "active" => s.active = p.active,
                    _ => {}
                }
            }
            s.validate(&mut v, "reward_scheme");
            v.into_result()?;
            s.revision += 1;
            s.updated_at = at;
            store::update_scheme(txn, partner_id, &s).await?;
            Ok(s)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateRewardSchemeResponse {
        reward_scheme: Some(scheme_to_proto(&scheme, show)),
    }))
}

pub async fn delete_scheme(
    api: &RewardsApi,
    request: Request<pb::DeleteRewardSchemeRequest>,
) -> Result<Response<pb::DeleteRewardSchemeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "DeleteRewardScheme", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    required(&mut v, "reward_scheme_id", &req.reward_scheme_id);
    v.into_result()?;
    let (key, sent_etag, at) = (req.reward_scheme_id, req.etag, now());
    let (): () = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            let current = store::find_scheme(txn, partner_id, &key)
                .await?
                .ok_or_else(|| not_found("reward scheme", &key))?;
            check_etag(&sent_etag, &etag(current.revision), "reward scheme")?;
            if store::scheme_has_offers(txn, partner_id, current.id).await? {
                return Err(ApiError::precondition(
                    "SCHEME_HAS_OFFERS",
                    format!(
                        "reward scheme {:?} still has offers: delete them or move them first",
                        current.code
                    ),
                ));
            }
            store::delete_scheme(txn, partner_id, &current, at).await
        })
    })
    .await?;
    Ok(Response::new(pb::DeleteRewardSchemeResponse {}))
}

pub async fn sign_up(
    api: &RewardsApi,
    request: Request<pb::SignUpRequest>,
) -> Result<Response<pb::SignUpResponse>, Status> {
    let who = principal(&request)?;
    let partner_id = who.partner_with_role(ENROLLERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "SignUp", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    required(&mut v, "scheme_id", &req.scheme_id);
    let customer_id = uuid(&mut v, "customer_id", &req.customer_id);
    v.into_result()?;
    // A retry answers what the first call stored, even while identity or segmentation (asked
    // below, before the transaction) cannot answer.
    if let Some(membership) = idempotency::stored::<Membership>(&api.db, &scope).await? {
        return Ok(Response::new(pb::SignUpResponse {
            membership: Some(membership_to_proto(&membership)),
        }));
    }
    let (key, code, at) = (req.scheme_id, req.sign_up_code, now());
    // A CLOSED scheme with email domains asks identity for the customer's emails (with the
    // caller's key) when no valid code was given, and a CRITERIA scheme asks segmentation for
    // the customer's segments (the platform key acting for the caller's partner, as the offer
    // consumer does); both are read before the transaction, not under the partner's lock.
    // Either peer failing or missing answers UNAVAILABLE and writes nothing.
    let (mut emails, mut segments) = (Vec::new(), None);
    if let Some(scheme) = store::find_scheme(&api.db, partner_id, &key).await? {
        if needs_emails(&scheme, code.trim()) {
            emails = match &api.identity {
                Some(identity) => identity.emails(&who, customer_id).await?,
                None => {
                    return Err(ApiError::Unavailable(
                        "signing up by email domain needs the identity service \
                         (peers.identity_url)"
                            .to_owned(),
                    )
                    .into());
                }
            };
        }
        if needs_segments(&scheme) {
            segments = Some(
                api.segments
                    .of(partner_id, customer_id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::Unavailable(
                            "signing up to a CRITERIA scheme needs the segmentation service \
                             (peers.segmentation_url and auth.bootstrap_key)"
                                .to_owned(),
                        )
                    })?,
            );
        }
    }
    let membership: Membership = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            let mut scheme = store::find_scheme(txn, partner_id, &key)
                .await?
                .ok_or_else(|| not_found("reward scheme", &key))?;
            if store::standing(txn, partner_id, scheme.id, customer_id).await? == Standing::Member {
                return Err(ApiError::AlreadyExists(format!(
                    "membership of customer {customer_id} in reward scheme {:?}",
                    scheme.code
                )));
            }
            // The scheme became a CRITERIA scheme after segmentation would have been asked:
            // refused as retryable rather than decided without the customer's segments.
            if needs_segments(&scheme) && segments.is_none() {
                return Err(ApiError::Unavailable(
                    "the reward scheme changed while signing up: try again".to_owned(),
                ));
            }
            let applicant = Applicant {
                code: code.trim(),
                emails: &emails,
                segments: segments.as_deref().unwrap_or_default(),
            };
            check_sign_up(&scheme, &applicant)
                .map_err(|r| ApiError::precondition(r.reason(), r.message(&scheme)))?;
            store::join(txn, partner_id, &mut scheme, customer_id, at).await
        })
    })
    .await?;
    Ok(Response::new(pb::SignUpResponse {
        membership: Some(membership_to_proto(&membership)),
    }))
}

pub async fn leave_scheme(
    api: &RewardsApi,
    request: Request<pb::LeaveSchemeRequest>,
) -> Result<Response<pb::LeaveSchemeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(ENROLLERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "LeaveScheme", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    required(&mut v, "scheme_id", &req.scheme_id);
    let customer_id = uuid(&mut v, "customer_id", &req.customer_id);
    v.into_result()?;
    let (key, at) = (req.scheme_id, now());
    let membership: Membership = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            let mut scheme = store::find_scheme(txn, partner_id, &key)
                .await?
                .ok_or_else(|| not_found("reward scheme", &key))?;
            store::leave(txn, partner_id, &mut scheme, customer_id, at)
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "membership of customer {customer_id} in reward scheme {:?}",
                        scheme.code
                    ))
                })
        })
    })
    .await?;
    Ok(Response::new(pb::LeaveSchemeResponse {
        membership: Some(membership_to_proto(&membership)),
    }))
}

pub async fn list_memberships(
    api: &RewardsApi,
    request: Request<pb::ListSchemeMembershipsRequest>,
) -> Result<Response<pb::ListSchemeMembershipsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let limit = page_size(&mut v, req.page_size);
    let after = parse_page_token(&mut v, &req.page_token);
    let customer_id = opt_uuid(&mut v, "customer_id", &req.customer_id);
    if req.scheme_id.is_empty() && req.customer_id.is_empty() {
        v.add("scheme_id", "set scheme_id, customer_id or both");
    }
    v.into_result()?;
    let scheme_id = if req.scheme_id.is_empty() {
        None
    } else {
        // Another partner's scheme is unknown here: NOT_FOUND, like any Get.
        match store::find_scheme(&api.db, partner_id, &req.scheme_id).await? {
            Some(s) => Some(s.id),
            None => return Err(not_found("reward scheme", &req.scheme_id).into()),
        }
    };
    let filter = store::MembershipFilter {
        scheme_id,
        customer_id,
        include_left: req.include_left,
    };
    let rows = store::list_memberships(&api.db, partner_id, &filter, after, limit).await?;
    Ok(Response::new(pb::ListSchemeMembershipsResponse {
        next_page_token: next_page_token(rows.len(), limit, rows.last().map(|(id, _)| *id)),
        memberships: rows.iter().map(|(_, m)| membership_to_proto(m)).collect(),
    }))
}

// ---- Offers: conversions ----

fn scope_from(s: &PbScope) -> ProductScope {
    ProductScope {
        product_codes: s.product_codes.clone(),
        product_group_codes: s.product_group_codes.clone(),
        brand_codes: s.brand_codes.clone(),
        excluded_product_codes: s.excluded_product_codes.clone(),
    }
}

fn scope_to(s: &ProductScope) -> PbScope {
    PbScope {
        product_codes: s.product_codes.clone(),
        product_group_codes: s.product_group_codes.clone(),
        brand_codes: s.brand_codes.clone(),
        excluded_product_codes: s.excluded_product_codes.clone(),
    }
}

fn goal_group(v: &mut Violations, field: &str, g: i32) -> GoalGroup {
    match pb::GoalGroup::try_from(g).unwrap_or_default() {
        pb::GoalGroup::Purchase => GoalGroup::Purchase,
        pb::GoalGroup::Frequency => GoalGroup::Frequency,
        pb::GoalGroup::Referral => GoalGroup::Referral,
        pb::GoalGroup::Event => GoalGroup::Event,
        pb::GoalGroup::Unspecified => {
            v.add(field, "is required");
            GoalGroup::Purchase
        }
    }
}

fn goal_group_to_proto(g: GoalGroup) -> pb::GoalGroup {
    match g {
        GoalGroup::Purchase => pb::GoalGroup::Purchase,
        GoalGroup::Frequency => pb::GoalGroup::Frequency,
        GoalGroup::Referral => pb::GoalGroup::Referral,
        GoalGroup::Event => pb::GoalGroup::Event,
    }
}

fn goals_from(v: &mut Violations, prefix: &str, goals: &[pb::OfferGoal]) -> Vec<Goal> {
    let mut out = Vec::new();
    for (i, g) in goals.iter().enumerate() {
        let field = format!("{prefix}.goals[{i}]");
        out.push(match &g.kind {
            Some(PbGoalKind::Purchase(p)) => {
                let (amount, currency) = money(&p.minimum_spend).unwrap_or_default();
                if p.minimum_spend.is_none() {
                    v.add(format!("{field}.purchase.minimum_spend"), "is required");
                }
                Goal::Purchase {
                    minimum_spend_minor: amount,
                    currency_code: currency,
                    products: p.products.as_ref().map(scope_from),
                    single_purchase: p.single_purchase,
                }
            }
            Some(PbGoalKind::Frequency(f)) => Goal::Frequency {
                purchase_count: f.purchase_count,
                minimum_purchase_spend: money(&f.minimum_purchase_spend),
            },
            Some(PbGoalKind::Referral(r)) => Goal::Referral {
                referral_count: r.referral_count,
                require_purchase: r.require_purchase,
            },
            Some(PbGoalKind::Event(e)) => Goal::Event {
                event_type_code: e.event_type_code.clone(),
                occurrence_count: e.occurrence_count,
            },
            None => {
                v.add(field, "set one of purchase, frequency, referral, event");
                continue;
            }
        });
    }
    out
}

fn goal_to_proto(g: &Goal) -> pb::OfferGoal {
    pb::OfferGoal {
        kind: Some(match g {
            Goal::Purchase {
                minimum_spend_minor,
                currency_code,
                products,
                single_purchase,
            } => PbGoalKind::Purchase(pb::PurchaseGoal {
                minimum_spend: Some(to_money(&(*minimum_spend_minor, currency_code.clone()))),
                products: products.as_ref().map(scope_to),
                single_purchase: *single_purchase,
            }),
            Goal::Frequency {
                purchase_count,
                minimum_purchase_spend,
            } => PbGoalKind::Frequency(pb::FrequencyGoal {
                purchase_count: *purchase_count,
                minimum_purchase_spend: minimum_purchase_spend.as_ref().map(to_money),
            }),
            Goal::Referral {
                referral_count,
                require_purchase,
            } => PbGoalKind::Referral(pb::ReferralGoal {
                referral_count: *referral_count,
                require_purchase: *require_purchase,
            }),
            Goal::Event {
                event_type_code,
                occurrence_count,
            } => PbGoalKind::Event(pb::EventGoal {
                event_type_code: event_type_code.clone(),
                occurrence_count: *occurrence_count,
            }),
        }),
    }
}

fn award_from(v: &mut Violations, field: &str, a: Option<&pb::OfferAward>) -> Award {
    let fallback = Award {
        kind: AwardKind::Points {
            points: 1,
            points_type_id: String::new(),
        },
        validity_days: 0,
    };
    let Some(a) = a else {
        v.add(field, "is required");
        return fallback;
    };
    let kind = match &a.kind {
        Some(PbAwardKind::FixedAmount(m)) => AwardKind::FixedAmount {
            amount_minor: m.amount_minor,
            currency_code: m.currency_code.clone(),
        },
        Some(PbAwardKind::SpendBasisPoints(bp)) => AwardKind::SpendShare {
            basis_points: *bp,
            max_amount_minor: a.max_amount.as_ref().map(|m| m.amount_minor),
            currency_code: a.max_amount.as_ref().map(|m| m.currency_code.clone()),
        },
        Some(PbAwardKind::Points(p)) => AwardKind::Points {
            points: *p,
            points_type_id: a.points_type_id.clone(),
        },
        Some(PbAwardKind::RewardId(id)) => AwardKind::Voucher {
            reward_id: uuid(v, &format!("{field}.reward_id"), id),
        },
        None => {
            v.add(
                field,
                "set one of fixed_amount, spend_basis_points, points, reward_id",
            );
            return fallback;
        }
    };
    Award {
        kind,
        validity_days: a.validity_days,
    }
}

fn award_to_proto(a: &Award) -> pb::OfferAward {
    let mut out = pb::OfferAward {
        validity_days: a.validity_days,
        ..Default::default()
    };
    match &a.kind {
        AwardKind::FixedAmount {
            amount_minor,
            currency_code,
        } => {
            out.kind = Some(PbAwardKind::FixedAmount(to_money(&(
                *amount_minor,
                currency_code.clone(),
            ))))
        }
        AwardKind::SpendShare {
            basis_points,
            max_amount_minor,
            currency_code,
        } => {
            out.kind = Some(PbAwardKind::SpendBasisPoints(*basis_points));
            out.max_amount = max_amount_minor.map(|m| Money {
                currency_code: currency_code.clone().unwrap_or_default(),
                amount_minor: m,
            });
        }
        AwardKind::Points {
            points,
            points_type_id,
        } => {
            out.kind = Some(PbAwardKind::Points(*points));
            out.points_type_id = points_type_id.clone();
        }
        AwardKind::Voucher { reward_id } => {
            out.kind = Some(PbAwardKind::RewardId(reward_id.to_string()))
        }
    }
    out
}

fn offer_state(v: &mut Violations, field: &str, s: i32, default: OfferState) -> OfferState {
    match pb::OfferState::try_from(s) {
        Ok(pb::OfferState::Active) => OfferState::Active,
        Ok(pb::OfferState::Inactive) => OfferState::Inactive,
        Ok(pb::OfferState::Unspecified) => default,
        Err(_) => {
            v.add(field, "is not a known state");
            default
        }
    }
}

/// The scheme an offer names, as its UUID (codes are accepted too).
async fn scheme_ref(
    conn: &impl sea_orm::ConnectionTrait,
    partner_id: Uuid,
    key: &str,
) -> Result<Option<Uuid>, ApiError> {
    if key.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        store::find_scheme(conn, partner_id, key)
            .await?
            .ok_or_else(|| not_found("reward scheme", key))?
            .id,
    ))
}

fn spec_from(v: &mut Violations, o: &pb::RewardOffer) -> OfferSpec {
    let p = "reward_offer";
    OfferSpec {
        display_name: o.display_name.trim().to_owned(),
        description: o.description.clone(),
        state: offer_state(v, &format!("{p}.state"), o.state, OfferState::Active),
        // Resolved (and checked to exist) by the handler, inside its transaction.
        scheme_id: None,
        goal_group: goal_group(v, &format!("{p}.goal_group"), o.goal_group),
        goals: goals_from(v, p, &o.goals),
        award: award_from(v, &format!("{p}.award"), o.award.as_ref()),
        auto_redeem: o.auto_redeem,
        merchant_business_unit_id: opt_uuid(
            v,
            &format!("{p}.merchant_business_unit_id"),
            &o.merchant_business_unit_id,
        ),
        commercial_terms_id: opt_uuid(
            v,
            &format!("{p}.commercial_terms_id"),
            &o.commercial_terms_id,
        ),
        priority: o.priority,
        business_unit_ids: uuids(v, &format!("{p}.business_unit_ids"), &o.business_unit_ids),
        segment_ids: uuids(v, &format!("{p}.segment_ids"), &o.segment_ids),
        max_awards_per_customer: o.max_awards_per_customer,
        period_days: o.period_days,
        validity: Validity {
            from: time(
                v,
                &format!("{p}.valid_from_time"),
                o.valid_from_time.as_ref(),
            ),
            until: time(
                v,
                &format!("{p}.valid_until_time"),
                o.valid_until_time.as_ref(),
            ),
        },
    }
}

fn offer_to_proto(o: &Offer) -> pb::RewardOffer {
    let s = &o.spec;
    pb::RewardOffer {
        id: o.id.to_string(),
        display_name: s.display_name.clone(),
        description: s.description.clone(),
        state: match s.state {
            OfferState::Active => pb::OfferState::Active,
            OfferState::Inactive => pb::OfferState::Inactive,
        } as i32,
        scheme_id: s.scheme_id.map(|i| i.to_string()).unwrap_or_default(),
        goal_group: goal_group_to_proto(s.goal_group) as i32,
        goals: s.goals.iter().map(goal_to_proto).collect(),
        award: Some(award_to_proto(&s.award)),
        auto_redeem: s.auto_redeem,
        merchant_business_unit_id: s
            .merchant_business_unit_id
            .map(|i| i.to_string())
            .unwrap_or_default(),
        commercial_terms_id: s
            .commercial_terms_id
            .map(|i| i.to_string())
            .unwrap_or_default(),
        priority: s.priority,
        business_unit_ids: s.business_unit_ids.iter().map(Uuid::to_string).collect(),
        segment_ids: s.segment_ids.iter().map(Uuid::to_string).collect(),
        max_awards_per_customer: s.max_awards_per_customer,
        period_days: s.period_days,
        valid_from_time: s.validity.from.map(to_timestamp),
        valid_until_time: s.validity.until.map(to_timestamp),
        etag: etag(o.revision),
        create_time: Some(to_timestamp(o.created_at)),
        update_time: Some(to_timestamp(o.updated_at)),
    }
}

/// The rules of a merchant's offer: its terms exist, are the merchant's, and allow one more
/// active offer now.
async fn check_merchant(
    conn: &impl sea_orm::ConnectionTrait,
    partner_id: Uuid,
    offer_id: Uuid,
    spec: &OfferSpec,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let (Some(merchant), Some(terms_id)) =
        (spec.merchant_business_unit_id, spec.commercial_terms_id)
    else {
        return Ok(());
    };
    let terms = store::find_terms(conn, partner_id, terms_id)
        .await?
        .filter(|t| t.spec.merchant_business_unit_id == merchant)
        .ok_or_else(|| not_found("commercial terms of the merchant", &terms_id.to_string()))?;
    if spec.state != OfferState::Active {
        return Ok(());
    }
    let active = store::active_merchant_offers(conn, partner_id, merchant, Some(offer_id)).await?;
    check_merchant_offer(&terms.spec, at, active)
        .map_err(|(reason, message)| ApiError::precondition(reason, message))
}

/// A voucher award names a reward of the partner (another partner's is `NOT_FOUND`) whose
/// vouchers can be issued to a customer.
async fn check_voucher_award(
    conn: &impl sea_orm::ConnectionTrait,
    partner_id: Uuid,
    spec: &OfferSpec,
) -> Result<(), ApiError> {
    let AwardKind::Voucher { reward_id } = spec.award.kind else {
        return Ok(());
    };
    let reward = vstore::reward_for_vouchers(conn, partner_id, reward_id, false)
        .await?
        .ok_or_else(|| not_found("reward", &reward_id.to_string()))?;
    if !voucher_award_allowed(reward.reward_type) {
        return Err(ApiError::invalid(
            "reward_offer.award.reward_id",
            format!(
                "is a {} reward: only campaign, coupon and simple rewards can be issued to a \
                 customer as an award",
                reward.reward_type.as_str()
            ),
        ));
    }
    Ok(())
}

// ---- Offers: handlers ----

pub async fn create_offer(
    api: &RewardsApi,
    request: Request<pb::CreateRewardOfferRequest>,
) -> Result<Response<pb::CreateRewardOfferResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateRewardOffer", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(p) = req.reward_offer else {
        return Err(ApiError::invalid("reward_offer", "is required").into());
    };
    let spec = spec_from(&mut v, &p);
    spec.validate(&mut v, "reward_offer");
    v.into_result()?;
    let at = now();
    let mut offer = Offer {
        id: Uuid::now_v7(),
        spec,
        revision: 1,
        created_at: at,
        updated_at: at,
    };
    let offer: Offer = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            offer.spec.scheme_id = scheme_ref(txn, partner_id, &p.scheme_id).await?;
            check_voucher_award(txn, partner_id, &offer.spec).await?;
            check_merchant(txn, partner_id, offer.id, &offer.spec, at).await?;
            store::insert_offer(txn, partner_id, &offer).await?;
            Ok(offer)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateRewardOfferResponse {
        reward_offer: Some(offer_to_proto(&offer)),
    }))
}

fn offer_id(key: &str) -> Result<Uuid, ApiError> {
    if key.is_empty() {
        return Err(ApiError::invalid("reward_offer_id", "is required"));
    }
    // Not a UUID: no such offer (ids are never anything else).
    Uuid::parse_str(key).map_err(|_| not_found("reward offer", key))
}

pub async fn get_offer(
    api: &RewardsApi,
    request: Request<pb::GetRewardOfferRequest>,
) -> Result<Response<pb::GetRewardOfferResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let key = request.into_inner().reward_offer_id;
    let id = offer_id(&key)?;
    let offer = store::find_offer(&api.db, partner_id, id)
        .await?
        .ok_or_else(|| not_found("reward offer", &key))?;
    Ok(Response::new(pb::GetRewardOfferResponse {
        reward_offer: Some(offer_to_proto(&offer)),
    }))
}

pub async fn list_offers(
    api: &RewardsApi,
    request: Request<pb::ListRewardOffersRequest>,
) -> Result<Response<pb::ListRewardOffersResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let req = request.into_inner();
    let (limit, after) = id_page(req.page_size, &req.page_token)?;
    let mut v = Violations::new();
    let merchant = opt_uuid(
        &mut v,
        "merchant_business_unit_id",
        &req.merchant_business_unit_id,
    );
    let state = match pb::OfferState::try_from(req.state) {
        Ok(pb::OfferState::Unspecified) => None,
        _ => Some(offer_state(&mut v, "state", req.state, OfferState::Active)),
    };
    let group = match pb::GoalGroup::try_from(req.goal_group) {
        Ok(pb::GoalGroup::Unspecified) => None,
        Ok(_) => Some(
            goal_group(&mut v, "goal_group", req.goal_group)
                .as_str()
                .to_owned(),
        ),
        Err(_) => {
            v.add("goal_group", "is not a known goal group");
            None
        }
    };
    v.into_result()?;
    let scheme_id = match scheme_ref(&api.db, partner_id, &req.scheme_id).await {
        Ok(s) => s,
        Err(ApiError::NotFound(_)) => {
            return Ok(Response::new(pb::ListRewardOffersResponse::default()));
        }
        Err(e) => return Err(e.into()),
    };
    let filter = store::OfferFilter {
        scheme_id,
        state,
        goal_group: group,
        merchant_business_unit_id: merchant,
    };
    let offers = store::list_offers(&api.db, partner_id, &filter, after, limit).await?;
    Ok(Response::new(pb::ListRewardOffersResponse {
        next_page_token: next_page_token(offers.len(), limit, offers.last().map(|o| o.id)),
        reward_offers: offers.iter().map(offer_to_proto).collect(),
    }))
}

pub async fn update_offer(
    api: &RewardsApi,
    request: Request<pb::UpdateRewardOfferRequest>,
) -> Result<Response<pb::UpdateRewardOfferResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateRewardOffer", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.reward_offer.unwrap_or_default();
    required(&mut v, "reward_offer.id", &p.id);
    let paths = mask_paths(&mut v, req.update_mask, OFFER_UPDATABLE);
    v.into_result()?;
    let id = offer_id(&p.id)?;
    let (sent_etag, at) = (req.etag, now());
    let offer: Offer = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            let current = store::find_offer(txn, partner_id, id)
                .await?
                .ok_or_else(|| not_found("reward offer", &p.id))?;
            check_etag(&sent_etag, &etag(current.revision), "reward offer")?;
            let mut v = Violations::new();
            let new = spec_from(&mut v, &p);
            // Only the masked fields' violations count.
            let masked: Vec<_> = v
                .into_vec()
                .into_iter()
                .filter(|f| {
                    paths.iter().any(|path| {
                        f.field == format!("reward_offer.{path}")
                            || f.field.starts_with(&format!("reward_offer.{path}."))
                            || f.field.starts_with(&format!("reward_offer.{path}["))
                    })
                })
                .collect();
            let mut v = Violations::new();
            for f in masked {
                v.add(f.field, f.description);
            }
            let mut s = current.spec.clone();
            for path in &paths {
                match path.as_str() {
                    "display_name" => s.display_name = new.display_name.clone(),
                    "description" => s.description = new.description.clone(),
                    "state" => {
                        s.state =
                            offer_state(&mut v, "reward_offer.state", p.state, current.spec.state)
                    }
                    "scheme_id" => s.scheme_id = scheme_ref(txn, partner_id, &p.scheme_id).await?,
                    "goal_group" => s.goal_group = new.goal_group,
                    "goals" => s.goals = new.goals.clone(),
                    "award" => s.award = new.award.clone(),
                    "auto_redeem" => s.auto_redeem = new.auto_redeem,
                    "merchant_business_unit_id" => {
                        s.merchant_business_unit_id = new.merchant_business_unit_id
                    }
                    "commercial_terms_id" => s.commercial_terms_id = new.commercial_terms_id,
                    "priority" => s.priority = new.priority,
                    "business_unit_ids" => s.business_unit_ids = new.business_unit_ids.clone(),
                    "segment_ids" => s.segment_ids = new.segment_ids.clone(),
                    "max_awards_per_customer" => {
                        s.max_awards_per_customer = new.max_awards_per_customer
                    }
                    "period_days" => s.period_days = new.period_days,
                    "valid_from_time" => s.validity.from = new.validity.from,
                    "valid_until_time" => s.validity.until = new.validity.until,
                    _ => {}
                }
            }
            s.validate(&mut v, "reward_offer");
            v.into_result()?;
            check_voucher_award(txn, partner_id, &s).await?;
            check_merchant(txn, partner_id, id, &s, at).await?;
            let offer = Offer {
                spec: s,
                revision: current.revision + 1,
                updated_at: at,
                ..current
            };
            store::update_offer(txn, partner_id, &offer).await?;
            Ok(offer)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateRewardOfferResponse {
        reward_offer: Some(offer_to_proto(&offer)),
    }))
}

pub async fn delete_offer(
    api: &RewardsApi,
    request: Request<pb::DeleteRewardOfferRequest>,
) -> Result<Response<pb::DeleteRewardOfferResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "DeleteRewardOffer", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    required(&mut v, "reward_offer_id", &req.reward_offer_id);
    v.into_result()?;
    let id = offer_id(&req.reward_offer_id)?;
    let (key, sent_etag) = (req.reward_offer_id, req.etag);
    let (): () = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            let current = store::find_offer(txn, partner_id, id)
                .await?
                .ok_or_else(|| not_found("reward offer", &key))?;
            check_etag(&sent_etag, &etag(current.revision), "reward offer")?;
            if store::offer_has_awards(txn, partner_id, id).await? {
                return Err(ApiError::precondition(
                    "OFFER_HAS_AWARDS",
                    "the reward offer has awarded customers: make it INACTIVE instead",
                ));
            }
            store::delete_offer(txn, partner_id, id).await
        })
    })
    .await?;
    Ok(Response::new(pb::DeleteRewardOfferResponse {}))
}

fn progress_to_proto(offer: &Offer, customer_id: Uuid, p: &Progress) -> pb::OfferProgress {
    pb::OfferProgress {
        offer_id: offer.id.to_string(),
        customer_id: customer_id.to_string(),
        goals: offer
            .spec
            .goals
            .iter()
            .enumerate()
            .map(|(i, g)| pb::GoalProgress {
                goal_index: i as i32,
                current_value: p.values.get(i).copied().unwrap_or(0),
                target_value: g.target(),
            })
            .collect(),
        award_count: p.award_count,
        last_award_time: p.last_award_at.map(to_timestamp),
        period_end_time: p.period_end.map(to_timestamp),
    }
}

pub async fn list_progress(
    api: &RewardsApi,
    request: Request<pb::ListOfferProgressRequest>,
) -> Result<Response<pb::ListOfferProgressResponse>, Status> {
    let who = principal(&request)?;
    let partner_id = who.partner_with_role(READERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let customer_id = uuid(&mut v, "customer_id", &req.customer_id);
    let limit = page_size(&mut v, req.page_size);
    let after = parse_page_token(&mut v, &req.page_token);
    v.into_result()?;
    let mut offers =
        store::eligible_offers(&api.db, partner_id, customer_id, after, Some(limit)).await?;
    let next = next_page_token(offers.len(), limit, offers.last().map(|o| o.id));
    // Offers restricted to segments are listed for their members only (segmentation asked
    // with the caller's key; without segmentation, for nobody, as the consumer counts them).
    if offers.iter().any(|o| !o.spec.segment_ids.is_empty()) {
        let member_of = match &api.customer_peers {
            Some(peers) => Some(peers.segments(&who, customer_id).await?),
            None => None,
        };
        offers.retain(|o| o.spec.admits(member_of.as_deref()));
    }
    let ids: Vec<Uuid> = offers.iter().map(|o| o.id).collect();
    let progress = store::progress_of(&api.db, partner_id, customer_id, &ids).await?;
    Ok(Response::new(pb::ListOfferProgressResponse {
        next_page_token: next,
        progress: offers
            .iter()
            .map(|o| {
                let p = progress.get(&o.id).cloned().unwrap_or_default();
                progress_to_proto(o, customer_id, &p)
            })
            .collect(),
    }))
}

// ---- Commercial terms ----

fn terms_from(v: &mut Violations, t: &pb::CommercialTerms) -> TermsSpec {
    let p = "commercial_terms";
    TermsSpec {
        merchant_business_unit_id: uuid(
            v,
            &format!("{p}.merchant_business_unit_id"),
            &t.merchant_business_unit_id,
        ),
        display_name: t.display_name.trim().to_owned(),
        allow_merchant_offers: t.allow_merchant_offers,
        max_active_offers: t.max_active_offers,
        merchant_funding_basis_points: t.merchant_funding_basis_points,
        transaction_fee_basis_points: t.transaction_fee_basis_points,
        transaction_fee: money(&t.transaction_fee),
        network_spend: t.network_spend,
        settlement_period_days: t.settlement_period_days,
        validity: Validity {
            from: time(
                v,
                &format!("{p}.valid_from_time"),
                t.valid_from_time.as_ref(),
            ),
            until: time(
                v,
                &format!("{p}.valid_until_time"),
                t.valid_until_time.as_ref(),
            ),
        },
    }
}

fn terms_to_proto(t: &Terms) -> pb::CommercialTerms {
    let s = &t.spec;
    pb::CommercialTerms {
        id: t.id.to_string(),
        merchant_business_unit_id: s.merchant_business_unit_id.to_string(),
        display_name: s.display_name.clone(),
        allow_merchant_offers: s.allow_merchant_offers,
        max_active_offers: s.max_active_offers,
        merchant_funding_basis_points: s.merchant_funding_basis_points,
        transaction_fee_basis_points: s.transaction_fee_basis_points,
        transaction_fee: s.transaction_fee.as_ref().map(to_money),
        network_spend: s.network_spend,
        settlement_period_days: s.settlement_period_days,
        valid_from_time: s.validity.from.map(to_timestamp),
        valid_until_time: s.validity.until.map(to_timestamp),
        etag: etag(t.revision),
        create_time: Some(to_timestamp(t.created_at)),
        update_time: Some(to_timestamp(t.updated_at)),
    }
}

async fn check_overlap(
    conn: &impl sea_orm::ConnectionTrait,
    partner_id: Uuid,
    spec: &TermsSpec,
    except: Option<Uuid>,
) -> Result<(), ApiError> {
    match store::overlapping_terms(conn, partner_id, spec, except).await? {
        Some(other) => Err(ApiError::precondition(
            "TERMS_OVERLAP",
            format!(
                "commercial terms {} of the same merchant overlap in validity",
                other.id
            ),
        )),
        None => Ok(()),
    }
}

fn terms_id(field: &str, key: &str) -> Result<Uuid, ApiError> {
    if key.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    Uuid::parse_str(key).map_err(|_| not_found("commercial terms", key))
}

pub async fn create_terms(
    api: &RewardsApi,
    request: Request<pb::CreateCommercialTermsRequest>,
) -> Result<Response<pb::CreateCommercialTermsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Admin])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "CreateCommercialTerms",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(p) = req.commercial_terms else {
        return Err(ApiError::invalid("commercial_terms", "is required").into());
    };
    let spec = terms_from(&mut v, &p);
    spec.validate(&mut v, "commercial_terms");
    v.into_result()?;
    let at = now();
    let terms = Terms {
        id: Uuid::now_v7(),
        spec,
        revision: 1,
        created_at: at,
        updated_at: at,
    };
    let terms: Terms = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            check_overlap(txn, partner_id, &terms.spec, None).await?;
            store::insert_terms(txn, partner_id, &terms).await?;
            Ok(terms)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateCommercialTermsResponse {
        commercial_terms: Some(terms_to_proto(&terms)),
    }))
}

pub async fn get_terms(
    api: &RewardsApi,
    request: Request<pb::GetCommercialTermsRequest>,
) -> Result<Response<pb::GetCommercialTermsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let key = request.into_inner().commercial_terms_id;
    let id = terms_id("commercial_terms_id", &key)?;
    let terms = store::find_terms(&api.db, partner_id, id)
        .await?
        .ok_or_else(|| not_found("commercial terms", &key))?;
    Ok(Response::new(pb::GetCommercialTermsResponse {
        commercial_terms: Some(terms_to_proto(&terms)),
    }))
}

pub async fn list_terms(
    api: &RewardsApi,
    request: Request<pb::ListCommercialTermsRequest>,
) -> Result<Response<pb::ListCommercialTermsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let req = request.into_inner();
    let (limit, after) = id_page(req.page_size, &req.page_token)?;
    let mut v = Violations::new();
    let merchant = opt_uuid(
        &mut v,
        "merchant_business_unit_id",
        &req.merchant_business_unit_id,
    );
    v.into_result()?;
    let terms = store::list_terms(&api.db, partner_id, merchant, after, limit).await?;
    Ok(Response::new(pb::ListCommercialTermsResponse {
        next_page_token: next_page_token(terms.len(), limit, terms.last().map(|t| t.id)),
        commercial_terms: terms.iter().map(terms_to_proto).collect(),
    }))
}

pub async fn update_terms(
    api: &RewardsApi,
    request: Request<pb::UpdateCommercialTermsRequest>,
) -> Result<Response<pb::UpdateCommercialTermsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Admin])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "UpdateCommercialTerms",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.commercial_terms.unwrap_or_default();
    required(&mut v, "commercial_terms.id", &p.id);
    let paths = mask_paths(&mut v, req.update_mask, TERMS_UPDATABLE);
    v.into_result()?;
    let id = terms_id("commercial_terms.id", &p.id)?;
    let (sent_etag, at) = (req.etag, now());
    let terms: Terms = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            let current = store::find_terms(txn, partner_id, id)
                .await?
                .ok_or_else(|| not_found("commercial terms", &p.id))?;
            check_etag(&sent_etag, &etag(current.revision), "commercial terms")?;
            let mut v = Violations::new();
            let new = terms_from(&mut Violations::new(), &p);
            let mut s = current.spec.clone();
            for path in &paths {
                match path.as_str() {
                    "display_name" => s.display_name = new.display_name.clone(),
                    "allow_merchant_offers" => s.allow_merchant_offers = new.allow_merchant_offers,
                    "max_active_offers" => s.max_active_offers = new.max_active_offers,
                    "merchant_funding_basis_points" => {
                        s.merchant_funding_basis_points = new.merchant_funding_basis_points
                    }
                    "transaction_fee_basis_points" => {
                        s.transaction_fee_basis_points = new.transaction_fee_basis_points
                    }
                    "transaction_fee" => s.transaction_fee = new.transaction_fee.clone(),
                    "network_spend" => s.network_spend = new.network_spend,
                    "settlement_period_days" => {
                        s.settlement_period_days = new.settlement_period_days
                    }
                    "valid_from_time" => {
                        s.validity.from = time(
                            &mut v,
                            "commercial_terms.valid_from_time",
                            p.valid_from_time.as_ref(),
                        )
                    }
                    "valid_until_time" => {
                        s.validity.until = time(
                            &mut v,
                            "commercial_terms.valid_until_time",
                            p.valid_until_time.as_ref(),
                        )
                    }
                    _ => {}
                }
            }
            s.validate(&mut v, "commercial_terms");
            v.into_result()?;
            check_overlap(txn, partner_id, &s, Some(id)).await?;
            let terms = Terms {
                spec: s,
                revision: current.revision + 1,
                updated_at: at,
                ..current
            };
            store::update_terms(txn, partner_id, &terms).await?;
            Ok(terms)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateCommercialTermsResponse {
        commercial_terms: Some(terms_to_proto(&terms)),
    }))
}

pub async fn delete_terms(
    api: &RewardsApi,
    request: Request<pb::DeleteCommercialTermsRequest>,
) -> Result<Response<pb::DeleteCommercialTermsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Admin])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "DeleteCommercialTerms",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    required(&mut v, "commercial_terms_id", &req.commercial_terms_id);
    v.into_result()?;
    let id = terms_id("commercial_terms_id", &req.commercial_terms_id)?;
    let (key, sent_etag) = (req.commercial_terms_id, req.etag);
    let (): () = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            let current = store::find_terms(txn, partner_id, id)
                .await?
                .ok_or_else(|| not_found("commercial terms", &key))?;
            check_etag(&sent_etag, &etag(current.revision), "commercial terms")?;
            if store::terms_in_use(txn, partner_id, id).await? {
                return Err(ApiError::precondition(
                    "TERMS_IN_USE",
                    "offers fall under these commercial terms: delete or move them first",
                ));
            }
            store::delete_terms(txn, partner_id, id).await
        })
    })
    .await?;
    Ok(Response::new(pb::DeleteCommercialTermsResponse {}))
}
