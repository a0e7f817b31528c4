//! Tenancy: every identity RPC that takes an id answers NOT_FOUND when the id belongs to
//! another partner, even for a key holding every role. (The catalogue RPCs — contact sources,
//! interests, property definitions, relation types and relations — are covered the same way
//! in tests/customer_data.rs.)
use loyalty_proto::{
    identity::v1::{self as identity, identity_service_client::IdentityServiceClient},
    types::v1::{CommunicationChannel, IdentifierRef, IdentifierType},
};
use loyalty_testkit::{Backend, Suite, authed};
use tonic::{Code, transport::Channel};

const ALL_ROLES: &[identity::Role] = &[
    identity::Role::Admin,
    identity::Role::Pos,
    identity::Role::Marketing,
    identity::Role::Support,
];

fn card(value: &str) -> IdentifierRef {
    IdentifierRef {
        r#type: IdentifierType::Card as i32,
        value: value.into(),
    }
}

/// What partner "Shop" owns, by id.
struct Owned {
    partner_id: String,
    customer_id: String,
    other_customer_id: String,
    identifier_id: String,
    business_unit_id: String,
    api_key_id: String,
    consent_type_id: String,
    event_type_id: String,
}

async fn set_up(
    suite: &Suite,
    identity: &mut IdentityServiceClient<Channel>,
    key: &str,
    partner_id: String,
) -> anyhow::Result<Owned> {
    let customer = |idem: &'static str, number: &'static str| {
        let mut identity = identity.clone();
        async move {
            identity
                .create_customer(authed(
                    identity::CreateCustomerRequest {
                        idempotency_key: idem.into(),
                        customer: Some(identity::Customer {
                            first_name: "Jana".into(),
                            email: format!("{idem}@example.com"),
                            ..Default::default()
                        }),
                        identifiers: vec![card(number)],
                        ..Default::default()
                    },
                    key,
                ))
                .await
                .map(|r| r.into_inner())
        }
    };
    let jana = customer("jana", "3001").await?;
    let eva = customer("eva", "3002").await?;
    let unit = identity
        .create_business_unit(authed(
            identity::CreateBusinessUnitRequest {
                idempotency_key: "unit".into(),
                business_unit: Some(identity::BusinessUnit {
                    code: "PRG-01".into(),
                    display_name: "Praha".into(),
                    r#type: identity::BusinessUnitType::Store as i32,
                    country_code: "CZ".into(),
                    time_zone: "Europe/Prague".into(),
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .business_unit
        .expect("unit");
    let api_key = identity
        .create_api_key(suite.as_admin(identity::CreateApiKeyRequest {
            idempotency_key: "second-key".into(),
            partner_id: partner_id.clone(),
            display_name: "till".into(),
            roles: vec![identity::Role::Pos as i32],
        }))
        .await?
        .into_inner()
        .api_key
        .expect("key");
    let consent_type = identity
        .create_consent_type(authed(
            identity::CreateConsentTypeRequest {
                idempotency_key: "newsletter".into(),
                consent_type: Some(identity::ConsentType {
                    code: "newsletter".into(),
                    display_name: "Newsletter".into(),
                    purpose: identity::ConsentPurpose::Marketing as i32,
                    channels: vec![CommunicationChannel::Email as i32],
                    text: "Offers by email.".into(),
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .consent_type
        .expect("consent type");
    let event_type = identity
        .create_event_type(authed(
            identity::CreateEventTypeRequest {
                idempotency_key: "visit".into(),
                event_type: Some(identity::EventType {
                    code: "store_visit".into(),
                    display_name: "Store visit".into(),
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .event_type
        .expect("event type");
    Ok(Owned {
        partner_id,
        customer_id: jana.customer.expect("customer").id,
        other_customer_id: eva.customer.expect("customer").id,
        identifier_id: jana.identifiers[0].id.clone(),
        business_unit_id: unit.id,
        api_key_id: api_key.id,
        consent_type_id: consent_type.id,
        event_type_id: event_type.id,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn another_partners_ids_are_not_found_by_any_identity_rpc() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (shop_id, shop) = suite.partner_with_key("Shop", ALL_ROLES).await?;
    let (_, rival) = suite.partner_with_key("Rival", ALL_ROLES).await?;
    let mut id = suite.identity().await?;
    let o = set_up(&suite, &mut id, &shop, shop_id).await?;
    let r = rival.as_str();
    let mut outcomes: Vec<(&str, Result<(), tonic::Status>)> = Vec::new();
    macro_rules! call {
        ($name:literal, $method:ident, $req:expr) => {
            outcomes.push(($name, id.$method(authed($req, r)).await.map(|_| ())));
        };
    }
    let customer = || identity::Customer {
        id: o.customer_id.clone(),
        first_name: "Mallory".into(),
        ..Default::default()
    };
    let mask = |p: &str| {
        Some(prost_types::FieldMask {
            paths: vec![p.into()],
        })
    };

    call!(
        "GetPartner",
        get_partner,
        identity::GetPartnerRequest {
            partner_id: o.partner_id.clone(),
        }
    );
    call!(
        "UpdatePartner",
        update_partner,
        identity::UpdatePartnerRequest {
            idempotency_key: "p".into(),
            partner: Some(identity::Partner {
                id: o.partner_id.clone(),
                display_name: "Mine now".into(),
                ..Default::default()
            }),
            update_mask: mask("display_name"),
            ..Default::default()
        }
    );
    call!(
        "RevokeApiKey",
        revoke_api_key,
        identity::RevokeApiKeyRequest {
            idempotency_key: "k".into(),
            api_key_id: o.api_key_id.clone(),
        }
    );
    call!(
        "GetCustomer",
        get_customer,
        identity::GetCustomerRequest {
            customer_id: o.customer_id.clone(),
        }
    );
    call!(
        "UpdateCustomer",
        update_customer,
        identity::UpdateCustomerRequest {
            idempotency_key: "u".into(),
            customer: Some(customer()),
            update_mask: mask("first_name"),
            ..Default::default()
        }
    );
    call!(
        "AddIdentifier",
        add_identifier,
        identity::AddIdentifierRequest {
            idempotency_key: "a".into(),
            customer_id: o.customer_id.clone(),
            identifier: Some(card("4444")),
        }
    );
    call!(
        "ResolveIdentifier",
        resolve_identifier,
        identity::ResolveIdentifierRequest {
            identifier: Some(card("3001")),
        }
    );
    call!(
        "ListIdentifiers",
        list_identifiers,
        identity::ListIdentifiersRequest {
            customer_id: o.customer_id.clone(),
            ..Default::default()
        }
    );
    call!(
        "BlockIdentifier",
        block_identifier,
        identity::BlockIdentifierRequest {
            idempotency_key: "b".into(),
            identifier_id: o.identifier_id.clone(),
            reason: "stolen".into(),
        }
    );
    call!(
        "UnblockIdentifier",
        unblock_identifier,
        identity::UnblockIdentifierRequest {
            idempotency_key: "ub".into(),
            identifier_id: o.identifier_id.clone(),
        }
    );
    call!(
        "RemoveIdentifier",
        remove_identifier,
        identity::RemoveIdentifierRequest {
            idempotency_key: "rm".into(),
            identifier_id: o.identifier_id.clone(),
        }
    );
    call!(
        "ReplaceCard",
        replace_card,
        identity::ReplaceCardRequest {
            idempotency_key: "rc".into(),
            identifier_id: o.identifier_id.clone(),
            new_card_number: "5555".into(),
            old_card_state: identity::ReplacedCardState::Lost as i32,
            reason: "lost".into(),
        }
    );
    call!(
        "GetBusinessUnit",
        get_business_unit,
        identity::GetBusinessUnitRequest {
            business_unit_id: o.business_unit_id.clone(),
        }
    );
    call!(
        "UpdateBusinessUnit",
        update_business_unit,
        identity::UpdateBusinessUnitRequest {
            idempotency_key: "bu".into(),
            business_unit: Some(identity::BusinessUnit {
                id: o.business_unit_id.clone(),
                display_name: "Mine".into(),
                ..Default::default()
            }),
            update_mask: mask("display_name"),
            ..Default::default()
        }
    );
    call!(
        "DeleteBusinessUnit",
        delete_business_unit,
        identity::DeleteBusinessUnitRequest {
            idempotency_key: "dbu".into(),
            business_unit_id: o.business_unit_id.clone(),
            ..Default::default()
        }
    );
    call!(
        "BlockCustomer",
        block_customer,
        identity::BlockCustomerRequest {
            idempotency_key: "bc".into(),
            customer_id: o.customer_id.clone(),
            reason: "fraud".into(),
        }
    );
    call!(
        "UnblockCustomer",
        unblock_customer,
        identity::UnblockCustomerRequest {
            idempotency_key: "ubc".into(),
            customer_id: o.customer_id.clone(),
        }
    );
    call!(
        "MergeCustomers",
        merge_customers,
        identity::MergeCustomersRequest {
            idempotency_key: "m".into(),
            surviving_customer_id: o.customer_id.clone(),
            merged_customer_id: o.other_customer_id.clone(),
            reason: "duplicate".into(),
        }
    );
    call!(
        "ListAccountHistory",
        list_account_history,
        identity::ListAccountHistoryRequest {
            customer_id: o.customer_id.clone(),
            ..Default::default()
        }
    );
    call!(
        "EraseCustomer",
        erase_customer,
        identity::EraseCustomerRequest {
            idempotency_key: "e".into(),
            customer_id: o.customer_id.clone(),
            reason: "GDPR-1".into(),
        }
    );
    call!(
        "UpdateConsentType",
        update_consent_type,
        identity::UpdateConsentTypeRequest {
            idempotency_key: "ct".into(),
            consent_type: Some(identity::ConsentType {
                id: o.consent_type_id.clone(),
                display_name: "Mine".into(),
                ..Default::default()
            }),
            update_mask: mask("display_name"),
            ..Default::default()
        }
    );
    call!(
        "GrantConsent",
        grant_consent,
        identity::GrantConsentRequest {
            idempotency_key: "g".into(),
            customer_id: o.customer_id.clone(),
            consent_type_id: o.consent_type_id.clone(),
            source: "web".into(),
            ..Default::default()
        }
    );
    call!(
        "WithdrawConsent",
        withdraw_consent,
        identity::WithdrawConsentRequest {
            idempotency_key: "w".into(),
            customer_id: o.customer_id.clone(),
            consent_type_id: o.consent_type_id.clone(),
            source: "web".into(),
            ..Default::default()
        }
    );
    call!(
        "ListCustomerConsents",
        list_customer_consents,
        identity::ListCustomerConsentsRequest {
            customer_id: o.customer_id.clone(),
            ..Default::default()
        }
    );
    call!(
        "ListConsentHistory",
        list_consent_history,
        identity::ListConsentHistoryRequest {
            customer_id: o.customer_id.clone(),
            ..Default::default()
        }
    );
    call!(
        "GetEmailBounceState",
        get_email_bounce_state,
        identity::GetEmailBounceStateRequest {
            customer_id: o.customer_id.clone(),
        }
    );
    call!(
        "RecordEmailBounce",
        record_email_bounce,
        identity::RecordEmailBounceRequest {
            idempotency_key: "rb".into(),
            customer_id: o.customer_id.clone(),
            email: "jana@example.com".into(),
            bounce_type: identity::BounceType::Hard as i32,
            bounce_time: None,
            message_id: "m-1".into(),
        }
    );
    call!(
        "ResetEmailBounceState",
        reset_email_bounce_state,
        identity::ResetEmailBounceStateRequest {
            idempotency_key: "rs".into(),
            customer_id: o.customer_id.clone(),
        }
    );
    call!(
        "GetEventType",
        get_event_type,
        identity::GetEventTypeRequest {
            event_type_id: o.event_type_id.clone(),
        }
    );
    call!(
        "UpdateEventType",
        update_event_type,
        identity::UpdateEventTypeRequest {
            idempotency_key: "et".into(),
            event_type: Some(identity::EventType {
                id: o.event_type_id.clone(),
                display_name: "Mine".into(),
                ..Default::default()
            }),
            update_mask: mask("display_name"),
            ..Default::default()
        }
    );
    call!(
        "TrackEvent",
        track_event,
        identity::TrackEventRequest {
            idempotency_key: "t".into(),
            customer_id: o.customer_id.clone(),
            event_type_id: "page_view".into(),
            ..Default::default()
        }
    );
    call!(
        "ListCustomerEvents",
        list_customer_events,
        identity::ListCustomerEventsRequest {
            customer_id: o.customer_id.clone(),
            ..Default::default()
        }
    );
    let export = id
        .export_customer(authed(
            identity::ExportCustomerRequest {
                customer_id: o.customer_id.clone(),
            },
            r,
        ))
        .await;
    let export = match export {
        Ok(mut stream) => stream.get_mut().message().await.map(|_| ()),
        Err(e) => Err(e),
    };
    outcomes.push(("ExportCustomer", export));

    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|(_, r)| !matches!(r, Err(s) if s.code() == Code::NotFound))
        .map(|(name, r)| {
            format!(
                "{name}: {:?}",
                r.as_ref().map_err(|s| (s.code(), s.message()))
            )
        })
        .collect();
    assert!(wrong.is_empty(), "not NOT_FOUND: {wrong:#?}");
    assert!(outcomes.len() >= 33, "every RPC was called");

    // Nothing of the owner changed.
    let mine = id
        .get_customer(authed(
            identity::GetCustomerRequest {
                customer_id: o.customer_id.clone(),
            },
            &shop,
        ))
        .await?
        .into_inner();
    assert_eq!(mine.customer.expect("customer").first_name, "Jana");
    assert_eq!(
        mine.identifiers[0].state,
        identity::IdentifierState::Active as i32
    );
    suite.stop().await
}
