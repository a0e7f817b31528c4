//! Read-side queries of the List RPCs, converted for the wire.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, Violations};
use loyalty_proto::wallet::v1 as pb;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, NullOrdering, Order},
};
use uuid::Uuid;

use super::convert;
use crate::domain::AccountKind;
use crate::store::{
    entities::{ledger_accounts as accounts, ledger_postings, points_lots as lots},
    ledger::{TypeRow, Wallet},
    ops::{self, WalletView},
};

/// Postings with their allocations, account kinds and created lots, in the rows' order.
pub async fn postings(
    conn: &impl ConnectionTrait,
    rows: &[ledger_postings::Model],
) -> Result<Vec<pb::Posting>, ApiError> {
    let ids: Vec<Uuid> = rows.iter().map(|p| p.id).collect();
    let allocations = ops::allocations_of_many(conn, ids).await?;
    let mut by_posting: HashMap<Uuid, Vec<_>> = HashMap::new();
    for a in &allocations {
        by_posting.entry(a.posting_id).or_default().push(a);
    }
    let mut account_ids: Vec<Uuid> = rows
        .iter()
        .flat_map(|p| [p.debit_account_id, p.credit_account_id])
        .collect();
    account_ids.sort();
    account_ids.dedup();
    let kinds: HashMap<Uuid, AccountKind> = if account_ids.is_empty() {
        HashMap::new()
    } else {
        accounts::Entity::find()
            .filter(accounts::Column::Id.is_in(account_ids))
            .all(conn)
            .await?
            .into_iter()
            .filter_map(|a| AccountKind::parse_str(&a.kind).map(|k| (a.id, k)))
            .collect()
    };
    let lot_ids: Vec<Uuid> = rows.iter().filter_map(|p| p.lot_id).collect();
    let lots_by_id: HashMap<Uuid, lots::Model> = if lot_ids.is_empty() {
        HashMap::new()
    } else {
        lots::Entity::find()
            .filter(lots::Column::Id.is_in(lot_ids))
            .all(conn)
            .await?
            .into_iter()
            .map(|l| (l.id, l))
            .collect()
    };
    let kind_of = |id: &Uuid| kinds.get(id).copied().unwrap_or(AccountKind::Wallet);
    Ok(rows
        .iter()
        .map(|p| {
            convert::posting_row(
                p,
                by_posting.get(&p.id).map(Vec::as_slice).unwrap_or(&[]),
                kind_of(&p.debit_account_id),
                kind_of(&p.credit_account_id),
                p.lot_id.and_then(|l| lots_by_id.get(&l)),
            )
        })
        .collect())
}

/// Lot pages are ordered by expiry, which is not unique; the token is the offset.
pub fn parse_offset_token(v: &mut Violations, token: &str) -> u64 {
    if token.is_empty() {
        return 0;
    }
    token.parse().unwrap_or_else(|_| {
        v.add("page_token", "is not a token this service issued");
        0
    })
}

/// A customer's lots in the given states, soonest-expiring first; and whether more follow.
#[allow(clippy::too_many_arguments)]
pub async fn lots(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    points_type_id: Option<Uuid>,
    states: &[pb::PointsLotState],
    offset: u64,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<(Vec<pb::PointsLot>, bool), ApiError> {
    use pb::PointsLotState as S;
    let mut q = lots::Entity::find()
        .filter(lots::Column::PartnerId.eq(partner_id))
        .filter(lots::Column::CustomerId.eq(customer_id));
    if let Some(t) = points_type_id {
        q = q.filter(lots::Column::PointsTypeId.eq(t));
    }
    let mut any = sea_orm::Condition::any();
    for s in states {
        any = any.add(match s {
            S::Pending => sea_orm::Condition::all()
                .add(lots::Column::RemainingAmount.gt(0))
                .add(lots::Column::ExpiredAt.is_null())
                .add(lots::Column::ReleaseAt.gt(now)),
            S::Available => sea_orm::Condition::all()
                .add(lots::Column::RemainingAmount.gt(0))
                .add(lots::Column::ExpiredAt.is_null())
                .add(
                    sea_orm::Condition::any()
                        .add(lots::Column::ReleaseAt.is_null())
                        .add(lots::Column::ReleaseAt.lte(now)),
                ),
            S::Consumed => sea_orm::Condition::all()
                .add(lots::Column::RemainingAmount.eq(0))
                .add(lots::Column::ExpiredAt.is_null()),
            S::Expired => sea_orm::Condition::all().add(lots::Column::ExpiredAt.is_not_null()),
            S::Unspecified => sea_orm::Condition::all(),
        });
    }
    let rows = q
        .filter(any)
        .order_by_with_nulls(lots::Column::ExpireAt, Order::Asc, NullOrdering::Last)
        .order_by_asc(lots::Column::CreatedAt)
        .order_by_asc(lots::Column::Id)
        .offset(offset)
        .limit(limit + 1)
        .all(conn)
        .await?;
    let more = rows.len() as u64 > limit;
    let account_ids: Vec<Uuid> = rows.iter().map(|l| l.account_id).collect();
    let kinds: HashMap<Uuid, AccountKind> = if account_ids.is_empty() {
        HashMap::new()
    } else {
        accounts::Entity::find()
            .filter(accounts::Column::Id.is_in(account_ids))
            .all(conn)
            .await?
            .into_iter()
            .filter_map(|a| AccountKind::parse_str(&a.kind).map(|k| (a.id, k)))
            .collect()
    };
    Ok((
        rows.iter()
            .take(limit as usize)
            .map(|l| {
                convert::lot(
                    l,
                    kinds
                        .get(&l.account_id)
                        .copied()
                        .unwrap_or(AccountKind::Wallet),
                    now,
                )
            })
            .collect(),
        more,
    ))
}

/// Wallets of one points type ordered by customer id, with at least `min_balance` (stored
/// balance of the WALLET account, pending included); and the last customer id.
pub async fn wallets(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ty: &TypeRow,
    after: Option<Uuid>,
    min_balance: i64,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<(Vec<WalletView>, Option<Uuid>), ApiError> {
    let mut q = accounts::Entity::find()
        .filter(accounts::Column::PartnerId.eq(partner_id))
        .filter(accounts::Column::PointsTypeId.eq(ty.id))
        .filter(accounts::Column::Kind.eq(AccountKind::Wallet.as_str()));
    if let Some(a) = after {
        q = q.filter(accounts::Column::CustomerId.gt(a));
    }
    if min_balance > 0 {
        q = q.filter(Expr::col(accounts::Column::Balance).gte(min_balance));
    }
    let rows = q
        .order_by_asc(accounts::Column::CustomerId)
        .limit(limit)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for a in &rows {
        let own: Vec<accounts::Model> = accounts::Entity::find()
            .filter(accounts::Column::PartnerId.eq(partner_id))
            .filter(accounts::Column::CustomerId.eq(a.customer_id))
            .filter(accounts::Column::PointsTypeId.eq(ty.id))
            .all(conn)
            .await?;
        let w = Wallet::read(conn, partner_id, ty, a.customer_id, now, &own).await?;
        out.push(ops::view(conn, &w).await?);
    }
    Ok((out, rows.last().map(|a| a.customer_id)))
}
