//! gRPC adapter of `WalletService`.
use chrono::Utc;
use loyalty_platform::{
    Role, Violations,
    auth::principal,
    error::{check_idempotency_key, parse_uuid},
    events,
    idempotency::{self, IdempotencyScope},
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{
    events::v1 as ev,
    wallet::v1::{self as pb, wallet_service_server::WalletService},
};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{Award, Balance, EntryKind, LedgerEntry},
    store,
};

pub struct WalletApi {
    db: DatabaseConnection,
}

impl WalletApi {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn entry_to_proto(e: &LedgerEntry) -> pb::LedgerEntry {
    pb::LedgerEntry {
        id: e.id.to_string(),
        customer_id: e.customer_id.to_string(),
        kind: (match e.kind {
            EntryKind::Award => pb::LedgerEntryKind::Award,
            EntryKind::Spend => pb::LedgerEntryKind::Spend,
            EntryKind::Reversal => pb::LedgerEntryKind::Reversal,
            EntryKind::Expiry => pb::LedgerEntryKind::Expiry,
            // The contract has no MERGE kind yet; merge entries are not listed by any RPC
            // before ListLedgerEntries lands, which adds it.
            EntryKind::Merge => pb::LedgerEntryKind::Unspecified,
        }) as i32,
        points: e.points,
        reason: e.reason.clone(),
        reference: e.reference.clone(),
        expire_time: e.expires_at.map(to_timestamp),
        create_time: Some(to_timestamp(e.created_at)),
        release_time: e.released_at.map(to_timestamp),
        ..Default::default()
    }
}

fn balance_to_proto(customer_id: Uuid, b: &Balance) -> pb::Balance {
    pb::Balance {
        customer_id: customer_id.to_string(),
        available_points: b.available,
        lifetime_earned_points: b.lifetime_earned,
        lifetime_debited_points: b.lifetime_debited,
        pending_points: b.pending,
        next_expire_time: b.next_expiry.map(|(t, _)| to_timestamp(t)),
        next_expire_points: b.next_expiry.map(|(_, p)| p).unwrap_or(0),
        ..Default::default()
    }
}

/// What AwardPoints answers (and stores for retries).
#[derive(Serialize, Deserialize)]
struct Awarded {
    entry: LedgerEntry,
    balance: Balance,
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

#[tonic::async_trait]
impl WalletService for WalletApi {
    #[tracing::instrument(skip_all)]
    async fn award_points(
        &self,
        request: Request<pb::AwardPointsRequest>,
    ) -> Result<Response<pb::AwardPointsResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[
            Role::Pos,
            Role::Support,
            Role::Service,
            Role::Marketing,
        ])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "AwardPoints", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = v.check(
            "customer_id",
            parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
        );
        if !req.points_type_id.is_empty() {
            v.add(
                "points_type_id",
                "points types land with issue #5; leave empty for the default",
            );
        }
        let now = Utc::now();
        let award = Award {
            customer_id: customer_id.unwrap_or_default(),
            points: req.points,
            reason: req.reason.clone(),
            reference: req.reference.clone(),
            expires_at: parse_time(&mut v, "expire_time", req.expire_time.as_ref()),
            released_at: parse_time(&mut v, "release_time", req.release_time.as_ref()),
        };
        award.validate(&mut v, now);
        v.into_result()?;
        let awarded: Awarded = idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                // Awards for a customer merged into another go to the surviving customer.
                let customer_id =
                    store::resolve_customer(txn, partner_id, award.customer_id).await?;
                let entry = Award {
                    customer_id,
                    ..award
                }
                .into_entry(now);
                store::insert(txn, partner_id, &entry).await?;
                let balance = Balance::of(
                    &store::entries(txn, partner_id, entry.customer_id).await?,
                    now,
                );
                events::enqueue(
                    txn,
                    Some(partner_id),
                    &ev::PointsPosted {
                        customer_id: entry.customer_id.to_string(),
                        entry_id: entry.id.to_string(),
                        points: entry.points,
                        available_points: balance.available,
                    },
                )
                .await?;
                Ok(Awarded { entry, balance })
            })
        })
        .await?;
        Ok(Response::new(pb::AwardPointsResponse {
            entry: Some(entry_to_proto(&awarded.entry)),
            balance: Some(balance_to_proto(
                awarded.entry.customer_id,
                &awarded.balance,
            )),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[
            Role::Pos,
            Role::Support,
            Role::Service,
            Role::Marketing,
        ])?;
        let customer_id = parse_uuid("customer_id", &request.get_ref().customer_id)?;
        let entries = store::entries(&self.db, partner_id, customer_id).await?;
        let balance = Balance::of(&entries, Utc::now());
        Ok(Response::new(pb::GetBalanceResponse {
            balance: Some(balance_to_proto(customer_id, &balance)),
        }))
    }

    loyalty_platform::rpcs_not_yet_implemented! {
        "lands with issue #5 (wallet and ledger)";
        create_points_group(pb::CreatePointsGroupRequest) -> pb::CreatePointsGroupResponse;
        get_points_group(pb::GetPointsGroupRequest) -> pb::GetPointsGroupResponse;
        list_points_groups(pb::ListPointsGroupsRequest) -> pb::ListPointsGroupsResponse;
        update_points_group(pb::UpdatePointsGroupRequest) -> pb::UpdatePointsGroupResponse;
        delete_points_group(pb::DeletePointsGroupRequest) -> pb::DeletePointsGroupResponse;
        create_points_type(pb::CreatePointsTypeRequest) -> pb::CreatePointsTypeResponse;
        get_points_type(pb::GetPointsTypeRequest) -> pb::GetPointsTypeResponse;
        list_points_types(pb::ListPointsTypesRequest) -> pb::ListPointsTypesResponse;
        update_points_type(pb::UpdatePointsTypeRequest) -> pb::UpdatePointsTypeResponse;
        delete_points_type(pb::DeletePointsTypeRequest) -> pb::DeletePointsTypeResponse;
        get_wallet(pb::GetWalletRequest) -> pb::GetWalletResponse;
        list_wallets(pb::ListWalletsRequest) -> pb::ListWalletsResponse;
        list_ledger_entries(pb::ListLedgerEntriesRequest) -> pb::ListLedgerEntriesResponse;
        list_points_lots(pb::ListPointsLotsRequest) -> pb::ListPointsLotsResponse;
        spend_points(pb::SpendPointsRequest) -> pb::SpendPointsResponse;
        reverse_points(pb::ReversePointsRequest) -> pb::ReversePointsResponse;
        expire_points(pb::ExpirePointsRequest) -> pb::ExpirePointsResponse;
        block_spending(pb::BlockSpendingRequest) -> pb::BlockSpendingResponse;
        unblock_spending(pb::UnblockSpendingRequest) -> pb::UnblockSpendingResponse;
        award_commerce_credit(pb::AwardCommerceCreditRequest) -> pb::AwardCommerceCreditResponse;
        redeem_commerce_balance(pb::RedeemCommerceBalanceRequest) -> pb::RedeemCommerceBalanceResponse;
        spend_open_balance(pb::SpendOpenBalanceRequest) -> pb::SpendOpenBalanceResponse;
        payout(pb::PayoutRequest) -> pb::PayoutResponse;
        verify_wallet(pb::VerifyWalletRequest) -> pb::VerifyWalletResponse;
    }
}
