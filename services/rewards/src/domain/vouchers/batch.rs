//! IssueVouchers: one voucher of a CAMPAIGN reward to each of up to 1,000 recipients of a
//! campaign launch or a workflow, idempotent per (reward, source, customer). What a request
//! must hold, when the reward refuses the whole call, and what each recipient gets: the
//! voucher an earlier call of the same source issued, a new one, or a refusal with its reason
//! (the per-customer and total limits of IssueVoucher, applied to the whole batch at once).
//! No I/O.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use uuid::Uuid;

use super::{CodeSpec, FastRng, Voucher, VoucherRules, VoucherSource, reason};
use crate::domain::{RewardType, Validity};

/// Recipients per call.
pub const MAX_CUSTOMERS: usize = 1000;

/// The request's fields as sent; `source` already mapped from the wire (`None` = unset or
/// unknown).
#[derive(Debug, Clone, Copy)]
pub struct BatchRequest<'a> {
    pub reward_id: &'a str,
    pub customer_ids: &'a [String],
    pub source: Option<VoucherSource>,
    pub source_id: &'a str,
    pub requested_until: Option<DateTime<Utc>>,
}

/// A checked IssueVouchers request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOrder {
    pub reward_id: Uuid,
    /// The recipients in the request's order, each once.
    pub customer_ids: Vec<Uuid>,
    /// CAMPAIGN or WORKFLOW.
    pub source: VoucherSource,
    /// The campaign or workflow execution; with the reward and a customer it names a voucher.
    pub source_id: Uuid,
    /// The latest end of validity asked for (the reward's own limits still apply).
    pub requested_until: Option<DateTime<Utc>>,
}

impl BatchOrder {
    /// Checks a request field by field (all violations at once); the order is only meaningful
    /// when `v` stayed empty.
    pub fn parse(v: &mut Violations, r: &BatchRequest<'_>, now: DateTime<Utc>) -> BatchOrder {
        let reward_id = v.uuid("reward_id", r.reward_id).unwrap_or_default();
        let customer_ids = customer_ids(v, r.customer_ids);
        let source = match r.source {
            Some(s @ (VoucherSource::Campaign | VoucherSource::Workflow)) => s,
            _ => {
                v.add("source", "must be CAMPAIGN or WORKFLOW");
                VoucherSource::Campaign
            }
        };
        let source_id = v.uuid("source_id", r.source_id).unwrap_or_default();
        if r.requested_until.is_some_and(|u| u <= now) {
            v.add("valid_until_time", "must be in the future");
        }
        BatchOrder {
            reward_id,
            customer_ids,
            source,
            source_id,
            requested_until: r.requested_until,
        }
    }

    /// The key of `customer`'s voucher of this order: the first 128 bits, as a UUID, of the
    /// SHA-256 of the string "partner/reward/source_id/customer" (UUIDs lower-case hyphenated)
    /// in its protobuf encoding (`idempotency::request_hash`). Stored with the voucher under a
    /// unique index, it is what makes the batch idempotent: never change it, or retries would
    /// no longer find the vouchers issued before.
    pub fn key(&self, partner_id: Uuid, customer: Uuid) -> Uuid {
        let named = format!(
            "{partner_id}/{}/{}/{customer}",
            self.reward_id, self.source_id
        );
        let digest = loyalty_platform::idempotency::request_hash(&named);
        Uuid::parse_str(&digest[..32]).unwrap_or_default()
    }

    /// A new voucher of this order for `customer`: ACTIVE, of the order's source.
    pub fn voucher(
        &self,
        id: Uuid,
        customer: Uuid,
        code: String,
        validity: Validity,
        now: DateTime<Utc>,
    ) -> Voucher {
        Voucher {
            customer_id: Some(customer),
            source_id: self.source_id.to_string(),
            ..Voucher::issued(id, code, self.reward_id, self.source, validity, now)
        }
    }
}

/// The recipients: 1..=1000 customer UUIDs, each once; violations name `customer_ids[i]`.
fn customer_ids(v: &mut Violations, ids: &[String]) -> Vec<Uuid> {
    if ids.is_empty() || ids.len() > MAX_CUSTOMERS {
        v.add(
            "customer_ids",
            format!("must hold 1..{MAX_CUSTOMERS} customer UUIDs"),
        );
        return Vec::new();
    }
    let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(ids.len());
    let mut out = Vec::with_capacity(ids.len());
    for (i, s) in ids.iter().enumerate() {
        let field = format!("customer_ids[{i}]");
        let Some(id) = v.uuid(&field, s) else {
            continue;
        };
        if let Some(first) = seen.get(&id) {
            v.add(field, format!("repeats customer_ids[{first}]"));
            continue;
        }
        seen.insert(id, i);
        out.push(id);
    }
    out
}

/// Whether the reward issues vouchers in batches now; the reason that refuses the whole call
/// otherwise.
pub fn check_reward(reward_type: RewardType, issuable_now: bool) -> Result<(), &'static str> {
    if reward_type != RewardType::Campaign {
        return Err(reason::REWARD_NOT_CAMPAIGN);
    }
    if !issuable_now {
        return Err(reason::REWARD_NOT_ACTIVE);
    }
    Ok(())
}

/// A requested end of validity must not pass the reward's own end; the description of the
/// `valid_until_time` violation otherwise.
pub fn check_requested_until(
    requested: Option<DateTime<Utc>>,
    reward: &Validity,
) -> Result<(), String> {
    match (requested, reward.until) {
        (Some(r), Some(end)) if r > end => Err(format!(
            "must not be after the reward's end ({})",
            end.to_rfc3339()
        )),
        _ => Ok(()),
    }
}

/// What the store read about the recipients before issuing.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    /// Each recipient's voucher of this (reward, source), issued by an earlier call.
    pub existing: HashMap<Uuid, Voucher>,
    /// Vouchers of the reward each recipient holds, of any source and state (read only when
    /// the reward limits vouchers per customer).
    pub held: HashMap<Uuid, u64>,
    /// Vouchers of the reward issued so far, by every path (for `max_total`).
    pub issued_count: i64,
}

/// What one recipient gets, decided before any code is drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allotment {
    /// The voucher an earlier call of the same source issued: answered again.
    Existing(Voucher),
    /// A new voucher.
    New,
    /// No voucher, for this reason.
    Refused(&'static str),
}

/// Decides, in the request's order, who gets which voucher. The same rules as IssueVoucher,
/// applied to the batch at once: a recipient who holds the voucher of this source gets it
/// again (whatever the limits say now); one who holds `max_per_customer` vouchers of the
/// reward is refused VOUCHER_LIMIT_REACHED; of the others, only as many as `max_total` leaves
/// get a new voucher (the first ones), the rest are refused VOUCHER_LIMIT_REACHED.
pub fn allot(customers: &[Uuid], rules: &VoucherRules, h: &Holdings) -> Vec<Allotment> {
    let per_customer = u64::try_from(rules.max_per_customer).unwrap_or(0);
    let mut left = (rules.max_total > 0).then(|| (rules.max_total - h.issued_count).max(0));
    customers
        .iter()
        .map(|c| {
            if let Some(v) = h.existing.get(c) {
                return Allotment::Existing(v.clone());
            }
            if per_customer > 0 && h.held.get(c).copied().unwrap_or(0) >= per_customer {
                return Allotment::Refused(reason::LIMIT_REACHED);
            }
            match &mut left {
                Some(0) => Allotment::Refused(reason::LIMIT_REACHED),
                Some(n) => {
                    *n -= 1;
                    Allotment::New
                }
                None => Allotment::New,
            }
        })
        .collect()
}

/// Whether the batch needs the reward's issue counters locked while it decides: only a reward
/// with a limit counts under the lock; without one, concurrent batches only meet on the unique
/// index of (reward, source, customer).
pub fn counts_under_lock(rules: &VoucherRules) -> bool {
    rules.max_total > 0 || rules.max_per_customer > 0
}

/// Draws up to `n` codes of `spec` (as IssueVoucher draws one: the reward's prefix and the
/// default alphabet), distinct from each other and from `used`, and adds them to `used`.
/// Fewer only when the code space is (nearly) exhausted.
pub fn draw_codes(
    spec: &CodeSpec,
    n: usize,
    rng: &mut FastRng,
    used: &mut HashSet<String>,
) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut buf = Vec::with_capacity(spec.code_len());
    let mut attempts = n.saturating_mul(8).saturating_add(64);
    while out.len() < n && attempts > 0 {
        attempts -= 1;
        buf.clear();
        spec.draw(rng, &mut buf);
        let code = String::from_utf8_lossy(&buf).into_owned();
        if used.insert(code.clone()) {
            out.push(code);
        }
    }
    out
}

/// One recipient's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchAnswer {
    Issued {
        voucher: Voucher,
        newly_issued: bool,
    },
    Refused(&'static str),
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::vouchers::CodeRequest;

    const STORED_KEY: &str = "e86e489f-58d7-b9f1-4785-c11ada705af3";

    fn ids(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    fn request<'a>(customers: &'a [String], source_id: &'a str) -> BatchRequest<'a> {
        BatchRequest {
            reward_id: "0190d6a0-0000-7000-8000-000000000001",
            customer_ids: customers,
            source: Some(VoucherSource::Campaign),
            source_id,
            requested_until: None,
        }
    }

    fn fields(v: Violations) -> Vec<String> {
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    fn voucher(customer: Uuid) -> Voucher {
        BatchOrder {
            reward_id: Uuid::from_u128(99),
            customer_ids: vec![customer],
            source: VoucherSource::Campaign,
            source_id: Uuid::from_u128(98),
            requested_until: None,
        }
        .voucher(
            Uuid::now_v7(),
            customer,
            "ABCDEFGHJK".into(),
            Validity::default(),
            Utc::now(),
        )
    }

    #[test]
    fn the_key_of_a_voucher_is_stable_and_tells_each_part_apart() {
        let order = BatchOrder {
            reward_id: Uuid::from_u128(2),
            customer_ids: Vec::new(),
            source: VoucherSource::Campaign,
            source_id: Uuid::from_u128(3),
            requested_until: None,
        };
        let (partner, customer) = (Uuid::from_u128(1), Uuid::from_u128(4));
        let key = order.key(partner, customer);
        // Stored: a change would make retries miss the vouchers issued before it.
        assert_eq!(key.to_string(), STORED_KEY);
        assert_ne!(key, order.key(customer, partner));
        assert_ne!(key, order.key(partner, Uuid::from_u128(5)));
        let workflow = BatchOrder {
            source: VoucherSource::Workflow,
            ..order.clone()
        };
        assert_eq!(
            workflow.key(partner, customer),
            key,
            "the source's id names it"
        );
        let other_source = BatchOrder {
            source_id: Uuid::from_u128(6),
            ..order
        };
        assert_ne!(other_source.key(partner, customer), key);
    }

    #[test]
    fn a_valid_request_keeps_the_customers_in_order() {
        let customers: Vec<String> = ids(3).iter().rev().map(Uuid::to_string).collect();
        let source = Uuid::from_u128(7).to_string();
        let mut v = Violations::new();
        let order = BatchOrder::parse(&mut v, &request(&customers, &source), Utc::now());
        assert!(v.is_empty());
        assert_eq!(
            order.customer_ids,
            ids(3).into_iter().rev().collect::<Vec<_>>()
        );
        assert_eq!(order.source_id, Uuid::from_u128(7));
    }

    #[test]
    fn bad_customers_are_named_by_index() {
        let a = Uuid::from_u128(1).to_string();
        let customers = vec![
            a.clone(),
            "nope".into(),
            String::new(),
            a.to_uppercase(),
            Uuid::from_u128(2).to_string(),
        ];
        let mut v = Violations::new();
        let order = BatchOrder::parse(&mut v, &request(&customers, "x"), Utc::now());
        assert_eq!(
            fields(v),
            [
                "customer_ids[1]",
                "customer_ids[2]",
                "customer_ids[3]",
                "source_id"
            ]
        );
        assert_eq!(order.customer_ids, ids(2));
    }

    #[test]
    fn none_or_more_than_a_thousand_customers_are_refused() {
        let many: Vec<String> = ids(1001).iter().map(Uuid::to_string).collect();
        let source = Uuid::from_u128(7).to_string();
        for customers in [Vec::new(), many] {
            let mut v = Violations::new();
            BatchOrder::parse(&mut v, &request(&customers, &source), Utc::now());
            assert_eq!(fields(v), ["customer_ids"]);
        }
        let thousand: Vec<String> = ids(1000).iter().map(Uuid::to_string).collect();
        let mut v = Violations::new();
        BatchOrder::parse(&mut v, &request(&thousand, &source), Utc::now());
        assert!(v.is_empty());
    }

    #[test]
    fn source_must_be_a_campaign_or_a_workflow_and_the_end_in_the_future() {
        let customers = vec![Uuid::from_u128(1).to_string()];
        let now = Utc::now();
        for (source, ok) in [
            (Some(VoucherSource::Campaign), true),
            (Some(VoucherSource::Workflow), true),
            (Some(VoucherSource::Manual), false),
            (Some(VoucherSource::CashDesk), false),
            (None, false),
        ] {
            let mut v = Violations::new();
            BatchOrder::parse(
                &mut v,
                &BatchRequest {
                    source,
                    ..request(&customers, &Uuid::from_u128(7).to_string())
                },
                now,
            );
            assert_eq!(v.is_empty(), ok, "{source:?}");
        }
        let mut v = Violations::new();
        BatchOrder::parse(
            &mut v,
            &BatchRequest {
                requested_until: Some(now - Duration::seconds(1)),
                ..request(&customers, "")
            },
            now,
        );
        assert_eq!(fields(v), ["source_id", "valid_until_time"]);
    }

    #[test]
    fn only_an_active_campaign_reward_issues_batches() {
        assert_eq!(check_reward(RewardType::Campaign, true), Ok(()));
        assert_eq!(
            check_reward(RewardType::Campaign, false),
            Err(reason::REWARD_NOT_ACTIVE)
        );
        for t in [
            RewardType::CashDesk,
            RewardType::Coupon,
            RewardType::Simple,
            RewardType::Gift,
        ] {
            assert_eq!(check_reward(t, true), Err(reason::REWARD_NOT_CAMPAIGN));
        }
    }

    #[test]
    fn the_requested_end_must_not_pass_the_rewards_end() {
        let end = Utc::now() + Duration::days(10);
        let reward = Validity {
            from: None,
            until: Some(end),
        };
        assert!(check_requested_until(Some(end), &reward).is_ok());
        assert!(check_requested_until(Some(end + Duration::seconds(1)), &reward).is_err());
        assert!(check_requested_until(None, &reward).is_ok());
        assert!(check_requested_until(Some(end), &Validity::default()).is_ok());
    }

    #[test]
    fn existing_vouchers_are_answered_again_before_any_limit() {
        let customers = ids(4);
        let had = voucher(customers[0]);
        let h = Holdings {
            existing: HashMap::from([(customers[0], had.clone())]),
            held: HashMap::from([(customers[0], 1), (customers[1], 1)]),
            issued_count: 9,
        };
        let rules = VoucherRules {
            max_per_customer: 1,
            max_total: 10,
            ..Default::default()
        };
        assert_eq!(
            allot(&customers, &rules, &h),
            [
                Allotment::Existing(had),
                Allotment::Refused(reason::LIMIT_REACHED),
                Allotment::New,
                Allotment::Refused(reason::LIMIT_REACHED),
            ]
        );
        assert!(counts_under_lock(&rules));
    }

    #[test]
    fn without_limits_everyone_new_gets_a_voucher() {
        let customers = ids(1000);
        let rules = VoucherRules::default();
        let got = allot(&customers, &rules, &Holdings::default());
        assert!(got.iter().all(|a| *a == Allotment::New));
        assert!(!counts_under_lock(&rules));
    }

    #[test]
    fn a_total_already_passed_refuses_every_new_recipient() {
        let rules = VoucherRules {
            max_total: 5,
            ..Default::default()
        };
        let h = Holdings {
            issued_count: 7,
            ..Default::default()
        };
        assert!(
            allot(&ids(3), &rules, &h)
                .iter()
                .all(|a| *a == Allotment::Refused(reason::LIMIT_REACHED))
        );
    }

    #[test]
    fn drawn_codes_are_distinct_and_avoid_the_used_ones() {
        let spec = CodeSpec::parse(
            &mut Violations::new(),
            &CodeRequest {
                prefix: "TEN".into(),
                ..Default::default()
            },
        )
        .expect("spec");
        let mut rng = FastRng::seeded(3);
        let mut used = HashSet::new();
        let first = draw_codes(&spec, 1000, &mut rng, &mut used);
        let second = draw_codes(&spec, 1000, &mut rng, &mut used);
        assert_eq!(first.len(), 1000);
        assert_eq!(second.len(), 1000);
        let all: HashSet<&String> = first.iter().chain(&second).collect();
        assert_eq!(all.len(), 2000);
        assert!(first.iter().all(|c| c.starts_with("TEN-") && c.len() == 14));
    }

    #[test]
    fn a_tiny_code_space_gives_fewer_codes_instead_of_looping() {
        let spec = CodeSpec::parse(
            &mut Violations::new(),
            &CodeRequest {
                prefix: "ABCDEF".into(),
                pattern: "#".into(),
                ..Default::default()
            },
        )
        .expect("spec");
        let got = draw_codes(&spec, 100, &mut FastRng::seeded(1), &mut HashSet::new());
        assert!(got.len() <= 8, "{got:?}");
    }
}
