//! Random sequences of operations on three customers' wallets with an advancing clock,
//! checked after every step against a simple in-memory model of lots, debt and reservations,
//! and against the trial balance.
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use loyalty_platform::ApiError;
use proptest::{
    prelude::*,
    sample::Index,
    test_runner::{Config, TestCaseError, TestRunner},
};
use uuid::Uuid;

use super::{Fixture, TypeSpec, at};
use crate::domain::{AccountKind, PostingKind};
use crate::store::{ledger::TypeRow, ops::Posted};

const CUSTOMERS: usize = 3;
const OVERDRAFT_LIMIT: i64 = 40;

#[derive(Debug, Clone)]
enum Op {
    Award {
        c: usize,
        amount: i64,
        expire_hours: Option<i64>,
        release_hours: Option<i64>,
    },
    Spend {
        c: usize,
        amount: i64,
    },
    Reserve {
        c: usize,
        amount: i64,
        ttl_minutes: i64,
    },
    /// Captures part (1..) or all (0) of a reservation.
    Capture {
        r: Index,
        part: u8,
    },
    Release {
        r: Index,
    },
    /// Reverses (part of) an award, spend, capture or adjustment; 0 = what is left.
    Reverse {
        p: Index,
        amount: i64,
    },
    Adjust {
        c: usize,
        amount: i64,
        expire_hours: Option<i64>,
    },
    Transfer {
        from: usize,
        to_offset: usize,
        amount: i64,
    },
    Block {
        c: usize,
        blocked: bool,
    },
    Expire,
}

#[derive(Debug, Clone)]
struct Step {
    advance_minutes: i64,
    op: Op,
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CUSTOMERS;
    prop_oneof![
        6 => (
            c.clone(),
            10..100i64,
            prop::option::of(1..24 * 20i64),
            prop::option::weighted(0.25, 1..24 * 4i64),
        )
            .prop_map(|(c, amount, expire_hours, release_hours)| Op::Award {
                c,
                amount,
                // An expiry always comes after the release.
                expire_hours: expire_hours.map(|e| e + release_hours.unwrap_or(0)),
                release_hours,
            }),
        4 => (c.clone(), 1..30i64).prop_map(|(c, amount)| Op::Spend { c, amount }),
        3 => (c.clone(), 1..30i64, 30..4 * 24 * 60i64)
            .prop_map(|(c, amount, ttl_minutes)| Op::Reserve { c, amount, ttl_minutes }),
        5 => (any::<Index>(), any::<u8>()).prop_map(|(r, part)| Op::Capture { r, part }),
        2 => any::<Index>().prop_map(|r| Op::Release { r }),
        4 => (any::<Index>(), prop_oneof![Just(0i64), 1..30i64])
            .prop_map(|(p, amount)| Op::Reverse { p, amount }),
        3 => (c.clone(), prop_oneof![2 => -50..0i64, 1 => 1..30i64], prop::option::of(1..24 * 10i64))
            .prop_map(|(c, amount, expire_hours)| Op::Adjust { c, amount, expire_hours }),
        2 => (c.clone(), 1..CUSTOMERS, 1..30i64)
            .prop_map(|(from, to_offset, amount)| Op::Transfer { from, to_offset, amount }),
        1 => (c, any::<bool>()).prop_map(|(c, blocked)| Op::Block { c, blocked }),
        2 => Just(Op::Expire),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        // Mostly minutes to hours, so reservations get settled in time; sometimes days.
        (prop_oneof![3 => 1..120i64, 1 => 120..2 * 24 * 60i64], op()).prop_map(
            |(advance_minutes, op)| Step {
                advance_minutes,
                op,
            },
        ),
        1..40,
    )
}

type Time = DateTime<Utc>;

#[derive(Debug, Clone)]
struct Lot {
    owner: usize,
    remaining: i64,
    release: Option<Time>,
    expire: Option<Time>,
}

impl Lot {
    fn released(&self, now: Time) -> bool {
        self.release.is_none_or(|r| r <= now)
    }

    fn expired(&self, now: Time) -> bool {
        self.expire.is_some_and(|e| e <= now)
    }

    fn spendable(&self, now: Time) -> bool {
        self.remaining > 0 && self.released(now) && !self.expired(now)
    }
}

#[derive(Debug, Clone)]
struct Reservation {
    id: Uuid,
    owner: usize,
    amount: i64,
    expire_at: Time,
    takes: Vec<(usize, i64)>,
    held: bool,
}

#[derive(Debug, Clone)]
enum Source {
    /// Credited a lot: reversals take from it first.
    Lot(usize),
    /// Debited lots: reversals give back to them, net of earlier give-backs.
    Taken(Vec<(usize, i64)>),
}

#[derive(Debug, Clone)]
struct Reversible {
    id: Uuid,
    owner: usize,
    amount: i64,
    reversed: i64,
    source: Source,
}

/// What the engine should answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Refused(&'static str),
    Invalid(&'static str),
}

fn outcome<T>(r: &Result<T, ApiError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(ApiError::FailedPrecondition { reason, .. }) => Outcome::Refused(reason),
        Err(ApiError::InvalidArgument(v)) if v.len() == 1 && v[0].field == "amount" => {
            Outcome::Invalid("amount")
        }
        Err(e) => panic!("unexpected error: {e:?}"),
    }
}

/// Lots (in creation order, so the index breaks FIFO ties like the engine's v7 ids), debts,
/// blocks, reservations and what can be reversed.
#[derive(Debug, Clone, Default)]
struct Model {
    lots: Vec<Lot>,
    debt: [i64; CUSTOMERS],
    blocked: [bool; CUSTOMERS],
    reservations: Vec<Reservation>,
    reversible: Vec<Reversible>,
}

impl Model {
    fn fifo_key(&self, i: usize) -> (bool, Option<Time>, usize) {
        (self.lots[i].expire.is_none(), self.lots[i].expire, i)
    }

    fn spendable_lots(&self, owner: usize, now: Time, except: Option<usize>) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..self.lots.len())
            .filter(|i| {
                self.lots[*i].owner == owner && self.lots[*i].spendable(now) && Some(*i) != except
            })
            .collect();
        ids.sort_by_key(|i| self.fifo_key(*i));
        ids
    }

    fn spendable(&self, owner: usize, now: Time, except: Option<usize>) -> i64 {
        self.spendable_lots(owner, now, except)
            .iter()
            .map(|i| self.lots[*i].remaining)
            .sum()
    }

    fn available(&self, owner: usize, now: Time) -> i64 {
        self.spendable(owner, now, None) - self.debt[owner]
    }

    fn pending(&self, owner: usize, now: Time) -> i64 {
        self.lots
            .iter()
            .filter(|l| l.owner == owner && !l.released(now) && !l.expired(now))
            .map(|l| l.remaining)
            .sum()
    }

    fn reserved(&self, owner: usize) -> i64 {
        self.reservations
            .iter()
            .filter(|r| r.owner == owner && r.held)
            .map(|r| r.amount)
            .sum()
    }

    /// Stored WALLET balance: every lot's remaining points (pending, or expired but not yet
    /// posted, included) less the debt.
    fn balance(&self, owner: usize) -> i64 {
        self.lots
            .iter()
            .filter(|l| l.owner == owner)
            .map(|l| l.remaining)
            .sum::<i64>()
            - self.debt[owner]
    }

    fn take_fifo(
        &mut self,
        owner: usize,
        amount: i64,
        now: Time,
        except: Option<usize>,
    ) -> Vec<(usize, i64)> {
        let mut left = amount;
        let mut takes = Vec::new();
        for i in self.spendable_lots(owner, now, except) {
            if left == 0 {
                break;
            }
            let t = self.lots[i].remaining.min(left);
            self.lots[i].remaining -= t;
            takes.push((i, t));
            left -= t;
        }
        assert_eq!(left, 0, "take_fifo is called within what the lots hold");
        takes
    }

    /// Returns up to `amount` to the owner's lots of `taken`, latest-expiring first, except
    /// what pays the owner's debt (out of the soonest-expiring ones); returns what was given
    /// (debt paid included).
    fn give_back(&mut self, owner: usize, taken: &mut [(usize, i64)], amount: i64) -> i64 {
        taken.sort_by_key(|(i, _)| self.fifo_key(*i));
        let mut left = amount;
        let mut plan = Vec::new();
        for (k, (_, t)) in taken.iter().enumerate().rev() {
            if left == 0 {
                break;
            }
            if *t <= 0 {
                continue;
            }
            let a = (*t).min(left);
            plan.push((k, a));
            left -= a;
        }
        let given = amount - left;
        let mut pay = self.debt[owner].min(given);
        self.debt[owner] -= pay;
        for (_, a) in plan.iter_mut().rev() {
            let p = (*a).min(pay);
            *a -= p;
            pay -= p;
        }
        for (k, a) in plan {
            taken[k].1 -= a;
            self.lots[taken[k].0].remaining += a;
        }
        given
    }

    /// A new lot, paying the owner's debt first; returns it and what it paid.
    fn credit_lot(
        &mut self,
        owner: usize,
        amount: i64,
        release: Option<Time>,
        expire: Option<Time>,
    ) -> (usize, i64) {
        self.lots.push(Lot {
            owner,
            remaining: amount,
            release,
            expire,
        });
        let lot = self.lots.len() - 1;
        let pay = self.debt[owner].min(amount);
        self.lots[lot].remaining -= pay;
        self.debt[owner] -= pay;
        (lot, pay)
    }

    /// What every operation on a wallet does first: lapsed reservations return, lots past
    /// their expiry lose what they hold.
    fn settle(&mut self, owner: usize, now: Time) {
        for r in 0..self.reservations.len() {
            let res = &self.reservations[r];
            if res.owner == owner && res.held && res.expire_at <= now {
                let mut takes = res.takes.clone();
                let amount = res.amount;
                self.give_back(owner, &mut takes, amount);
                self.reservations[r].held = false;
            }
        }
        for l in &mut self.lots {
            if l.owner == owner && l.remaining > 0 && l.expired(now) {
                l.remaining = 0;
            }
        }
    }

    /// A debit that may overdraw within the limit: lots first, the rest becomes debt.
    fn debit_with_overdraft(
        &mut self,
        owner: usize,
        amount: i64,
        now: Time,
    ) -> Result<Vec<(usize, i64)>, Outcome> {
        let in_lots = self.spendable(owner, now, None);
        let available = in_lots - self.debt[owner];
        if amount > available && amount - available > OVERDRAFT_LIMIT {
            return Err(Outcome::Refused("INSUFFICIENT_POINTS"));
        }
        let covered = amount.min(in_lots);
        let takes = self.take_fifo(owner, covered, now, None);
        self.debt[owner] += amount - covered;
        Ok(takes)
    }

    /// A debit that never overdraws (spend, reserve, transfer).
    fn debit(
        &mut self,
        owner: usize,
        amount: i64,
        now: Time,
    ) -> Result<Vec<(usize, i64)>, Outcome> {
        if self.blocked[owner] {
            return Err(Outcome::Refused("BLOCKED_FROM_SPENDING"));
        }
        if amount > self.available(owner, now) {
            return Err(Outcome::Refused("INSUFFICIENT_POINTS"));
        }
        Ok(self.take_fifo(owner, amount, now, None))
    }

    /// Reverses `amount` of reversible `p` (0 = what is left).
    fn reverse(&mut self, p: usize, amount: i64, now: Time) -> Result<(), Outcome> {
        let owner = self.reversible[p].owner;
        self.settle(owner, now);
        let left = self.reversible[p].amount - self.reversible[p].reversed;
        if left <= 0 {
            return Err(Outcome::Refused("NOTHING_TO_REVERSE"));
        }
        let amount = if amount == 0 { left } else { amount };
        if amount > left {
            return Err(Outcome::Invalid("amount"));
        }
        match self.reversible[p].source.clone() {
            Source::Lot(own) if self.lots[own].remaining > 0 && !self.lots[own].expired(now) => {
                let first = self.lots[own].remaining.min(amount);
                let rest = amount - first;
                let in_others = self.spendable(owner, now, Some(own));
                let covered = rest.min(in_others);
                let rest_available = in_others - self.debt[owner];
                if rest > rest_available && rest - rest_available > OVERDRAFT_LIMIT {
                    return Err(Outcome::Refused("INSUFFICIENT_POINTS"));
                }
                self.lots[own].remaining -= first;
                self.take_fifo(owner, covered, now, Some(own));
                self.debt[owner] += rest - covered;
            }
            Source::Lot(_) => {
                self.debit_with_overdraft(owner, amount, now)?;
            }
            Source::Taken(mut net) => {
                let given = self.give_back(owner, &mut net, amount);
                if amount > given {
                    let (lot, paid) = self.credit_lot(owner, amount - given, None, None);
                    if paid > 0 {
                        net.push((lot, paid));
                    }
                }
                self.reversible[p].source = Source::Taken(net);
            }
        }
        self.reversible[p].reversed += amount;
        Ok(())
    }
}

struct Case<'a> {
    f: &'a Fixture,
    ty: TypeRow,
    customers: [Uuid; CUSTOMERS],
    now: Time,
    model: Model,
}

fn posting_id(p: &Posted, kind: PostingKind) -> Uuid {
    p.postings
        .iter()
        .find(|x| x.kind == kind)
        .map(|x| x.id)
        .expect("a posting of the kind")
}

impl Case<'_> {
    fn target(&self, c: usize) -> crate::store::ops::Target {
        self.f.target(self.customers[c], &self.ty, self.now)
    }

    /// Applies one step to the engine and to a copy of the model, keeping the copy when the
    /// model expects success; fails when the engine answers otherwise than the model.
    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        let now = self.now;
        let f = self.f;
        let mut m = self.model.clone();
        let (expected, actual) = match op {
            Op::Award {
                c,
                amount,
                expire_hours,
                release_hours,
            } => {
                let expire = expire_hours.map(|h| now + Duration::hours(h));
                let release = release_hours.map(|h| now + Duration::hours(h));
                m.settle(*c, now);
                let (lot, _) = m.credit_lot(*c, *amount, release, expire);
                let r = f.award(&self.target(*c), *amount, expire, release).await;
                if let Ok(p) = &r {
                    m.reversible.push(Reversible {
                        id: posting_id(p, PostingKind::Award),
                        owner: *c,
                        amount: *amount,
                        reversed: 0,
                        source: Source::Lot(lot),
                    });
                }
                (Ok(()), outcome(&r))
            }
            Op::Spend { c, amount } => {
                m.settle(*c, now);
                let expected = m.debit(*c, *amount, now);
                let r = f.spend(&self.target(*c), *amount).await;
                if let (Ok(p), Ok(takes)) = (&r, &expected) {
                    m.reversible.push(Reversible {
                        id: posting_id(p, PostingKind::Spend),
                        owner: *c,
                        amount: *amount,
                        reversed: 0,
                        source: Source::Taken(takes.clone()),
                    });
                }
                (expected.map(|_| ()), outcome(&r))
            }
            Op::Reserve {
                c,
                amount,
                ttl_minutes,
            } => {
                m.settle(*c, now);
                let expected = m.debit(*c, *amount, now);
                let ttl = Duration::minutes(*ttl_minutes);
                let r = f.reserve(&self.target(*c), *amount, Some(ttl)).await;
                if let (Ok(held), Ok(takes)) = (&r, &expected) {
                    m.reservations.push(Reservation {
                        id: held.reservation.id,
                        owner: *c,
                        amount: *amount,
                        expire_at: now + ttl,
                        takes: takes.clone(),
                        held: true,
                    });
                }
                (expected.map(|_| ()), outcome(&r))
            }
            Op::Capture { r, .. } | Op::Release { r } if !m.reservations.is_empty() => {
                // Mostly the held ones (some past their hold); settled ones when none is.
                let held: Vec<usize> = (0..m.reservations.len())
                    .filter(|i| m.reservations[*i].held)
                    .collect();
                let i = if held.is_empty() {
                    r.index(m.reservations.len())
                } else {
                    held[r.index(held.len())]
                };
                let res = m.reservations[i].clone();
                let capture = match op {
                    Op::Capture { part, .. } if *part == 0 => Some(0),
                    Op::Capture { part, .. } => Some(1 + i64::from(*part) % res.amount),
                    _ => None,
                };
                m.settle(res.owner, now);
                let expected = if m.reservations[i].held {
                    let captured = match capture {
                        Some(0) => res.amount,
                        Some(a) => a,
                        None => 0,
                    };
                    let mut takes = res.takes.clone();
                    m.give_back(res.owner, &mut takes, res.amount - captured);
                    m.reservations[i].held = false;
                    Ok((captured, takes))
                } else {
                    Err(Outcome::Refused("RESERVATION_NOT_HELD"))
                };
                let r = f.settle(res.id, capture, now).await;
                if let (Ok(settled), Ok((captured, takes))) = (&r, &expected)
                    && *captured > 0
                {
                    m.reversible.push(Reversible {
                        id: posting_id(&settled.posted, PostingKind::Capture),
                        owner: res.owner,
                        amount: *captured,
                        reversed: 0,
                        source: Source::Taken(takes.clone()),
                    });
                }
                (expected.map(|_| ()), outcome(&r))
            }
            Op::Capture { .. } | Op::Release { .. } => return Ok(()),
            Op::Reverse { p, amount } if !m.reversible.is_empty() => {
                let i = p.index(m.reversible.len());
                let id = m.reversible[i].id;
                let expected = m.reverse(i, *amount, now);
                let r = f.reverse(id, *amount, now).await;
                (expected, outcome(&r))
            }
            Op::Reverse { .. } => return Ok(()),
            Op::Adjust {
                c,
                amount,
                expire_hours,
            } => {
                m.settle(*c, now);
                let expire = expire_hours.map(|h| now + Duration::hours(h));
                let expected = if *amount > 0 {
                    Ok(Source::Lot(m.credit_lot(*c, *amount, None, expire).0))
                } else {
                    m.debit_with_overdraft(*c, -amount, now).map(Source::Taken)
                };
                let r = f.adjust(&self.target(*c), *amount, expire).await;
                if let (Ok(p), Ok(source)) = (&r, &expected) {
                    m.reversible.push(Reversible {
                        id: posting_id(p, PostingKind::Adjustment),
                        owner: *c,
                        amount: amount.abs(),
                        reversed: 0,
                        source: source.clone(),
                    });
                }
                (expected.map(|_| ()), outcome(&r))
            }
            Op::Transfer {
                from,
                to_offset,
                amount,
            } => {
                let to = (from + to_offset) % CUSTOMERS;
                m.settle(*from, now);
                m.settle(to, now);
                let expected = m.debit(*from, *amount, now).map(|takes| {
                    for (lot, a) in takes {
                        let expire = m.lots[lot].expire;
                        m.credit_lot(to, a, None, expire);
                    }
                });
                let r = f
                    .transfer(&self.target(*from), self.customers[to], *amount)
                    .await;
                (expected, outcome(&r))
            }
            Op::Block { c, blocked } => {
                m.blocked[*c] = *blocked;
                f.block(
                    self.customers[*c],
                    None,
                    blocked.then_some("random block"),
                    now,
                )
                .await;
                (Ok(()), Outcome::Ok)
            }
            Op::Expire => {
                for c in 0..CUSTOMERS {
                    m.settle(c, now);
                }
                f.expire(now).await;
                (Ok(()), Outcome::Ok)
            }
        };
        let expected = expected.err().unwrap_or(Outcome::Ok);
        if expected != actual {
            return Err(format!(
                "expected {expected:?}, the engine answered {actual:?}"
            ));
        }
        if actual == Outcome::Ok {
            self.model = m;
        }
        Ok(())
    }

    /// The engine's figures of every wallet against the model's, and (`ledger`) the trial
    /// balance.
    async fn check(&self, ledger: bool) -> Result<(), String> {
        let mut wrong = BTreeMap::new();
        for (c, customer) in self.customers.iter().enumerate() {
            let got = self.f.figures(*customer, &self.ty, self.now).await;
            let m = &self.model;
            let want = [
                m.available(c, self.now),
                m.pending(c, self.now),
                m.reserved(c),
            ];
            if got != want {
                wrong.insert(
                    format!("customer {c} [available, pending, reserved]"),
                    (got.to_vec(), want.to_vec()),
                );
            }
            let stored = self
                .f
                .account(*customer, &self.ty, AccountKind::Wallet)
                .await
                .map(|a| [a.balance, a.debt])
                .unwrap_or([0, 0]);
            let want = [m.balance(c), m.debt[c]];
            if stored != want {
                wrong.insert(
                    format!("customer {c} [balance, debt]"),
                    (stored.to_vec(), want.to_vec()),
                );
            }
            if stored[0] < -OVERDRAFT_LIMIT {
                return Err(format!(
                    "customer {c}: balance {} below the limit",
                    stored[0]
                ));
            }
        }
        if !wrong.is_empty() {
            return Err(format!("engine vs model: {wrong:?}"));
        }
        if !ledger {
            return Ok(());
        }
        let report =
            crate::store::check::trial_balance(&self.f.db, Some(self.f.partner), None, None)
                .await
                .map_err(|e| e.to_string())?;
        if !report.balanced() {
            return Err(format!("trial balance: {:?}", report.discrepancies));
        }
        Ok(())
    }
}

async fn run_case(base: &Fixture, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let f = base.other_partner();
    let mut now = at("2026-01-01T00:00:00Z");
    let ty = f
        .points_type(
            TypeSpec {
                overdraft_limit: OVERDRAFT_LIMIT,
                ..TypeSpec::default()
            },
            now,
        )
        .await;
    let mut case = Case {
        f: &f,
        ty,
        customers: [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()],
        now,
        model: Model::default(),
    };
    for (i, step) in steps.iter().enumerate() {
        now += Duration::minutes(step.advance_minutes);
        case.now = now;
        let done = match case.apply(&step.op).await {
            Ok(()) => case.check(i + 1 == steps.len()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            return Err(TestCaseError::fail(format!(
                "step {i} ({:?}) at {now}: {e}",
                step.op
            )));
        }
    }
    Ok(())
}

fn run_model(backend: &str, cases: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base = rt.block_on(async {
        match backend {
            "postgres" => Fixture::postgres().await,
            _ => Fixture::sqlite().await,
        }
    });
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&steps(), |steps| rt.block_on(run_case(&base, steps)));
    if let Err(e) = result {
        panic!("{backend}: {e}");
    }
}

#[test]
fn random_operations_match_the_model_on_postgres() {
    run_model("postgres", 24);
}

#[test]
fn random_operations_match_the_model_on_sqlite() {
    run_model("sqlite", 8);
}
