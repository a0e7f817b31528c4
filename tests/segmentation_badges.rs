//! Badges end to end: a Flexi badge whose criterion reads a segment's membership is assigned
//! at creation, staff assign one by hand (idempotently), the customer's badges carry the icon,
//! the history says BADGE, a referenced segment cannot be deleted (SEGMENT_IN_USE names the
//! badge), bad icons and unknown references are refused with their fields, and another
//! partner sees nothing.
use std::time::Duration;

use loyalty_proto::{identity::v1 as identity, segmentation::v1 as seg};
use loyalty_testkit::{
    Backend, Suite, authed, create_customer, error_reason, eventually, violated_fields,
};
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

type Client = seg::segmentation_service_client::SegmentationServiceClient<Channel>;

fn condition(field: &str, value: seg::value::Kind) -> seg::Criterion {
    seg::Criterion {
        kind: Some(seg::criterion::Kind::Condition(seg::Condition {
            field: field.into(),
            operator: seg::ComparisonOperator::Equal as i32,
            values: vec![seg::Value { kind: Some(value) }],
        })),
    }
}

fn member_of_segment(id: &str) -> seg::Criterion {
    condition(&format!("segments.{id}"), seg::value::Kind::BoolValue(true))
}

fn badge(name: &str, criterion: seg::Criterion) -> seg::Badge {
    seg::Badge {
        display_name: name.into(),
        kind: seg::BadgeKind::Flexi as i32,
        criterion: Some(criterion),
        icon_url: "https://cdn.example.com/badges/praha.svg".into(),
        icon_content_type: "image/svg+xml".into(),
        visible_to_customer: true,
        ..Default::default()
    }
}

async fn create_badge(
    client: &mut Client,
    key: &str,
    idempotency_key: &str,
    b: seg::Badge,
) -> Result<seg::Badge, tonic::Status> {
    client
        .create_badge(authed(
            seg::CreateBadgeRequest {
                idempotency_key: idempotency_key.into(),
                badge: Some(b),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner().badge.expect("badge"))
}

async fn holders(client: &mut Client, key: &str, badge_id: &str) -> anyhow::Result<Vec<String>> {
    let mut ids: Vec<String> = client
        .list_badge_members(authed(
            seg::ListBadgeMembersRequest {
                badge_id: badge_id.into(),
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .members
        .into_iter()
        .map(|m| m.customer_id)
        .collect();
    ids.sort();
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_badge_follows_a_segment_is_assigned_by_staff_and_keeps_its_segment_in_use()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let roles = [
        identity::Role::Marketing,
        identity::Role::Support,
        identity::Role::Service,
    ];
    let (_, key) = suite.partner_with_key("Badge shop", &roles).await?;
    let (_, other_key) = suite.partner_with_key("Other shop", &roles).await?;
    let mut identity = suite.identity().await?;
    let mut client = suite.segmentation().await?;
    let jana = create_customer(&mut identity, &key, "Jana", "Praha").await?;
    let petr = create_customer(&mut identity, &key, "Petr", "Brno").await?;

    // A Flexi segment of Praha, recalculated until identity's events reached segmentation.
    let praha = client
        .create_segment(authed(
            seg::CreateSegmentRequest {
                idempotency_key: "praha".into(),
                segment: Some(seg::Segment {
                    display_name: "Praha".into(),
                    kind: seg::SegmentKind::Flexi as i32,
                    criterion: Some(condition(
                        "customer.city",
                        seg::value::Kind::StringValue("Praha".into()),
                    )),
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?
        .into_inner()
        .segment
        .expect("segment");
    let mut attempt = 0;
    eventually(Duration::from_secs(20), || {
        attempt += 1;
        let (mut client, key, id, jana) =
            (client.clone(), key.clone(), praha.id.clone(), jana.clone());
        async move {
            let done = client
                .recalculate_segment(authed(
                    seg::RecalculateSegmentRequest {
                        idempotency_key: format!("warm-{attempt}"),
                        segment_id: id.clone(),
                    },
                    &key,
                ))
                .await?
                .into_inner();
            let members = client
                .list_segment_members(authed(
                    seg::ListSegmentMembersRequest {
                        segment_id: id,
                        ..Default::default()
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .members;
            let ids: Vec<String> = members.into_iter().map(|m| m.customer_id).collect();
            Ok((done.segment.is_some() && ids == [jana]).then_some(()))
        }
    })
    .await?;

    // A bad icon is named field by field; a well-formed badge reading an unknown segment is
    // refused at its criterion's path.
    let unknown = member_of_segment(&uuid::Uuid::now_v7().to_string());
    let mut bad = badge("Broken", unknown.clone());
    bad.icon_url = "http://cdn.example.com/x.png".into();
    bad.icon_content_type = "text/html".into();
    let refused = create_badge(&mut client, &key, "broken", bad)
        .await
        .expect_err("invalid");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(fields, ["badge.icon_content_type", "badge.icon_url"]);
    let refused = create_badge(&mut client, &key, "unknown", badge("Unknown", unknown))
        .await
        .expect_err("unknown segment");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        ["badge.criterion.condition.field"]
    );

    // The Flexi badge of Praha's members is assigned at creation; a retry answers the same.
    let fan = create_badge(
        &mut client,
        &key,
        "fan",
        badge("Praha fan", member_of_segment(&praha.id)),
    )
    .await?;
    assert_eq!(fan.member_count, 1);
    assert_eq!(fan.etag, "v1");
    assert_eq!(
        create_badge(
            &mut client,
            &key,
            "fan",
            badge("Praha fan", member_of_segment(&praha.id))
        )
        .await?,
        fan
    );
    assert_eq!(
        holders(&mut client, &key, &fan.id).await?,
        std::slice::from_ref(&jana)
    );

    // Staff pin it on Petr; assigning again changes nothing.
    let assign = |idempotency_key: &str| seg::AssignBadgeRequest {
        idempotency_key: idempotency_key.into(),
        badge_id: fan.id.clone(),
        customer_id: petr.clone(),
        cause: seg::MembershipCause::Unspecified as i32,
    };
    let pinned = client
        .assign_badge(authed(assign("pin-petr"), &key))
        .await?
        .into_inner()
        .customer_badge
        .expect("customer badge");
    assert_eq!(pinned.cause, seg::MembershipCause::Manual as i32);
    let again = client
        .assign_badge(authed(assign("pin-petr-again"), &key))
        .await?
        .into_inner()
        .customer_badge
        .expect("customer badge");
    assert_eq!(again, pinned);

    // Petr's badges (Customer 360, POS) carry the icon.
    let shown = client
        .list_customer_badges(authed(
            seg::ListCustomerBadgesRequest {
                customer_id: petr.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .badges;
    assert_eq!(shown.len(), 1);
    assert_eq!(
        (
            shown[0].badge_display_name.as_str(),
            shown[0].icon_url.as_str(),
            shown[0].icon_content_type.as_str()
        ),
        (
            "Praha fan",
            "https://cdn.example.com/badges/praha.svg",
            "image/svg+xml"
        )
    );
    let history = client
        .list_membership_history(authed(
            seg::ListMembershipHistoryRequest {
                customer_id: petr.clone(),
                group_kind: seg::GroupKind::Badge as i32,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .entries;
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].group_kind, history[0].change, history[0].cause),
        (
            seg::GroupKind::Badge as i32,
            seg::MembershipChange::Entered as i32,
            seg::MembershipCause::Manual as i32
        )
    );

    // The segment is in use by the badge.
    let delete_segment = |idempotency_key: &str| seg::DeleteSegmentRequest {
        idempotency_key: idempotency_key.into(),
        segment_id: praha.id.clone(),
        etag: String::new(),
    };
    let in_use = client
        .delete_segment(authed(delete_segment("delete-praha"), &key))
        .await
        .expect_err("in use");
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&in_use), "SEGMENT_IN_USE");
    let info = in_use
        .get_error_details()
        .error_info()
        .cloned()
        .expect("info");
    assert_eq!(info.metadata.get("referencing_badge_ids"), Some(&fan.id));

    // Another partner sees nothing of it.
    let hidden = client
        .get_badge(authed(
            seg::GetBadgeRequest {
                badge_id: fan.id.clone(),
            },
            &other_key,
        ))
        .await
        .expect_err("another partner's");
    assert_eq!(hidden.code(), Code::NotFound);

    // Removing the badge's last reader frees the segment.
    client
        .delete_badge(authed(
            seg::DeleteBadgeRequest {
                idempotency_key: "delete-fan".into(),
                badge_id: fan.id.clone(),
                etag: fan.etag.clone(),
            },
            &key,
        ))
        .await?;
    client
        .delete_segment(authed(delete_segment("delete-praha-2"), &key))
        .await?;
    suite.stop().await
}
