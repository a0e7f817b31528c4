//! gRPC adapter of `CampaignsService`.
mod campaigns;
mod messages;
mod workflows;

use std::collections::BTreeMap;

use chrono::Utc;
use loyalty_platform::{
    ApiError, Principal, Role, Violations,
    auth::principal,
    client::outgoing,
    error::{check_idempotency_key, mask_paths, parse_uuid},
    idempotency::{self, IdempotencyScope},
    paging,
    time::to_timestamp,
};
use loyalty_proto::{
    campaigns::v1::{self as pb, campaigns_service_server::CampaignsService},
    identity::v1::{self as identity_pb, identity_service_client::IdentityServiceClient},
    rewards::v1::rewards_service_client::RewardsServiceClient,
    segmentation::v1::segmentation_service_client::SegmentationServiceClient,
};
use tonic::{Request, Response, Status, transport::Channel as GrpcChannel};
use uuid::Uuid;

use crate::{
    domain::{Channel, MessageTemplate, TemplateKind, template},
    store::{Store, TemplateFilter},
};

pub struct CampaignsApi {
    store: Store,
    /// Identity, asked for a customer's data when a preview names one; `None` without
    /// `peers.identity_url`.
    identity: Option<IdentityServiceClient<GrpcChannel>>,
    /// Segmentation, asked for the audiences campaigns target; `None` without
    /// `peers.segmentation_url`.
    segmentation: Option<SegmentationServiceClient<GrpcChannel>>,
    /// Rewards, asked for campaign rewards; `None` without `peers.rewards_url`.
    rewards: Option<RewardsServiceClient<GrpcChannel>>,
    /// Signs and checks unsubscribe links; `None` without a link secret or platform key.
    link_secret: Option<Vec<u8>>,
    /// Channels with an adapter; `None` = not known here (launches are not checked).
    channels: Option<Vec<Channel>>,
}

impl CampaignsApi {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            identity: None,
            segmentation: None,
            rewards: None,
            link_secret: None,
            channels: None,
        }
    }

    /// With rewards, whose campaign rewards give each recipient a voucher.
    pub fn with_rewards(mut self, channel: GrpcChannel) -> Self {
        self.rewards = Some(RewardsServiceClient::new(channel));
        self
    }

    /// With the secret unsubscribe links are signed with.
    pub fn with_link_secret(mut self, secret: Vec<u8>) -> Self {
        self.link_secret = Some(secret);
        self
    }

    /// With the channels that have an adapter: a launch on another is refused.
    pub fn with_channels(mut self, channels: Vec<Channel>) -> Self {
        self.channels = Some(channels);
        self
    }

    /// With segmentation, whose audiences campaigns target.
    pub fn with_segmentation(mut self, channel: GrpcChannel) -> Self {
        self.segmentation = Some(SegmentationServiceClient::new(channel));
        self
    }

    /// With identity to preview templates for real customers.
    pub fn with_identity(mut self, channel: GrpcChannel) -> Self {
        self.identity = Some(IdentityServiceClient::new(channel));
        self
    }

    /// The customer's variables (`customer.*`) from identity, with the caller's key
    /// (another partner's customer is `NOT_FOUND` there, and so here).
    async fn customer_variables(
        &self,
        who: &Principal,
        customer_id: Uuid,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let Some(identity) = &self.identity else {
            return Err(ApiError::Unavailable(
                "identity is not configured (peers.identity_url): previews for a customer \
                 need it"
                    .into(),
            ));
        };
        let customer = identity
            .clone()
            .get_customer(outgoing(
                identity_pb::GetCustomerRequest {
                    customer_id: customer_id.to_string(),
                },
                who,
            ))
            .await
            .map_err(|s| ApiError::from_upstream("identity", s))?
            .into_inner()
            .customer
            .unwrap_or_default();
        Ok([
            ("customer.first_name", customer.first_name),
            ("customer.last_name", customer.last_name),
            ("customer.email", customer.email),
            ("customer.phone", customer.phone),
            ("customer.city", customer.city),
            ("customer.birth_date", customer.birth_date),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect())
    }
}

pub(crate) const READERS: &[Role] = &[Role::Marketing, Role::Support, Role::Service];
const UPDATABLE: &[&str] = &[
    "display_name",
    "subject",
    "body",
    "text_body",
    "sender_name",
    "sender_address",
    "link_url",
];
/// Most sample variables a preview takes.
const MAX_SAMPLE_VARIABLES: usize = 200;

pub(crate) fn channel_to_proto(c: Channel) -> pb::Channel {
    match c {
        Channel::Email => pb::Channel::Email,
        Channel::Sms => pb::Channel::Sms,
        Channel::Push => pb::Channel::Push,
        Channel::Viber => pb::Channel::Viber,
    }
}

/// A channel from the wire; `None` for unspecified (or a number this build does not know).
pub(crate) fn channel_from_proto(n: i32) -> Option<Channel> {
    match pb::Channel::try_from(n).unwrap_or_default() {
        pb::Channel::Email => Some(Channel::Email),
        pb::Channel::Sms => Some(Channel::Sms),
        pb::Channel::Push => Some(Channel::Push),
        pb::Channel::Viber => Some(Channel::Viber),
        pb::Channel::Unspecified => None,
    }
}

fn kind_from_proto(n: i32) -> Option<TemplateKind> {
    match pb::TemplateKind::try_from(n).unwrap_or_default() {
        pb::TemplateKind::Campaign => Some(TemplateKind::Campaign),
        pb::TemplateKind::System => Some(TemplateKind::System),
        pb::TemplateKind::Unspecified => None,
    }
}

fn template_to_proto(t: &MessageTemplate) -> pb::MessageTemplate {
    pb::MessageTemplate {
        id: t.id.to_string(),
        display_name: t.display_name.clone(),
        channel: channel_to_proto(t.channel) as i32,
        kind: (match t.kind {
            TemplateKind::Campaign => pb::TemplateKind::Campaign,
            TemplateKind::System => pb::TemplateKind::System,
        }) as i32,
        subject: t.subject.clone(),
        body: t.body.clone(),
        text_body: t.text_body.clone(),
        sender_name: t.sender_name.clone(),
        sender_address: t.sender_address.clone(),
        link_url: t.link_url.clone(),
        create_time: Some(to_timestamp(t.created_at)),
        update_time: Some(to_timestamp(t.updated_at.unwrap_or(t.created_at))),
        etag: t.etag(),
    }
}

/// A new template from the wire (server-assigned fields ignored), not yet validated.
fn template_from_proto(v: &mut Violations, t: pb::MessageTemplate) -> MessageTemplate {
    let channel = channel_from_proto(t.channel).unwrap_or_else(|| {
        v.add("message_template.channel", "is required");
        Channel::Email
    });
    let kind = kind_from_proto(t.kind).unwrap_or_else(|| {
        v.add("message_template.kind", "is required");
        TemplateKind::Campaign
    });
    MessageTemplate {
        id: Uuid::now_v7(),
        display_name: t.display_name.trim().to_owned(),
        channel,
        kind,
        subject: t.subject,
        body: t.body,
        text_body: t.text_body,
        sender_name: t.sender_name,
        sender_address: t.sender_address.trim().to_owned(),
        link_url: t.link_url.trim().to_owned(),
        version: 1,
        created_at: Utc::now(),
        updated_at: None,
    }
}

#[tonic::async_trait]
impl CampaignsService for CampaignsApi {
    #[tracing::instrument(skip_all)]
    async fn create_message_template(
        &self,
        request: Request<pb::CreateMessageTemplateRequest>,
    ) -> Result<Response<pb::CreateMessageTemplateResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(
            partner_id,
            "CreateMessageTemplate",
            &req.idempotency_key,
            &req,
        );
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let Some(t) = req.message_template else {
            return Err(ApiError::invalid("message_template", "is required").into());
        };
        let template = template_from_proto(&mut v, t);
        template.validate(&mut v);
        v.into_result()?;
        let store = self.store.clone();
        let template: MessageTemplate = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store.insert_template(txn, partner_id, &template).await?;
                Ok(template)
            })
        })
        .await?;
        Ok(Response::new(pb::CreateMessageTemplateResponse {
            message_template: Some(template_to_proto(&template)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_message_template(
        &self,
        request: Request<pb::GetMessageTemplateRequest>,
    ) -> Result<Response<pb::GetMessageTemplateResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let id = parse_uuid(
            "message_template_id",
            &request.get_ref().message_template_id,
        )?;
        let template = self
            .store
            .template(partner_id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("message template".into()))?;
        Ok(Response::new(pb::GetMessageTemplateResponse {
            message_template: Some(template_to_proto(&template)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_message_templates(
        &self,
        request: Request<pb::ListMessageTemplatesRequest>,
    ) -> Result<Response<pb::ListMessageTemplatesResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        if pb::Channel::try_from(req.channel).is_err() {
            v.add("channel", "is not a channel");
        }
        if pb::TemplateKind::try_from(req.kind).is_err() {
            v.add("kind", "is not a template kind");
        }
        v.into_result()?;
        let filter = TemplateFilter {
            channel: channel_from_proto(req.channel),
            kind: kind_from_proto(req.kind),
        };
        let found = self
            .store
            .list_templates(partner_id, filter, limit, after)
            .await?;
        Ok(Response::new(pb::ListMessageTemplatesResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|t| t.id),
            ),
            message_templates: found.iter().map(template_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_message_template(
        &self,
        request: Request<pb::UpdateMessageTemplateRequest>,
    ) -> Result<Response<pb::UpdateMessageTemplateResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(
            partner_id,
            "UpdateMessageTemplate",
            &req.idempotency_key,
            &req,
        );
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let paths = mask_paths(&mut v, req.update_mask, UPDATABLE);
        let t = req.message_template.unwrap_or_default();
        let id = v.uuid("message_template.id", &t.id);
        v.into_result()?;
        let id = id.unwrap_or_default();
        let etag = req.etag;
        let store = self.store.clone();
        let updated: MessageTemplate = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .update_template(txn, partner_id, id, &etag, |current| {
                        let mut next = current.clone();
                        let masked = |p: &str| paths.iter().any(|m| m == p);
                        if masked("display_name") {
                            next.display_name = t.display_name.trim().to_owned();
                        }
                        if masked("subject") {
                            next.subject = t.subject;
                        }
                        if masked("body") {
                            next.body = t.body;
                        }
                        if masked("text_body") {
                            next.text_body = t.text_body;
                        }
                        if masked("sender_name") {
                            next.sender_name = t.sender_name;
                        }
                        if masked("sender_address") {
                            next.sender_address = t.sender_address.trim().to_owned();
                        }
                        if masked("link_url") {
                            next.link_url = t.link_url.trim().to_owned();
                        }
                        let mut v = Violations::new();
                        next.validate(&mut v);
                        v.into_result()?;
                        next.version += 1;
                        next.updated_at = Some(Utc::now());
                        Ok(next)
                    })
                    .await
            })
        })
        .await?;
        Ok(Response::new(pb::UpdateMessageTemplateResponse {
            message_template: Some(template_to_proto(&updated)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_message_template(
        &self,
        request: Request<pb::DeleteMessageTemplateRequest>,
    ) -> Result<Response<pb::DeleteMessageTemplateResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(
            partner_id,
            "DeleteMessageTemplate",
            &req.idempotency_key,
            &req,
        );
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let id = v.uuid("message_template_id", &req.message_template_id);
        v.into_result()?;
        let id = id.unwrap_or_default();
        let store = self.store.clone();
        idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move { store.delete_template(txn, partner_id, id).await })
        })
        .await?;
        Ok(Response::new(pb::DeleteMessageTemplateResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn render_preview(
        &self,
        request: Request<pb::RenderPreviewRequest>,
    ) -> Result<Response<pb::RenderPreviewResponse>, Status> {
        let who = principal(&request)?.clone();
        let partner_id = who.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer =
            (!req.customer_id.is_empty()).then(|| v.uuid("customer_id", &req.customer_id));
        if req.sample_variables.len() > MAX_SAMPLE_VARIABLES {
            v.add(
                "sample_variables",
                format!("at most {MAX_SAMPLE_VARIABLES} entries"),
            );
        }
        for name in req.sample_variables.keys() {
            if !template::VARIABLES.iter().any(|(n, _)| n == name) {
                v.add(
                    format!("sample_variables[{name:?}]"),
                    "is not a variable templates know",
                );
            }
        }
        let stored = match (req.message_template_id.is_empty(), req.message_template) {
            (false, None) => Some(v.uuid("message_template_id", &req.message_template_id)),
            (true, Some(t)) => {
                let t = template_from_proto(&mut v, t);
                t.validate(&mut v);
                v.into_result()?;
                return self
                    .preview(&who, t, customer.flatten(), req.sample_variables)
                    .await;
            }
            _ => {
                v.add(
                    "message_template_id",
                    "give exactly one of message_template_id and message_template",
                );
                None
            }
        };
        v.into_result()?;
        let id = stored.flatten().unwrap_or_default();
        let template = self
            .store
            .template(partner_id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("message template".into()))?;
        self.preview(&who, template, customer.flatten(), req.sample_variables)
            .await
    }

    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::CreateCampaignResponse>, Status> {
        self.create_campaign_rpc(request).await
    }

    async fn get_campaign(
        &self,
        request: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::GetCampaignResponse>, Status> {
        self.get_campaign_rpc(request).await
    }

    async fn list_campaigns(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        self.list_campaigns_rpc(request).await
    }

    async fn update_campaign(
        &self,
        request: Request<pb::UpdateCampaignRequest>,
    ) -> Result<Response<pb::UpdateCampaignResponse>, Status> {
        self.update_campaign_rpc(request).await
    }

    async fn delete_campaign(
        &self,
        request: Request<pb::DeleteCampaignRequest>,
    ) -> Result<Response<pb::DeleteCampaignResponse>, Status> {
        self.delete_campaign_rpc(request).await
    }

    async fn launch_campaign(
        &self,
        request: Request<pb::LaunchCampaignRequest>,
    ) -> Result<Response<pb::LaunchCampaignResponse>, Status> {
        self.launch_campaign_rpc(request).await
    }

    async fn cancel_campaign(
        &self,
        request: Request<pb::CancelCampaignRequest>,
    ) -> Result<Response<pb::CancelCampaignResponse>, Status> {
        self.cancel_campaign_rpc(request).await
    }

    async fn pause_campaign(
        &self,
        request: Request<pb::PauseCampaignRequest>,
    ) -> Result<Response<pb::PauseCampaignResponse>, Status> {
        self.pause_campaign_rpc(request).await
    }

    async fn resume_campaign(
        &self,
        request: Request<pb::ResumeCampaignRequest>,
    ) -> Result<Response<pb::ResumeCampaignResponse>, Status> {
        self.resume_campaign_rpc(request).await
    }

    async fn get_campaign_statistics(
        &self,
        request: Request<pb::GetCampaignStatisticsRequest>,
    ) -> Result<Response<pb::GetCampaignStatisticsResponse>, Status> {
        self.get_campaign_statistics_rpc(request).await
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        self.send_message_rpc(request).await
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::GetMessageResponse>, Status> {
        self.get_message_rpc(request).await
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        self.list_messages_rpc(request).await
    }

    async fn record_delivery_event(
        &self,
        request: Request<pb::RecordDeliveryEventRequest>,
    ) -> Result<Response<pb::RecordDeliveryEventResponse>, Status> {
        self.record_delivery_event_rpc(request).await
    }

    async fn list_delivery_events(
        &self,
        request: Request<pb::ListDeliveryEventsRequest>,
    ) -> Result<Response<pb::ListDeliveryEventsResponse>, Status> {
        self.list_delivery_events_rpc(request).await
    }

    async fn unsubscribe(
        &self,
        request: Request<pb::UnsubscribeRequest>,
    ) -> Result<Response<pb::UnsubscribeResponse>, Status> {
        self.unsubscribe_rpc(request).await
    }

    async fn create_workflow(
        &self,
        request: Request<pb::CreateWorkflowRequest>,
    ) -> Result<Response<pb::CreateWorkflowResponse>, Status> {
        self.create_workflow_rpc(request).await
    }

    async fn get_workflow(
        &self,
        request: Request<pb::GetWorkflowRequest>,
    ) -> Result<Response<pb::GetWorkflowResponse>, Status> {
        self.get_workflow_rpc(request).await
    }

    async fn list_workflows(
        &self,
        request: Request<pb::ListWorkflowsRequest>,
    ) -> Result<Response<pb::ListWorkflowsResponse>, Status> {
        self.list_workflows_rpc(request).await
    }

    async fn update_workflow(
        &self,
        request: Request<pb::UpdateWorkflowRequest>,
    ) -> Result<Response<pb::UpdateWorkflowResponse>, Status> {
        self.update_workflow_rpc(request).await
    }

    async fn delete_workflow(
        &self,
        request: Request<pb::DeleteWorkflowRequest>,
    ) -> Result<Response<pb::DeleteWorkflowResponse>, Status> {
        self.delete_workflow_rpc(request).await
    }

    async fn activate_workflow(
        &self,
        request: Request<pb::ActivateWorkflowRequest>,
    ) -> Result<Response<pb::ActivateWorkflowResponse>, Status> {
        self.activate_workflow_rpc(request).await
    }

    async fn pause_workflow(
        &self,
        request: Request<pb::PauseWorkflowRequest>,
    ) -> Result<Response<pb::PauseWorkflowResponse>, Status> {
        self.pause_workflow_rpc(request).await
    }

    async fn list_workflow_executions(
        &self,
        request: Request<pb::ListWorkflowExecutionsRequest>,
    ) -> Result<Response<pb::ListWorkflowExecutionsResponse>, Status> {
        self.list_workflow_executions_rpc(request).await
    }

    async fn get_workflow_execution(
        &self,
        request: Request<pb::GetWorkflowExecutionRequest>,
    ) -> Result<Response<pb::GetWorkflowExecutionResponse>, Status> {
        self.get_workflow_execution_rpc(request).await
    }

    async fn cancel_workflow_execution(
        &self,
        request: Request<pb::CancelWorkflowExecutionRequest>,
    ) -> Result<Response<pb::CancelWorkflowExecutionResponse>, Status> {
        self.cancel_workflow_execution_rpc(request).await
    }
}

impl CampaignsApi {
    /// Renders `template` with the customer's data (if any), overridden by `samples`.
    async fn preview(
        &self,
        who: &Principal,
        template: MessageTemplate,
        customer: Option<Uuid>,
        samples: BTreeMap<String, String>,
    ) -> Result<Response<pb::RenderPreviewResponse>, Status> {
        let mut variables = match customer {
            Some(c) => self.customer_variables(who, c).await?,
            None => BTreeMap::new(),
        };
        variables.extend(samples);
        let rendered = template
            .render(&variables)
            .map_err(|(field, problem)| ApiError::invalid(&field, problem.to_string()))?;
        Ok(Response::new(pb::RenderPreviewResponse {
            subject: rendered.subject,
            body: rendered.body,
            text_body: rendered.text_body,
            missing_variables: rendered.missing,
            sms_segment_count: i32::try_from(rendered.sms_segments).unwrap_or(i32::MAX),
        }))
    }
}
