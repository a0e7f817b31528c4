//! Commit: the purchase saga across rewards (vouchers) and wallet (points), its undo, and the
//! recovery of commits whose caller went away.
use std::{sync::Arc, time::Duration};

use chrono::{DurationRound, TimeDelta, Utc};
use loyalty_platform::{
    ApiError, Principal, Role, Violations, db::begin_write, events, idempotency::request_hash,
    time::from_timestamp,
};
use loyalty_proto::{
    checkout::v1 as pb, events::v1 as ev, rewards::v1 as rewards, wallet::v1 as wallet,
};
use secrecy::SecretString;
use uuid::Uuid;

use super::{CheckoutApi, Mode, PriceRequest, convert::*};
use crate::{
    domain::{
        Cart, Payment, Receipt, Spend, priced_request_hash,
        quote::{self, MAX_QUOTE_ID_LEN, QuoteError},
        saga::{Phase, Purse, Saga, Undo, VoucherHold},
    },
    store::PurchaseStatus,
};

fn reused() -> ApiError {
    ApiError::Conflict {
        reason: "TRANSACTION_ID_REUSED",
        message: "this transaction_id was committed with a different request".to_owned(),
    }
}

fn busy() -> ApiError {
    ApiError::Unavailable("this transaction is being committed by another call; retry".into())
}

/// Whether an undo call found nothing of this saga's to undo (already undone, or never done).
fn nothing_to_undo(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::FailedPrecondition { .. } | ApiError::NotFound(_)
    )
}

/// The answer while a failed commit is still being undone: something may still be held, so
/// the POS must retry (the retry finishes the undo and then answers the failure for good).
fn undoing(cause: &ApiError) -> ApiError {
    ApiError::Unavailable(format!(
        "the commit failed ({cause}) and is being undone; retry"
    ))
}

fn unique<'a>(items: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = items.cloned().collect();
    out.sort();
    out.dedup();
    out
}

fn validate(req: &pb::CommitRequest) -> Result<Cart, ApiError> {
    let mut v = Violations::new();
    if req.transaction_id.is_empty() || req.transaction_id.chars().count() > 128 {
        v.add("transaction_id", "must be 1..128 characters");
    }
    validate_identifier(&mut v, req.identifier.as_ref());
    let cart = cart_from_proto(&mut v, req.cart.as_ref());
    validate_business_unit(&mut v, &req.business_unit_id);
    validate_codes(&mut v, &req.voucher_codes);
    validate_points(&mut v, req.points_to_spend);
    validate_credit(&mut v, req.credit_to_spend_minor, &req.credit_type_id);
    if req.quote_id.len() > MAX_QUOTE_ID_LEN {
        v.add("quote_id", "is not a quote id");
    }
    for (i, p) in req.payments.iter().enumerate() {
        if p.method.is_empty() || p.method.chars().count() > 64 {
            v.add(format!("payments[{i}].method"), "must be 1..64 characters");
        }
        if p.amount_minor <= 0 {
            v.add(
                format!("payments[{i}].amount_minor"),
                "must be greater than 0",
            );
        }
    }
    if let Some(t) = &req.purchase_time
        && from_timestamp(t).is_none()
    {
        v.add("purchase_time", "must be a valid timestamp");
    }
    v.into_result()?;
    cart.ok_or_else(|| ApiError::invalid("cart", "is required"))
}

impl CheckoutApi {
    fn lease(&self) -> chrono::DateTime<Utc> {
        Utc::now() + TimeDelta::seconds(self.settings.commit_lease_secs.clamp(1, 3600) as i64)
    }

    /// Commits a purchase once, whatever the retries: a committed purchase answers its receipt,
    /// a pending one is finished (or undone and started afresh) by the call that takes it over.
    pub(super) async fn commit_purchase(
        &self,
        who: &Principal,
        partner_id: Uuid,
        req: pb::CommitRequest,
    ) -> Result<Receipt, ApiError> {
        // The quote is left out: a retry after evaluating again carries another quote id for
        // the same purchase, and must get the same receipt.
        let fingerprint = request_hash(&pb::CommitRequest {
            quote_id: String::new(),
            ..req.clone()
        });
        let cart = validate(&req)?;
        // A lost insert race or an undone attempt goes round again; more means contention.
        for _ in 0..3 {
            match self.store.find(partner_id, &req.transaction_id).await? {
                Some(p) if p.request_hash != fingerprint => return Err(reused()),
                Some(p) if p.status != PurchaseStatus::Pending => return Ok(p.receipt),
                Some(p) => {
                    let Some(attempt) = self
                        .store
                        .take_over(p.receipt.purchase_id, self.lease())
                        .await?
                    else {
                        return Err(busy());
                    };
                    if p.saga.phase == Phase::Compensating {
                        self.undo(who, &p.receipt, p.saga, attempt).await?;
                        continue;
                    }
                    return self.run(who, partner_id, p.receipt, p.saga, attempt).await;
                }
                None => {
                    let draft = self.draft(who, partner_id, &req, &cart).await?;
                    if !self
                        .store
                        .insert_pending(partner_id, &fingerprint, &draft, self.lease())
                        .await?
                    {
                        continue;
                    }
                    return self.run(who, partner_id, draft, Saga::default(), 1).await;
                }
            }
        }
        Err(busy())
    }

    /// Fixes what the purchase costs: the quote's pricing when the quote is valid for this
    /// request, otherwise a fresh one. Every presented voucher must apply.
    async fn draft(
        &self,
        who: &Principal,
        partner_id: Uuid,
        req: &pb::CommitRequest,
        cart: &Cart,
    ) -> Result<Receipt, ApiError> {
        let now = Utc::now();
        let micros = |t: chrono::DateTime<Utc>| t.duration_trunc(TimeDelta::microseconds(1));
        let given_time = req.purchase_time.as_ref().and_then(from_timestamp);
        let purchase_time = micros(given_time.unwrap_or(now)).unwrap_or(now);
        let channel = channel_from_proto(req.channel);
        let (Some(identifier), Some(proto_cart)) = (&req.identifier, &req.cart) else {
            return Err(ApiError::invalid("cart", "is required"));
        };
        let spend = Spend {
            points: req.points_to_spend,
            credit_minor: req.credit_to_spend_minor,
            credit_type: &req.credit_type_id,
        };
        let (customer_id, pricing, quote_honoured) = if req.quote_id.is_empty() {
            let priced = self
                .price(
                    who,
                    &PriceRequest {
                        identifier,
                        proto_cart,
                        cart,
                        business_unit_id: &req.business_unit_id,
                        channel,
                        voucher_codes: &req.voucher_codes,
                        spend,
                        at: given_time,
                        transaction_id: Some(&req.transaction_id),
                    },
                    Mode::Commit,
                )
                .await?;
            (priced.customer_id, priced.pricing, false)
        } else {
            let body = quote::open(&req.quote_id, &self.quote_secret).map_err(|e| match e {
                QuoteError::Malformed | QuoteError::BadSignature => {
                    ApiError::invalid("quote_id", e.to_string())
                }
            })?;
            if body.partner_id != partner_id {
                return Err(ApiError::invalid(
                    "quote_id",
                    "is not a quote of this partner",
                ));
            }
            if now > body.expires_at {
                return Err(ApiError::precondition(
                    "QUOTE_EXPIRED",
                    "the quote expired; evaluate the cart again",
                ));
            }
            let hash = priced_request_hash(
                cart,
                &req.business_unit_id,
                channel,
                &req.voucher_codes,
                spend,
            );
            // The identifier is resolved again: a card blocked since is refused.
            let customer_id = self.peers.resolve_customer(who, identifier).await?;
            if hash != body.request_hash || customer_id != body.customer_id {
                return Err(ApiError::precondition(
                    "QUOTE_MISMATCH",
                    "the cart, vouchers, points, credit or customer differ from the quote's",
                ));
            }
            (customer_id, body.pricing, true)
        };
        if let Some(r) = pricing.rejected_vouchers.first() {
            return Err(ApiError::precondition(
                r.reason.commit_reason(),
                format!("voucher {:?} cannot be redeemed: {}", r.code, r.detail),
            ));
        }
        let paid: i64 = req.payments.iter().map(|p| p.amount_minor).sum();
        if !req.payments.is_empty() && paid != pricing.totals.amount_due_minor() {
            return Err(ApiError::precondition(
                "PAYMENT_TOTAL_MISMATCH",
                format!(
                    "the payments add up to {paid}, the amount due is {}",
                    pricing.totals.amount_due_minor()
                ),
            ));
        }
        Ok(Receipt {
            purchase_id: Uuid::now_v7(),
            transaction_id: req.transaction_id.clone(),
            customer_id,
            business_unit_id: req.business_unit_id.clone(),
            channel,
            purchase_time,
            pricing,
            points_earned: 0,
            points_balance: 0,
            committed_at: now,
            points_spent: 0,
            quote_honoured,
            voucher_ids: Default::default(),
            voucher_points: Default::default(),
            payments: req
                .payments
                .iter()
                .map(|p| Payment {
                    method: p.method.clone(),
                    amount_minor: p.amount_minor,
                })
                .collect(),
            credit_balance_minor: 0,
        })
    }

    /// Drives the saga forward from where it is; on a failure undoes it and answers the
    /// failure. Then records the purchase and `PurchaseCompleted` in one transaction.
    async fn run(
        &self,
        who: &Principal,
        partner_id: Uuid,
        mut receipt: Receipt,
        mut saga: Saga,
        attempt: i64,
    ) -> Result<Receipt, ApiError> {
        match self.forward(who, &mut receipt, &mut saga, attempt).await {
            Ok(()) => {}
            Err(Failure::Lost) => return Err(busy()),
            Err(Failure::Step(e)) => {
                saga.abort(e.to_string());
                // Recorded first, so that a crash during the undo is finished by whoever
                // takes the purchase over next.
                match self
                    .store
                    .save_saga(receipt.purchase_id, attempt, &saga, self.lease())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return Err(busy()),
                    Err(db) => {
                        tracing::warn!(error = %db, "could not record the saga's failure");
                        self.let_go(receipt.purchase_id, attempt).await;
                        return Err(undoing(&e));
                    }
                }
                if let Err(undo) = self.undo(who, &receipt, saga, attempt).await {
                    tracing::warn!(error = %undo, "commit undo incomplete; the retry or recovery finishes it");
                    self.let_go(receipt.purchase_id, attempt).await;
                    // Not final yet: the retry finishes the undo, then answers for good.
                    return Err(undoing(&e));
                }
                return Err(e);
            }
        }
        let recorded = self.record(partner_id, attempt, &receipt, &saga).await;
        if recorded.is_err() {
            self.let_go(receipt.purchase_id, attempt).await;
        }
        recorded
    }

    /// Lets a retry take over at once from an attempt that could not finish.
    async fn let_go(&self, purchase_id: Uuid, attempt: i64) {
        if let Err(e) = self.store.release_lease(purchase_id, attempt).await {
            tracing::debug!(error = %e, "lease not released; it lapses on its own");
        }
    }

    /// Marks the purchase committed and enqueues `PurchaseCompleted`, in one transaction.
    async fn record(
        &self,
        partner_id: Uuid,
        attempt: i64,
        receipt: &Receipt,
        saga: &Saga,
    ) -> Result<Receipt, ApiError> {
        let txn = begin_write(self.store.db()).await?;
        if !self
            .store
            .mark_committed(&txn, attempt, receipt, saga)
            .await?
        {
            drop(txn);
            return match self.store.find(partner_id, &receipt.transaction_id).await? {
                Some(p) if p.status != PurchaseStatus::Pending => Ok(p.receipt),
                _ => Err(busy()),
            };
        }
        events::enqueue(&txn, Some(partner_id), &completed_event(receipt)).await?;
        txn.commit().await?;
        Ok(receipt.clone())
    }

    async fn forward(
        &self,
        who: &Principal,
        receipt: &mut Receipt,
        saga: &mut Saga,
        attempt: i64,
    ) -> Result<(), Failure> {
        let pid = receipt.purchase_id;
        let customer = receipt.customer_id.to_string();
        let txn_id = receipt.transaction_id.clone();
        let channel = channel_to_proto(receipt.channel) as i32;
        let payment = receipt.pricing.points_payment;
        let mut balance: Option<i64> = None;
        // The credit wallet's balance after its capture; a retry that resumes past the capture
        // reads it again.
        let mut credit_after: Option<i64> = None;

        if saga.phase == Phase::Started {
            let holds = futures::future::join_all(receipt.pricing.vouchers.iter().map(|v| {
                let request = rewards::ReserveVoucherRequest {
                    idempotency_key: format!("reserve:{pid}:{}", v.code),
                    code: v.code.clone(),
                    customer_id: customer.clone(),
                    transaction_id: txn_id.clone(),
                    business_unit_id: receipt.business_unit_id.clone(),
                    channel,
                    hold_seconds: self.settings.hold_secs.clamp(1, 3600) as i32,
                };
                async move {
                    (
                        v.code.clone(),
                        self.peers.reserve_voucher(who, request).await,
                    )
                }
            }));
            let points = async {
                match payment {
                    Some(p) => self
                        .peers
                        .reserve_points(
                            who,
                            wallet::ReservePointsRequest {
                                idempotency_key: format!("reserve:{pid}"),
                                customer_id: customer.clone(),
                                points: p.points,
                                reference: format!("purchase:{txn_id}"),
                                ttl_seconds: self.settings.hold_secs.clamp(1, 86_400) as i32,
                                ..Default::default()
                            },
                        )
                        .await
                        .map(Some),
                    None => Ok(None),
                }
            };
            let credit = async {
                match receipt.pricing.credit_payment {
                    Some(c) => self
                        .peers
                        .reserve_points(
                            who,
                            wallet::ReservePointsRequest {
                                idempotency_key: Purse::Credit.key("reserve", pid),
                                customer_id: customer.clone(),
                                points: c.amount_minor,
                                reference: format!("purchase:{txn_id}"),
                                points_type_id: c.points_type_id.to_string(),
                                ttl_seconds: self.settings.hold_secs.clamp(1, 86_400) as i32,
                                ..Default::default()
                            },
                        )
                        .await
                        .map(Some),
                    None => Ok(None),
                }
            };
            let (holds, reservation, credit_reservation) = tokio::join!(holds, points, credit);
            let mut failure = None;
            for (code, held) in holds {
                match held {
                    Ok(voucher_id) => saga.vouchers.push(VoucherHold {
                        code,
                        voucher_id,
                        redeemed: false,
                        points_spent: 0,
                    }),
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            match reservation {
                Ok(id) => saga.points_reservation_id = id,
                Err(e) => failure = failure.or(Some(e)),
            }
            match credit_reservation {
                Ok(id) => saga.credit_reservation_id = id,
                Err(e) => failure = failure.or(Some(e)),
            }
            if let Some(e) = failure {
                return Err(Failure::Step(e));
            }
            saga.phase = Phase::Reserved;
            if !saga.vouchers.is_empty()
                || saga.points_reservation_id.is_some()
                || saga.credit_reservation_id.is_some()
            {
                self.save(pid, attempt, saga).await?;
            }
        }

        if saga.phase == Phase::Reserved {
            let accepted = receipt.pricing.vouchers.clone();
            let redeems = futures::future::join_all(saga.vouchers.iter().map(|hold| {
                let granted = accepted
                    .iter()
                    .find(|a| a.code == hold.code)
                    .map(|a| {
                        if a.discount_minor > 0 {
                            a.discount_minor
                        } else {
                            a.points
                        }
                    })
                    .unwrap_or(0);
                let request = rewards::RedeemVoucherRequest {
                    idempotency_key: format!("redeem:{pid}:{}", hold.code),
                    code: hold.code.clone(),
                    customer_id: customer.clone(),
                    transaction_id: txn_id.clone(),
                    business_unit_id: receipt.business_unit_id.clone(),
                    channel,
                    redeem_time: None,
                    granted_value: granted,
                };
                self.peers.redeem_voucher(who, request)
            }));
            let capture = |purse, reservation: Option<Uuid>| {
                let txn_id = &txn_id;
                async move {
                    match reservation {
                        Some(reservation_id) => self
                            .capture(who, purse, pid, txn_id, reservation_id)
                            .await
                            .map(Some),
                        None => Ok(None),
                    }
                }
            };
            let (redeemed, captured, credit_captured) = tokio::join!(
                redeems,
                capture(Purse::Points, saga.points_reservation_id),
                capture(Purse::Credit, saga.credit_reservation_id)
            );
            let mut failure = None;
            for (hold, result) in saga.vouchers.iter_mut().zip(redeemed) {
                match result {
                    Ok(r) => {
                        hold.redeemed = true;
                        hold.points_spent = r.points_spent;
                    }
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            balance = record_capture(captured, &mut saga.points_capture_posting_id, &mut failure);
            credit_after = record_capture(
                credit_captured,
                &mut saga.credit_capture_posting_id,
                &mut failure,
            );
            if let Some(e) = failure {
                return Err(Failure::Step(e));
            }
            saga.phase = Phase::Captured;
            // Saved before the award too: an undo must know the award may have happened.
            if !saga.vouchers.is_empty()
                || saga.points_capture_posting_id.is_some()
                || saga.credit_capture_posting_id.is_some()
                || receipt.pricing.points_to_earn > 0
            {
                self.save(pid, attempt, saga).await?;
            }
        }

        let earned = receipt.pricing.points_to_earn;
        if earned > 0 {
            let (posting_id, after) = self.award(who, receipt).await.map_err(Failure::Step)?;
            saga.award_posting_id = Some(posting_id);
            balance = Some(after);
        }
        // Balances this attempt did not see (nothing posted, or resumed past the capture).
        let credit = receipt.pricing.credit_payment;
        if balance.is_none() || (credit.is_some() && credit_after.is_none()) {
            let now = self
                .peers
                .wallet_state(who, receipt.customer_id)
                .await
                .map_err(Failure::Step)?;
            balance.get_or_insert(now.available_points);
            if let Some(c) = credit {
                credit_after.get_or_insert(now.credit_available(c.points_type_id));
            }
        }
        receipt.credit_balance_minor = credit_after.unwrap_or(0);
        receipt.points_earned = earned;
        receipt.points_balance = balance.unwrap_or(0);
        receipt.points_spent =
            payment.map(|p| p.points).unwrap_or(0) + saga.vouchers_points_spent();
        receipt.voucher_ids = saga
            .vouchers
            .iter()
            .map(|v| (v.code.clone(), v.voucher_id))
            .collect();
        receipt.voucher_points = saga
            .vouchers
            .iter()
            .filter(|v| v.points_spent > 0)
            .map(|v| (v.code.clone(), v.points_spent))
            .collect();
        receipt.committed_at = Utc::now();
        Ok(())
    }

    async fn save(&self, purchase_id: Uuid, attempt: i64, saga: &Saga) -> Result<(), Failure> {
        match self
            .store
            .save_saga(purchase_id, attempt, saga, self.lease())
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Failure::Lost),
            Err(e) => Err(Failure::Step(e)),
        }
    }

    /// Earns the purchase's points: the same key every time, so it happens once.
    async fn award(&self, who: &Principal, receipt: &Receipt) -> Result<(Uuid, i64), ApiError> {
        self.peers
            .award(
                who,
                wallet::AwardPointsRequest {
                    idempotency_key: format!("purchase:{}", receipt.purchase_id),
                    customer_id: receipt.customer_id.to_string(),
                    points: receipt.pricing.points_to_earn,
                    reason: "purchase".to_owned(),
                    reference: format!("purchase:{}", receipt.transaction_id),
                    cause: wallet::PostingCause::Purchase as i32,
                    ..Default::default()
                },
            )
            .await
    }

    /// Undoes what a turned-around saga did, then drops the pending purchase. Every undo is
    /// idempotent; an error leaves the purchase pending (and compensating) for the next try.
    pub(super) async fn undo(
        &self,
        who: &Principal,
        receipt: &Receipt,
        mut saga: Saga,
        attempt: i64,
    ) -> Result<(), ApiError> {
        let pid = receipt.purchase_id;
        let txn_id = &receipt.transaction_id;
        // The award may have happened without its posting being recorded: ask again under the
        // same key (it answers the first award, or makes one that is reversed right after).
        if saga.reached == Phase::Captured
            && saga.award_posting_id.is_none()
            && receipt.pricing.points_to_earn > 0
        {
            saga.award_posting_id = Some(self.award(who, receipt).await?.0);
        }
        for step in saga.compensations() {
            let result = match &step {
                Undo::ReverseAward { .. } | Undo::ReverseCapture { .. } => {
                    self.reverse_whole(who, pid, txn_id, step.clone()).await
                }
                Undo::ReleasePoints {
                    purse,
                    reservation_id,
                } => {
                    self.release_points(who, *purse, pid, txn_id, *reservation_id)
                        .await
                }
                Undo::ReleaseVoucher { code } => {
                    let hold = saga.vouchers.iter().find(|v| &v.code == code);
                    self.release_voucher(who, pid, txn_id, code, hold.map(|h| h.voucher_id))
                        .await
                }
                Undo::ReinstateVoucher { voucher_id } => {
                    self.reinstate(who, pid, txn_id, *voucher_id).await
                }
            };
            match result {
                Ok(()) => {}
                Err(e) if nothing_to_undo(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.store.delete_pending(pid, attempt).await?;
        Ok(())
    }

    /// Captures the whole points (or credit) hold under the commit's key; answers the
    /// CAPTURE posting and the wallet's balance after.
    async fn capture(
        &self,
        who: &Principal,
        purse: Purse,
        pid: Uuid,
        txn_id: &str,
        reservation_id: Uuid,
    ) -> Result<(Uuid, i64), ApiError> {
        self.peers
            .capture_points(
                who,
                wallet::CapturePointsRequest {
                    idempotency_key: purse.key("capture", pid),
                    reservation_id: reservation_id.to_string(),
                    points: 0,
                    reason: "purchase".into(),
                    reference: format!("purchase:{txn_id}"),
                    cause: wallet::PostingCause::Purchase as i32,
                },
            )
            .await
    }

    /// Reverses all that is left of the award or of the capture, under the undo's key.
    async fn reverse_whole(
        &self,
        who: &Principal,
        pid: Uuid,
        txn_id: &str,
        step: Undo,
    ) -> Result<(), ApiError> {
        let (posting_id, key, reason) = match step {
            Undo::ReverseAward { posting_id } => {
                (posting_id, format!("undo-award:{pid}"), "commit undone")
            }
            Undo::ReverseCapture { purse, posting_id } => (
                posting_id,
                purse.key("undo-capture", pid),
                "commit undone: points back",
            ),
            _ => return Ok(()),
        };
        self.peers
            .reverse_posting(
                who,
                wallet::ReversePostingRequest {
                    idempotency_key: key,
                    posting_id: posting_id.to_string(),
                    amount: 0,
                    reason: reason.into(),
                    reference: format!("purchase:{txn_id}"),
                    cause: wallet::PostingCause::Purchase as i32,
                },
            )
            .await
            .map(|_| ())
    }

    async fn reinstate(
        &self,
        who: &Principal,
        pid: Uuid,
        txn_id: &str,
        voucher_id: Uuid,
    ) -> Result<(), ApiError> {
        self.peers
            .reinstate_voucher(
                who,
                rewards::ReinstateVoucherRequest {
                    idempotency_key: format!("reinstate:{pid}:{voucher_id}"),
                    voucher_id: voucher_id.to_string(),
                    transaction_id: txn_id.to_owned(),
                    reason: "commit compensation".into(),
                },
            )
            .await
            .map(|_| ())
    }

    /// Releases a voucher hold; a hold the crash let turn into a redemption is reinstated.
    async fn release_voucher(
        &self,
        who: &Principal,
        pid: Uuid,
        txn_id: &str,
        code: &str,
        voucher_id: Option<Uuid>,
    ) -> Result<(), ApiError> {
        let released = self
            .peers
            .release_voucher(
                who,
                rewards::ReleaseVoucherRequest {
                    idempotency_key: format!("release:{pid}:{code}"),
                    code: code.to_owned(),
                    transaction_id: txn_id.to_owned(),
                },
            )
            .await;
        match (released, voucher_id) {
            (Err(e), Some(id)) if nothing_to_undo(&e) => self.reinstate(who, pid, txn_id, id).await,
            (r, _) => r,
        }
    }

    /// Releases the points (or credit) hold; a hold the crash let turn into a capture is
    /// reversed.
    async fn release_points(
        &self,
        who: &Principal,
        purse: Purse,
        pid: Uuid,
        txn_id: &str,
        reservation_id: Uuid,
    ) -> Result<(), ApiError> {
        let released = self
            .peers
            .release_points(
                who,
                wallet::ReleasePointsRequest {
                    idempotency_key: purse.key("release", pid),
                    reservation_id: reservation_id.to_string(),
                },
            )
            .await;
        let Err(e) = released else {
            return Ok(());
        };
        if !nothing_to_undo(&e) {
            return Err(e);
        }
        // Not held any more: either lapsed (nothing to do) or captured by this commit, which
        // the capture's own key answers again.
        match self.capture(who, purse, pid, txn_id, reservation_id).await {
            Ok((posting_id, _)) => {
                self.reverse_whole(who, pid, txn_id, Undo::ReverseCapture { purse, posting_id })
                    .await
            }
            Err(e) if nothing_to_undo(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Records a capture's CAPTURE posting in `posting`; answers the wallet's balance after it.
/// A failure is kept in `failure` unless an earlier one is there.
fn record_capture(
    result: Result<Option<(Uuid, i64)>, ApiError>,
    posting: &mut Option<Uuid>,
    failure: &mut Option<ApiError>,
) -> Option<i64> {
    match result {
        Ok(Some((posting_id, after))) => {
            *posting = Some(posting_id);
            Some(after)
        }
        Ok(None) => None,
        Err(e) => {
            failure.get_or_insert(e);
            None
        }
    }
}

enum Failure {
    /// Another call took the purchase over.
    Lost,
    /// A step failed; the saga turns around.
    Step(ApiError),
}

fn completed_event(receipt: &Receipt) -> ev::PurchaseCompleted {
    let lines = &receipt.pricing.lines;
    ev::PurchaseCompleted {
        purchase_id: receipt.purchase_id.to_string(),
        transaction_id: receipt.transaction_id.clone(),
        customer_id: receipt.customer_id.to_string(),
        currency_code: receipt.pricing.totals.currency_code.clone(),
        net_amount_minor: receipt.pricing.totals.net_minor,
        discount_amount_minor: receipt.pricing.totals.discount_minor,
        points_earned: receipt.points_earned,
        product_ids: lines.iter().map(|l| l.product_id.clone()).collect(),
        business_unit_id: receipt.business_unit_id.clone(),
        points_spent: receipt.points_spent,
        voucher_codes: receipt
            .pricing
            .vouchers
            .iter()
            .map(|v| v.code.clone())
            .collect(),
        channel: receipt.channel.as_str().to_owned(),
        purchase_time: Some(loyalty_platform::time::to_timestamp(receipt.purchase_time)),
        product_group_ids: unique(lines.iter().flat_map(|l| l.product_group_ids.iter())),
        brand_ids: unique(lines.iter().map(|l| &l.brand_id).filter(|b| !b.is_empty())),
        credit_spent_minor: receipt.credit_spent_minor(),
    }
}

/// Undoes commits whose caller went away mid-saga (the POS gave up, or checkout died and
/// nobody retried): pending purchases whose lease lapsed `abandon_after` ago. A POS retry
/// arriving later starts afresh.
pub struct Recovery {
    pub api: Arc<CheckoutApi>,
    pub platform_key: SecretString,
    pub interval: Duration,
    pub abandon_after: Duration,
}

impl Recovery {
    pub async fn run(self) {
        if self.interval.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.once().await {
                tracing::warn!(error = %e, "recovery of abandoned commits failed; retrying");
            }
        }
    }

    /// One pass; answers how many abandoned commits were undone.
    pub async fn once(&self) -> Result<usize, ApiError> {
        let before = Utc::now()
            - TimeDelta::from_std(self.abandon_after).unwrap_or_else(|_| TimeDelta::minutes(2));
        let api = &self.api;
        let mut undone = 0;
        for p in api.store.abandoned(before, 100).await? {
            let Some(attempt) = api
                .store
                .take_over(p.receipt.purchase_id, api.lease())
                .await?
            else {
                continue;
            };
            let who = Principal {
                partner_id: Some(p.partner_id),
                api_key_id: None,
                roles: vec![Role::Service],
                platform_admin: false,
                credential: self.platform_key.clone(),
            };
            let mut saga = p.saga;
            saga.abort("abandoned: nobody finished the commit");
            if !api
                .store
                .save_saga(p.receipt.purchase_id, attempt, &saga, api.lease())
                .await?
            {
                continue;
            }
            match api.undo(&who, &p.receipt, saga, attempt).await {
                Ok(()) => undone += 1,
                Err(e) => tracing::warn!(
                    error = %e,
                    transaction_id = %p.receipt.transaction_id,
                    "could not undo an abandoned commit yet"
                ),
            }
        }
        Ok(undone)
    }
}
