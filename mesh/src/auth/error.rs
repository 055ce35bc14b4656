//! Why authentication failed, and how that is told to the caller.
//!
//! The `Display` text is precise and meant for logs (it never contains a token). The caller
//! gets [`AuthError::to_status`]: a gRPC code and a short, fixed message, so a probing client
//! learns nothing about which check failed beyond "expired" vs "invalid".

use super::TokenKind;

/// An authentication or authorization failure, or a refused key/minting operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    // ----- the token is not acceptable: UNAUTHENTICATED -----
    /// No `authorization` metadata, or not a `Bearer` credential.
    #[error("no bearer token in the authorization metadata")]
    MissingToken,
    /// Not a well-formed compact JWS, or claims of the wrong JSON type.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than the one this verifier allows.
    #[error("algorithm {0:?} is not allowed")]
    DisallowedAlgorithm(String),
    /// The header has no `kid`.
    #[error("token has no key id")]
    MissingKeyId,
    /// The `kid` is not in the trusted key set (never trusted, or removed by rotation).
    #[error("unknown key id {0:?}")]
    UnknownKey(String),
    /// The signature does not verify with the key named by `kid`.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` is in the past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// `iat` is in the future, beyond the leeway.
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
    /// `exp - iat` is larger than this kind of token may live.
    #[error("token lifetime {lifetime_secs} s exceeds the maximum {max_secs} s")]
    LifetimeTooLong {
        /// `exp - iat` of the token.
        lifetime_secs: i64,
        /// The maximum for the token's kind.
        max_secs: u64,
    },
    /// `aud` does not name this service.
    #[error("token audience does not include this service")]
    WrongAudience,
    /// `iss` is not the issuer the signing key is bound to, or a tenant token not issued by
    /// the tenant issuer.
    #[error("token issuer does not match its key or kind")]
    WrongIssuer,
    /// `sub` is empty, or a service token whose `sub` differs from its `iss`.
    #[error("token subject is invalid for its kind")]
    WrongSubject,
    /// Missing or unknown `typ`, missing or unknown `kind`, or the two disagree.
    #[error("token type (typ header / kind claim) is missing or inconsistent")]
    WrongType,
    /// A required claim is absent.
    #[error("token lacks required claim {0}")]
    MissingClaim(&'static str),
    /// A claim is present but has an invalid value.
    #[error("token claim {0} is invalid")]
    InvalidClaim(&'static str),
    /// A service token carries `customer_id`; only tenant tokens may name a customer.
    #[error("service token carries customer_id")]
    UnexpectedCustomerId,
    /// A tenant token issued before its tenant's revocation (suspension): see
    /// [`super::Revocations`].
    #[error("tenant token revoked")]
    Revoked,

    // ----- the caller is known but not allowed: PERMISSION_DENIED -----
    /// The method needs the other kind of token.
    #[error("method needs a {expected} token, got a {got} token")]
    WrongKind {
        /// What the method's rule requires.
        expected: TokenKind,
        /// What the caller presented.
        got: TokenKind,
    },
    /// The token's scopes do not include the one the method requires.
    #[error("token lacks scope {0}")]
    MissingScope(String),
    /// The method has no rule in the policy (fail closed).
    #[error("no access rule for this method")]
    NoRule,
    /// The method's rule does not accept tokens from this issuer (a service's key can sign
    /// any scope; the rule names who may use it). Holds the verified, sanitized issuer.
    #[error("this method does not accept tokens issued by {0}")]
    IssuerNotAllowed(String),

    // ----- configuration and issuing (never caused by a caller's token) -----
    /// A key could not be parsed or is unusable.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A trust bundle could not be parsed or contains an unacceptable key.
    #[error("invalid trust bundle: {0}")]
    InvalidTrustBundle(String),
    /// The minter refused the request (wrong issuer for tenant tokens, lifetime, bad input).
    #[error("cannot mint token: {0}")]
    MintRefused(String),
    /// The legacy HS256 secret is too short to resist brute force.
    #[error(
        "legacy JWT secret is {len} bytes; at least {min} bytes are required (use 32+ random bytes)"
    )]
    WeakSecret {
        /// Length of the refused secret.
        len: usize,
        /// The minimum.
        min: usize,
    },
}

impl AuthError {
    /// Whether the caller is known but not allowed (as opposed to not authenticated).
    pub fn is_permission_denied(&self) -> bool {
        matches!(
            self,
            AuthError::WrongKind { .. }
                | AuthError::MissingScope(_)
                | AuthError::NoRule
                | AuthError::IssuerNotAllowed(_)
        )
    }

    /// The gRPC status for the caller: UNAUTHENTICATED or PERMISSION_DENIED with a short fixed
    /// message. Configuration and minting errors are reported as UNAUTHENTICATED too (the call
    /// cannot carry valid credentials), never with their details.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            AuthError::MissingToken => tonic::Status::unauthenticated("missing bearer token"),
            AuthError::Expired => tonic::Status::unauthenticated("token expired"),
            AuthError::Revoked => tonic::Status::unauthenticated("token revoked"),
            AuthError::WrongKind { expected, .. } => {
                tonic::Status::permission_denied(format!("this method needs a {expected} token"))
            }
            // The scope name comes from our own policy, not from the token.
            AuthError::MissingScope(scope) => {
                tonic::Status::permission_denied(format!("token lacks scope {scope}"))
            }
            AuthError::NoRule => tonic::Status::permission_denied("no access rule for this method"),
            // The issuer was verified (bound to a trusted key), so it is one of our own names.
            AuthError::IssuerNotAllowed(issuer) => tonic::Status::permission_denied(format!(
                "this method does not accept tokens issued by {issuer}"
            )),
            AuthError::InvalidKey(_)
            | AuthError::InvalidTrustBundle(_)
            | AuthError::MintRefused(_)
            | AuthError::WeakSecret { .. } => {
                tonic::Status::unauthenticated("credentials unavailable")
            }
            _ => tonic::Status::unauthenticated("invalid token"),
        }
    }

    /// A short, fixed label for metrics (`mesh_auth_rejections_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::Malformed(_) => "malformed",
            AuthError::DisallowedAlgorithm(_) => "algorithm",
            AuthError::MissingKeyId | AuthError::UnknownKey(_) => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::IssuedInFuture => "issued_in_future",
            AuthError::LifetimeTooLong { .. } => "lifetime",
            AuthError::WrongAudience => "audience",
            AuthError::WrongIssuer => "issuer",
            AuthError::WrongSubject => "subject",
            AuthError::WrongType => "type",
            AuthError::MissingClaim(_) | AuthError::InvalidClaim(_) => "claims",
            AuthError::UnexpectedCustomerId => "customer_id",
            AuthError::Revoked => "revoked",
            AuthError::WrongKind { .. } => "wrong_kind",
            AuthError::MissingScope(_) => "scope",
            AuthError::NoRule => "no_rule",
            AuthError::IssuerNotAllowed(_) => "issuer_not_allowed",
            AuthError::InvalidKey(_)
            | AuthError::InvalidTrustBundle(_)
            | AuthError::MintRefused(_)
            | AuthError::WeakSecret { .. } => "config",
        }
    }

    /// Failures that point at an attack or a key misconfiguration (worth a warning), as
    /// opposed to routine ones such as an expired token (debug).
    pub(crate) fn is_suspicious(&self) -> bool {
        matches!(
            self,
            AuthError::DisallowedAlgorithm(_)
                | AuthError::UnknownKey(_)
                | AuthError::BadSignature
                | AuthError::WrongIssuer
                | AuthError::WrongType
                | AuthError::UnexpectedCustomerId
                | AuthError::IssuedInFuture
                | AuthError::LifetimeTooLong { .. }
                | AuthError::IssuerNotAllowed(_)
        )
    }

    /// Maps a jsonwebtoken failure to our variants without keeping its text (which for JSON
    /// errors can quote parts of the token).
    pub(crate) fn from_jwt(err: &jsonwebtoken::errors::Error) -> AuthError {
        use jsonwebtoken::errors::ErrorKind;
        match err.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidSubject => AuthError::WrongSubject,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                AuthError::DisallowedAlgorithm("?".to_owned())
            }
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim_name(claim)),
            ErrorKind::InvalidClaimFormat(claim) => AuthError::InvalidClaim(claim_name(claim)),
            ErrorKind::Base64(_) => AuthError::Malformed("bad base64url"),
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => AuthError::Malformed("bad JSON"),
            ErrorKind::InvalidToken => AuthError::Malformed("not a compact JWS"),
            _ => AuthError::Malformed("unusable token"),
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(err: AuthError) -> tonic::Status {
        err.to_status()
    }
}

/// Registered claim names as `'static` so errors need no allocation.
fn claim_name(claim: &str) -> &'static str {
    match claim {
        "exp" => "exp",
        "nbf" => "nbf",
        "iat" => "iat",
        "iss" => "iss",
        "sub" => "sub",
        "aud" => "aud",
        _ => "claim",
    }
}
