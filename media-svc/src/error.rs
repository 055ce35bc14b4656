//! media-svc's one error type and its one mapping to `tonic::Status`.

use mesh::db::DbError;
use tonic::Status;

/// Everything a media-svc handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A request field is invalid; the message names the field.
    #[error("invalid `{field}`: {message}")]
    InvalidArgument {
        /// The field, as named in the proto.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// This tenant has no such call (the same answer whether another tenant has it or not).
    #[error("call not found")]
    NotFound,
    /// The request is well-formed but the state refuses it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this (e.g. a browser origin the tenant did not allow).
    #[error("{0}")]
    PermissionDenied(String),
    /// A per-tenant limit refuses the request; the client may retry after `retry_after_secs`.
    #[error("{message}")]
    LimitReached {
        /// What the client is told.
        message: String,
        /// Seconds until a retry can succeed (the `retry-after` metadata).
        retry_after_secs: u64,
        /// Which limit (the `x-neurosphere-limit` metadata): `rate` or `concurrency`.
        limit: &'static str,
    },
    /// A dependency (tenant-svc, Twilio) cannot answer now; the message is safe to send and the
    /// cause was logged where it happened.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// Anything else internal; the text is logged, never sent.
    #[error("internal: {0}")]
    Internal(String),
}

impl MediaError {
    /// An invalid field.
    pub fn invalid(field: &'static str, message: impl std::fmt::Display) -> Self {
        Self::InvalidArgument {
            field,
            message: message.to_string(),
        }
    }
}

impl From<MediaError> for Status {
    fn from(e: MediaError) -> Status {
        match e {
            MediaError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            MediaError::NotFound => Status::not_found("call not found"),
            MediaError::FailedPrecondition(m) => Status::failed_precondition(m),
            MediaError::PermissionDenied(m) => Status::permission_denied(m),
            MediaError::LimitReached {
                message,
                retry_after_secs,
                limit,
            } => {
                let mut status = Status::resource_exhausted(message);
                let metadata = status.metadata_mut();
                metadata.insert("retry-after", retry_after_secs.max(1).into());
                metadata.insert(
                    "x-neurosphere-limit",
                    tonic::metadata::MetadataValue::from_static(limit),
                );
                status
            }
            MediaError::Unavailable(m) => Status::unavailable(m),
            MediaError::Db(ref db) if db.is_insufficient_privilege() => {
                tracing::error!(error = %db, "database refused a query (tenant context or grant)");
                Status::internal("internal error")
            }
            MediaError::Db(db) => {
                tracing::error!(error = %db, "database error");
                if db.is_unavailable() {
                    Status::unavailable("database unavailable, retry later")
                } else {
                    Status::internal("internal error")
                }
            }
            MediaError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<tokio_postgres::Error> for MediaError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}
