//! Customer data: contact source and interest catalogues, typed customer properties, relation
//! types and relations between customer accounts, all scoped to the partner.
use std::collections::BTreeMap;

use loyalty_proto::identity::v1 as identity;
use loyalty_testkit::{Backend, Suite, authed, error_reason as reason, violated_fields as fields};
use tonic::Code;

type Client = identity::identity_service_client::IdentityServiceClient<tonic::transport::Channel>;

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn contact_source(
    c: &mut Client,
    key: &str,
    code: &str,
) -> Result<identity::ContactSource, tonic::Status> {
    Ok(c.create_contact_source(authed(
        identity::CreateContactSourceRequest {
            idempotency_key: format!("cs-{code}"),
            contact_source: Some(identity::ContactSource {
                code: code.into(),
                display_name: format!("Source {code}"),
                ..Default::default()
            }),
        },
        key,
    ))
    .await?
    .into_inner()
    .contact_source
    .expect("contact source"))
}

async fn interest(
    c: &mut Client,
    key: &str,
    code: &str,
    parent: &str,
) -> Result<identity::Interest, tonic::Status> {
    Ok(c.create_interest(authed(
        identity::CreateInterestRequest {
            idempotency_key: format!("in-{code}"),
            interest: Some(identity::Interest {
                code: code.into(),
                display_name: format!("Interest {code}"),
                parent_interest_id: parent.into(),
                ..Default::default()
            }),
        },
        key,
    ))
    .await?
    .into_inner()
    .interest
    .expect("interest"))
}

async fn define(
    c: &mut Client,
    key: &str,
    d: identity::CustomerPropertyDefinition,
) -> Result<identity::CustomerPropertyDefinition, tonic::Status> {
    Ok(c.create_customer_property_definition(authed(
        identity::CreateCustomerPropertyDefinitionRequest {
            idempotency_key: format!("def-{}-{}-{}", d.key, d.data_type, d.required),
            definition: Some(d),
        },
        key,
    ))
    .await?
    .into_inner()
    .definition
    .expect("definition"))
}

fn property(key: &str, t: identity::PropertyDataType) -> identity::CustomerPropertyDefinition {
    identity::CustomerPropertyDefinition {
        key: key.into(),
        display_name: key.into(),
        data_type: t as i32,
        ..Default::default()
    }
}

async fn customer(
    c: &mut Client,
    key: &str,
    idem: &str,
    customer: identity::Customer,
) -> Result<identity::Customer, tonic::Status> {
    Ok(c.create_customer(authed(
        identity::CreateCustomerRequest {
            idempotency_key: idem.into(),
            customer: Some(customer),
            identifiers: vec![],
            ..Default::default()
        },
        key,
    ))
    .await?
    .into_inner()
    .customer
    .expect("customer"))
}

fn named(first_name: &str) -> identity::Customer {
    identity::Customer {
        first_name: first_name.into(),
        ..Default::default()
    }
}

async fn update_customer(
    c: &mut Client,
    key: &str,
    idem: &str,
    customer: identity::Customer,
    paths: &[&str],
) -> Result<identity::Customer, tonic::Status> {
    Ok(c.update_customer(authed(
        identity::UpdateCustomerRequest {
            idempotency_key: idem.into(),
            customer: Some(customer),
            update_mask: mask(paths),
            etag: String::new(),
        },
        key,
    ))
    .await?
    .into_inner()
    .customer
    .expect("customer"))
}

async fn get_customer(c: &mut Client, key: &str, id: &str) -> anyhow::Result<identity::Customer> {
    Ok(c.get_customer(authed(
        identity::GetCustomerRequest {
            customer_id: id.into(),
        },
        key,
    ))
    .await?
    .into_inner()
    .customer
    .expect("customer"))
}

async fn relation_type(
    c: &mut Client,
    key: &str,
    t: identity::RelationType,
) -> Result<identity::RelationType, tonic::Status> {
    Ok(c.create_relation_type(authed(
        identity::CreateRelationTypeRequest {
            idempotency_key: format!("rt-{}-{}", t.code, t.display_name),
            relation_type: Some(t),
        },
        key,
    ))
    .await?
    .into_inner()
    .relation_type
    .expect("relation type"))
}

async fn relate(
    c: &mut Client,
    key: &str,
    idem: &str,
    type_id: &str,
    from: &str,
    to: &str,
) -> Result<identity::CustomerRelation, tonic::Status> {
    Ok(c.create_customer_relation(authed(
        identity::CreateCustomerRelationRequest {
            idempotency_key: idem.into(),
            relation: Some(identity::CustomerRelation {
                relation_type_id: type_id.into(),
                from_customer_id: from.into(),
                to_customer_id: to.into(),
                note: "same address".into(),
                ..Default::default()
            }),
        },
        key,
    ))
    .await?
    .into_inner()
    .relation
    .expect("relation"))
}

async fn relations_of(
    c: &mut Client,
    key: &str,
    customer_id: &str,
) -> Result<Vec<identity::CustomerRelation>, tonic::Status> {
    Ok(c.list_customer_relations(authed(
        identity::ListCustomerRelationsRequest {
            customer_id: customer_id.into(),
            ..Default::default()
        },
        key,
    ))
    .await?
    .into_inner()
    .relations)
}

#[tokio::test(flavor = "multi_thread")]
async fn catalogues_have_unique_codes_etags_and_guarded_deletes() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (partner_id, key) = suite
        .partner_with_key("Shop", &[identity::Role::Marketing])
        .await?;
    let mut c = suite.identity().await?;
    let pos = c
        .create_api_key(suite.as_admin(identity::CreateApiKeyRequest {
            idempotency_key: "till".into(),
            partner_id,
            display_name: "till".into(),
            roles: vec![identity::Role::Pos as i32],
        }))
        .await?
        .into_inner()
        .secret;

    // Contact sources: unique codes, idempotent creates, pages by code.
    let eshop = contact_source(&mut c, &key, "eshop").await?;
    assert_eq!(
        contact_source(&mut c, &key, "eshop").await?,
        eshop,
        "a retry answers the same"
    );
    let taken = c
        .create_contact_source(authed(
            identity::CreateContactSourceRequest {
                idempotency_key: "another".into(),
                contact_source: Some(identity::ContactSource {
                    code: "eshop".into(),
                    display_name: "E-shop again".into(),
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let bad = contact_source(&mut c, &key, "E Shop").await.unwrap_err();
    assert_eq!(fields(&bad), ["contact_source.code"]);
    let denied = contact_source(&mut c, &pos, "kiosk").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let app = contact_source(&mut c, &key, "app").await?;
    let first = c
        .list_contact_sources(authed(
            identity::ListContactSourcesRequest {
                page_size: 1,
                ..Default::default()
            },
            &pos,
        ))
        .await?
        .into_inner();
    assert_eq!(first.contact_sources, vec![app.clone()]);
    let second = c
        .list_contact_sources(authed(
            identity::ListContactSourcesRequest {
                page_size: 1,
                page_token: first.next_page_token,
            },
            &pos,
        ))
        .await?
        .into_inner();
    assert_eq!(second.contact_sources, vec![eshop.clone()]);

    // Updates check the etag and change only the masked fields.
    let update = |idem: &str, etag: &str| {
        authed(
            identity::UpdateContactSourceRequest {
                idempotency_key: idem.into(),
                contact_source: Some(identity::ContactSource {
                    id: eshop.id.clone(),
                    code: "ignored".into(),
                    display_name: "Our e-shop".into(),
                    description: "www".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: etag.into(),
            },
            &key,
        )
    };
    let renamed = c
        .update_contact_source(update("rename", &eshop.etag))
        .await?
        .into_inner()
        .contact_source
        .expect("source");
    assert_eq!(
        (
            renamed.code.as_str(),
            renamed.display_name.as_str(),
            renamed.description.as_str()
        ),
        ("eshop", "Our e-shop", "")
    );
    assert_ne!(renamed.etag, eshop.etag);
    let stale = c
        .update_contact_source(update("rename again", &eshop.etag))
        .await
        .unwrap_err();
    assert_eq!(
        (stale.code(), reason(&stale).as_str()),
        (Code::FailedPrecondition, "ETAG_MISMATCH")
    );

    // Interests form a tree.
    let sport = interest(&mut c, &key, "sport", "").await?;
    let running = interest(&mut c, &key, "running", &sport.id).await?;
    let cooking = interest(&mut c, &key, "cooking", "").await?;
    let dup = c
        .create_interest(authed(
            identity::CreateInterestRequest {
                idempotency_key: "dup".into(),
                interest: Some(identity::Interest {
                    code: "sport".into(),
                    display_name: "Sport".into(),
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let children = c
        .list_interests(authed(
            identity::ListInterestsRequest {
                parent_interest_id: sport.id.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .interests;
    assert_eq!(children, vec![running.clone()]);
    let cycle = c
        .update_interest(authed(
            identity::UpdateInterestRequest {
                idempotency_key: "cycle".into(),
                interest: Some(identity::Interest {
                    id: sport.id.clone(),
                    parent_interest_id: running.id.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["parent_interest_id"]),
                etag: String::new(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&cycle), "INTEREST_CYCLE");

    // Customers may list only the partner's catalogue entries, and an active home unit.
    let unknown = uuid::Uuid::now_v7().to_string();
    let refused = customer(
        &mut c,
        &pos,
        "refused",
        identity::Customer {
            contact_source_ids: vec![eshop.id.clone(), unknown.clone()],
            interest_ids: vec![unknown.clone()],
            home_business_unit_id: unknown.clone(),
            ..named("Jana")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let mut got = fields(&refused);
    got.sort();
    assert_eq!(
        got,
        [
            "customer.contact_source_ids[1]",
            "customer.home_business_unit_id",
            "customer.interest_ids[0]"
        ]
    );
    let jana = customer(
        &mut c,
        &pos,
        "jana",
        identity::Customer {
            contact_source_ids: vec![eshop.id.clone()],
            interest_ids: vec![running.id.clone(), cooking.id.clone()],
            ..named("Jana")
        },
    )
    .await?;

    // A listed contact source cannot go; a listed interest is taken off the accounts.
    let in_use = c
        .delete_contact_source(authed(
            identity::DeleteContactSourceRequest {
                idempotency_key: "del-eshop".into(),
                contact_source_id: eshop.id.clone(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&in_use), "CONTACT_SOURCE_IN_USE");
    let has_children = c
        .delete_interest(authed(
            identity::DeleteInterestRequest {
                idempotency_key: "del-sport".into(),
                interest_id: sport.id.clone(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&has_children), "INTEREST_HAS_CHILDREN");
    for attempt in 0..2 {
        c.delete_interest(authed(
            identity::DeleteInterestRequest {
                idempotency_key: "del-running".into(),
                interest_id: running.id.clone(),
            },
            &key,
        ))
        .await
        .map_err(|e| anyhow::anyhow!("attempt {attempt}: {e}"))?;
    }
    let after = get_customer(&mut c, &pos, &jana.id).await?;
    assert_eq!(after.interest_ids, vec![cooking.id.clone()]);
    assert_ne!(after.etag, jana.etag, "the account changed");
    // Segmentation's criteria read both lists: the account's events carry them, and the
    // deleted interest leaves through one CustomerUpdated (the retry publishes nothing).
    use loyalty_proto::events::v1 as ev;
    let created: Vec<ev::CustomerCreated> = identity_events(&suite).await?;
    let created = created
        .iter()
        .find(|e| e.customer_id == jana.id)
        .expect("CustomerCreated");
    assert_eq!(created.contact_source_ids, vec![eshop.id.clone()]);
    // Identity keeps the ids sorted.
    let mut both = vec![running.id.clone(), cooking.id.clone()];
    both.sort();
    assert_eq!(created.interest_ids, both);
    let updates: Vec<ev::CustomerUpdated> = identity_events(&suite).await?;
    let updates: Vec<_> = updates
        .iter()
        .filter(|e| e.customer_id == jana.id)
        .collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].contact_source_ids, vec![eshop.id.clone()]);
    assert_eq!(updates[0].interest_ids, vec![cooking.id.clone()]);
    c.delete_contact_source(authed(
        identity::DeleteContactSourceRequest {
            idempotency_key: "del-app".into(),
            contact_source_id: app.id.clone(),
        },
        &key,
    ))
    .await?;
    // The freed code can be used again.
    let reborn = c
        .create_contact_source(authed(
            identity::CreateContactSourceRequest {
                idempotency_key: "app-again".into(),
                contact_source: Some(identity::ContactSource {
                    code: "app".into(),
                    display_name: "Mobile app".into(),
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?
        .into_inner()
        .contact_source
        .expect("source");
    assert_ne!(reborn.id, app.id);
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn customer_properties_are_checked_against_their_definitions() -> anyhow::Result<()> {
    use identity::PropertyDataType as T;
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let mut c = suite.identity().await?;

    // Before any definition, properties are free.
    let legacy = customer(
        &mut c,
        &key,
        "legacy",
        identity::Customer {
            properties: BTreeMap::from([("tier".to_owned(), "gold".to_owned())]),
            ..named("Old")
        },
    )
    .await?;

    define(&mut c, &key, property("vip", T::Boolean)).await?;
    let shoe = define(&mut c, &key, property("shoe_size", T::Integer)).await?;
    define(&mut c, &key, property("member_since", T::Date)).await?;
    define(&mut c, &key, property("last_visit", T::Timestamp)).await?;
    let nick = define(
        &mut c,
        &key,
        identity::CustomerPropertyDefinition {
            max_length: 5,
            ..property("nick", T::String)
        },
    )
    .await?;
    let level = define(
        &mut c,
        &key,
        identity::CustomerPropertyDefinition {
            allowed_values: vec!["Gold".into(), "Silver".into()],
            ..property("level", T::Enum)
        },
    )
    .await?;
    let taken = define(&mut c, &key, property("vip", T::String))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let no_values = define(&mut c, &key, property("colour", T::Enum))
        .await
        .unwrap_err();
    assert_eq!(fields(&no_values), ["definition.allowed_values"]);
    let untyped = define(&mut c, &key, property("colour", T::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(fields(&untyped), ["definition.data_type"]);

    let props = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let refused = customer(
        &mut c,
        &key,
        "bad",
        identity::Customer {
            properties: props(&[
                ("vip", "maybe"),
                ("shoe_size", "42.5"),
                ("member_since", "2024-13-01"),
                ("last_visit", "yesterday"),
                ("nick", "toolong"),
                ("level", "bronze"),
                ("tier", "gold"),
            ]),
            ..named("Bad")
        },
    )
    .await
    .unwrap_err();
    let mut got = fields(&refused);
    got.sort();
    assert_eq!(
        got,
        [
            "customer.properties[last_visit]",
            "customer.properties[level]",
            "customer.properties[member_since]",
            "customer.properties[nick]",
            "customer.properties[shoe_size]",
            "customer.properties[tier]",
            "customer.properties[vip]",
        ]
    );
    let good = customer(
        &mut c,
        &key,
        "good",
        identity::Customer {
            properties: props(&[
                ("vip", "TRUE"),
                ("shoe_size", "042"),
                ("member_since", "2024-02-29"),
                ("last_visit", "2024-05-01T12:00:00+02:00"),
                ("nick", "Jan"),
                ("level", "gold"),
            ]),
            ..named("Good")
        },
    )
    .await?;
    assert_eq!(
        good.properties,
        props(&[
            ("vip", "true"),
            ("shoe_size", "42"),
            ("member_since", "2024-02-29"),
            ("last_visit", "2024-05-01T10:00:00Z"),
            ("nick", "Jan"),
            ("level", "Gold"),
        ])
    );

    // A masked update checks the property it names.
    let change = |pairs: &[(&str, &str)]| identity::Customer {
        id: good.id.clone(),
        properties: props(pairs),
        ..Default::default()
    };
    let bad_update = update_customer(
        &mut c,
        &key,
        "u1",
        change(&[("shoe_size", "huge")]),
        &["properties.shoe_size"],
    )
    .await
    .unwrap_err();
    assert_eq!(fields(&bad_update), ["customer.properties[shoe_size]"]);
    let unknown = update_customer(
        &mut c,
        &key,
        "u2",
        change(&[("hair", "red")]),
        &["properties.hair"],
    )
    .await
    .unwrap_err();
    assert_eq!(fields(&unknown), ["customer.properties[hair]"]);
    let updated = update_customer(
        &mut c,
        &key,
        "u3",
        change(&[("vip", "False")]),
        &["properties.vip"],
    )
    .await?;
    assert_eq!(updated.properties["vip"], "false");
    // The legacy account keeps its free property while other fields change.
    let legacy = update_customer(
        &mut c,
        &key,
        "u4",
        identity::Customer {
            id: legacy.id.clone(),
            city: "Brno".into(),
            ..Default::default()
        },
        &["city"],
    )
    .await?;
    assert_eq!(legacy.properties["tier"], "gold");

    // Required properties: only once every account has one, needed on create, never removed.
    let required = define(
        &mut c,
        &key,
        identity::CustomerPropertyDefinition {
            required: true,
            ..property("region", T::String)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&required), "VALUES_VIOLATE_DEFINITION");
    let region = define(&mut c, &key, property("region", T::String)).await?;
    for (i, id) in [&good.id, &legacy.id].into_iter().enumerate() {
        update_customer(
            &mut c,
            &key,
            &format!("region-{i}"),
            identity::Customer {
                id: id.clone(),
                properties: props(&[("region", "south")]),
                ..Default::default()
            },
            &["properties.region"],
        )
        .await?;
    }
    c.update_customer_property_definition(authed(
        identity::UpdateCustomerPropertyDefinitionRequest {
            idempotency_key: "region-required".into(),
            definition: Some(identity::CustomerPropertyDefinition {
                id: region.id.clone(),
                required: true,
                ..Default::default()
            }),
            update_mask: mask(&["required"]),
            etag: region.etag.clone(),
        },
        &key,
    ))
    .await?;
    let missing = customer(&mut c, &key, "no-region", named("New"))
        .await
        .unwrap_err();
    assert_eq!(fields(&missing), ["customer.properties[region]"]);
    let removed = update_customer(
        &mut c,
        &key,
        "drop-region",
        change(&[]),
        &["properties.region"],
    )
    .await
    .unwrap_err();
    assert_eq!(fields(&removed), ["customer.properties[region]"]);

    // Definitions change only where existing values still fit; key and type are immutable.
    let narrow = |idem: &str, values: &[&str], etag: &str| {
        authed(
            identity::UpdateCustomerPropertyDefinitionRequest {
                idempotency_key: idem.into(),
                definition: Some(identity::CustomerPropertyDefinition {
                    id: level.id.clone(),
                    allowed_values: values.iter().map(|v| (*v).to_owned()).collect(),
                    ..Default::default()
                }),
                update_mask: mask(&["allowed_values"]),
                etag: etag.into(),
            },
            &key,
        )
    };
    let misfit = c
        .update_customer_property_definition(narrow("silver-only", &["Silver"], ""))
        .await
        .unwrap_err();
    assert_eq!(reason(&misfit), "VALUES_VIOLATE_DEFINITION");
    let widened = c
        .update_customer_property_definition(narrow(
            "platinum",
            &["Gold", "Silver", "Platinum"],
            &level.etag,
        ))
        .await?
        .into_inner()
        .definition
        .expect("definition");
    assert_eq!(widened.allowed_values.len(), 3);
    let retry = c
        .update_customer_property_definition(narrow(
            "platinum",
            &["Gold", "Silver", "Platinum"],
            &level.etag,
        ))
        .await?
        .into_inner()
        .definition
        .expect("definition");
    assert_eq!(retry, widened, "a retry answers the same");
    let immutable = c
        .update_customer_property_definition(authed(
            identity::UpdateCustomerPropertyDefinitionRequest {
                idempotency_key: "retype".into(),
                definition: Some(identity::CustomerPropertyDefinition {
                    id: nick.id.clone(),
                    data_type: T::Integer as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["data_type"]),
                etag: String::new(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&immutable), ["definition.data_type"]);

    // Deleting a definition deletes the property's values.
    c.delete_customer_property_definition(authed(
        identity::DeleteCustomerPropertyDefinitionRequest {
            idempotency_key: "del-shoe".into(),
            definition_id: shoe.id.clone(),
        },
        &key,
    ))
    .await?;
    let after = get_customer(&mut c, &key, &good.id).await?;
    assert!(!after.properties.contains_key("shoe_size"));
    assert_eq!(after.properties["vip"], "false");
    let listed = c
        .list_customer_property_definitions(authed(
            identity::ListCustomerPropertyDefinitionsRequest::default(),
            &key,
        ))
        .await?
        .into_inner()
        .definitions;
    let keys: Vec<&str> = listed.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "last_visit",
            "level",
            "member_since",
            "nick",
            "region",
            "vip"
        ]
    );
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn relations_link_customers_both_ways_once_per_type_within_limits() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let mut c = suite.identity().await?;
    let household = relation_type(
        &mut c,
        &key,
        identity::RelationType {
            code: "household".into(),
            display_name: "Household".into(),
            from_role_name: "member".into(),
            symmetric: true,
            max_relations_per_customer: 2,
            share_benefits: true,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(household.to_role_name, "member");
    let referral = relation_type(
        &mut c,
        &key,
        identity::RelationType {
            code: "referral".into(),
            display_name: "Referral".into(),
            from_role_name: "referrer".into(),
            to_role_name: "referred".into(),
            ..Default::default()
        },
    )
    .await?;
    let taken = relation_type(
        &mut c,
        &key,
        identity::RelationType {
            code: "household".into(),
            display_name: "Again".into(),
            from_role_name: "x".into(),
            to_role_name: "y".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let (a, b, d, e) = (
        customer(&mut c, &key, "a", named("Adam")).await?,
        customer(&mut c, &key, "b", named("Bara")).await?,
        customer(&mut c, &key, "d", named("Dana")).await?,
        customer(&mut c, &key, "e", named("Emil")).await?,
    );

    let ab = relate(&mut c, &key, "ab", &household.id, &a.id, &b.id).await?;
    let again = relate(&mut c, &key, "ab", &household.id, &a.id, &b.id).await?;
    assert_eq!(again, ab, "a retry answers the same relation");
    let reverse = relate(&mut c, &key, "ba", &household.id, &b.id, &a.id)
        .await
        .unwrap_err();
    assert_eq!(reverse.code(), Code::AlreadyExists);
    let own = relate(&mut c, &key, "aa", &household.id, &a.id, &a.id)
        .await
        .unwrap_err();
    assert_eq!(
        (own.code(), fields(&own)),
        (
            Code::InvalidArgument,
            vec!["relation.to_customer_id".to_owned()]
        )
    );
    let no_type = relate(
        &mut c,
        &key,
        "x",
        &uuid::Uuid::now_v7().to_string(),
        &a.id,
        &b.id,
    )
    .await
    .unwrap_err();
    assert_eq!(no_type.code(), Code::NotFound);
    let no_customer = relate(
        &mut c,
        &key,
        "y",
        &household.id,
        &a.id,
        &uuid::Uuid::now_v7().to_string(),
    )
    .await
    .unwrap_err();
    assert_eq!(no_customer.code(), Code::NotFound);
    let ref_ad = relate(&mut c, &key, "ad", &referral.id, &a.id, &d.id).await?;
    relate(&mut c, &key, "ad-household", &household.id, &a.id, &d.id).await?;
    let limit = relate(&mut c, &key, "ea", &household.id, &e.id, &a.id)
        .await
        .unwrap_err();
    assert_eq!(reason(&limit), "RELATION_LIMIT_REACHED");

    // Both sides see the relation; newest first; filter by type; pages.
    let of_a = relations_of(&mut c, &key, &a.id).await?;
    assert_eq!(of_a.len(), 3);
    assert!(of_a.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(relations_of(&mut c, &key, &b.id).await?, vec![ab.clone()]);
    let referrals = c
        .list_customer_relations(authed(
            identity::ListCustomerRelationsRequest {
                customer_id: d.id.clone(),
                relation_type_id: referral.id.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .relations;
    assert_eq!(referrals, vec![ref_ad.clone()]);
    let page = c
        .list_customer_relations(authed(
            identity::ListCustomerRelationsRequest {
                customer_id: a.id.clone(),
                page_size: 2,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    let rest = c
        .list_customer_relations(authed(
            identity::ListCustomerRelationsRequest {
                customer_id: a.id.clone(),
                page_size: 2,
                page_token: page.next_page_token.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!((page.relations.len(), rest.relations.len()), (2, 1));
    assert!(rest.next_page_token.is_empty());

    // A type in use cannot go; deleting the relation frees the pair and the type.
    let in_use = c
        .delete_relation_type(authed(
            identity::DeleteRelationTypeRequest {
                idempotency_key: "del-ref".into(),
                relation_type_id: referral.id.clone(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&in_use), "RELATION_TYPE_IN_USE");
    for _ in 0..2 {
        c.delete_customer_relation(authed(
            identity::DeleteCustomerRelationRequest {
                idempotency_key: "del-ad".into(),
                relation_id: ref_ad.id.clone(),
            },
            &key,
        ))
        .await?;
    }
    assert!(
        relations_of(&mut c, &key, &d.id)
            .await?
            .iter()
            .all(|r| r.id != ref_ad.id)
    );
    c.delete_relation_type(authed(
        identity::DeleteRelationTypeRequest {
            idempotency_key: "del-ref-2".into(),
            relation_type_id: referral.id.clone(),
        },
        &key,
    ))
    .await?;

    // Updates: code and symmetry are immutable; the etag guards.
    let renamed = c
        .update_relation_type(authed(
            identity::UpdateRelationTypeRequest {
                idempotency_key: "rename".into(),
                relation_type: Some(identity::RelationType {
                    id: household.id.clone(),
                    display_name: "Family".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: household.etag.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .relation_type
        .expect("type");
    assert_eq!(
        (renamed.display_name.as_str(), renamed.code.as_str()),
        ("Family", "household")
    );
    let immutable = c
        .update_relation_type(authed(
            identity::UpdateRelationTypeRequest {
                idempotency_key: "unsym".into(),
                relation_type: Some(identity::RelationType {
                    id: household.id.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["symmetric"]),
                etag: String::new(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&immutable), ["relation_type.symmetric"]);

    // Each change was published once, retries included.
    let changes = relation_events(&suite).await?;
    let of = |id: &str, deleted: bool| {
        changes
            .iter()
            .filter(|e| e.relation_id == id && e.deleted == deleted)
            .count()
    };
    assert_eq!((of(&ab.id, false), of(&ab.id, true)), (1, 0));
    assert_eq!((of(&ref_ad.id, false), of(&ref_ad.id, true)), (1, 1));
    let created = changes
        .iter()
        .find(|e| e.relation_id == ab.id)
        .expect("event");
    assert_eq!(
        (
            created.from_customer_id.as_str(),
            created.to_customer_id.as_str()
        ),
        (a.id.as_str(), b.id.as_str())
    );
    suite.stop().await
}

/// Every `CustomerRelationChanged` in identity's outbox, in order.
async fn relation_events(
    suite: &Suite,
) -> anyhow::Result<Vec<loyalty_proto::events::v1::CustomerRelationChanged>> {
    identity_events(suite).await
}

/// Every event of type `E` in identity's outbox, in order.
async fn identity_events<E: loyalty_platform::events::DomainEvent>(
    suite: &Suite,
) -> anyhow::Result<Vec<E>> {
    use loyalty_proto::events::v1 as ev;
    let mut feed = ev::event_feed_service_client::EventFeedServiceClient::new(
        suite.channel("identity").await?,
    );
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let events = feed
            .read_events(suite.as_admin(ev::ReadEventsRequest {
                after_sequence: after,
                page_size: 1000,
            }))
            .await?
            .into_inner()
            .events;
        let Some(last) = events.last() else {
            return Ok(out);
        };
        after = last.sequence;
        out.extend(
            events
                .iter()
                .filter_map(loyalty_platform::events::decode::<E>),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_partners_customer_data_is_not_found() -> anyhow::Result<()> {
    use identity::PropertyDataType as T;
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut c = suite.identity().await?;
    let source = contact_source(&mut c, &key, "eshop").await?;
    let hobby = interest(&mut c, &key, "hobby", "").await?;
    let def = define(&mut c, &key, property("vip", T::Boolean)).await?;
    let household = relation_type(
        &mut c,
        &key,
        identity::RelationType {
            code: "household".into(),
            display_name: "Household".into(),
            from_role_name: "member".into(),
            symmetric: true,
            ..Default::default()
        },
    )
    .await?;
    let a = customer(&mut c, &key, "a", named("Adam")).await?;
    let b = customer(&mut c, &key, "b", named("Bara")).await?;
    let ab = relate(&mut c, &key, "ab", &household.id, &a.id, &b.id).await?;
    let r = customer(&mut c, &rival, "r", named("Rudolf")).await?;
    let rival_type = relation_type(
        &mut c,
        &rival,
        identity::RelationType {
            code: "household".into(),
            display_name: "Household".into(),
            from_role_name: "member".into(),
            symmetric: true,
            ..Default::default()
        },
    )
    .await?;

    let not_found = |what: &str, r: Result<(), tonic::Status>| match r {
        Err(s) if s.code() == Code::NotFound => {}
        other => panic!("{what}: expected NOT_FOUND, got {other:?}"),
    };
    let rk = rival.as_str();
    not_found(
        "UpdateContactSource",
        c.update_contact_source(authed(
            identity::UpdateContactSourceRequest {
                idempotency_key: "1".into(),
                contact_source: Some(identity::ContactSource {
                    id: source.id.clone(),
                    display_name: "Mine".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            rk,
        ))
        .await
        .map(drop),
    );
    not_found(
        "DeleteContactSource",
        c.delete_contact_source(authed(
            identity::DeleteContactSourceRequest {
                idempotency_key: "2".into(),
                contact_source_id: source.id.clone(),
            },
            rk,
        ))
        .await
        .map(drop),
    );
    not_found(
        "UpdateInterest",
        c.update_interest(authed(
            identity::UpdateInterestRequest {
                idempotency_key: "3".into(),
                interest: Some(identity::Interest {
                    id: hobby.id.clone(),
                    display_name: "Mine".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            rk,
        ))
        .await
        .map(drop),
    );
    not_found(
        "CreateInterest with a foreign parent",
        interest(&mut c, rk, "child", &hobby.id).await.map(drop),
    );
    not_found(
        "DeleteInterest",
        c.delete_interest(authed(
            identity::DeleteInterestRequest {
                idempotency_key: "4".into(),
                interest_id: hobby.id.clone(),
            },
            rk,
        ))
        .await
        .map(drop),
    );
    not_found(
        "UpdateCustomerPropertyDefinition",
        c.update_customer_property_definition(authed(
            identity::UpdateCustomerPropertyDefinitionRequest {
                idempotency_key: "5".into(),
                definition: Some(identity::CustomerPropertyDefinition {
                    id: def.id.clone(),
                    display_name: "Mine".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            rk,
        ))
        .await
        .map(drop),
    );
    not_found(
        "DeleteCustomerPropertyDefinition",
        c.delete_customer_property_definition(authed(
            identity::DeleteCustomerPropertyDefinitionRequest {
                idempotency_key: "6".into(),
                definition_id: def.id.clone(),
            },
            rk,
        ))
        .await
        .map(drop),
    );
    not_found(
        "UpdateRelationType",
        c.update_relation_type(authed(
            identity::UpdateRelationTypeRequest {
                idempotency_key: "7".into(),
                relation_type: Some(identity::RelationType {
                    id: household.id.clone(),
                    display_name: "Mine".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            rk,
        ))
        .await
        .map(drop),
    );
    not_found(
        "DeleteRelationType",
        c.delete_relation_type(authed(
            identity::DeleteRelationTypeRequest {
                idempotency_key: "8".into(),
                relation_type_id: household.id.clone(),
            },
            rk,
        ))
        .await
        .map(drop),
    );
    not_found(
        "CreateCustomerRelation with a foreign type",
        relate(&mut c, rk, "9", &household.id, &r.id, &a.id)
            .await
            .map(drop),
    );
    not_found(
        "CreateCustomerRelation with a foreign customer",
        relate(&mut c, rk, "10", &rival_type.id, &r.id, &a.id)
            .await
            .map(drop),
    );
    not_found(
        "ListCustomerRelations",
        relations_of(&mut c, rk, &a.id).await.map(drop),
    );
    not_found(
        "DeleteCustomerRelation",
        c.delete_customer_relation(authed(
            identity::DeleteCustomerRelationRequest {
                idempotency_key: "11".into(),
                relation_id: ab.id.clone(),
            },
            rk,
        ))
        .await
        .map(drop),
    );

    // Lists show only the caller's entries; the shop's catalogue is not the rival's.
    let sources = c
        .list_contact_sources(authed(identity::ListContactSourcesRequest::default(), rk))
        .await?
        .into_inner()
        .contact_sources;
    assert!(sources.is_empty());
    let interests = c
        .list_interests(authed(identity::ListInterestsRequest::default(), rk))
        .await?
        .into_inner()
        .interests;
    assert!(interests.is_empty());
    let definitions = c
        .list_customer_property_definitions(authed(
            identity::ListCustomerPropertyDefinitionsRequest::default(),
            rk,
        ))
        .await?
        .into_inner()
        .definitions;
    assert!(definitions.is_empty());
    let types = c
        .list_relation_types(authed(identity::ListRelationTypesRequest::default(), rk))
        .await?
        .into_inner()
        .relation_types;
    assert_eq!(types, vec![rival_type]);
    let foreign = customer(
        &mut c,
        rk,
        "foreign-source",
        identity::Customer {
            contact_source_ids: vec![source.id.clone()],
            ..named("Rita")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(fields(&foreign), ["customer.contact_source_ids[0]"]);
    // The rival has no definitions, so free properties are still fine there.
    customer(
        &mut c,
        rk,
        "free",
        identity::Customer {
            properties: BTreeMap::from([("vip".to_owned(), "maybe".to_owned())]),
            ..named("Rita")
        },
    )
    .await?;
    // Nothing of the shop changed.
    assert_eq!(relations_of(&mut c, &key, &a.id).await?, vec![ab]);
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn customer_data_works_on_sqlite() -> anyhow::Result<()> {
    use identity::PropertyDataType as T;
    let suite = Suite::start(Backend::Sqlite).await?;
    let (_, key) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let mut c = suite.identity().await?;
    let source = contact_source(&mut c, &key, "kiosk").await?;
    let wine = interest(&mut c, &key, "wine", "").await?;
    define(
        &mut c,
        &key,
        identity::CustomerPropertyDefinition {
            allowed_values: vec!["Gold".into(), "Silver".into()],
            ..property("level", T::Enum)
        },
    )
    .await?;
    let jana = customer(
        &mut c,
        &key,
        "jana",
        identity::Customer {
            contact_source_ids: vec![source.id.clone()],
            interest_ids: vec![wine.id.clone()],
            properties: BTreeMap::from([("level".to_owned(), "silver".to_owned())]),
            ..named("Jana")
        },
    )
    .await?;
    assert_eq!(jana.properties["level"], "Silver");
    let petr = customer(&mut c, &key, "petr", named("Petr")).await?;
    let family = relation_type(
        &mut c,
        &key,
        identity::RelationType {
            code: "family".into(),
            display_name: "Family".into(),
            from_role_name: "parent".into(),
            to_role_name: "child".into(),
            ..Default::default()
        },
    )
    .await?;
    let rel = relate(&mut c, &key, "jp", &family.id, &jana.id, &petr.id).await?;
    assert_eq!(relations_of(&mut c, &key, &petr.id).await?, vec![rel]);
    let in_use = c
        .delete_contact_source(authed(
            identity::DeleteContactSourceRequest {
                idempotency_key: "del-kiosk".into(),
                contact_source_id: source.id.clone(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&in_use), "CONTACT_SOURCE_IN_USE");
    c.delete_interest(authed(
        identity::DeleteInterestRequest {
            idempotency_key: "del-wine".into(),
            interest_id: wine.id.clone(),
        },
        &key,
    ))
    .await?;
    assert!(
        get_customer(&mut c, &key, &jana.id)
            .await?
            .interest_ids
            .is_empty()
    );
    suite.stop().await
}
