//! Consents: consent types with versioned texts, grants and withdrawals kept in an append-only
//! history, the current state of all consents in one call, partner scoping, idempotent retries;
//! and the email bounce state of a customer's address.
use loyalty_proto::{identity::v1 as identity, types::v1 as types};
use loyalty_testkit::{Backend, Suite, authed, error_reason as reason, violated_fields as fields};
use tonic::Code;

async fn customer(suite: &Suite, key: &str, name: &str, email: &str) -> anyhow::Result<String> {
    let mut identity = suite.identity().await?;
    Ok(identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: format!("customer-{name}"),
                customer: Some(identity::Customer {
                    first_name: name.into(),
                    email: email.into(),
                    ..Default::default()
                }),
                identifiers: vec![],
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer")
        .id)
}

fn grant(
    key: &str,
    idem: &str,
    customer_id: &str,
    consent_type: &str,
    source: &str,
) -> tonic::Request<identity::GrantConsentRequest> {
    authed(
        identity::GrantConsentRequest {
            idempotency_key: idem.into(),
            customer_id: customer_id.into(),
            consent_type_id: consent_type.into(),
            source: source.into(),
            ..Default::default()
        },
        key,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn grant_then_withdraw_is_kept_in_the_history_and_the_current_state_comes_in_one_call()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Consents", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let (_, pos) = suite
        .partner_with_key("Till", &[identity::Role::Pos])
        .await?;
    let mut identity = suite.identity().await?;
    let jana = customer(&suite, &key, "jana", "jana@example.com").await?;
    let rivals_customer = customer(&suite, &rival, "petr", "petr@example.com").await?;

    let create = |key: &str, idem: &str, t: identity::ConsentType| {
        authed(
            identity::CreateConsentTypeRequest {
                idempotency_key: idem.into(),
                consent_type: Some(t),
            },
            key,
        )
    };
    let newsletter = identity::ConsentType {
        code: "newsletter".into(),
        display_name: "Newsletter".into(),
        purpose: identity::ConsentPurpose::Marketing as i32,
        channels: vec![types::CommunicationChannel::Email as i32],
        text: "We may send you offers by email.".into(),
        validity_days: 365,
        ..Default::default()
    };
    let newsletter = identity
        .create_consent_type(create(&key, "newsletter", newsletter.clone()))
        .await?
        .into_inner()
        .consent_type
        .expect("type");
    assert_eq!(newsletter.version, 1);
    assert!(newsletter.active);
    let profiling = identity
        .create_consent_type(create(
            &key,
            "profiling",
            identity::ConsentType {
                code: "profiling".into(),
                display_name: "Profiling".into(),
                purpose: identity::ConsentPurpose::Profiling as i32,
                text: "We evaluate your purchases.".into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .consent_type
        .expect("type");

    // The code is unique in the partner; other roles may not define consent types.
    let taken = identity
        .create_consent_type(create(
            &key,
            "newsletter-again",
            identity::ConsentType {
                code: "newsletter".into(),
                display_name: "Again".into(),
                purpose: identity::ConsentPurpose::Marketing as i32,
                ..Default::default()
            },
        ))
        .await
        .expect_err("code taken");
    assert_eq!(taken.code(), Code::AlreadyExists);
    let denied = identity
        .create_consent_type(create(
            &pos,
            "pos-type",
            identity::ConsentType {
                code: "pos".into(),
                display_name: "Pos".into(),
                purpose: identity::ConsentPurpose::Other as i32,
                ..Default::default()
            },
        ))
        .await
        .expect_err("pos cannot");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let bad = identity
        .create_consent_type(create(
            &key,
            "bad-type",
            identity::ConsentType {
                code: "Bad Code".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let bad_fields = fields(&bad);
    for f in [
        "consent_type.purpose",
        "consent_type.code",
        "consent_type.display_name",
    ] {
        assert!(bad_fields.contains(&f.to_owned()), "{f}: {bad_fields:?}");
    }

    // A new text is a new version; a stale etag is refused.
    let update = |idem: &str, text: &str, etag: &str| {
        authed(
            identity::UpdateConsentTypeRequest {
                idempotency_key: idem.into(),
                consent_type: Some(identity::ConsentType {
                    id: newsletter.id.clone(),
                    text: text.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["text".into()],
                }),
                etag: etag.into(),
            },
            &key,
        )
    };
    let v2 = identity
        .update_consent_type(update(
            "text-v2",
            "We may send you offers by email and SMS.",
            &newsletter.etag,
        ))
        .await?
        .into_inner()
        .consent_type
        .expect("type");
    assert_eq!(v2.version, 2);
    let stale = identity
        .update_consent_type(update("text-v3", "Other text.", &newsletter.etag))
        .await
        .expect_err("stale etag");
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert_eq!(reason(&stale), "ETAG_MISMATCH");

    // Grant (by code), and a retry with the same key answers the same without a second entry.
    let granted = identity
        .grant_consent(grant(&key, "grant-1", &jana, "newsletter", "eshop"))
        .await?
        .into_inner()
        .consent
        .expect("consent");
    assert_eq!(granted.state, identity::ConsentState::Granted as i32);
    assert_eq!(granted.text_version, 2);
    assert_eq!(granted.source, "eshop");
    assert!(granted.expire_time.is_some(), "valid for 365 days");
    let retried = identity
        .grant_consent(grant(&key, "grant-1", &jana, "newsletter", "eshop"))
        .await?
        .into_inner()
        .consent
        .expect("consent");
    assert_eq!(retried, granted);

    let withdrawn = identity
        .withdraw_consent(authed(
            identity::WithdrawConsentRequest {
                idempotency_key: "withdraw-1".into(),
                customer_id: jana.clone(),
                consent_type_id: newsletter.id.clone(),
                source: "unsubscribe_link".into(),
                note: "clicked unsubscribe".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .consent
        .expect("consent");
    assert_eq!(withdrawn.state, identity::ConsentState::Withdrawn as i32);
    // Withdrawing what is not granted changes nothing (and records nothing).
    let not_given = identity
        .withdraw_consent(authed(
            identity::WithdrawConsentRequest {
                idempotency_key: "withdraw-profiling".into(),
                customer_id: jana.clone(),
                consent_type_id: "profiling".into(),
                source: "eshop".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .consent
        .expect("consent");
    assert_eq!(not_given.state, identity::ConsentState::NotGiven as i32);

    let history = identity
        .list_consent_history(authed(
            identity::ListConsentHistoryRequest {
                customer_id: jana.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(history.entries.len(), 2, "{:?}", history.entries);
    let (newest, oldest) = (&history.entries[0], &history.entries[1]);
    assert_eq!(newest.new_state, identity::ConsentState::Withdrawn as i32);
    assert_eq!(
        newest.previous_state,
        identity::ConsentState::Granted as i32
    );
    assert_eq!(newest.source, "unsubscribe_link");
    assert_eq!(newest.note, "clicked unsubscribe");
    assert_eq!(newest.text_version, 2);
    assert_eq!(oldest.new_state, identity::ConsentState::Granted as i32);
    assert_eq!(
        oldest.previous_state,
        identity::ConsentState::NotGiven as i32
    );
    assert_eq!(oldest.source, "eshop");
    assert_eq!(oldest.text_version, 2);
    assert!(!oldest.api_key_id.is_empty());
    // Paging: one entry per page, newest first.
    let first = identity
        .list_consent_history(authed(
            identity::ListConsentHistoryRequest {
                customer_id: jana.clone(),
                consent_type_id: "newsletter".into(),
                page_size: 1,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(first.entries, vec![newest.clone()]);
    let second = identity
        .list_consent_history(authed(
            identity::ListConsentHistoryRequest {
                customer_id: jana.clone(),
                consent_type_id: "newsletter".into(),
                page_size: 1,
                page_token: first.next_page_token,
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(second.entries, vec![oldest.clone()]);

    let current = identity
        .list_customer_consents(authed(
            identity::ListCustomerConsentsRequest {
                customer_id: jana.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .consents;
    let states: Vec<(String, i32)> = current
        .iter()
        .map(|c| (c.consent_type_code.clone(), c.state))
        .collect();
    assert_eq!(
        states,
        vec![
            (
                "newsletter".to_owned(),
                identity::ConsentState::Withdrawn as i32
            ),
            (
                "profiling".to_owned(),
                identity::ConsentState::NotGiven as i32
            ),
        ]
    );
    assert_eq!(current[1].consent_type_id, profiling.id);

    // Another partner sees neither our customer nor our consent types.
    let foreign = identity
        .grant_consent(grant(&rival, "rival-1", &jana, "newsletter", "eshop"))
        .await
        .expect_err("not theirs");
    assert_eq!(foreign.code(), Code::NotFound);
    let foreign_type = identity
        .grant_consent(grant(
            &rival,
            "rival-2",
            &rivals_customer,
            &newsletter.id,
            "eshop",
        ))
        .await
        .expect_err("not their type");
    assert_eq!(foreign_type.code(), Code::NotFound);
    let foreign_list = identity
        .list_customer_consents(authed(
            identity::ListCustomerConsentsRequest {
                customer_id: jana.clone(),
                ..Default::default()
            },
            &rival,
        ))
        .await
        .expect_err("not theirs");
    assert_eq!(foreign_list.code(), Code::NotFound);

    // Bad input names the fields.
    let bad = identity
        .grant_consent(grant(&key, "bad-1", "not-a-uuid", "newsletter", ""))
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let bad_fields = fields(&bad);
    assert!(
        bad_fields.contains(&"customer_id".to_owned()),
        "{bad_fields:?}"
    );
    assert!(bad_fields.contains(&"source".to_owned()), "{bad_fields:?}");
    let mut unknown_version = grant(&key, "bad-2", &jana, "newsletter", "eshop");
    unknown_version.get_mut().text_version = 7;
    let bad = identity
        .grant_consent(unknown_version)
        .await
        .expect_err("no such version");
    assert_eq!(fields(&bad), vec!["text_version".to_owned()]);
    let mut future = grant(&key, "bad-3", &jana, "newsletter", "eshop");
    future.get_mut().grant_time = Some(prost_types::Timestamp {
        seconds: chrono_now_secs() + 3_600,
        nanos: 0,
    });
    let bad = identity.grant_consent(future).await.expect_err("future");
    assert_eq!(fields(&bad), vec!["grant_time".to_owned()]);
    // The same key with another request is refused.
    let reused = identity
        .grant_consent(grant(&key, "grant-1", &jana, "profiling", "eshop"))
        .await
        .expect_err("reused key");
    assert_eq!(reason(&reused), "IDEMPOTENCY_KEY_REUSED");
    let history = identity
        .list_consent_history(authed(
            identity::ListConsentHistoryRequest {
                customer_id: jana.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(history.entries.len(), 2, "refusals record nothing");

    // An inactive type takes no new grants.
    identity
        .update_consent_type(authed(
            identity::UpdateConsentTypeRequest {
                idempotency_key: "deactivate".into(),
                consent_type: Some(identity::ConsentType {
                    id: profiling.id.clone(),
                    active: false,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["active".into()],
                }),
                etag: String::new(),
            },
            &key,
        ))
        .await?;
    let inactive = identity
        .grant_consent(grant(&key, "grant-inactive", &jana, "profiling", "eshop"))
        .await
        .expect_err("inactive");
    assert_eq!(reason(&inactive), "CONSENT_TYPE_INACTIVE");

    // A grant older than the type's validity shows as expired.
    identity
        .create_consent_type(create(
            &key,
            "sms",
            identity::ConsentType {
                code: "sms_offers".into(),
                display_name: "SMS offers".into(),
                purpose: identity::ConsentPurpose::Marketing as i32,
                channels: vec![types::CommunicationChannel::Sms as i32],
                text: "We may text you.".into(),
                validity_days: 1,
                ..Default::default()
            },
        ))
        .await?;
    let mut old_grant = grant(&key, "grant-sms", &jana, "sms_offers", "pos");
    old_grant.get_mut().grant_time = Some(prost_types::Timestamp {
        seconds: chrono_now_secs() - 2 * 86_400,
        nanos: 0,
    });
    let expired = identity
        .grant_consent(old_grant)
        .await?
        .into_inner()
        .consent
        .expect("consent");
    assert_eq!(expired.state, identity::ConsentState::Expired as i32);
    let current = identity
        .list_customer_consents(authed(
            identity::ListCustomerConsentsRequest {
                customer_id: jana.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .consents;
    let sms = current
        .iter()
        .find(|c| c.consent_type_code == "sms_offers")
        .expect("listed");
    assert_eq!(sms.state, identity::ConsentState::Expired as i32);
    assert!(
        current.iter().all(|c| c.consent_type_code != "profiling"),
        "inactive types are not listed"
    );
    suite.stop().await
}

fn chrono_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn email_bounces_count_once_and_five_soft_bounces_or_one_hard_bounce_exclude_the_address()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Bounces", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut identity = suite.identity().await?;
    let jana = customer(&suite, &key, "jana", "jana@example.com").await?;
    let bounce = |idem: &str, email: &str, kind: identity::BounceType, message: &str| {
        authed(
            identity::RecordEmailBounceRequest {
                idempotency_key: idem.into(),
                customer_id: jana.clone(),
                email: email.into(),
                bounce_type: kind as i32,
                bounce_time: None,
                message_id: message.into(),
            },
            &key,
        )
    };
    let clean = identity
        .get_email_bounce_state(authed(
            identity::GetEmailBounceStateRequest {
                customer_id: jana.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .state
        .expect("state");
    assert_eq!(clean.email, "jana@example.com");
    assert_eq!(clean.soft_bounce_count, 0);
    assert!(!clean.excluded && !clean.hard_bounced);

    let mut last = clean;
    for i in 1..=4 {
        last = identity
            .record_email_bounce(bounce(
                &format!("soft-{i}"),
                "Jana@Example.com",
                identity::BounceType::Soft,
                &format!("message-{i}"),
            ))
            .await?
            .into_inner()
            .state
            .expect("state");
        assert_eq!(last.soft_bounce_count, i);
        assert!(!last.excluded, "{i} soft bounces do not exclude yet");
    }
    // The same bounce again (same key, or the same message under another key) counts once.
    let again = identity
        .record_email_bounce(bounce(
            "soft-4",
            "Jana@Example.com",
            identity::BounceType::Soft,
            "message-4",
        ))
        .await?
        .into_inner()
        .state
        .expect("state");
    assert_eq!(again, last);
    let same_message = identity
        .record_email_bounce(bounce(
            "soft-4-other-key",
            "jana@example.com",
            identity::BounceType::Soft,
            "message-4",
        ))
        .await?
        .into_inner()
        .state
        .expect("state");
    assert_eq!(same_message.soft_bounce_count, 4);
    // A bounce of an address the customer no longer has is ignored.
    let other = identity
        .record_email_bounce(bounce(
            "soft-old-address",
            "old@example.com",
            identity::BounceType::Hard,
            "",
        ))
        .await?
        .into_inner()
        .state
        .expect("state");
    assert_eq!(other.soft_bounce_count, 4);
    assert!(!other.hard_bounced);

    let fifth = identity
        .record_email_bounce(bounce(
            "soft-5",
            "jana@example.com",
            identity::BounceType::Soft,
            "message-5",
        ))
        .await?
        .into_inner()
        .state
        .expect("state");
    assert_eq!(fifth.soft_bounce_count, 5);
    assert!(fifth.excluded);
    assert!(fifth.last_bounce_time.is_some());

    let reset = identity
        .reset_email_bounce_state(authed(
            identity::ResetEmailBounceStateRequest {
                idempotency_key: "reset-1".into(),
                customer_id: jana.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .state
        .expect("state");
    assert_eq!(reset.soft_bounce_count, 0);
    assert!(!reset.excluded);
    assert!(reset.reset_time.is_some());

    let hard = identity
        .record_email_bounce(bounce(
            "hard-1",
            "jana@example.com",
            identity::BounceType::Hard,
            "message-6",
        ))
        .await?
        .into_inner()
        .state
        .expect("state");
    assert!(hard.hard_bounced && hard.excluded);
    let read = identity
        .get_email_bounce_state(authed(
            identity::GetEmailBounceStateRequest {
                customer_id: jana.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .state
        .expect("state");
    assert_eq!(read, hard);

    let bad = identity
        .record_email_bounce(authed(
            identity::RecordEmailBounceRequest {
                idempotency_key: "bad".into(),
                customer_id: jana.clone(),
                email: "nope".into(),
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect_err("invalid");
    let bad_fields = fields(&bad);
    assert!(bad_fields.contains(&"email".to_owned()), "{bad_fields:?}");
    assert!(
        bad_fields.contains(&"bounce_type".to_owned()),
        "{bad_fields:?}"
    );
    let foreign = identity
        .get_email_bounce_state(authed(
            identity::GetEmailBounceStateRequest {
                customer_id: jana.clone(),
            },
            &rival,
        ))
        .await
        .expect_err("not theirs");
    assert_eq!(foreign.code(), Code::NotFound);
    suite.stop().await
}
