//! Audiences end to end (seed 001, seed 002): identity's customers, consents and bounces reach
//! segmentation as events; an audience selects the consented, reachable, unbounced customers
//! once, keeps its criterion, takes manual changes under the same checks, streams its contacts,
//! shows in the customer's Customer 360 list and history, and is locked by a campaign launch.
use std::time::Duration;

use futures::StreamExt;
use loyalty_proto::{identity::v1 as identity, segmentation::v1 as seg, types::v1 as types};
use loyalty_testkit::{
    Backend, Suite, authed, email_newsletter, error_reason, eventually, grant_consent,
    violated_fields,
};
use tonic::{Code, transport::Channel};

type Client = seg::segmentation_service_client::SegmentationServiceClient<Channel>;
type Identity = identity::identity_service_client::IdentityServiceClient<Channel>;

fn city_is(city: &str) -> seg::Criterion {
    seg::Criterion {
        kind: Some(seg::criterion::Kind::Condition(seg::Condition {
            field: "customer.city".into(),
            operator: seg::ComparisonOperator::Equal as i32,
            values: vec![seg::Value {
                kind: Some(seg::value::Kind::StringValue(city.into())),
            }],
        })),
    }
}

async fn customer(identity: &mut Identity, key: &str, name: &str) -> anyhow::Result<String> {
    Ok(identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: format!("customer-{name}"),
                customer: Some(identity::Customer {
                    first_name: name.into(),
                    last_name: "Audience".into(),
                    email: format!("{}@example.com", name.to_lowercase()),
                    city: "Praha".into(),
                    ..Default::default()
                }),
                identifiers: vec![],
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer")
        .id)
}

fn audience_request(idempotency_key: &str) -> seg::CreateAudienceRequest {
    seg::CreateAudienceRequest {
        idempotency_key: idempotency_key.into(),
        audience: Some(seg::Audience {
            display_name: "Spring newsletter".into(),
            channel: types::CommunicationChannel::Email as i32,
            criterion: Some(city_is("Praha")),
            note: "spring".into(),
            ..Default::default()
        }),
    }
}

fn member(audience_id: &str, customer_id: &str, key: &str) -> seg::AddAudienceMemberRequest {
    seg::AddAudienceMemberRequest {
        idempotency_key: key.into(),
        audience_id: audience_id.into(),
        customer_id: customer_id.into(),
    }
}

async fn export(
    client: &mut Client,
    key: &str,
    audience_id: &str,
    batch_size: i32,
) -> Result<Vec<Vec<seg::AudienceContact>>, tonic::Status> {
    export_after(client, key, audience_id, batch_size, "").await
}

/// The export resumed after the customer `start_after` (empty = from the first).
async fn export_after(
    client: &mut Client,
    key: &str,
    audience_id: &str,
    batch_size: i32,
    start_after: &str,
) -> Result<Vec<Vec<seg::AudienceContact>>, tonic::Status> {
    let mut stream = client
        .export_audience_members(authed(
            seg::ExportAudienceMembersRequest {
                audience_id: audience_id.into(),
                batch_size,
                start_after_customer_id: start_after.into(),
            },
            key,
        ))
        .await?
        .into_inner();
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch?.contacts);
    }
    Ok(batches)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audience_selects_once_takes_checked_manual_changes_exports_and_locks_at_launch()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let roles = [
        identity::Role::Marketing,
        identity::Role::Support,
        identity::Role::Service,
    ];
    let (_, key) = suite.partner_with_key("Audience shop", &roles).await?;
    let (_, other_key) = suite.partner_with_key("Other shop", &roles).await?;
    let mut identity = suite.identity().await?;
    let mut client = suite.segmentation().await?;

    let newsletter_id = email_newsletter(&mut identity, &key).await?;
    let mut consented = Vec::new();
    for name in ["Jana", "Adam", "Bara", "Cyril"] {
        let id = customer(&mut identity, &key, name).await?;
        grant_consent(&mut identity, &key, &id, &newsletter_id).await?;
        consented.push(id);
    }
    let petr = customer(&mut identity, &key, "Petr").await?;
    grant_consent(&mut identity, &key, &petr, &newsletter_id).await?;
    identity
        .record_email_bounce(authed(
            identity::RecordEmailBounceRequest {
                idempotency_key: "petr-hard".into(),
                customer_id: petr.clone(),
                email: "petr@example.com".into(),
                bounce_type: identity::BounceType::Hard as i32,
                bounce_time: None,
                message_id: "m-1".into(),
            },
            &key,
        ))
        .await?;
    let eva = customer(&mut identity, &key, "Eva").await?;
    let other_newsletter = email_newsletter(&mut identity, &other_key).await?;
    let stranger = customer(&mut identity, &other_key, "Stranger").await?;
    grant_consent(&mut identity, &other_key, &stranger, &other_newsletter).await?;

    // Audiences are selected from segmentation's feature store, which identity's events fill
    // asynchronously: create until every event has arrived.
    let mut attempt = 0;
    let audience = eventually(Duration::from_secs(30), || {
        attempt += 1;
        let (mut client, key) = (client.clone(), key.clone());
        async move {
            let a = client
                .create_audience(authed(audience_request(&format!("create-{attempt}")), &key))
                .await?
                .into_inner()
                .audience
                .expect("audience");
            let x = a.exclusions.unwrap_or_default();
            Ok(
                (a.member_count == 4 && x.hard_bounce_count == 1 && x.no_consent_count == 1)
                    .then_some((a, attempt)),
            )
        }
    })
    .await?;
    let (audience, attempt) = audience;
    assert_eq!(audience.state, seg::AudienceState::Ready as i32);
    let retried = client
        .create_audience(authed(audience_request(&format!("create-{attempt}")), &key))
        .await?
        .into_inner()
        .audience
        .expect("audience");
    assert_eq!(retried, audience, "a retry answers the same audience");

    // The criterion is readable and fixed.
    let read = client
        .get_audience(authed(
            seg::GetAudienceRequest {
                audience_id: audience.id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .audience
        .expect("audience");
    assert_eq!(read.criterion, Some(city_is("Praha")));
    let update = |idem: &str, paths: &[&str], name: &str, etag: &str| seg::UpdateAudienceRequest {
        idempotency_key: idem.into(),
        audience: Some(seg::Audience {
            id: audience.id.clone(),
            display_name: name.into(),
            criterion: Some(city_is("Brno")),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
        etag: etag.into(),
    };
    let refused = client
        .update_audience(authed(update("u-1", &["criterion"], "", ""), &key))
        .await
        .expect_err("criterion fixed");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "AUDIENCE_CRITERION_FIXED");
    let renamed = client
        .update_audience(authed(
            update("u-2", &["display_name"], "Spring mail", &read.etag),
            &key,
        ))
        .await?
        .into_inner()
        .audience
        .expect("audience");
    assert_eq!(renamed.display_name, "Spring mail");
    let stale = client
        .update_audience(authed(
            update("u-3", &["display_name"], "Again", &read.etag),
            &key,
        ))
        .await
        .expect_err("stale");
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");

    // Manual additions pass the same checks; removal of a member works.
    for (who, reason) in [(&eva, "NO_CONSENT"), (&petr, "EMAIL_BOUNCED")] {
        let refused = client
            .add_audience_member(authed(
                member(&audience.id, who, &format!("add-{who}")),
                &key,
            ))
            .await
            .expect_err("excluded");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(error_reason(&refused), reason);
    }
    let jana = consented[0].clone();
    let removed = client
        .remove_audience_member(authed(
            seg::RemoveAudienceMemberRequest {
                idempotency_key: "remove-jana".into(),
                audience_id: audience.id.clone(),
                customer_id: jana.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .audience
        .expect("audience");
    assert_eq!(removed.member_count, 3);

    // The contacts stream in batches, by customer id, with the Customer 360 details.
    let batches = export(&mut client, &key, &audience.id, 2).await?;
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 1],
        "3 members in batches of 2"
    );
    let contacts: Vec<seg::AudienceContact> = batches.into_iter().flatten().collect();
    let mut expected: Vec<String> = consented[1..].to_vec();
    expected.sort();
    assert_eq!(
        contacts
            .iter()
            .map(|c| c.customer_id.clone())
            .collect::<Vec<_>>(),
        expected
    );
    // A campaign resuming its export after a crash starts after the last member it stored.
    let rest = export_after(&mut client, &key, &audience.id, 0, &expected[0]).await?;
    assert_eq!(
        rest.concat()
            .iter()
            .map(|c| c.customer_id.clone())
            .collect::<Vec<_>>(),
        expected[1..]
    );
    let e = export_after(&mut client, &key, &audience.id, 0, "nope")
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["start_after_customer_id"]);
    let adam = contacts
        .iter()
        .find(|c| c.customer_id == consented[1])
        .expect("Adam");
    assert_eq!(
        (
            adam.first_name.as_str(),
            adam.last_name.as_str(),
            adam.email.as_str()
        ),
        ("Adam", "Audience", "adam@example.com")
    );
    assert_eq!(adam.add_time, audience.create_time, "member since creation");
    let page = client
        .list_audience_members(authed(
            seg::ListAudienceMembersRequest {
                audience_id: audience.id.clone(),
                page_size: 2,
                page_token: String::new(),
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(page.contacts, contacts[..2]);
    assert_eq!(page.next_page_token, contacts[1].customer_id);

    // The campaign launch locks it: every change is refused, the same launch again is fine.
    let lock = |idem: &str, campaign: &str| seg::LockAudienceRequest {
        idempotency_key: idem.into(),
        audience_id: audience.id.clone(),
        campaign_id: campaign.into(),
    };
    let campaign = uuid::Uuid::now_v7().to_string();
    let locked = client
        .lock_audience(authed(lock("lock-1", &campaign), &key))
        .await?
        .into_inner()
        .audience
        .expect("audience");
    assert_eq!(locked.state, seg::AudienceState::Locked as i32);
    assert_eq!(locked.campaign_id, campaign);
    assert_eq!(
        client
            .lock_audience(authed(lock("lock-2", &campaign), &key))
            .await?
            .into_inner()
            .audience,
        Some(locked.clone())
    );
    let other_campaign = uuid::Uuid::now_v7().to_string();
    let refused = client
        .lock_audience(authed(lock("lock-3", &other_campaign), &key))
        .await
        .expect_err("locked");
    assert_eq!(error_reason(&refused), "AUDIENCE_LOCKED");
    let refused = client
        .add_audience_member(authed(member(&audience.id, &jana, "add-jana"), &key))
        .await
        .expect_err("locked");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "AUDIENCE_LOCKED");

    // Customer 360: Adam's audience row, and Jana's audience history.
    let rows = client
        .list_customer_audiences(authed(
            seg::ListCustomerAudiencesRequest {
                customer_id: consented[1].clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .audiences;
    let row = rows
        .iter()
        .find(|r| r.audience_id == audience.id)
        .expect("row");
    assert_eq!(row.audience_display_name, "Spring mail");
    assert_eq!(row.audience_create_time, audience.create_time);
    assert_eq!(row.channel, types::CommunicationChannel::Email as i32);
    assert_eq!(row.member_count, 3);
    assert_eq!(row.lock_time, locked.lock_time);
    let history = client
        .list_membership_history(authed(
            seg::ListMembershipHistoryRequest {
                customer_id: jana.clone(),
                group_id: audience.id.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .entries;
    let changes: Vec<(i32, i32, i32)> = history
        .iter()
        .map(|h| (h.group_kind, h.change, h.cause))
        .collect();
    let audience_kind = seg::GroupKind::Audience as i32;
    assert_eq!(
        changes,
        [
            (
                audience_kind,
                seg::MembershipChange::Left as i32,
                seg::MembershipCause::Manual as i32
            ),
            (
                audience_kind,
                seg::MembershipChange::Entered as i32,
                seg::MembershipCause::Creation as i32
            ),
        ]
    );

    // Another partner sees nothing of it; bad input names its field.
    let hidden = client
        .get_audience(authed(
            seg::GetAudienceRequest {
                audience_id: audience.id.clone(),
            },
            &other_key,
        ))
        .await
        .expect_err("not theirs");
    assert_eq!(hidden.code(), Code::NotFound);
    let hidden = export(&mut client, &other_key, &audience.id, 0)
        .await
        .expect_err("not theirs");
    assert_eq!(hidden.code(), Code::NotFound);
    let mut bad = audience_request("bad");
    if let Some(a) = bad.audience.as_mut() {
        a.channel = 0;
        a.display_name.clear();
    }
    let bad = client
        .create_audience(authed(bad, &key))
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&bad),
        ["audience.display_name", "audience.channel"]
    );
    suite.stop().await
}
