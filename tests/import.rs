//! Bulk customer import: the `loyalty import customers` command against a running identity
//! service, and the `ImportCustomers` stream itself.
use loyalty_proto::{
    identity::v1::{self as identity, ImportCustomerRow, ImportCustomersRequest},
    types::v1::{IdentifierRef, IdentifierType},
};
use loyalty_testkit::{Backend, Suite, authed};
use tonic::Code;

fn card(value: &str) -> IdentifierRef {
    IdentifierRef {
        r#type: IdentifierType::Card as i32,
        value: value.into(),
    }
}

async fn resolve(
    suite: &Suite,
    key: &str,
    value: &str,
) -> Result<identity::Customer, tonic::Status> {
    let mut identity = suite.identity().await.expect("identity");
    let found = identity
        .resolve_identifier(authed(
            identity::ResolveIdentifierRequest {
                identifier: Some(card(value)),
            },
            key,
        ))
        .await?
        .into_inner();
    let customer = identity
        .get_customer(authed(
            identity::GetCustomerRequest {
                customer_id: found.customer_id,
            },
            key,
        ))
        .await?
        .into_inner();
    Ok(customer.customer.expect("customer"))
}

fn import(suite: &Suite, key: &str, file: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .args(["import", "customers", "--quiet", "--endpoint"])
        .arg(suite.endpoint("identity"))
        .arg(file)
        .env("LOYALTY_API_KEY", key)
        .output()
        .expect("run loyalty import")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_imports_good_rows_reports_bad_ones_by_line_and_skips_them_on_a_rerun()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Importer", &[identity::Role::Admin])
        .await?;
    let mut identity = suite.identity().await?;
    identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "existing".into(),
                customer: Some(identity::Customer {
                    first_name: "Existing".into(),
                    ..Default::default()
                }),
                identifiers: vec![card("9000")],
                ..Default::default()
            },
            &key,
        ))
        .await?;

    let file = suite.dir().join("customers.csv");
    std::fs::write(
        &file,
        "first_name,last_name,email,gender,card,property.tier\n\
         Jana,Nová,jana@example.com,female,1001,gold\n\
         Petr,Malý,not-an-email,male,1002,\n\
         Eva,Krátká,eva@example.com,robot,1003,\n\
         Adam,Dvořák,adam@example.com,male,9000,\n\
         Olga,Svobodová,olga@example.com,female,1001,\n\
         Karel,Novák,karel@example.com,,1006;1007,silver\n",
    )?;

    let out = import(&suite, &key, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused rows make the command fail");
    assert!(
        stdout.contains("imported 2 customers"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("refused 4"), "{stdout}");
    assert!(stderr.contains("line 3: customer.email"), "{stderr}");
    assert!(stderr.contains("line 4: customer.gender"), "{stderr}");
    assert!(
        stderr.contains("line 5: identifiers[0].value"),
        "taken card: {stderr}"
    );
    assert!(
        stderr.contains("line 6: identifiers[0].value"),
        "a card repeated within the file: {stderr}"
    );

    let jana = resolve(&suite, &key, "1001").await?;
    assert_eq!(
        (jana.first_name.as_str(), jana.last_name.as_str()),
        ("Jana", "Nová")
    );
    assert_eq!(
        jana.properties.get("tier").map(String::as_str),
        Some("gold")
    );
    let karel = resolve(&suite, &key, "1007").await?;
    assert_eq!(karel.id, resolve(&suite, &key, "1006").await?.id);
    assert_eq!(
        resolve(&suite, &key, "1002").await.unwrap_err().code(),
        Code::NotFound,
        "nothing of a refused row is written"
    );

    let again = import(&suite, &key, &file);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("imported 0 customers"), "{stdout}");
    assert!(stdout.contains("skipped 2 already imported"), "{stdout}");
    suite.stop().await
}

fn rows(from: usize, count: usize) -> Vec<ImportCustomerRow> {
    (from..from + count)
        .map(|i| ImportCustomerRow {
            line_number: i as i64 + 2,
            customer: Some(identity::Customer {
                first_name: format!("Customer {i}"),
                email: format!("c{i}@example.com"),
                ..Default::default()
            }),
            identifiers: vec![card(&format!("{}", 500_000 + i))],
        })
        .collect()
}

async fn stream_import(backend: Backend) -> anyhow::Result<()> {
    let suite = Suite::start(backend).await?;
    let (_, key) = suite
        .partner_with_key("Streamer", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin, identity::Role::Support])
        .await?;
    let mut identity = suite.identity().await?;
    let batches = vec![
        ImportCustomersRequest {
            import_id: "crm-export".into(),
            rows: rows(0, 2_500),
        },
        ImportCustomersRequest {
            import_id: "crm-export".into(),
            rows: rows(2_500, 10),
        },
    ];
    let done = identity
        .import_customers(authed(tokio_stream::iter(batches), &key))
        .await?
        .into_inner();
    assert_eq!((done.imported_count, done.failed_count), (2_510, 0));
    let last = resolve(&suite, &key, "502509").await?;
    assert_eq!(last.first_name, "Customer 2509");
    assert_eq!(
        resolve(&suite, &rival, "502509").await.unwrap_err().code(),
        Code::NotFound,
        "another partner does not see imported customers"
    );

    identity
        .update_card_number_format(authed(
            identity::UpdateCardNumberFormatRequest {
                idempotency_key: "format".into(),
                card_number_format: Some(identity::CardNumberFormat {
                    digits_only: true,
                    prefixes: vec!["5".into()],
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?;
    identity
        .create_customer_property_definition(authed(
            identity::CreateCustomerPropertyDefinitionRequest {
                idempotency_key: "tier".into(),
                definition: Some(identity::CustomerPropertyDefinition {
                    key: "tier".into(),
                    display_name: "Tier".into(),
                    data_type: identity::PropertyDataType::Enum as i32,
                    allowed_values: vec!["gold".into(), "silver".into()],
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?;
    let mut off_format = rows(7_000, 4);
    off_format[1].identifiers = vec![card("4000123")];
    if let Some(c) = off_format[2].customer.as_mut() {
        c.properties.insert("tier".into(), "platinum".into());
    }
    if let Some(c) = off_format[3].customer.as_mut() {
        c.contact_source_ids = vec![uuid::Uuid::now_v7().to_string()];
    }
    let checked = identity
        .import_customers(authed(
            tokio_stream::iter(vec![ImportCustomersRequest {
                import_id: "second".into(),
                rows: off_format,
            }]),
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!((checked.imported_count, checked.failed_count), (1, 3));
    assert_eq!(checked.errors[0].field, "identifiers[0].value");
    assert_eq!(checked.errors[0].line_number, 7_003);
    assert_eq!(checked.errors[1].line_number, 7_004);
    assert!(
        checked.errors[1].field.starts_with("customer.properties"),
        "an enum value outside the definition: {:?}",
        checked.errors[1]
    );
    assert_eq!(
        (
            checked.errors[2].line_number,
            checked.errors[2].field.as_str()
        ),
        (7_005, "customer.contact_source_ids[0]"),
        "a contact source the partner does not have"
    );

    let mixed = vec![
        ImportCustomersRequest {
            import_id: "a".into(),
            rows: rows(9_000, 1),
        },
        ImportCustomersRequest {
            import_id: "b".into(),
            rows: rows(9_001, 1),
        },
    ];
    let err = identity
        .import_customers(authed(tokio_stream::iter(mixed), &key))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("import_id"), "{}", err.message());

    let support_only = suite
        .partner_with_key("Support", &[identity::Role::Support])
        .await?
        .1;
    let denied = identity
        .import_customers(authed(
            tokio_stream::iter(vec![ImportCustomersRequest {
                import_id: "x".into(),
                rows: rows(0, 1),
            }]),
            &support_only,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_import_writes_every_batch_on_postgres() -> anyhow::Result<()> {
    stream_import(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_import_writes_every_batch_on_sqlite() -> anyhow::Result<()> {
    stream_import(Backend::Sqlite).await
}
