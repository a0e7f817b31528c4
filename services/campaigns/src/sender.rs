//! The send queue's workers. Every replica runs them; they share the work through the
//! database (see `store::messages`):
//!
//! 1. a SCHEDULED campaign whose time came starts SENDING;
//! 2. a SENDING campaign's locked audience is turned into one QUEUED message per member
//!    (segmentation's `ExportAudienceMembers`, resumable after a crash, one replica at a time
//!    by a lease on the campaign);
//! 3. due messages are claimed in batches, the recipients' consents and addresses checked at
//!    send time (identity's `CheckContactability`), rendered, handed to the channel's adapter
//!    and recorded, with their events, in one transaction;
//! 4. a campaign whose messages are all handed over is SENT.
//!
//! A replica killed between handing a batch over and recording it leaves the batch claimed;
//! when the claim lapses another worker sends those messages again with the same message id,
//! which providers take as the idempotency key (HTTP `idempotency-key`, SMTP `Message-ID`,
//! the file adapter's `message_id`), so the recipient gets one message.
use std::{
    collections::{BTreeMap, HashMap},
    num::NonZeroU32,
    sync::Arc,
    time::Duration as StdDuration,
};

use chrono::{Duration, Utc};
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use loyalty_platform::{
    client::for_partner,
    config::{DeliverySettings, QueueSettings},
    db::begin_write,
    events,
};
use loyalty_proto::{
    events::v1 as ev,
    identity::v1::{self as identity_pb, identity_service_client::IdentityServiceClient},
    rewards::v1::{self as rewards_pb, rewards_service_client::RewardsServiceClient},
    segmentation::v1::{self as seg, segmentation_service_client::SegmentationServiceClient},
    types::v1::CommunicationChannel,
};
use rand::seq::SliceRandom;
use sea_orm::TransactionTrait;
use secrecy::{ExposeSecret, SecretString};
use tonic::transport::Channel as GrpcChannel;
use uuid::Uuid;

use crate::{
    delivery::{Adapters, Outgoing, SendError},
    domain::{
        Channel, CompiledMessage, MessageTemplate,
        campaign::Campaign,
        message::{self, Message, MessageState, Outcome, Purpose},
    },
    store::{Store, batches::Batch, messages::Claimed},
};

/// Messages a throttled campaign may run ahead of its rate: one second's worth, 1..100.
fn throttle_burst(rate_per_minute: i32) -> usize {
    usize::try_from(rate_per_minute / 60)
        .unwrap_or(0)
        .clamp(1, 100)
}
/// Export batches in flight at once (read from segmentation and given vouchers by rewards
/// while earlier ones are written).
const EXPORT_PIPELINE: usize = 4;
/// How long a peer outage holds claimed messages back.
const PEER_RETRY: Duration = Duration::seconds(10);

/// The peers and settings the workers need.
pub struct Sender {
    store: Store,
    adapters: Adapters,
    identity: IdentityServiceClient<GrpcChannel>,
    segmentation: Option<SegmentationServiceClient<GrpcChannel>>,
    rewards: Option<RewardsServiceClient<GrpcChannel>>,
    /// The platform key: workers act for a partner with it (no caller to forward).
    platform_key: SecretString,
    queue: QueueSettings,
    link_secret: Vec<u8>,
    unsubscribe_base_url: String,
    limiters: HashMap<Channel, Arc<DefaultDirectRateLimiter>>,
}

/// The services the workers call: identity always (consents at send time), segmentation
/// for campaign audiences, rewards for campaign vouchers.
pub struct Peers {
    pub identity: GrpcChannel,
    pub segmentation: Option<GrpcChannel>,
    pub rewards: Option<GrpcChannel>,
}

impl Sender {
    pub fn new(
        store: Store,
        adapters: Adapters,
        peers: Peers,
        platform_key: SecretString,
        link_secret: &[u8],
        settings: &DeliverySettings,
    ) -> anyhow::Result<Self> {
        let mut limiters = HashMap::new();
        for (name, rate) in &settings.rate_per_second {
            let channel = Channel::parse_str(name)
                .ok_or_else(|| anyhow::anyhow!("delivery.rate_per_second.{name}: not a channel"))?;
            if let Some(rate) = NonZeroU32::new(*rate) {
                limiters.insert(
                    channel,
                    Arc::new(RateLimiter::direct(Quota::per_second(rate))),
                );
            }
        }
        let link_secret = link_secret.to_vec();
        if !crate::domain::template::is_plain_url(&settings.unsubscribe_base_url)
            || settings.unsubscribe_base_url.contains('?')
        {
            anyhow::bail!(
                "delivery.unsubscribe_base_url must be an http(s) URL without a query, quotes, \
                 spaces or angle brackets"
            );
        }
        Ok(Sender {
            store,
            adapters,
            identity: IdentityServiceClient::new(peers.identity),
            segmentation: peers.segmentation.map(SegmentationServiceClient::new),
            rewards: peers.rewards.map(RewardsServiceClient::new),
            platform_key,
            queue: settings.queue.clone(),
            link_secret,
            unsubscribe_base_url: settings.unsubscribe_base_url.clone(),
            limiters,
        })
    }

    /// Starts the workers: one looks after campaigns (schedule, export, completion), the
    /// others (`queue.workers`) send.
    pub fn spawn(self) {
        let sender = Arc::new(self);
        let poll = StdDuration::from_millis(sender.queue.poll_ms.max(10));
        let s = sender.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = s.look_after_campaigns().await {
                    tracing::warn!(error = %e, "campaign upkeep failed; trying again");
                }
                tokio::time::sleep(poll).await;
            }
        });
        for _ in 0..sender.queue.workers.max(1) {
            let s = sender.clone();
            tokio::spawn(async move {
                loop {
                    match s.send_once().await {
                        Ok(true) => {}
                        Ok(false) => tokio::time::sleep(poll).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "sending a batch failed; trying again");
                            tokio::time::sleep(poll).await;
                        }
                    }
                }
            });
        }
    }

    /// Schedules, exports and completes campaigns.
    pub async fn look_after_campaigns(&self) -> anyhow::Result<()> {
        let now = Utc::now();
        for (partner_id, c) in self.store.campaigns_in_state("scheduled").await? {
            if c.schedule_at.is_none_or(|s| s <= now) {
                self.change(partner_id, &c, |c| c.started(now)).await?;
            }
        }
        for (partner_id, c) in self.store.campaigns_in_state("sending").await? {
            let Some(work) = self.store.campaign_work(self.store.db(), c.id).await? else {
                continue;
            };
            if work.materialized_at.is_none() {
                if let Err(e) = self.export(partner_id, &c, work.export_cursor).await {
                    tracing::warn!(campaign_id = %c.id, error = %e, "exporting the audience failed");
                    self.store.release_export_lease(c.id).await?;
                }
                continue;
            }
            if !self.store.has_queued(self.store.db(), c.id).await? {
                let txn = begin_write(self.store.db()).await?;
                let sent = c.sent(Utc::now());
                self.store
                    .change_campaign(&txn, partner_id, c.id, &c.etag(), |_| Ok(sent.clone()))
                    .await?;
                let counts = self.store.message_counts(c.id).await?;
                let sent_count: i64 = MessageState::ALL
                    .into_iter()
                    .filter(|s| s.was_sent())
                    .map(|s| crate::store::messages::count_of(&counts, s))
                    .sum();
                events::enqueue(
                    &txn,
                    Some(partner_id),
                    &ev::CampaignCompleted {
                        campaign_id: c.id.to_string(),
                        sent_count,
                    },
                )
                .await?;
                txn.commit().await?;
                tracing::info!(%partner_id, campaign_id = %c.id, sent_count, "campaign sent");
            }
        }
        Ok(())
    }

    async fn change(
        &self,
        partner_id: Uuid,
        c: &Campaign,
        next: impl FnOnce(&Campaign) -> Campaign,
    ) -> anyhow::Result<()> {
        let txn = begin_write(self.store.db()).await?;
        self.store
            .change_campaign(&txn, partner_id, c.id, &c.etag(), |c| Ok(next(c)))
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Turns the campaign's locked audience into messages, from where an earlier attempt got.
    async fn export(
        &self,
        partner_id: Uuid,
        c: &Campaign,
        cursor: Option<Uuid>,
    ) -> anyhow::Result<()> {
        let ttl = Duration::seconds(i64::try_from(self.queue.claim_ttl_secs).unwrap_or(120));
        let now = Utc::now();
        if !self.store.take_export_lease(c.id, now, now + ttl).await? {
            return Ok(());
        }
        let segmentation = self
            .segmentation
            .clone()
            .ok_or_else(|| anyhow::anyhow!("peers.segmentation_url is not configured"))?;
        let (Some(audience_id), Some(template_id)) = (c.audience_id, c.message_template_id) else {
            anyhow::bail!("campaign {} has no audience or template", c.id);
        };
        let template = self
            .store
            .template(partner_id, template_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("template {template_id} is gone"))?;
        let purpose = Purpose::of(template.kind);
        let stream = segmentation
            .clone()
            .export_audience_members(for_partner(
                seg::ExportAudienceMembersRequest {
                    audience_id: audience_id.to_string(),
                    batch_size: i32::try_from(self.queue.batch_size.clamp(1, 1000)).unwrap_or(1000),
                    start_after_customer_id: cursor.map(|c| c.to_string()).unwrap_or_default(),
                },
                self.platform_key.expose_secret(),
                partner_id,
            ))
            .await?
            .into_inner();
        let due = c.schedule_at.unwrap_or(now);
        let variables: BTreeMap<String, String> =
            [("campaign.display_name".to_owned(), c.display_name.clone())].into();
        // A pipeline: the next batches are read and given their vouchers while this one is
        // written. In order (`buffered`), so the export cursor only moves forward.
        let mut batches = stream
            .map(|batch| async move {
                let batch = batch?;
                let vouchers = match c.reward_id {
                    Some(reward_id) if !batch.contacts.is_empty() => {
                        self.vouchers(partner_id, reward_id, c.id, &batch.contacts)
                            .await?
                    }
                    _ => HashMap::new(),
                };
                anyhow::Ok((batch, vouchers))
            })
            .buffered(EXPORT_PIPELINE);
        // An unthrottled campaign's pages become batches (see `store::batches`); a throttled
        // one's become queued messages, which replicas take turns on at the campaign's rate.
        let batched = c.send_rate_per_minute == 0;
        let mut cursor = cursor;
        while let Some(ready) = batches.next().await {
            let (batch, vouchers) = ready?;
            let Some(last) = batch.contacts.last() else {
                continue;
            };
            let last = Uuid::try_parse(&last.customer_id)?;
            let queued_at = Utc::now();
            let messages: Vec<Message> = batch
                .contacts
                .into_iter()
                .filter_map(|m| {
                    let customer_id = Uuid::try_parse(&m.customer_id).ok()?;
                    let address = match c.channel {
                        Channel::Email => m.email,
                        Channel::Sms | Channel::Viber => m.phone,
                        Channel::Push => customer_id.to_string(),
                    };
                    let mut variables = variables.clone();
                    for (k, v) in [
                        ("customer.first_name", m.first_name),
                        ("customer.last_name", m.last_name),
                        ("customer.birth_date", m.birth_date),
                    ] {
                        if !v.is_empty() {
                            variables.insert(k.to_owned(), v);
                        }
                    }
                    let (state, voucher_code, failure_reason) = match vouchers.get(&customer_id) {
                        None => (MessageState::Queued, String::new(), String::new()),
                        Some(Ok(code)) => (MessageState::Queued, code.clone(), String::new()),
                        Some(Err(reason)) => (
                            MessageState::Failed,
                            String::new(),
                            format!("no voucher was issued: {reason}"),
                        ),
                    };
                    Some(Message {
                        id: Uuid::now_v7(),
                        customer_id: Some(customer_id),
                        channel: c.channel,
                        message_template_id: template_id,
                        campaign_id: Some(c.id),
                        workflow_execution_id: None,
                        purpose,
                        address,
                        variables,
                        state,
                        attempts: 0,
                        due_at: due,
                        bounce_type: None,
                        failure_reason,
                        provider_message_id: String::new(),
                        voucher_code,
                        open_count: 0,
                        click_count: 0,
                        queued_at,
                        sent_at: None,
                        delivered_at: None,
                        first_open_at: None,
                        first_click_at: None,
                        unsubscribed_at: None,
                    })
                })
                .collect();
            let txn = begin_write(self.store.db()).await?;
            if batched {
                self.store
                    .insert_batch(&txn, partner_id, c.id, &messages, due)
                    .await?;
            } else {
                self.store
                    .insert_messages(&txn, partner_id, &messages)
                    .await?;
            }
            if !self
                .store
                .advance_export(&txn, c.id, cursor, last, Utc::now() + ttl)
                .await?
            {
                // Paused, cancelled, or another replica's now: this page is not ours to add.
                // The lease goes at once, so a resumed campaign's export goes on without
                // waiting for it to lapse (a replica exporting meanwhile is still guarded by
                // the cursor).
                txn.rollback().await?;
                self.store.release_export_lease(c.id).await?;
                return Ok(());
            }
            txn.commit().await?;
            cursor = Some(last);
        }
        let txn = begin_write(self.store.db()).await?;
        let count = self.store.finish_export(&txn, c.id, Utc::now()).await?;
        events::enqueue(
            &txn,
            Some(partner_id),
            &ev::CampaignLaunched {
                campaign_id: c.id.to_string(),
                audience_id: audience_id.to_string(),
                message_count: count,
                schedule_time: c.schedule_at.map(loyalty_platform::time::to_timestamp),
            },
        )
        .await?;
        txn.commit().await?;
        tracing::info!(%partner_id, campaign_id = %c.id, count, "campaign messages queued");
        Ok(())
    }

    /// One voucher of the campaign's reward per member of a batch (rewards' IssueVouchers,
    /// idempotent per campaign and customer, so an export started over gets the same codes):
    /// the code, or why there is none.
    async fn vouchers(
        &self,
        partner_id: Uuid,
        reward_id: Uuid,
        campaign_id: Uuid,
        contacts: &[seg::AudienceContact],
    ) -> anyhow::Result<HashMap<Uuid, Result<String, String>>> {
        let rewards = self
            .rewards
            .clone()
            .ok_or_else(|| anyhow::anyhow!("peers.rewards_url is not configured"))?;
        let issued = rewards
            .clone()
            .issue_vouchers(for_partner(
                rewards_pb::IssueVouchersRequest {
                    reward_id: reward_id.to_string(),
                    customer_ids: contacts.iter().map(|c| c.customer_id.clone()).collect(),
                    source: rewards_pb::VoucherSource::Campaign as i32,
                    source_id: campaign_id.to_string(),
                    valid_until_time: None,
                },
                self.platform_key.expose_secret(),
                partner_id,
            ))
            .await?
            .into_inner();
        Ok(issued
            .vouchers
            .into_iter()
            .filter_map(|v| {
                let id = Uuid::try_parse(&v.customer_id).ok()?;
                Some((
                    id,
                    if v.refusal_reason.is_empty() && !v.code.is_empty() {
                        Ok(v.code)
                    } else {
                        Err(v.refusal_reason)
                    },
                ))
            })
            .collect())
    }

    /// Claims one batch and sends it; false when nothing was due.
    pub async fn send_once(&self) -> anyhow::Result<bool> {
        let now = Utc::now();
        let until =
            now + Duration::seconds(i64::try_from(self.queue.claim_ttl_secs).unwrap_or(120));
        let limit = self.queue.batch_size.max(1) as usize;
        let mut campaigns = self.store.campaigns_in_state("sending").await?;
        campaigns.shuffle(&mut rand::rng());
        for (_, c) in &campaigns {
            if c.next_send_time(now) > now {
                continue;
            }
            if c.send_rate_per_minute == 0 {
                let batch = self
                    .store
                    .claim_batch(self.store.db(), Some(c.id), now, until)
                    .await?;
                if let Some(batch) = batch {
                    self.deliver_batch(batch, c).await?;
                    return Ok(true);
                }
            }
            let txn = self.store.db().begin().await?;
            // Only a throttled campaign's row is locked: replicas take turns on its clock.
            let tat = if c.send_rate_per_minute > 0 {
                self.store.lock_throttle(&txn, c.id).await?
            } else {
                None
            };
            let (allowed, _) = message::throttle(
                tat,
                now,
                c.send_rate_per_minute,
                limit,
                throttle_burst(c.send_rate_per_minute),
            );
            let claimed = self
                .store
                .claim(&txn, Some(c.id), now, until, allowed)
                .await?;
            if claimed.is_empty() {
                txn.rollback().await?;
                continue;
            }
            if c.send_rate_per_minute > 0 {
                let (_, tat) = message::throttle(
                    tat,
                    now,
                    c.send_rate_per_minute,
                    claimed.len(),
                    throttle_burst(c.send_rate_per_minute),
                );
                self.store.set_throttle(&txn, c.id, tat).await?;
            }
            txn.commit().await?;
            self.deliver(claimed, Some(c)).await?;
            return Ok(true);
        }
        // What a cancelled campaign had not sent yet is recorded as cancelled.
        if let Some(batch) = self
            .store
            .claim_batch(self.store.db(), None, now, until)
            .await?
        {
            let rows: Vec<Message> = batch
                .messages
                .iter()
                .map(|m| m.clone().cancelled())
                .collect();
            self.settle(&batch, &rows, &[], &[]).await?;
            return Ok(true);
        }
        let txn = self.store.db().begin().await?;
        let claimed = self.store.claim(&txn, None, now, until, limit).await?;
        txn.commit().await?;
        if claimed.is_empty() {
            return Ok(false);
        }
        self.deliver(claimed, None).await?;
        Ok(true)
    }

    /// Sends a claimed batch of `campaign` and writes its messages as they came out.
    async fn deliver_batch(&self, batch: Batch, campaign: &Campaign) -> anyhow::Result<()> {
        // Recipients refused at export time (no voucher) are written as they are.
        let queued: Vec<&Message> = batch
            .messages
            .iter()
            .filter(|m| m.state == MessageState::Queued)
            .collect();
        let outcomes = match self.outcomes(batch.partner_id, &queued).await? {
            Some(o) => o,
            None => {
                self.store
                    .release_batch(self.store.db(), batch.id, Utc::now() + PEER_RETRY)
                    .await?;
                return Ok(());
            }
        };
        let now = Utc::now();
        let by_id: HashMap<Uuid, &Outcome> = outcomes.iter().map(|(id, o)| (*id, o)).collect();
        let rows: Vec<Message> = batch
            .messages
            .iter()
            .map(|m| match by_id.get(&m.id) {
                Some(o) => m.clone().settled(o, now),
                None => m.clone(),
            })
            .collect();
        let (sent, failed) = outcome_events(&queued, &outcomes);
        if self.settle(&batch, &rows, &sent, &failed).await? {
            tracing::debug!(campaign_id = %campaign.id, sent = sent.len(), failed = failed.len(), "batch sent");
        }
        Ok(())
    }

    /// Writes a batch's messages and their events and deletes it, in one transaction; false
    /// (nothing written) when the claim lapsed: the worker that claimed the batch since
    /// records it.
    async fn settle(
        &self,
        batch: &Batch,
        rows: &[Message],
        sent: &[ev::MessageSent],
        failed: &[ev::MessageFailed],
    ) -> anyhow::Result<bool> {
        let txn = begin_write(self.store.db()).await?;
        if self.store.settle_batch(&txn, batch, rows).await?.is_none() {
            tracing::warn!(campaign_id = %batch.campaign_id, batch_id = %batch.id, "a batch outlived its claim");
            return Ok(false);
        }
        events::enqueue_all(&txn, Some(batch.partner_id), sent).await?;
        events::enqueue_all(&txn, Some(batch.partner_id), failed).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Checks, renders, sends and records claimed messages.
    pub async fn deliver(
        &self,
        claimed: Vec<Claimed>,
        campaign: Option<&Campaign>,
    ) -> anyhow::Result<()> {
        // Groups that share a partner, channel and purpose are checked in one identity call.
        let mut groups: BTreeMap<(Uuid, &'static str, &'static str), Vec<Claimed>> =
            BTreeMap::new();
        for c in claimed {
            groups
                .entry((
                    c.partner_id,
                    c.message.channel.as_str(),
                    c.message.purpose.as_str(),
                ))
                .or_default()
                .push(c);
        }
        for ((partner_id, _, _), group) in groups {
            let messages: Vec<&Message> = group.iter().map(|c| &c.message).collect();
            match self.outcomes(partner_id, &messages).await? {
                Some(outcomes) => {
                    self.record(partner_id, &messages, &outcomes, campaign)
                        .await?
                }
                None => {
                    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
                    self.store
                        .release(self.store.db(), &ids, Utc::now() + PEER_RETRY)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Checks, renders and sends messages of one partner, channel and purpose: what became
    /// of each. `None` when identity did not answer (the messages wait).
    async fn outcomes(
        &self,
        partner_id: Uuid,
        batch: &[&Message],
    ) -> anyhow::Result<Option<Vec<(Uuid, Outcome)>>> {
        let Some(first) = batch.first() else {
            return Ok(Some(Vec::new()));
        };
        let channel = first.channel;
        let purpose = first.purpose;
        let contacts = match self
            .contactability(partner_id, channel, purpose, batch)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%partner_id, error = %e, "identity did not answer; messages wait");
                return Ok(None);
            }
        };
        let mut templates: HashMap<Uuid, Option<(MessageTemplate, CompiledMessage)>> =
            HashMap::new();
        let mut outcomes: Vec<(Uuid, Outcome)> = Vec::with_capacity(batch.len());
        let mut outgoing: Vec<(usize, Outgoing)> = Vec::with_capacity(batch.len());
        let adapter = self.adapters.get(channel);
        for (i, m) in batch.iter().enumerate() {
            let (address, names) = match m.customer_id {
                Some(customer) => match contacts.get(&customer) {
                    Some(Ok(found)) => (found.address.clone(), Some(found)),
                    Some(Err(reason)) => {
                        outcomes.push((m.id, Outcome::Suppressed(reason.clone())));
                        continue;
                    }
                    None => {
                        outcomes.push((m.id, Outcome::Suppressed("customer unknown".into())));
                        continue;
                    }
                },
                None => (m.address.clone(), None),
            };
            if adapter.is_none() {
                outcomes.push((
                    m.id,
                    Outcome::Failed(format!("no {} adapter is configured", channel.as_str())),
                ));
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) =
                templates.entry(m.message_template_id)
            {
                let t = self
                    .store
                    .template(partner_id, m.message_template_id)
                    .await?;
                // A stored template parsed when it was saved.
                slot.insert(t.and_then(|t| t.compile().ok().map(|c| (t, c))));
            }
            let Some(Some((template, compiled))) = templates.get(&m.message_template_id) else {
                outcomes.push((m.id, Outcome::Failed("the template was deleted".into())));
                continue;
            };
            let mut variables = m.variables.clone();
            if let Some(n) = names {
                for (k, v) in [
                    ("customer.first_name", &n.first_name),
                    ("customer.last_name", &n.last_name),
                ] {
                    if !v.is_empty() {
                        variables.insert(k.to_owned(), v.clone());
                    }
                }
            }
            match channel {
                Channel::Email => variables.insert("customer.email".into(), address.clone()),
                Channel::Sms | Channel::Viber => {
                    variables.insert("customer.phone".into(), address.clone())
                }
                Channel::Push => None,
            };
            if !m.voucher_code.is_empty() {
                variables.insert("voucher.code".into(), m.voucher_code.clone());
            }
            variables.insert(
                "unsubscribe_url".into(),
                format!(
                    "{}?token={}",
                    self.unsubscribe_base_url,
                    message::unsubscribe_token(m.id, &self.link_secret)
                ),
            );
            match compiled.render(&variables) {
                Ok(r) => outgoing.push((
                    i,
                    Outgoing {
                        message_id: m.id,
                        channel,
                        to: address,
                        sender_name: template.sender_name.clone(),
                        sender_address: template.sender_address.clone(),
                        subject: r.subject,
                        body: r.body,
                        text_body: r.text_body,
                        link_url: template.link_url.clone(),
                    },
                )),
                Err((field, problem)) => outcomes.push((
                    m.id,
                    Outcome::Failed(message::clip(
                        &format!("{field}: {problem}"),
                        message::MAX_REASON_CHARS,
                    )),
                )),
            }
        }
        if let (Some(adapter), false) = (adapter, outgoing.is_empty()) {
            if let Some(limiter) = self.limiters.get(&channel) {
                for _ in 0..outgoing.len() {
                    limiter.until_ready().await;
                }
            }
            let batch_out: Vec<Outgoing> = outgoing.iter().map(|(_, o)| o.clone()).collect();
            let results = adapter.send_batch(&batch_out, 32).await;
            let now = Utc::now();
            let base =
                Duration::milliseconds(i64::try_from(self.queue.retry_base_ms).unwrap_or(30_000));
            for ((i, o), result) in outgoing.into_iter().zip(results) {
                let m = batch[i];
                let outcome = match result {
                    Ok(provider_message_id) => Outcome::Sent {
                        provider_message_id,
                        address: o.to,
                    },
                    Err(SendError::Rejected(r)) => {
                        Outcome::Failed(message::clip(&r, message::MAX_REASON_CHARS))
                    }
                    Err(SendError::Transient(r)) => {
                        // `attempts` already counts this one (claiming added it).
                        let made = u32::try_from(m.attempts).unwrap_or(u32::MAX);
                        match message::retry_delay(made, self.queue.max_attempts, base) {
                            Some(delay) => Outcome::Retry {
                                due: now + delay,
                                reason: message::clip(&r, message::MAX_REASON_CHARS),
                            },
                            None => Outcome::Failed(message::clip(
                                &format!("gave up after {made} attempts: {r}"),
                                message::MAX_REASON_CHARS,
                            )),
                        }
                    }
                };
                outcomes.push((m.id, outcome));
            }
        }
        Ok(Some(outcomes))
    }

    /// The recipients' contactability by customer: the address and names, or why not.
    async fn contactability(
        &self,
        partner_id: Uuid,
        channel: Channel,
        purpose: Purpose,
        batch: &[&Message],
    ) -> anyhow::Result<HashMap<Uuid, Result<identity_pb::Contactability, String>>> {
        let ids: Vec<Uuid> = {
            let mut ids: Vec<Uuid> = batch.iter().filter_map(|m| m.customer_id).collect();
            ids.sort();
            ids.dedup();
            ids
        };
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let answer = self
                .identity
                .clone()
                .check_contactability(for_partner(
                    identity_pb::CheckContactabilityRequest {
                        customer_ids: chunk.iter().map(Uuid::to_string).collect(),
                        channel: communication_channel(channel) as i32,
                        purpose: match purpose {
                            Purpose::Marketing => identity_pb::ContactPurpose::Marketing,
                            Purpose::Service => identity_pb::ContactPurpose::Service,
                        } as i32,
                    },
                    self.platform_key.expose_secret(),
                    partner_id,
                ))
                .await?
                .into_inner();
            for c in answer.contactabilities {
                let Ok(id) = Uuid::try_parse(&c.customer_id) else {
                    continue;
                };
                let refusal = identity_pb::ContactRefusal::try_from(c.refusal)
                    .unwrap_or(identity_pb::ContactRefusal::UnknownCustomer);
                let verdict = match refusal {
                    identity_pb::ContactRefusal::Unspecified => Ok(c),
                    r => Err(refusal_reason(r, channel)),
                };
                out.insert(id, verdict);
            }
        }
        Ok(out)
    }

    /// Writes the outcomes and their events in one transaction.
    async fn record(
        &self,
        partner_id: Uuid,
        batch: &[&Message],
        outcomes: &[(Uuid, Outcome)],
        campaign: Option<&Campaign>,
    ) -> anyhow::Result<()> {
        let (sent, failed) = outcome_events(batch, outcomes);
        let txn = begin_write(self.store.db()).await?;
        self.store
            .record_outcomes(&txn, Utc::now(), outcomes)
            .await?;
        events::enqueue_all(&txn, Some(partner_id), &sent).await?;
        events::enqueue_all(&txn, Some(partner_id), &failed).await?;
        txn.commit().await?;
        if let Some(c) = campaign {
            tracing::debug!(campaign_id = %c.id, sent = sent.len(), failed = failed.len(), "batch recorded");
        }
        Ok(())
    }
}

/// The events of handled messages: `MessageSent` for each sent, `MessageFailed` for each
/// suppressed or failed (a retry has none yet).
fn outcome_events(
    batch: &[&Message],
    outcomes: &[(Uuid, Outcome)],
) -> (Vec<ev::MessageSent>, Vec<ev::MessageFailed>) {
    let by_id: HashMap<Uuid, &Message> = batch.iter().map(|m| (m.id, *m)).collect();
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    for (id, outcome) in outcomes {
        let Some(m) = by_id.get(id) else { continue };
        let customer_id = m.customer_id.map(|c| c.to_string()).unwrap_or_default();
        match outcome {
            Outcome::Sent { .. } => sent.push(ev::MessageSent {
                message_id: id.to_string(),
                customer_id,
                channel: m.channel.as_str().to_owned(),
                campaign_id: m.campaign_id.map(|c| c.to_string()).unwrap_or_default(),
                workflow_execution_id: m
                    .workflow_execution_id
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            }),
            Outcome::Suppressed(reason) | Outcome::Failed(reason) => {
                failed.push(ev::MessageFailed {
                    message_id: id.to_string(),
                    customer_id,
                    reason: reason.clone(),
                    suppressed: matches!(outcome, Outcome::Suppressed(_)),
                })
            }
            Outcome::Retry { .. } => {}
        }
    }
    (sent, failed)
}

pub fn communication_channel(c: Channel) -> CommunicationChannel {
    match c {
        Channel::Email => CommunicationChannel::Email,
        Channel::Sms => CommunicationChannel::Sms,
        Channel::Push => CommunicationChannel::Push,
        Channel::Viber => CommunicationChannel::Viber,
    }
}

/// The recorded reason of a suppressed message.
pub(crate) fn refusal_reason(r: identity_pb::ContactRefusal, channel: Channel) -> String {
    use identity_pb::ContactRefusal as R;
    match r {
        R::NoDataProcessingConsent => "no consent to personal data processing".into(),
        R::NoMarketingConsent => format!("no marketing consent for {}", channel.as_str()),
        R::NoAddress => format!("no address for {}", channel.as_str()),
        R::EmailBounced => "the email address bounced".into(),
        R::UnknownCustomer | R::Unspecified => "customer unknown or erased".into(),
    }
}
