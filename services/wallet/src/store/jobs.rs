//! The expiry job: posts the expiry of lots and the release of reservations whose time has
//! passed, one wallet per transaction. Every replica runs the scheduler; the wallet lock and
//! the re-check under it make concurrent runs safe, and a second run finds nothing due.
use std::time::Duration;

use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, db::begin_write};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ops;

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryRun {
    pub lots: i64,
    pub amount: i64,
    pub reservations: i64,
    pub wallets: i64,
    /// More was due than `max_wallets` allowed.
    pub more: bool,
}

/// Expires what is due at `as_of` on up to `max_wallets` wallets of a partner.
pub async fn expire_partner(
    db: &DatabaseConnection,
    partner_id: Uuid,
    customer_id: Option<Uuid>,
    as_of: DateTime<Utc>,
    max_wallets: u64,
) -> Result<ExpiryRun, ApiError> {
    let due = ops::due_wallets(db, partner_id, customer_id, as_of, max_wallets + 1).await?;
    let mut run = ExpiryRun {
        more: due.len() as u64 > max_wallets,
        ..ExpiryRun::default()
    };
    for (customer_id, points_type_id) in due.into_iter().take(max_wallets as usize) {
        let txn = begin_write(db).await?;
        let done = ops::expire_wallet(&txn, partner_id, customer_id, points_type_id, as_of).await?;
        txn.commit().await?;
        run.lots += done.lots;
        run.amount += done.amount;
        run.reservations += done.reservations;
        if done != ops::Expired::default() {
            run.wallets += 1;
        }
    }
    Ok(run)
}

/// Runs the expiry of every partner every `interval` until the process ends.
pub fn spawn_scheduler(db: DatabaseConnection, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sweep(&db, Utc::now()).await {
                tracing::warn!(error = %e, "expiry run failed; retrying at the next tick");
            }
        }
    });
}

/// One pass over every partner with something due.
pub async fn sweep(db: &DatabaseConnection, as_of: DateTime<Utc>) -> Result<ExpiryRun, ApiError> {
    const BATCH: u64 = 1_000;
    let mut total = ExpiryRun::default();
    for partner_id in ops::partners_with_due(db, as_of).await? {
        loop {
            let run = expire_partner(db, partner_id, None, as_of, BATCH).await?;
            total.lots += run.lots;
            total.amount += run.amount;
            total.reservations += run.reservations;
            total.wallets += run.wallets;
            if !run.more || run.wallets == 0 {
                break;
            }
        }
    }
    if total.wallets > 0 {
        tracing::info!(
            lots = total.lots,
            amount = total.amount,
            reservations = total.reservations,
            wallets = total.wallets,
            "expired what was due"
        );
    }
    Ok(total)
}
