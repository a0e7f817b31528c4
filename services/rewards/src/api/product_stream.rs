//! `StreamImportProducts`: a catalogue sync of any size as a client stream of batches. Each
//! batch is imported as it arrives in its own idempotent transaction (so memory stays bounded
//! and a resumed stream does not apply a batch twice); products the server refuses are left
//! out of their batch and reported, the rest of the batch is imported.
use loyalty_platform::{
    ApiError, FieldViolation, Role, Violations,
    auth::principal,
    error::check_idempotency_key,
    idempotency::{self, IdempotencyScope, request_hash},
};
use loyalty_proto::rewards::v1 as pb;
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::catalogue::{MAX_IMPORT, spec_from_proto};
use crate::{domain::catalogue::ProductSpec, store::catalogue as store};

const WRITERS: &[Role] = &[Role::Admin, Role::Marketing];

/// Rounds per batch: the store reports field errors first and unknown groups or brands only
/// once the fields are valid: two refusing rounds and one importing round suffice (one more
/// is spare).
const ROUNDS: usize = 4;

/// The products a store refusal names, as `(index in the batch, "product.<field>",
/// description)`; `None` when a violation names something other than one product.
fn refused_products(violations: &[FieldViolation]) -> Option<Vec<(usize, String, String)>> {
    violations
        .iter()
        .map(|v| {
            let rest = v.field.strip_prefix("products[")?;
            let (index, tail) = rest.split_once(']')?;
            Some((
                index.parse().ok()?,
                format!("product{tail}"),
                v.description.clone(),
            ))
        })
        .collect()
}

/// The idempotency key of the `round`-th import attempt of a batch, derived from the
/// client's key (each round sends fewer products, so each is its own request).
fn round_key(key: &str, round: usize) -> String {
    format!("{}:{round}", &request_hash(&key.to_owned())[..32])
}

/// What one batch did: its counts and the refused products `(index in the batch, field,
/// description)`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BatchAnswer {
    counts: store::ImportCounts,
    refusals: Vec<(usize, String, String)>,
}

/// Imports one batch once per client key: a batch sent again answers what it did the first
/// time (the same key with other products is refused as a reused key).
async fn import_batch(
    db: &DatabaseConnection,
    partner_id: Uuid,
    key: &str,
    products: Vec<pb::Product>,
) -> Result<BatchAnswer, ApiError> {
    let scope = IdempotencyScope::new(
        partner_id,
        "StreamImportProducts",
        key,
        &pb::ImportProductsRequest {
            idempotency_key: key.to_owned(),
            products: products.clone(),
        },
    );
    if let Some(done) = idempotency::stored(db, &scope).await? {
        return Ok(done);
    }
    // The rounds are idempotent themselves, so a batch whose answer was not stored (the
    // process died in between) replays them and stores the same answer.
    let answer = import_rounds(db, partner_id, key, products).await?;
    idempotency::run(db, scope, move |_| Box::pin(async move { Ok(answer) })).await
}

/// Imports a batch, leaving out refused products round by round.
async fn import_rounds(
    db: &DatabaseConnection,
    partner_id: Uuid,
    key: &str,
    products: Vec<pb::Product>,
) -> Result<BatchAnswer, ApiError> {
    // Original index of each product still in the batch.
    let mut kept: Vec<(usize, pb::Product)> = products.into_iter().enumerate().collect();
    let mut refusals: Vec<(usize, String, String)> = Vec::new();
    for round in 0..ROUNDS {
        if kept.is_empty() {
            break;
        }
        let request = pb::ImportProductsRequest {
            idempotency_key: round_key(key, round),
            products: kept.iter().map(|(_, p)| p.clone()).collect(),
        };
        let scope = IdempotencyScope::new(
            partner_id,
            "StreamImportProductsRound",
            &request.idempotency_key,
            &request,
        );
        let specs: Vec<ProductSpec> = request.products.into_iter().map(spec_from_proto).collect();
        let done: Result<store::ImportCounts, ApiError> = idempotency::run(db, scope, move |txn| {
            Box::pin(async move { store::import_products(txn, partner_id, specs).await })
        })
        .await;
        match done {
            Ok(counts) => {
                refusals.sort_by_key(|r| r.0);
                return Ok(BatchAnswer { counts, refusals });
            }
            Err(ApiError::InvalidArgument(violations)) => {
                let Some(refused) = refused_products(&violations) else {
                    return Err(ApiError::InvalidArgument(violations));
                };
                let mut out: Vec<usize> = Vec::new();
                for (i, field, description) in refused {
                    let Some((original, _)) = kept.get(i) else {
                        return Err(ApiError::Internal(anyhow::anyhow!(
                            "import refused product {i} of {}",
                            kept.len()
                        )));
                    };
                    refusals.push((*original, field, description));
                    out.push(i);
                }
                kept = kept
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !out.contains(i))
                    .map(|(_, p)| p)
                    .collect();
            }
            Err(e) => return Err(e),
        }
    }
    if kept.is_empty() {
        refusals.sort_by_key(|r| r.0);
        return Ok(BatchAnswer {
            counts: store::ImportCounts::default(),
            refusals,
        });
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "a product batch was still refused after {ROUNDS} rounds"
    )))
}

pub async fn stream_import_products(
    db: &DatabaseConnection,
    request: Request<Streaming<pb::StreamImportProductsRequest>>,
) -> Result<Response<pb::StreamImportProductsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let mut stream = request.into_inner();
    let mut out = pb::StreamImportProductsResponse::default();
    while let Some(batch) = stream.message().await? {
        let index = out.batch_count;
        let mut v = Violations::new();
        let mut key_check = Violations::new();
        check_idempotency_key(&mut key_check, &batch.idempotency_key);
        for f in key_check.into_vec() {
            v.add(format!("batches[{index}].{}", f.field), f.description);
        }
        if batch.products.is_empty() || batch.products.len() > MAX_IMPORT {
            v.add(
                format!("batches[{index}].products"),
                format!("must hold 1..{MAX_IMPORT} products"),
            );
        }
        v.into_result()?;
        let BatchAnswer { counts, refusals } =
            import_batch(db, partner_id, &batch.idempotency_key, batch.products).await?;
        out.created_count += i64::from(counts.created);
        out.updated_count += i64::from(counts.updated);
        out.unchanged_count += i64::from(counts.unchanged);
        out.refusals
            .extend(
                refusals
                    .into_iter()
                    .map(|(i, field, description)| pb::ProductImportRefusal {
                        batch_index: index,
                        product_index: i32::try_from(i).unwrap_or(i32::MAX),
                        field,
                        description,
                    }),
            );
        out.batch_count += 1;
    }
    Ok(Response::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fv(field: &str) -> FieldViolation {
        FieldViolation {
            field: field.into(),
            description: "bad".into(),
        }
    }

    #[test]
    fn product_refusals_map_to_batch_indexes() {
        assert_eq!(
            refused_products(&[fv("products[12].brand_code"), fv("products[0].code")]),
            Some(vec![
                (12, "product.brand_code".into(), "bad".into()),
                (0, "product.code".into(), "bad".into()),
            ])
        );
        assert_eq!(
            refused_products(&[fv("products[1].code"), fv("idempotency_key")]),
            None
        );
    }

    #[test]
    fn later_rounds_have_their_own_short_keys() {
        let long = "k".repeat(128);
        assert_eq!(round_key("batch-1", 0), round_key("batch-1", 0));
        assert_ne!(round_key("batch-1", 0), "batch-1");
        assert_ne!(round_key("batch-1", 1), round_key("batch-1", 2));
        assert_ne!(round_key("batch-1", 1), round_key("batch-2", 1));
        assert!(round_key(&long, 2).len() <= 128);
    }
}
