//! The segment lifecycle end to end: a Flexi segment recalculated on demand overwrites a
//! manual change, a standard segment stays fixed, the Customer 360 overview columns, history,
//! paging, etags and tenancy.
use std::time::Duration;

use loyalty_proto::{identity::v1 as identity, segmentation::v1 as seg};
use loyalty_testkit::{
    Backend, Suite, authed, create_customer, error_reason, eventually, violated_fields,
};
use tonic::{Code, transport::Channel};

type Client = seg::segmentation_service_client::SegmentationServiceClient<Channel>;

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

async fn create_segment(
    client: &mut Client,
    key: &str,
    name: &str,
    kind: seg::SegmentKind,
    city: &str,
) -> anyhow::Result<seg::Segment> {
    Ok(client
        .create_segment(authed(
            seg::CreateSegmentRequest {
                idempotency_key: name.into(),
                segment: Some(seg::Segment {
                    display_name: name.into(),
                    kind: kind as i32,
                    criterion: Some(city_is(city)),
                    note: format!("{name} note"),
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .segment
        .expect("segment"))
}

async fn members(client: &mut Client, key: &str, segment_id: &str) -> anyhow::Result<Vec<String>> {
    Ok(client
        .list_segment_members(authed(
            seg::ListSegmentMembersRequest {
                segment_id: segment_id.into(),
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .members
        .into_iter()
        .map(|m| m.customer_id)
        .collect())
}

async fn recalculate(
    client: &mut Client,
    key: &str,
    segment_id: &str,
    idempotency_key: &str,
) -> Result<seg::RecalculateSegmentResponse, tonic::Status> {
    client
        .recalculate_segment(authed(
            seg::RecalculateSegmentRequest {
                idempotency_key: idempotency_key.into(),
                segment_id: segment_id.into(),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner())
}

fn manual(segment_id: &str, customer_id: &str, key: &str) -> seg::AddCustomerToSegmentRequest {
    seg::AddCustomerToSegmentRequest {
        idempotency_key: key.into(),
        segment_id: segment_id.into(),
        customer_id: customer_id.into(),
        cause: seg::MembershipCause::Manual as i32,
        workflow_execution_id: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flexi_recalculation_overwrites_a_manual_change_and_a_standard_segment_stays_fixed()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let roles = [
        identity::Role::Marketing,
        identity::Role::Support,
        identity::Role::Service,
    ];
    let (_, key) = suite.partner_with_key("Segments shop", &roles).await?;
    let (_, other_key) = suite.partner_with_key("Other shop", &roles).await?;
    let mut identity = suite.identity().await?;
    let mut client = suite.segmentation().await?;
    let jana = create_customer(&mut identity, &key, "Jana", "Praha").await?;
    let petr = create_customer(&mut identity, &key, "Petr", "Brno").await?;

    // The Flexi segment is recalculated until identity's events have reached segmentation.
    let brno = create_segment(&mut client, &key, "Brno", seg::SegmentKind::Flexi, "Brno").await?;
    let mut attempt = 0;
    eventually(Duration::from_secs(20), || {
        attempt += 1;
        let (mut client, key, id, petr) =
            (client.clone(), key.clone(), brno.id.clone(), petr.clone());
        async move {
            recalculate(&mut client, &key, &id, &format!("warm-{attempt}")).await?;
            Ok((members(&mut client, &key, &id).await? == [petr]).then_some(()))
        }
    })
    .await?;

    // Jana is added by hand: the answer warns that the next recalculation overwrites it, and
    // a retry answers the same.
    let added = client
        .add_customer_to_segment(authed(manual(&brno.id, &jana, "add-jana"), &key))
        .await?
        .into_inner();
    assert!(added.overwritten_by_recalculation);
    let retried = client
        .add_customer_to_segment(authed(manual(&brno.id, &jana, "add-jana"), &key))
        .await?
        .into_inner();
    assert_eq!(added, retried);

    // Customer 360: the segment overview row of Jana.
    let overview = client
        .get_customer_memberships(authed(
            seg::GetCustomerMembershipsRequest {
                customer_id: jana.clone(),
                cart: None,
            },
            &key,
        ))
        .await?
        .into_inner()
        .memberships;
    assert_eq!(overview.len(), 1, "{overview:?}");
    let row = &overview[0];
    assert_eq!(row.segment_id, brno.id);
    assert_eq!(row.segment_display_name, "Brno");
    assert_eq!(row.segment_kind, seg::SegmentKind::Flexi as i32);
    assert_eq!(row.cause, seg::MembershipCause::Manual as i32);
    assert_eq!(row.member_count, 2);
    assert_eq!(row.note, "Brno note");
    let seconds = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| t.seconds);
    assert_eq!(
        seconds(&row.segment_create_time),
        seconds(&brno.create_time)
    );
    assert!(row.last_recalculation_time.is_some() && row.add_time.is_some());

    // The recalculation expels her again; Petr stays.
    let done = recalculate(&mut client, &key, &brno.id, "recalc-1").await?;
    assert_eq!((done.entered_count, done.left_count), (0, 1));
    assert_eq!(done.segment.expect("segment").member_count, 1);
    assert_eq!(
        members(&mut client, &key, &brno.id).await?,
        std::slice::from_ref(&petr)
    );
    let history = client
        .list_membership_history(authed(
            seg::ListMembershipHistoryRequest {
                customer_id: jana.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .entries;
    let changes: Vec<(i32, i32)> = history.iter().map(|h| (h.change, h.cause)).collect();
    assert_eq!(
        changes,
        [
            (
                seg::MembershipChange::Left as i32,
                seg::MembershipCause::Recalculation as i32
            ),
            (
                seg::MembershipChange::Entered as i32,
                seg::MembershipCause::Manual as i32
            ),
        ],
        "newest first"
    );

    // A standard segment is fixed: no recalculation, no new criterion unless it turns Flexi.
    let fixed = create_segment(
        &mut client,
        &key,
        "Praha",
        seg::SegmentKind::Standard,
        "Praha",
    )
    .await?;
    let refused = recalculate(&mut client, &key, &fixed.id, "recalc-fixed")
        .await
        .expect_err("standard");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "STANDARD_SEGMENT");
    let update =
        |key: &str, paths: &[&str], segment: seg::Segment, etag: &str| seg::UpdateSegmentRequest {
            idempotency_key: key.into(),
            segment: Some(segment),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            etag: etag.into(),
        };
    let refused = client
        .update_segment(authed(
            update(
                "new-criterion",
                &["criterion"],
                seg::Segment {
                    id: fixed.id.clone(),
                    criterion: Some(city_is("Brno")),
                    ..Default::default()
                },
                "",
            ),
            &key,
        ))
        .await
        .expect_err("fixed");
    assert_eq!(error_reason(&refused), "STANDARD_SEGMENT_FIXED");
    let renamed = client
        .update_segment(authed(
            update(
                "rename",
                &["display_name"],
                seg::Segment {
                    id: fixed.id.clone(),
                    display_name: "Prague".into(),
                    ..Default::default()
                },
                &fixed.etag,
            ),
            &key,
        ))
        .await?
        .into_inner()
        .segment
        .expect("segment");
    assert_eq!(renamed.display_name, "Prague");
    assert_ne!(renamed.etag, fixed.etag);
    let stale = client
        .update_segment(authed(
            update(
                "rename-again",
                &["note"],
                seg::Segment {
                    id: fixed.id.clone(),
                    ..Default::default()
                },
                &fixed.etag,
            ),
            &key,
        ))
        .await
        .expect_err("stale");
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");

    // Pages of segments, newest first.
    let page = client
        .list_segments(authed(
            seg::ListSegmentsRequest {
                page_size: 1,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(page.segments[0].id, fixed.id);
    let rest = client
        .list_segments(authed(
            seg::ListSegmentsRequest {
                page_size: 1,
                page_token: page.next_page_token,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(rest.segments[0].id, brno.id);

    // Bad input names the field; another partner sees nothing.
    let bad = client
        .add_customer_to_segment(authed(
            seg::AddCustomerToSegmentRequest {
                cause: seg::MembershipCause::Recalculation as i32,
                ..manual(&brno.id, "nope", "bad")
            },
            &key,
        ))
        .await
        .expect_err("bad");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["customer_id", "cause"]);
    for status in [
        recalculate(&mut client, &other_key, &brno.id, "theirs")
            .await
            .expect_err("other partner"),
        client
            .add_customer_to_segment(authed(manual(&brno.id, &jana, "theirs"), &other_key))
            .await
            .expect_err("other partner"),
        client
            .list_segment_members(authed(
                seg::ListSegmentMembersRequest {
                    segment_id: brno.id.clone(),
                    ..Default::default()
                },
                &other_key,
            ))
            .await
            .expect_err("other partner"),
    ] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }

    // Deleting the segment expels its members; the history keeps the segment's name.
    client
        .delete_segment(authed(
            seg::DeleteSegmentRequest {
                idempotency_key: "delete-brno".into(),
                segment_id: brno.id.clone(),
                etag: String::new(),
            },
            &key,
        ))
        .await?;
    let gone = members(&mut client, &key, &brno.id)
        .await
        .expect_err("deleted");
    assert_eq!(
        gone.downcast_ref::<tonic::Status>().map(|s| s.code()),
        Some(Code::NotFound)
    );
    let last = client
        .list_membership_history(authed(
            seg::ListMembershipHistoryRequest {
                customer_id: petr.clone(),
                group_id: brno.id.clone(),
                page_size: 1,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .entries;
    assert_eq!(last[0].cause, seg::MembershipCause::GroupDeleted as i32);
    assert_eq!(last[0].group_display_name, "Brno");
    suite.stop().await
}
