//! Audiences on PostgreSQL and on SQLite: the selection at creation (criterion, consent for the
//! channel, address, hard bounce, the 5th soft bounce, another partner), manual changes under
//! the same checks, locking, duplicates, contacts in pages, the Customer 360 list and history.
use std::collections::BTreeSet;

use chrono::Utc;
use loyalty_criteria::{Criterion, Operator, RawCriterion, Value};
use loyalty_platform::{ApiError, events::DomainEvent};
use loyalty_proto::{events::v1 as ev, types::v1 as types};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use uuid::Uuid;

use super::{
    Store,
    audiences::{AudienceHistoryFilter, Candidates},
    tests::{apply, envelope, postgres, sqlite},
};
use crate::domain::{
    MembershipCause,
    audience::{Audience, AudienceDraft, AudienceState, Channel},
};

fn in_city(city: &str) -> Criterion {
    Criterion::parse(RawCriterion::Condition {
        field: "customer.city".into(),
        operator: Some(Operator::Equal),
        values: vec![Value::String(city.into())],
    })
    .unwrap()
}

fn draft(channel: Channel, criterion: Criterion) -> Audience {
    AudienceDraft {
        display_name: "Spring sale".into(),
        channel: Some(channel),
        criterion: Some(criterion),
        ..Default::default()
    }
    .into_audience(Uuid::now_v7(), Utc::now())
    .unwrap()
}

fn reason(e: ApiError) -> String {
    match e {
        ApiError::FailedPrecondition { reason, .. } => reason.to_owned(),
        ApiError::NotFound(what) => format!("NOT_FOUND {what}"),
        other => format!("unexpected: {other:?}"),
    }
}

/// A customer of `partner` in `city`; `email`/`phone` empty = none.
struct Customer<'a> {
    city: &'a str,
    email: &'a str,
    phone: &'a str,
    /// Channels of a granted marketing consent; `None` = no consent.
    consent: Option<&'a [types::CommunicationChannel]>,
    bounce: Option<(bool, i32)>,
}

const EMAIL: &[types::CommunicationChannel] = &[types::CommunicationChannel::Email];
const SMS: &[types::CommunicationChannel] = &[types::CommunicationChannel::Sms];

fn reachable(city: &str) -> Customer<'_> {
    Customer {
        city,
        email: "someone@example.com",
        phone: "",
        consent: Some(EMAIL),
        bounce: None,
    }
}

async fn add(db: &DatabaseConnection, partner: Uuid, c: Customer<'_>) -> Uuid {
    let id = Uuid::now_v7();
    let mut attributes = vec![
        ("city".to_owned(), c.city.to_owned()),
        ("first_name".to_owned(), "Jana".to_owned()),
        ("last_name".to_owned(), "Nováková".to_owned()),
        ("birth_date".to_owned(), "1990-04-01".to_owned()),
    ];
    for (k, v) in [("email", c.email), ("phone", c.phone)] {
        if !v.is_empty() {
            attributes.push((k.to_owned(), v.to_owned()));
        }
    }
    let created = ev::CustomerCreated {
        customer_id: id.to_string(),
        attributes: attributes.into_iter().collect(),
        ..Default::default()
    };
    apply(db, envelope(partner, &created)).await;
    if let Some(channels) = c.consent {
        let consent = ev::ConsentChanged {
            customer_id: id.to_string(),
            consent_type_id: Uuid::now_v7().to_string(),
            consent_type_code: "newsletter".into(),
            state: "granted".into(),
            channels: channels.iter().map(|c| *c as i32).collect(),
            purpose: "marketing".into(),
        };
        apply(db, envelope(partner, &consent)).await;
    }
    if let Some((hard, soft)) = c.bounce {
        bounce(db, partner, id, hard, soft).await;
    }
    id
}

async fn bounce(db: &DatabaseConnection, partner: Uuid, id: Uuid, hard: bool, soft: i32) {
    let e = ev::EmailBounceStateChanged {
        customer_id: id.to_string(),
        hard_bounced: hard,
        soft_bounce_count: soft,
        excluded: hard || soft >= 5,
    };
    apply(db, envelope(partner, &e)).await;
}

async fn in_txn<T>(
    db: &DatabaseConnection,
    work: impl AsyncFnOnce(&sea_orm::DatabaseTransaction) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let txn = loyalty_platform::db::begin_write(db).await.unwrap();
    let out = work(&txn).await;
    if out.is_ok() {
        txn.commit().await.unwrap();
    }
    out
}

async fn members(store: &Store, partner: Uuid, audience: Uuid) -> BTreeSet<Uuid> {
    store
        .audience_members(partner, audience, 1000, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.customer_id)
        .collect()
}

async fn published<E: DomainEvent>(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => {
                    "SELECT COUNT(*) AS n FROM outbox WHERE event_type = $1"
                }
                _ => "SELECT COUNT(*) AS n FROM outbox WHERE event_type = ?",
            },
            [E::TYPE.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// The customers of one partner in Praha, each failing at most one final check.
struct Town {
    reachable: Uuid,
    four_soft: Uuid,
    five_soft: Uuid,
    hard: Uuid,
    no_consent: Uuid,
    sms_consent_only: Uuid,
    no_email: Uuid,
    brno: Uuid,
}

async fn town(db: &DatabaseConnection, partner: Uuid) -> Town {
    Town {
        reachable: add(db, partner, reachable("Praha")).await,
        four_soft: add(
            db,
            partner,
            Customer {
                bounce: Some((false, 4)),
                ..reachable("Praha")
            },
        )
        .await,
        five_soft: add(
            db,
            partner,
            Customer {
                bounce: Some((false, 5)),
                ..reachable("Praha")
            },
        )
        .await,
        hard: add(
            db,
            partner,
            Customer {
                bounce: Some((true, 0)),
                ..reachable("Praha")
            },
        )
        .await,
        no_consent: add(
            db,
            partner,
            Customer {
                consent: None,
                ..reachable("Praha")
            },
        )
        .await,
        sms_consent_only: add(
            db,
            partner,
            Customer {
                consent: Some(SMS),
                phone: "+420777000111",
                ..reachable("Praha")
            },
        )
        .await,
        no_email: add(
            db,
            partner,
            Customer {
                email: "",
                ..reachable("Praha")
            },
        )
        .await,
        brno: add(db, partner, reachable("Brno")).await,
    }
}

async fn selection_rules(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
    let t = town(&db, partner).await;
    let stranger = add(&db, other, reachable("Praha")).await;

    let a = in_praha(&store, partner).await;
    let expected: BTreeSet<Uuid> = [t.reachable, t.four_soft].into();
    assert_eq!(members(&store, partner, a.id).await, expected);
    assert!(!members(&store, partner, a.id).await.contains(&stranger));
    assert_eq!(a.member_count, 2);
    assert_eq!(
        (
            a.exclusions.no_consent,
            a.exclusions.no_address,
            a.exclusions.hard_bounce,
            a.exclusions.soft_bounce
        ),
        (2, 1, 1, 1),
        "each excluded customer counted once; Brno is not a candidate"
    );
    let stored = store.audience(partner, a.id).await.unwrap();
    assert_eq!(stored, a, "what creation answers is what a read returns");
    assert!(
        store.audience(other, a.id).await.is_err(),
        "another partner"
    );
    assert_eq!(published::<ev::AudienceCreated>(&db).await, 1);

    // SMS: the SMS consent and a phone number count, bounces do not.
    let sms = in_txn(&db, async |txn| {
        store
            .create_audience(
                txn,
                partner,
                draft(Channel::Sms, in_city("Praha")),
                Candidates::Criterion,
            )
            .await
    })
    .await
    .unwrap();
    assert_eq!(
        members(&store, partner, sms.id).await,
        [t.sms_consent_only].into()
    );
    assert_eq!(sms.exclusions.no_consent, 6);
    let _ = (t.five_soft, t.hard, t.no_consent, t.no_email, t.brno);

    // History: one creation entry per member, with the audience's name.
    let history = store
        .audience_history(
            partner,
            AudienceHistoryFilter {
                audience_id: Some(a.id),
                ..Default::default()
            },
            100,
            None,
        )
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|h| h.entered
        && h.cause == MembershipCause::Creation
        && h.audience_display_name == "Spring sale"
        && h.at == a.created_at));
}

#[tokio::test]
async fn creation_keeps_consented_reachable_customers_without_hard_or_5_soft_bounces_on_postgres() {
    let (_db, db) = postgres().await;
    selection_rules(db).await;
}

#[tokio::test]
async fn creation_keeps_consented_reachable_customers_without_hard_or_5_soft_bounces_on_sqlite() {
    let (_dir, db) = sqlite().await;
    selection_rules(db).await;
}

async fn manual_changes_and_lock(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
    let t = town(&db, partner).await;
    let stranger = add(&db, other, reachable("Praha")).await;
    let a = in_praha(&store, partner).await;
    let add = async |customer: Uuid| {
        in_txn(&db, async |txn| {
            store
                .add_audience_member(txn, partner, a.id, customer, Utc::now())
                .await
        })
        .await
    };
    // Manual additions pass the same checks as the selection.
    assert_eq!(reason(add(t.no_consent).await.unwrap_err()), "NO_CONSENT");
    assert_eq!(reason(add(t.hard).await.unwrap_err()), "EMAIL_BOUNCED");
    assert_eq!(reason(add(t.five_soft).await.unwrap_err()), "EMAIL_BOUNCED");
    assert_eq!(reason(add(t.no_email).await.unwrap_err()), "NO_ADDRESS");
    assert_eq!(
        reason(add(stranger).await.unwrap_err()),
        "NOT_FOUND customer",
        "another partner's customer"
    );
    // The criterion is not a check: a reachable customer outside it can be added by hand.
    let added = add(t.brno).await.unwrap();
    assert_eq!((added.member_count, added.version), (3, 2));
    assert_eq!(
        add(t.brno).await.unwrap(),
        added,
        "a member stays as they were"
    );
    let remove = async |customer: Uuid| {
        in_txn(&db, async |txn| {
            store
                .remove_audience_member(txn, partner, a.id, customer, Utc::now())
                .await
        })
        .await
    };
    assert_eq!(remove(t.reachable).await.unwrap().member_count, 2);
    assert_eq!(
        reason(remove(t.reachable).await.unwrap_err()),
        "NOT_FOUND audience member"
    );
    assert_eq!(
        members(&store, partner, a.id).await,
        [t.four_soft, t.brno].into()
    );
    assert_eq!(published::<ev::AudienceMembershipChanged>(&db).await, 2);

    // History, newest first: Brno added by hand; the two selected at creation, read from
    // their member rows, the one removed since written out on leaving with the id it had.
    let page = async |limit: u64, after: Option<(chrono::DateTime<Utc>, Uuid)>| {
        let filter = AudienceHistoryFilter {
            audience_id: Some(a.id),
            ..Default::default()
        };
        store
            .audience_history(partner, filter, limit, after)
            .await
            .unwrap()
    };
    let all = page(100, None).await;
    let seen: Vec<(Uuid, bool, MembershipCause)> = all
        .iter()
        .map(|h| (h.customer_id, h.entered, h.cause))
        .collect();
    let mut created = vec![
        (t.reachable, true, MembershipCause::Creation),
        (t.four_soft, true, MembershipCause::Creation),
    ];
    created.sort_by_key(|c| std::cmp::Reverse(c.0));
    let mut expected = vec![
        (t.reachable, false, MembershipCause::Manual),
        (t.brno, true, MembershipCause::Manual),
    ];
    expected.extend(created);
    assert_eq!(seen, expected);
    let entered = all
        .iter()
        .find(|h| h.customer_id == t.reachable && h.entered);
    assert_eq!(
        entered.map(|h| h.id),
        Some(t.reachable),
        "its id before and after leaving"
    );
    // One by one through the merged pages, nothing skipped or repeated.
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let one = page(1, after).await;
        let Some(h) = one.first() else { break };
        after = Some((h.at, h.id));
        walked.push(h.clone());
    }
    assert_eq!(walked, all);

    let wrong_partner = in_txn(&db, async |txn| {
        store
            .add_audience_member(txn, other, a.id, stranger, Utc::now())
            .await
    })
    .await;
    assert_eq!(reason(wrong_partner.unwrap_err()), "NOT_FOUND audience");

    // Lock: an empty audience cannot be locked; a locked one refuses every change.
    let empty = in_txn(&db, async |txn| {
        store
            .create_audience(
                txn,
                partner,
                draft(Channel::Email, in_city("Ostrava")),
                Candidates::Criterion,
            )
            .await
    })
    .await
    .unwrap();
    let campaign = Uuid::now_v7();
    let lock = async |id: Uuid, campaign: Uuid| {
        in_txn(&db, async |txn| {
            store
                .lock_audience(txn, partner, id, campaign, Utc::now())
                .await
        })
        .await
    };
    assert_eq!(
        reason(lock(empty.id, campaign).await.unwrap_err()),
        "AUDIENCE_EMPTY"
    );
    let locked = lock(a.id, campaign).await.unwrap();
    assert_eq!(locked.state, AudienceState::Locked);
    assert_eq!(locked.campaign_id, Some(campaign));
    assert!(locked.locked_at.is_some());
    assert_eq!(store.audience(partner, a.id).await.unwrap(), locked);
    assert_eq!(
        lock(a.id, campaign).await.unwrap(),
        locked,
        "the same campaign"
    );
    assert_eq!(
        reason(lock(a.id, Uuid::now_v7()).await.unwrap_err()),
        "AUDIENCE_LOCKED"
    );
    assert_eq!(published::<ev::AudienceLocked>(&db).await, 1);
    assert_eq!(
        reason(add(t.reachable).await.unwrap_err()),
        "AUDIENCE_LOCKED"
    );
    assert_eq!(reason(remove(t.brno).await.unwrap_err()), "AUDIENCE_LOCKED");
    let renamed = in_txn(&db, async |txn| {
        store
            .update_audience(txn, partner, a.id, "", |c| Ok(c.clone()))
            .await
    })
    .await;
    assert_eq!(reason(renamed.unwrap_err()), "AUDIENCE_LOCKED");
    let deleted = in_txn(&db, async |txn| {
        store.delete_audience(txn, partner, a.id, Utc::now()).await
    })
    .await;
    assert_eq!(reason(deleted.unwrap_err()), "AUDIENCE_LOCKED");
    assert_eq!(
        members(&store, partner, a.id).await,
        [t.four_soft, t.brno].into()
    );

    // A duplicate of the locked audience is READY; the checks apply again (Brno's address
    // bounced hard since), and reselection runs the criterion again.
    bounce(&db, partner, t.brno, true, 0).await;
    let newcomer = add_customer(&db, partner).await;
    let duplicate = async |reselect: bool| {
        in_txn(&db, async |txn| {
            store
                .duplicate_audience(txn, partner, a.id, "", reselect, Utc::now())
                .await
        })
        .await
        .unwrap()
    };
    let copy = duplicate(false).await;
    assert_eq!(copy.state, AudienceState::Ready);
    assert_eq!(copy.source_audience_id, Some(a.id));
    assert_eq!(copy.display_name, "Spring sale (copy)");
    assert_eq!(
        members(&store, partner, copy.id).await,
        [t.four_soft].into()
    );
    assert_eq!(copy.exclusions.hard_bounce, 1);
    let reselected = duplicate(true).await;
    assert_eq!(
        members(&store, partner, reselected.id).await,
        [t.reachable, t.four_soft, newcomer].into()
    );

    // Deleting a READY audience keeps its history: every member left.
    in_txn(&db, async |txn| {
        store
            .delete_audience(txn, partner, copy.id, Utc::now())
            .await
    })
    .await
    .unwrap();
    assert!(store.audience(partner, copy.id).await.is_err());
    let history = store
        .audience_history(
            partner,
            AudienceHistoryFilter {
                audience_id: Some(copy.id),
                ..Default::default()
            },
            100,
            None,
        )
        .await
        .unwrap();
    let changes: Vec<(bool, MembershipCause)> =
        history.iter().map(|h| (h.entered, h.cause)).collect();
    assert_eq!(
        changes,
        [
            (false, MembershipCause::GroupDeleted),
            (true, MembershipCause::Creation)
        ]
    );
    let unknown = store
        .audience_history(
            other,
            AudienceHistoryFilter {
                audience_id: Some(copy.id),
                ..Default::default()
            },
            100,
            None,
        )
        .await;
    assert_eq!(reason(unknown.unwrap_err()), "NOT_FOUND audience");
}

async fn add_customer(db: &DatabaseConnection, partner: Uuid) -> Uuid {
    add(db, partner, reachable("Praha")).await
}

#[tokio::test]
async fn manual_changes_pass_the_checks_and_a_locked_audience_refuses_every_change_on_postgres() {
    let (_db, db) = postgres().await;
    manual_changes_and_lock(db).await;
}

#[tokio::test]
async fn manual_changes_pass_the_checks_and_a_locked_audience_refuses_every_change_on_sqlite() {
    let (_dir, db) = sqlite().await;
    manual_changes_and_lock(db).await;
}

async fn contacts_and_customer_rows(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(add(&db, partner, reachable("Praha")).await);
    }
    let create = async || in_praha(&store, partner).await;
    let (first, second) = (create().await, create().await);
    // Pages of 2 by customer id, each with the contact details.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .audience_contacts(partner, first.id, 2, after)
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.customer_id);
        seen.extend(page);
    }
    assert_eq!(
        seen.iter().map(|c| c.customer_id).collect::<Vec<_>>(),
        ids,
        "every member once, in id order"
    );
    let c = &seen[0];
    assert_eq!(
        (
            c.first_name.as_str(),
            c.last_name.as_str(),
            c.birth_date.as_str(),
            c.email.as_str(),
            c.phone.as_str()
        ),
        ("Jana", "Nováková", "1990-04-01", "someone@example.com", "")
    );
    assert_eq!(c.added_at, first.created_at);
    assert!(
        store
            .audience_contacts(Uuid::now_v7(), first.id, 2, None)
            .await
            .is_err(),
        "another partner's audience"
    );

    // Customer 360: the audiences a customer is in, newest first, in pages.
    let rows = store
        .customer_audiences(partner, ids[0], 1, None)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].audience.id, second.id);
    assert_eq!(rows[0].audience.member_count, 5);
    let rest = store
        .customer_audiences(partner, ids[0], 1, Some(second.id))
        .await
        .unwrap();
    assert_eq!(rest[0].audience.id, first.id);
    assert!(
        store
            .customer_audiences(Uuid::now_v7(), ids[0], 10, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn contacts_come_in_pages_and_a_customer_lists_their_audiences_on_postgres() {
    let (_db, db) = postgres().await;
    contacts_and_customer_rows(db).await;
}

#[tokio::test]
async fn contacts_come_in_pages_and_a_customer_lists_their_audiences_on_sqlite() {
    let (_dir, db) = sqlite().await;
    contacts_and_customer_rows(db).await;
}

/// A READY email audience of the partner's reachable customers in Praha.
async fn in_praha(store: &Store, partner: Uuid) -> Audience {
    in_txn(store.db(), async |txn| {
        store
            .create_audience(
                txn,
                partner,
                draft(Channel::Email, in_city("Praha")),
                Candidates::Criterion,
            )
            .await
    })
    .await
    .unwrap()
}

/// Locks the audience for a campaign's launch.
async fn launch(store: &Store, partner: Uuid, audience: Uuid) {
    in_txn(store.db(), async |txn| {
        store
            .lock_audience(txn, partner, audience, Uuid::now_v7(), Utc::now())
            .await
    })
    .await
    .unwrap();
}

async fn erasure(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let (jana, petr) = (
        add(&db, partner, reachable("Praha")).await,
        add(&db, partner, reachable("Praha")).await,
    );
    let create = async || in_praha(&store, partner).await;
    let (ready, launched) = (create().await, create().await);
    launch(&store, partner, launched.id).await;
    let erased = ev::CustomerErased {
        customer_id: jana.to_string(),
    };
    apply(&db, envelope(partner, &erased)).await;
    assert_eq!(members(&store, partner, ready.id).await, [petr].into());
    assert_eq!(
        store
            .audience(partner, ready.id)
            .await
            .unwrap()
            .member_count,
        1
    );
    assert_eq!(
        members(&store, partner, launched.id).await,
        [jana, petr].into(),
        "a launched campaign's audience keeps whom it addressed"
    );
    let history = store
        .audience_history(
            partner,
            AudienceHistoryFilter {
                customer_id: Some(jana),
                ..Default::default()
            },
            100,
            None,
        )
        .await
        .unwrap();
    assert!(history.is_empty(), "{history:?}");
}

/// The history of one customer in one audience, oldest first, as (entered, cause).
async fn history_in(
    store: &Store,
    partner: Uuid,
    audience: Uuid,
    customer: Uuid,
) -> Vec<(bool, MembershipCause)> {
    let filter = AudienceHistoryFilter {
        customer_id: Some(customer),
        audience_id: Some(audience),
        ..Default::default()
    };
    let mut h = store
        .audience_history(partner, filter, 100, None)
        .await
        .unwrap();
    h.reverse();
    h.into_iter().map(|e| (e.entered, e.cause)).collect()
}

/// Two duplicates are merged: Jana (reachable) takes her duplicate's place in a READY
/// audience she was not in; in one she was already in, the duplicate just leaves; Eva, without
/// consent, does not inherit her duplicate's place (the audience's final checks hold for every
/// member); a LOCKED audience keeps whom its campaign addressed.
async fn merge(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let duplicate = add(&db, partner, reachable("Praha")).await;
    let evas_duplicate = add(&db, partner, reachable("Praha")).await;
    let petr = add(&db, partner, reachable("Praha")).await;
    let create = async || in_praha(&store, partner).await;
    let (before, launched) = (create().await, create().await);
    launch(&store, partner, launched.id).await;
    let jana = add(&db, partner, reachable("Praha")).await;
    let no_consent = Customer {
        consent: None,
        ..reachable("Praha")
    };
    let eva = add(&db, partner, no_consent).await;
    let both = create().await;
    assert_eq!(
        members(&store, partner, both.id).await,
        [duplicate, evas_duplicate, petr, jana].into()
    );
    let changes_before = published::<ev::AudienceMembershipChanged>(&db).await;

    for (survivor, merged) in [(jana, duplicate), (eva, evas_duplicate), (jana, duplicate)] {
        let e = ev::CustomerMerged {
            surviving_customer_id: survivor.to_string(),
            merged_customer_id: merged.to_string(),
        };
        apply(&db, envelope(partner, &e)).await;
    }

    for ready in [&before, &both] {
        assert_eq!(
            members(&store, partner, ready.id).await,
            [petr, jana].into()
        );
        let a = store.audience(partner, ready.id).await.unwrap();
        assert_eq!(a.member_count, 2);
        assert!(a.version > ready.version);
    }
    assert_eq!(
        members(&store, partner, launched.id).await,
        [duplicate, evas_duplicate, petr].into()
    );
    assert_eq!(
        store
            .audience(partner, launched.id)
            .await
            .unwrap()
            .member_count,
        3
    );
    assert_eq!(
        history_in(&store, partner, before.id, duplicate).await,
        [
            (true, MembershipCause::Creation),
            (false, MembershipCause::CustomerRemoved)
        ]
    );
    assert_eq!(
        history_in(&store, partner, before.id, jana).await,
        [(true, MembershipCause::Recalculation)]
    );
    assert_eq!(
        history_in(&store, partner, both.id, jana).await,
        [(true, MembershipCause::Creation)],
        "already a member: nothing changes for Jana"
    );
    assert!(history_in(&store, partner, before.id, eva).await.is_empty());
    // `before`: the duplicate out, Jana in, Eva's duplicate out; `both`: two out.
    assert_eq!(
        published::<ev::AudienceMembershipChanged>(&db).await - changes_before,
        5
    );
}

#[tokio::test]
async fn a_merged_account_hands_its_ready_audience_places_to_the_survivor_on_postgres() {
    let (_db, db) = postgres().await;
    merge(db).await;
}

#[tokio::test]
async fn a_merged_account_hands_its_ready_audience_places_to_the_survivor_on_sqlite() {
    let (_dir, db) = sqlite().await;
    merge(db).await;
}

#[tokio::test]
async fn an_erased_customer_leaves_ready_audiences_and_their_history_on_postgres() {
    let (_db, db) = postgres().await;
    erasure(db).await;
}

#[tokio::test]
async fn an_erased_customer_leaves_ready_audiences_and_their_history_on_sqlite() {
    let (_dir, db) = sqlite().await;
    erasure(db).await;
}

/// An audience on purchase behaviour (a window is a join, not a condition on the row): the
/// buyers of the window, still only those reachable, and never another partner's.
async fn purchase_window_audience(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
    let buyer = add(&db, partner, reachable("Praha")).await;
    let old_buyer = add(&db, partner, reachable("Praha")).await;
    let _never_bought = add(&db, partner, reachable("Praha")).await;
    let unreachable_buyer = add(
        &db,
        partner,
        Customer {
            consent: None,
            ..reachable("Praha")
        },
    )
    .await;
    let stranger = add(&db, other, reachable("Praha")).await;
    let bought = async |partner: Uuid, customer: Uuid, days: i64| {
        apply(
            &db,
            envelope(
                partner,
                &ev::PurchaseCompleted {
                    purchase_id: Uuid::now_v7().to_string(),
                    customer_id: customer.to_string(),
                    net_amount_minor: 1_000,
                    purchase_time: Some(loyalty_platform::time::to_timestamp(
                        Utc::now() - chrono::Duration::days(days),
                    )),
                    ..Default::default()
                },
            ),
        )
        .await;
    };
    bought(partner, buyer, 3).await;
    bought(partner, old_buyer, 45).await;
    bought(partner, unreachable_buyer, 3).await;
    bought(other, stranger, 3).await;
    let criterion = Criterion::parse(RawCriterion::Condition {
        field: "purchases.last_30_days.count".into(),
        operator: Some(Operator::GreaterOrEqual),
        values: vec![Value::Int(1)],
    })
    .unwrap();
    let a = in_txn(&db, async |txn| {
        store
            .create_audience(
                txn,
                partner,
                draft(Channel::Email, criterion),
                Candidates::Criterion,
            )
            .await
    })
    .await
    .unwrap();
    assert_eq!(
        members(&store, partner, a.id).await,
        BTreeSet::from([buyer])
    );
    assert_eq!(a.member_count, 1);
}

#[tokio::test]
async fn an_audience_on_a_purchase_window_selects_the_reachable_buyers_on_postgres() {
    let (_db, db) = postgres().await;
    purchase_window_audience(db).await;
}

#[tokio::test]
async fn an_audience_on_a_purchase_window_selects_the_reachable_buyers_on_sqlite() {
    let (_dir, db) = sqlite().await;
    purchase_window_audience(db).await;
}
