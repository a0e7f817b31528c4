use chrono::TimeZone;

use super::*;

fn t(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap()
}

fn scheme(option: SignUpOption) -> Scheme {
    Scheme {
        id: Uuid::now_v7(),
        code: "students".into(),
        display_name: "Students".into(),
        description: String::new(),
        sign_up_option: option,
        sign_up_codes: if option == SignUpOption::Closed {
            vec!["UNI-2026".into()]
        } else {
            Vec::new()
        },
        email_domains: Vec::new(),
        sign_up_segment_ids: Vec::new(),
        max_members: 0,
        member_count: 0,
        active: true,
        revision: 1,
        created_at: t(1),
        updated_at: t(1),
    }
}

/// Someone signing up with `code` and `emails`, in no segment.
fn applicant<'a>(code: &'a str, emails: &'a [String]) -> Applicant<'a> {
    Applicant {
        code,
        emails,
        segments: &[],
    }
}

fn purchase(amount: i64) -> ActivityKind {
    ActivityKind::Purchase(Purchase {
        purchase_id: Uuid::now_v7().to_string(),
        currency_code: "EUR".into(),
        net_amount_minor: amount,
        product_codes: vec!["latte".into()],
        product_group_codes: vec!["coffee".into()],
        brand_codes: Vec::new(),
    })
}

fn at(day: u32, kind: ActivityKind) -> Activity {
    Activity {
        kind,
        at: t(day),
        business_unit_id: None,
    }
}

fn offer(group: GoalGroup, goals: Vec<Goal>, award: AwardKind) -> OfferSpec {
    OfferSpec {
        display_name: "Spend 100 EUR this month".into(),
        description: String::new(),
        state: OfferState::Active,
        scheme_id: None,
        goal_group: group,
        goals,
        award: Award {
            kind: award,
            validity_days: 0,
        },
        auto_redeem: false,
        merchant_business_unit_id: None,
        commercial_terms_id: None,
        priority: 0,
        business_unit_ids: Vec::new(),
        segment_ids: Vec::new(),
        max_awards_per_customer: 0,
        period_days: 0,
        validity: Validity::default(),
    }
}

fn spend(minimum: i64, single_purchase: bool) -> Goal {
    Goal::Purchase {
        minimum_spend_minor: minimum,
        currency_code: "EUR".into(),
        products: None,
        single_purchase,
    }
}

fn five_eur() -> AwardKind {
    AwardKind::FixedAmount {
        amount_minor: 500,
        currency_code: "EUR".into(),
    }
}

fn eur(amount_minor: i64) -> AwardValue {
    AwardValue::Money {
        amount_minor,
        currency_code: "EUR".into(),
    }
}

/// Applies activities in order; returns the final progress and the awards won.
fn run(o: &OfferSpec, activities: &[Activity]) -> (Progress, Vec<AwardValue>) {
    let mut p = Progress::default();
    let mut awards = Vec::new();
    for a in activities {
        let step = advance(o, &p, a);
        p = step.progress;
        awards.extend(step.award);
    }
    (p, awards)
}

#[test]
fn the_worked_example_awards_5_eur_on_the_visit_that_reaches_100_eur_in_the_month() {
    let mut o = offer(GoalGroup::Purchase, vec![spend(10_000, false)], five_eur());
    o.period_days = 30;
    let first = advance(&o, &Progress::default(), &at(2, purchase(4_000)));
    assert_eq!(first.progress.values, vec![4_000]);
    assert_eq!(first.progress.period_end, Some(t(2) + Duration::days(30)));
    assert!(first.award.is_none());
    let second = advance(&o, &first.progress, &at(9, purchase(3_500)));
    assert_eq!(second.progress.values, vec![7_500]);
    assert!(second.award.is_none());
    let third = advance(&o, &second.progress, &at(20, purchase(3_000)));
    assert_eq!(third.award, Some(eur(500)));
    assert_eq!(third.progress.award_count, 1);
    assert_eq!(third.progress.last_award_at, Some(t(20)));
    // The goals restart after the award.
    assert_eq!(third.progress.values, vec![0]);
    assert_eq!(third.progress.period_end, None);
}

#[test]
fn spend_from_an_expired_period_does_not_count_towards_the_next() {
    let mut o = offer(GoalGroup::Purchase, vec![spend(10_000, false)], five_eur());
    o.period_days = 7;
    let (p, awards) = run(&o, &[at(1, purchase(6_000)), at(9, purchase(6_000))]);
    assert!(awards.is_empty());
    assert_eq!(p.values, vec![6_000]);
    assert_eq!(p.period_end, Some(t(9) + Duration::days(7)));
}

#[test]
fn a_single_purchase_goal_needs_one_purchase_of_the_minimum() {
    let o = offer(GoalGroup::Purchase, vec![spend(5_000, true)], five_eur());
    let (p, awards) = run(&o, &[at(1, purchase(3_000)), at(2, purchase(3_000))]);
    assert!(awards.is_empty());
    assert_eq!(p.values, vec![3_000]);
    let (_, awards) = run(&o, &[at(1, purchase(3_000)), at(2, purchase(5_000))]);
    assert_eq!(awards, vec![eur(500)]);
}

#[test]
fn purchases_in_another_currency_or_out_of_scope_do_not_count() {
    let mut goal = spend(1_000, false);
    if let Goal::Purchase { products, .. } = &mut goal {
        *products = Some(ProductScope {
            product_group_codes: vec!["tea".into()],
            ..Default::default()
        });
    }
    let o = offer(GoalGroup::Purchase, vec![goal], five_eur());
    let step = advance(&o, &Progress::default(), &at(1, purchase(5_000)));
    assert!(!step.counted);
    let mut czk = purchase(5_000);
    if let ActivityKind::Purchase(p) = &mut czk {
        p.currency_code = "CZK".into();
        p.product_group_codes = vec!["tea".into()];
    }
    assert!(!advance(&o, &Progress::default(), &at(1, czk)).counted);
}

#[test]
fn excluded_products_do_not_match_a_scope_by_code() {
    let scope = ProductScope {
        product_codes: vec!["latte".into()],
        excluded_product_codes: vec!["latte".into()],
        ..Default::default()
    };
    let ActivityKind::Purchase(p) = purchase(100) else {
        unreachable!()
    };
    assert!(!scope.matches(&p));
}

#[test]
fn a_stamp_card_awards_on_the_nth_qualifying_purchase_and_restarts() {
    let o = offer(
        GoalGroup::Frequency,
        vec![Goal::Frequency {
            purchase_count: 3,
            minimum_purchase_spend: Some((500, "EUR".into())),
        }],
        AwardKind::Points {
            points: 50,
            points_type_id: String::new(),
        },
    );
    let activities: Vec<Activity> = [600, 100, 700, 800, 900]
        .iter()
        .enumerate()
        .map(|(i, a)| at(i as u32 + 1, purchase(*a)))
        .collect();
    let (p, awards) = run(&o, &activities);
    // 100 is below the minimum: the 3rd qualifying purchase is the 4th purchase.
    assert_eq!(
        awards,
        vec![AwardValue::Points {
            points: 50,
            points_type_id: String::new()
        }]
    );
    assert_eq!(p.values, vec![1]);
    assert_eq!(p.award_count, 1);
}

#[test]
fn every_goal_must_be_achieved() {
    let o = offer(
        GoalGroup::Event,
        vec![
            Goal::Event {
                event_type_code: "app_install".into(),
                occurrence_count: 1,
            },
            Goal::Event {
                event_type_code: "review".into(),
                occurrence_count: 2,
            },
        ],
        five_eur(),
    );
    let ev = |c: &str| ActivityKind::Event {
        event_type_code: c.into(),
    };
    let (p, awards) = run(&o, &[at(1, ev("app_install")), at(2, ev("review"))]);
    assert!(awards.is_empty());
    assert_eq!(p.values, vec![1, 1]);
    let (_, awards) = run(
        &o,
        &[
            at(1, ev("review")),
            at(2, ev("app_install")),
            at(3, ev("review")),
        ],
    );
    assert_eq!(awards.len(), 1);
}

#[test]
fn max_awards_per_customer_stops_progress() {
    let mut o = offer(GoalGroup::Purchase, vec![spend(1_000, true)], five_eur());
    o.max_awards_per_customer = 2;
    let (p, awards) = run(
        &o,
        &[
            at(1, purchase(1_000)),
            at(2, purchase(1_000)),
            at(3, purchase(1_000)),
        ],
    );
    assert_eq!(awards.len(), 2);
    assert_eq!(p.award_count, 2);
}

#[test]
fn inactive_out_of_validity_or_other_business_unit_offers_do_not_advance() {
    let mut o = offer(GoalGroup::Purchase, vec![spend(1_000, true)], five_eur());
    o.state = OfferState::Inactive;
    assert!(!advance(&o, &Progress::default(), &at(5, purchase(1_000))).counted);
    o.state = OfferState::Active;
    o.validity = Validity {
        from: Some(t(10)),
        until: Some(t(20)),
    };
    assert!(!advance(&o, &Progress::default(), &at(5, purchase(1_000))).counted);
    assert!(!advance(&o, &Progress::default(), &at(20, purchase(1_000))).counted);
    assert!(advance(&o, &Progress::default(), &at(10, purchase(1_000))).counted);
    o.validity = Validity::default();
    let shop = Uuid::now_v7();
    o.business_unit_ids = vec![shop];
    assert!(!advance(&o, &Progress::default(), &at(5, purchase(1_000))).counted);
    let mut here = at(5, purchase(1_000));
    here.business_unit_id = Some(shop);
    assert!(advance(&o, &Progress::default(), &here).counted);
}

#[test]
fn cash_back_is_a_capped_share_of_the_qualifying_spend() {
    let o = offer(
        GoalGroup::Purchase,
        vec![spend(10_000, false)],
        AwardKind::SpendShare {
            basis_points: 500,
            max_amount_minor: None,
            currency_code: None,
        },
    );
    let (_, awards) = run(&o, &[at(1, purchase(6_000)), at(2, purchase(6_050))]);
    assert_eq!(awards, vec![eur(602)]);
    let mut capped = o.clone();
    capped.award.kind = AwardKind::SpendShare {
        basis_points: 500,
        max_amount_minor: Some(300),
        currency_code: Some("EUR".into()),
    };
    let (_, awards) = run(&capped, &[at(1, purchase(6_000)), at(2, purchase(6_050))]);
    assert_eq!(awards, vec![eur(300)]);
    // No overflow on absurd spend.
    let huge = o.award.value(i64::MAX, "EUR");
    assert_eq!(huge, eur((i128::from(i64::MAX) * 500 / 10_000) as i64));
}

#[test]
fn award_validity_ends_after_its_days() {
    let a = Award {
        kind: five_eur(),
        validity_days: 30,
    };
    assert_eq!(a.expires_at(t(1)), Some(t(31)));
    let forever = Award {
        validity_days: 0,
        ..a
    };
    assert_eq!(forever.expires_at(t(1)), None);
}

#[test]
fn goals_must_match_the_goal_group() {
    let o = offer(
        GoalGroup::Frequency,
        vec![spend(1_000, false)],
        AwardKind::Points {
            points: 10,
            points_type_id: String::new(),
        },
    );
    let mut v = Violations::new();
    o.validate(&mut v, "reward_offer");
    let text = v.into_result().unwrap_err().to_string();
    assert!(text.contains("reward_offer.goals[0]"), "{text}");
    assert!(text.contains("goal_group is FREQUENCY"), "{text}");
}

#[test]
fn offer_validation_names_each_bad_field() {
    let mut o = offer(
        GoalGroup::Purchase,
        Vec::new(),
        AwardKind::SpendShare {
            basis_points: 0,
            max_amount_minor: None,
            currency_code: None,
        },
    );
    o.priority = 1001;
    o.merchant_business_unit_id = Some(Uuid::now_v7());
    let mut v = Violations::new();
    o.validate(&mut v, "reward_offer");
    let text = v.into_result().unwrap_err().to_string();
    for field in [
        "reward_offer.goals",
        "reward_offer.award.spend_basis_points",
        "reward_offer.priority",
        "reward_offer.commercial_terms_id",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
}

#[test]
fn sign_up_rules() {
    let open = scheme(SignUpOption::OptIn);
    assert_eq!(check_sign_up(&open, &applicant("", &[])), Ok(()));
    let closed = scheme(SignUpOption::Closed);
    assert_eq!(
        check_sign_up(&closed, &applicant("", &[])),
        Err(SignUpRefusal::CodeInvalid)
    );
    assert_eq!(
        check_sign_up(&closed, &applicant("nope", &[])),
        Err(SignUpRefusal::CodeInvalid)
    );
    assert_eq!(check_sign_up(&closed, &applicant("uni-2026", &[])), Ok(()));
    let mut full = scheme(SignUpOption::OptIn);
    full.max_members = 2;
    full.member_count = 2;
    assert_eq!(
        check_sign_up(&full, &applicant("", &[])),
        Err(SignUpRefusal::Full)
    );
    let mut inactive = scheme(SignUpOption::OptIn);
    inactive.active = false;
    assert_eq!(
        check_sign_up(&inactive, &applicant("", &[])),
        Err(SignUpRefusal::Inactive)
    );
    assert_eq!(SignUpRefusal::Full.reason(), "SCHEME_FULL");
}

#[test]
fn auto_schemes_enrol_everyone_until_they_leave() {
    assert!(is_member(SignUpOption::Auto, Standing::NeverJoined));
    assert!(!is_member(SignUpOption::Auto, Standing::Left));
    assert!(!is_member(SignUpOption::OptIn, Standing::NeverJoined));
    assert!(is_member(SignUpOption::Closed, Standing::Member));
}

#[test]
fn a_closed_scheme_needs_codes_and_codes_are_checked() {
    let mut s = scheme(SignUpOption::Closed);
    s.sign_up_codes = vec!["abc".into()];
    s.code = "Students!".into();
    let mut v = Violations::new();
    s.validate(&mut v, "reward_scheme");
    let text = v.into_result().unwrap_err().to_string();
    assert!(text.contains("reward_scheme.sign_up_codes[0]"), "{text}");
    assert!(text.contains("reward_scheme.code"), "{text}");
    s.sign_up_codes.clear();
    let mut v = Violations::new();
    s.validate(&mut v, "reward_scheme");
    assert!(
        v.into_result()
            .unwrap_err()
            .to_string()
            .contains("at least one sign-up code")
    );
}

#[test]
fn merchant_offers_follow_their_terms() {
    let terms = TermsSpec {
        merchant_business_unit_id: Uuid::now_v7(),
        display_name: "Cafe".into(),
        allow_merchant_offers: true,
        max_active_offers: 2,
        merchant_funding_basis_points: 10_000,
        transaction_fee_basis_points: 100,
        transaction_fee: None,
        network_spend: false,
        settlement_period_days: 30,
        validity: Validity {
            from: Some(t(1)),
            until: Some(t(28)),
        },
    };
    assert!(check_merchant_offer(&terms, t(2), 1).is_ok());
    assert_eq!(
        check_merchant_offer(&terms, t(2), 2).unwrap_err().0,
        "MERCHANT_OFFER_LIMIT_REACHED"
    );
    assert_eq!(
        check_merchant_offer(&terms, t(28), 0).unwrap_err().0,
        "MERCHANT_OFFERS_NOT_ALLOWED"
    );
    let closed = TermsSpec {
        allow_merchant_offers: false,
        ..terms.clone()
    };
    assert_eq!(
        check_merchant_offer(&closed, t(2), 0).unwrap_err().0,
        "MERCHANT_OFFERS_NOT_ALLOWED"
    );
}

#[test]
fn terms_overlap_when_their_validities_share_an_instant() {
    let terms = TermsSpec {
        merchant_business_unit_id: Uuid::now_v7(),
        display_name: "Cafe".into(),
        allow_merchant_offers: true,
        max_active_offers: 0,
        merchant_funding_basis_points: 0,
        transaction_fee_basis_points: 0,
        transaction_fee: None,
        network_spend: false,
        settlement_period_days: 30,
        validity: Validity {
            from: Some(t(10)),
            until: Some(t(20)),
        },
    };
    let w = |from, until| Validity { from, until };
    assert!(terms.overlaps(&w(Some(t(15)), None)));
    assert!(terms.overlaps(&w(Some(t(1)), Some(t(11)))));
    assert!(!terms.overlaps(&w(Some(t(20)), None)));
    assert!(!terms.overlaps(&w(Some(t(1)), Some(t(10)))));
    let open_ended = TermsSpec {
        validity: w(Some(t(10)), None),
        ..terms
    };
    assert!(open_ended.overlaps(&w(Some(t(25)), Some(t(26)))));
}

#[test]
fn a_voucher_award_wins_a_voucher_of_its_reward() {
    let reward_id = Uuid::now_v7();
    let o = offer(
        GoalGroup::Purchase,
        vec![spend(1_000, false)],
        AwardKind::Voucher { reward_id },
    );
    let mut v = Violations::new();
    o.validate(&mut v, "reward_offer");
    assert!(v.is_empty());
    let (_, awards) = run(&o, &[at(2, purchase(600)), at(3, purchase(600))]);
    assert_eq!(awards, vec![AwardValue::Voucher { reward_id }]);

    let nil = offer(
        GoalGroup::Purchase,
        vec![spend(1_000, false)],
        AwardKind::Voucher {
            reward_id: Uuid::nil(),
        },
    );
    let mut v = Violations::new();
    nil.validate(&mut v, "reward_offer");
    let fields: Vec<String> = v.into_vec().into_iter().map(|f| f.field).collect();
    assert_eq!(fields, ["reward_offer.award.reward_id"]);
}

#[test]
fn only_rewards_issued_to_a_customer_can_be_voucher_awards() {
    use crate::domain::RewardType as T;
    assert!(voucher_award_allowed(T::Campaign));
    assert!(voucher_award_allowed(T::Coupon));
    assert!(voucher_award_allowed(T::Simple));
    assert!(!voucher_award_allowed(T::CashDesk));
    assert!(!voucher_award_allowed(T::Gift));
}

#[test]
fn email_domains_match_exactly_or_as_a_parent_domain_case_insensitively() {
    let domains = vec!["uni.cz".to_owned()];
    assert!(email_in_domains("jana@uni.cz", &domains));
    assert!(email_in_domains("Jana@Mail.UNI.cz", &domains));
    assert!(email_in_domains(" jana@fel.cvut.uni.cz. ", &domains));
    assert!(!email_in_domains("jana@notuni.cz", &domains));
    assert!(!email_in_domains("jana@uni.cz.evil.com", &domains));
    assert!(!email_in_domains("uni.cz", &domains));
    assert!(!email_in_domains("@uni.cz", &domains));
    assert!(!email_in_domains("jana@uni.cz", &[]));
}

#[test]
fn a_closed_scheme_admits_a_code_or_without_one_an_email_of_its_domains() {
    let mut s = scheme(SignUpOption::Closed);
    s.sign_up_codes.clear();
    s.email_domains = vec!["uni.cz".into()];
    let mut v = Violations::new();
    s.validate(&mut v, "reward_scheme");
    assert!(v.is_empty(), "domains alone make a valid CLOSED scheme");
    let student = [
        "jana@gmail.com".to_owned(),
        "jana@students.uni.cz".to_owned(),
    ];
    let other = ["petr@gmail.com".to_owned()];
    assert!(needs_emails(&s, ""));
    assert_eq!(check_sign_up(&s, &applicant("", &student)), Ok(()));
    assert_eq!(
        check_sign_up(&s, &applicant("", &other)),
        Err(SignUpRefusal::EmailDomainNotAllowed)
    );
    assert_eq!(
        check_sign_up(&s, &applicant("", &[])),
        Err(SignUpRefusal::EmailDomainNotAllowed)
    );
    // A wrong code is refused as such, even for a student.
    assert_eq!(
        check_sign_up(&s, &applicant("nope", &student)),
        Err(SignUpRefusal::CodeInvalid)
    );
    s.sign_up_codes = vec!["UNI-2026".into()];
    assert!(!needs_emails(&s, "uni-2026"));
    assert_eq!(check_sign_up(&s, &applicant("uni-2026", &other)), Ok(()));
    // Open schemes never read emails.
    assert!(!needs_emails(&scheme(SignUpOption::OptIn), ""));
}

fn referred(purchased: bool) -> ActivityKind {
    ActivityKind::Referral {
        referred_customer_id: Uuid::now_v7(),
        purchased,
    }
}

#[test]
fn referral_goals_count_sign_ups_or_with_require_purchase_first_purchases() {
    let goal = |require_purchase| Goal::Referral {
        referral_count: 2,
        require_purchase,
    };
    let sign_ups = offer(GoalGroup::Referral, vec![goal(false)], five_eur());
    let mut v = Violations::new();
    sign_ups.validate(&mut v, "reward_offer");
    assert!(v.is_empty(), "referral goals are supported");
    let (p, awards) = run(
        &sign_ups,
        &[
            at(2, referred(false)),
            at(3, referred(true)),
            at(4, purchase(5_000)),
        ],
    );
    assert_eq!((p.values.clone(), awards.len()), (vec![1], 0));
    let (_, awards) = run(&sign_ups, &[at(2, referred(false)), at(5, referred(false))]);
    assert_eq!(awards, vec![eur(500)]);

    let buyers = offer(GoalGroup::Referral, vec![goal(true)], five_eur());
    let (p, awards) = run(
        &buyers,
        &[
            at(2, referred(false)),
            at(3, referred(true)),
            at(4, referred(false)),
        ],
    );
    assert_eq!((p.values, awards.len()), (vec![1], 0));
    let (_, awards) = run(&buyers, &[at(3, referred(true)), at(9, referred(true))]);
    assert_eq!(awards, vec![eur(500)]);
}

#[test]
fn segment_offers_admit_only_members_of_one_of_their_segments() {
    let mut o = offer(GoalGroup::Purchase, vec![spend(1_000, false)], five_eur());
    let (students, seniors, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    assert!(o.admits(None), "no segments: everyone");
    o.segment_ids = vec![students, seniors];
    assert!(o.admits(Some(&[other, seniors])));
    assert!(!o.admits(Some(&[other])));
    assert!(!o.admits(Some(&[])));
    assert!(!o.admits(None), "unknown segments never qualify");
    o.segment_ids = (0..=MAX_OFFER_SEGMENTS).map(|_| Uuid::now_v7()).collect();
    let mut v = Violations::new();
    o.validate(&mut v, "reward_offer");
    let fields: Vec<String> = v.into_vec().into_iter().map(|f| f.field).collect();
    assert_eq!(fields, ["reward_offer.segment_ids"]);
}

#[test]
fn competing_offers_resolve_by_mode_with_ties_by_priority_then_id() {
    use crate::domain::resolution::ResolutionMode as M;
    let money = |amount_minor| AwardValue::Money {
        amount_minor,
        currency_code: "EUR".into(),
    };
    let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    let (va, vb, vc) = (money(500), money(500), AwardValue::Voucher { reward_id: a });
    let achieved = [
        Achieved {
            offer_id: b,
            priority: 1,
            value: &vb,
        },
        Achieved {
            offer_id: a,
            priority: 1,
            value: &va,
        },
        Achieved {
            offer_id: c,
            priority: 9,
            value: &vc,
        },
    ];
    assert_eq!(resolve_awards(M::All, 0, &achieved), vec![c, a, b]);
    assert_eq!(resolve_awards(M::Priority, 2, &achieved), vec![c, a]);
    // Equal sizes: the higher priority, then the smaller id.
    assert_eq!(resolve_awards(M::HighestAward, 0, &achieved), vec![a]);
    // A voucher has no size known in advance: it counts as 0.
    assert_eq!(resolve_awards(M::LowestAward, 5, &achieved), vec![c]);
    assert!(resolve_awards(M::All, 3, &[]).is_empty());
}

#[test]
fn a_criteria_scheme_needs_one_to_fifty_segments_and_only_it_has_them() {
    let mut s = scheme(SignUpOption::Criteria);
    let fields = |s: &Scheme| {
        let mut v = Violations::new();
        s.validate(&mut v, "reward_scheme");
        v.into_vec()
            .into_iter()
            .map(|f| f.field)
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(&s), ["reward_scheme.sign_up_segment_ids"]);
    s.sign_up_segment_ids = (0..MAX_SIGN_UP_SEGMENTS).map(|_| Uuid::now_v7()).collect();
    assert!(fields(&s).is_empty());
    s.sign_up_segment_ids.push(Uuid::now_v7());
    assert_eq!(fields(&s), ["reward_scheme.sign_up_segment_ids"]);
    let mut open = scheme(SignUpOption::OptIn);
    open.sign_up_segment_ids = vec![Uuid::now_v7()];
    assert_eq!(fields(&open), ["reward_scheme.sign_up_segment_ids"]);
    assert_eq!(
        SignUpOption::parse_str("criteria"),
        Some(SignUpOption::Criteria)
    );
    assert_eq!(SignUpOption::Criteria.as_str(), "criteria");
}

#[test]
fn a_criteria_scheme_admits_a_member_of_one_of_its_segments_when_signing_up() {
    let (gold, silver, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut s = scheme(SignUpOption::Criteria);
    s.sign_up_segment_ids = vec![gold, silver];
    assert!(needs_segments(&s));
    let with = |s: &Scheme, segments: &[Uuid]| {
        check_sign_up(
            s,
            &Applicant {
                segments,
                ..Default::default()
            },
        )
    };
    assert_eq!(with(&s, &[other, silver]), Ok(()));
    assert_eq!(with(&s, &[gold]), Ok(()));
    assert_eq!(with(&s, &[other]), Err(SignUpRefusal::CriteriaNotMet));
    assert_eq!(with(&s, &[]), Err(SignUpRefusal::CriteriaNotMet));
    assert_eq!(
        SignUpRefusal::CriteriaNotMet.reason(),
        "SIGN_UP_CRITERIA_NOT_MET"
    );
    // A code is no way around the criteria.
    assert_eq!(
        check_sign_up(
            &s,
            &Applicant {
                code: "UNI-2026",
                ..Default::default()
            }
        ),
        Err(SignUpRefusal::CriteriaNotMet)
    );
    // The member limit still applies to members of the segments.
    s.max_members = 1;
    s.member_count = 1;
    assert_eq!(with(&s, &[gold]), Err(SignUpRefusal::Full));
    // An inactive scheme is refused without asking segmentation.
    s.active = false;
    assert!(!needs_segments(&s));
    assert_eq!(with(&s, &[gold]), Err(SignUpRefusal::Inactive));
    // Other options never ask.
    for option in [
        SignUpOption::Auto,
        SignUpOption::OptIn,
        SignUpOption::Closed,
    ] {
        assert!(!needs_segments(&scheme(option)));
    }
}
