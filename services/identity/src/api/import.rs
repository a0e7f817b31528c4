//! Bulk customer import: a client stream of row batches, each batch written in one
//! transaction with set-based lookups, each row all or nothing.
use loyalty_platform::{ApiError, Role, Violations, auth::principal, db::begin_write, events};
use loyalty_proto::{events::v1 as ev, identity::v1 as pb};
use std::collections::{BTreeSet, HashSet};
use tonic::{Request, Response, Status, Streaming};

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use super::{
    IdentityApi, customer_created_event, identifier_event, new_identifier, parse_identifier,
    profile_from_proto,
};
use crate::{
    domain::{
        Customer, IdentifierValue,
        business_unit::UnitState,
        cards::{CardNumberFormat, apply_card_format},
        customer_data::{PropertyDefinition, validate_properties},
        import::{
            ALREADY_EXISTS, ImportTally, MAX_ROWS_PER_BATCH, RowDraft, RowError, check_import_id,
            plan_batch,
        },
        now_micros,
    },
    store::{
        business_units, customer_data as customer_data_store,
        import::{self as store, NewCustomer},
    },
};

/// Most identifiers one imported customer may bring.
const MAX_IDENTIFIERS_PER_ROW: usize = 20;

pub(super) async fn import_customers(
    api: &IdentityApi,
    request: Request<Streaming<pb::ImportCustomersRequest>>,
) -> Result<Response<pb::ImportCustomersResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Admin])?;
    let mut stream = request.into_inner();
    let mut import_id: Option<String> = None;
    let mut tally = ImportTally::default();
    // The partner's rules are read once per import, not per row.
    let card_format = super::cards::card_number_format(api, partner_id).await?;
    let definitions = customer_data_store::property_definitions(&api.db, partner_id).await?;
    // Statistics are refreshed after 5,000 rows and then each time the import has grown
    // fourfold: a handful of ANALYZEs however large the import.
    let mut analyze_at = 5_000;
    while let Some(batch) = stream.message().await? {
        let id = match &import_id {
            None => {
                check_import_id(&batch.import_id).map_err(|e| ApiError::invalid("import_id", e))?;
                import_id.insert(batch.import_id.clone())
            }
            Some(id) if *id != batch.import_id => {
                return Err(ApiError::invalid(
                    "import_id",
                    "must be the same in every message of the stream",
                )
                .into());
            }
            Some(id) => id,
        };
        if batch.rows.len() > MAX_ROWS_PER_BATCH {
            return Err(ApiError::invalid(
                "rows",
                format!("at most {MAX_ROWS_PER_BATCH} rows per message"),
            )
            .into());
        }
        let rules = RowRules {
            card_format: card_format.as_ref(),
            definitions: &definitions,
        };
        let started = std::time::Instant::now();
        let rows = batch.rows.len();
        let drafts = validate_rows(batch.rows, &rules, &mut tally);
        let validated = started.elapsed();
        import_batch(api, partner_id, id, drafts, &mut tally).await?;
        if tally.imported >= analyze_at {
            store::refresh_statistics(&api.db).await?;
            analyze_at = tally.imported.saturating_mul(4);
        }
        tracing::debug!(
            rows,
            validate_ms = validated.as_millis() as u64,
            write_ms = (started.elapsed() - validated).as_millis() as u64,
            "import batch written"
        );
    }
    if import_id.is_none() {
        return Err(
            ApiError::invalid("import_id", "is required: the stream sent no message").into(),
        );
    }
    let tally = tally.finish();
    tracing::info!(
        imported = tally.imported,
        skipped = tally.skipped,
        failed = tally.failed,
        "customer import finished"
    );
    Ok(Response::new(pb::ImportCustomersResponse {
        imported_count: tally.imported,
        skipped_count: tally.skipped,
        failed_count: tally.failed,
        errors: tally
            .errors
            .into_iter()
            .map(|e| pb::ImportRowError {
                line_number: e.line_number,
                field: e.field,
                description: e.description,
                reason: e.reason.to_owned(),
            })
            .collect(),
    }))
}

/// The partner's rules every row is checked against without a database round trip.
struct RowRules<'a> {
    card_format: Option<&'a CardNumberFormat>,
    definitions: &'a [PropertyDefinition],
}

/// Converts and checks each row on its own; refused rows are counted in `tally`.
fn validate_rows(
    rows: Vec<pb::ImportCustomerRow>,
    rules: &RowRules<'_>,
    tally: &mut ImportTally,
) -> Vec<RowDraft> {
    let mut drafts = Vec::with_capacity(rows.len());
    for row in rows {
        let line = row.line_number;
        let mut v = Violations::new();
        if line < 1 {
            v.add("line_number", "must be at least 1");
        }
        let mut profile = profile_from_proto(row.customer.unwrap_or_default(), &mut v, "customer")
            .normalise(&mut v, "customer");
        profile.properties = validate_properties(
            rules.definitions,
            &profile.properties,
            None,
            "customer",
            &mut v,
        );
        if row.identifiers.len() > MAX_IDENTIFIERS_PER_ROW {
            v.add(
                "identifiers",
                format!("at most {MAX_IDENTIFIERS_PER_ROW} identifiers"),
            );
        }
        let identifiers: Vec<IdentifierValue> = row
            .identifiers
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let field = format!("identifiers[{i}]");
                let value = parse_identifier(&mut v, &field, Some(r))?;
                v.check(
                    format!("{field}.value"),
                    apply_card_format(rules.card_format, value),
                )
            })
            .collect();
        if v.is_empty() {
            drafts.push(RowDraft {
                line_number: line,
                profile,
                identifiers,
            });
        } else {
            tally.refuse_row(
                v.into_vec()
                    .into_iter()
                    .map(|f| RowError::invalid(line, f.field, f.description)),
            );
        }
    }
    drafts
}

/// Writes one batch in one transaction. When a concurrent writer beats it to an identifier
/// between the lookup and the insert, the batch is retried row by row so that only the rows
/// that lost are refused.
async fn import_batch(
    api: &IdentityApi,
    partner_id: Uuid,
    import_id: &str,
    drafts: Vec<RowDraft>,
    tally: &mut ImportTally,
) -> Result<(), ApiError> {
    if drafts.is_empty() {
        return Ok(());
    }
    if write_batch(api, partner_id, import_id, drafts.clone(), tally).await? {
        return Ok(());
    }
    for draft in drafts {
        let line = draft.line_number;
        if !write_batch(api, partner_id, import_id, vec![draft], tally).await? {
            tally.refuse_row([RowError {
                line_number: line,
                field: "identifiers".into(),
                description: "an identifier was assigned to another customer meanwhile".into(),
                reason: ALREADY_EXISTS,
            }]);
        }
    }
    Ok(())
}

/// Refuses rows naming contact sources or interests the partner does not have, or a home
/// business unit that is not one of its open ones; the catalogue rows used stay locked until
/// the batch commits, so they cannot be deleted under it. A handful of queries per batch.
async fn check_catalogue_references(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    drafts: Vec<RowDraft>,
    refused: &mut Vec<Vec<RowError>>,
) -> Result<Vec<RowDraft>, ApiError> {
    let distinct = |ids: &mut dyn Iterator<Item = Uuid>| -> Vec<Uuid> {
        ids.collect::<BTreeSet<_>>().into_iter().collect()
    };
    let sources = distinct(
        &mut drafts
            .iter()
            .flat_map(|d| d.profile.contact_source_ids.iter().copied()),
    );
    let interests = distinct(
        &mut drafts
            .iter()
            .flat_map(|d| d.profile.interest_ids.iter().copied()),
    );
    let units = distinct(
        &mut drafts
            .iter()
            .filter_map(|d| d.profile.home_business_unit_id),
    );
    customer_data_store::lock_contact_sources(txn, partner_id, &sources).await?;
    customer_data_store::lock_interests(txn, partner_id, &interests).await?;
    let bad_sources: HashSet<Uuid> =
        customer_data_store::unknown_contact_sources(txn, partner_id, &sources)
            .await?
            .into_iter()
            .collect();
    let bad_interests: HashSet<Uuid> =
        customer_data_store::unknown_interests(txn, partner_id, &interests)
            .await?
            .into_iter()
            .collect();
    let mut bad_units = HashSet::new();
    for unit in units {
        match business_units::get(txn, partner_id, &unit.to_string()).await? {
            Some(u) if u.state == UnitState::Active => {}
            _ => {
                bad_units.insert(unit);
            }
        }
    }
    if bad_sources.is_empty() && bad_interests.is_empty() && bad_units.is_empty() {
        return Ok(drafts);
    }
    let mut kept = Vec::with_capacity(drafts.len());
    for d in drafts {
        let line = d.line_number;
        let p = &d.profile;
        let mut errors: Vec<RowError> = p
            .contact_source_ids
            .iter()
            .enumerate()
            .filter(|(_, id)| bad_sources.contains(id))
            .map(|(i, _)| {
                RowError::invalid(
                    line,
                    format!("customer.contact_source_ids[{i}]"),
                    "no such contact source",
                )
            })
            .collect();
        errors.extend(
            p.interest_ids
                .iter()
                .enumerate()
                .filter(|(_, id)| bad_interests.contains(id))
                .map(|(i, _)| {
                    RowError::invalid(
                        line,
                        format!("customer.interest_ids[{i}]"),
                        "no such interest",
                    )
                }),
        );
        if p.home_business_unit_id
            .is_some_and(|u| bad_units.contains(&u))
        {
            errors.push(RowError::invalid(
                line,
                "customer.home_business_unit_id",
                "no such open business unit",
            ));
        }
        if errors.is_empty() {
            kept.push(d);
        } else {
            refused.push(errors);
        }
    }
    Ok(kept)
}

/// One attempt at a batch; `false` (nothing written, nothing counted) on a lost race.
async fn write_batch(
    api: &IdentityApi,
    partner_id: Uuid,
    import_id: &str,
    drafts: Vec<RowDraft>,
    tally: &mut ImportTally,
) -> Result<bool, ApiError> {
    let txn = begin_write(&api.db).await?;
    // Refusals count only once the batch commits: a batch retried row by row is checked again.
    let mut refused = Vec::new();
    let drafts = check_catalogue_references(&txn, partner_id, drafts, &mut refused).await?;
    let lines: Vec<i64> = drafts.iter().map(|d| d.line_number).collect();
    let already = store::imported_lines(&txn, partner_id, import_id, &lines).await?;
    let values: Vec<&IdentifierValue> = drafts.iter().flat_map(|d| &d.identifiers).collect();
    let taken = store::taken_identifiers(&txn, partner_id, &values).await?;
    let plan = plan_batch(drafts, &already, &taken);
    let now = now_micros();
    let rows: Vec<NewCustomer> = plan
        .insert
        .into_iter()
        .map(|d| {
            let customer = Customer::new(partner_id, d.profile, now);
            let identifiers = d
                .identifiers
                .into_iter()
                .map(|value| new_identifier(customer.id, value))
                .collect();
            NewCustomer {
                line_number: d.line_number,
                customer,
                identifiers,
            }
        })
        .collect();
    if !store::insert_customers(&txn, partner_id, import_id, &rows).await? {
        return Ok(false);
    }
    let created: Vec<ev::CustomerCreated> = rows
        .iter()
        .map(|r| customer_created_event(&r.customer))
        .collect();
    events::enqueue_all(&txn, Some(partner_id), &created).await?;
    let added: Vec<ev::IdentifierAdded> = rows
        .iter()
        .flat_map(|r| {
            r.identifiers
                .iter()
                .map(|i| identifier_event(r.customer.id, i))
        })
        .collect();
    events::enqueue_all(&txn, Some(partner_id), &added).await?;
    txn.commit().await?;
    tally.imported += rows.len() as i64;
    tally.skipped += plan.skipped as i64;
    for errors in refused {
        tally.refuse_row(errors);
    }
    for e in plan.errors {
        tally.refuse_row([e]);
    }
    Ok(true)
}
