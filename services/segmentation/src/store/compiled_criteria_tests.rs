//! The two evaluators of one criterion agree: the statement compiled to SQL
//! ([`features::members_query`]) selects exactly the customers the in-memory evaluator admits,
//! on PostgreSQL and on SQLite, and never another partner's customer.
use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use loyalty_criteria::{Criterion, Field, Operator, RawCriterion, ValueKind};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::entities::{badge_members, customer_features, customer_purchases, segment_members};
use super::features::{self, features_from, write};
use super::groups::on_members;
use super::purchases;
use crate::domain::{
    Activity, Consent, EmailBounce, Features, GroupKind, MembershipCause, Tier,
    add_membership_facts,
};
use loyalty_criteria::purchases::Purchase;
use loyalty_criteria::sql::IdRange;

const ATTRIBUTES: &[&str] = &["city", "email"];
const PROPERTIES: &[&str] = &["tier", "visits", "vip"];
const FIELDS: &[&str] = &[
    "customer.city",
    "customer.email",
    "customer.contact_source_ids",
    "customer.interest_ids",
    "customer.properties.tier",
    "customer.properties.visits",
    "customer.properties.vip",
    "features.purchase_count",
    "features.total_spent_minor",
    "features.last_purchase_days_ago",
    "features.email_hard_bounced",
    "features.email_soft_bounce_count",
    "features.tier_id",
    "features.tier_rank",
    "consents.news",
    "consents.sms",
    "features.marketing_consent_email",
    "features.marketing_consent_sms",
    "features.data_processing_consent",
    "points.standard",
    "events.visit.count",
    "events.review.count",
    "purchases.last_3_days.count",
    "purchases.last_3_days.sum_minor",
    "purchases.last_7_days.avg_minor",
    "purchases.last_7_days.last_days_ago",
    "purchases.last_3_days.last_days_ago",
    "purchases.ever.count",
    "purchases.ever.avg_minor",
    "purchases.ever.product_ids",
    "purchases.last_3_days.product_group_ids",
    "purchases.last_7_days.brand_ids",
    "purchases.last_7_days.business_unit_ids",
    "events.visit.last_days_ago",
    "events.review.last_days_ago",
    "messages.opened.count",
    "messages.opened.last_days_ago",
    "messages.clicked.count",
    "messages.clicked.last_days_ago",
    "campaigns.0190d8a2-7c1e-7e59-9d3a-3f1c2b4a5e6f.opened",
    "campaigns.0190d8a2-7c1e-7e59-9d3a-3f1c2b4a5e6f.clicked",
    "campaigns.0190d8a2-0000-7000-8000-000000000002.opened",
    "segments.0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a01",
    "segments.0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a02",
    "badges.0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a01",
];
/// The groups of the `segments.*`/`badges.*` fields above (a badge may share a segment's id:
/// the two tables are apart).
const GROUPS: &[(GroupKind, &str)] = &[
    (GroupKind::Segment, "0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a01"),
    (GroupKind::Segment, "0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a02"),
    (GroupKind::Badge, "0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a01"),
];
/// The campaigns of the `campaigns.*` fields above.
const CAMPAIGNS: &[&str] = &[
    "0190d8a2-7c1e-7e59-9d3a-3f1c2b4a5e6f",
    "0190d8a2-0000-7000-8000-000000000002",
];
const RESPONSES: &[&str] = &["opened", "clicked"];
const CONSENT_CODES: &[&str] = &["news", "sms"];
const EVENT_CODES: &[&str] = &["visit", "review"];
/// Consent states as identity sends them, and words around them.
const STATES: &[&str] = &["granted", "GRANTED", "withdrawn", "expired", "", "true"];
const PURPOSES: &[&str] = &["marketing", "data_processing", "other", ""];
const CHANNELS: &[&str] = &["email", "sms"];
/// Few enough that conditions often hit: mixed case, Unicode (final sigma, ß, dotted İ),
/// numbers with spaces and signs, numbers beyond 64 bits, booleans, SQL wildcards, quotes.
const WORDS: &[&str] = &[
    "Praha",
    "PRAHA",
    "praha ",
    "rah",
    "ŽLUŤ",
    "žluť",
    "Straße",
    "STRASSE",
    "ΟΔΟΣ",
    "οδος",
    "İ",
    "7",
    " 7 ",
    "+7",
    "-2",
    "x7",
    "99999999999999999999",
    "-9223372036854775808",
    "TRUE",
    " false ",
    "",
    "%",
    "a'b",
];

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(WORDS).prop_map(str::to_owned)
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        12 => -2i64..9,
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, 10_000_000, -10_000_000]),
    ]
}

fn value_of(field: &Field, op: Operator) -> BoxedStrategy<loyalty_criteria::Value> {
    use loyalty_criteria::Value;
    let int = int().prop_map(Value::Int);
    let string = word().prop_map(Value::String);
    match (field.value_kind(), op) {
        (ValueKind::Int, _) => int.boxed(),
        (ValueKind::Bool, _) => any::<bool>().prop_map(Value::Bool).boxed(),
        (_, o) if o.is_ordering() => int.boxed(),
        (ValueKind::StringList, _) | (_, Operator::Contains) => string.boxed(),
        _ => prop_oneof![
            3 => string,
            2 => int,
            1 => any::<bool>().prop_map(Value::Bool)
        ]
        .boxed(),
    }
}

fn condition() -> impl Strategy<Value = RawCriterion> {
    prop::sample::select(FIELDS)
        .prop_flat_map(|path| {
            let field = Field::parse(path).unwrap();
            (Just(path), prop::sample::select(field.operators()))
        })
        .prop_flat_map(|(path, op)| {
            let field = Field::parse(path).unwrap();
            let count = match op {
                Operator::Exists => 0..1,
                Operator::In => 1..4,
                _ => 1..2,
            };
            prop::collection::vec(value_of(&field, op), count).prop_map(move |values| {
                RawCriterion::Condition {
                    field: path.into(),
                    operator: Some(op),
                    values,
                }
            })
        })
}

fn criterion() -> impl Strategy<Value = Criterion> {
    condition()
        .prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(RawCriterion::All),
                prop::collection::vec(inner.clone(), 1..4).prop_map(RawCriterion::Any),
                inner.prop_map(|c| RawCriterion::Not(Some(Box::new(c)))),
            ]
        })
        .prop_map(|raw| Criterion::parse(raw).expect("generated valid"))
}

/// A time relative to `now`: anywhere within ±9 days, or just around a whole number of days
/// before it (where `last_purchase_days_ago` changes).
#[derive(Debug, Clone, Copy)]
enum Ago {
    Seconds(i64, u32),
    DaysExactly(i64, i64),
}

fn ago() -> impl Strategy<Value = Ago> {
    prop_oneof![
        (-9 * 86_400i64..9 * 86_400, 0u32..1_000_000_000).prop_map(|(s, n)| Ago::Seconds(s, n)),
        (
            0i64..9,
            prop::sample::select(vec![-1_000, -1, 0, 0, 1, 1_000])
        )
            .prop_map(|(d, ns)| Ago::DaysExactly(d, ns)),
    ]
}

fn at(now: DateTime<Utc>, ago: Ago) -> DateTime<Utc> {
    match ago {
        Ago::Seconds(s, n) => {
            now - Duration::seconds(s) + Duration::nanoseconds(i64::from(n)) - Duration::seconds(1)
        }
        Ago::DaysExactly(d, ns) => now - Duration::days(d) + Duration::nanoseconds(ns),
    }
}

/// Amounts of purchases and returns: small, and sometimes large (sums stay within 64 bits).
fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => -2i64..9,
        1 => prop::sample::select(vec![10_000_000i64, -10_000_000, 123_456_789]),
    ]
}

/// A purchase: its time (around the windows' boundaries), net and returned amounts, and
/// ids that differ in case, repeat, are empty or Unicode.
fn purchase(now: DateTime<Utc>) -> impl Strategy<Value = Purchase> {
    let ids = || prop::collection::vec(word(), 0..3);
    (ago(), amount(), amount(), ids(), ids(), ids(), word()).prop_map(
        move |(ago, net, returned, products, groups, brands, unit)| Purchase {
            purchased_at: at(now, ago),
            net_amount_minor: net,
            returned_amount_minor: returned,
            product_ids: products,
            product_group_ids: groups,
            brand_ids: brands,
            business_unit_id: unit,
        },
    )
}

#[derive(Debug, Clone)]
struct Customer {
    attributes: Vec<Option<String>>,
    properties: Vec<Option<String>>,
    purchase_count: i64,
    total_spent_minor: i64,
    last_purchase: Option<Ago>,
    activity: Activity,
    purchases: Vec<Purchase>,
    /// When the last event of each of [`EVENT_CODES`] was tracked.
    events_last: Vec<Option<Ago>>,
    /// Message responses: (response, campaign, when, counted).
    messages: Vec<(&'static str, Option<&'static str>, Ago, bool)>,
    /// Membership of each of [`GROUPS`].
    groups: Vec<bool>,
    /// As identity sends them: any case, repeated, empty.
    contact_source_ids: Vec<String>,
    interest_ids: Vec<String>,
}

fn activity() -> impl Strategy<Value = Activity> {
    let state = (
        prop::sample::select(STATES),
        prop::sample::select(PURPOSES),
        prop::sample::subsequence(CHANNELS, 0..=CHANNELS.len()),
    )
        .prop_map(|(state, purpose, channels)| Consent {
            state: state.to_owned(),
            purpose: purpose.to_owned(),
            channels: channels.into_iter().map(str::to_owned).collect(),
        });
    (
        prop::collection::vec(prop::option::of(state), CONSENT_CODES.len()),
        prop::option::of((any::<bool>(), int())),
        prop::option::of(int()),
        prop::option::of((prop::option::of(word()), int())),
        prop::collection::vec(prop::option::of(int()), EVENT_CODES.len()),
    )
        .prop_map(|(consents, bounce, points, tier, events)| {
            let mut a = Activity::default();
            for (code, state) in CONSENT_CODES.iter().zip(consents) {
                if let Some(state) = state {
                    a.set_consent(code, state, 1);
                }
            }
            if let Some((hard_bounced, soft_bounce_count)) = bounce {
                a.set_email_bounce(
                    EmailBounce {
                        hard_bounced,
                        soft_bounce_count,
                    },
                    1,
                );
            }
            if let Some(p) = points {
                a.set_points("standard", p, 1);
            }
            if let Some((tier_id, rank)) = tier {
                let tier_id = tier_id.unwrap_or_default();
                a.set_tier(Tier { tier_id, rank }, 1);
            }
            for (code, n) in EVENT_CODES.iter().zip(events) {
                if let Some(n) = n {
                    a.events.insert((*code).to_owned(), n);
                }
            }
            a
        })
}

fn customer(now: DateTime<Utc>) -> impl Strategy<Value = Customer> {
    (
        prop::collection::vec(prop::option::of(word()), ATTRIBUTES.len()),
        prop::collection::vec(prop::option::of(word()), PROPERTIES.len()),
        int(),
        int(),
        prop::option::of(ago()),
        activity(),
        prop::collection::vec(purchase(now), 0..4),
        prop::collection::vec(prop::option::of(ago()), EVENT_CODES.len()),
        prop::collection::vec(
            (
                prop::sample::select(RESPONSES),
                prop::option::of(prop::sample::select(CAMPAIGNS)),
                ago(),
                any::<bool>(),
            ),
            0..4,
        ),
        prop::collection::vec(any::<bool>(), GROUPS.len()),
        prop::collection::vec(word(), 0..3),
        prop::collection::vec(word(), 0..3),
    )
        .prop_map(
            |(
                attributes,
                properties,
                purchase_count,
                total_spent_minor,
                last_purchase,
                activity,
                purchases,
                events_last,
                messages,
                groups,
                contact_source_ids,
                interest_ids,
            )| {
                Customer {
                    attributes,
                    properties,
                    purchase_count,
                    total_spent_minor,
                    last_purchase,
                    activity,
                    purchases,
                    events_last,
                    messages,
                    groups,
                    contact_source_ids,
                    interest_ids,
                }
            },
        )
}

fn features_of(c: &Customer, now: DateTime<Utc>) -> Features {
    let pairs = |keys: &[&str], values: &[Option<String>]| {
        keys.iter()
            .zip(values)
            .filter_map(|(k, v)| Some(((*k).to_owned(), v.clone()?)))
            .collect()
    };
    let mut f = Features {
        attributes: pairs(ATTRIBUTES, &c.attributes),
        properties: pairs(PROPERTIES, &c.properties),
        purchase_count: c.purchase_count,
        total_spent_minor: c.total_spent_minor,
        last_purchase_at: c.last_purchase.map(|a| at(now, a)),
        activity: activity_of(c, now),
        ..Features::default()
    };
    // As the projector stores them.
    f.set_lists(&c.contact_source_ids, &c.interest_ids);
    f
}

/// The generated activity with the times of tracked events and message responses, stored
/// as the projector stores them (whole microseconds).
fn activity_of(c: &Customer, now: DateTime<Utc>) -> Activity {
    let mut a = c.activity.clone();
    for (code, last) in EVENT_CODES.iter().zip(&c.events_last) {
        if let Some(last) = last {
            a.events_last_at
                .insert((*code).to_owned(), at(now, *last).trunc_subsecs(6));
        }
    }
    for (response, campaign, when, counted) in &c.messages {
        let campaign = campaign.map(|id| Uuid::parse_str(id).unwrap());
        a.record_message(response, campaign, at(now, *when), *counted);
    }
    a
}

#[derive(Debug, Clone)]
struct Case {
    criterion: Criterion,
    customers: Vec<Customer>,
    /// Nanoseconds added to a fixed `now`, so bounds fall between microseconds too.
    now_nanos: u32,
}

/// The `now` of a case.
fn now_of(now_nanos: u32) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
        .unwrap()
        .to_utc()
        + Duration::nanoseconds(i64::from(now_nanos))
}

fn case() -> impl Strategy<Value = Case> {
    (0u32..1_000_000_000)
        .prop_flat_map(|now_nanos| {
            (
                criterion(),
                prop::collection::vec(customer(now_of(now_nanos)), 0..16),
                Just(now_nanos),
            )
        })
        .prop_map(|(criterion, customers, now_nanos)| Case {
            criterion,
            customers,
            now_nanos,
        })
}

/// What the compiled statement selects for a partner.
async fn compiled(
    db: &DatabaseConnection,
    partner: Uuid,
    c: &Criterion,
    now: DateTime<Utc>,
) -> BTreeSet<Uuid> {
    compiled_in(db, partner, c, now, IdRange::default()).await
}

/// What the compiled statement selects for a partner's customers in `range`.
async fn compiled_in(
    db: &DatabaseConnection,
    partner: Uuid,
    c: &Criterion,
    now: DateTime<Utc>,
    range: IdRange,
) -> BTreeSet<Uuid> {
    let q = features::members_query_in(db.get_database_backend(), partner, c, now, range)
        .expect("compiles");
    db.query_all(q)
        .await
        .expect("the compiled statement runs")
        .iter()
        .map(|r| r.try_get::<Uuid>("", "customer_id").unwrap())
        .collect()
}

/// Every node of the tree: each is a criterion of its own, checked separately so that a
/// wrong condition cannot hide under the others.
fn subtrees(c: &Criterion) -> Vec<&Criterion> {
    let mut out = vec![c];
    match c {
        Criterion::All(cs) | Criterion::Any(cs) => cs.iter().for_each(|c| out.extend(subtrees(c))),
        Criterion::Not(c) => out.extend(subtrees(c)),
        Criterion::Condition(_) => {}
    }
    out
}

/// The features of a partner's stored customers (read back, so that the in-memory evaluator
/// sees the precision the database kept).
async fn stored(db: &DatabaseConnection, partner: Uuid) -> Vec<(Uuid, Features)> {
    customer_features::Entity::find()
        .filter(customer_features::Column::PartnerId.eq(partner))
        .all(db)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.customer_id, features_from(m)))
        .collect()
}

/// What the in-memory evaluator admits of a partner's `customers` at `now`, given each one's
/// groups, with the purchase-window facts loaded as online evaluation loads them.
async fn in_memory(
    db: &DatabaseConnection,
    partner: Uuid,
    customers: &[(Uuid, Features)],
    groups: &HashMap<Uuid, Vec<bool>>,
    c: &Criterion,
    now: DateTime<Utc>,
) -> BTreeSet<Uuid> {
    let mut out = BTreeSet::new();
    for (id, f) in customers {
        let mut facts = f.facts(now);
        facts.extend(
            purchases::facts_for(db, partner, *id, [c], now)
                .await
                .unwrap(),
        );
        let held = groups.get(id).into_iter().flatten();
        for ((kind, group), member) in GROUPS.iter().zip(held) {
            if *member {
                let group: Uuid = group.parse().unwrap();
                let (segments, badges) = match kind {
                    GroupKind::Segment => (vec![group], vec![]),
                    GroupKind::Badge => (vec![], vec![group]),
                };
                add_membership_facts(&mut facts, &segments, &badges);
            }
        }
        if c.evaluate(&facts) {
            out.insert(*id);
        }
    }
    out
}

/// Stores the customer's memberships of [`GROUPS`]; the groups it is not in get a row of
/// `stranger` (another partner) with the same customer id, which a statement not scoped by
/// partner would see.
async fn store_groups(
    txn: &impl ConnectionTrait,
    partner: Uuid,
    stranger: Uuid,
    customer: Uuid,
    member: &[bool],
) {
    for ((kind, group), member) in GROUPS.iter().zip(member) {
        let owner = if *member { partner } else { stranger };
        let group = group.parse().unwrap();
        on_members!(
            *kind,
            insert(
                txn,
                owner,
                group,
                &[customer],
                Utc::now(),
                MembershipCause::Manual
            )
        )
        .unwrap();
    }
}

async fn check(db: &DatabaseConnection, case: Case) -> Result<(), TestCaseError> {
    let now = now_of(case.now_nanos);
    let (mine, other) = (Uuid::now_v7(), Uuid::now_v7());
    let txn = loyalty_platform::db::begin_write(db).await.unwrap();
    customer_features::Entity::delete_many()
        .exec(&txn)
        .await
        .unwrap();
    customer_purchases::Entity::delete_many()
        .exec(&txn)
        .await
        .unwrap();
    segment_members::Entity::delete_many()
        .exec(&txn)
        .await
        .unwrap();
    badge_members::Entity::delete_many()
        .exec(&txn)
        .await
        .unwrap();
    // The other partner has customers with the very same features, so a leak would show.
    let mut ids = BTreeSet::new();
    let mut groups = HashMap::new();
    for c in &case.customers {
        let f = features_of(c, now);
        for (partner, stranger) in [(mine, other), (other, mine)] {
            let id = Uuid::now_v7();
            write(&txn, partner, id, false, &f).await.unwrap();
            for p in &c.purchases {
                purchases::record(&txn, partner, id, Uuid::now_v7(), p.clone())
                    .await
                    .unwrap();
            }
            store_groups(&txn, partner, stranger, id, &c.groups).await;
            groups.insert(id, c.groups.clone());
            if partner == other {
                ids.insert(id);
            }
        }
    }
    txn.commit().await.unwrap();

    let customers = stored(db, mine).await;
    for c in subtrees(&case.criterion) {
        let got = compiled(db, mine, c, now).await;
        prop_assert!(
            got.is_disjoint(&ids),
            "another partner's customer was selected"
        );
        prop_assert_eq!(
            &got,
            &in_memory(db, mine, &customers, &groups, c, now).await,
            "SQL and memory disagree for {:?}",
            c
        );
    }
    // Two slices split at a customer's id select exactly what the whole statement does.
    if let Some((pivot, _)) = customers.get(customers.len() / 2) {
        let whole = compiled(db, mine, &case.criterion, now).await;
        let below = IdRange {
            start: None,
            end: Some(*pivot),
        };
        let above = IdRange {
            start: Some(*pivot),
            end: None,
        };
        let (low, high) = (
            compiled_in(db, mine, &case.criterion, now, below).await,
            compiled_in(db, mine, &case.criterion, now, above).await,
        );
        prop_assert!(low.is_disjoint(&high));
        prop_assert!(low.iter().all(|id| id < pivot) && high.iter().all(|id| id >= pivot));
        prop_assert_eq!(&low.union(&high).copied().collect::<BTreeSet<_>>(), &whole);
    }
    let theirs = compiled(db, other, &case.criterion, now).await;
    prop_assert_eq!(
        theirs.len(),
        in_memory(db, mine, &customers, &groups, &case.criterion, now)
            .await
            .len()
    );
    prop_assert!(theirs.is_subset(&ids));
    Ok(())
}

fn run_property(db: DatabaseConnection, rt: &tokio::runtime::Runtime, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |case| rt.block_on(check(&db, case)))
        .unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn migrated(url: String) -> DatabaseConnection {
    let mut settings = loyalty_platform::Settings::defaults("segmentation", 0);
    settings.database.url = url.into();
    loyalty_platform::db::connect_and_migrate::<crate::migration::Migrator>(&settings)
        .await
        .expect("database")
}

#[test]
fn the_compiled_criterion_selects_what_memory_admits_on_postgres() {
    let rt = runtime();
    let test_db = rt.block_on(loyalty_testkit::TestDb::postgres()).unwrap();
    let db = rt.block_on(migrated(test_db.url()));
    run_property(db, &rt, 384);
}

#[test]
fn the_compiled_criterion_selects_what_memory_admits_on_sqlite() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
    let db = rt.block_on(migrated(url));
    run_property(db, &rt, 384);
}

async fn partner_isolation(db: DatabaseConnection) {
    let (mine, other) = (Uuid::now_v7(), Uuid::now_v7());
    let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
    let mut my_ids = BTreeSet::new();
    for (partner, n) in [(mine, 3), (other, 4)] {
        for _ in 0..n {
            let id = Uuid::now_v7();
            write(&txn, partner, id, false, &Features::default())
                .await
                .unwrap();
            if partner == mine {
                my_ids.insert(id);
            }
        }
    }
    txn.commit().await.unwrap();
    // Everyone fulfils it: a missing city differs from any city.
    let everyone = Criterion::parse(RawCriterion::Any(vec![
        RawCriterion::Condition {
            field: "customer.city".into(),
            operator: Some(Operator::NotEqual),
            values: vec![loyalty_criteria::Value::String("nowhere".into())],
        },
        RawCriterion::Condition {
            field: "features.purchase_count".into(),
            operator: Some(Operator::Exists),
            values: vec![],
        },
    ]))
    .unwrap();
    assert_eq!(compiled(&db, mine, &everyone, Utc::now()).await, my_ids);
}

#[tokio::test]
async fn a_criterion_everyone_fulfils_selects_only_the_partners_customers_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.unwrap();
    partner_isolation(migrated(test_db.url()).await).await;
}

#[tokio::test]
async fn a_criterion_everyone_fulfils_selects_only_the_partners_customers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    partner_isolation(migrated(format!("sqlite://{}/t.db?mode=rwc", dir.path().display())).await)
        .await;
}

/// A feature store from before the search form gets it computed by the migration.
async fn backfill(url: String) {
    use sea_orm::{Statement, Value};
    use sea_orm_migration::MigratorTrait;
    let db = sea_orm::Database::connect(url).await.unwrap();
    // The platform's common tables and m0001..m0003.
    crate::migration::Migrator::up(&db, Some(4)).await.unwrap();
    let (partner, customer) = (Uuid::now_v7(), Uuid::now_v7());
    let attributes = serde_json::json!({"city": "PRAHA"});
    let properties = serde_json::json!({"visits": " 7 "});
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => {
            "INSERT INTO customer_features (partner_id, customer_id, attributes, properties, \
             purchase_count, total_spent_minor, updated_at) VALUES ($1, $2, $3, $4, 0, 0, $5)"
        }
        _ => {
            "INSERT INTO customer_features (partner_id, customer_id, attributes, properties, \
             purchase_count, total_spent_minor, updated_at) VALUES (?, ?, ?, ?, 0, 0, ?)"
        }
    };
    db.execute(Statement::from_sql_and_values(
        backend,
        sql,
        [
            partner.into(),
            customer.into(),
            Value::Json(Some(Box::new(attributes.clone()))),
            Value::Json(Some(Box::new(properties.clone()))),
            Utc::now().into(),
        ],
    ))
    .await
    .unwrap();
    crate::migration::Migrator::up(&db, None).await.unwrap();
    let row = customer_features::Entity::find_by_id((partner, customer))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let expected = Features {
        attributes: serde_json::from_value(attributes).unwrap(),
        properties: serde_json::from_value(properties).unwrap(),
        ..Default::default()
    };
    assert_eq!(row.criteria_facts, expected.search_facts());
    assert_eq!(row.criteria_facts["customer.properties.visits"]["i"], 7);
}

#[tokio::test]
async fn the_migration_computes_the_search_form_of_existing_customers_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.unwrap();
    backfill(test_db.url()).await;
}

#[tokio::test]
async fn the_migration_computes_the_search_form_of_existing_customers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    backfill(format!("sqlite://{}/t.db?mode=rwc", dir.path().display())).await;
}
