//! The one status policy of the mesh: every service error names one [`ServiceErrorCode`], and
//! that code alone decides the gRPC code a client gets, the HTTP status the gateway answers with,
//! and whether the error's text may be shown.
//!
//! Each service keeps its own `thiserror` enum (the variants are its vocabulary) and implements
//! [`ServiceError`] for it; its `impl From<E> for tonic::Status` is [`to_status`]. Before this
//! module the services mapped their errors by hand and drifted (a statement timeout was INTERNAL
//! in one service and DEADLINE_EXCEEDED in the others), and the gateway had two gRPC-to-HTTP
//! tables; now there is one of each, here. Modelled on quickwit's `ServiceErrorCode`.
//!
//! Two kinds of codes:
//! - errors the client can fix or act on (`InvalidArgument`, `NotFound`, `PermissionDenied`, ...)
//!   carry the error's `Display` text, which names the field or the thing;
//! - server-side failures (`DeadlineExceeded`, `Unavailable`, `Internal`) are logged here with
//!   their cause and answered with a fixed message, so no SQL, address or row value reaches a
//!   client (unless the error supplies a [`ServiceError::public_message`] written for clients).

use http::StatusCode;
use tonic::Code;

/// What went wrong, as far as a client is concerned: one gRPC code and one HTTP status each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceErrorCode {
    /// A request field is invalid; the message names it.
    InvalidArgument,
    /// No acceptable credential.
    Unauthenticated,
    /// The caller is known but may not do this.
    PermissionDenied,
    /// The thing does not exist (or belongs to another tenant: the same answer).
    NotFound,
    /// A unique thing is taken.
    AlreadyExists,
    /// The request is valid but the current state refuses it.
    FailedPrecondition,
    /// A limit refuses the request for now.
    ResourceExhausted,
    /// The work took too long (e.g. a statement timeout); the client may retry.
    DeadlineExceeded,
    /// A dependency (the database, a peer) cannot answer now; the client may retry.
    Unavailable,
    /// The request was cancelled (by the client, or by a server that is going away).
    Cancelled,
    /// The method or feature is not implemented.
    Unimplemented,
    /// Our fault; the cause is logged, never sent.
    Internal,
}

impl ServiceErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ServiceErrorCode; 12] = [
        Self::InvalidArgument,
        Self::Unauthenticated,
        Self::PermissionDenied,
        Self::NotFound,
        Self::AlreadyExists,
        Self::FailedPrecondition,
        Self::ResourceExhausted,
        Self::DeadlineExceeded,
        Self::Unavailable,
        Self::Cancelled,
        Self::Unimplemented,
        Self::Internal,
    ];

    /// The gRPC code a client receives.
    pub fn grpc_code(self) -> Code {
        match self {
            Self::InvalidArgument => Code::InvalidArgument,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::NotFound => Code::NotFound,
            Self::AlreadyExists => Code::AlreadyExists,
            Self::FailedPrecondition => Code::FailedPrecondition,
            Self::ResourceExhausted => Code::ResourceExhausted,
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::Unavailable => Code::Unavailable,
            Self::Cancelled => Code::Cancelled,
            Self::Unimplemented => Code::Unimplemented,
            Self::Internal => Code::Internal,
        }
    }

    /// The HTTP status of this code. Server-side failures that a client may retry
    /// (`DeadlineExceeded`, `Unavailable`, `Cancelled`) are all 503 "try again later"; a state
    /// that refuses a well-formed request is 422.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AlreadyExists => StatusCode::CONFLICT,
            Self::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::DeadlineExceeded | Self::Unavailable | Self::Cancelled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code of a gRPC answer. Codes the services never send fold into the nearest one:
    /// `OutOfRange` is an invalid argument, `Aborted` a conflict to retry (`Unavailable`), and
    /// `Unknown`, `DataLoss` and a nonsensical `Ok` are internal.
    pub fn from_grpc(code: Code) -> Self {
        match code {
            Code::InvalidArgument | Code::OutOfRange => Self::InvalidArgument,
            Code::Unauthenticated => Self::Unauthenticated,
            Code::PermissionDenied => Self::PermissionDenied,
            Code::NotFound => Self::NotFound,
            Code::AlreadyExists => Self::AlreadyExists,
            Code::FailedPrecondition => Self::FailedPrecondition,
            Code::ResourceExhausted => Self::ResourceExhausted,
            Code::DeadlineExceeded => Self::DeadlineExceeded,
            Code::Unavailable | Code::Aborted => Self::Unavailable,
            Code::Cancelled => Self::Cancelled,
            Code::Unimplemented => Self::Unimplemented,
            Code::Ok | Code::Unknown | Code::DataLoss | Code::Internal => Self::Internal,
        }
    }

    /// Whether the cause stays private: the client gets a fixed message and the cause is logged.
    pub fn is_server_side(self) -> bool {
        matches!(
            self,
            Self::DeadlineExceeded | Self::Unavailable | Self::Internal
        )
    }

    /// The fixed message a client gets for a server-side failure.
    fn opaque_message(self) -> &'static str {
        match self {
            Self::DeadlineExceeded => "the request took too long",
            Self::Unavailable => "temporarily unavailable, retry later",
            _ => "internal error",
        }
    }
}

/// An error a service answers with: it names its [`ServiceErrorCode`]; [`to_status`] does the
/// rest.
pub trait ServiceError: std::error::Error {
    /// The code of this error.
    fn error_code(&self) -> ServiceErrorCode;

    /// For a server-side failure, a message written for clients (e.g. "Twilio is unavailable,
    /// retry later") to send instead of the code's fixed one. `None`, the default, keeps the
    /// fixed message: the `Display` text of such errors may name hosts, SQL or causes.
    fn public_message(&self) -> Option<String> {
        None
    }
}

/// The `tonic::Status` for a service error. Client-fixable codes carry `e.to_string()`;
/// `DeadlineExceeded` and `Unavailable` are logged at WARN and `Internal` at ERROR, with the error,
/// and answered with a fixed message (or the error's [`ServiceError::public_message`]).
pub fn to_status<E: ServiceError + ?Sized>(e: &E) -> tonic::Status {
    let code = e.error_code();
    if !code.is_server_side() {
        return tonic::Status::new(code.grpc_code(), e.to_string());
    }
    if code == ServiceErrorCode::Internal {
        tracing::error!(error = %e, ?code, "request failed");
    } else {
        tracing::warn!(error = %e, ?code, "request failed");
    }
    let message = e
        .public_message()
        .unwrap_or_else(|| code.opaque_message().to_owned());
    tonic::Status::new(code.grpc_code(), message)
}

/// The gateway's one gRPC-to-HTTP table, for answering an HTTP client on behalf of a service.
/// It is [`ServiceErrorCode::http_status`] of the code, except that an upstream's internal
/// failure is 502 Bad Gateway (the gateway itself is fine), and `Ok` is 200.
pub fn http_status_for(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Internal | Code::Unknown | Code::DataLoss => StatusCode::BAD_GATEWAY,
        other => ServiceErrorCode::from_grpc(other).http_status(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Fake {
        code: ServiceErrorCode,
        text: String,
        public: Option<String>,
    }

    impl ServiceError for Fake {
        fn error_code(&self) -> ServiceErrorCode {
            self.code
        }
        fn public_message(&self) -> Option<String> {
            self.public.clone()
        }
    }

    fn fake(code: ServiceErrorCode, text: &str) -> Fake {
        Fake {
            code,
            text: text.into(),
            public: None,
        }
    }

    #[test]
    fn every_code_round_trips_through_grpc() {
        for code in ServiceErrorCode::ALL {
            assert_eq!(
                ServiceErrorCode::from_grpc(code.grpc_code()),
                code,
                "{code:?}"
            );
        }
    }

    #[test]
    fn grpc_codes_the_services_never_send_fold_into_the_nearest() {
        use ServiceErrorCode as S;
        for (grpc, ours) in [
            (Code::OutOfRange, S::InvalidArgument),
            (Code::Aborted, S::Unavailable),
            (Code::Unknown, S::Internal),
            (Code::DataLoss, S::Internal),
            (Code::Ok, S::Internal),
        ] {
            assert_eq!(S::from_grpc(grpc), ours, "{grpc:?}");
        }
    }

    #[test]
    fn every_code_has_its_http_status() {
        use ServiceErrorCode as S;
        let table = [
            (S::InvalidArgument, 400),
            (S::Unauthenticated, 401),
            (S::PermissionDenied, 403),
            (S::NotFound, 404),
            (S::AlreadyExists, 409),
            (S::FailedPrecondition, 422),
            (S::ResourceExhausted, 429),
            (S::DeadlineExceeded, 503),
            (S::Unavailable, 503),
            (S::Cancelled, 503),
            (S::Unimplemented, 501),
            (S::Internal, 500),
        ];
        assert_eq!(table.len(), S::ALL.len());
        for (code, http) in table {
            assert_eq!(code.http_status().as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn the_gateway_table_follows_the_codes_with_upstream_failures_as_bad_gateway() {
        for code in ServiceErrorCode::ALL {
            let expected = if code == ServiceErrorCode::Internal {
                StatusCode::BAD_GATEWAY
            } else {
                code.http_status()
            };
            assert_eq!(http_status_for(code.grpc_code()), expected, "{code:?}");
        }
        assert_eq!(http_status_for(Code::Ok), StatusCode::OK);
        assert_eq!(http_status_for(Code::OutOfRange), StatusCode::BAD_REQUEST);
        assert_eq!(http_status_for(Code::Unknown), StatusCode::BAD_GATEWAY);
        assert_eq!(http_status_for(Code::DataLoss), StatusCode::BAD_GATEWAY);
        assert_eq!(
            http_status_for(Code::Aborted),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn client_fixable_errors_carry_their_text() {
        for code in ServiceErrorCode::ALL
            .into_iter()
            .filter(|c| !c.is_server_side())
        {
            let status = to_status(&fake(code, "config.voice: unknown voice"));
            assert_eq!(status.code(), code.grpc_code());
            assert_eq!(status.message(), "config.voice: unknown voice");
        }
    }

    #[test]
    fn server_side_failures_are_opaque() {
        use ServiceErrorCode as S;
        for (code, message) in [
            (S::DeadlineExceeded, "the request took too long"),
            (S::Unavailable, "temporarily unavailable, retry later"),
            (S::Internal, "internal error"),
        ] {
            let status = to_status(&fake(code, "connection to 10.0.0.7:5432 refused"));
            assert_eq!(status.code(), code.grpc_code());
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn a_public_message_replaces_the_fixed_one() {
        let mut e = fake(
            ServiceErrorCode::Unavailable,
            "twilio: 502 from api.twilio.com",
        );
        e.public = Some("Twilio is unavailable, retry later".into());
        let status = to_status(&e);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "Twilio is unavailable, retry later");
    }
}
