//! gRPC adapter of the voucher RPCs: issue, get, list, validate, reserve, release, redeem,
//! cancel, reinstate and bulk code generation; and the voucher settings of a reward.
use chrono::{DateTime, Duration, Utc};
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::check_idempotency_key,
    events,
    idempotency::{self, IdempotencyScope},
    paging::{next_page_token, page_size, parse_page_token},
    time::to_timestamp,
};
use loyalty_proto::{events::v1 as ev, rewards::v1 as pb};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{RewardsApi, parse_time};
use crate::{
    domain::{
        payments::{PriceDue, keys, points_at_issue, points_at_redemption, price_due},
        vouchers::{
            CodeRequest, CodeSpec, ShownState, Usage, Voucher, VoucherRules, VoucherSource,
            VoucherState,
            batch::{BatchAnswer, BatchOrder, BatchRequest},
            normalise_code, reason, valid_code, voucher_validity,
        },
    },
    store::{
        self,
        vouchers::{
            self as vstore, GeneratedBatch, IssueOrder, RewardForVouchers, VoucherKey, generated,
        },
    },
};

/// Who may issue vouchers (the cash desk at checkout, campaigns, operators).
const ISSUERS: &[Role] = &[Role::Pos, Role::Marketing, Role::Service, Role::Support];
/// Who may use vouchers at a checkout (validate, reserve, release, redeem).
const TILLS: &[Role] = &[Role::Pos, Role::Service, Role::Support];
/// Who may read vouchers.
const READERS: &[Role] = &[Role::Pos, Role::Marketing, Role::Service, Role::Support];
/// Who may cancel and reinstate.
const OPERATORS: &[Role] = &[Role::Pos, Role::Marketing, Role::Service, Role::Support];

/// Default hold of a reservation.
const DEFAULT_HOLD_SECONDS: i64 = 900;

// ---- reward settings ----

/// The voucher settings of a reward as sent in CreateReward.
pub(super) fn rules_from_proto(v: &mut Violations, r: &pb::Reward) -> VoucherRules {
    let mut business_unit_ids = Vec::new();
    for (i, s) in r.business_unit_ids.iter().enumerate() {
        match Uuid::parse_str(s) {
            Ok(id) if !business_unit_ids.contains(&id) => business_unit_ids.push(id),
            Ok(_) => {}
            Err(_) => v.add(
                format!("reward.business_unit_ids[{i}]"),
                "must be a business unit UUID",
            ),
        }
    }
    let mut channels = Vec::new();
    for (i, c) in r.channels.iter().enumerate() {
        match loyalty_proto::types::v1::SalesChannel::try_from(*c) {
            Ok(ch) if ch != loyalty_proto::types::v1::SalesChannel::Unspecified => {
                if !channels.contains(c) {
                    channels.push(*c);
                }
            }
            _ => v.add(format!("reward.channels[{i}]"), "must be a sales channel"),
        }
    }
    let rules = VoucherRules {
        points_price: r.points_price,
        validity_days: r.voucher_validity_days,
        max_per_customer: r.max_vouchers_per_customer,
        max_total: r.max_vouchers_total,
        code_prefix: r.voucher_code_prefix.trim().to_ascii_uppercase(),
        business_unit_ids,
        channels,
    };
    rules.validate(v);
    rules
}

/// Writes the voucher settings into a reward message.
pub(super) fn rules_into_proto(r: &VoucherRules, out: &mut pb::Reward) {
    out.points_price = r.points_price;
    out.voucher_validity_days = r.validity_days;
    out.max_vouchers_per_customer = r.max_per_customer;
    out.max_vouchers_total = r.max_total;
    out.voucher_code_prefix = r.code_prefix.clone();
    out.business_unit_ids = r.business_unit_ids.iter().map(Uuid::to_string).collect();
    out.channels = r.channels.clone();
}

// ---- conversions ----

fn shown_state_to_proto(s: ShownState) -> pb::VoucherState {
    match s {
        ShownState::Active => pb::VoucherState::Active,
        ShownState::Reserved => pb::VoucherState::Reserved,
        ShownState::Redeemed => pb::VoucherState::Redeemed,
        ShownState::Cancelled => pb::VoucherState::Cancelled,
        ShownState::Expired => pb::VoucherState::Expired,
    }
}

fn source_to_proto(s: VoucherSource) -> pb::VoucherSource {
    match s {
        VoucherSource::CashDesk => pb::VoucherSource::CashDesk,
        VoucherSource::Campaign => pb::VoucherSource::Campaign,
        VoucherSource::Workflow => pb::VoucherSource::Workflow,
        VoucherSource::Catalogue => pb::VoucherSource::Catalogue,
        VoucherSource::Gift => pb::VoucherSource::Gift,
        VoucherSource::Manual => pb::VoucherSource::Manual,
        VoucherSource::Offer => pb::VoucherSource::Offer,
    }
}

fn source_from_proto(s: i32) -> Option<VoucherSource> {
    Some(match pb::VoucherSource::try_from(s).ok()? {
        pb::VoucherSource::CashDesk => VoucherSource::CashDesk,
        pb::VoucherSource::Campaign => VoucherSource::Campaign,
        pb::VoucherSource::Workflow => VoucherSource::Workflow,
        pb::VoucherSource::Catalogue => VoucherSource::Catalogue,
        pb::VoucherSource::Gift => VoucherSource::Gift,
        pb::VoucherSource::Manual => VoucherSource::Manual,
        pb::VoucherSource::Offer => VoucherSource::Offer,
        pb::VoucherSource::Unspecified => return None,
    })
}

/// A voucher with the name of its reward, as answered (and stored for idempotent retries).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shown {
    voucher: Voucher,
    reward_name: String,
}

fn to_proto(v: &Voucher, reward_name: &str, at: DateTime<Utc>) -> pb::Voucher {
    let reserved = v.reserved_at(at);
    pb::Voucher {
        id: v.id.to_string(),
        code: v.code.clone(),
        reward_id: v.reward_id.to_string(),
        reward_display_name: reward_name.to_owned(),
        customer_id: v.customer_id.map(|c| c.to_string()).unwrap_or_default(),
        state: shown_state_to_proto(v.shown_state(at)) as i32,
        source: source_to_proto(v.source) as i32,
        source_id: v.source_id.clone(),
        valid_from_time: v.validity.from.map(to_timestamp),
        valid_until_time: v.validity.until.map(to_timestamp),
        value: v.value.as_ref().map(super::rewards::money),
        points_paid: v.points_paid,
        gift_recipient_email: v.gift_recipient_email.clone(),
        gift_recipient_name: v.gift_recipient_name.clone(),
        issue_time: Some(to_timestamp(v.issued_at)),
        redeem_time: v.redeemed_at.map(to_timestamp),
        redeem_transaction_id: v.redeem_transaction_id.clone().unwrap_or_default(),
        redeem_business_unit_id: v
            .redeem_business_unit_id
            .map(|b| b.to_string())
            .unwrap_or_default(),
        cancel_time: v.cancelled_at.map(to_timestamp),
        cancel_reason: v.cancel_reason.clone().unwrap_or_default(),
        reserve_transaction_id: if reserved {
            v.reserve_transaction_id.clone().unwrap_or_default()
        } else {
            String::new()
        },
        reserve_expire_time: if reserved {
            v.reserve_until.map(to_timestamp)
        } else {
            None
        },
    }
}

fn shown_to_proto(s: &Shown) -> pb::Voucher {
    to_proto(&s.voucher, &s.reward_name, Utc::now())
}

// ---- request parts ----

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

fn required_uuid(v: &mut Violations, field: &str, s: &str) -> Uuid {
    if s.is_empty() {
        v.add(field, "is required");
        return Uuid::nil();
    }
    optional_uuid(v, field, s).unwrap_or_default()
}

fn code(v: &mut Violations, field: &str, s: &str) -> String {
    let c = normalise_code(s);
    if c.is_empty() {
        v.add(field, "is required");
    } else if !valid_code(&c) {
        v.add(field, "must be 8..32 characters A-Z, 0-9 or -");
    }
    c
}

fn text(v: &mut Violations, field: &str, s: &str, max: usize) -> String {
    let t = s.trim();
    if !(1..=max).contains(&t.chars().count()) {
        v.add(field, format!("must be 1..{max} characters"));
    }
    t.to_owned()
}

fn channel(v: &mut Violations, c: i32) -> Option<i32> {
    if c == 0 {
        return None;
    }
    if loyalty_proto::types::v1::SalesChannel::try_from(c).is_err() {
        v.add("channel", "must be a sales channel");
    }
    Some(c)
}

fn usage(
    v: &mut Violations,
    customer_id: &str,
    business_unit_id: &str,
    ch: i32,
    transaction_id: Option<String>,
) -> Usage {
    Usage {
        customer_id: optional_uuid(v, "customer_id", customer_id),
        business_unit_id: optional_uuid(v, "business_unit_id", business_unit_id),
        channel: channel(v, ch),
        transaction_id,
    }
}

fn refuse(r: &'static str) -> ApiError {
    let message = match r {
        reason::ALREADY_REDEEMED => "the voucher was already redeemed",
        reason::EXPIRED => "the voucher's validity has ended",
        reason::NOT_YET_VALID => "the voucher is not valid yet",
        reason::CANCELLED => "the voucher was cancelled",
        reason::OTHER_CUSTOMER => "the voucher belongs to another customer",
        reason::NOT_VALID_HERE => "the voucher is not valid in this business unit or channel",
        reason::RESERVED => "the voucher is reserved by another checkout transaction",
        reason::NOT_RESERVED => "the voucher is not reserved",
        reason::NOT_REDEEMED => "the voucher is not redeemed",
        reason::TRANSACTION_MISMATCH => "the transaction_id does not match the voucher's",
        _ => "the voucher cannot be used",
    };
    ApiError::precondition(r, message)
}

/// Where in a voucher's life a payment is taken, to undo the right change when it fails.
#[derive(Debug, Clone, Copy)]
enum PaidAt {
    Issue,
    Redemption,
}

/// Settles the payment of a committed voucher change: captures the hold. A hold that is no
/// longer held (it lapsed before a retry captured it, or it was released) took nothing, so the
/// voucher change is compensated (issue → cancelled, redemption → undone) and refused. Other
/// failures leave the change and its hold in place: a retry with the same idempotency key
/// captures it.
async fn settle(
    api: &RewardsApi,
    who: &loyalty_platform::Principal,
    partner_id: Uuid,
    shown: &Shown,
    hold: Option<Uuid>,
    at: PaidAt,
) -> Result<(), ApiError> {
    let Some(reservation) = hold else {
        return Ok(());
    };
    let voucher = &shown.voucher;
    if voucher.payment() != Some(reservation) {
        // The answer is another attempt's (stored before this one's hold was used): this hold
        // pays for nothing.
        api.wallet.release(who, reservation).await;
        return Ok(());
    }
    match api.wallet.capture(who, voucher.id, reservation).await {
        Ok(_) => Ok(()),
        Err(e) if super::payments::not_held(&e) => {
            compensate(api, partner_id, voucher.id, reservation, at).await?;
            Err(ApiError::precondition(
                reason::POINTS_PAYMENT_UNAVAILABLE,
                "the points held for this voucher were given back before they were taken; \
                 the voucher change was undone: retry with a new idempotency_key",
            ))
        }
        Err(e) => Err(e),
    }
}

/// Undoes a voucher change whose points were never taken (one transaction, with its event).
async fn compensate(
    api: &RewardsApi,
    partner_id: Uuid,
    voucher_id: Uuid,
    reservation: Uuid,
    at: PaidAt,
) -> Result<(), ApiError> {
    let txn = loyalty_platform::db::begin_write(&api.db).await?;
    let mut voucher = find(&txn, partner_id, &VoucherKey::Id(voucher_id), true).await?;
    if voucher.payment() != Some(reservation) {
        // Already compensated by an earlier retry.
        return Ok(());
    }
    let customer_id = voucher
        .customer_id
        .map(|c| c.to_string())
        .unwrap_or_default();
    match at {
        PaidAt::Issue => {
            voucher
                .cancel("points payment failed", Utc::now())
                .map_err(refuse)?;
            voucher.refunded();
            vstore::update_voucher(&txn, partner_id, &voucher).await?;
            events::enqueue(
                &txn,
                Some(partner_id),
                &ev::VoucherCancelled {
                    voucher_id: voucher_id.to_string(),
                    customer_id,
                    reason: "points payment failed".to_owned(),
                },
            )
            .await?;
        }
        PaidAt::Redemption => {
            let transaction = voucher.redeem_transaction_id.clone().unwrap_or_default();
            voucher.reinstate(&transaction).map_err(refuse)?;
            voucher.refunded();
            vstore::update_voucher(&txn, partner_id, &voucher).await?;
            events::enqueue(
                &txn,
                Some(partner_id),
                &ev::VoucherReinstated {
                    voucher_id: voucher_id.to_string(),
                    customer_id,
                    transaction_id: transaction,
                },
            )
            .await?;
        }
    }
    txn.commit().await?;
    Ok(())
}

async fn reward(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    lock: bool,
) -> Result<RewardForVouchers, ApiError> {
    vstore::reward_for_vouchers(conn, partner_id, reward_id, lock)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("reward {reward_id}")))
}

/// A voucher of the partner by key, locked for the transaction when `lock`.
async fn find(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    key: &VoucherKey,
    lock: bool,
) -> Result<Voucher, ApiError> {
    vstore::voucher(conn, partner_id, key, lock)
        .await?
        .ok_or_else(|| match key {
            VoucherKey::Id(id) => ApiError::NotFound(format!("voucher {id}")),
            VoucherKey::Code(c) => ApiError::NotFound(format!("voucher with code {c}")),
        })
}

/// Display names of rewards by id.
async fn reward_names(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<std::collections::HashMap<Uuid, String>, ApiError> {
    let mut ids: Vec<Uuid> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    // Most customers hold no voucher: checkout asks on every Evaluate, so ask nothing then.
    if ids.is_empty() {
        return Ok(Default::default());
    }
    Ok(store::rewards::Entity::find()
        .filter(store::rewards::Column::PartnerId.eq(partner_id))
        .filter(store::rewards::Column::Id.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.id, m.display_name))
        .collect())
}

/// A voucher with its reward's name, as the RPCs answer it.
async fn shown(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    voucher: Voucher,
) -> Result<Shown, ApiError> {
    let reward_name = reward_names(conn, partner_id, [voucher.reward_id])
        .await?
        .remove(&voucher.reward_id)
        .unwrap_or_default();
    Ok(Shown {
        voucher,
        reward_name,
    })
}

// ---- RPCs ----

pub(super) async fn issue(
    api: &RewardsApi,
    request: Request<pb::IssueVoucherRequest>,
) -> Result<Response<pb::IssueVoucherResponse>, Status> {
    let who = principal(&request)?;
    let partner_id = who.partner_with_role(ISSUERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "IssueVoucher", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let reward_id = required_uuid(&mut v, "reward_id", &req.reward_id);
    let customer_id = optional_uuid(&mut v, "customer_id", &req.customer_id);
    let source = source_from_proto(req.source);
    if source.is_none() {
        v.add("source", "is required");
    }
    if req.source_id.chars().count() > 128 {
        v.add("source_id", "must be at most 128 characters");
    }
    let requested_until = parse_time(&mut v, "valid_until_time", req.valid_until_time.as_ref());
    let value = req
        .value
        .as_ref()
        .map(|m| super::rewards::amount(&mut v, "value", Some(m)));
    if req.gift_recipient_email.chars().count() > 254
        || (!req.gift_recipient_email.is_empty() && !req.gift_recipient_email.contains('@'))
    {
        v.add(
            "gift_recipient_email",
            "must be an email address, up to 254 characters",
        );
    }
    if req.gift_recipient_name.chars().count() > 200 {
        v.add("gift_recipient_name", "must be at most 200 characters");
    }
    let fixed_code = (!req.code.is_empty()).then(|| code(&mut v, "code", &req.code));
    v.into_result()?;
    let source = source.unwrap_or(VoucherSource::Manual);
    // Saga: hold the price in the wallet (before any lock is taken here), issue the voucher
    // in one transaction, then capture the hold; a refused issue releases it.
    let price = if req.pay_with_points {
        let r = reward(&api.db, partner_id, reward_id, false).await?;
        points_at_issue(r.reward_type, r.rules.points_price, true)
    } else {
        0
    };
    let hold = match (price, customer_id) {
        (0, _) => None,
        (_, None) => {
            return Err(ApiError::invalid("customer_id", "is required to pay with points").into());
        }
        (_, Some(customer)) => {
            api.wallet.available()?;
            Some(
                api.wallet
                    .hold(
                        &who,
                        keys::issue_hold(&req.idempotency_key),
                        customer,
                        price,
                        format!("reward:{reward_id}"),
                    )
                    .await?,
            )
        }
    };
    let now = Utc::now();
    let order = IssueOrder {
        reward_id,
        customer_id,
        source,
        source_id: req.source_id.clone(),
        requested_until,
        gift_recipient_email: req.gift_recipient_email.clone(),
        gift_recipient_name: req.gift_recipient_name.trim().to_owned(),
        code: fixed_code,
        pay_with_points: req.pay_with_points,
        price,
        hold,
        value,
    };
    let issued: Result<Shown, ApiError> = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let (voucher, reward_name) = vstore::issue(txn, partner_id, &order, now).await?;
            Ok(Shown {
                voucher,
                reward_name,
            })
        })
    })
    .await;
    let shown = match issued {
        Ok(shown) => shown,
        Err(e) => {
            if let Some(h) = hold {
                api.wallet.release(&who, h).await;
            }
            return Err(e.into());
        }
    };
    settle(api, &who, partner_id, &shown, hold, PaidAt::Issue).await?;
    Ok(Response::new(pb::IssueVoucherResponse {
        voucher: Some(shown_to_proto(&shown)),
    }))
}

/// IssueVouchers: authorize (as IssueVoucher, so also the campaigns service acting for the
/// partner), check the request, issue in one transaction, answer per recipient in order.
pub(super) async fn issue_batch(
    api: &RewardsApi,
    request: Request<pb::IssueVouchersRequest>,
) -> Result<Response<pb::IssueVouchersResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(ISSUERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let requested_until = parse_time(&mut v, "valid_until_time", req.valid_until_time.as_ref());
    let order = BatchOrder::parse(
        &mut v,
        &BatchRequest {
            reward_id: &req.reward_id,
            customer_ids: &req.customer_ids,
            source: source_from_proto(req.source),
            source_id: &req.source_id,
            requested_until,
        },
        Utc::now(),
    );
    v.into_result()?;
    let txn = loyalty_platform::db::begin_write(&api.db)
        .await
        .map_err(ApiError::from)?;
    let answers = vstore::batch::issue(&txn, partner_id, &order, Utc::now()).await?;
    txn.commit().await.map_err(ApiError::from)?;
    Ok(Response::new(pb::IssueVouchersResponse {
        vouchers: req
            .customer_ids
            .into_iter()
            .zip(answers)
            .map(|(customer_id, answer)| issued_to_proto(customer_id, answer))
            .collect(),
    }))
}

fn issued_to_proto(customer_id: String, answer: BatchAnswer) -> pb::IssuedVoucher {
    match answer {
        BatchAnswer::Issued {
            voucher,
            newly_issued,
        } => pb::IssuedVoucher {
            customer_id,
            voucher_id: voucher.id.to_string(),
            code: voucher.code,
            refusal_reason: String::new(),
            newly_issued,
            valid_until_time: voucher.validity.until.map(to_timestamp),
        },
        BatchAnswer::Refused(reason) => pb::IssuedVoucher {
            customer_id,
            refusal_reason: reason.to_owned(),
            ..Default::default()
        },
    }
}

pub(super) async fn get(
    api: &RewardsApi,
    request: Request<pb::GetVoucherRequest>,
) -> Result<Response<pb::GetVoucherResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let req = request.into_inner();
    let key = match (req.voucher_id.is_empty(), req.code.is_empty()) {
        (false, true) => VoucherKey::Id(
            Uuid::parse_str(&req.voucher_id)
                .map_err(|_| ApiError::invalid("voucher_id", "must be a UUID"))?,
        ),
        (true, false) => VoucherKey::Code(normalise_code(&req.code)),
        _ => {
            return Err(
                ApiError::invalid("voucher_id", "give exactly one of voucher_id and code").into(),
            );
        }
    };
    let voucher = find(&api.db, partner_id, &key, false).await?;
    let names = reward_names(&api.db, partner_id, [voucher.reward_id]).await?;
    let name = names.get(&voucher.reward_id).cloned().unwrap_or_default();
    Ok(Response::new(pb::GetVoucherResponse {
        voucher: Some(to_proto(&voucher, &name, Utc::now())),
    }))
}

pub(super) async fn list(
    api: &RewardsApi,
    request: Request<pb::ListVouchersRequest>,
) -> Result<Response<pb::ListVouchersResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let customer_id = optional_uuid(&mut v, "customer_id", &req.customer_id);
    let reward_id = optional_uuid(&mut v, "reward_id", &req.reward_id);
    if req.customer_id.is_empty() && req.reward_id.is_empty() {
        v.add("customer_id", "give customer_id, reward_id or both");
    }
    let mut states = Vec::new();
    for (i, s) in req.states.iter().enumerate() {
        match pb::VoucherState::try_from(*s) {
            Ok(pb::VoucherState::Active) => states.push(ShownState::Active),
            Ok(pb::VoucherState::Reserved) => states.push(ShownState::Reserved),
            Ok(pb::VoucherState::Redeemed) => states.push(ShownState::Redeemed),
            Ok(pb::VoucherState::Cancelled) => states.push(ShownState::Cancelled),
            Ok(pb::VoucherState::Expired) => states.push(ShownState::Expired),
            _ => v.add(format!("states[{i}]"), "must be a voucher state"),
        }
    }
    let limit = page_size(&mut v, req.page_size);
    let before = parse_page_token(&mut v, &req.page_token);
    v.into_result()?;
    let now = Utc::now();
    let vouchers = vstore::list_vouchers(
        &api.db,
        partner_id,
        customer_id,
        reward_id,
        &states,
        now,
        before,
        limit,
    )
    .await?;
    let names = reward_names(&api.db, partner_id, vouchers.iter().map(|v| v.reward_id)).await?;
    Ok(Response::new(pb::ListVouchersResponse {
        next_page_token: next_page_token(vouchers.len(), limit, vouchers.last().map(|v| v.id)),
        vouchers: vouchers
            .iter()
            .map(|v| {
                to_proto(
                    v,
                    names
                        .get(&v.reward_id)
                        .map(String::as_str)
                        .unwrap_or_default(),
                    now,
                )
            })
            .collect(),
    }))
}

pub(super) async fn validate(
    api: &RewardsApi,
    request: Request<pb::ValidateVoucherRequest>,
) -> Result<Response<pb::ValidateVoucherResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(TILLS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let code = code(&mut v, "code", &req.code);
    let transaction = (!req.transaction_id.is_empty()).then(|| req.transaction_id.clone());
    let usage = usage(
        &mut v,
        &req.customer_id,
        &req.business_unit_id,
        req.channel,
        transaction,
    );
    let at =
        parse_time(&mut v, "validate_time", req.validate_time.as_ref()).unwrap_or_else(Utc::now);
    v.into_result()?;
    let voucher = find(&api.db, partner_id, &VoucherKey::Code(code), false).await?;
    let reward = reward(&api.db, partner_id, voucher.reward_id, false).await?;
    let verdict = voucher.check_usable(&reward.rules, &usage, at);
    Ok(Response::new(pb::ValidateVoucherResponse {
        valid: verdict.is_ok(),
        rejection_reason: verdict.err().unwrap_or_default().to_owned(),
        voucher: Some(to_proto(&voucher, &reward.display_name, at)),
    }))
}

pub(super) async fn reserve(
    api: &RewardsApi,
    request: Request<pb::ReserveVoucherRequest>,
) -> Result<Response<pb::ReserveVoucherResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(TILLS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "ReserveVoucher", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let code = code(&mut v, "code", &req.code);
    let transaction = text(&mut v, "transaction_id", &req.transaction_id, 128);
    let usage = usage(
        &mut v,
        &req.customer_id,
        &req.business_unit_id,
        req.channel,
        Some(transaction.clone()),
    );
    let hold = match req.hold_seconds {
        0 => DEFAULT_HOLD_SECONDS,
        s @ 1..=3600 => i64::from(s),
        _ => {
            v.add("hold_seconds", "must be 0 (900) or 1..3600");
            DEFAULT_HOLD_SECONDS
        }
    };
    v.into_result()?;
    let shown: Shown = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let now = Utc::now();
            let mut voucher = find(txn, partner_id, &VoucherKey::Code(code), true).await?;
            let reward = reward(txn, partner_id, voucher.reward_id, false).await?;
            voucher
                .check_usable(&reward.rules, &usage, now)
                .map_err(refuse)?;
            voucher.reserve(&transaction, now, Duration::seconds(hold));
            vstore::update_voucher(txn, partner_id, &voucher).await?;
            Ok(Shown {
                voucher,
                reward_name: reward.display_name,
            })
        })
    })
    .await?;
    Ok(Response::new(pb::ReserveVoucherResponse {
        voucher: Some(shown_to_proto(&shown)),
    }))
}

pub(super) async fn release(
    api: &RewardsApi,
    request: Request<pb::ReleaseVoucherRequest>,
) -> Result<Response<pb::ReleaseVoucherResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(TILLS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "ReleaseVoucher", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let code = code(&mut v, "code", &req.code);
    let transaction = text(&mut v, "transaction_id", &req.transaction_id, 128);
    v.into_result()?;
    let shown: Shown = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let mut voucher = find(txn, partner_id, &VoucherKey::Code(code), true).await?;
            voucher.release(&transaction).map_err(refuse)?;
            vstore::update_voucher(txn, partner_id, &voucher).await?;
            shown(txn, partner_id, voucher).await
        })
    })
    .await?;
    Ok(Response::new(pb::ReleaseVoucherResponse {
        voucher: Some(shown_to_proto(&shown)),
    }))
}

pub(super) async fn redeem(
    api: &RewardsApi,
    request: Request<pb::RedeemVoucherRequest>,
) -> Result<Response<pb::RedeemVoucherResponse>, Status> {
    let who = principal(&request)?;
    let partner_id = who.partner_with_role(TILLS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "RedeemVoucher", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let code = code(&mut v, "code", &req.code);
    let transaction = text(&mut v, "transaction_id", &req.transaction_id, 128);
    let usage = usage(
        &mut v,
        &req.customer_id,
        &req.business_unit_id,
        req.channel,
        Some(transaction.clone()),
    );
    let at = parse_time(&mut v, "redeem_time", req.redeem_time.as_ref());
    if req.granted_value < 0 {
        v.add("granted_value", "must not be negative");
    }
    let granted_value = req.granted_value;
    v.into_result()?;
    // Saga, as at issue: hold the price of a cash desk or campaign reward, redeem in one
    // transaction, capture; a refused redemption releases the hold.
    let before = find(&api.db, partner_id, &VoucherKey::Code(code.clone()), false).await?;
    let priced = reward(&api.db, partner_id, before.reward_id, false).await?;
    let price = points_at_redemption(priced.reward_type, priced.rules.points_price);
    let hold = match (price, before.customer_id.or(usage.customer_id)) {
        (0, _) => None,
        (_, None) => {
            return Err(ApiError::invalid("customer_id", "is required to pay with points").into());
        }
        (_, Some(payer)) => {
            api.wallet.available()?;
            Some(
                api.wallet
                    .hold(
                        &who,
                        keys::redeem_hold(before.id, &req.idempotency_key),
                        payer,
                        price,
                        format!("voucher:{}", before.id),
                    )
                    .await?,
            )
        }
    };
    let redeemed: Result<Shown, ApiError> = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let at = at.unwrap_or_else(Utc::now);
            // The row lock makes concurrent redemptions of one voucher wait for each other:
            // the first one commits REDEEMED, the others then read it and are refused.
            let mut voucher = find(txn, partner_id, &VoucherKey::Code(code), true).await?;
            let reward = reward(txn, partner_id, voucher.reward_id, false).await?;
            voucher
                .check_usable(&reward.rules, &usage, at)
                .map_err(refuse)?;
            if points_at_redemption(reward.reward_type, reward.rules.points_price) != price {
                return Err(ApiError::precondition(
                    reason::POINTS_PAYMENT_UNAVAILABLE,
                    "the reward's points price changed while the points were held; retry",
                ));
            }
            super::rewards::consume_budget(
                txn,
                partner_id,
                voucher.reward_id,
                voucher.id,
                granted_value,
            )
            .await?;
            voucher.redeem(&transaction, usage.business_unit_id, at);
            if let Some(h) = hold {
                voucher.paid_with(price, h);
            }
            vstore::update_voucher(txn, partner_id, &voucher).await?;
            events::enqueue(
                txn,
                Some(partner_id),
                &ev::VoucherRedeemed {
                    voucher_id: voucher.id.to_string(),
                    reward_id: voucher.reward_id.to_string(),
                    customer_id: voucher
                        .customer_id
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                    transaction_id: transaction.clone(),
                    business_unit_id: usage
                        .business_unit_id
                        .map(|b| b.to_string())
                        .unwrap_or_default(),
                    source: voucher.source.as_str().to_owned(),
                    source_id: voucher.source_id.clone(),
                    ..Default::default()
                },
            )
            .await?;
            Ok(Shown {
                voucher,
                reward_name: reward.display_name,
            })
        })
    })
    .await;
    let shown = match redeemed {
        Ok(shown) => shown,
        Err(e) => {
            if let Some(h) = hold {
                api.wallet.release(&who, h).await;
            }
            return Err(e.into());
        }
    };
    settle(api, &who, partner_id, &shown, hold, PaidAt::Redemption).await?;
    Ok(Response::new(pb::RedeemVoucherResponse {
        points_spent: if hold.is_some() { price } else { 0 },
        voucher: Some(shown_to_proto(&shown)),
    }))
}

pub(super) async fn cancel(
    api: &RewardsApi,
    request: Request<pb::CancelVoucherRequest>,
) -> Result<Response<pb::CancelVoucherResponse>, Status> {
    let who = principal(&request)?;
    let partner_id = who.partner_with_role(OPERATORS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CancelVoucher", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = required_uuid(&mut v, "voucher_id", &req.voucher_id);
    let why = text(&mut v, "reason", &req.reason, 500);
    v.into_result()?;
    let wallet = api.wallet.clone();
    let shown: Shown = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let now = Utc::now();
            let mut voucher = find(txn, partner_id, &VoucherKey::Id(id), true).await?;
            if voucher.state == VoucherState::Cancelled {
                // Already cancelled: answered unchanged, nothing published again.
                return shown(txn, partner_id, voucher).await;
            }
            voucher.cancel(&why, now).map_err(refuse)?;
            if req.refund_points
                && let Some(paid) = voucher.payment()
            {
                // Inside the transaction, last: a failed refund leaves the voucher as it was,
                // and a retry after a lost commit repeats the same (idempotent) refund.
                wallet.refund(&who, voucher.id, paid, &why).await?;
                voucher.refunded();
            }
            vstore::update_voucher(txn, partner_id, &voucher).await?;
            events::enqueue(
                txn,
                Some(partner_id),
                &ev::VoucherCancelled {
                    voucher_id: voucher.id.to_string(),
                    customer_id: voucher
                        .customer_id
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                    reason: why.clone(),
                },
            )
            .await?;
            shown(txn, partner_id, voucher).await
        })
    })
    .await?;
    Ok(Response::new(pb::CancelVoucherResponse {
        voucher: Some(shown_to_proto(&shown)),
    }))
}

pub(super) async fn reinstate(
    api: &RewardsApi,
    request: Request<pb::ReinstateVoucherRequest>,
) -> Result<Response<pb::ReinstateVoucherResponse>, Status> {
    let who = principal(&request)?;
    let partner_id = who.partner_with_role(OPERATORS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "ReinstateVoucher", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = required_uuid(&mut v, "voucher_id", &req.voucher_id);
    let transaction = text(&mut v, "transaction_id", &req.transaction_id, 128);
    text(&mut v, "reason", &req.reason, 500);
    v.into_result()?;
    let wallet = api.wallet.clone();
    let shown: Shown = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let mut voucher = find(txn, partner_id, &VoucherKey::Id(id), true).await?;
            voucher.reinstate(&transaction).map_err(refuse)?;
            super::rewards::refund_budget(txn, partner_id, voucher.id).await?;
            let paid_type = reward(txn, partner_id, voucher.reward_id, false)
                .await?
                .reward_type;
            // Only points spent at redemption go back; a catalogue voucher stays paid for.
            if price_due(paid_type) == PriceDue::AtRedemption
                && let Some(paid) = voucher.payment()
            {
                wallet
                    .refund(&who, voucher.id, paid, "voucher reinstated")
                    .await?;
                voucher.refunded();
            }
            vstore::update_voucher(txn, partner_id, &voucher).await?;
            events::enqueue(
                txn,
                Some(partner_id),
                &ev::VoucherReinstated {
                    voucher_id: voucher.id.to_string(),
                    customer_id: voucher
                        .customer_id
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                    transaction_id: transaction.clone(),
                },
            )
            .await?;
            shown(txn, partner_id, voucher).await
        })
    })
    .await?;
    Ok(Response::new(pb::ReinstateVoucherResponse {
        voucher: Some(shown_to_proto(&shown)),
    }))
}

/// The stored answer of GenerateVoucherCodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GeneratedAnswer {
    count: u64,
    codes: Vec<String>,
    collisions: u64,
}

pub(super) async fn generate(
    api: &RewardsApi,
    request: Request<pb::GenerateVoucherCodesRequest>,
) -> Result<Response<pb::GenerateVoucherCodesResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "GenerateVoucherCodes",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let reward_id = required_uuid(&mut v, "reward_id", &req.reward_id);
    if !(1..=1_000_000).contains(&req.count) {
        v.add("count", "must be 1..1000000");
    }
    if req.source_id.chars().count() > 128 {
        v.add("source_id", "must be at most 128 characters");
    }
    let source = if req.source == 0 {
        Some(VoucherSource::Campaign)
    } else {
        source_from_proto(req.source)
    };
    if source.is_none() {
        v.add("source", "must be a voucher source");
    }
    v.into_result()?;
    let prefix_reward = reward(&api.db, partner_id, reward_id, false).await?;
    let mut v = Violations::new();
    let spec = CodeSpec::parse(
        &mut v,
        &CodeRequest {
            prefix: if req.prefix.is_empty() {
                prefix_reward.rules.code_prefix.clone()
            } else {
                req.prefix.clone()
            },
            pattern: req.pattern.clone(),
            charset: req.charset.clone(),
            length: req.length,
        },
    );
    let count = u64::try_from(req.count).unwrap_or(0);
    if let Some(spec) = &spec
        && spec.combinations() < u128::from(count) * 2
    {
        v.add(
            if req.pattern.is_empty() {
                "length"
            } else {
                "pattern"
            },
            format!(
                "has {} combinations: at least twice the count are needed",
                spec.combinations()
            ),
        );
    }
    v.into_result()?;
    let Some(spec) = spec else {
        return Err(ApiError::invalid("pattern", "is invalid").into());
    };
    let source = source.unwrap_or(VoucherSource::Campaign);
    if let Some(answer) = idempotency::stored::<GeneratedAnswer>(&api.db, &scope).await? {
        return Ok(generated_to_proto(answer));
    }
    check_generation_allowed(&api.db, partner_id, &prefix_reward, count, Utc::now()).await?;
    let now = Utc::now();
    let batch = GeneratedBatch {
        partner_id,
        reward_id,
        source,
        source_id: req.source_id.clone(),
        validity: voucher_validity(&prefix_reward.validity, &prefix_reward.rules, None, now),
        issued_at: now,
    };
    // The codes are drawn and written (PostgreSQL: COPY, pending) under the partner's
    // generation lock, before the transaction that checks the limits again, completes the
    // generation and stores the answer.
    let mut lock = generated::GenerationLock::acquire(&api.db, partner_id).await?;
    let result = generate_locked(api, &mut lock, scope, batch, spec, count).await;
    lock.release().await?;
    Ok(generated_to_proto(result?))
}

fn generated_to_proto(answer: GeneratedAnswer) -> Response<pb::GenerateVoucherCodesResponse> {
    Response::new(pb::GenerateVoucherCodesResponse {
        generated_count: i32::try_from(answer.count).unwrap_or(i32::MAX),
        codes: answer.codes,
        collisions: i64::try_from(answer.collisions).unwrap_or(i64::MAX),
    })
}

/// Refuses a generation for a reward that is not active or whose voucher limit it would pass.
async fn check_generation_allowed(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward: &RewardForVouchers,
    count: u64,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if !reward.validity.contains(now)
        || !super::rewards::issuable(conn, partner_id, reward.id).await?
    {
        return Err(ApiError::precondition(
            reason::REWARD_NOT_ACTIVE,
            "the reward is not active now",
        ));
    }
    if reward.rules.max_total > 0
        && reward
            .issued_count
            .saturating_add(i64::try_from(count).unwrap_or(i64::MAX))
            > reward.rules.max_total
    {
        return Err(ApiError::precondition(
            reason::LIMIT_REACHED,
            format!(
                "only {} of the reward's {} vouchers are left",
                (reward.rules.max_total - reward.issued_count).max(0),
                reward.rules.max_total
            ),
        ));
    }
    Ok(())
}

async fn generate_locked(
    api: &RewardsApi,
    lock: &mut generated::GenerationLock,
    scope: IdempotencyScope,
    batch: GeneratedBatch,
    spec: CodeSpec,
    count: u64,
) -> Result<GeneratedAnswer, ApiError> {
    // A retry that waited for the first call's lock gets its answer.
    if let Some(answer) = idempotency::stored::<GeneratedAnswer>(&api.db, &scope).await? {
        return Ok(answer);
    }
    let staged = generated::stage(&api.db, lock, &batch, &spec, count).await?;
    let partner_id = batch.partner_id;
    let reward_id = batch.reward_id;
    let staged_in = staged.clone();
    let answer = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let staged = &staged_in;
            let reward = reward(txn, partner_id, reward_id, true).await?;
            check_generation_allowed(txn, partner_id, &reward, count, Utc::now()).await?;
            let out = generated::complete(txn, staged, &batch, &spec, count).await?;
            vstore::count_issued(txn, reward_id, i64::try_from(out.count).unwrap_or(i64::MAX))
                .await?;
            Ok(GeneratedAnswer {
                count: out.count,
                codes: out.first_codes,
                collisions: out.collisions,
            })
        })
    })
    .await;
    let completed = match (&answer, &staged) {
        (Ok(a), generated::Staged::Pending(g)) => a.codes == g.first_codes && a.count == g.count,
        _ => false,
    };
    if !completed {
        generated::abandon(&api.db, &staged).await?;
    }
    answer
}
