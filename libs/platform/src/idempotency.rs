//! Idempotent mutations: the first call with a key runs in one database transaction that also
//! stores its answer; a retry with the same key gets the stored answer and changes nothing.
//! The same key with a different request is refused (ALREADY_EXISTS with ErrorInfo reason
//! `IDEMPOTENCY_KEY_REUSED`).
use futures::future::BoxFuture;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DatabaseTransaction, EntityTrait};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{entities::idempotency_keys as keys, error::ApiError};

/// Identifies one idempotent call.
#[derive(Debug, Clone)]
pub struct IdempotencyScope {
    pub partner_id: Uuid,
    /// The operation, e.g. `CreateCustomer`; keys are unique per partner and operation.
    pub operation: &'static str,
    pub key: String,
    /// Hash of the request; see [`request_hash`].
    pub request_hash: String,
}

impl IdempotencyScope {
    pub fn new(
        partner_id: Uuid,
        operation: &'static str,
        key: impl Into<String>,
        request: &impl prost::Message,
    ) -> Self {
        Self {
            partner_id,
            operation,
            key: key.into(),
            request_hash: request_hash(request),
        }
    }
}

/// SHA-256 of the request's protobuf encoding.
pub fn request_hash(request: &impl prost::Message) -> String {
    hex::encode(Sha256::digest(request.encode_to_vec()))
}

/// The answer stored for this call, if it ran before; refuses a reused key with another request.
pub async fn stored<R: DeserializeOwned>(
    db: &impl sea_orm::ConnectionTrait,
    scope: &IdempotencyScope,
) -> Result<Option<R>, ApiError> {
    let found = keys::Entity::find_by_id((
        scope.partner_id,
        scope.operation.to_owned(),
        scope.key.clone(),
    ))
    .one(db)
    .await?;
    match found {
        None => Ok(None),
        Some(row) if row.request_hash != scope.request_hash => Err(ApiError::Conflict {
            reason: "IDEMPOTENCY_KEY_REUSED",
            message: format!(
                "idempotency_key {:?} was already used for a different {} request",
                scope.key, scope.operation
            ),
        }),
        Some(row) => serde_json::from_slice(&row.response)
            .map(Some)
            .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("stored response"))),
    }
}

/// Runs `work` once per key, in a transaction, and returns its (stored) answer.
pub async fn run<R, F>(
    db: &DatabaseConnection,
    scope: IdempotencyScope,
    work: F,
) -> Result<R, ApiError>
where
    R: Serialize + DeserializeOwned + Send + 'static,
    F: for<'c> FnOnce(&'c DatabaseTransaction) -> BoxFuture<'c, Result<R, ApiError>>,
{
    // No read of the key before the work: retries are rare, and the unique row written at the
    // end settles them (a conflict rolls the work back and answers what the first call stored),
    // so a first call costs one round trip and one pool checkout less.
    let txn = crate::db::begin_write(db).await?;
    let result = match work(&txn).await {
        Ok(r) => r,
        Err(e) => {
            drop(txn);
            // A concurrent call with the same key may have committed while this one waited
            // for a lock and then failed (e.g. the points were already spent by it): the
            // retry's answer is the first call's.
            return match stored(db, &scope).await? {
                Some(r) => Ok(r),
                None => Err(e),
            };
        }
    };
    let response = serde_json::to_vec(&result)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("encoding response")))?;
    let insert = keys::Entity::insert(keys::ActiveModel {
        partner_id: Set(scope.partner_id),
        operation: Set(scope.operation.to_owned()),
        key: Set(scope.key.clone()),
        request_hash: Set(scope.request_hash.clone()),
        response: Set(response),
        created_at: Set(chrono::Utc::now()),
    })
    .exec_without_returning(&txn)
    .await;
    match insert {
        Ok(_) => {}
        Err(e) if crate::db::is_unique_violation(&e) => {
            // A concurrent call with the same key won; answer what it stored.
            drop(txn);
            return stored(db, &scope).await?.ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("idempotency row vanished after conflict"))
            });
        }
        Err(e) => return Err(e.into()),
    }
    match txn.commit().await {
        Ok(()) => Ok(result),
        Err(e) if crate::db::is_unique_violation(&e) => stored(db, &scope)
            .await?
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("idempotency row vanished"))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::sqlite;
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    #[test]
    fn a_request_with_map_fields_hashes_the_same_however_its_map_was_filled() {
        use loyalty_proto::identity::v1::Customer;
        let pairs: Vec<(String, String)> = (0..32)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let forward = Customer {
            properties: pairs.iter().cloned().collect(),
            ..Default::default()
        };
        let backward = Customer {
            properties: pairs.iter().rev().cloned().collect(),
            ..Default::default()
        };
        assert_eq!(request_hash(&forward), request_hash(&backward));
    }

    fn scope(key: &str, request: &str) -> IdempotencyScope {
        IdempotencyScope::new(Uuid::nil(), "Test", key, &request.to_owned())
    }

    #[tokio::test]
    async fn a_retry_returns_the_stored_answer_and_changes_nothing_again() {
        use crate::entities::outbox;
        use loyalty_proto::events::v1::ApiKeyRevoked;
        let (_dir, db) = sqlite().await;
        let runs = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let runs = runs.clone();
            let answer: String = run(&db, scope("k1", "req"), move |txn| {
                Box::pin(async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst);
                    crate::events::enqueue(txn, None, &ApiKeyRevoked::default()).await?;
                    Ok(format!("answer {n}"))
                })
            })
            .await
            .expect("run");
            assert_eq!(answer, "answer 0");
        }
        // A retry may run the work again, but its transaction is rolled back.
        let written = outbox::Entity::find().all(&db).await.expect("outbox");
        assert_eq!(written.len(), 1);
    }

    #[tokio::test]
    async fn the_same_key_with_another_request_is_refused() {
        let (_dir, db) = sqlite().await;
        let _: u32 = run(&db, scope("k1", "one"), |_| Box::pin(async { Ok(1) }))
            .await
            .expect("first");
        let err = run::<u32, _>(&db, scope("k1", "two"), |_| Box::pin(async { Ok(2) }))
            .await
            .expect_err("reuse");
        assert!(matches!(
            err,
            ApiError::Conflict {
                reason: "IDEMPOTENCY_KEY_REUSED",
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_failed_call_stores_nothing_and_can_be_retried() {
        let (_dir, db) = sqlite().await;
        let err = run::<u32, _>(&db, scope("k1", "one"), |_| {
            Box::pin(async { Err(ApiError::Unavailable("down".into())) })
        })
        .await;
        assert!(err.is_err());
        let ok: u32 = run(&db, scope("k1", "one"), |_| Box::pin(async { Ok(7) }))
            .await
            .expect("retry");
        assert_eq!(ok, 7);
    }
}
