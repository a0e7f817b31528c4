//! Message templates end to end (identity and campaigns as processes, PostgreSQL): texts are
//! Jinja2 templates checked on save (an unknown variable or a syntax error names the field,
//! the line and the column), previewed for a real customer read from identity (HTML-escaped
//! in an email body), listed, updated under their etag, deleted, and kept per partner.
use loyalty_proto::{campaigns::v1 as pb, identity::v1 as identity};
use loyalty_testkit::{Backend, Suite, authed, create_customer, error_reason, violated_fields};
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

type Client = pb::campaigns_service_client::CampaignsServiceClient<Channel>;

fn email(subject: &str, body: &str) -> pb::MessageTemplate {
    pb::MessageTemplate {
        display_name: "Spring".into(),
        channel: pb::Channel::Email as i32,
        kind: pb::TemplateKind::Campaign as i32,
        subject: subject.into(),
        body: body.into(),
        ..Default::default()
    }
}

async fn create(
    client: &mut Client,
    key: &str,
    idempotency_key: &str,
    t: pb::MessageTemplate,
) -> Result<pb::MessageTemplate, tonic::Status> {
    client
        .create_message_template(authed(
            pb::CreateMessageTemplateRequest {
                idempotency_key: idempotency_key.into(),
                message_template: Some(t),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner().message_template.expect("template"))
}

/// The descriptions of an INVALID_ARGUMENT's violations, as `field: description`.
fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

async fn preview(
    client: &mut Client,
    key: &str,
    request: pb::RenderPreviewRequest,
) -> Result<pb::RenderPreviewResponse, tonic::Status> {
    client
        .render_preview(authed(request, key))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_are_checked_previewed_for_a_customer_and_kept_per_partner() -> anyhow::Result<()>
{
    let suite = Suite::start(Backend::Postgres).await?;
    let roles = [
        identity::Role::Marketing,
        identity::Role::Support,
        identity::Role::Service,
    ];
    let (_, key) = suite.partner_with_key("Template shop", &roles).await?;
    let (_, other_key) = suite.partner_with_key("Other shop", &roles).await?;
    let mut identity = suite.identity().await?;
    let mut client = suite.campaigns().await?;
    let jana = create_customer(&mut identity, &key, "Jana", "Praha").await?;
    let stranger = create_customer(&mut identity, &other_key, "Eva", "Brno").await?;

    // An unknown variable on line 2 and a syntax error in the subject, each under its field.
    let bad = create(
        &mut client,
        &key,
        "bad",
        email(
            "Hi {{ customer.first_name",
            "<p>Hello</p>\n<p>Your size: {{ customer.shoe_size }}</p>",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let found = violations(&bad);
    assert!(
        found.iter().any(|v| v.starts_with(
            "message_template.body: line 2, column 18: unknown variable `customer.shoe_size`"
        )),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|v| v.starts_with("message_template.subject: line 1, column")),
        "{found:?}"
    );

    // A valid email with a condition, a plain-text part and a voucher code.
    let mut spring = email(
        "{{ customer.first_name }}, spring is here",
        "<p>Hi {{ customer.first_name }}!</p>\
         {% if customer.city == \"Praha\" %}<p>See you in our Prague store.</p>\
         {% else %}<p>Order online.</p>{% endif %}<p>Code: {{ voucher.code }}</p>",
    );
    spring.text_body = "Hi {{ customer.first_name }}, your code: {{ voucher.code }}".into();
    let created = create(&mut client, &key, "spring", spring.clone()).await?;
    let again = create(&mut client, &key, "spring", spring).await?;
    assert_eq!(again.id, created.id, "a retry answers the same template");

    // Previewed for Jana: identity's data, HTML-escaped values in the body.
    let for_jana = preview(
        &mut client,
        &key,
        pb::RenderPreviewRequest {
            message_template_id: created.id.clone(),
            customer_id: jana.clone(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(for_jana.subject, "Jana, spring is here");
    assert!(
        for_jana.body.contains("See you in our Prague store."),
        "{}",
        for_jana.body
    );
    assert_eq!(for_jana.text_body, "Hi Jana, your code: ");
    assert_eq!(for_jana.missing_variables, ["voucher.code"]);
    let overridden = preview(
        &mut client,
        &key,
        pb::RenderPreviewRequest {
            message_template_id: created.id.clone(),
            customer_id: jana.clone(),
            sample_variables: [
                ("customer.first_name".to_owned(), "<Eva>".to_owned()),
                ("voucher.code".to_owned(), "SPRING-1".to_owned()),
            ]
            .into(),
            ..Default::default()
        },
    )
    .await?;
    assert!(
        overridden.body.contains("<p>Hi &lt;Eva&gt;!</p>"),
        "{}",
        overridden.body
    );
    assert_eq!(overridden.subject, "<Eva>, spring is here");
    assert!(overridden.missing_variables.is_empty());

    // Another partner's customer is not found; an unknown sample variable is refused.
    let e = preview(
        &mut client,
        &key,
        pb::RenderPreviewRequest {
            message_template_id: created.id.clone(),
            customer_id: stranger,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = preview(
        &mut client,
        &key,
        pb::RenderPreviewRequest {
            message_template_id: created.id.clone(),
            sample_variables: [("customer.nickname".to_owned(), "x".to_owned())].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        violated_fields(&e),
        ["sample_variables[\"customer.nickname\"]"]
    );

    // An unsaved SMS previewed with samples only: its segments are counted.
    let sms = preview(
        &mut client,
        &key,
        pb::RenderPreviewRequest {
            message_template: Some(pb::MessageTemplate {
                display_name: "Reminder".into(),
                channel: pb::Channel::Sms as i32,
                kind: pb::TemplateKind::System as i32,
                body: "Ahoj {{ customer.first_name }}, {{ \"x\" * 150 }}".into(),
                ..Default::default()
            }),
            sample_variables: [("customer.first_name".to_owned(), "Jana".to_owned())].into(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(sms.sms_segment_count, 2, "{}", sms.body);

    // Listed by channel, updated under its etag, deleted; another partner sees nothing.
    let viber = create(
        &mut client,
        &key,
        "viber",
        pb::MessageTemplate {
            display_name: "Viber".into(),
            channel: pb::Channel::Viber as i32,
            kind: pb::TemplateKind::Campaign as i32,
            body: "Hi {{ customer.first_name }}".into(),
            link_url: "https://shop.example/spring".into(),
            ..Default::default()
        },
    )
    .await?;
    let emails = client
        .list_message_templates(authed(
            pb::ListMessageTemplatesRequest {
                channel: pb::Channel::Email as i32,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .message_templates;
    assert_eq!(
        emails.iter().map(|t| &t.id).collect::<Vec<_>>(),
        [&created.id]
    );
    let all = client
        .list_message_templates(authed(
            pb::ListMessageTemplatesRequest {
                page_size: 1,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(all.message_templates[0].id, viber.id, "newest first");
    assert!(!all.next_page_token.is_empty());

    let update = |etag: &str, body: &str, idempotency_key: &str| pb::UpdateMessageTemplateRequest {
        idempotency_key: idempotency_key.into(),
        message_template: Some(pb::MessageTemplate {
            id: created.id.clone(),
            body: body.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["body".into()],
        }),
        etag: etag.into(),
    };
    let stale = client
        .update_message_template(authed(update("v9", "<p>New</p>", "u1"), &key))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");
    let unknown = client
        .update_message_template(authed(
            update(&created.etag, "{{ points.total }}", "u2"),
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unknown), ["message_template.body"]);
    let updated = client
        .update_message_template(authed(
            update(&created.etag, "<p>{{ points.balance }} points</p>", "u3"),
            &key,
        ))
        .await?
        .into_inner()
        .message_template
        .expect("template");
    assert_ne!(updated.etag, created.etag);
    assert_eq!(updated.subject, created.subject, "unmasked fields stay");

    let get = |who: &str| {
        authed(
            pb::GetMessageTemplateRequest {
                message_template_id: created.id.clone(),
            },
            who,
        )
    };
    let e = client
        .get_message_template(get(&other_key))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    client
        .delete_message_template(authed(
            pb::DeleteMessageTemplateRequest {
                idempotency_key: "delete".into(),
                message_template_id: created.id.clone(),
            },
            &key,
        ))
        .await?;
    let e = client.get_message_template(get(&key)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    suite.stop().await
}
