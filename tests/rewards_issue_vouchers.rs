//! IssueVouchers through gRPC, the services running as processes on PostgreSQL: a campaign
//! reward issues one voucher to each of three customers registered in identity, called the way
//! the campaigns service calls it (the platform key acting for the partner); asking again
//! answers the same vouchers; the vouchers are found, listed and redeemed like any other; a
//! reward that is not a campaign reward, bad input and another partner's reward are refused.
use loyalty_platform::client::for_partner;
use loyalty_proto::{identity::v1 as identity, rewards::v1 as pb};
use loyalty_testkit::{Backend, Suite, authed, create_customer, error_reason, violated_fields};
use tonic::{Code, Status};
use uuid::Uuid;

fn fails<T: std::fmt::Debug>(r: Result<T, Status>) -> Status {
    r.expect_err("the call should have been refused")
}

fn reward(name: &str, kind: pb::RewardType) -> pb::CreateRewardRequest {
    pb::CreateRewardRequest {
        idempotency_key: format!("reward-{name}"),
        reward: Some(pb::Reward {
            display_name: name.into(),
            r#type: kind as i32,
            benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                pb::CartPercentageDiscount { basis_points: 1000 },
            )),
            voucher_validity_days: 30,
            voucher_code_prefix: "SPRING".into(),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_issues_one_voucher_per_recipient_once() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (partner, admin) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let partner = Uuid::parse_str(&partner)?;
    let mut identity = suite.identity().await?;
    let mut customers = Vec::new();
    for name in ["Jana", "Petr", "Eva"] {
        customers.push(create_customer(&mut identity, &admin, name, "Brno").await?);
    }
    let mut r = suite.rewards().await?;
    let spring = r
        .create_reward(authed(
            reward("Spring campaign", pb::RewardType::Campaign),
            &admin,
        ))
        .await?
        .into_inner()
        .reward
        .expect("reward")
        .id;
    let campaign = Uuid::now_v7().to_string();
    let issue = |reward_id: &str| pb::IssueVouchersRequest {
        reward_id: reward_id.into(),
        customer_ids: customers.clone(),
        source: pb::VoucherSource::Campaign as i32,
        source_id: campaign.clone(),
        valid_until_time: None,
    };

    // As the campaigns service calls it: the platform key acting for the partner.
    let issued = r
        .issue_vouchers(for_partner(issue(&spring), suite.admin_key(), partner))
        .await?
        .into_inner()
        .vouchers;
    assert_eq!(issued.len(), 3);
    for (a, customer) in issued.iter().zip(&customers) {
        assert_eq!(&a.customer_id, customer);
        assert!(a.newly_issued, "{a:?}");
        assert_eq!(a.refusal_reason, "");
        assert!(a.code.starts_with("SPRING-"), "{}", a.code);
        assert!(a.valid_until_time.is_some());
    }
    // A sender that crashed asks again: the same vouchers, nothing new.
    let again = r
        .issue_vouchers(for_partner(issue(&spring), suite.admin_key(), partner))
        .await?
        .into_inner()
        .vouchers;
    for (a, b) in again.iter().zip(&issued) {
        assert_eq!((&a.voucher_id, &a.code), (&b.voucher_id, &b.code));
        assert!(!a.newly_issued);
    }
    // The partner's own keys may issue too (the same roles as IssueVoucher).
    let by_admin = r
        .issue_vouchers(authed(issue(&spring), &admin))
        .await?
        .into_inner()
        .vouchers;
    assert_eq!(by_admin[1].voucher_id, issued[1].voucher_id);

    // Ordinary vouchers: found by code, listed for the customer, redeemed once.
    let jana = r
        .get_voucher(authed(
            pb::GetVoucherRequest {
                code: issued[0].code.to_lowercase(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(jana.id, issued[0].voucher_id);
    assert_eq!(jana.customer_id, customers[0]);
    assert_eq!(jana.source, pb::VoucherSource::Campaign as i32);
    assert_eq!(jana.source_id, campaign);
    assert_eq!(jana.reward_display_name, "Spring campaign");
    assert_eq!(jana.state, pb::VoucherState::Active as i32);
    let listed = r
        .list_vouchers(authed(
            pb::ListVouchersRequest {
                customer_id: customers[1].clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .vouchers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, issued[1].voucher_id);
    let by_reward = r
        .list_vouchers(authed(
            pb::ListVouchersRequest {
                reward_id: spring.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .vouchers;
    assert_eq!(by_reward.len(), 3);
    let redeem = |key: &str| pb::RedeemVoucherRequest {
        idempotency_key: key.into(),
        code: issued[0].code.clone(),
        customer_id: customers[0].clone(),
        transaction_id: "POS-1".into(),
        ..Default::default()
    };
    let redeemed = r
        .redeem_voucher(authed(redeem("redeem-1"), &admin))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(redeemed.state, pb::VoucherState::Redeemed as i32);
    let twice = fails(r.redeem_voucher(authed(redeem("redeem-2"), &admin)).await);
    assert_eq!(error_reason(&twice), "VOUCHER_ALREADY_REDEEMED");

    // Only a campaign reward issues in batches.
    let coupon = r
        .create_reward(authed(reward("Coupon", pb::RewardType::Coupon), &admin))
        .await?
        .into_inner()
        .reward
        .expect("reward")
        .id;
    let not_campaign = fails(r.issue_vouchers(authed(issue(&coupon), &admin)).await);
    assert_eq!(not_campaign.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&not_campaign), "REWARD_NOT_CAMPAIGN");

    // Bad input names every bad field.
    let bad = fails(
        r.issue_vouchers(authed(
            pb::IssueVouchersRequest {
                reward_id: "spring".into(),
                customer_ids: vec![customers[0].clone(), "nobody".into(), customers[0].clone()],
                source: pb::VoucherSource::Manual as i32,
                source_id: String::new(),
                valid_until_time: None,
            },
            &admin,
        ))
        .await,
    );
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&bad),
        [
            "reward_id",
            "customer_ids[1]",
            "customer_ids[2]",
            "source",
            "source_id"
        ]
    );

    // Another partner's reward does not exist for this one.
    let hidden = fails(r.issue_vouchers(authed(issue(&spring), &rival)).await);
    assert_eq!(hidden.code(), Code::NotFound);
    suite.stop().await
}
