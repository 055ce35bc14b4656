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
            MediaError::Db(ref db) if db.is_insufficient_privilege() => {
                tracing::error!(error = %db, "database refused a query (tenant context or grant)");
                Status::internal("internal error")
            }
            MediaError::Db(db) => {
                tracing::error!(error = %db, "database error");
                if matches!(db, DbError::Pool(_)) {
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
