//! Schemes, offers, terms and offer progress against PostgreSQL (a fresh database per test) and
//! SQLite, through the service's own API object where rules and transactions matter.
use chrono::Duration;
use loyalty_platform::{Role, db::begin_write, entities::outbox, events::DomainEvent};
use loyalty_proto::{
    events::v1 as ev,
    rewards::v1::{self as pb, rewards_service_server::RewardsService},
    types::v1::Money,
};
use loyalty_testkit::error_reason as reason;
use sea_orm::{EntityTrait, PaginatorTrait, QueryFilter};
use tonic::{Code, Request, Status};

use super::*;
use crate::{
    domain::schemes::{ActivityKind, Purchase},
    store::test_support::{TestApi, key, request},
};

enum Schemes {}

/// The shared fixture plus the segmentation the scheme consumer and CRITERIA sign-ups ask.
struct Fixture {
    base: TestApi<Schemes>,
    segments: std::sync::Arc<FakeSegments>,
}

impl std::ops::Deref for Fixture {
    type Target = TestApi<Schemes>;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

/// Segmentation as the consumer sees it: each customer's segments, or unreachable.
#[derive(Default)]
struct FakeSegments {
    members: std::sync::Mutex<HashMap<Uuid, Vec<Uuid>>>,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl CustomerSegments for FakeSegments {
    async fn of(&self, _: Uuid, customer: Uuid) -> Result<Option<Vec<Uuid>>, ApiError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError::Unavailable("segmentation: unreachable".into()));
        }
        let members = self.members.lock().unwrap();
        Ok(Some(members.get(&customer).cloned().unwrap_or_default()))
    }
}

impl Fixture {
    async fn postgres() -> Fixture {
        Self::asking_segments(TestApi::postgres().await)
    }

    async fn sqlite() -> Fixture {
        Self::asking_segments(TestApi::sqlite().await)
    }

    /// The fixture's API asks the fake segmentation on CRITERIA sign-ups.
    fn asking_segments(mut base: TestApi<Schemes>) -> Fixture {
        let segments = std::sync::Arc::new(FakeSegments::default());
        base.api = crate::api::RewardsApi::new(base.db.clone()).with_segments(segments.clone());
        Fixture { base, segments }
    }

    fn set_segments(&self, customer: Uuid, segments: Vec<Uuid>) {
        self.segments
            .members
            .lock()
            .unwrap()
            .insert(customer, segments);
    }

    fn segmentation_down(&self, down: bool) {
        self.segments
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// A CRITERIA scheme admitting members of `segments`.
    async fn criteria_scheme(
        &self,
        code: &str,
        segments: &[Uuid],
    ) -> Result<pb::RewardScheme, Status> {
        Ok(self
            .api
            .create_reward_scheme(self.req(pb::CreateRewardSchemeRequest {
                idempotency_key: key(),
                reward_scheme: Some(criteria(code, segments)),
            }))
            .await?
            .into_inner()
            .reward_scheme
            .expect("scheme"))
    }

    fn req<T>(&self, message: T) -> Request<T> {
        self.req_as(self.partner, message)
    }

    fn req_as<T>(&self, partner: Uuid, message: T) -> Request<T> {
        request(partner, Role::Admin, message)
    }

    async fn scheme(&self, code: &str, option: pb::SignUpOption, max: i64) -> pb::RewardScheme {
        self.api
            .create_reward_scheme(self.req(pb::CreateRewardSchemeRequest {
                idempotency_key: key(),
                reward_scheme: Some(pb::RewardScheme {
                    code: code.into(),
                    display_name: code.into(),
                    sign_up_option: option as i32,
                    sign_up_codes: if option == pb::SignUpOption::Closed {
                        vec!["UNI-2026".into()]
                    } else {
                        Vec::new()
                    },
                    max_members: max,
                    active: true,
                    ..Default::default()
                }),
            }))
            .await
            .expect("scheme")
            .into_inner()
            .reward_scheme
            .expect("scheme")
    }

    async fn sign_up(&self, scheme: &str, customer: Uuid, code: &str) -> Result<(), Status> {
        self.api
            .sign_up(self.req(pb::SignUpRequest {
                idempotency_key: key(),
                scheme_id: scheme.into(),
                customer_id: customer.to_string(),
                sign_up_code: code.into(),
            }))
            .await
            .map(|_| ())
    }

    async fn offer(&self, o: pb::RewardOffer) -> Result<pb::RewardOffer, Status> {
        Ok(self
            .api
            .create_reward_offer(self.req(pb::CreateRewardOfferRequest {
                idempotency_key: key(),
                reward_offer: Some(o),
            }))
            .await?
            .into_inner()
            .reward_offer
            .expect("offer"))
    }

    async fn apply(&self, customer: Uuid, id: &str, amount: i64) -> Vec<AwardRecord> {
        self.try_apply(customer, id, amount).await.expect("apply")
    }

    /// Applies a purchase in its own transaction, committed only when it applied.
    async fn try_apply(
        &self,
        customer: Uuid,
        id: &str,
        amount: i64,
    ) -> Result<Vec<AwardRecord>, ApiError> {
        let txn = begin_write(&self.db).await.expect("txn");
        let awards = apply_activity(
            &txn,
            self.partner,
            customer,
            id,
            &Activity {
                kind: ActivityKind::Purchase(Purchase {
                    purchase_id: id.into(),
                    currency_code: "EUR".into(),
                    net_amount_minor: amount,
                    ..Default::default()
                }),
                at: Utc::now(),
                business_unit_id: None,
            },
            Utc::now(),
            &*self.segments,
        )
        .await?;
        txn.commit().await.expect("commit");
        Ok(awards)
    }

    async fn outbox_count(&self, event_type: &str) -> u64 {
        outbox::Entity::find()
            .filter(outbox::Column::EventType.eq(event_type))
            .filter(outbox::Column::PartnerId.eq(self.partner))
            .count(&self.db)
            .await
            .expect("outbox")
    }

    async fn progress(&self, customer: Uuid) -> Vec<pb::OfferProgress> {
        self.api
            .list_offer_progress(self.req(pb::ListOfferProgressRequest {
                customer_id: customer.to_string(),
                ..Default::default()
            }))
            .await
            .expect("progress")
            .into_inner()
            .progress
    }
}

fn criteria(code: &str, segments: &[Uuid]) -> pb::RewardScheme {
    pb::RewardScheme {
        code: code.into(),
        display_name: code.into(),
        sign_up_option: pb::SignUpOption::Criteria as i32,
        sign_up_segment_ids: segments.iter().map(Uuid::to_string).collect(),
        active: true,
        ..Default::default()
    }
}

fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: "EUR".into(),
        amount_minor,
    })
}

/// Spend `minimum` EUR (accumulated) → 5 EUR.
fn spend_offer(minimum: i64, scheme_id: &str) -> pb::RewardOffer {
    pb::RewardOffer {
        display_name: "Spend and win".into(),
        scheme_id: scheme_id.into(),
        goal_group: pb::GoalGroup::Purchase as i32,
        goals: vec![pb::OfferGoal {
            kind: Some(pb::offer_goal::Kind::Purchase(pb::PurchaseGoal {
                minimum_spend: eur(minimum),
                ..Default::default()
            })),
        }],
        award: Some(pb::OfferAward {
            kind: Some(pb::offer_award::Kind::FixedAmount(Money {
                currency_code: "EUR".into(),
                amount_minor: 500,
            })),
            validity_days: 30,
            ..Default::default()
        }),
        auto_redeem: true,
        period_days: 30,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_redelivered_purchase_advances_progress_once_and_awards_once() {
    let f = Fixture::postgres().await;
    let offer = f.offer(spend_offer(10_000, "")).await.expect("offer");
    let customer = Uuid::now_v7();
    assert!(f.apply(customer, "p1", 6_000).await.is_empty());
    assert!(f.apply(customer, "p1", 6_000).await.is_empty(), "duplicate");
    let p = f.progress(customer).await;
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].goals[0].current_value, 6_000);
    assert_eq!(p[0].goals[0].target_value, 10_000);
    let awards = f.apply(customer, "p2", 4_000).await;
    assert_eq!(awards.len(), 1);
    let award = &awards[0];
    assert_eq!(award.offer_id.to_string(), offer.id);
    assert_eq!(
        award.value,
        AwardValue::Money {
            amount_minor: 500,
            currency_code: "EUR".into()
        }
    );
    assert!(award.auto_redeem);
    assert_eq!(award.purchase_id, "p2");
    assert_eq!(award.expire_at, Some(award.awarded_at + Duration::days(30)));
    assert!(f.apply(customer, "p2", 4_000).await.is_empty(), "duplicate");
    assert_eq!(
        awards_of(&f.db, f.partner, customer).await.unwrap().len(),
        1
    );
    assert_eq!(f.outbox_count(ev::OfferAwarded::TYPE).await, 1);
    let p = f.progress(customer).await;
    assert_eq!(p[0].award_count, 1);
    assert_eq!(p[0].goals[0].current_value, 0);
    // An offer that awarded cannot be deleted, only made inactive.
    let err = f
        .api
        .delete_reward_offer(f.req(pb::DeleteRewardOfferRequest {
            idempotency_key: key(),
            reward_offer_id: offer.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "OFFER_HAS_AWARDS");
}

#[tokio::test]
async fn scheme_offers_count_only_for_members() {
    let f = Fixture::postgres().await;
    let students = f.scheme("students", pb::SignUpOption::OptIn, 0).await;
    let everyone = f.scheme("everyone", pb::SignUpOption::Auto, 0).await;
    f.offer(spend_offer(1_000, &students.id))
        .await
        .expect("offer");
    f.offer(spend_offer(1_000, "everyone"))
        .await
        .expect("offer by code");
    let (member, other) = (Uuid::now_v7(), Uuid::now_v7());
    f.sign_up("students", member, "").await.expect("sign up");
    assert_eq!(f.apply(member, "m1", 1_000).await.len(), 2);
    // Not a student, but AUTO enrols everyone.
    assert_eq!(f.apply(other, "o1", 1_000).await.len(), 1);
    f.api
        .leave_scheme(f.req(pb::LeaveSchemeRequest {
            idempotency_key: key(),
            scheme_id: everyone.id.clone(),
            customer_id: other.to_string(),
        }))
        .await
        .expect("leave auto");
    assert!(f.apply(other, "o2", 1_000).await.is_empty());
    assert!(f.progress(other).await.is_empty());
    assert_eq!(f.outbox_count(ev::SchemeJoined::TYPE).await, 1);
    assert_eq!(f.outbox_count(ev::SchemeLeft::TYPE).await, 1);
}

#[tokio::test]
async fn sign_up_rules_and_member_counts() {
    let f = Fixture::postgres().await;
    f.scheme("club", pb::SignUpOption::OptIn, 1).await;
    f.scheme("uni", pb::SignUpOption::Closed, 0).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.sign_up("club", a, "").await.expect("first");
    let err = f.sign_up("club", a, "").await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = f.sign_up("club", b, "").await.unwrap_err();
    assert_eq!(reason(&err), "SCHEME_FULL");
    let err = f.sign_up("uni", b, "WRONG").await.unwrap_err();
    assert_eq!(reason(&err), "SIGN_UP_CODE_INVALID");
    f.sign_up("uni", b, "uni-2026").await.expect("with code");
    let club = f
        .api
        .get_reward_scheme(f.req(pb::GetRewardSchemeRequest {
            reward_scheme_id: "club".into(),
        }))
        .await
        .expect("get")
        .into_inner()
        .reward_scheme
        .expect("scheme");
    assert_eq!(club.member_count, 1);
    // Leaving frees the place; the past membership stays listed.
    f.api
        .leave_scheme(f.req(pb::LeaveSchemeRequest {
            idempotency_key: key(),
            scheme_id: "club".into(),
            customer_id: a.to_string(),
        }))
        .await
        .expect("leave");
    f.sign_up("club", b, "").await.expect("room again");
    let list = |include_left| {
        f.api
            .list_scheme_memberships(f.req(pb::ListSchemeMembershipsRequest {
                scheme_id: "club".into(),
                include_left,
                ..Default::default()
            }))
    };
    assert_eq!(list(false).await.unwrap().into_inner().memberships.len(), 1);
    assert_eq!(list(true).await.unwrap().into_inner().memberships.len(), 2);
    // Another partner sees none of it.
    let err = f
        .api
        .get_reward_scheme(f.req_as(
            Uuid::now_v7(),
            pb::GetRewardSchemeRequest {
                reward_scheme_id: "club".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = f
        .api
        .delete_reward_scheme(f.req(pb::DeleteRewardSchemeRequest {
            idempotency_key: key(),
            reward_scheme_id: "club".into(),
            etag: "r999".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ETAG_MISMATCH");
}

#[tokio::test]
async fn concurrent_sign_ups_never_exceed_max_members() {
    let f = std::sync::Arc::new(Fixture::postgres().await);
    f.scheme("limited", pb::SignUpOption::OptIn, 5).await;
    let mut calls = Vec::new();
    for _ in 0..20 {
        let f = f.clone();
        calls.push(tokio::spawn(async move {
            f.sign_up("limited", Uuid::now_v7(), "").await
        }));
    }
    let mut ok = 0;
    for c in calls {
        match c.await.expect("join") {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(reason(&e), "SCHEME_FULL"),
        }
    }
    assert_eq!(ok, 5);
}

#[tokio::test]
async fn merchant_offers_follow_commercial_terms() {
    let f = Fixture::postgres().await;
    let merchant = Uuid::now_v7();
    let create_terms = |from: i64, until: Option<i64>, allow: bool| {
        let now = Utc::now();
        f.api
            .create_commercial_terms(
                f.req(pb::CreateCommercialTermsRequest {
                    idempotency_key: key(),
                    commercial_terms: Some(pb::CommercialTerms {
                        merchant_business_unit_id: merchant.to_string(),
                        display_name: "Cafe Aroma".into(),
                        allow_merchant_offers: allow,
                        max_active_offers: 1,
                        merchant_funding_basis_points: 10_000,
                        settlement_period_days: 30,
                        valid_from_time: Some(loyalty_platform::time::to_timestamp(
                            now + Duration::days(from),
                        )),
                        valid_until_time: until
                            .map(|u| loyalty_platform::time::to_timestamp(now + Duration::days(u))),
                        ..Default::default()
                    }),
                }),
            )
    };
    let terms = create_terms(-1, Some(30), true)
        .await
        .expect("terms")
        .into_inner()
        .commercial_terms
        .expect("terms");
    let err = create_terms(10, None, true).await.unwrap_err();
    assert_eq!(reason(&err), "TERMS_OVERLAP");
    create_terms(30, None, false).await.expect("adjacent terms");
    let merchant_offer = || pb::RewardOffer {
        merchant_business_unit_id: merchant.to_string(),
        commercial_terms_id: terms.id.clone(),
        ..spend_offer(1_000, "")
    };
    let first = f
        .offer(merchant_offer())
        .await
        .expect("first merchant offer");
    let err = f.offer(merchant_offer()).await.unwrap_err();
    assert_eq!(reason(&err), "MERCHANT_OFFER_LIMIT_REACHED");
    // An inactive one does not count against the limit.
    f.offer(pb::RewardOffer {
        state: pb::OfferState::Inactive as i32,
        ..merchant_offer()
    })
    .await
    .expect("inactive");
    let err = f
        .api
        .delete_commercial_terms(f.req(pb::DeleteCommercialTermsRequest {
            idempotency_key: key(),
            commercial_terms_id: terms.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "TERMS_IN_USE");
    // A goal of another group than the offer's is refused, naming the goal.
    let err = f
        .offer(pb::RewardOffer {
            goal_group: pb::GoalGroup::Frequency as i32,
            ..spend_offer(1_000, "")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("reward_offer.goals[0]"),
        "{}",
        err.message()
    );
    let listed = f
        .api
        .list_reward_offers(f.req(pb::ListRewardOffersRequest {
            merchant_business_unit_id: merchant.to_string(),
            state: pb::OfferState::Active as i32,
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner()
        .reward_offers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, first.id);
}

#[tokio::test]
async fn sqlite_runs_schemes_offers_and_progress() {
    let f = Fixture::sqlite().await;
    f.scheme("club", pb::SignUpOption::OptIn, 0).await;
    f.offer(spend_offer(1_000, "club")).await.expect("offer");
    let customer = Uuid::now_v7();
    assert!(
        f.apply(customer, "p1", 1_000).await.is_empty(),
        "not a member"
    );
    f.sign_up("club", customer, "").await.expect("sign up");
    assert_eq!(f.apply(customer, "p2", 1_000).await.len(), 1);
    assert!(f.apply(customer, "p2", 1_000).await.is_empty());
    assert_eq!(f.progress(customer).await[0].award_count, 1);
}

impl Fixture {
    async fn reward(&self, partner: Uuid, t: pb::RewardType, per_customer: i32) -> String {
        self.api
            .create_reward(self.req_as(
                partner,
                pb::CreateRewardRequest {
                    idempotency_key: key(),
                    reward: Some(pb::Reward {
                        display_name: "Free coffee".into(),
                        r#type: t as i32,
                        benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                            pb::CartPercentageDiscount { basis_points: 1000 },
                        )),
                        max_vouchers_per_customer: per_customer,
                        ..Default::default()
                    }),
                },
            ))
            .await
            .expect("reward")
            .into_inner()
            .reward
            .expect("reward")
            .id
    }

    async fn vouchers_of(&self, customer: Uuid) -> Vec<pb::Voucher> {
        self.api
            .list_vouchers(self.req(pb::ListVouchersRequest {
                customer_id: customer.to_string(),
                ..Default::default()
            }))
            .await
            .expect("vouchers")
            .into_inner()
            .vouchers
    }

    async fn last_award_event(&self) -> ev::OfferAwarded {
        let row = outbox::Entity::find()
            .filter(outbox::Column::EventType.eq(ev::OfferAwarded::TYPE))
            .filter(outbox::Column::PartnerId.eq(self.partner))
            .order_by_desc(outbox::Column::Sequence)
            .one(&self.db)
            .await
            .expect("outbox")
            .expect("an OfferAwarded");
        prost::Message::decode(row.payload.as_slice()).expect("decode")
    }
}

fn voucher_offer(reward_id: &str, minimum: i64) -> pb::RewardOffer {
    pb::RewardOffer {
        award: Some(pb::OfferAward {
            kind: Some(pb::offer_award::Kind::RewardId(reward_id.into())),
            validity_days: 14,
            ..Default::default()
        }),
        auto_redeem: false,
        ..spend_offer(minimum, "")
    }
}

#[tokio::test]
async fn a_voucher_award_issues_one_voucher_of_the_reward_per_award() {
    let f = Fixture::postgres().await;
    let reward = f.reward(f.partner, pb::RewardType::Coupon, 1).await;
    let offer = f.offer(voucher_offer(&reward, 1_000)).await.expect("offer");
    let award = offer.award.as_ref().and_then(|a| a.kind.clone());
    assert_eq!(award, Some(pb::offer_award::Kind::RewardId(reward.clone())));
    let customer = Uuid::now_v7();

    let awards = f.apply(customer, "p1", 1_000).await;
    assert_eq!(awards.len(), 1);
    let voucher = awards[0].voucher.clone().expect("a voucher was issued");
    assert!(!voucher.code.is_empty());
    assert!(f.apply(customer, "p1", 1_000).await.is_empty(), "duplicate");
    let vouchers = f.vouchers_of(customer).await;
    assert_eq!(vouchers.len(), 1, "exactly one voucher");
    assert_eq!(vouchers[0].id, voucher.id.to_string());
    assert_eq!(vouchers[0].reward_id, reward);
    assert_eq!(vouchers[0].source, pb::VoucherSource::Offer as i32);
    assert_eq!(vouchers[0].source_id, awards[0].id.to_string());
    let event = f.last_award_event().await;
    assert_eq!(
        (event.voucher_id, event.voucher_code, event.reward_id),
        (voucher.id.to_string(), voucher.code.clone(), reward.clone())
    );
    assert!(event.amount.is_none() && event.points == 0);
    let stored = awards_of(&f.db, f.partner, customer).await.unwrap();
    assert_eq!(stored[0].voucher, Some(voucher));

    // The reward allows one voucher per customer: the second award is recorded with the
    // refusal (and says so), rather than retried forever or issued beyond the limit.
    let awards = f.apply(customer, "p2", 1_000).await;
    assert_eq!(awards.len(), 1);
    assert_eq!(awards[0].voucher, None);
    assert_eq!(awards[0].voucher_refusal, "VOUCHER_LIMIT_REACHED");
    assert_eq!(f.vouchers_of(customer).await.len(), 1);
    assert_eq!(
        f.last_award_event().await.voucher_refusal,
        "VOUCHER_LIMIT_REACHED"
    );
}

#[tokio::test]
async fn a_voucher_award_needs_a_reward_of_the_partner_that_can_be_issued() {
    let f = Fixture::postgres().await;
    let cash_desk = f.reward(f.partner, pb::RewardType::CashDesk, 0).await;
    let err = f.offer(voucher_offer(&cash_desk, 1_000)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        loyalty_testkit::violated_fields(&err),
        ["reward_offer.award.reward_id"]
    );
    let others = f.reward(Uuid::now_v7(), pb::RewardType::Campaign, 0).await;
    let err = f.offer(voucher_offer(&others, 1_000)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = f.offer(voucher_offer("nope", 1_000)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let simple = f.reward(f.partner, pb::RewardType::Simple, 0).await;
    f.offer(voucher_offer(&simple, 1_000))
        .await
        .expect("simple");
}

fn referral_offer(count: i32, require_purchase: bool) -> pb::RewardOffer {
    pb::RewardOffer {
        display_name: "Refer a friend".into(),
        goal_group: pb::GoalGroup::Referral as i32,
        goals: vec![pb::OfferGoal {
            kind: Some(pb::offer_goal::Kind::Referral(pb::ReferralGoal {
                referral_count: count,
                require_purchase,
            })),
        }],
        award: Some(pb::OfferAward {
            kind: Some(pb::offer_award::Kind::Points(100)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Fixture {
    async fn referral(&self, referrer: Uuid, referred: Uuid) -> Vec<AwardRecord> {
        let txn = begin_write(&self.db).await.expect("txn");
        let awards = apply_referral(
            &txn,
            self.partner,
            referrer,
            referred,
            Utc::now(),
            Utc::now(),
            &NoSegmentation,
        )
        .await
        .expect("referral");
        txn.commit().await.expect("commit");
        awards
    }

    /// A purchase of `customer` as the activity consumer applies it (offers under the
    /// activity id `purchase:<id>`, then referrals).
    async fn purchase_of(&self, customer: Uuid, id: &str) -> Vec<AwardRecord> {
        let mut awards = self.apply(customer, &format!("purchase:{id}"), 1_000).await;
        let txn = begin_write(&self.db).await.expect("txn");
        awards.extend(
            apply_first_purchase(
                &txn,
                self.partner,
                customer,
                id,
                Utc::now(),
                Utc::now(),
                &NoSegmentation,
            )
            .await
            .expect("first purchase"),
        );
        txn.commit().await.expect("commit");
        awards
    }
}

#[tokio::test]
async fn each_referred_customer_counts_once_for_the_referrer() {
    let f = Fixture::postgres().await;
    let sign_ups = f.offer(referral_offer(2, false)).await.expect("offer");
    let buyers = f.offer(referral_offer(2, true)).await.expect("offer");
    let (jana, petr, eva) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    assert!(f.referral(jana, petr).await.is_empty());
    assert!(f.referral(jana, petr).await.is_empty(), "redelivered");
    let awards = f.referral(jana, eva).await;
    assert_eq!(awards.len(), 1, "two sign-ups");
    assert_eq!(awards[0].offer_id.to_string(), sign_ups.id);
    assert_eq!(awards[0].customer_id, jana, "the referrer wins");

    // Purchases: only each referred customer's first counts, for the referrer.
    assert!(f.purchase_of(petr, "p1").await.is_empty());
    assert!(f.purchase_of(petr, "p2").await.is_empty());
    let progress = f.progress(jana).await;
    let buyers_progress = progress.iter().find(|p| p.offer_id == buyers.id).unwrap();
    assert_eq!(buyers_progress.goals[0].current_value, 1);
    assert!(f.progress(petr).await.iter().all(|p| p.award_count == 0));
    let awards = f.purchase_of(eva, "e1").await;
    assert_eq!(awards.len(), 1);
    assert_eq!(
        (awards[0].offer_id.to_string(), awards[0].customer_id),
        (buyers.id.clone(), jana)
    );
    // A customer nobody referred counts for nobody.
    assert!(f.purchase_of(Uuid::now_v7(), "x1").await.is_empty());
    assert_eq!(awards_of(&f.db, f.partner, jana).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_first_purchase_seen_before_the_referral_still_counts() {
    let f = Fixture::postgres().await;
    f.offer(referral_offer(1, true)).await.expect("offer");
    let (jana, petr) = (Uuid::now_v7(), Uuid::now_v7());
    // The checkout feed ran ahead of identity's: the purchase comes first.
    assert!(f.purchase_of(petr, "p1").await.is_empty());
    let awards = f.referral(jana, petr).await;
    assert_eq!(awards.len(), 1);
    assert_eq!(awards[0].customer_id, jana);
    assert!(f.referral(jana, petr).await.is_empty(), "redelivered");
    assert!(f.purchase_of(petr, "p2").await.is_empty());
}

#[tokio::test]
async fn segment_offers_count_only_for_members_and_wait_for_an_unreachable_segmentation() {
    let f = Fixture::postgres().await;
    let students = Uuid::now_v7();
    let offer = f
        .offer(pb::RewardOffer {
            segment_ids: vec![students.to_string()],
            ..spend_offer(1_000, "")
        })
        .await
        .expect("offer");
    assert_eq!(offer.segment_ids, [students.to_string()]);
    f.offer(spend_offer(1_000, ""))
        .await
        .expect("everyone's offer");
    let (jana, petr) = (Uuid::now_v7(), Uuid::now_v7());
    f.segments
        .members
        .lock()
        .unwrap()
        .insert(jana, vec![Uuid::now_v7(), students]);
    assert_eq!(f.apply(jana, "j1", 1_000).await.len(), 2);
    let petr_won = f.apply(petr, "p1", 1_000).await;
    assert_eq!(petr_won.len(), 1);
    assert_ne!(petr_won[0].offer_id.to_string(), offer.id);

    // Segmentation down: the activity fails (the consumer retries the event) and nothing of
    // it is kept; once segmentation answers, the retry applies it.
    f.segments
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = f.try_apply(jana, "j2", 1_000).await.unwrap_err();
    assert!(matches!(err, ApiError::Unavailable(_)), "{err:?}");
    f.segments
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(f.apply(jana, "j2", 1_000).await.len(), 2);
    assert!(f.apply(jana, "j2", 1_000).await.is_empty(), "once");

    // An invalid segment id names the field.
    let err = f
        .offer(pb::RewardOffer {
            segment_ids: vec!["nope".into()],
            ..spend_offer(1_000, "")
        })
        .await
        .unwrap_err();
    assert_eq!(
        loyalty_testkit::violated_fields(&err),
        ["reward_offer.segment_ids[0]"]
    );
}

/// One purchase of 50 EUR reaching three offers at once: 5 EUR (priority 10), 8 EUR
/// (priority 0) and 300 points (priority 5).
async fn three_competing_offers(f: &Fixture) -> [String; 3] {
    let money = |amount_minor: i64, priority: i32| pb::RewardOffer {
        display_name: format!("{amount_minor} off"),
        priority,
        award: Some(pb::OfferAward {
            kind: Some(pb::offer_award::Kind::FixedAmount(Money {
                currency_code: "EUR".into(),
                amount_minor,
            })),
            ..Default::default()
        }),
        ..spend_offer(5_000, "")
    };
    let five = f.offer(money(500, 10)).await.expect("5 EUR").id;
    let eight = f.offer(money(800, 0)).await.expect("8 EUR").id;
    let points = f
        .offer(pb::RewardOffer {
            award: Some(pb::OfferAward {
                kind: Some(pb::offer_award::Kind::Points(300)),
                ..Default::default()
            }),
            ..money(0, 5)
        })
        .await
        .expect("300 points")
        .id;
    [five, eight, points]
}

async fn set_offer_resolution(f: &Fixture, mode: pb::ResolutionMode, max: i32) {
    f.api
        .update_resolution_settings(f.req(pb::UpdateResolutionSettingsRequest {
            idempotency_key: key(),
            settings: Some(pb::ResolutionSettings {
                offer_mode: mode as i32,
                max_awards_per_event: max,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["offer_mode".into(), "max_awards_per_event".into()],
            }),
            etag: String::new(),
        }))
        .await
        .expect("settings");
}

async fn awarded_offers(f: &Fixture, purchase: &str) -> Vec<String> {
    let mut ids: Vec<String> = f
        .apply(Uuid::now_v7(), purchase, 5_000)
        .await
        .iter()
        .map(|a| a.offer_id.to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn competing_offers_award_by_the_partners_offer_resolution() {
    let f = Fixture::postgres().await;
    let [five, eight, points] = three_competing_offers(&f).await;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // Default: every offer awards.
    assert_eq!(
        awarded_offers(&f, "all").await,
        sorted(vec![five.clone(), eight.clone(), points.clone()])
    );
    // ALL capped at two: the two highest priorities.
    set_offer_resolution(&f, pb::ResolutionMode::All, 2).await;
    assert_eq!(
        awarded_offers(&f, "capped").await,
        sorted(vec![five.clone(), points.clone()])
    );
    set_offer_resolution(&f, pb::ResolutionMode::Priority, 1).await;
    assert_eq!(awarded_offers(&f, "priority").await, vec![five.clone()]);
    // By size in the award's own unit: 8.00 EUR (800) > 5.00 EUR (500) > 300 points.
    set_offer_resolution(&f, pb::ResolutionMode::HighestAward, 0).await;
    assert_eq!(awarded_offers(&f, "highest").await, vec![eight.clone()]);
    set_offer_resolution(&f, pb::ResolutionMode::LowestAward, 0).await;
    assert_eq!(awarded_offers(&f, "lowest").await, vec![points.clone()]);

    // An offer that lost keeps its progress as it was: the activity did not count for it.
    let customer = Uuid::now_v7();
    set_offer_resolution(&f, pb::ResolutionMode::Priority, 1).await;
    let won = f.apply(customer, "p1", 5_000).await;
    assert_eq!(won.len(), 1);
    let progress = f.progress(customer).await;
    let of = |id: &str| progress.iter().find(|p| p.offer_id == id);
    assert_eq!(of(&five).map(|p| p.award_count), Some(1));
    assert!(
        of(&eight).is_none_or(|p| p.award_count == 0 && p.goals[0].current_value == 0),
        "{progress:?}"
    );
}

/// A CRITERIA scheme: a member of one of its segments joins, anybody else is refused with
/// the reason, and while segmentation cannot answer nothing is written (a retry of a sign-up
/// that succeeded still answers the same).
async fn criteria_sign_up_admits_members_of_its_segments(f: Fixture) {
    let (gold, silver) = (Uuid::now_v7(), Uuid::now_v7());
    let scheme = f
        .criteria_scheme("gold_club", &[gold, silver, gold])
        .await
        .expect("scheme");
    assert_eq!(scheme.sign_up_option, pb::SignUpOption::Criteria as i32);
    assert_eq!(
        scheme.sign_up_segment_ids,
        [gold.to_string(), silver.to_string()],
        "duplicates dropped"
    );
    let (jana, petr, eva) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    f.set_segments(jana, vec![Uuid::now_v7(), silver]);
    f.set_segments(petr, vec![Uuid::now_v7()]);
    f.set_segments(eva, vec![gold]);
    let sign_up = |idempotency_key: &str, customer: Uuid| {
        f.api.sign_up(f.req(pb::SignUpRequest {
            idempotency_key: idempotency_key.into(),
            scheme_id: "gold_club".into(),
            customer_id: customer.to_string(),
            sign_up_code: String::new(),
        }))
    };
    let joined = sign_up("jana", jana)
        .await
        .expect("a member of silver joins")
        .into_inner()
        .membership
        .expect("membership");
    let err = sign_up("petr", petr).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "SIGN_UP_CRITERIA_NOT_MET");

    f.segmentation_down(true);
    let err = sign_up("eva", eva).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let again = sign_up("jana", jana)
        .await
        .expect("a retry answers the stored membership")
        .into_inner()
        .membership
        .expect("membership");
    assert_eq!(again, joined);
    f.segmentation_down(false);

    let got = f
        .api
        .get_reward_scheme(f.req(pb::GetRewardSchemeRequest {
            reward_scheme_id: scheme.id.clone(),
        }))
        .await
        .expect("get")
        .into_inner()
        .reward_scheme
        .expect("scheme");
    assert_eq!(got.member_count, 1, "neither petr nor eva was written");
    assert_eq!(got.sign_up_segment_ids, scheme.sign_up_segment_ids);
    assert_eq!(f.outbox_count(ev::SchemeJoined::TYPE).await, 1);
    sign_up("eva-again", eva)
        .await
        .expect("once segmentation answers, eva joins");
    // Leaving the segment later does not end a membership.
    f.set_segments(jana, Vec::new());
    let members = f
        .api
        .list_scheme_memberships(f.req(pb::ListSchemeMembershipsRequest {
            scheme_id: scheme.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner()
        .memberships;
    assert_eq!(members.len(), 2);
}

#[tokio::test]
async fn criteria_sign_up_admits_members_of_its_segments_on_postgres() {
    criteria_sign_up_admits_members_of_its_segments(Fixture::postgres().await).await;
}

#[tokio::test]
async fn criteria_sign_up_admits_members_of_its_segments_on_sqlite() {
    criteria_sign_up_admits_members_of_its_segments(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn criteria_sign_up_without_segmentation_is_unavailable() {
    let f = Fixture::postgres().await;
    // A service instance without a segmentation peer (the fixture's other partner).
    let other = f.another_partner();
    let created = other
        .api
        .create_reward_scheme(f.req_as(
            other.partner,
            pb::CreateRewardSchemeRequest {
                idempotency_key: key(),
                reward_scheme: Some(criteria("gold_club", &[Uuid::now_v7()])),
            },
        ))
        .await
        .expect("scheme");
    let scheme = created.into_inner().reward_scheme.expect("scheme");
    let err = other
        .api
        .sign_up(f.req_as(
            other.partner,
            pb::SignUpRequest {
                idempotency_key: key(),
                scheme_id: scheme.id.clone(),
                customer_id: Uuid::now_v7().to_string(),
                sign_up_code: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    // Another partner's scheme is not found through this partner.
    let err = f
        .api
        .sign_up(f.req(pb::SignUpRequest {
            idempotency_key: key(),
            scheme_id: scheme.id,
            customer_id: Uuid::now_v7().to_string(),
            sign_up_code: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn criteria_schemes_name_their_segments_and_update_them_by_mask() {
    let f = Fixture::postgres().await;
    let fields = |r: Result<pb::RewardScheme, Status>| {
        loyalty_testkit::violated_fields(&r.expect_err("refused"))
    };
    assert_eq!(
        fields(f.criteria_scheme("none", &[]).await),
        ["reward_scheme.sign_up_segment_ids"]
    );
    let err = f
        .api
        .create_reward_scheme(f.req(pb::CreateRewardSchemeRequest {
            idempotency_key: key(),
            reward_scheme: Some(pb::RewardScheme {
                sign_up_segment_ids: vec![Uuid::now_v7().to_string(), "gold".into()],
                ..criteria("bad", &[])
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        loyalty_testkit::violated_fields(&err),
        ["reward_scheme.sign_up_segment_ids[1]"]
    );
    let err = f
        .api
        .create_reward_scheme(f.req(pb::CreateRewardSchemeRequest {
            idempotency_key: key(),
            reward_scheme: Some(pb::RewardScheme {
                sign_up_option: pb::SignUpOption::OptIn as i32,
                ..criteria("open", &[Uuid::now_v7()])
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        loyalty_testkit::violated_fields(&err),
        ["reward_scheme.sign_up_segment_ids"]
    );

    let club = f.scheme("club", pb::SignUpOption::OptIn, 0).await;
    let gold = Uuid::now_v7();
    let update = |paths: &[&str], s: pb::RewardScheme| {
        f.api
            .update_reward_scheme(f.req(pb::UpdateRewardSchemeRequest {
                idempotency_key: key(),
                reward_scheme: Some(pb::RewardScheme {
                    id: club.id.clone(),
                    ..s
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
                etag: String::new(),
            }))
    };
    let err = update(&["sign_up_option"], criteria("club", &[gold]))
        .await
        .unwrap_err();
    assert_eq!(
        loyalty_testkit::violated_fields(&err),
        ["reward_scheme.sign_up_segment_ids"],
        "CRITERIA needs its segments in the same update"
    );
    let updated = update(
        &["sign_up_option", "sign_up_segment_ids"],
        criteria("club", &[gold]),
    )
    .await
    .expect("to CRITERIA")
    .into_inner()
    .reward_scheme
    .expect("scheme");
    assert_eq!(updated.sign_up_option, pb::SignUpOption::Criteria as i32);
    assert_eq!(updated.sign_up_segment_ids, [gold.to_string()]);
    let listed = f
        .api
        .list_reward_schemes(f.req(pb::ListRewardSchemesRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .reward_schemes;
    assert_eq!(listed[0].sign_up_segment_ids, [gold.to_string()]);
    let back = update(
        &["sign_up_option", "sign_up_segment_ids"],
        pb::RewardScheme {
            sign_up_option: pb::SignUpOption::OptIn as i32,
            ..Default::default()
        },
    )
    .await
    .expect("back to OPT_IN")
    .into_inner()
    .reward_scheme
    .expect("scheme");
    assert!(back.sign_up_segment_ids.is_empty());
}
