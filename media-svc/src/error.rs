//! media-svc's one error type. Its codes follow the mesh's one status policy
//! ([`mesh::status`]): each variant names a [`ServiceErrorCode`], and `Status` is built by
//! [`mesh::status::to_status`] (server-side causes logged there, never sent).

use mesh::db::DbError;
use mesh::status::{ServiceError, ServiceErrorCode};
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
    /// A named thing other than a call does not exist (e.g. "package not found").
    #[error("{0}")]
    Missing(String),
    /// The thing to create exists already (e.g. a package name taken).
    #[error("{0}")]
    AlreadyExists(String),
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

impl ServiceError for MediaError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Self::InvalidArgument { .. } => ServiceErrorCode::InvalidArgument,
            Self::NotFound | Self::Missing(_) => ServiceErrorCode::NotFound,
            Self::AlreadyExists(_) => ServiceErrorCode::AlreadyExists,
            Self::FailedPrecondition(_) => ServiceErrorCode::FailedPrecondition,
            Self::PermissionDenied(_) => ServiceErrorCode::PermissionDenied,
            Self::LimitReached { .. } => ServiceErrorCode::ResourceExhausted,
            Self::Unavailable(_) => ServiceErrorCode::Unavailable,
            // A statement timeout is DEADLINE_EXCEEDED here as in every service (it was INTERNAL).
            Self::Db(db) => db.error_code(),
            Self::Internal(_) => ServiceErrorCode::Internal,
        }
    }

    /// A dependency's unavailability is told in words written for clients ("Twilio is
    /// unavailable, retry later"); the database's is the policy's fixed message.
    fn public_message(&self) -> Option<String> {
        match self {
            Self::Unavailable(m) => Some(m.clone()),
            _ => None,
        }
    }
}

/// The policy's status, plus the retry metadata of a limit refusal (`retry-after` in seconds
/// and which limit, `x-neurosphere-limit`), which clients and the gateway act on.
impl From<MediaError> for Status {
    fn from(e: MediaError) -> Status {
        let mut status = mesh::status::to_status(&e);
        if let MediaError::LimitReached {
            retry_after_secs,
            limit,
            ..
        } = e
        {
            let metadata = status.metadata_mut();
            metadata.insert("retry-after", retry_after_secs.max(1).into());
            metadata.insert(
                "x-neurosphere-limit",
                tonic::metadata::MetadataValue::from_static(limit),
            );
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_error_has_one_code_and_server_side_causes_stay_private() {
        let s = Status::from(MediaError::invalid("to", "not E.164"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "invalid `to`: not E.164")
        );
        let s = Status::from(MediaError::NotFound);
        assert_eq!((s.code(), s.message()), (Code::NotFound, "call not found"));
        let s = Status::from(MediaError::LimitReached {
            message: "customer has 2 calls in progress".into(),
            retry_after_secs: 0,
            limit: "concurrency",
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.message(), "customer has 2 calls in progress");
        assert_eq!(s.metadata().get("retry-after").unwrap(), "1", "never 0");
        assert_eq!(
            s.metadata().get("x-neurosphere-limit").unwrap(),
            "concurrency"
        );
        // A dependency's unavailability is told in its own words, written for clients.
        let s = Status::from(MediaError::Unavailable(
            "Twilio is unavailable, retry later".into(),
        ));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unavailable, "Twilio is unavailable, retry later")
        );
        // The database's failures follow the mesh policy, their causes never sent.
        let s = Status::from(MediaError::Db(DbError::Pool(
            "timed out (Wait) at 10.0.0.5".into(),
        )));
        assert_eq!(s.code(), Code::Unavailable);
        assert!(!s.message().contains("10.0.0.5"), "{}", s.message());
        let s = Status::from(MediaError::Internal(
            "stored account sid AC1 is invalid".into(),
        ));
        assert_eq!((s.code(), s.message()), (Code::Internal, "internal error"));
    }
}
