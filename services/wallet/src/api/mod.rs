//! gRPC adapter of `WalletService`: authorize → validate → run the store operation in one
//! idempotent transaction → convert. Points types and groups live in `catalog`.
mod catalog;
pub mod convert;
mod listing;

use chrono::{Duration, Utc};
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::check_idempotency_key,
    idempotency::{self, IdempotencyScope},
    paging,
};
use loyalty_proto::wallet::v1::{self as pb, wallet_service_server::WalletService};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{Cause, MAX_AMOUNT, check_amount, check_text},
    store::{
        ledger::{self, Note},
        ops::{self, AwardInput, Posted, Target},
    },
};

pub struct WalletApi {
    db: DatabaseConnection,
}

impl WalletApi {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// Roles that move points at a till or from another service.
const OPERATE: &[Role] = &[Role::Pos, Role::Service, Role::Support];
/// Roles that correct wallets by hand.
const SUPPORT: &[Role] = &[Role::Support];
/// Every role may read.
const READ: &[Role] = &[Role::Pos, Role::Service, Role::Support, Role::Marketing];

fn partner<T>(req: &Request<T>, roles: &[Role]) -> Result<Uuid, Status> {
    Ok(principal(req)?.partner_with_role(roles)?)
}

fn note(
    v: &mut Violations,
    cause: i32,
    reason: &str,
    reason_required: bool,
    reference: &str,
    business_unit_id: &str,
) -> Note {
    check_text(v, "reason", reason, usize::from(reason_required), 200);
    check_text(v, "reference", reference, 0, 200);
    Note {
        cause: convert::cause_from_proto(v, "cause", cause),
        reason: reason.trim().to_owned(),
        reference: reference.to_owned(),
        business_unit_id: convert::opt_uuid(v, "business_unit_id", business_unit_id),
        ..Note::default()
    }
}

async fn run<R, F>(db: &DatabaseConnection, scope: IdempotencyScope, work: F) -> Result<R, Status>
where
    R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    F: for<'c> FnOnce(
            &'c sea_orm::DatabaseTransaction,
        ) -> futures::future::BoxFuture<'c, Result<R, ApiError>>
        + Send,
{
    Ok(idempotency::run(db, scope, work).await?)
}

fn postings(p: &Posted) -> Vec<pb::Posting> {
    p.postings.iter().map(convert::posting).collect()
}

fn first_posting(p: &Posted) -> Option<pb::Posting> {
    p.postings.first().map(convert::posting)
}

#[tonic::async_trait]
impl WalletService for WalletApi {
    #[tracing::instrument(skip_all)]
    async fn award_points(
        &self,
        request: Request<pb::AwardPointsRequest>,
    ) -> Result<Response<pb::AwardPointsResponse>, Status> {
        let partner_id = partner(
            &request,
            &[Role::Pos, Role::Service, Role::Support, Role::Marketing],
        )?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "AwardPoints", &req.idempotency_key, &req);
        let now = Utc::now();
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        check_amount(&mut v, "points", req.points);
        let note = note(
            &mut v,
            req.cause,
            &req.reason,
            true,
            &req.reference,
            &req.business_unit_id,
        );
        let expire_at = convert::time(&mut v, "expire_time", req.expire_time.as_ref());
        let release_at = convert::time(&mut v, "release_time", req.release_time.as_ref());
        if expire_at.is_some_and(|e| e <= now) {
            v.add("expire_time", "must be in the future");
        }
        if let (Some(e), Some(r)) = (expire_at, release_at)
            && e <= r
        {
            v.add("expire_time", "must be after release_time");
        }
        v.into_result()?;
        let target = Target {
            partner_id,
            customer_id,
            points_type: req.points_type_id.clone(),
            now,
        };
        let input = AwardInput {
            amount: req.points,
            note,
            expire_at,
            release_at,
            auto_redeem: req.auto_redeem,
        };
        let posted: Posted = run(&self.db, scope, move |txn| {
            Box::pin(async move { ops::award(txn, &target, input).await })
        })
        .await?;
        let customer = posted.wallet.customer_id;
        Ok(Response::new(pb::AwardPointsResponse {
            posting: first_posting(&posted),
            balance: Some(convert::balance(
                customer,
                std::slice::from_ref(&posted.wallet),
            )),
            wallet: Some(convert::wallet(&posted.wallet)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn spend_points(
        &self,
        request: Request<pb::SpendPointsRequest>,
    ) -> Result<Response<pb::SpendPointsResponse>, Status> {
        let partner_id = partner(&request, OPERATE)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "SpendPoints", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        check_amount(&mut v, "points", req.points);
        let note = note(
            &mut v,
            req.cause,
            &req.reason,
            true,
            &req.reference,
            &req.business_unit_id,
        );
        v.into_result()?;
        let target = Target {
            partner_id,
            customer_id,
            points_type: req.points_type_id.clone(),
            now: Utc::now(),
        };
        let amount = req.points;
        let posted: Posted = run(&self.db, scope, move |txn| {
            Box::pin(async move { ops::spend(txn, &target, amount, note).await })
        })
        .await?;
        Ok(Response::new(pb::SpendPointsResponse {
            posting: first_posting(&posted),
            wallet: Some(convert::wallet(&posted.wallet)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn reserve_points(
        &self,
        request: Request<pb::ReservePointsRequest>,
    ) -> Result<Response<pb::ReservePointsResponse>, Status> {
        let partner_id = partner(&request, OPERATE)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "ReservePoints", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        check_amount(&mut v, "points", req.points);
        if !(0..=86_400).contains(&req.ttl_seconds) {
            v.add("ttl_seconds", "must be 0..86400");
        }
        let mut note = note(
            &mut v,
            0,
            "reserve",
            true,
            &req.reference,
            &req.business_unit_id,
        );
        note.cause = Some(Cause::Purchase);
        v.into_result()?;
        let target = Target {
            partner_id,
            customer_id,
            points_type: req.points_type_id.clone(),
            now: Utc::now(),
        };
        let ttl = (req.ttl_seconds > 0).then(|| Duration::seconds(req.ttl_seconds.into()));
        let amount = req.points;
        let reserved: ops::Reserved = run(&self.db, scope, move |txn| {
            Box::pin(async move { ops::reserve(txn, &target, amount, ttl, note).await })
        })
        .await?;
        Ok(Response::new(pb::ReservePointsResponse {
            reservation: Some(convert::reservation(&reserved.reservation)),
            posting: first_posting(&reserved.posted),
            wallet: Some(convert::wallet(&reserved.posted.wallet)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn capture_points(
        &self,
        request: Request<pb::CapturePointsRequest>,
    ) -> Result<Response<pb::CapturePointsResponse>, Status> {
        let partner_id = partner(&request, OPERATE)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "CapturePoints", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let reservation_id = convert::uuid(&mut v, "reservation_id", &req.reservation_id);
        if !(0..=MAX_AMOUNT).contains(&req.points) {
            v.add("points", format!("must be 0..{MAX_AMOUNT}"));
        }
        let note = note(&mut v, req.cause, &req.reason, false, &req.reference, "");
        v.into_result()?;
        let amount = req.points;
        let now = Utc::now();
        let settled: ops::Reserved = run(&self.db, scope, move |txn| {
            Box::pin(async move {
                ops::settle(txn, partner_id, reservation_id, Some(amount), note, now).await
            })
        })
        .await?;
        Ok(Response::new(pb::CapturePointsResponse {
            reservation: Some(convert::reservation(&settled.reservation)),
            postings: postings(&settled.posted),
            wallet: Some(convert::wallet(&settled.posted.wallet)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn release_points(
        &self,
        request: Request<pb::ReleasePointsRequest>,
    ) -> Result<Response<pb::ReleasePointsResponse>, Status> {
        let partner_id = partner(&request, OPERATE)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "ReleasePoints", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let reservation_id = convert::uuid(&mut v, "reservation_id", &req.reservation_id);
        v.into_result()?;
        let now = Utc::now();
        let settled: ops::Reserved = run(&self.db, scope, move |txn| {
            Box::pin(async move {
                ops::settle(txn, partner_id, reservation_id, None, Note::default(), now).await
            })
        })
        .await?;
        Ok(Response::new(pb::ReleasePointsResponse {
            reservation: Some(convert::reservation(&settled.reservation)),
            posting: first_posting(&settled.posted),
            wallet: Some(convert::wallet(&settled.posted.wallet)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn reverse_posting(
        &self,
        request: Request<pb::ReversePostingRequest>,
    ) -> Result<Response<pb::ReversePostingResponse>, Status> {
        let partner_id = partner(&request, OPERATE)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "ReversePosting", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let posting_id = convert::uuid(&mut v, "posting_id", &req.posting_id);
        if !(0..=MAX_AMOUNT).contains(&req.amount) {
            v.add("amount", format!("must be 0..{MAX_AMOUNT}"));
        }
        let mut note = note(&mut v, req.cause, &req.reason, true, &req.reference, "");
        note.cause = note.cause.or(Some(Cause::Return));
        v.into_result()?;
        let (amount, now) = (req.amount, Utc::now());
        let posted: Posted = run(&self.db, scope, move |txn| {
            Box::pin(
                async move { ops::reverse(txn, partner_id, posting_id, amount, note, now).await },
            )
        })
        .await?;
        Ok(Response::new(pb::ReversePostingResponse {
            posting: first_posting(&posted),
            wallet: Some(convert::wallet(&posted.wallet)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn adjust_points(
        &self,
        request: Request<pb::AdjustPointsRequest>,
    ) -> Result<Response<pb::AdjustPointsResponse>, Status> {
        let partner_id = partner(&request, SUPPORT)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "AdjustPoints", &req.idempotency_key, &req);
        let now = Utc::now();
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        if req.amount == 0 || req.amount.unsigned_abs() > MAX_AMOUNT as u64 {
            v.add(
                "amount",
                format!("must be non-zero and at most {MAX_AMOUNT} either way"),
            );
        }
        check_text(&mut v, "reason", &req.reason, 3, 200);
        check_text(&mut v, "reference", &req.reference, 0, 200);
        let note = Note {
            cause: Some(Cause::Adjustment),
            reason: req.reason.trim().to_owned(),
            reference: req.reference.clone(),
            ..Note::default()
        };
        let expire_at = convert::time(&mut v, "expire_time", req.expire_time.as_ref());
        if expire_at.is_some_and(|e| e <= now) {
            v.add("expire_time", "must be in the future");
        }
        v.into_result()?;
        let target = Target {
            partner_id,
            customer_id,
            points_type: req.points_type_id.clone(),
            now,
        };
        let amount = req.amount;
        let posted: Posted = run(&self.db, scope, move |txn| {
            Box::pin(async move { ops::adjust(txn, &target, amount, expire_at, note).await })
        })
        .await?;
        Ok(Response::new(pb::AdjustPointsResponse {
            posting: first_posting(&posted),
            wallet: Some(convert::wallet(&posted.wallet)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn transfer_points(
        &self,
        request: Request<pb::TransferPointsRequest>,
    ) -> Result<Response<pb::TransferPointsResponse>, Status> {
        let partner_id = partner(&request, &[Role::Support, Role::Service])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "TransferPoints", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let from = convert::uuid(&mut v, "from_customer_id", &req.from_customer_id);
        let to = convert::uuid(&mut v, "to_customer_id", &req.to_customer_id);
        if !from.is_nil() && from == to {
            v.add(
                "to_customer_id",
                "must be another customer than from_customer_id",
            );
        }
        check_amount(&mut v, "points", req.points);
        let mut note = note(&mut v, 0, &req.reason, true, &req.reference, "");
        note.cause = Some(Cause::Transfer);
        v.into_result()?;
        let target = Target {
            partner_id,
            customer_id: from,
            points_type: req.points_type_id.clone(),
            now: Utc::now(),
        };
        let amount = req.points;
        let (posted, to_view): (Posted, ops::WalletView) = run(&self.db, scope, move |txn| {
            Box::pin(async move { ops::transfer(txn, &target, to, amount, note).await })
        })
        .await?;
        Ok(Response::new(pb::TransferPointsResponse {
            postings: postings(&posted),
            from_wallet: Some(convert::wallet(&posted.wallet)),
            to_wallet: Some(convert::wallet(&to_view)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn redeem_commerce_balance(
        &self,
        request: Request<pb::RedeemCommerceBalanceRequest>,
    ) -> Result<Response<pb::RedeemCommerceBalanceResponse>, Status> {
        let partner_id = partner(&request, OPERATE)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(
            partner_id,
            "RedeemCommerceBalance",
            &req.idempotency_key,
            &req,
        );
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        check_amount(&mut v, "purchase_amount", req.purchase_amount);
        check_text(&mut v, "reference", &req.reference, 1, 200);
        let mut note = note(
            &mut v,
            0,
            "redeem",
            true,
            &req.reference,
            &req.business_unit_id,
        );
        note.cause = Some(Cause::Purchase);
        v.into_result()?;
        let target = Target {
            partner_id,
            customer_id,
            points_type: req.points_type_id.clone(),
            now: Utc::now(),
        };
        let amount = req.purchase_amount;
        let (posted, redeemed): (Posted, i64) = run(&self.db, scope, move |txn| {
            Box::pin(async move { ops::redeem(txn, &target, amount, note).await })
        })
        .await?;
        Ok(Response::new(pb::RedeemCommerceBalanceResponse {
            postings: postings(&posted),
            redeemed_amount: redeemed,
            wallet: Some(convert::wallet(&posted.wallet)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn payout(
        &self,
        request: Request<pb::PayoutRequest>,
    ) -> Result<Response<pb::PayoutResponse>, Status> {
        let partner_id = partner(&request, &[Role::Support, Role::Service])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "Payout", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        if !(0..=MAX_AMOUNT).contains(&req.amount) {
            v.add("amount", format!("must be 0..{MAX_AMOUNT}"));
        }
        check_text(
            &mut v,
            "payment_method_reference",
            &req.payment_method_reference,
            1,
            200,
        );
        v.into_result()?;
        let note = Note {
            reason: "payout".to_owned(),
            payment_method_reference: req.payment_method_reference.clone(),
            ..Note::default()
        };
        let target = Target {
            partner_id,
            customer_id,
            points_type: req.points_type_id.clone(),
            now: Utc::now(),
        };
        let amount = req.amount;
        let (posted, paid): (Posted, i64) = run(&self.db, scope, move |txn| {
            Box::pin(async move { ops::payout(txn, &target, amount, note).await })
        })
        .await?;
        Ok(Response::new(pb::PayoutResponse {
            postings: postings(&posted),
            paid_amount: paid,
            wallet: Some(convert::wallet(&posted.wallet)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn block_spending(
        &self,
        request: Request<pb::BlockSpendingRequest>,
    ) -> Result<Response<pb::BlockSpendingResponse>, Status> {
        let partner_id = partner(&request, SUPPORT)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "BlockSpending", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        check_text(&mut v, "reason", &req.reason, 1, 500);
        v.into_result()?;
        let (reason, type_ref, now) = (req.reason.clone(), req.points_type_id.clone(), Utc::now());
        let wallets: Vec<ops::WalletView> = run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let ty = named_type(txn, partner_id, &type_ref).await?;
                ops::set_block(
                    txn,
                    partner_id,
                    customer_id,
                    ty.as_ref().map(|t| t.id),
                    Some(reason),
                    now,
                )
                .await?;
                ops::balances(txn, partner_id, customer_id, ty.as_ref(), now).await
            })
        })
        .await?;
        Ok(Response::new(pb::BlockSpendingResponse {
            balance: Some(convert::balance(customer_id, &wallets)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn unblock_spending(
        &self,
        request: Request<pb::UnblockSpendingRequest>,
    ) -> Result<Response<pb::UnblockSpendingResponse>, Status> {
        let partner_id = partner(&request, SUPPORT)?;
        let req = request.into_inner();
        let scope =
            IdempotencyScope::new(partner_id, "UnblockSpending", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        v.into_result()?;
        let (type_ref, now) = (req.points_type_id.clone(), Utc::now());
        let wallets: Vec<ops::WalletView> = run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let ty = named_type(txn, partner_id, &type_ref).await?;
                ops::set_block(
                    txn,
                    partner_id,
                    customer_id,
                    ty.as_ref().map(|t| t.id),
                    None,
                    now,
                )
                .await?;
                ops::balances(txn, partner_id, customer_id, ty.as_ref(), now).await
            })
        })
        .await?;
        Ok(Response::new(pb::UnblockSpendingResponse {
            balance: Some(convert::balance(customer_id, &wallets)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let partner_id = partner(&request, READ)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        v.into_result()?;
        let now = Utc::now();
        let ty = if req.points_type_id.is_empty() {
            None
        } else {
            Some(
                ledger::find_type(&self.db, partner_id, &req.points_type_id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::NotFound(format!("points type {:?}", req.points_type_id))
                    })?,
            )
        };
        let wallets = ops::balances(&self.db, partner_id, customer_id, ty.as_ref(), now).await?;
        Ok(Response::new(pb::GetBalanceResponse {
            balance: Some(convert::balance(customer_id, &wallets)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_postings(
        &self,
        request: Request<pb::ListPostingsRequest>,
    ) -> Result<Response<pb::ListPostingsResponse>, Status> {
        let partner_id = partner(&request, READ)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_time_token(&mut v, &req.page_token);
        let mut kinds = Vec::new();
        for (i, k) in req.kinds.iter().enumerate() {
            match convert::posting_kind_from_proto(*k) {
                Some(k) => kinds.push(k),
                None => v.add(format!("kinds[{i}]"), "is not a known PostingKind"),
            }
        }
        let mut causes = Vec::new();
        for (i, c) in req.causes.iter().enumerate() {
            if let Some(c) = convert::cause_from_proto(&mut v, &format!("causes[{i}]"), *c) {
                causes.push(c);
            }
        }
        let start = convert::time(&mut v, "start_time", req.start_time.as_ref());
        let end = convert::time(&mut v, "end_time", req.end_time.as_ref());
        v.into_result()?;
        let points_type_id = self.type_filter(partner_id, &req.points_type_id).await?;
        let filter = ops::PostingFilter {
            points_type_id,
            kinds,
            causes,
            reference: (!req.reference.is_empty()).then(|| req.reference.clone()),
            start,
            end,
            after,
        };
        let rows = ops::list_postings(&self.db, partner_id, customer_id, &filter, limit).await?;
        let listed = listing::postings(&self.db, &rows).await?;
        let next =
            paging::next_time_token(rows.len(), limit, rows.last().map(|p| (p.created_at, p.id)));
        Ok(Response::new(pb::ListPostingsResponse {
            postings: listed,
            next_page_token: next,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_points_lots(
        &self,
        request: Request<pb::ListPointsLotsRequest>,
    ) -> Result<Response<pb::ListPointsLotsResponse>, Status> {
        let partner_id = partner(&request, READ)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = convert::uuid(&mut v, "customer_id", &req.customer_id);
        let limit = paging::page_size(&mut v, req.page_size);
        let offset = listing::parse_offset_token(&mut v, &req.page_token);
        let mut states = Vec::new();
        for (i, s) in req.states.iter().enumerate() {
            match pb::PointsLotState::try_from(*s) {
                Ok(pb::PointsLotState::Unspecified) | Err(_) => {
                    v.add(format!("states[{i}]"), "is not a known PointsLotState")
                }
                Ok(s) => states.push(s),
            }
        }
        v.into_result()?;
        if states.is_empty() {
            states = vec![pb::PointsLotState::Pending, pb::PointsLotState::Available];
        }
        let points_type_id = self.type_filter(partner_id, &req.points_type_id).await?;
        let (lots, more) = listing::lots(
            &self.db,
            partner_id,
            customer_id,
            points_type_id,
            &states,
            offset,
            limit,
            Utc::now(),
        )
        .await?;
        Ok(Response::new(pb::ListPointsLotsResponse {
            lots,
            next_page_token: if more {
                (offset + limit).to_string()
            } else {
                String::new()
            },
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_wallets(
        &self,
        request: Request<pb::ListWalletsRequest>,
    ) -> Result<Response<pb::ListWalletsResponse>, Status> {
        let partner_id = partner(&request, READ)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        if req.min_balance < 0 {
            v.add("min_balance", "must be >= 0");
        }
        v.into_result()?;
        let now = Utc::now();
        let ty = ledger::resolve_type(&self.db, partner_id, &req.points_type_id, now).await?;
        let (wallets, last) = listing::wallets(
            &self.db,
            partner_id,
            &ty,
            after,
            req.min_balance,
            limit,
            now,
        )
        .await?;
        Ok(Response::new(pb::ListWalletsResponse {
            next_page_token: paging::next_page_token(wallets.len(), limit, last),
            wallets: wallets.iter().map(convert::wallet).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn expire_points(
        &self,
        request: Request<pb::ExpirePointsRequest>,
    ) -> Result<Response<pb::ExpirePointsResponse>, Status> {
        let partner_id = partner(&request, &[Role::Service])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "ExpirePoints", &req.idempotency_key, &req);
        let now = Utc::now();
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let as_of = convert::time(&mut v, "as_of_time", req.as_of_time.as_ref()).unwrap_or(now);
        if as_of > now {
            v.add("as_of_time", "must not be in the future");
        }
        let customer_id = convert::opt_uuid(&mut v, "customer_id", &req.customer_id);
        let max = match req.max_wallets {
            0 => 10_000,
            1..=100_000 => req.max_wallets as u64,
            _ => {
                v.add("max_wallets", "must be 0..100000");
                0
            }
        };
        v.into_result()?;
        if let Some(done) =
            idempotency::stored::<crate::store::jobs::ExpiryRun>(&self.db, &scope).await?
        {
            return Ok(Response::new(done.into()));
        }
        // One transaction per wallet, so a large run never holds many locks at once.
        let done =
            crate::store::jobs::expire_partner(&self.db, partner_id, customer_id, as_of, max)
                .await?;
        let done: crate::store::jobs::ExpiryRun =
            run(&self.db, scope, move |_| Box::pin(async move { Ok(done) })).await?;
        Ok(Response::new(done.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn trial_balance(
        &self,
        request: Request<pb::TrialBalanceRequest>,
    ) -> Result<Response<pb::TrialBalanceResponse>, Status> {
        let partner_id = partner(&request, &[Role::Support, Role::Service])?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = convert::opt_uuid(&mut v, "customer_id", &req.customer_id);
        v.into_result()?;
        let points_type_id = self.type_filter(partner_id, &req.points_type_id).await?;
        let report = crate::store::check::trial_balance(
            &self.db,
            Some(partner_id),
            points_type_id,
            customer_id,
        )
        .await?;
        Ok(Response::new(convert::trial_balance(&report)))
    }

    // ---- Points types and groups (catalog.rs) ----

    async fn create_points_group(
        &self,
        request: Request<pb::CreatePointsGroupRequest>,
    ) -> Result<Response<pb::CreatePointsGroupResponse>, Status> {
        catalog::create_points_group(&self.db, request).await
    }

    async fn get_points_group(
        &self,
        request: Request<pb::GetPointsGroupRequest>,
    ) -> Result<Response<pb::GetPointsGroupResponse>, Status> {
        catalog::get_points_group(&self.db, request).await
    }

    async fn list_points_groups(
        &self,
        request: Request<pb::ListPointsGroupsRequest>,
    ) -> Result<Response<pb::ListPointsGroupsResponse>, Status> {
        catalog::list_points_groups(&self.db, request).await
    }

    async fn update_points_group(
        &self,
        request: Request<pb::UpdatePointsGroupRequest>,
    ) -> Result<Response<pb::UpdatePointsGroupResponse>, Status> {
        catalog::update_points_group(&self.db, request).await
    }

    async fn delete_points_group(
        &self,
        request: Request<pb::DeletePointsGroupRequest>,
    ) -> Result<Response<pb::DeletePointsGroupResponse>, Status> {
        catalog::delete_points_group(&self.db, request).await
    }

    async fn create_points_type(
        &self,
        request: Request<pb::CreatePointsTypeRequest>,
    ) -> Result<Response<pb::CreatePointsTypeResponse>, Status> {
        catalog::create_points_type(&self.db, request).await
    }

    async fn get_points_type(
        &self,
        request: Request<pb::GetPointsTypeRequest>,
    ) -> Result<Response<pb::GetPointsTypeResponse>, Status> {
        catalog::get_points_type(&self.db, request).await
    }

    async fn list_points_types(
        &self,
        request: Request<pb::ListPointsTypesRequest>,
    ) -> Result<Response<pb::ListPointsTypesResponse>, Status> {
        catalog::list_points_types(&self.db, request).await
    }

    async fn update_points_type(
        &self,
        request: Request<pb::UpdatePointsTypeRequest>,
    ) -> Result<Response<pb::UpdatePointsTypeResponse>, Status> {
        catalog::update_points_type(&self.db, request).await
    }

    async fn delete_points_type(
        &self,
        request: Request<pb::DeletePointsTypeRequest>,
    ) -> Result<Response<pb::DeletePointsTypeResponse>, Status> {
        catalog::delete_points_type(&self.db, request).await
    }
}

/// The points type a request names; empty = none (every type, or no filter); an unknown type
/// answers NOT_FOUND.
async fn named_type(
    conn: &impl sea_orm::ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
) -> Result<Option<ledger::TypeRow>, ApiError> {
    if id_or_code.is_empty() {
        return Ok(None);
    }
    ledger::find_type(conn, partner_id, id_or_code)
        .await?
        .map(Some)
        .ok_or_else(|| ApiError::NotFound(format!("points type {id_or_code:?}")))
}

impl WalletApi {
    /// A points type filter: empty = none; an unknown type answers NOT_FOUND.
    async fn type_filter(
        &self,
        partner_id: Uuid,
        id_or_code: &str,
    ) -> Result<Option<Uuid>, Status> {
        Ok(named_type(&self.db, partner_id, id_or_code)
            .await?
            .map(|t| t.id))
    }
}
