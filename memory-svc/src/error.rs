//! The one error type of memory-svc and its place in the mesh's one status policy
//! (`mesh::status`): each variant names its [`ServiceErrorCode`], and `to_status` turns it into
//! the gRPC answer.
//!
//! Clients get a clear message naming the field for bad input and the policy's opaque message
//! for server-side failures, whose causes `to_status` logs (never row values: `DbError` drops
//! them). A database error keeps the code `DbError` gives it: a statement timeout is
//! DEADLINE_EXCEEDED, a lost or refused connection UNAVAILABLE, anything else INTERNAL.

use mesh::db::DbError;
use mesh::status::{ServiceError, ServiceErrorCode};
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

impl ServiceError for MemoryError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            MemoryError::InvalidArgument { .. } => ServiceErrorCode::InvalidArgument,
            MemoryError::NotFound(_) => ServiceErrorCode::NotFound,
            MemoryError::Db(db) => db.error_code(),
            MemoryError::Internal(_) => ServiceErrorCode::Internal,
        }
    }
}

impl From<MemoryError> for Status {
    fn from(e: MemoryError) -> Status {
        mesh::status::to_status(&e)
    }
}

/// Result alias for handlers' inner functions.
pub type Result<T, E = MemoryError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn client_errors_say_what_is_wrong_and_internal_ones_do_not() {
        let s = Status::from(MemoryError::invalid("user_id", "must be E.164"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "user_id: must be E.164")
        );
        let s = Status::from(MemoryError::NotFound("memory not found".into()));
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "memory not found")
        );
        let s = Status::from(MemoryError::Internal("audit hash key rejected".into()));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("audit"), "{}", s.message());
    }
}
