//! The shared error vocabulary of every service, and its mapping to `tonic::Status` with
//! google.rpc details (`BadRequest`, `ErrorInfo`).
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The domain of `ErrorInfo` reasons.
pub const ERROR_DOMAIN: &str = "loyalty.platform";

/// One invalid field: its path in the request (e.g. `cart.lines[2].quantity`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// What went wrong, in the few kinds a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid argument: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    /// FAILED_PRECONDITION whose ErrorInfo also carries metadata, e.g. the ids of what
    /// prevents the change.
    #[error("{message}")]
    PreconditionWithMetadata {
        reason: &'static str,
        message: String,
        metadata: std::collections::BTreeMap<String, String>,
    },
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// ALREADY_EXISTS with an ErrorInfo reason, e.g. an idempotency key reused for another
    /// request.
    #[error("{message}")]
    Conflict {
        reason: &'static str,
        message: String,
    },
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A single invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        ApiError::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// A broken business rule with a stable reason code.
    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    /// Re-raises a status received from another service: the caller gets the same code and
    /// details, so a NOT_FOUND identifier stays NOT_FOUND at checkout.
    pub fn from_upstream(service: &str, status: Status) -> Self {
        match status.code() {
            Code::NotFound => ApiError::NotFound(status.message().to_owned()),
            Code::InvalidArgument => {
                let details = status.get_error_details();
                let violations = details
                    .bad_request()
                    .map(|b| {
                        b.field_violations
                            .iter()
                            .map(|v| FieldViolation {
                                field: v.field.clone(),
                                description: v.description.clone(),
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                if violations.is_empty() {
                    ApiError::invalid("", status.message())
                } else {
                    ApiError::InvalidArgument(violations)
                }
            }
            Code::FailedPrecondition => {
                let reason = status
                    .get_error_details()
                    .error_info()
                    .map(|i| leak_reason(&i.reason))
                    .unwrap_or("UPSTREAM_PRECONDITION");
                ApiError::precondition(reason, status.message())
            }
            Code::PermissionDenied => ApiError::PermissionDenied(status.message().to_owned()),
            Code::Unauthenticated => ApiError::Unauthenticated(status.message().to_owned()),
            Code::AlreadyExists => match status.get_error_details().error_info() {
                Some(info) => ApiError::Conflict {
                    reason: leak_reason(&info.reason),
                    message: status.message().to_owned(),
                },
                None => ApiError::AlreadyExists(status.message().to_owned()),
            },
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
                ApiError::Unavailable(format!("{service}: {}", status.message()))
            }
            // The connection broke or the call was cut short (the peer died or restarted, the
            // deadline passed): it may or may not have happened, which is what UNAVAILABLE
            // tells a caller holding a retry key.
            Code::Cancelled => ApiError::Unavailable(format!("{service}: {}", status.message())),
            Code::Unknown if status.message().contains("transport error") => {
                ApiError::Unavailable(format!("{service}: {}", status.message()))
            }
            _ => ApiError::Internal(anyhow::anyhow!(
                "{service} answered {:?}: {}",
                status.code(),
                status.message()
            )),
        }
    }
}

/// Reasons are a small closed set per service; interning keeps `ApiError` cheap to build.
fn leak_reason(reason: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static REASONS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let set = REASONS.get_or_init(Default::default);
    let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = set.get(reason) {
        return r;
    }
    if set.len() > 1_000 {
        return "UPSTREAM_PRECONDITION";
    }
    let leaked: &'static str = Box::leak(reason.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        if is_connection_error(&e) {
            tracing::warn!(error = %e, "database unreachable");
            return ApiError::Unavailable("the database is unreachable or busy; retry".into());
        }
        ApiError::Internal(anyhow::Error::new(e).context("database"))
    }
}

/// Whether the database could not be reached (down, restarting, pool exhausted) rather than
/// refusing the statement: the caller may retry.
fn is_connection_error(e: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx::Error as Sqlx};
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => {
            matches!(
                s,
                Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed
            ) || matches!(s, Sqlx::Database(d) if d.code().is_some_and(|c| {
                // 08: connection exception, 53: insufficient resources (too many
                // connections), 57P: shutting down.
                c.starts_with("08") || c.starts_with("53") || c.starts_with("57P")
            }))
        }
        _ => false,
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in &violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                let message = violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::NotFound(what) => Status::not_found(format!("{what} not found")),
            ApiError::FailedPrecondition { reason, message } => Status::with_error_details(
                Code::FailedPrecondition,
                message,
                ErrorDetails::with_error_info(
                    reason,
                    ERROR_DOMAIN,
                    std::collections::HashMap::<String, String>::new(),
                ),
            ),
            ApiError::PreconditionWithMetadata {
                reason,
                message,
                metadata,
            } => Status::with_error_details(
                Code::FailedPrecondition,
                message,
                ErrorDetails::with_error_info(
                    reason,
                    ERROR_DOMAIN,
                    metadata
                        .into_iter()
                        .collect::<std::collections::HashMap<String, String>>(),
                ),
            ),
            ApiError::AlreadyExists(what) => {
                Status::already_exists(format!("{what} already exists"))
            }
            ApiError::Conflict { reason, message } => Status::with_error_details(
                Code::AlreadyExists,
                message,
                ErrorDetails::with_error_info(
                    reason,
                    ERROR_DOMAIN,
                    std::collections::HashMap::<String, String>::new(),
                ),
            ),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::Internal(err) => {
                let trace_id = crate::telemetry::current_trace_id();
                tracing::error!(error = ?err, %trace_id, "internal error");
                Status::internal(format!("internal error (trace id {trace_id})"))
            }
        }
    }
}

/// Collects field violations while a request is converted into domain types, so the client
/// hears about every bad field at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Records the error of a parse and returns its value, if any.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: impl Into<String>,
        r: Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    /// A required UUID field: its value, or the violation ("is required", "must be a UUID")
    /// recorded under `field`.
    pub fn uuid(&mut self, field: &str, value: &str) -> Option<uuid::Uuid> {
        match parse_uuid(field, value) {
            Ok(id) => Some(id),
            Err(ApiError::InvalidArgument(found)) => {
                self.0.extend(found);
                None
            }
            Err(_) => None,
        }
    }

    /// An optional UUID field: `None` when empty, else as [`Violations::uuid`].
    pub fn optional_uuid(&mut self, field: &str, value: &str) -> Option<uuid::Uuid> {
        if value.is_empty() {
            None
        } else {
            self.uuid(field, value)
        }
    }

    /// Adds violations found by a nested parser under a field prefix.
    pub fn extend_prefixed(
        &mut self,
        prefix: &str,
        inner: impl IntoIterator<Item = FieldViolation>,
    ) {
        for v in inner {
            let field = if v.field.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{}", v.field)
            };
            self.0.push(FieldViolation {
                field,
                description: v.description,
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The violations collected, in the order found.
    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }

    /// `Ok(value)` when nothing was wrong.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        self.finish(|| ())
    }
}

/// Parses a required UUID field.
pub fn parse_uuid(field: &str, value: &str) -> Result<uuid::Uuid, ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    uuid::Uuid::parse_str(value).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

/// Checks a required idempotency key (1..128 characters).
/// The paths of an update's field mask: at least one, each of `updatable` (reported under
/// `update_mask`).
pub fn mask_paths(
    v: &mut Violations,
    mask: Option<prost_types::FieldMask>,
    updatable: &[&str],
) -> Vec<String> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "name the fields to update");
    }
    for path in &paths {
        if !updatable.contains(&path.as_str()) {
            v.add(
                "update_mask",
                format!(
                    "{path:?} cannot be updated (updatable: {})",
                    updatable.join(", ")
                ),
            );
        }
    }
    paths
}

/// Optimistic concurrency: a sent etag (empty = none) must be the current one, else
/// FAILED_PRECONDITION `ETAG_MISMATCH` naming `what`.
pub fn check_etag(sent: &str, current: &str, what: &str) -> Result<(), ApiError> {
    if !sent.is_empty() && sent != current {
        return Err(etag_mismatch(what));
    }
    Ok(())
}

/// A write guarded by the revision it read (`… WHERE revision = read`) that touched no row lost
/// to another write: the same `ETAG_MISMATCH` as `check_etag`.
pub fn check_guarded_write(rows_affected: u64, what: &str) -> Result<(), ApiError> {
    if rows_affected == 0 {
        return Err(etag_mismatch(what));
    }
    Ok(())
}

fn etag_mismatch(what: &str) -> ApiError {
    ApiError::precondition(
        "ETAG_MISMATCH",
        format!("the {what} changed since it was read"),
    )
}

/// The etag of an item versioned by a revision counter.
pub fn revision_etag(revision: i64) -> String {
    format!("r{revision}")
}

pub fn check_idempotency_key(v: &mut Violations, key: &str) {
    if key.is_empty() {
        v.add("idempotency_key", "is required");
    } else if key.chars().count() > 128 {
        v.add("idempotency_key", "must be at most 128 characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_every_field_in_bad_request_details() {
        let mut v = Violations::new();
        v.add("cart.lines[0].quantity", "must be greater than 0");
        v.add("identifier.value", "is required");
        let status: Status = v.into_result().unwrap_err().into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .expect("bad request")
            .field_violations
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["cart.lines[0].quantity", "identifier.value"]);
    }

    #[test]
    fn a_precondition_with_metadata_carries_reason_and_metadata() {
        let status: Status = ApiError::PreconditionWithMetadata {
            reason: "SEGMENT_IN_USE",
            message: "in use".into(),
            metadata: [("referencing_badge_ids".to_owned(), "b1,b2".to_owned())].into(),
        }
        .into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let info = status
            .get_error_details()
            .error_info()
            .cloned()
            .expect("info");
        assert_eq!(info.reason, "SEGMENT_IN_USE");
        assert_eq!(
            info.metadata
                .get("referencing_badge_ids")
                .map(String::as_str),
            Some("b1,b2")
        );
    }

    #[test]
    fn failed_precondition_carries_the_reason() {
        let status: Status = ApiError::precondition("INSUFFICIENT_POINTS", "not enough").into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            status
                .get_error_details()
                .error_info()
                .expect("info")
                .reason,
            "INSUFFICIENT_POINTS"
        );
    }

    #[test]
    fn a_broken_connection_to_a_peer_is_unavailable_and_a_bug_there_internal() {
        assert!(matches!(
            ApiError::from_upstream("wallet", Status::unknown("transport error")),
            ApiError::Unavailable(_)
        ));
        assert!(matches!(
            ApiError::from_upstream("wallet", Status::internal("oops")),
            ApiError::Internal(_)
        ));
        assert!(matches!(
            ApiError::from_upstream("wallet", Status::unknown("oops")),
            ApiError::Internal(_)
        ));
    }

    #[test]
    fn upstream_status_keeps_code_and_fields() {
        let status: Status = ApiError::invalid("identifier.value", "is required").into();
        match ApiError::from_upstream("identity", status) {
            ApiError::InvalidArgument(v) => assert_eq!(v[0].field, "identifier.value"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status: Status = ApiError::Internal(anyhow::anyhow!("password=hunter2")).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }
}
