//! Award and Spend through `WalletService`, as a POS or another service calls them.
use std::{collections::BTreeSet, sync::Mutex};

use futures::{StreamExt, TryStreamExt, stream};
use loyalty_proto::wallet::v1::{
    self as pb, PostingCause, wallet_service_client::WalletServiceClient,
};
use rand::Rng;
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use uuid::Uuid;

use crate::{
    driver::{Outcome, Workload},
    grpc::{authed, class},
};

use super::Amounts;

pub struct GrpcWallet {
    clients: Vec<WalletServiceClient<Channel>>,
    bearer: MetadataValue<Ascii>,
    customers: Vec<String>,
    run_id: String,
    amounts: Amounts,
    /// Error classes already shown once on stderr.
    shown: Mutex<BTreeSet<String>>,
}

pub fn award_request(key: String, customer_id: String, points: i64) -> pb::AwardPointsRequest {
    pb::AwardPointsRequest {
        idempotency_key: key.clone(),
        customer_id,
        points,
        reason: "loadgen award".to_owned(),
        reference: format!("purchase:{key}"),
        cause: PostingCause::Purchase as i32,
        ..Default::default()
    }
}

pub fn spend_request(key: String, customer_id: String, points: i64) -> pb::SpendPointsRequest {
    pb::SpendPointsRequest {
        idempotency_key: key.clone(),
        customer_id,
        points,
        reason: "loadgen spend".to_owned(),
        reference: format!("purchase:{key}"),
        cause: PostingCause::Purchase as i32,
        ..Default::default()
    }
}

impl GrpcWallet {
    pub fn new(
        channels: Vec<Channel>,
        bearer: MetadataValue<Ascii>,
        customers: &[Uuid],
        run_id: &str,
        amounts: Amounts,
    ) -> Self {
        Self {
            clients: channels.into_iter().map(WalletServiceClient::new).collect(),
            bearer,
            customers: customers.iter().map(Uuid::to_string).collect(),
            run_id: run_id.to_owned(),
            amounts,
            shown: Mutex::new(BTreeSet::new()),
        }
    }

    fn client(&self, n: u64) -> WalletServiceClient<Channel> {
        self.clients[(n % self.clients.len() as u64) as usize].clone()
    }

    /// Awards `points` to every customer (so that spends never run out), `concurrency` at a
    /// time. Returns the UUID of the points type the awards went to (the partner's default).
    pub async fn prefund(&self, points: i64, concurrency: usize) -> anyhow::Result<Uuid> {
        let types: Vec<String> = stream::iter(self.customers.iter().enumerate())
            .map(|(i, customer)| async move {
                let req = award_request(
                    format!("lg-{}-fund-{i}", self.run_id),
                    customer.clone(),
                    points,
                );
                let answer = self
                    .client(i as u64)
                    .award_points(authed(req, &self.bearer))
                    .await
                    .map_err(|s| anyhow::anyhow!("funding customer {customer}: {s}"))?;
                Ok::<_, anyhow::Error>(
                    answer
                        .into_inner()
                        .posting
                        .map(|p| p.points_type_id)
                        .unwrap_or_default(),
                )
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        let first = types
            .first()
            .ok_or_else(|| anyhow::anyhow!("no customers to fund"))?;
        Ok(Uuid::parse_str(first)?)
    }

    fn failed(&self, op: &'static str, status: tonic::Status) -> Outcome {
        let c = class(&status);
        if self
            .shown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{op} {c}"))
        {
            eprintln!("gRPC {op} failed (first of its kind): {status}");
        }
        Outcome::failed(op, c)
    }
}

impl Workload for GrpcWallet {
    /// Even calls award, odd ones spend, each for a random customer.
    async fn call(&self, seq: u64) -> Outcome {
        let customer = self.customers[rand::rng().random_range(0..self.customers.len())].clone();
        let key = format!("lg-{}-{seq}", self.run_id);
        let mut client = self.client(seq / 2);
        if seq.is_multiple_of(2) {
            let req = award_request(key, customer, self.amounts.award);
            match client.award_points(authed(req, &self.bearer)).await {
                Ok(_) => Outcome::ok("award"),
                Err(s) => self.failed("award", s),
            }
        } else {
            let req = spend_request(key, customer, self.amounts.spend);
            match client.spend_points(authed(req, &self.bearer)).await {
                Ok(_) => Outcome::ok("spend"),
                Err(s) => self.failed("spend", s),
            }
        }
    }
}
