//! `loyalty import customers FILE.csv`: reads a CSV file, streams it to identity's
//! `ImportCustomers` in batches with a progress bar, and reports refused rows by line.
use std::{collections::BTreeMap, path::Path, time::Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use loyalty_platform::client::with_key;
use loyalty_proto::{
    identity::v1::{self as identity, ImportCustomerRow, ImportCustomersRequest},
    types::v1::{IdentifierRef, IdentifierType},
};

/// What a CSV column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    FirstName,
    LastName,
    Email,
    Phone,
    BirthDate,
    Gender,
    LanguageCode,
    City,
    Street,
    PostalCode,
    CountryCode,
    HomeBusinessUnitId,
    ContactSourceIds,
    InterestIds,
    /// Identifiers of one type; several in one cell are separated by `;`.
    Identifier(IdentifierType),
    /// `property.<key>`: a customer property.
    Property(String),
}

/// The headers `loyalty import customers` understands, for the error message.
pub const KNOWN_COLUMNS: &str = "first_name, last_name, email, phone, birth_date, gender \
     (female/male/other), language_code, city, street, postal_code, country_code, \
     home_business_unit_id, contact_source_ids, interest_ids (UUIDs separated by ';'), card, \
     ean, qr, cookie, external_id, email_identifier, phone_identifier (identifiers, several \
     separated by ';'), property.<key>";

fn column(header: &str) -> Option<Column> {
    let h = header.trim().to_ascii_lowercase();
    if let Some(key) = h.strip_prefix("property.") {
        return Some(Column::Property(key.to_owned()));
    }
    Some(match h.as_str() {
        "first_name" => Column::FirstName,
        "last_name" => Column::LastName,
        "email" => Column::Email,
        "phone" => Column::Phone,
        "birth_date" => Column::BirthDate,
        "gender" => Column::Gender,
        "language_code" => Column::LanguageCode,
        "city" => Column::City,
        "street" => Column::Street,
        "postal_code" => Column::PostalCode,
        "country_code" => Column::CountryCode,
        "home_business_unit_id" => Column::HomeBusinessUnitId,
        "contact_source_ids" => Column::ContactSourceIds,
        "interest_ids" => Column::InterestIds,
        "card" => Column::Identifier(IdentifierType::Card),
        "ean" => Column::Identifier(IdentifierType::Ean),
        "qr" => Column::Identifier(IdentifierType::Qr),
        "cookie" => Column::Identifier(IdentifierType::Cookie),
        "external_id" => Column::Identifier(IdentifierType::ExternalId),
        "email_identifier" => Column::Identifier(IdentifierType::Email),
        "phone_identifier" => Column::Identifier(IdentifierType::Phone),
        _ => return None,
    })
}

/// The columns of a header row; unknown or repeated headers are refused before anything is
/// sent.
fn columns(headers: &csv::StringRecord) -> anyhow::Result<Vec<Column>> {
    let mut out: Vec<Column> = Vec::new();
    for h in headers {
        let Some(c) = column(h) else {
            bail!("unknown column {h:?}; known columns: {KNOWN_COLUMNS}");
        };
        if out.contains(&c) {
            bail!("column {h:?} appears twice");
        }
        out.push(c);
    }
    if out.is_empty() {
        bail!("the file has no header row");
    }
    Ok(out)
}

pub(crate) fn list(cell: &str) -> impl Iterator<Item = String> + '_ {
    cell.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// One CSV record as an import row; a malformed gender is reported as the server would
/// report a field.
fn row(
    columns: &[Column],
    record: &csv::StringRecord,
    line_number: i64,
) -> Result<ImportCustomerRow, (String, String)> {
    let mut c = identity::Customer::default();
    let mut identifiers = Vec::new();
    let mut properties = BTreeMap::new();
    for (column, cell) in columns.iter().zip(record.iter()) {
        let value = cell.trim().to_owned();
        match column {
            Column::FirstName => c.first_name = value,
            Column::LastName => c.last_name = value,
            Column::Email => c.email = value,
            Column::Phone => c.phone = value,
            Column::BirthDate => c.birth_date = value,
            Column::Gender => {
                c.gender = match value.to_ascii_lowercase().as_str() {
                    "" => identity::Gender::Unspecified,
                    "female" | "f" => identity::Gender::Female,
                    "male" | "m" => identity::Gender::Male,
                    "other" | "o" => identity::Gender::Other,
                    _ => {
                        return Err((
                            "customer.gender".into(),
                            "must be female, male or other".into(),
                        ));
                    }
                } as i32
            }
            Column::LanguageCode => c.language_code = value,
            Column::City => c.city = value,
            Column::Street => c.street = value,
            Column::PostalCode => c.postal_code = value,
            Column::CountryCode => c.country_code = value,
            Column::HomeBusinessUnitId => c.home_business_unit_id = value,
            Column::ContactSourceIds => c.contact_source_ids = list(&value).collect(),
            Column::InterestIds => c.interest_ids = list(&value).collect(),
            Column::Identifier(t) => identifiers.extend(list(&value).map(|v| IdentifierRef {
                r#type: *t as i32,
                value: v,
            })),
            Column::Property(key) if !value.is_empty() => {
                properties.insert(key.clone(), value);
            }
            Column::Property(_) => {}
        }
    }
    c.properties = properties.into_iter().collect();
    Ok(ImportCustomerRow {
        line_number,
        customer: Some(c),
        identifiers,
    })
}

/// Totals printed at the end.
#[derive(Debug, Default)]
pub struct Summary {
    pub imported: i64,
    pub skipped: i64,
    pub failed: i64,
    pub rows_per_second: f64,
}

/// Opens a CSV file with a header row; also answers its size in bytes (for the progress bar).
pub(crate) fn open_csv(file: &Path) -> anyhow::Result<(csv::Reader<std::fs::File>, u64)> {
    let meta = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
    let reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(file)
        .with_context(|| format!("opening {}", file.display()))?;
    Ok((reader, meta.len()))
}

/// The import id when none is given: the file's name and size.
pub(crate) fn default_import_id(file: &Path, size: u64) -> String {
    format!(
        "{}-{}",
        file.file_name().unwrap_or_default().to_string_lossy(),
        size
    )
}

/// A progress bar over the file's bytes (hidden when `quiet`).
pub(crate) fn progress_bar(total_bytes: u64, quiet: bool) -> anyhow::Result<ProgressBar> {
    let progress = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total_bytes)
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:40}] {bytes}/{total_bytes} {msg}",
        )?
        .progress_chars("=> "),
    );
    Ok(progress)
}

/// The line number of a CSV record (1 = the header row).
pub(crate) fn record_line(record: &csv::StringRecord) -> i64 {
    record
        .position()
        .map(|p| p.line() as i64)
        .unwrap_or_default()
}

/// Prints refused lines (line number, field, why) in line order, on stderr.
pub(crate) fn print_refusals(mut errors: Vec<(i64, String, String)>) {
    errors.sort_by_key(|e| e.0);
    for (line, field, description) in &errors {
        eprintln!("line {line}: {field}: {description}");
    }
}

/// Reads `file` and imports it through `endpoint` with a partner admin `api_key`.
pub async fn customers(
    endpoint: &str,
    api_key: &str,
    file: &Path,
    import_id: Option<String>,
    batch_size: usize,
    quiet: bool,
) -> anyhow::Result<Summary> {
    let (mut reader, size) = open_csv(file)?;
    let import_id = import_id.unwrap_or_else(|| default_import_id(file, size));
    let columns = columns(reader.headers()?)?;
    let progress = progress_bar(size, quiet)?;

    let mut client = crate::identity_client(endpoint).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<ImportCustomersRequest>(4);
    let started = Instant::now();
    let call = {
        let request = with_key(tokio_stream::wrappers::ReceiverStream::new(rx), api_key);
        tokio::spawn(async move { client.import_customers(request).await })
    };

    // Rows the CLI itself refuses (a malformed CSV line or gender) never reach the server.
    let mut local_errors: Vec<(i64, String, String)> = Vec::new();
    let mut rows = Vec::with_capacity(batch_size);
    let mut sent = 0u64;
    let mut byte = 0u64;
    for record in reader.records() {
        let (line, result) = match record {
            Ok(r) => {
                let line = record_line(&r);
                byte = r.position().map(|p| p.byte()).unwrap_or(byte);
                (line, row(&columns, &r, line))
            }
            Err(e) => {
                let line = e.position().map(|p| p.line() as i64).unwrap_or_default();
                (line, Err(("line".into(), e.to_string())))
            }
        };
        match result {
            Ok(r) => rows.push(r),
            Err((field, description)) => local_errors.push((line, field, description)),
        }
        if rows.len() >= batch_size {
            sent += rows.len() as u64;
            let batch = std::mem::replace(&mut rows, Vec::with_capacity(batch_size));
            if tx
                .send(ImportCustomersRequest {
                    import_id: import_id.clone(),
                    rows: batch,
                })
                .await
                .is_err()
            {
                break; // the call ended early; its error is reported below
            }
            progress.set_position(byte);
            progress.set_message(format!("{sent} rows sent"));
        }
    }
    if !rows.is_empty() || sent == 0 {
        let _ = tx
            .send(ImportCustomersRequest {
                import_id: import_id.clone(),
                rows,
            })
            .await;
    }
    drop(tx);
    let response = call
        .await
        .context("the import task failed")?
        .map_err(crate::status)?
        .into_inner();
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();

    let refused_here = local_errors.len() as i64;
    let mut errors = local_errors;
    errors.extend(response.errors.into_iter().map(|e| {
        (
            e.line_number,
            e.field,
            format!("{} ({})", e.description, e.reason),
        )
    }));
    print_refusals(errors);
    Ok(Summary {
        imported: response.imported_count,
        skipped: response.skipped_count,
        failed: response.failed_count + refused_here,
        rows_per_second: response.imported_count as f64 / elapsed.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    #[test]
    fn headers_map_to_columns_and_unknown_ones_are_refused() {
        let cols = columns(&record(&["First_Name", "card", "property.tier"])).unwrap();
        assert_eq!(
            cols,
            vec![
                Column::FirstName,
                Column::Identifier(IdentifierType::Card),
                Column::Property("tier".into())
            ]
        );
        let err = columns(&record(&["first_name", "nickname"])).unwrap_err();
        assert!(err.to_string().contains("nickname"));
        assert!(columns(&record(&["card", "card"])).is_err());
    }

    #[test]
    fn a_record_becomes_a_row_with_identifiers_and_properties() {
        let cols = columns(&record(&[
            "first_name",
            "gender",
            "card",
            "property.tier",
            "property.pet",
        ]))
        .unwrap();
        let r = row(
            &cols,
            &record(&[" Jana ", "F", "1001; 1002", "gold", ""]),
            7,
        )
        .unwrap();
        assert_eq!(r.line_number, 7);
        let c = r.customer.unwrap();
        assert_eq!(c.first_name, "Jana");
        assert_eq!(c.gender, identity::Gender::Female as i32);
        assert_eq!(c.properties.len(), 1, "empty property cells are left out");
        assert_eq!(
            r.identifiers
                .iter()
                .map(|i| i.value.as_str())
                .collect::<Vec<_>>(),
            vec!["1001", "1002"]
        );
    }

    #[test]
    fn a_malformed_gender_names_the_field() {
        let cols = columns(&record(&["gender"])).unwrap();
        let (field, _) = row(&cols, &record(&["robot"]), 2).unwrap_err();
        assert_eq!(field, "customer.gender");
    }
}
