//! Vouchers through gRPC (issue #6), the services running as processes on PostgreSQL: a
//! campaign reward with voucher settings; a voucher issued to a customer, validated, reserved
//! for a checkout transaction, redeemed by it and reinstated on return; refusals with their
//! reasons; idempotent retries; bulk codes; another partner sees nothing.
use loyalty_proto::{identity::v1 as identity, rewards::v1 as pb};
use loyalty_testkit::{Backend, Suite, authed, error_reason, violated_fields};
use tonic::{Code, Status};
use uuid::Uuid;

fn fails<T: std::fmt::Debug>(r: Result<T, Status>) -> Status {
    r.expect_err("the call should have been refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voucher_is_issued_validated_reserved_redeemed_and_reinstated() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, admin) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut r = suite.rewards().await?;
    let shop_unit = Uuid::now_v7().to_string();

    // A campaign reward whose vouchers are valid 30 days, one per customer, only in one shop.
    let reward = r
        .create_reward(authed(
            pb::CreateRewardRequest {
                idempotency_key: "reward-1".into(),
                reward: Some(pb::Reward {
                    display_name: "Ten percent off".into(),
                    r#type: pb::RewardType::Campaign as i32,
                    benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                        pb::CartPercentageDiscount { basis_points: 1000 },
                    )),
                    voucher_validity_days: 30,
                    max_vouchers_per_customer: 1,
                    max_vouchers_total: 1000,
                    voucher_code_prefix: "TEN".into(),
                    business_unit_ids: vec![shop_unit.clone()],
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .reward
        .expect("reward");
    assert_eq!(reward.voucher_code_prefix, "TEN");
    assert_eq!(reward.max_vouchers_per_customer, 1);
    assert_eq!(reward.business_unit_ids, std::slice::from_ref(&shop_unit));

    let customer = Uuid::now_v7().to_string();
    let issue = |key: &str| pb::IssueVoucherRequest {
        idempotency_key: key.into(),
        reward_id: reward.id.clone(),
        customer_id: customer.clone(),
        source: pb::VoucherSource::Campaign as i32,
        ..Default::default()
    };
    let voucher = r
        .issue_voucher(authed(issue("issue-1"), &admin))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert!(voucher.code.starts_with("TEN-"), "{}", voucher.code);
    assert_eq!(voucher.state, pb::VoucherState::Active as i32);
    assert_eq!(voucher.reward_display_name, "Ten percent off");
    assert!(voucher.valid_until_time.is_some());
    // A retry answers the same voucher; a second voucher for the customer is over the limit.
    let retried = r
        .issue_voucher(authed(issue("issue-1"), &admin))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(retried.id, voucher.id);
    let limit = fails(r.issue_voucher(authed(issue("issue-2"), &admin)).await);
    assert_eq!(limit.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&limit), "VOUCHER_LIMIT_REACHED");
    let invalid = fails(
        r.issue_voucher(authed(
            pb::IssueVoucherRequest {
                idempotency_key: "issue-bad".into(),
                reward_id: "nope".into(),
                source: 0,
                code: "x".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await,
    );
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&invalid), ["reward_id", "source", "code"]);

    // Validation writes nothing and names the reason.
    let validate = |unit: &str, customer: &str| pb::ValidateVoucherRequest {
        code: voucher.code.to_lowercase(),
        customer_id: customer.into(),
        business_unit_id: unit.into(),
        ..Default::default()
    };
    let ok = r
        .validate_voucher(authed(validate(&shop_unit, &customer), &admin))
        .await?
        .into_inner();
    assert!(ok.valid);
    assert_eq!(ok.rejection_reason, "");
    let elsewhere = r
        .validate_voucher(authed(
            validate(&Uuid::now_v7().to_string(), &customer),
            &admin,
        ))
        .await?
        .into_inner();
    assert!(!elsewhere.valid);
    assert_eq!(elsewhere.rejection_reason, "VOUCHER_NOT_VALID_HERE");
    let stranger = r
        .validate_voucher(authed(
            validate(&shop_unit, &Uuid::now_v7().to_string()),
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(stranger.rejection_reason, "VOUCHER_OTHER_CUSTOMER");

    // Two-phase checkout: reserve for T1; T2 cannot take it; T1 redeems (captures) it.
    let reserved = r
        .reserve_voucher(authed(
            pb::ReserveVoucherRequest {
                idempotency_key: "reserve-T1".into(),
                code: voucher.code.clone(),
                customer_id: customer.clone(),
                transaction_id: "T1".into(),
                business_unit_id: shop_unit.clone(),
                hold_seconds: 600,
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(reserved.state, pb::VoucherState::Reserved as i32);
    assert!(reserved.reserve_expire_time.is_some());
    let redeem = |key: &str, tx: &str| pb::RedeemVoucherRequest {
        idempotency_key: key.into(),
        code: voucher.code.clone(),
        customer_id: customer.clone(),
        transaction_id: tx.into(),
        business_unit_id: shop_unit.clone(),
        ..Default::default()
    };
    let held = fails(
        r.redeem_voucher(authed(redeem("redeem-T2", "T2"), &admin))
            .await,
    );
    assert_eq!(error_reason(&held), "VOUCHER_RESERVED");
    let wrong_release = fails(
        r.release_voucher(authed(
            pb::ReleaseVoucherRequest {
                idempotency_key: "release-T2".into(),
                code: voucher.code.clone(),
                transaction_id: "T2".into(),
            },
            &admin,
        ))
        .await,
    );
    assert_eq!(error_reason(&wrong_release), "TRANSACTION_MISMATCH");
    let redeemed = r
        .redeem_voucher(authed(redeem("redeem-T1", "T1"), &admin))
        .await?
        .into_inner();
    let redeemed_voucher = redeemed.voucher.expect("voucher");
    assert_eq!(redeemed_voucher.state, pb::VoucherState::Redeemed as i32);
    assert_eq!(redeemed_voucher.redeem_transaction_id, "T1");
    assert_eq!(redeemed_voucher.redeem_business_unit_id, shop_unit);
    assert_eq!(redeemed.points_spent, 0);
    // Retrying the same redemption answers the same; another one is refused.
    let again = r
        .redeem_voucher(authed(redeem("redeem-T1", "T1"), &admin))
        .await?
        .into_inner();
    assert_eq!(again.voucher.expect("voucher").id, voucher.id);
    let twice = fails(
        r.redeem_voucher(authed(redeem("redeem-T3", "T3"), &admin))
            .await,
    );
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&twice), "VOUCHER_ALREADY_REDEEMED");
    let cancel_redeemed = fails(
        r.cancel_voucher(authed(
            pb::CancelVoucherRequest {
                idempotency_key: "cancel-1".into(),
                voucher_id: voucher.id.clone(),
                reason: "mistake".into(),
                refund_points: false,
            },
            &admin,
        ))
        .await,
    );
    assert_eq!(error_reason(&cancel_redeemed), "VOUCHER_ALREADY_REDEEMED");

    // The purchase is returned: the redemption is undone for its own transaction only.
    let reinstate = |key: &str, tx: &str| pb::ReinstateVoucherRequest {
        idempotency_key: key.into(),
        voucher_id: voucher.id.clone(),
        transaction_id: tx.into(),
        reason: "return".into(),
    };
    let mismatch = fails(
        r.reinstate_voucher(authed(reinstate("reinstate-T9", "T9"), &admin))
            .await,
    );
    assert_eq!(error_reason(&mismatch), "TRANSACTION_MISMATCH");
    let back = r
        .reinstate_voucher(authed(reinstate("reinstate-T1", "T1"), &admin))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(back.state, pb::VoucherState::Active as i32);
    let not_redeemed = fails(
        r.reinstate_voucher(authed(reinstate("reinstate-T1-b", "T1"), &admin))
            .await,
    );
    assert_eq!(error_reason(&not_redeemed), "VOUCHER_NOT_REDEEMED");

    // Cancelled, it cannot be redeemed.
    let cancelled = r
        .cancel_voucher(authed(
            pb::CancelVoucherRequest {
                idempotency_key: "cancel-2".into(),
                voucher_id: voucher.id.clone(),
                reason: "customer left the programme".into(),
                refund_points: false,
            },
            &admin,
        ))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(cancelled.state, pb::VoucherState::Cancelled as i32);
    let gone = fails(
        r.redeem_voucher(authed(redeem("redeem-T4", "T4"), &admin))
            .await,
    );
    assert_eq!(error_reason(&gone), "VOUCHER_CANCELLED");

    // Lists by customer and by state.
    let listed = r
        .list_vouchers(authed(
            pb::ListVouchersRequest {
                customer_id: customer.clone(),
                states: vec![pb::VoucherState::Cancelled as i32],
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(listed.vouchers.len(), 1);
    assert_eq!(listed.vouchers[0].id, voucher.id);
    let none_active = r
        .list_vouchers(authed(
            pb::ListVouchersRequest {
                customer_id: customer.clone(),
                states: vec![pb::VoucherState::Active as i32],
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert!(none_active.vouchers.is_empty());

    // Bulk codes for the same reward.
    let generated = r
        .generate_voucher_codes(authed(
            pb::GenerateVoucherCodesRequest {
                idempotency_key: "gen-1".into(),
                reward_id: reward.id.clone(),
                count: 500,
                prefix: "GOLD".into(),
                pattern: "####-????".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(generated.generated_count, 500);
    assert_eq!(generated.codes.len(), 500);
    let bearer = r
        .get_voucher(authed(
            pb::GetVoucherRequest {
                code: generated.codes[0].clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(bearer.customer_id, "");
    assert_eq!(bearer.source, pb::VoucherSource::Campaign as i32);

    // Another partner sees none of it.
    let hidden = fails(
        r.get_voucher(authed(
            pb::GetVoucherRequest {
                voucher_id: voucher.id.clone(),
                ..Default::default()
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(hidden.code(), Code::NotFound);
    let hidden_redeem = fails(
        r.redeem_voucher(authed(
            pb::RedeemVoucherRequest {
                idempotency_key: "rival".into(),
                code: generated.codes[0].clone(),
                transaction_id: "R1".into(),
                ..Default::default()
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(hidden_redeem.code(), Code::NotFound);
    let hidden_issue = fails(r.issue_voucher(authed(issue("rival-issue"), &rival)).await);
    assert_eq!(hidden_issue.code(), Code::NotFound);
    let hidden_list = r
        .list_vouchers(authed(
            pb::ListVouchersRequest {
                reward_id: reward.id.clone(),
                ..Default::default()
            },
            &rival,
        ))
        .await?
        .into_inner();
    assert!(hidden_list.vouchers.is_empty());

    suite.stop().await
}
