//! `loyalty import products FILE.csv`: reads a product catalogue CSV file and sends it to the
//! rewards service over one client-streaming `StreamImportProducts` call, a batch per
//! message, with a progress bar. A line the server refuses is reported by line number and
//! field and left out of its batch; the other lines are imported. Products equal
//! to the stored ones are left alone, so running the same file again changes nothing.
use std::{
    collections::BTreeMap,
    hash::{DefaultHasher, Hash, Hasher},
    path::Path,
};

use anyhow::{Context, bail};
use loyalty_platform::client::with_key;
use loyalty_proto::{
    rewards::v1::{self as pb, rewards_service_client::RewardsServiceClient},
    types::v1::Money,
};

use crate::import::{list, open_csv, print_refusals, progress_bar, record_line};

/// What a CSV column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Code,
    DisplayName,
    ProductGroupCodes,
    BrandCode,
    ListPriceMinor,
    CurrencyCode,
    Barcodes,
    ImageUrl,
    Active,
    /// `property.<key>`: a product property.
    Property(String),
}

/// The headers `loyalty import products` understands, for the error message.
pub const KNOWN_COLUMNS: &str = "code, display_name, product_group_codes (codes separated by \
     ';'), brand_code, list_price_minor (integer, minor units), currency_code, barcodes \
     (separated by ';'), image_url, active (true/false, default true), property.<key>";

fn column(header: &str) -> Option<Column> {
    let h = header.trim().to_ascii_lowercase();
    if let Some(key) = h.strip_prefix("property.") {
        return Some(Column::Property(key.to_owned()));
    }
    Some(match h.as_str() {
        "code" | "sku" => Column::Code,
        "display_name" | "name" => Column::DisplayName,
        "product_group_codes" => Column::ProductGroupCodes,
        "brand_code" => Column::BrandCode,
        "list_price_minor" => Column::ListPriceMinor,
        "currency_code" => Column::CurrencyCode,
        "barcodes" => Column::Barcodes,
        "image_url" => Column::ImageUrl,
        "active" => Column::Active,
        _ => return None,
    })
}

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
    if !out.contains(&Column::Code) {
        bail!("the header row has no code column; known columns: {KNOWN_COLUMNS}");
    }
    Ok(out)
}

/// One CSV record as a product; cells the CLI cannot read are reported under the field the
/// server would name.
fn product(
    columns: &[Column],
    record: &csv::StringRecord,
) -> Result<pb::Product, (String, String)> {
    let mut p = pb::Product {
        active: true,
        ..Default::default()
    };
    let mut price: Option<i64> = None;
    let mut currency = String::new();
    let mut properties = BTreeMap::new();
    for (column, cell) in columns.iter().zip(record.iter()) {
        let value = cell.trim().to_owned();
        match column {
            Column::Code => p.code = value,
            Column::DisplayName => p.display_name = value,
            Column::ProductGroupCodes => p.product_group_codes = list(&value).collect(),
            Column::BrandCode => p.brand_code = value,
            Column::ListPriceMinor if value.is_empty() => {}
            Column::ListPriceMinor => {
                price = Some(value.parse().map_err(|_| {
                    (
                        "product.list_price.amount_minor".to_owned(),
                        format!("{value:?} is not an integer amount in minor units"),
                    )
                })?)
            }
            Column::CurrencyCode => currency = value,
            Column::Barcodes => p.barcodes = list(&value).collect(),
            Column::ImageUrl => p.image_url = value,
            Column::Active => {
                p.active = match value.to_ascii_lowercase().as_str() {
                    "" | "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    _ => {
                        return Err(("product.active".into(), "must be true or false".into()));
                    }
                }
            }
            Column::Property(key) if !value.is_empty() => {
                properties.insert(key.clone(), value);
            }
            Column::Property(_) => {}
        }
    }
    match (price, currency.is_empty()) {
        (Some(amount_minor), false) => {
            p.list_price = Some(Money {
                currency_code: currency,
                amount_minor,
            })
        }
        (Some(_), true) => {
            return Err((
                "product.list_price.currency_code".into(),
                "is required with list_price_minor".into(),
            ));
        }
        (None, false) => {
            return Err((
                "product.list_price.amount_minor".into(),
                "is required with currency_code".into(),
            ));
        }
        (None, true) => {}
    }
    p.properties = properties.into_iter().collect();
    Ok(p)
}

/// Totals printed at the end.
#[derive(Debug, Default)]
pub struct Summary {
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub refused: i64,
}

/// One batch's idempotency key: the run, the batch and a hash of what it sends. Each run has
/// its own keys: running a file again is a new import, which the server answers by comparing
/// products (unchanged ones are counted as such), not with the first run's stored answer.
fn batch_key(run_id: &str, batch: usize, products: &[pb::Product]) -> String {
    let mut h = DefaultHasher::new();
    format!("{products:?}").hash(&mut h);
    format!("{run_id}:{batch}:{:016x}", h.finish())
}

/// Batches read ahead of the server: reading stops while this many wait to be sent, so memory
/// stays bounded whatever the file's size.
const BATCHES_IN_FLIGHT: usize = 4;

/// Reads `file` and imports it through the rewards service at `endpoint` with an API key of
/// the partner (admin or marketing role), streaming it in batches over one
/// `StreamImportProducts` call.
pub async fn products(
    endpoint: &str,
    api_key: &str,
    file: &Path,
    batch_size: usize,
    quiet: bool,
) -> anyhow::Result<Summary> {
    let (mut reader, size) = open_csv(file)?;
    let run_id = format!("products-{}", uuid::Uuid::now_v7().simple());
    let columns = columns(reader.headers()?)?;
    let progress = progress_bar(size, quiet)?;
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
        .connect()
        .await
        .with_context(|| format!("connecting to rewards at {endpoint}"))?;
    let mut client = RewardsServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::StreamImportProductsRequest>(BATCHES_IN_FLIGHT);
    let call = tokio::spawn({
        let request = with_key(tokio_stream::wrappers::ReceiverStream::new(rx), api_key);
        async move { client.stream_import_products(request).await }
    });

    let mut summary = Summary::default();
    let mut refusals: Vec<(i64, String, String)> = Vec::new();
    // The CSV line of each product sent, by batch: the server names refusals by position.
    let mut lines: Vec<Vec<i64>> = Vec::new();
    let mut batch: Vec<pb::Product> = Vec::with_capacity(batch_size);
    let mut batch_lines: Vec<i64> = Vec::with_capacity(batch_size);
    let mut records = reader.records().peekable();
    while let Some(record) = records.next() {
        match record {
            Ok(r) => {
                let line = record_line(&r);
                if let Some(position) = r.position() {
                    progress.set_position(position.byte());
                }
                match product(&columns, &r) {
                    Ok(p) => {
                        batch.push(p);
                        batch_lines.push(line);
                    }
                    Err((field, description)) => {
                        summary.refused += 1;
                        refusals.push((line, field, description));
                    }
                }
            }
            Err(e) => {
                let line = e.position().map(|p| p.line() as i64).unwrap_or_default();
                summary.refused += 1;
                refusals.push((line, "line".into(), e.to_string()));
            }
        }
        if batch.len() >= batch_size || (records.peek().is_none() && !batch.is_empty()) {
            let products = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            lines.push(std::mem::replace(
                &mut batch_lines,
                Vec::with_capacity(batch_size),
            ));
            let request = pb::StreamImportProductsRequest {
                idempotency_key: batch_key(&run_id, lines.len() - 1, &products),
                products,
            };
            if tx.send(request).await.is_err() {
                // The server ended the call early; its answer below says why.
                break;
            }
            progress.set_message(format!("{} batches sent", lines.len()));
        }
    }
    drop(tx);
    let answer = call
        .await
        .context("the import call stopped")?
        .map_err(crate::status)?
        .into_inner();
    progress.finish_and_clear();
    summary.created = answer.created_count;
    summary.updated = answer.updated_count;
    summary.unchanged = answer.unchanged_count;
    let mut refused_products = std::collections::BTreeSet::new();
    for r in answer.refusals {
        let line = usize::try_from(r.batch_index)
            .ok()
            .zip(usize::try_from(r.product_index).ok())
            .and_then(|(b, p)| lines.get(b)?.get(p).copied());
        let Some(line) = line else {
            bail!("the server refused a product the import did not send: {r:?}");
        };
        refused_products.insert(line);
        refusals.push((line, r.field, r.description));
    }
    summary.refused += refused_products.len() as i64;
    print_refusals(refusals);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    #[test]
    fn a_record_becomes_a_product() {
        let cols = columns(&record(&[
            "code",
            "name",
            "product_group_codes",
            "list_price_minor",
            "currency_code",
            "active",
            "property.origin",
        ]))
        .unwrap();
        let p = product(
            &cols,
            &record(&[
                "ESP-1",
                " Espresso ",
                "coffee; drinks",
                "250",
                "EUR",
                "no",
                "IT",
            ]),
        )
        .unwrap();
        assert_eq!(p.code, "ESP-1");
        assert_eq!(p.display_name, "Espresso");
        assert_eq!(p.product_group_codes, ["coffee", "drinks"]);
        assert_eq!(p.list_price.unwrap().amount_minor, 250);
        assert!(!p.active);
        assert_eq!(p.properties["origin"], "IT");
    }

    #[test]
    fn unreadable_cells_name_the_field_and_headers_are_checked() {
        let cols = columns(&record(&["code", "list_price_minor", "currency_code"])).unwrap();
        let (field, _) = product(&cols, &record(&["A", "2.50", "EUR"])).unwrap_err();
        assert_eq!(field, "product.list_price.amount_minor");
        let (field, _) = product(&cols, &record(&["A", "250", ""])).unwrap_err();
        assert_eq!(field, "product.list_price.currency_code");
        assert!(columns(&record(&["name"])).is_err(), "code is required");
        assert!(columns(&record(&["code", "colour"])).is_err());
    }
}
