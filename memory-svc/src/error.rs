//! The one error type of memory-svc and its one mapping to `tonic::Status`.
//!
//! Clients get a clear message naming the field for bad input and an opaque message for internal
//! failures, whose causes are logged here (never row values: `DbError` drops them).

use mesh::db::DbError;
use tonic::Status;

/// Why a memory-svc request failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A request field is missing or invalid; the message names the field.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The request field, e.g. `user_id`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The thing does not exist for this tenant (or belongs to another tenant: same answer).
    #[error("{0}")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Anything else that is our fault.
    #[error("internal: {0}")]
    Internal(String),
}

impl MemoryError {
    /// An INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            message: message.into(),
        }
    }
}

impl From<MemoryError> for Status {
    fn from(e: MemoryError) -> Status {
        match e {
            MemoryError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            MemoryError::NotFound(what) => Status::not_found(what),
            MemoryError::Db(db) => {
                if let Some(code) = db.code()
                    && code == &tokio_postgres::error::SqlState::QUERY_CANCELED
                {
                    tracing::warn!(error = %db, "database statement timed out");
                    return Status::deadline_exceeded("the request took too long");
                }
                if db.is_unavailable() {
                    tracing::warn!(error = %db, "database pool exhausted or unreachable");
                    return Status::unavailable("memory storage is temporarily unavailable");
                }
                tracing::error!(error = %db, "database error");
                Status::internal("internal error")
            }
            MemoryError::Internal(cause) => {
                tracing::error!(cause = %cause, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// Result alias for handlers' inner functions.
pub type Result<T, E = MemoryError> = std::result::Result<T, E>;
