//! tenant-svc's one error type and its one mapping to gRPC status codes. Clients get a clear
//! message for what they can fix (naming the field) and an opaque one for internal failures,
//! whose cause is logged here with context.

use mesh::db::DbError;
use tokio_postgres::error::SqlState;

/// Everything a tenant-svc handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// A request field is invalid; nothing was changed.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The field, as named in the proto (e.g. `config.voice`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The thing does not exist (or belongs to another tenant: the same answer).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique thing is taken.
    #[error("{0}")]
    AlreadyExists(&'static str),
    /// The request is valid but the state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A credential presented in the request body is not acceptable.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Token minting failed.
    #[error("cannot mint token: {0}")]
    Mint(#[from] mesh::auth::AuthError),
}

impl TenantError {
    /// An INVALID_ARGUMENT for `field`.
    pub fn invalid(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.to_string(),
        }
    }

    /// Whether a database error is a unique violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Db(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION))
    }
}

impl From<TenantError> for tonic::Status {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::InvalidArgument { .. } => tonic::Status::invalid_argument(e.to_string()),
            TenantError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            TenantError::AlreadyExists(m) => tonic::Status::already_exists(m),
            TenantError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            TenantError::Unauthenticated(m) => tonic::Status::unauthenticated(m),
            TenantError::Db(ref db) => {
                if db.code() == Some(&SqlState::QUERY_CANCELED) {
                    tracing::warn!(error = %db, "database timeout");
                    return tonic::Status::deadline_exceeded("database timeout");
                }
                if db.is_unavailable() {
                    tracing::warn!(error = %db, "database unavailable");
                    return tonic::Status::unavailable("database unavailable, retry later");
                }
                tracing::error!(error = %db, "database error");
                tonic::Status::internal("internal error")
            }
            TenantError::Mint(ref err) => {
                tracing::error!(error = %err, "token minting failed");
                tonic::Status::internal("internal error")
            }
        }
    }
}

/// Handler result.
pub type Result<T> = std::result::Result<T, TenantError>;
