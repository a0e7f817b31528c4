//! CheckContactability: the send-time check of campaigns. For a batch of customers, in the
//! request's order, either the address to send to now (with the customer's name) or why not:
//! consents (data processing; marketing covering the channel), the address for the channel,
//! the email bounce state, and customers that are not the partner's.
use loyalty_platform::client::for_partner;
use loyalty_proto::{identity::v1 as identity, types::v1 as types};
use loyalty_testkit::{
    Backend, Suite, authed, consent_type, create_customer, email_newsletter, grant_consent,
    violated_fields as fields,
};
use tonic::Code;
use uuid::Uuid;

use identity::{ContactPurpose as Purpose, ContactRefusal as Refusal};
use types::CommunicationChannel as Channel;

/// A customer with an email (and a phone, when given); answers their id.
async fn customer_with(
    suite: &Suite,
    key: &str,
    first_name: &str,
    email: &str,
    phone: &str,
) -> anyhow::Result<String> {
    Ok(suite
        .identity()
        .await?
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: format!("customer-{first_name}"),
                customer: Some(identity::Customer {
                    first_name: first_name.into(),
                    last_name: "Nováková".into(),
                    email: email.into(),
                    phone: phone.into(),
                    ..Default::default()
                }),
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

fn check(ids: &[&str], channel: Channel, purpose: Purpose) -> identity::CheckContactabilityRequest {
    identity::CheckContactabilityRequest {
        customer_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
        channel: channel as i32,
        purpose: purpose as i32,
    }
}

/// (customer id, refusal, address) of each answer, in order.
fn answers(response: identity::CheckContactabilityResponse) -> Vec<(String, Refusal, String)> {
    response
        .contactabilities
        .into_iter()
        .map(|c| {
            let refusal = c.refusal();
            (c.customer_id, refusal, c.address)
        })
        .collect()
}

fn answer(id: &str, refusal: Refusal, address: &str) -> (String, Refusal, String) {
    (id.to_owned(), refusal, address.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn contactability_follows_consents_addresses_and_bounces_in_request_order()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (partner_id, key) = suite
        .partner_with_key("Shop", &[identity::Role::Marketing])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Marketing])
        .await?;
    let mut identity = suite.identity().await?;

    let gdpr = consent_type(
        &mut identity,
        &key,
        "gdpr",
        identity::ConsentPurpose::DataProcessing,
        &[],
    )
    .await?;
    let newsletter = email_newsletter(&mut identity, &key).await?;
    let sms_offers = consent_type(
        &mut identity,
        &key,
        "sms_offers",
        identity::ConsentPurpose::Marketing,
        &[Channel::Sms],
    )
    .await?;

    // Jana agreed to both; Petr only to data processing; Eva to nothing; Ivan to SMS offers
    // but has no phone; Anna's email hard-bounced.
    let jana = customer_with(&suite, &key, "Jana", "jana@example.com", "+420777123456").await?;
    let petr = customer_with(&suite, &key, "Petr", "petr@example.com", "").await?;
    let eva = create_customer(&mut identity, &key, "Eva", "Brno").await?;
    let ivan = create_customer(&mut identity, &key, "Ivan", "Praha").await?;
    let anna = customer_with(&suite, &key, "Anna", "anna@example.com", "").await?;
    let foreign = customer_with(&suite, &rival, "Olga", "olga@example.com", "").await?;
    for (customer, types) in [
        (&jana, vec![&gdpr, &newsletter]),
        (&petr, vec![&gdpr]),
        (&ivan, vec![&gdpr, &sms_offers]),
        (&anna, vec![&gdpr, &newsletter]),
    ] {
        for t in types {
            grant_consent(&mut identity, &key, customer, t).await?;
        }
    }
    identity
        .record_email_bounce(authed(
            identity::RecordEmailBounceRequest {
                idempotency_key: "bounce-anna".into(),
                customer_id: anna.clone(),
                email: "anna@example.com".into(),
                bounce_type: identity::BounceType::Hard as i32,
                ..Default::default()
            },
            &key,
        ))
        .await?;
    let unknown = Uuid::now_v7().to_string();

    // Marketing by email: one call for the whole batch, answered in the request's order.
    let batch = [
        jana.as_str(),
        petr.as_str(),
        eva.as_str(),
        unknown.as_str(),
        anna.as_str(),
        foreign.as_str(),
    ];
    let response = identity
        .check_contactability(authed(
            check(&batch, Channel::Email, Purpose::Marketing),
            &key,
        ))
        .await?
        .into_inner();
    let first = response.contactabilities[0].clone();
    assert_eq!(
        (first.first_name.as_str(), first.last_name.as_str()),
        ("Jana", "Nováková")
    );
    assert_eq!(
        answers(response),
        vec![
            answer(&jana, Refusal::Unspecified, "jana@example.com"),
            answer(&petr, Refusal::NoMarketingConsent, ""),
            answer(&eva, Refusal::NoDataProcessingConsent, ""),
            answer(&unknown, Refusal::UnknownCustomer, ""),
            answer(&anna, Refusal::EmailBounced, ""),
            answer(&foreign, Refusal::UnknownCustomer, ""),
        ]
    );

    // A service message needs consent to data processing only. Campaigns asks with the
    // platform key acting for the partner (served as the partner's `service` role).
    let partner = Uuid::parse_str(&partner_id)?;
    let service = identity
        .check_contactability(for_partner(
            check(&[&petr, &eva], Channel::Email, Purpose::Service),
            suite.admin_key(),
            partner,
        ))
        .await?
        .into_inner();
    assert_eq!(
        answers(service),
        vec![
            answer(&petr, Refusal::Unspecified, "petr@example.com"),
            answer(&eva, Refusal::NoDataProcessingConsent, ""),
        ]
    );

    // SMS goes to the phone: Ivan agreed but has none; Jana's newsletter is for email only,
    // and only a bounce of email counts; push addresses the customer id.
    let sms = identity
        .check_contactability(authed(
            check(&[&ivan, &jana], Channel::Sms, Purpose::Marketing),
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(
        answers(sms),
        vec![
            answer(&ivan, Refusal::NoAddress, ""),
            answer(&jana, Refusal::NoMarketingConsent, ""),
        ]
    );
    let service_sms = identity
        .check_contactability(authed(
            check(&[&jana, &anna], Channel::Sms, Purpose::Service),
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(
        answers(service_sms),
        vec![
            answer(&jana, Refusal::Unspecified, "+420777123456"),
            answer(&anna, Refusal::NoAddress, ""),
        ]
    );
    let push = identity
        .check_contactability(authed(
            check(&[&anna], Channel::Push, Purpose::Service),
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(
        answers(push),
        vec![answer(&anna, Refusal::Unspecified, &anna)]
    );

    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_must_hold_1_to_1000_distinct_uuids_a_channel_and_a_purpose() -> anyhow::Result<()>
{
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Shop", &[identity::Role::Service])
        .await?;
    let mut identity = suite.identity().await?;
    let refused = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        fields(&status)
    };

    let empty = identity
        .check_contactability(authed(check(&[], Channel::Email, Purpose::Marketing), &key))
        .await
        .expect_err("an empty batch");
    assert_eq!(refused(empty), vec!["customer_ids"]);

    let many: Vec<String> = (0..1001).map(|_| Uuid::now_v7().to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let too_many = identity
        .check_contactability(authed(
            check(&many, Channel::Email, Purpose::Marketing),
            &key,
        ))
        .await
        .expect_err("1001 customers");
    assert_eq!(refused(too_many), vec!["customer_ids"]);
    let thousand = identity
        .check_contactability(authed(
            check(&many[..1000], Channel::Email, Purpose::Marketing),
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(thousand.contactabilities.len(), 1000);
    assert!(
        thousand
            .contactabilities
            .iter()
            .all(|c| c.refusal() == Refusal::UnknownCustomer)
    );

    let faulty = identity
        .check_contactability(authed(
            identity::CheckContactabilityRequest {
                customer_ids: vec![many[0].into(), "nope".into(), many[0].into()],
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect_err("malformed, repeated, no channel, no purpose");
    assert_eq!(
        refused(faulty),
        vec!["customer_ids[1]", "customer_ids[2]", "channel", "purpose"]
    );

    // The platform key acting for no partner is no partner's caller.
    let denied = identity
        .check_contactability(suite.as_admin(check(&[many[0]], Channel::Email, Purpose::Marketing)))
        .await
        .expect_err("no partner");
    assert_eq!(denied.code(), Code::PermissionDenied);

    suite.stop().await
}
