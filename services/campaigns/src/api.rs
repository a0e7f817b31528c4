//! gRPC adapter of `CampaignsService`.
use chrono::Utc;
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_idempotency_key, parse_uuid},
    idempotency::{self, IdempotencyScope},
    time::to_timestamp,
};
use loyalty_proto::campaigns::v1::{self as pb, campaigns_service_server::CampaignsService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{Channel, MessageTemplate, TemplateKind},
    store::Store,
};

pub struct CampaignsApi {
    store: Store,
}

impl CampaignsApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn template_to_proto(t: &MessageTemplate) -> pb::MessageTemplate {
    pb::MessageTemplate {
        id: t.id.to_string(),
        display_name: t.display_name.clone(),
        channel: (match t.channel {
            Channel::Email => pb::Channel::Email,
            Channel::Sms => pb::Channel::Sms,
            Channel::Push => pb::Channel::Push,
        }) as i32,
        kind: (match t.kind {
            TemplateKind::Campaign => pb::TemplateKind::Campaign,
            TemplateKind::System => pb::TemplateKind::System,
        }) as i32,
        subject: t.subject.clone(),
        body: t.body.clone(),
        sender_name: t.sender_name.clone(),
        sender_address: t.sender_address.clone(),
        link_url: t.link_url.clone(),
        create_time: Some(to_timestamp(t.created_at)),
        update_time: Some(to_timestamp(t.updated_at.unwrap_or(t.created_at))),
        etag: t.etag(),
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
        let channel = match pb::Channel::try_from(t.channel).unwrap_or_default() {
            pb::Channel::Email => Channel::Email,
            pb::Channel::Sms => Channel::Sms,
            pb::Channel::Push => Channel::Push,
            pb::Channel::Unspecified => {
                v.add("message_template.channel", "is required");
                Channel::Email
            }
        };
        let kind = match pb::TemplateKind::try_from(t.kind).unwrap_or_default() {
            pb::TemplateKind::Campaign => TemplateKind::Campaign,
            pb::TemplateKind::System => TemplateKind::System,
            pb::TemplateKind::Unspecified => {
                v.add("message_template.kind", "is required");
                TemplateKind::Campaign
            }
        };
        let template = MessageTemplate {
            id: Uuid::now_v7(),
            display_name: t.display_name.trim().to_owned(),
            channel,
            kind,
            subject: t.subject,
            body: t.body,
            sender_name: t.sender_name,
            sender_address: t.sender_address.trim().to_owned(),
            link_url: t.link_url.trim().to_owned(),
            version: 1,
            created_at: Utc::now(),
            updated_at: None,
        };
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
        let partner_id = principal(&request)?.partner_with_role(&[
            Role::Marketing,
            Role::Support,
            Role::Service,
        ])?;
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

    loyalty_platform::rpcs_not_yet_implemented! {
        "lands with issue #8 (campaigns and marketing automation)";
        list_message_templates(pb::ListMessageTemplatesRequest) -> pb::ListMessageTemplatesResponse;
        update_message_template(pb::UpdateMessageTemplateRequest) -> pb::UpdateMessageTemplateResponse;
        delete_message_template(pb::DeleteMessageTemplateRequest) -> pb::DeleteMessageTemplateResponse;
        render_preview(pb::RenderPreviewRequest) -> pb::RenderPreviewResponse;
        create_campaign(pb::CreateCampaignRequest) -> pb::CreateCampaignResponse;
        get_campaign(pb::GetCampaignRequest) -> pb::GetCampaignResponse;
        list_campaigns(pb::ListCampaignsRequest) -> pb::ListCampaignsResponse;
        update_campaign(pb::UpdateCampaignRequest) -> pb::UpdateCampaignResponse;
        delete_campaign(pb::DeleteCampaignRequest) -> pb::DeleteCampaignResponse;
        launch_campaign(pb::LaunchCampaignRequest) -> pb::LaunchCampaignResponse;
        cancel_campaign(pb::CancelCampaignRequest) -> pb::CancelCampaignResponse;
        get_campaign_statistics(pb::GetCampaignStatisticsRequest) -> pb::GetCampaignStatisticsResponse;
        get_message(pb::GetMessageRequest) -> pb::GetMessageResponse;
        list_messages(pb::ListMessagesRequest) -> pb::ListMessagesResponse;
        send_message(pb::SendMessageRequest) -> pb::SendMessageResponse;
        record_delivery_event(pb::RecordDeliveryEventRequest) -> pb::RecordDeliveryEventResponse;
        list_delivery_events(pb::ListDeliveryEventsRequest) -> pb::ListDeliveryEventsResponse;
        create_workflow(pb::CreateWorkflowRequest) -> pb::CreateWorkflowResponse;
        get_workflow(pb::GetWorkflowRequest) -> pb::GetWorkflowResponse;
        list_workflows(pb::ListWorkflowsRequest) -> pb::ListWorkflowsResponse;
        update_workflow(pb::UpdateWorkflowRequest) -> pb::UpdateWorkflowResponse;
        delete_workflow(pb::DeleteWorkflowRequest) -> pb::DeleteWorkflowResponse;
        activate_workflow(pb::ActivateWorkflowRequest) -> pb::ActivateWorkflowResponse;
        pause_workflow(pb::PauseWorkflowRequest) -> pb::PauseWorkflowResponse;
        list_workflow_executions(pb::ListWorkflowExecutionsRequest) -> pb::ListWorkflowExecutionsResponse;
        get_workflow_execution(pb::GetWorkflowExecutionRequest) -> pb::GetWorkflowExecutionResponse;
        cancel_workflow_execution(pb::CancelWorkflowExecutionRequest) -> pb::CancelWorkflowExecutionResponse;
    }
}
