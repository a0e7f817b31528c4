//! Returns of goods and voids of whole purchases.
//!
//! A return's plan (lines, refund, points) is fixed and recorded first, under a per-purchase
//! lock so that concurrent returns of one purchase never return a unit twice; then the wallet
//! reverses the points and the vouchers come back, each under a key made of the return's
//! row id; then the return is completed with `PurchaseReturned` in one transaction. A retry
//! of a return that stopped half way finishes it.
use std::collections::HashSet;

use chrono::Utc;
use loyalty_platform::{
    ApiError, Principal, Violations,
    db::{advisory_xact_lock, begin_write},
    events,
    idempotency::request_hash,
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{
    checkout::v1 as pb, events::v1 as ev, rewards::v1 as rewards, wallet::v1 as wallet,
};
use uuid::Uuid;

use super::{CheckoutApi, purchase_to_proto};
use crate::{
    domain::returns::{self, ReturnError, ReturnLine, ReturnRecord, Returned},
    store::{PurchaseStatus, StoredPurchase, StoredReturn},
};

fn record_of(r: &StoredReturn) -> Result<ReturnRecord, ApiError> {
    serde_json::from_value(r.receipt.clone())
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("stored return")))
}

fn to_json(r: &ReturnRecord) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(r).map_err(|e| ApiError::Internal(e.into()))
}

pub(super) fn return_to_proto(r: &ReturnRecord) -> pb::ReturnReceipt {
    pb::ReturnReceipt {
        return_id: r.return_id.clone(),
        purchase_id: r.purchase_id.to_string(),
        original_transaction_id: r.original_transaction_id.clone(),
        customer_id: r.customer_id.to_string(),
        lines: r
            .plan
            .lines
            .iter()
            .map(|l| pb::ReturnedLine {
                line_id: l.line_id.clone(),
                product_id: l.product_id.clone(),
                quantity: l.quantity,
                refund_amount_minor: l.refund_minor,
            })
            .collect(),
        currency_code: r.currency_code.clone(),
        refund_amount_minor: r.plan.refund_minor,
        points_reversed: r.plan.points_reversed,
        points_refunded: r.plan.points_refunded,
        points_balance: r.points_balance,
        reinstated_voucher_codes: r.reinstated_voucher_codes.clone(),
        return_time: Some(to_timestamp(r.return_time)),
        credit_refunded_minor: r.plan.credit_refunded_minor,
        payment_refund_minor: r.plan.payment_refund_minor,
    }
}

fn validate(req: &pb::ReturnRequest) -> Result<Vec<ReturnLine>, ApiError> {
    let mut v = Violations::new();
    if req.return_id.is_empty() || req.return_id.chars().count() > 128 {
        v.add("return_id", "must be 1..128 characters");
    }
    if req.original_transaction_id.is_empty() || req.original_transaction_id.chars().count() > 128 {
        v.add("original_transaction_id", "must be 1..128 characters");
    }
    if req.lines.is_empty() {
        v.add("lines", "at least one line is required");
    } else if req.lines.len() > 500 {
        v.add("lines", "at most 500 lines");
    }
    let mut seen = HashSet::new();
    for (i, l) in req.lines.iter().enumerate() {
        if l.line_id.is_empty() {
            v.add(format!("lines[{i}].line_id"), "is required");
        } else if !seen.insert(l.line_id.as_str()) {
            v.add(
                format!("lines[{i}].line_id"),
                "must be unique within the return",
            );
        }
        if l.quantity <= 0 {
            v.add(format!("lines[{i}].quantity"), "must be greater than 0");
        }
    }
    if req.business_unit_id.chars().count() > 64 {
        v.add("business_unit_id", "must be at most 64 characters");
    }
    if let Some(t) = &req.return_time
        && from_timestamp(t).is_none()
    {
        v.add("return_time", "must be a valid timestamp");
    }
    v.into_result()?;
    Ok(req
        .lines
        .iter()
        .map(|l| ReturnLine {
            line_id: l.line_id.clone(),
            quantity: l.quantity,
        })
        .collect())
}

impl CheckoutApi {
    /// The completed returns of a purchase, oldest first.
    pub(super) async fn return_receipts(
        &self,
        purchase_id: Uuid,
    ) -> Result<Vec<pb::ReturnReceipt>, ApiError> {
        self.store
            .returns_of(self.store.db(), purchase_id)
            .await?
            .iter()
            .filter(|r| r.completed)
            .map(|r| record_of(r).map(|rec| return_to_proto(&rec)))
            .collect()
    }

    async fn committed(
        &self,
        partner_id: Uuid,
        transaction_id: &str,
    ) -> Result<StoredPurchase, ApiError> {
        self.store
            .find(partner_id, transaction_id)
            .await?
            .filter(|p| p.status != PurchaseStatus::Pending)
            .ok_or_else(|| ApiError::NotFound("purchase".into()))
    }

    pub(super) async fn return_goods(
        &self,
        who: &Principal,
        partner_id: Uuid,
        req: pb::ReturnRequest,
    ) -> Result<pb::ReturnReceipt, ApiError> {
        let lines = validate(&req)?;
        let fingerprint = request_hash(&req);
        if let Some(done) = self
            .store
            .find_return(self.store.db(), partner_id, &req.return_id)
            .await?
        {
            return self
                .finish_return(who, partner_id, done, &fingerprint)
                .await;
        }
        let purchase = self
            .committed(partner_id, &req.original_transaction_id)
            .await?;
        if purchase.status == PurchaseStatus::Voided {
            return Err(ApiError::precondition(
                "PURCHASE_VOIDED",
                "the purchase was voided",
            ));
        }
        let receipt = &purchase.receipt;
        let txn = begin_write(self.store.db()).await?;
        advisory_xact_lock(&txn, &format!("checkout-returns:{}", receipt.purchase_id)).await?;
        let earlier = self
            .store
            .returns_of(&txn, receipt.purchase_id)
            .await?
            .iter()
            .map(record_of)
            .collect::<Result<Vec<_>, _>>()?;
        let plan = returns::plan(
            &receipt.pricing.lines,
            receipt.paid(),
            &Returned::of(&earlier),
            &lines,
        )
        .map_err(|e| match e {
            ReturnError::UnknownLine { .. } => ApiError::NotFound(e.to_string()),
            ReturnError::QuantityExceeded { .. } => {
                ApiError::precondition("RETURN_QUANTITY_EXCEEDED", e.to_string())
            }
        })?;
        let record = ReturnRecord {
            return_id: req.return_id.clone(),
            purchase_id: receipt.purchase_id,
            original_transaction_id: receipt.transaction_id.clone(),
            customer_id: receipt.customer_id,
            currency_code: receipt.pricing.totals.currency_code.clone(),
            business_unit_id: req.business_unit_id.clone(),
            plan,
            points_balance: 0,
            reinstated_voucher_codes: Vec::new(),
            return_time: req
                .return_time
                .as_ref()
                .and_then(from_timestamp)
                .unwrap_or_else(Utc::now),
        };
        let stored = StoredReturn {
            id: Uuid::now_v7(),
            return_id: req.return_id.clone(),
            request_hash: fingerprint.clone(),
            completed: false,
            receipt: to_json(&record)?,
        };
        if !self
            .store
            .insert_return(&txn, partner_id, receipt.purchase_id, &stored)
            .await?
        {
            // A concurrent call with the same return id recorded it first.
            drop(txn);
            let done = self
                .store
                .find_return(self.store.db(), partner_id, &req.return_id)
                .await?
                .ok_or_else(|| ApiError::Unavailable("return in progress; retry".into()))?;
            return self
                .finish_return(who, partner_id, done, &fingerprint)
                .await;
        }
        txn.commit().await?;
        self.finish_return(who, partner_id, stored, &fingerprint)
            .await
    }

    /// Answers a recorded return, doing first what a pending one still has to do.
    async fn finish_return(
        &self,
        who: &Principal,
        partner_id: Uuid,
        stored: StoredReturn,
        fingerprint: &str,
    ) -> Result<pb::ReturnReceipt, ApiError> {
        if stored.request_hash != fingerprint {
            return Err(ApiError::Conflict {
                reason: "RETURN_ID_REUSED",
                message: "this return_id was used for a different return".into(),
            });
        }
        let mut record = record_of(&stored)?;
        if stored.completed {
            return Ok(return_to_proto(&record));
        }
        let purchase = self
            .store
            .find_by_id(partner_id, record.purchase_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("purchase".into()))?;
        let key = |what: &str| format!("return:{}:{what}", stored.id);
        let mut balance = None;
        if record.plan.points_reversed > 0
            && let Some(posting) = purchase.saga.award_posting_id
        {
            balance = Some(
                self.reverse(
                    who,
                    posting,
                    record.plan.points_reversed,
                    key("earned"),
                    &record,
                )
                .await?,
            );
        }
        if record.plan.points_refunded > 0
            && let Some(posting) = purchase.saga.points_capture_posting_id
        {
            balance = Some(
                self.reverse(
                    who,
                    posting,
                    record.plan.points_refunded,
                    key("spent"),
                    &record,
                )
                .await?,
            );
        }
        if record.plan.credit_refunded_minor > 0
            && let Some(posting) = purchase.saga.credit_capture_posting_id
        {
            self.reverse(
                who,
                posting,
                record.plan.credit_refunded_minor,
                key("credit"),
                &record,
            )
            .await?;
        }
        if record.plan.fully_returned {
            record.reinstated_voucher_codes = self
                .reinstate_all(who, &purchase, |voucher| key(&voucher.to_string()))
                .await?;
        }
        record.points_balance = match balance {
            Some(b) => b,
            None => {
                self.peers
                    .wallet_state(who, record.customer_id)
                    .await?
                    .available_points
            }
        };
        let txn = begin_write(self.store.db()).await?;
        if self
            .store
            .complete_return(&txn, stored.id, &to_json(&record)?)
            .await?
        {
            events::enqueue(
                &txn,
                Some(partner_id),
                &returned_event(&record, &purchase, false),
            )
            .await?;
            txn.commit().await?;
            Ok(return_to_proto(&record))
        } else {
            // A concurrent retry completed it: its receipt is the answer.
            drop(txn);
            let done = self
                .store
                .find_return(self.store.db(), partner_id, &stored.return_id)
                .await?
                .ok_or_else(|| ApiError::NotFound("return".into()))?;
            Ok(return_to_proto(&record_of(&done)?))
        }
    }

    async fn reverse(
        &self,
        who: &Principal,
        posting: Uuid,
        amount: i64,
        idempotency_key: String,
        record: &ReturnRecord,
    ) -> Result<i64, ApiError> {
        self.peers
            .reverse_posting(
                who,
                wallet::ReversePostingRequest {
                    idempotency_key,
                    posting_id: posting.to_string(),
                    amount,
                    reason: "return".into(),
                    reference: format!("return:{}", record.return_id),
                    cause: wallet::PostingCause::Return as i32,
                },
            )
            .await
    }

    /// Reinstates the purchase's redeemed vouchers; answers the codes usable again.
    async fn reinstate_all(
        &self,
        who: &Principal,
        purchase: &StoredPurchase,
        key: impl Fn(Uuid) -> String,
    ) -> Result<Vec<String>, ApiError> {
        let mut usable = Vec::new();
        for v in purchase.saga.vouchers.iter().filter(|v| v.redeemed) {
            let active = self
                .peers
                .reinstate_voucher(
                    who,
                    rewards::ReinstateVoucherRequest {
                        idempotency_key: key(v.voucher_id),
                        voucher_id: v.voucher_id.to_string(),
                        transaction_id: purchase.receipt.transaction_id.clone(),
                        reason: "return".into(),
                    },
                )
                .await?;
            if active {
                usable.push(v.code.clone());
            }
        }
        Ok(usable)
    }

    pub(super) async fn void(
        &self,
        who: &Principal,
        partner_id: Uuid,
        req: pb::VoidPurchaseRequest,
    ) -> Result<pb::Purchase, ApiError> {
        let mut v = Violations::new();
        if req.transaction_id.is_empty() || req.transaction_id.chars().count() > 128 {
            v.add("transaction_id", "must be 1..128 characters");
        }
        if req.reason.trim().is_empty() || req.reason.chars().count() > 200 {
            v.add("reason", "must be 1..200 characters");
        }
        if !(-840..=840).contains(&req.utc_offset_minutes) {
            v.add("utc_offset_minutes", "must be -840..840");
        }
        v.into_result()?;
        let purchase = self.committed(partner_id, &req.transaction_id).await?;
        let pid = purchase.receipt.purchase_id;
        if purchase.status == PurchaseStatus::Voided {
            return Ok(purchase_to_proto(&purchase, Vec::new()));
        }
        if !self
            .store
            .returns_of(self.store.db(), pid)
            .await?
            .is_empty()
        {
            return Err(ApiError::precondition(
                "ALREADY_RETURNED",
                "goods of this purchase were returned; return the rest instead",
            ));
        }
        let now = Utc::now();
        if !returns::voidable(purchase.receipt.purchase_time, now, req.utc_offset_minutes) {
            return Err(ApiError::precondition(
                "VOID_WINDOW_CLOSED",
                "a purchase can be voided on its business day only; return it instead",
            ));
        }
        let record = ReturnRecord {
            return_id: format!("void:{}", purchase.receipt.transaction_id),
            purchase_id: pid,
            original_transaction_id: purchase.receipt.transaction_id.clone(),
            customer_id: purchase.receipt.customer_id,
            currency_code: purchase.receipt.pricing.totals.currency_code.clone(),
            business_unit_id: purchase.receipt.business_unit_id.clone(),
            plan: returns::plan(
                &purchase.receipt.pricing.lines,
                purchase.receipt.paid(),
                &Returned::default(),
                &purchase
                    .receipt
                    .pricing
                    .lines
                    .iter()
                    .map(|l| ReturnLine {
                        line_id: l.line_id.clone(),
                        quantity: l.quantity,
                    })
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("voiding: {e}")))?,
            points_balance: 0,
            reinstated_voucher_codes: Vec::new(),
            return_time: now,
        };
        // Whole postings (amount 0 = all not yet reversed), under the void's own keys.
        if let Some(posting) = purchase.saga.award_posting_id {
            self.reverse(who, posting, 0, format!("void:{pid}:earned"), &record)
                .await?;
        }
        if let Some(posting) = purchase.saga.points_capture_posting_id {
            self.reverse(who, posting, 0, format!("void:{pid}:spent"), &record)
                .await?;
        }
        if let Some(posting) = purchase.saga.credit_capture_posting_id {
            self.reverse(who, posting, 0, format!("void:{pid}:credit"), &record)
                .await?;
        }
        self.reinstate_all(who, &purchase, |voucher| format!("void:{pid}:{voucher}"))
            .await?;
        let txn = begin_write(self.store.db()).await?;
        if self
            .store
            .mark_voided(&txn, pid, req.reason.trim(), now)
            .await?
        {
            events::enqueue(
                &txn,
                Some(partner_id),
                &returned_event(&record, &purchase, true),
            )
            .await?;
            txn.commit().await?;
        } else {
            drop(txn);
        }
        let voided = self.committed(partner_id, &req.transaction_id).await?;
        Ok(purchase_to_proto(&voided, Vec::new()))
    }
}

fn returned_event(
    record: &ReturnRecord,
    purchase: &StoredPurchase,
    voided: bool,
) -> ev::PurchaseReturned {
    ev::PurchaseReturned {
        return_id: record.return_id.clone(),
        purchase_id: record.purchase_id.to_string(),
        transaction_id: purchase.receipt.transaction_id.clone(),
        customer_id: record.customer_id.to_string(),
        currency_code: record.currency_code.clone(),
        refund_amount_minor: record.plan.refund_minor,
        points_reversed: record.plan.points_reversed,
        points_refunded: record.plan.points_refunded,
        product_ids: record
            .plan
            .lines
            .iter()
            .map(|l| l.product_id.clone())
            .collect(),
        business_unit_id: record.business_unit_id.clone(),
        fully_returned: record.plan.fully_returned,
        voided,
        credit_refunded_minor: record.plan.credit_refunded_minor,
    }
}
