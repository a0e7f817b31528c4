//! End to end on PostgreSQL, all six services as processes: a POS evaluates a cart with a
//! campaign voucher and points, commits it from the quote, returns it in two parts, voids
//! another purchase; concurrent commits race for one voucher; a blocked wallet and a
//! segmentation outage are answered clearly.
use loyalty_proto::{checkout::v1 as checkout, rewards::v1 as rewards, wallet::v1 as wallet};
use loyalty_testkit::{Backend, Suite, authed, error_reason, violated_fields};
use tonic::Code;

mod checkout_support;

use checkout_support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_voucher_and_points_purchase_is_committed_from_its_quote_returned_and_voided()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let shop = shop(&suite, 1000).await?;
    let code = voucher(&suite, &shop).await?;
    let mut pos = suite.checkout().await?;

    // Not presented, the customer's voucher is offered with what it would take off.
    let offer = pos
        .evaluate(authed(evaluate_request(&[], 0), &shop.key))
        .await?
        .into_inner();
    assert_eq!(
        offer.totals.as_ref().expect("totals").discount_amount_minor,
        0
    );
    assert_eq!(offer.available_vouchers.len(), 1);
    assert_eq!(offer.available_vouchers[0].code, code);
    assert_eq!(offer.available_vouchers[0].discount_minor, 305);
    assert_eq!(offer.available_vouchers[0].reward_display_name, "Ten off");

    let e = pos
        .evaluate(authed(evaluate_request(&[&code, "NOPE-1"], 500), &shop.key))
        .await?
        .into_inner();
    let totals = e.totals.clone().expect("totals");
    assert_eq!(totals.gross_amount_minor, 3050);
    assert_eq!(
        totals.discount_amount_minor, 305,
        "10 % off with the voucher"
    );
    assert_eq!(totals.net_amount_minor, 2745);
    assert_eq!(e.accepted_vouchers.len(), 1);
    assert_eq!(e.accepted_vouchers[0].code, code);
    assert_eq!(e.accepted_vouchers[0].discount_minor, 305);
    assert_eq!(e.lines[0].discounts[0].benefit_display_name, "Ten off");
    assert_eq!(e.rejected_vouchers.len(), 1);
    assert_eq!(
        e.rejected_vouchers[0].reason,
        checkout::VoucherRejectionReason::NotFound as i32
    );
    assert_eq!(e.points_balance, 1000);
    assert_eq!(e.points_spendable, 1000, "the balance, below half the cart");
    assert_eq!((e.points_to_spend, e.points_discount_minor), (500, 500));
    assert_eq!(totals.points_payment_minor, 500);
    assert_eq!(totals.amount_due_minor, 2245);
    assert!(e.points_to_earn > 0);
    assert_eq!(
        e.lines.iter().map(|l| l.points).sum::<i64>(),
        e.points_to_earn,
        "points per line add up"
    );
    assert!(!e.degraded);
    assert!(
        e.available_vouchers.is_empty(),
        "presented, it is not offered"
    );
    // The POS drops the unknown code and evaluates again: the quote pins that cart.
    let e = pos
        .evaluate(authed(evaluate_request(&[&code], 500), &shop.key))
        .await?
        .into_inner();
    assert!(e.rejected_vouchers.is_empty());
    let quote = e.quote.clone().expect("quote");
    assert!(quote.id.starts_with("q1."));
    assert_eq!(
        voucher_state(&suite, &shop, &code).await?,
        rewards::VoucherState::Active as i32,
        "Evaluate writes nothing"
    );

    // The quote is for this cart only, and cannot be altered.
    let mut other = commit_request("till-1/0", &[&code], 500, &quote.id, 2245);
    other.cart.as_mut().expect("cart").lines[0].quantity = 3;
    let mismatch = commit(&mut pos, &shop.key, other)
        .await
        .expect_err("another cart");
    assert_eq!(mismatch.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&mismatch), "QUOTE_MISMATCH");
    let forged = format!("{}A", quote.id);
    let forged = commit(
        &mut pos,
        &shop.key,
        commit_request("till-1/0", &[&code], 500, &forged, 2245),
    )
    .await
    .expect_err("forged quote");
    assert_eq!(forged.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&forged), ["quote_id"]);
    let short = commit(
        &mut pos,
        &shop.key,
        commit_request("till-1/0", &[&code], 500, &quote.id, 3050),
    )
    .await
    .expect_err("payments do not match");
    assert_eq!(error_reason(&short), "PAYMENT_TOTAL_MISMATCH");

    let receipt = commit(
        &mut pos,
        &shop.key,
        commit_request("till-1/1", &[&code], 500, &quote.id, 2245),
    )
    .await?;
    assert!(receipt.quote_honoured);
    assert_eq!(receipt.points_spent, 500);
    assert_eq!(receipt.points_earned, e.points_to_earn);
    assert_eq!(receipt.points_balance, 500 + e.points_to_earn);
    assert_eq!(receipt.redeemed_vouchers.len(), 1);
    assert_eq!(receipt.redeemed_vouchers[0].code, code);
    assert!(!receipt.redeemed_vouchers[0].voucher_id.is_empty());
    let retry = commit(
        &mut pos,
        &shop.key,
        commit_request("till-1/1", &[&code], 500, &quote.id, 2245),
    )
    .await?;
    assert_eq!(retry, receipt, "a retry answers the same receipt");
    let without_quote = commit(
        &mut pos,
        &shop.key,
        commit_request("till-1/1", &[&code], 500, "", 2245),
    )
    .await?;
    assert_eq!(
        without_quote, receipt,
        "the quote is not part of the transaction's identity"
    );
    assert_eq!(balance(&suite, &shop).await?, 500 + e.points_to_earn);
    assert_eq!(
        voucher_state(&suite, &shop, &code).await?,
        rewards::VoucherState::Redeemed as i32
    );
    trial_balance_holds(&suite, &shop).await?;

    // The voucher is spent: a second purchase with it fails and applies nothing.
    let before = balance(&suite, &shop).await?;
    let again = commit(
        &mut pos,
        &shop.key,
        commit_request("till-1/2", &[&code], 100, "", 2645),
    )
    .await
    .expect_err("voucher already redeemed");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&again), "VOUCHER_ALREADY_REDEEMED");
    assert_eq!(balance(&suite, &shop).await?, before, "nothing applied");

    // Return one of the two SKU-1, then the rest.
    let earned = receipt.points_earned;
    let first = return_lines(&mut pos, &shop.key, "ret-1", &[("1", 1)]).await?;
    assert_eq!(first.refund_amount_minor, 1125);
    assert_eq!(first.points_reversed, earned * 1125 / 2745);
    assert_eq!(first.points_refunded, 500 * 1125 / 2745);
    assert!(first.reinstated_voucher_codes.is_empty());
    assert_eq!(
        return_lines(&mut pos, &shop.key, "ret-1", &[("1", 1)]).await?,
        first,
        "a retried return answers the same receipt"
    );
    let reused = return_lines(&mut pos, &shop.key, "ret-1", &[("2", 1)])
        .await
        .expect_err("return id reused");
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(error_reason(&reused), "RETURN_ID_REUSED");
    let too_many = return_lines(&mut pos, &shop.key, "ret-x", &[("1", 2)])
        .await
        .expect_err("only one left");
    assert_eq!(error_reason(&too_many), "RETURN_QUANTITY_EXCEEDED");
    let unknown = return_lines(&mut pos, &shop.key, "ret-y", &[("9", 1)])
        .await
        .expect_err("no such line");
    assert_eq!(unknown.code(), Code::NotFound);

    let rest = return_lines(&mut pos, &shop.key, "ret-2", &[("1", 1), ("2", 1)]).await?;
    assert_eq!(rest.refund_amount_minor, 2745 - 1125);
    assert_eq!(first.points_reversed + rest.points_reversed, earned);
    assert_eq!(first.points_refunded + rest.points_refunded, 500);
    assert_eq!(rest.reinstated_voucher_codes, std::slice::from_ref(&code));
    assert_eq!(rest.points_balance, 1000, "everything came back");
    assert_eq!(balance(&suite, &shop).await?, 1000);
    assert_eq!(
        voucher_state(&suite, &shop, &code).await?,
        rewards::VoucherState::Active as i32
    );
    let purchase = pos
        .get_purchase(authed(
            checkout::GetPurchaseRequest {
                transaction_id: "till-1/1".into(),
                ..Default::default()
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .purchase
        .expect("purchase");
    assert_eq!(purchase.state, checkout::PurchaseState::Returned as i32);
    assert_eq!(purchase.returns.len(), 2);
    assert_eq!(purchase.payments[0].amount_minor, 2245);
    trial_balance_holds(&suite, &shop).await?;

    // A plain purchase voided the same day: its points go.
    let plain = commit(
        &mut pos,
        &shop.key,
        commit_request("till-1/3", &[], 0, "", 3050),
    )
    .await?;
    assert!(!plain.quote_honoured);
    assert_eq!(balance(&suite, &shop).await?, 1000 + plain.points_earned);
    let void = |reason: &str| checkout::VoidPurchaseRequest {
        transaction_id: "till-1/3".into(),
        reason: reason.into(),
        utc_offset_minutes: 0,
    };
    let voided = pos
        .void_purchase(authed(void("wrong card"), &shop.key))
        .await?
        .into_inner()
        .purchase
        .expect("purchase");
    assert_eq!(voided.state, checkout::PurchaseState::Voided as i32);
    assert_eq!(voided.void_reason, "wrong card");
    assert_eq!(balance(&suite, &shop).await?, 1000);
    let again = pos
        .void_purchase(authed(void("twice"), &shop.key))
        .await?
        .into_inner()
        .purchase
        .expect("purchase");
    assert_eq!(again.void_reason, "wrong card", "a void is done once");
    let after_void = pos
        .r#return(authed(
            checkout::ReturnRequest {
                return_id: "ret-3".into(),
                original_transaction_id: "till-1/3".into(),
                lines: vec![checkout::ReturnLine {
                    line_id: "1".into(),
                    quantity: 1,
                }],
                ..Default::default()
            },
            &shop.key,
        ))
        .await
        .expect_err("voided");
    assert_eq!(error_reason(&after_void), "PURCHASE_VOIDED");
    let returned_void = pos
        .void_purchase(authed(
            checkout::VoidPurchaseRequest {
                transaction_id: "till-1/1".into(),
                reason: "late".into(),
                utc_offset_minutes: 0,
            },
            &shop.key,
        ))
        .await
        .expect_err("returned already");
    assert_eq!(error_reason(&returned_void), "ALREADY_RETURNED");
    trial_balance_holds(&suite, &shop).await?;

    // The history, newest first, a page at a time.
    let page = |token: String| checkout::ListPurchasesRequest {
        customer_id: shop.customer_id.clone(),
        page_size: 1,
        page_token: token,
        ..Default::default()
    };
    let first_page = pos
        .list_purchases(authed(page(String::new()), &shop.key))
        .await?
        .into_inner();
    assert_eq!(first_page.purchases.len(), 1);
    let second_page = pos
        .list_purchases(authed(page(first_page.next_page_token.clone()), &shop.key))
        .await?
        .into_inner();
    let ids: Vec<_> = first_page
        .purchases
        .iter()
        .chain(&second_page.purchases)
        .map(|p| p.receipt.as_ref().expect("receipt").transaction_id.clone())
        .collect();
    assert_eq!(ids, ["till-1/3", "till-1/1"]);
    let bad = pos
        .list_purchases(authed(
            checkout::ListPurchasesRequest {
                customer_id: "nope".into(),
                page_token: "zz".into(),
                ..Default::default()
            },
            &shop.key,
        ))
        .await
        .expect_err("bad input");
    assert_eq!(violated_fields(&bad), ["customer_id", "page_token"]);

    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_concurrent_commits_spending_one_voucher_apply_it_once() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let shop = shop(&suite, 10_000).await?;
    let code = voucher(&suite, &shop).await?;
    let pos = suite.checkout().await?;
    let calls = (0..64).map(|i| {
        let mut pos = pos.clone();
        let key = shop.key.clone();
        let code = code.clone();
        tokio::spawn(async move {
            // Retried as a POS does when the answer may not be final (a loaded machine
            // can run a call into its deadline).
            commit_retrying(
                &mut pos,
                &key,
                checkout::CommitRequest {
                    payments: vec![],
                    ..commit_request(&format!("race-{i}"), &[&code], 100, "", 0)
                },
            )
            .await
        })
    });
    let mut won = Vec::new();
    for call in futures::future::join_all(calls).await {
        match call? {
            Ok(receipt) => won.push(receipt),
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(
                    ["VOUCHER_ALREADY_REDEEMED", "VOUCHER_RESERVED"]
                        .contains(&error_reason(&status).as_str()),
                    "{status:?}"
                );
            }
        }
    }
    assert_eq!(won.len(), 1, "exactly one commit redeems the voucher");
    // The losers' points holds were released: only the winner spent 100.
    assert_eq!(
        balance(&suite, &shop).await?,
        10_000 - 100 + won[0].points_earned
    );
    trial_balance_holds(&suite, &shop).await?;
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_wallet_and_a_segmentation_outage_are_answered_clearly() -> anyhow::Result<()> {
    let mut suite = Suite::start(Backend::Postgres).await?;
    let shop = shop(&suite, 1000).await?;
    let mut pos = suite.checkout().await?;

    // A 5 % reward for the gold segment only.
    gold_discount(&suite, &shop, false).await?;
    let gold = loyalty_testkit::eventually(std::time::Duration::from_secs(20), || {
        let mut pos = pos.clone();
        let key = shop.key.clone();
        async move {
            let e = pos
                .evaluate(authed(evaluate_request(&[], 0), &key))
                .await?
                .into_inner();
            Ok((e.totals.as_ref().expect("totals").discount_amount_minor > 0).then_some(e))
        }
    })
    .await?;
    assert_eq!(gold.totals.expect("totals").discount_amount_minor, 152);

    suite
        .wallet()
        .await?
        .block_spending(authed(
            wallet::BlockSpendingRequest {
                idempotency_key: "block".into(),
                customer_id: shop.customer_id.clone(),
                reason: "fraud check".into(),
                ..Default::default()
            },
            &shop.key,
        ))
        .await?;
    let refused = pos
        .evaluate(authed(evaluate_request(&[], 100), &shop.key))
        .await
        .expect_err("blocked from spending");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "BLOCKED_FROM_SPENDING");
    let plain = pos
        .evaluate(authed(evaluate_request(&[], 0), &shop.key))
        .await?
        .into_inner();
    assert!(plain.blocked_from_spending);
    assert_eq!(plain.points_spendable, 0);

    // Without segmentation Evaluate answers without the segment's reward and says so;
    // Commit refuses rather than price without it.
    suite.kill("segmentation").await?;
    let degraded = pos
        .evaluate(authed(evaluate_request(&[], 0), &shop.key))
        .await?
        .into_inner();
    assert!(degraded.degraded);
    assert!(!degraded.degraded_reasons.is_empty());
    assert_eq!(
        degraded.totals.expect("totals").discount_amount_minor,
        0,
        "segment-only benefits are left out"
    );
    let down = commit(
        &mut pos,
        &shop.key,
        commit_request("till-9/1", &[], 0, "", 3050 - 152),
    )
    .await
    .expect_err("segmentation down");
    assert_eq!(down.code(), Code::Unavailable);
    suite.restart("segmentation").await?;
    let receipt = commit(
        &mut pos,
        &shop.key,
        commit_request("till-9/1", &[], 0, "", 3050 - 152),
    )
    .await?;
    assert_eq!(
        receipt.totals.expect("totals").discount_amount_minor,
        152,
        "the same commit goes through once segmentation is back"
    );
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_purchases_are_replayed_in_order_once_with_their_times() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let shop = shop(&suite, 1000).await?;
    let mut pos = suite.checkout().await?;
    let two_hours_ago = prost_types::Timestamp::from(std::time::SystemTime::now()).seconds - 7200;
    let at = |minutes: i64| prost_types::Timestamp {
        seconds: two_hours_ago + 60 * minutes,
        nanos: 0,
    };
    let offline = |id: &str, time: Option<prost_types::Timestamp>| checkout::CommitBatchRequest {
        commit: Some(checkout::CommitRequest {
            purchase_time: time,
            payments: vec![],
            ..commit_request(id, &[], 0, "", 0)
        }),
    };
    let batch = || {
        futures::stream::iter(vec![
            offline("offline/1", Some(at(0))),
            offline("offline/2", None),
            offline("offline/3", Some(at(5))),
        ])
    };
    let first = pos
        .commit_batch(authed(batch(), &shop.key))
        .await?
        .into_inner();
    assert_eq!((first.committed_count, first.failed_count), (2, 1));
    let ids: Vec<_> = first
        .results
        .iter()
        .map(|r| r.transaction_id.as_str())
        .collect();
    assert_eq!(ids, ["offline/1", "offline/2", "offline/3"]);
    let error = first.results[1].error.clone().expect("error");
    assert_eq!(error.code, Code::InvalidArgument as i32);
    assert!(error.message.contains("purchase_time"), "{error:?}");
    let receipt = first.results[0].receipt.clone().expect("receipt");
    assert_eq!(
        receipt.purchase_time,
        Some(at(0)),
        "the original time is kept"
    );
    let balance_after = balance(&suite, &shop).await?;

    // The POS does not know what arrived and sends it all again: nothing happens twice.
    let again = pos
        .commit_batch(authed(batch(), &shop.key))
        .await?
        .into_inner();
    assert_eq!((again.committed_count, again.failed_count), (2, 1));
    assert_eq!(again.results[0].receipt, first.results[0].receipt);
    assert_eq!(again.results[2].receipt, first.results[2].receipt);
    assert_eq!(balance(&suite, &shop).await?, balance_after);
    let history = history(&mut pos, &shop).await?;
    let ids: Vec<_> = history
        .purchases
        .iter()
        .map(|p| p.receipt.as_ref().expect("receipt").transaction_id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["offline/3", "offline/1"],
        "newest purchase time first"
    );
    suite.stop().await
}

fn collect_order(number: &str, customer_id: &str) -> checkout::CreateCollectOrderRequest {
    checkout::CreateCollectOrderRequest {
        order: Some(checkout::CollectOrder {
            order_number: number.into(),
            customer_id: customer_id.into(),
            business_unit_id: "store-12".into(),
            cart: Some(cart()),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn click_and_collect_orders_move_on_and_start_automation() -> anyhow::Result<()> {
    use loyalty_proto::campaigns::v1 as campaigns;
    let suite = Suite::start(Backend::Postgres).await?;
    let shop = shop(&suite, 0).await?;
    let mut pos = suite.checkout().await?;

    // "Your order is ready": here 10 points, so that the test can see the workflow ran.
    let mut automation = suite.campaigns().await?;
    let workflow = automation
        .create_workflow(authed(
            campaigns::CreateWorkflowRequest {
                idempotency_key: "ready-for-pickup".into(),
                workflow: Some(campaigns::Workflow {
                    display_name: "Ready for pickup".into(),
                    trigger: Some(campaigns::WorkflowTrigger {
                        kind: Some(campaigns::workflow_trigger::Kind::CollectOrder(
                            campaigns::CollectOrderTrigger {
                                state: "ready_for_pickup".into(),
                                business_unit_ids: vec!["store-12".into()],
                            },
                        )),
                    }),
                    nodes: vec![campaigns::WorkflowNode {
                        key: "thanks".into(),
                        kind: Some(campaigns::workflow_node::Kind::AddPoints(
                            campaigns::AddPointsNode {
                                points: 10,
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    }],
                    entry_node_key: "thanks".into(),
                    reentry_policy: campaigns::ReentryPolicy::Always as i32,
                    ..Default::default()
                }),
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .workflow
        .expect("workflow");
    automation
        .activate_workflow(authed(
            campaigns::ActivateWorkflowRequest {
                idempotency_key: "activate".into(),
                workflow_id: workflow.id.clone(),
            },
            &shop.key,
        ))
        .await?;

    let created = pos
        .create_collect_order(authed(
            collect_order("E-1001", &shop.customer_id),
            &shop.key,
        ))
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(created.state, checkout::CollectOrderState::Created as i32);
    assert_eq!(created.total_amount_minor, 3050);
    let retry = pos
        .create_collect_order(authed(
            collect_order("E-1001", &shop.customer_id),
            &shop.key,
        ))
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(
        retry, created,
        "the same order number answers the stored order"
    );
    let mut other = collect_order("E-1001", &shop.customer_id);
    other.order.as_mut().expect("order").business_unit_id = "store-13".into();
    let reused = pos
        .create_collect_order(authed(other, &shop.key))
        .await
        .expect_err("number reused");
    assert_eq!(error_reason(&reused), "ORDER_NUMBER_REUSED");
    let stranger = pos
        .create_collect_order(authed(
            collect_order("E-1002", "01900000-0000-7000-8000-000000000000"),
            &shop.key,
        ))
        .await
        .expect_err("no such customer");
    assert_eq!(stranger.code(), Code::NotFound);

    let change =
        |state: checkout::CollectOrderState, etag: &str| checkout::UpdateCollectOrderStateRequest {
            order_id: created.id.clone(),
            state: state as i32,
            transaction_id: "till-4/77".into(),
            etag: etag.into(),
            ..Default::default()
        };
    let early = pos
        .update_collect_order_state(authed(
            change(checkout::CollectOrderState::Collected, ""),
            &shop.key,
        ))
        .await
        .expect_err("not ready yet");
    assert_eq!(error_reason(&early), "INVALID_TRANSITION");
    let stale = pos
        .update_collect_order_state(authed(
            change(checkout::CollectOrderState::ReadyForPickup, "99"),
            &shop.key,
        ))
        .await
        .expect_err("stale etag");
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");
    let ready = pos
        .update_collect_order_state(authed(
            change(checkout::CollectOrderState::ReadyForPickup, &created.etag),
            &shop.key,
        ))
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(
        ready.state,
        checkout::CollectOrderState::ReadyForPickup as i32
    );
    assert!(ready.pickup_until_time.is_some());

    // The workflow ran once for the customer.
    loyalty_testkit::eventually(std::time::Duration::from_secs(30), || async {
        Ok((balance(&suite, &shop).await? == 10).then_some(()))
    })
    .await?;
    let again = pos
        .update_collect_order_state(authed(
            change(checkout::CollectOrderState::ReadyForPickup, ""),
            &shop.key,
        ))
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(again, ready, "a retried change changes nothing");

    let collected = pos
        .update_collect_order_state(authed(
            change(checkout::CollectOrderState::Collected, ""),
            &shop.key,
        ))
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(
        collected.state,
        checkout::CollectOrderState::Collected as i32
    );
    assert_eq!(collected.transaction_id, "till-4/77");
    let listed = pos
        .list_collect_orders(authed(
            checkout::ListCollectOrdersRequest {
                customer_id: shop.customer_id.clone(),
                state: checkout::CollectOrderState::Collected as i32,
                ..Default::default()
            },
            &shop.key,
        ))
        .await?
        .into_inner();
    assert_eq!(listed.orders, std::slice::from_ref(&collected));
    let by_number = pos
        .get_collect_order(authed(
            checkout::GetCollectOrderRequest {
                order_number: "E-1001".into(),
                ..Default::default()
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(by_number, collected);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        balance(&suite, &shop).await?,
        10,
        "collecting starts nothing"
    );
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn another_partners_purchases_and_orders_are_not_found_and_bad_input_names_fields()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let shop = shop(&suite, 0).await?;
    let mut pos = suite.checkout().await?;
    let receipt = commit(&mut pos, &shop.key, commit_request("t/1", &[], 0, "", 3050)).await?;
    let order = pos
        .create_collect_order(authed(collect_order("E-1", &shop.customer_id), &shop.key))
        .await?
        .into_inner()
        .order
        .expect("order");
    let (_, other) = suite
        .partner_with_key(
            "Other",
            &[
                loyalty_proto::identity::v1::Role::Admin,
                loyalty_proto::identity::v1::Role::Pos,
            ],
        )
        .await?;

    let not_found = [
        pos.get_purchase(authed(
            checkout::GetPurchaseRequest {
                transaction_id: "t/1".into(),
                ..Default::default()
            },
            &other,
        ))
        .await
        .map(|_| ()),
        pos.get_purchase(authed(
            checkout::GetPurchaseRequest {
                purchase_id: receipt.purchase_id.clone(),
                ..Default::default()
            },
            &other,
        ))
        .await
        .map(|_| ()),
        pos.r#return(authed(
            checkout::ReturnRequest {
                return_id: "r/1".into(),
                original_transaction_id: "t/1".into(),
                lines: vec![checkout::ReturnLine {
                    line_id: "1".into(),
                    quantity: 1,
                }],
                ..Default::default()
            },
            &other,
        ))
        .await
        .map(|_| ()),
        pos.void_purchase(authed(
            checkout::VoidPurchaseRequest {
                transaction_id: "t/1".into(),
                reason: "test".into(),
                utc_offset_minutes: 0,
            },
            &other,
        ))
        .await
        .map(|_| ()),
        pos.get_collect_order(authed(
            checkout::GetCollectOrderRequest {
                order_id: order.id.clone(),
                ..Default::default()
            },
            &other,
        ))
        .await
        .map(|_| ()),
        pos.update_collect_order_state(authed(
            checkout::UpdateCollectOrderStateRequest {
                order_id: order.id.clone(),
                state: checkout::CollectOrderState::Cancelled as i32,
                cancel_reason: "not mine".into(),
                ..Default::default()
            },
            &other,
        ))
        .await
        .map(|_| ()),
    ];
    for answer in not_found {
        assert_eq!(
            answer.expect_err("another partner's").code(),
            Code::NotFound
        );
    }
    let theirs = pos
        .list_purchases(authed(
            checkout::ListPurchasesRequest {
                customer_id: shop.customer_id.clone(),
                ..Default::default()
            },
            &other,
        ))
        .await?
        .into_inner();
    assert!(theirs.purchases.is_empty());

    // Bad input names each field.
    let bad_return = pos
        .r#return(authed(
            checkout::ReturnRequest {
                lines: vec![
                    checkout::ReturnLine {
                        line_id: "1".into(),
                        quantity: 0,
                    },
                    checkout::ReturnLine {
                        line_id: "1".into(),
                        quantity: 1,
                    },
                ],
                ..Default::default()
            },
            &shop.key,
        ))
        .await
        .expect_err("bad return");
    assert_eq!(
        violated_fields(&bad_return),
        [
            "return_id",
            "original_transaction_id",
            "lines[0].quantity",
            "lines[1].line_id"
        ]
    );
    let bad_void = pos
        .void_purchase(authed(
            checkout::VoidPurchaseRequest {
                transaction_id: "t/1".into(),
                reason: String::new(),
                utc_offset_minutes: 9_999,
            },
            &shop.key,
        ))
        .await
        .expect_err("bad void");
    assert_eq!(violated_fields(&bad_void), ["reason", "utc_offset_minutes"]);
    let bad_order = pos
        .create_collect_order(authed(
            checkout::CreateCollectOrderRequest::default(),
            &shop.key,
        ))
        .await
        .expect_err("bad order");
    assert_eq!(
        violated_fields(&bad_order),
        [
            "order.order_number",
            "order.customer_id",
            "order.business_unit_id",
            "order.cart"
        ]
    );
    let bad_change = pos
        .update_collect_order_state(authed(
            checkout::UpdateCollectOrderStateRequest {
                order_id: "nope".into(),
                ..Default::default()
            },
            &shop.key,
        ))
        .await
        .expect_err("bad change");
    assert_eq!(violated_fields(&bad_change), ["order_id", "state"]);
    let bad_evaluate = pos
        .evaluate(authed(
            checkout::EvaluateRequest {
                voucher_codes: vec!["A".into(); 21],
                points_to_spend: -1,
                ..evaluate_request(&[], 0)
            },
            &shop.key,
        ))
        .await
        .expect_err("bad evaluate");
    assert_eq!(
        violated_fields(&bad_evaluate),
        ["voucher_codes", "points_to_spend"]
    );
    suite.stop().await
}
