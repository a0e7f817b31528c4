//! The send queue against PostgreSQL and SQLite: one message per campaign recipient however
//! often the audience is exported, claims that never overlap (PostgreSQL: concurrent claims
//! skip each other's rows) and lapse, outcomes recorded in bulk, cancellation, counts.
use std::collections::{BTreeMap, HashSet};

use chrono::{Duration, SubsecRound, Utc};
use sea_orm::{DatabaseConnection, TransactionTrait};
use uuid::Uuid;

use crate::store::testing::{migrated, sqlite_url};

use super::{
    Store,
    messages::{DeliveryEvent, MessageFilter, count_of},
};
use crate::domain::{
    Channel,
    campaign::{Campaign, CampaignState},
    message::{DeliveryEventType, Message, MessageState, Outcome, Purpose},
};

fn campaign() -> Campaign {
    Campaign {
        id: Uuid::now_v7(),
        display_name: "Spring".into(),
        channel: Channel::Email,
        message_template_id: Some(Uuid::now_v7()),
        audience_id: Some(Uuid::now_v7()),
        reward_id: None,
        state: CampaignState::Sending,
        schedule_at: None,
        launched_at: None,
        finished_at: None,
        cancelled_at: None,
        send_rate_per_minute: 0,
        send_window: None,
        time_zone: "UTC".into(),
        note: String::new(),
        version: 1,
        created_at: Utc::now().trunc_subsecs(6),
        updated_at: None,
    }
}

fn queued(c: &Campaign, customer: Uuid, due: chrono::DateTime<Utc>) -> Message {
    Message {
        id: Uuid::now_v7(),
        customer_id: Some(customer),
        channel: c.channel,
        message_template_id: c.message_template_id.unwrap_or_default(),
        campaign_id: Some(c.id),
        workflow_execution_id: None,
        purpose: Purpose::Marketing,
        address: format!("{customer}@example.com"),
        variables: BTreeMap::from([("customer.first_name".into(), "Jana".into())]),
        state: MessageState::Queued,
        attempts: 0,
        due_at: due,
        bounce_type: None,
        failure_reason: String::new(),
        provider_message_id: String::new(),
        voucher_code: String::new(),
        open_count: 0,
        click_count: 0,
        queued_at: due,
        sent_at: None,
        delivered_at: None,
        first_open_at: None,
        first_click_at: None,
        unsubscribed_at: None,
    }
}

async fn queue(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let c = campaign();
    store.insert_campaign(&db, partner, &c).await.unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let customers: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    let batch: Vec<Message> = customers.iter().map(|u| queued(&c, *u, now)).collect();
    assert_eq!(
        store.insert_messages(&db, partner, &batch).await.unwrap(),
        10
    );
    // Exported again (after a crash): new ids for the same recipients change nothing.
    let again: Vec<Message> = customers.iter().map(|u| queued(&c, *u, now)).collect();
    assert_eq!(
        store.insert_messages(&db, partner, &again).await.unwrap(),
        0
    );
    let m = store
        .message(&db, partner, batch[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, batch[0]);
    assert_eq!(
        store
            .message(&db, Uuid::now_v7(), batch[0].id)
            .await
            .unwrap(),
        None
    );

    // Two claims take disjoint rows; a future message is not due.
    let later = queued(&c, Uuid::now_v7(), now + Duration::hours(1));
    store
        .insert_messages(&db, partner, std::slice::from_ref(&later))
        .await
        .unwrap();
    let until = now + Duration::seconds(60);
    let first = store.claim(&db, Some(c.id), now, until, 4).await.unwrap();
    let second = store.claim(&db, Some(c.id), now, until, 100).await.unwrap();
    assert_eq!((first.len(), second.len()), (4, 6));
    let ids: HashSet<Uuid> = first.iter().chain(&second).map(|m| m.message.id).collect();
    assert_eq!(ids.len(), 10);
    assert!(!ids.contains(&later.id));
    assert!(
        first
            .iter()
            .all(|m| m.message.attempts == 1 && m.partner_id == partner)
    );
    assert!(
        store
            .claim(&db, Some(c.id), now, until, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim(&db, None, now, until, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Outcomes: sent, suppressed, failed, retried; the rest of the second claim lapses and is
    // claimed again after its claim ran out.
    let at = now + Duration::seconds(1);
    let retry_at = now + Duration::seconds(30);
    let outcomes = vec![
        (
            first[0].message.id,
            Outcome::Sent {
                provider_message_id: "p-0".into(),
                address: "new@example.com".into(),
            },
        ),
        (
            first[1].message.id,
            Outcome::Suppressed("no marketing consent for email".into()),
        ),
        (first[2].message.id, Outcome::Failed("550 rejected".into())),
        (
            first[3].message.id,
            Outcome::Retry {
                due: retry_at,
                reason: "421 try later".into(),
            },
        ),
    ];
    store.record_outcomes(&db, at, &outcomes).await.unwrap();
    let sent = store
        .message(&db, partner, first[0].message.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            sent.state,
            sent.sent_at,
            sent.provider_message_id.as_str(),
            sent.address.as_str()
        ),
        (MessageState::Sent, Some(at), "p-0", "new@example.com")
    );
    let found = store
        .message_by_provider_id(&db, partner, "p-0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, sent.id);
    let suppressed = store
        .message(&db, partner, first[1].message.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (suppressed.state, suppressed.failure_reason.as_str()),
        (MessageState::Suppressed, "no marketing consent for email")
    );
    let retried = store
        .message(&db, partner, first[3].message.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (retried.state, retried.due_at, retried.attempts),
        (MessageState::Queued, retry_at, 1)
    );
    let relapsed = store
        .claim(
            &db,
            Some(c.id),
            until + Duration::seconds(1),
            until + Duration::seconds(60),
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        relapsed.len(),
        7,
        "6 lapsed claims and the retry, not the future one"
    );
    assert!(relapsed.iter().all(|m| m.message.id != later.id));
    assert!(
        relapsed
            .iter()
            .filter(|m| m.message.id != retried.id)
            .all(|m| m.message.attempts == 2)
    );
    // A peer outage gives them back without counting the attempt.
    let back: Vec<Uuid> = relapsed.iter().map(|m| m.message.id).collect();
    store.release(&db, &back, now).await.unwrap();
    let again = store.claim(&db, Some(c.id), now, until, 100).await.unwrap();
    assert_eq!(again.len(), 7);
    assert!(
        again
            .iter()
            .filter(|m| m.message.id != retried.id)
            .all(|m| m.message.attempts == 2)
    );

    // A cancelled campaign drops what is queued; a send that was in flight still counts.
    assert!(store.has_queued(&db, c.id).await.unwrap());
    let txn = db.begin().await.unwrap();
    assert_eq!(store.cancel_queued(&txn, c.id).await.unwrap(), 8);
    txn.commit().await.unwrap();
    assert!(!store.has_queued(&db, c.id).await.unwrap());
    store
        .record_outcomes(
            &db,
            at,
            &[
                (
                    again[0].message.id,
                    Outcome::Sent {
                        provider_message_id: "p-1".into(),
                        address: "x@example.com".into(),
                    },
                ),
                (again[1].message.id, Outcome::Failed("too late".into())),
            ],
        )
        .await
        .unwrap();
    let counts = store.message_counts(c.id).await.unwrap();
    assert_eq!(count_of(&counts, MessageState::Sent), 2);
    assert_eq!(count_of(&counts, MessageState::Suppressed), 1);
    assert_eq!(count_of(&counts, MessageState::Failed), 1);
    assert_eq!(count_of(&counts, MessageState::Cancelled), 7);

    // Tracking: an event row and the message's new fields.
    let (opened, _) = sent.apply(DeliveryEventType::Open, at, "").unwrap();
    store.put_message(&db, partner, &opened).await.unwrap();
    let e = DeliveryEvent {
        id: Uuid::now_v7(),
        message_id: sent.id,
        event_type: DeliveryEventType::Open,
        url: String::new(),
        diagnostic: String::new(),
        occurred_at: at,
    };
    store
        .insert_delivery_event(&db, partner, &e, at)
        .await
        .unwrap();
    assert_eq!(
        store
            .list_delivery_events(partner, sent.id, 10, None)
            .await
            .unwrap(),
        std::slice::from_ref(&e)
    );
    assert!(
        store
            .list_delivery_events(Uuid::now_v7(), sent.id, 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    let counts = store.message_counts(c.id).await.unwrap();
    assert_eq!(
        (
            count_of(&counts, MessageState::Delivered),
            counts.unique_opens
        ),
        (1, 1)
    );
    let by_state = store
        .list_messages(
            partner,
            &MessageFilter {
                campaign_id: Some(c.id),
                states: vec![MessageState::Delivered, MessageState::Sent],
                ..Default::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_state.len(), 2);
    assert!(by_state[0].id > by_state[1].id, "newest first");
}

#[tokio::test]
async fn the_queue_hands_each_message_to_one_worker_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
    queue(migrated(test_db.url()).await).await;
}

#[tokio::test]
async fn the_queue_hands_each_message_to_one_worker_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    queue(migrated(sqlite_url(&dir)).await).await;
}

/// Eight workers claiming at once from 2,000 messages on PostgreSQL: every message is claimed
/// exactly once (SKIP LOCKED), none twice, none left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_overlap_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
    let db = migrated(test_db.url()).await;
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let c = campaign();
    store.insert_campaign(&db, partner, &c).await.unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let batch: Vec<Message> = (0..2000).map(|_| queued(&c, Uuid::now_v7(), now)).collect();
    store.insert_messages(&db, partner, &batch).await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let db = db.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let txn = db.begin().await.unwrap();
                let got = store
                    .claim(&txn, Some(c.id), now, now + Duration::seconds(60), 37)
                    .await
                    .unwrap();
                txn.commit().await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|m| m.message.id));
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!((all.len(), unique.len()), (2000, 2000));
}

/// A redeemed campaign voucher counts once in the campaign's statistics, whoever reports it
/// how often; a message without a voucher, another campaign or partner counts nothing.
async fn redemptions(db: DatabaseConnection) {
    use super::messages::record_voucher_redemption;
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let c = campaign();
    store.insert_campaign(&db, partner, &c).await.unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let (jana, petr, eva) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut with_voucher = queued(&c, jana, now);
    with_voucher.voucher_code = "SPRING-ABC".into();
    let without = queued(&c, petr, now);
    let mut evas = queued(&c, eva, now);
    evas.voucher_code = "SPRING-EVA".into();
    store
        .insert_messages(&db, partner, &[with_voucher, without, evas])
        .await
        .unwrap();
    let redeem = |campaign, partner, customer| {
        let db = db.clone();
        async move {
            record_voucher_redemption(&db, partner, campaign, customer, now)
                .await
                .unwrap()
        }
    };
    assert_eq!(redeem(c.id, partner, jana).await, 1);
    assert_eq!(redeem(c.id, partner, jana).await, 0, "counted once");
    assert_eq!(redeem(c.id, partner, petr).await, 0, "no voucher");
    assert_eq!(redeem(Uuid::now_v7(), partner, jana).await, 0);
    assert_eq!(redeem(c.id, Uuid::now_v7(), jana).await, 0);
    // As rewards reports it: VoucherRedeemed of a campaign voucher, applied by the consumer.
    use loyalty_platform::events::{DomainEvent, EventHandler};
    use loyalty_proto::events::v1 as ev;
    use prost::Message as _;
    let redeemed = |source: &str| ev::EventEnvelope {
        event_id: Uuid::now_v7().to_string(),
        event_type: ev::VoucherRedeemed::TYPE.into(),
        producer: "rewards".into(),
        partner_id: partner.to_string(),
        payload: ev::VoucherRedeemed {
            customer_id: eva.to_string(),
            source: source.into(),
            source_id: c.id.to_string(),
            ..Default::default()
        }
        .encode_to_vec(),
        ..Default::default()
    };
    for source in ["catalogue", "campaign"] {
        let txn = db.begin().await.unwrap();
        super::messages::VoucherRedemptions
            .apply(&txn, &redeemed(source))
            .await
            .unwrap();
        txn.commit().await.unwrap();
    }
    let counts = store.message_counts(c.id).await.unwrap();
    assert_eq!((counts.vouchers, counts.vouchers_redeemed), (2, 2));
}

#[tokio::test]
async fn redeemed_vouchers_count_once_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
    redemptions(migrated(test_db.url()).await).await;
}

#[tokio::test]
async fn redeemed_vouchers_count_once_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    redemptions(migrated(sqlite_url(&dir)).await).await;
}

/// An unthrottled campaign's recipients in batches: counted as queued while they wait, each
/// batch claimed by one worker, a lapsed claim taken again (attempts counted), a batch given
/// back after a peer's outage, settled into message rows written once as they came out (a
/// repeat adds nothing), and a cancelled campaign's batches claimed for recording only.
async fn batches(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let c = campaign();
    store.insert_campaign(&db, partner, &c).await.unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let first: Vec<Message> = (0..3).map(|_| queued(&c, Uuid::now_v7(), now)).collect();
    let mut second: Vec<Message> = (0..2).map(|_| queued(&c, Uuid::now_v7(), now)).collect();
    second[0].voucher_code = "SPRING-1".into();
    // Written back exactly, whatever the text holds (PostgreSQL takes the rows as arrays).
    second[0]
        .variables
        .insert("note".into(), r#"say "hi", \o/ {x} NULL ✓"#.into());
    store
        .insert_batch(&db, partner, c.id, &first, now)
        .await
        .unwrap();
    store
        .insert_batch(&db, partner, c.id, &second, now + Duration::seconds(1))
        .await
        .unwrap();
    let pending = store.pending(&db, c.id).await.unwrap();
    assert_eq!((pending.messages, pending.vouchers), (5, 1));
    assert!(store.has_queued(&db, c.id).await.unwrap());
    let counts = store.message_counts(c.id).await.unwrap();
    assert_eq!(count_of(&counts, MessageState::Queued), 5);
    assert_eq!(counts.vouchers, 1);

    // Only the first is due; once claimed nobody else gets it until the claim lapses.
    let until = now + Duration::seconds(30);
    let claimed = store
        .claim_batch(&db, Some(c.id), now, until)
        .await
        .unwrap()
        .expect("a due batch");
    assert_eq!(claimed.partner_id, partner);
    assert_eq!(claimed.campaign_id, c.id);
    assert_eq!(
        claimed.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        first.iter().map(|m| m.id).collect::<Vec<_>>()
    );
    assert!(claimed.messages.iter().all(|m| m.attempts == 1));
    assert!(
        store
            .claim_batch(&db, Some(c.id), now, until)
            .await
            .unwrap()
            .is_none(),
        "claimed, and the other is not due yet"
    );
    let later = until + Duration::seconds(1);
    let again = store
        .claim_batch(&db, Some(c.id), later, later + Duration::seconds(30))
        .await
        .unwrap()
        .expect("the first again, its claim lapsed");
    assert_eq!(again.id, claimed.id);
    assert!(again.messages.iter().all(|m| m.attempts == 2));
    // The first claim lapsed: it may not settle what was claimed since.
    assert_eq!(
        store
            .settle_batch(&db, &claimed, &claimed.messages)
            .await
            .unwrap(),
        None
    );
    store
        .release_batch(&db, again.id, later + Duration::seconds(60))
        .await
        .unwrap();

    // The second: one sent, one suppressed; written once, the batch gone.
    let b = store
        .claim_batch(&db, Some(c.id), later, later + Duration::seconds(30))
        .await
        .unwrap()
        .expect("the second");
    assert_eq!(b.messages.len(), 2);
    let rows = vec![
        b.messages[0].clone().settled(
            &Outcome::Sent {
                provider_message_id: "file:1".into(),
                address: "jana@example.com".into(),
            },
            later,
        ),
        b.messages[1]
            .clone()
            .settled(&Outcome::Suppressed("no consent".into()), later),
    ];
    let txn = db.begin().await.unwrap();
    assert_eq!(store.settle_batch(&txn, &b, &rows).await.unwrap(), Some(2));
    txn.commit().await.unwrap();
    assert_eq!(
        store.settle_batch(&db, &b, &rows).await.unwrap(),
        None,
        "settled once"
    );
    let sent = store
        .message(&db, partner, rows[0].id)
        .await
        .unwrap()
        .expect("written");
    assert_eq!(sent, rows[0]);
    let counts = store.message_counts(c.id).await.unwrap();
    assert_eq!(
        (
            count_of(&counts, MessageState::Queued),
            count_of(&counts, MessageState::Sent),
            count_of(&counts, MessageState::Suppressed),
            counts.vouchers
        ),
        (3, 1, 1, 1)
    );

    // Cancelled: its batch is claimed for recording whatever its due time, not for sending.
    assert!(
        store
            .claim_batch(&db, None, later, later + Duration::seconds(30))
            .await
            .unwrap()
            .is_none(),
        "the campaign is still sending"
    );
    let txn = db.begin().await.unwrap();
    store
        .change_campaign(&txn, partner, c.id, "", |c| {
            Ok(c.cancelled(Utc::now()).expect("cancellable"))
        })
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let far = later + Duration::seconds(120);
    let left = store
        .claim_batch(&db, None, far, far + Duration::seconds(30))
        .await
        .unwrap()
        .expect("the cancelled campaign's batch");
    assert_eq!(left.id, claimed.id);
    let rows: Vec<Message> = left
        .messages
        .iter()
        .map(|m| m.clone().cancelled())
        .collect();
    assert_eq!(
        store.settle_batch(&db, &left, &rows).await.unwrap(),
        Some(3)
    );
    assert!(!store.has_queued(&db, c.id).await.unwrap());
    let counts = store.message_counts(c.id).await.unwrap();
    assert_eq!(count_of(&counts, MessageState::Cancelled), 3);
}

#[tokio::test]
async fn batches_are_sent_once_and_written_once_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
    batches(migrated(test_db.url()).await).await;
}

#[tokio::test]
async fn batches_are_sent_once_and_written_once_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    batches(migrated(sqlite_url(&dir)).await).await;
}

/// The export's cursor moves only from where the exporter read it and only while the campaign
/// is SENDING; one lease at a time, given back at once; the count covers rows and batches.
async fn export_cursor(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let c = campaign();
    store.insert_campaign(&db, partner, &c).await.unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let until = now + Duration::seconds(60);
    assert!(store.take_export_lease(c.id, now, until).await.unwrap());
    assert!(
        !store.take_export_lease(c.id, now, until).await.unwrap(),
        "held"
    );
    let (a, b, z) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    assert!(
        store
            .advance_export(&db, c.id, None, a, until)
            .await
            .unwrap()
    );
    assert!(
        !store
            .advance_export(&db, c.id, None, b, until)
            .await
            .unwrap(),
        "a stale exporter adds nothing"
    );
    assert!(
        store
            .advance_export(&db, c.id, Some(a), b, until)
            .await
            .unwrap()
    );
    let work = store.campaign_work(&db, c.id).await.unwrap().unwrap();
    assert_eq!(work.export_cursor, Some(b));

    let txn = db.begin().await.unwrap();
    store
        .change_campaign(&txn, partner, c.id, "", |c| {
            Ok(c.paused(Utc::now()).expect("pausable"))
        })
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert!(
        !store
            .advance_export(&db, c.id, Some(b), z, until)
            .await
            .unwrap(),
        "paused: the export stops"
    );
    store.release_export_lease(c.id).await.unwrap();
    assert!(store.take_export_lease(c.id, now, until).await.unwrap());

    let rows: Vec<Message> = (0..2).map(|_| queued(&c, Uuid::now_v7(), now)).collect();
    store.insert_messages(&db, partner, &rows).await.unwrap();
    let batch: Vec<Message> = (0..3).map(|_| queued(&c, Uuid::now_v7(), now)).collect();
    store
        .insert_batch(&db, partner, c.id, &batch, now)
        .await
        .unwrap();
    assert_eq!(store.finish_export(&db, c.id, now).await.unwrap(), 5);
    let work = store.campaign_work(&db, c.id).await.unwrap().unwrap();
    assert_eq!((work.target_count, work.materialized_at), (5, Some(now)));
}

#[tokio::test]
async fn the_export_cursor_moves_once_while_sending_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
    export_cursor(migrated(test_db.url()).await).await;
}

#[tokio::test]
async fn the_export_cursor_moves_once_while_sending_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    export_cursor(migrated(sqlite_url(&dir)).await).await;
}
