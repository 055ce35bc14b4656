//! tenant-svc's one error type. Its mapping to gRPC codes (and, at the gateway, HTTP statuses) is
//! the mesh's one status policy, `mesh::status`: each variant names a
//! [`ServiceErrorCode`]; clients get a clear message for what they can fix (naming the field) and
//! a fixed one for server-side failures, whose cause `mesh::status::to_status` logs.

use mesh::db::DbError;
use mesh::status::{ServiceError, ServiceErrorCode};
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
    /// The caller is known but may not ask for this (the message names what was refused).
    #[error("{0}")]
    PermissionDenied(String),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Token minting failed.
    #[error("cannot mint token: {0}")]
    Mint(#[from] mesh::auth::AuthError),
    /// Too many attempts (the portal's sign-in throttles); try again after this many seconds,
    /// sent as the trailing metadata `retry-after`.
    #[error("too many attempts; try again in {0} s")]
    Throttled(u64),
    /// A failure of this service that is not the client's (e.g. a hashing task died); its
    /// text is logged, never sent.
    #[error("{0}")]
    Internal(String),
    /// Another service did not answer or confirm; the message says what to do (it names no
    /// secret and no tenant data).
    #[error("{0}")]
    Unavailable(String),
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

impl ServiceError for TenantError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            TenantError::InvalidArgument { .. } => ServiceErrorCode::InvalidArgument,
            TenantError::NotFound(_) => ServiceErrorCode::NotFound,
            TenantError::AlreadyExists(_) => ServiceErrorCode::AlreadyExists,
            TenantError::FailedPrecondition(_) => ServiceErrorCode::FailedPrecondition,
            TenantError::Unauthenticated(_) => ServiceErrorCode::Unauthenticated,
            TenantError::PermissionDenied(_) => ServiceErrorCode::PermissionDenied,
            // A statement timeout is DEADLINE_EXCEEDED and a lost database UNAVAILABLE, as in
            // every service.
            TenantError::Db(db) => db.error_code(),
            TenantError::Mint(_) => ServiceErrorCode::Internal,
            TenantError::Unavailable(_) => ServiceErrorCode::Unavailable,
            TenantError::Throttled(_) => ServiceErrorCode::ResourceExhausted,
            TenantError::Internal(_) => ServiceErrorCode::Internal,
        }
    }

    fn public_message(&self) -> Option<String> {
        match self {
            TenantError::Unavailable(m) => Some(m.clone()),
            _ => None,
        }
    }
}

impl From<TenantError> for tonic::Status {
    fn from(e: TenantError) -> Self {
        let mut status = mesh::status::to_status(&e);
        if let TenantError::Throttled(secs) = e {
            status
                .metadata_mut()
                .insert("retry-after", secs.max(1).into());
        }
        status
    }
}

/// Handler result.
pub type Result<T> = std::result::Result<T, TenantError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_carry_their_message_and_server_errors_do_not() {
        let s = tonic::Status::from(TenantError::invalid("config.voice", "unknown voice"));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "config.voice: unknown voice");
        let s = tonic::Status::from(TenantError::NotFound("customer"));
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::NotFound, "customer not found")
        );
        let s = tonic::Status::from(TenantError::AlreadyExists(
            "this number is already assigned",
        ));
        assert_eq!(s.code(), tonic::Code::AlreadyExists);
        let s = tonic::Status::from(TenantError::Unauthenticated(
            "invalid or expired legacy token",
        ));
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        let s = tonic::Status::from(TenantError::PermissionDenied("scopes: media:read".into()));
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::PermissionDenied, "scopes: media:read")
        );
        let s = tonic::Status::from(TenantError::FailedPrecondition("suspended".into()));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        let s = tonic::Status::from(TenantError::Mint(mesh::auth::AuthError::MissingToken));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("mint"), "{}", s.message());
        let s = tonic::Status::from(TenantError::Throttled(42));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after").unwrap(), "42");
    }
}
