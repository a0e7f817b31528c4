//! Messages, delivery tracking, unsubscribe links and campaign statistics.
use chrono::Utc;
use loyalty_platform::{
    ApiError, Principal, Role, Violations,
    auth::principal,
    error::check_idempotency_key,
    events,
    idempotency::{self, IdempotencyScope},
    paging,
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{campaigns::v1 as pb, events::v1 as ev};
use sea_orm::DatabaseTransaction;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{CampaignsApi, READERS, channel_to_proto};
use crate::{
    domain::{
        TemplateKind,
        message::{self, BounceType, DeliveryEventType, EventEffects, Message, MessageState},
        template,
    },
    store::{
        Store,
        messages::{DeliveryEvent, MessageCounts, MessageFilter, count_of},
    },
};

/// Who may record delivery events: provider webhooks and tracking endpoints run with a
/// `service` key.
const RECORDERS: &[Role] = &[Role::Service];
/// Who may send a single message: automation and the partner's systems.
const SENDERS: &[Role] = &[Role::Service, Role::Marketing];
/// Who may unsubscribe a recipient: the partner's unsubscribe page.
const UNSUBSCRIBERS: &[Role] = &[Role::Service, Role::Marketing];
const MAX_URL_CHARS: usize = 2048;
const MAX_DIAGNOSTIC_CHARS: usize = 1000;

fn state_to_proto(s: MessageState) -> pb::MessageState {
    match s {
        MessageState::Queued => pb::MessageState::Queued,
        MessageState::Suppressed => pb::MessageState::Suppressed,
        MessageState::Sent => pb::MessageState::Sent,
        MessageState::Delivered => pb::MessageState::Delivered,
        MessageState::Bounced => pb::MessageState::Bounced,
        MessageState::Failed => pb::MessageState::Failed,
        MessageState::Cancelled => pb::MessageState::Cancelled,
    }
}

fn state_from_proto(n: i32) -> Option<MessageState> {
    Some(match pb::MessageState::try_from(n).ok()? {
        pb::MessageState::Queued => MessageState::Queued,
        pb::MessageState::Suppressed => MessageState::Suppressed,
        pb::MessageState::Sent => MessageState::Sent,
        pb::MessageState::Delivered => MessageState::Delivered,
        pb::MessageState::Bounced => MessageState::Bounced,
        pb::MessageState::Failed => MessageState::Failed,
        pb::MessageState::Cancelled => MessageState::Cancelled,
        pb::MessageState::Unspecified => return None,
    })
}

fn event_type_to_proto(t: DeliveryEventType) -> pb::DeliveryEventType {
    match t {
        DeliveryEventType::Delivered => pb::DeliveryEventType::Delivered,
        DeliveryEventType::HardBounce => pb::DeliveryEventType::HardBounce,
        DeliveryEventType::SoftBounce => pb::DeliveryEventType::SoftBounce,
        DeliveryEventType::Open => pb::DeliveryEventType::Open,
        DeliveryEventType::Click => pb::DeliveryEventType::Click,
        DeliveryEventType::Unsubscribe => pb::DeliveryEventType::Unsubscribe,
        DeliveryEventType::Complaint => pb::DeliveryEventType::Complaint,
        DeliveryEventType::Failed => pb::DeliveryEventType::Failed,
    }
}

fn event_type_from_proto(n: i32) -> Option<DeliveryEventType> {
    Some(match pb::DeliveryEventType::try_from(n).ok()? {
        pb::DeliveryEventType::Delivered => DeliveryEventType::Delivered,
        pb::DeliveryEventType::HardBounce => DeliveryEventType::HardBounce,
        pb::DeliveryEventType::SoftBounce => DeliveryEventType::SoftBounce,
        pb::DeliveryEventType::Open => DeliveryEventType::Open,
        pb::DeliveryEventType::Click => DeliveryEventType::Click,
        pb::DeliveryEventType::Unsubscribe => DeliveryEventType::Unsubscribe,
        pb::DeliveryEventType::Complaint => DeliveryEventType::Complaint,
        pb::DeliveryEventType::Failed => DeliveryEventType::Failed,
        pb::DeliveryEventType::Unspecified => return None,
    })
}

/// `jana.novakova@example.com` → `j***@example.com`, `+420601234567` → `+420*****4567`: what
/// a `marketing` key sees (it works with audiences, not with people's addresses).
pub(crate) fn mask_address(a: &str) -> String {
    if let Some((local, domain)) = a.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let chars: Vec<char> = a.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

/// Whether the caller sees full addresses: anyone but a pure `marketing` key.
fn sees_addresses(who: &Principal) -> bool {
    who.roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Support | Role::Service))
}

pub(crate) fn message_to_proto(m: &Message, full_address: bool) -> pb::Message {
    let id = |u: Option<Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    pb::Message {
        id: m.id.to_string(),
        customer_id: id(m.customer_id),
        channel: channel_to_proto(m.channel) as i32,
        message_template_id: m.message_template_id.to_string(),
        campaign_id: id(m.campaign_id),
        workflow_execution_id: id(m.workflow_execution_id),
        address: if full_address {
            m.address.clone()
        } else {
            mask_address(&m.address)
        },
        state: state_to_proto(m.state) as i32,
        bounce_type: (match m.bounce_type {
            Some(BounceType::Hard) => pb::MessageBounceType::Hard,
            Some(BounceType::Soft) => pb::MessageBounceType::Soft,
            None => pb::MessageBounceType::Unspecified,
        }) as i32,
        failure_reason: m.failure_reason.clone(),
        provider_message_id: m.provider_message_id.clone(),
        voucher_code: m.voucher_code.clone(),
        open_count: m.open_count,
        click_count: m.click_count,
        queue_time: Some(to_timestamp(m.queued_at)),
        send_time: m.sent_at.map(to_timestamp),
        deliver_time: m.delivered_at.map(to_timestamp),
        first_open_time: m.first_open_at.map(to_timestamp),
        first_click_time: m.first_click_at.map(to_timestamp),
        unsubscribe_time: m.unsubscribed_at.map(to_timestamp),
    }
}

fn event_to_proto(e: &DeliveryEvent) -> pb::DeliveryEvent {
    pb::DeliveryEvent {
        id: e.id.to_string(),
        message_id: e.message_id.to_string(),
        r#type: event_type_to_proto(e.event_type) as i32,
        url: e.url.clone(),
        diagnostic: e.diagnostic.clone(),
        occur_time: Some(to_timestamp(e.occurred_at)),
    }
}

pub(crate) fn statistics_to_proto(target: i64, c: &MessageCounts) -> pb::CampaignStatistics {
    let n = |s| count_of(c, s);
    pb::CampaignStatistics {
        target_count: target.max(c.by_state.values().sum()),
        suppressed_count: n(MessageState::Suppressed),
        sent_count: MessageState::ALL
            .into_iter()
            .filter(|s| s.was_sent())
            .map(n)
            .sum(),
        delivered_count: n(MessageState::Delivered),
        hard_bounce_count: c.hard_bounces,
        soft_bounce_count: c.soft_bounces,
        failed_count: n(MessageState::Failed),
        unique_open_count: c.unique_opens,
        unique_click_count: c.unique_clicks,
        unsubscribe_count: c.unsubscribes,
        complaint_count: c.complaints,
        voucher_issued_count: c.vouchers,
        voucher_redeemed_count: c.vouchers_redeemed,
        compute_time: Some(to_timestamp(Utc::now())),
    }
}

/// The Message* event of a delivery event, if it has one.
async fn publish(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    m: &Message,
    event: &DeliveryEvent,
    fx: EventEffects,
    newly_delivered: bool,
) -> Result<(), ApiError> {
    let id = m.id.to_string();
    let customer_id = m.customer_id.map(|c| c.to_string()).unwrap_or_default();
    let campaign_id = m.campaign_id.map(|c| c.to_string()).unwrap_or_default();
    let channel = m.channel.as_str().to_owned();
    let p = Some(partner_id);
    match event.event_type {
        DeliveryEventType::Delivered if newly_delivered => {
            events::enqueue(
                txn,
                p,
                &ev::MessageDelivered {
                    message_id: id,
                    customer_id,
                    channel,
                    campaign_id,
                },
            )
            .await?;
        }
        DeliveryEventType::HardBounce | DeliveryEventType::SoftBounce => {
            events::enqueue(
                txn,
                p,
                &ev::MessageBounced {
                    message_id: id,
                    customer_id,
                    channel,
                    campaign_id,
                    hard: event.event_type == DeliveryEventType::HardBounce,
                    address: m.address.clone(),
                },
            )
            .await?;
        }
        DeliveryEventType::Open => {
            events::enqueue(
                txn,
                p,
                &ev::MessageOpened {
                    message_id: id,
                    customer_id,
                    campaign_id,
                    first: fx.first,
                },
            )
            .await?;
        }
        DeliveryEventType::Click => {
            events::enqueue(
                txn,
                p,
                &ev::MessageClicked {
                    message_id: id,
                    customer_id,
                    campaign_id,
                    url: event.url.clone(),
                    first: fx.first,
                },
            )
            .await?;
        }
        // A spam complaint withdraws the consent as an unsubscribe does.
        DeliveryEventType::Unsubscribe | DeliveryEventType::Complaint if fx.unsubscribed => {
            events::enqueue(
                txn,
                p,
                &ev::MessageUnsubscribed {
                    message_id: id,
                    customer_id,
                    channel,
                    campaign_id,
                },
            )
            .await?;
        }
        DeliveryEventType::Failed => {
            events::enqueue(
                txn,
                p,
                &ev::MessageFailed {
                    message_id: id,
                    customer_id,
                    reason: event.diagnostic.clone(),
                    suppressed: false,
                },
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Which message an event names.
#[derive(Debug, Clone)]
enum MessageRef {
    Id(Uuid),
    Provider(String),
}

/// A delivery event as it arrives, before it is applied.
struct Incoming {
    event_type: DeliveryEventType,
    url: String,
    diagnostic: String,
    at: chrono::DateTime<Utc>,
}

/// Applies one delivery event to a message in `txn`: the message, the event row and the
/// Message* event, or the rule it breaks.
async fn apply_event(
    store: &Store,
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    target: &MessageRef,
    incoming: Incoming,
) -> Result<(DeliveryEvent, Message), ApiError> {
    let Incoming {
        event_type,
        url,
        diagnostic,
        at,
    } = incoming;
    let found = match target {
        MessageRef::Id(id) => store.message(txn, partner_id, *id).await?,
        MessageRef::Provider(p) => store.message_by_provider_id(txn, partner_id, p).await?,
    };
    let current = found.ok_or_else(|| ApiError::NotFound("message".into()))?;
    let (next, fx) = current.apply(event_type, at, &diagnostic).map_err(|r| {
        ApiError::precondition(
            r.reason(),
            "the message was never sent: it cannot be delivered, opened or clicked",
        )
    })?;
    let event = DeliveryEvent {
        id: Uuid::now_v7(),
        message_id: current.id,
        event_type,
        url,
        diagnostic,
        occurred_at: at,
    };
    store.put_message(txn, partner_id, &next).await?;
    store
        .insert_delivery_event(txn, partner_id, &event, Utc::now())
        .await?;
    let newly_delivered = current.delivered_at.is_none() && next.delivered_at.is_some();
    publish(txn, partner_id, &next, &event, fx, newly_delivered).await?;
    Ok((event, next))
}

impl CampaignsApi {
    pub(super) async fn get_message_rpc(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::GetMessageResponse>, Status> {
        let who = principal(&request)?.clone();
        let partner_id = who.partner_with_role(READERS)?;
        let mut v = Violations::new();
        let id = v.uuid("message_id", &request.get_ref().message_id);
        v.into_result()?;
        let m = self
            .store
            .message(self.store.db(), partner_id, id.unwrap_or_default())
            .await?
            .ok_or_else(|| ApiError::NotFound("message".into()))?;
        Ok(Response::new(pb::GetMessageResponse {
            message: Some(message_to_proto(&m, sees_addresses(&who))),
        }))
    }

    pub(super) async fn list_messages_rpc(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let who = principal(&request)?.clone();
        let partner_id = who.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        let filter = MessageFilter {
            campaign_id: v.optional_uuid("campaign_id", &req.campaign_id),
            customer_id: v.optional_uuid("customer_id", &req.customer_id),
            workflow_execution_id: v
                .optional_uuid("workflow_execution_id", &req.workflow_execution_id),
            states: req
                .states
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let state = state_from_proto(*s);
                    if state.is_none() {
                        v.add(format!("states[{i}]"), "is not a message state");
                    }
                    state
                })
                .collect(),
        };
        if req.campaign_id.is_empty()
            && req.customer_id.is_empty()
            && req.workflow_execution_id.is_empty()
        {
            v.add(
                "campaign_id",
                "one of campaign_id, customer_id or workflow_execution_id is required",
            );
        }
        v.into_result()?;
        let found = self
            .store
            .list_messages(partner_id, &filter, limit, after)
            .await?;
        let full = sees_addresses(&who);
        Ok(Response::new(pb::ListMessagesResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|m| m.id),
            ),
            messages: found.iter().map(|m| message_to_proto(m, full)).collect(),
        }))
    }

    pub(super) async fn record_delivery_event_rpc(
        &self,
        request: Request<pb::RecordDeliveryEventRequest>,
    ) -> Result<Response<pb::RecordDeliveryEventResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(RECORDERS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(
            partner_id,
            "RecordDeliveryEvent",
            &req.idempotency_key,
            &req,
        );
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let target = match (
            req.message_id.is_empty(),
            req.provider_message_id.is_empty(),
        ) {
            (false, true) => v.uuid("message_id", &req.message_id).map(MessageRef::Id),
            (true, false) if req.provider_message_id.chars().count() <= 200 => {
                Some(MessageRef::Provider(req.provider_message_id.clone()))
            }
            (true, false) => {
                v.add("provider_message_id", "must be at most 200 characters");
                None
            }
            (true, true) => {
                v.add(
                    "message_id",
                    "message_id or provider_message_id is required",
                );
                None
            }
            (false, false) => {
                v.add(
                    "provider_message_id",
                    "give message_id or provider_message_id, not both",
                );
                None
            }
        };
        let event_type = event_type_from_proto(req.r#type);
        if event_type.is_none() {
            v.add("type", "is required");
        }
        if event_type == Some(DeliveryEventType::Click) && req.url.trim().is_empty() {
            v.add("url", "is required for a click");
        }
        if req.url.chars().count() > MAX_URL_CHARS {
            v.add("url", format!("must be at most {MAX_URL_CHARS} characters"));
        }
        if req.diagnostic.chars().count() > MAX_DIAGNOSTIC_CHARS {
            v.add(
                "diagnostic",
                format!("must be at most {MAX_DIAGNOSTIC_CHARS} characters"),
            );
        }
        let now = Utc::now();
        let at = match &req.occur_time {
            None => now,
            Some(t) => match from_timestamp(t) {
                // Providers' clocks run a little ahead sometimes; never into the future.
                Some(at) => at.min(now),
                None => {
                    v.add("occur_time", "is not a valid time");
                    now
                }
            },
        };
        v.into_result()?;
        let (Some(target), Some(event_type)) = (target, event_type) else {
            return Err(ApiError::invalid("message_id", "is required").into());
        };
        let store = self.store.clone();
        let (url, diagnostic) = (req.url.trim().to_owned(), req.diagnostic);
        let (event, message): (DeliveryEvent, Message) =
            idempotency::run(self.store.db(), scope, move |txn| {
                Box::pin(async move {
                    let incoming = Incoming {
                        event_type,
                        url,
                        diagnostic,
                        at,
                    };
                    apply_event(&store, txn, partner_id, &target, incoming).await
                })
            })
            .await?;
        Ok(Response::new(pb::RecordDeliveryEventResponse {
            event: Some(event_to_proto(&event)),
            message: Some(message_to_proto(&message, true)),
        }))
    }

    pub(super) async fn list_delivery_events_rpc(
        &self,
        request: Request<pb::ListDeliveryEventsRequest>,
    ) -> Result<Response<pb::ListDeliveryEventsResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.uuid("message_id", &req.message_id);
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        v.into_result()?;
        let id = id.unwrap_or_default();
        self.store
            .message(self.store.db(), partner_id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("message".into()))?;
        let found = self
            .store
            .list_delivery_events(partner_id, id, limit, after)
            .await?;
        Ok(Response::new(pb::ListDeliveryEventsResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|e| e.id),
            ),
            events: found.iter().map(event_to_proto).collect(),
        }))
    }

    pub(super) async fn unsubscribe_rpc(
        &self,
        request: Request<pb::UnsubscribeRequest>,
    ) -> Result<Response<pb::UnsubscribeResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(UNSUBSCRIBERS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "Unsubscribe", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let id = match &self.link_secret {
            Some(secret) => message::verify_unsubscribe_token(&req.token, secret),
            None => None,
        };
        if id.is_none() {
            v.add("token", "is not an unsubscribe token of this platform");
        }
        v.into_result()?;
        let id = id.unwrap_or_default();
        let store = self.store.clone();
        let (_, message): (DeliveryEvent, Message) =
            idempotency::run(self.store.db(), scope, move |txn| {
                Box::pin(async move {
                    let incoming = Incoming {
                        event_type: DeliveryEventType::Unsubscribe,
                        url: String::new(),
                        diagnostic: "unsubscribe link".into(),
                        at: Utc::now(),
                    };
                    apply_event(&store, txn, partner_id, &MessageRef::Id(id), incoming).await
                })
            })
            .await?;
        Ok(Response::new(pb::UnsubscribeResponse {
            message: Some(message_to_proto(&message, true)),
        }))
    }

    pub(super) async fn send_message_rpc(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let who = principal(&request)?.clone();
        let partner_id = who.partner_with_role(SENDERS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "SendMessage", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let template_id = v.uuid("message_template_id", &req.message_template_id);
        let customer_id = v.optional_uuid("customer_id", &req.customer_id);
        let execution_id = v.optional_uuid("workflow_execution_id", &req.workflow_execution_id);
        let address = req.address.trim().to_owned();
        match (req.customer_id.is_empty(), address.is_empty()) {
            (true, true) => v.add("customer_id", "customer_id or address is required"),
            (false, false) => v.add("address", "give customer_id or address, not both"),
            _ => {}
        }
        if req.variables.len() > message::MAX_VARIABLES {
            v.add(
                "variables",
                format!("must have at most {} entries", message::MAX_VARIABLES),
            );
        }
        for (k, val) in &req.variables {
            if !template::VARIABLES.iter().any(|(n, _)| n == k) {
                v.add(format!("variables[{k}]"), "is not a template variable");
            } else if val.chars().count() > 1_000 {
                v.add(format!("variables[{k}]"), "must be at most 1000 characters");
            }
        }
        v.into_result()?;
        if let Some(done) = idempotency::stored::<Message>(self.store.db(), &scope).await? {
            return Ok(Response::new(pb::SendMessageResponse {
                message: Some(message_to_proto(&done, sees_addresses(&who))),
            }));
        }
        let template = self
            .store
            .template(partner_id, template_id.unwrap_or_default())
            .await?
            .ok_or_else(|| ApiError::NotFound("message template".into()))?;
        if customer_id.is_none() {
            // A stranger has no consents: only service messages may reach them.
            if template.kind != TemplateKind::System {
                return Err(ApiError::invalid(
                    "address",
                    "only a SYSTEM template may go to an address without a customer",
                )
                .into());
            }
            if !message::is_address(template.channel, &address) {
                return Err(ApiError::invalid(
                    "address",
                    format!("is not an address for {}", template.channel.as_str()),
                )
                .into());
            }
        }
        if let Some(id) = customer_id {
            // NOT_FOUND for an unknown or another partner's customer.
            self.customer_variables(&who, id).await?;
        }
        let queued = Message::direct(
            &template,
            customer_id,
            address,
            req.variables.into_iter().collect(),
            execution_id,
            Utc::now(),
        );
        let store = self.store.clone();
        let m: Message = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .insert_messages(txn, partner_id, std::slice::from_ref(&queued))
                    .await?;
                Ok(queued)
            })
        })
        .await?;
        Ok(Response::new(pb::SendMessageResponse {
            message: Some(message_to_proto(&m, sees_addresses(&who))),
        }))
    }

    pub(super) async fn get_campaign_statistics_rpc(
        &self,
        request: Request<pb::GetCampaignStatisticsRequest>,
    ) -> Result<Response<pb::GetCampaignStatisticsResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let mut v = Violations::new();
        let id = v.uuid("campaign_id", &request.get_ref().campaign_id);
        v.into_result()?;
        let id = id.unwrap_or_default();
        Ok(Response::new(pb::GetCampaignStatisticsResponse {
            statistics: Some(self.statistics(partner_id, id).await?),
        }))
    }

    /// A campaign's statistics; NOT_FOUND for another partner's campaign.
    pub(super) async fn statistics(
        &self,
        partner_id: Uuid,
        campaign_id: Uuid,
    ) -> Result<pb::CampaignStatistics, ApiError> {
        let work = self
            .store
            .campaign_work(self.store.db(), campaign_id)
            .await?
            .filter(|w| w.partner_id == partner_id)
            .ok_or_else(|| ApiError::NotFound("campaign".into()))?;
        let counts = self.store.message_counts(campaign_id).await?;
        Ok(statistics_to_proto(work.target_count, &counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_for_marketing() {
        assert_eq!(
            mask_address("jana.novakova@example.com"),
            "j***@example.com"
        );
        assert_eq!(mask_address("+420601234567"), "+420*****4567");
        assert_eq!(mask_address("12345"), "*****");
    }
}
