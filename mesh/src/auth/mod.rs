//! Service authentication: who is calling, proven by a signed JWT, decided once per request.
//!
//! The parts:
//! - [`SigningKey`] / [`PublicKey`] / [`TrustedKeys`]: Ed25519 keys. Only an issuer holds its
//!   private key; every verifier holds a *trust bundle* (JWKS-like JSON where each key is bound
//!   to one issuer by an `iss` member), so rotating a key is "add the new kid, wait, remove the
//!   old kid".
//! - [`Minter`]: the issuer side; mints service tokens (`typ: service+jwt`, `kind: "service"`)
//!   and, only for [`TENANT_TOKEN_ISSUER`], tenant tokens (`typ: tenant+jwt`, `kind: "tenant"`).
//! - [`Verifier`]: one per service (its own name is the required audience). EdDSA only, `kid`
//!   must be trusted and bound to the token's `iss`, short leeway, bounded lifetimes, and the
//!   `typ` header and `kind` claim must agree (RFC 8725: explicit typing, so a token of one kind
//!   can never be replayed as the other). Produces a typed [`Caller`].
//! - [`Policy`] / [`Rule`]: per-RPC declaration of the token kind and scope each method needs,
//!   written next to the service; a method without a rule is refused (fail closed).
//! - [`AuthLayer`]: the tower layer on the gRPC server that ties these together.
//! - [`Revocations`]: tenants (suspension) and single token subjects of a tenant (a revoked API
//!   key) whose tokens issued up to a second are refused, kept by tenant-svc and checked by the
//!   layer after every verification, cached or not.
//! - [`bearer::token`]: the one `authorization: Bearer` header parser (the layer's and the
//!   gateway's HTTP endpoints').
//! - [`TokenSource`] / [`AttachToken`]: the client side, attaching (and re-minting) tokens.
//! - [`StreamCredentials`]: media-svc's stream tickets (the one thing TwiML carries) and stream
//!   grants, typed so that the [`Verifier`] refuses them on every gRPC method.
//! - [`LegacyVerifier`]: opt-in HS256 verification for the legacy REST endpoints only; it is
//!   never wired into the gRPC path.
//!
//! How a request flows: the client's [`AttachToken`] interceptor sets
//! `authorization: Bearer <jwt>`. On the server, [`AuthLayer`] lets health and reflection
//! through, otherwise verifies the token with the [`Verifier`], looks up the method's [`Rule`]
//! in the [`Policy`], checks kind and scope, removes the raw header, and puts the [`Caller`]
//! (plus the inner [`TenantCaller`] or [`ServiceCaller`]) into the request extensions. Any
//! failure is answered right there with UNAUTHENTICATED (the token is not acceptable) or
//! PERMISSION_DENIED (the caller is known but not allowed); the handler never runs. Handlers
//! read only the typed caller, through [`tenant_caller`] / [`service_caller`].

use std::fmt;
use std::time::Duration;

pub mod bearer;
mod client;
mod crypto;
mod error;
mod keys;
mod layer;
mod legacy;
mod mint;
mod policy;
pub mod revocation;
mod scopes;
mod stream;
mod verify;

pub use client::{AttachToken, DEFAULT_SERVICE_TOKEN_TTL, TokenSource, with_bearer};
pub use error::AuthError;
pub use keys::{PublicKey, SigningKey, TrustedKeys};
pub use layer::{AuthLayer, AuthService, operator_target, service_caller, tenant_caller};
pub use legacy::{
    DEFAULT_MAX_LEGACY_LIFETIME, LegacyClaims, LegacyVerifier, MIN_LEGACY_SECRET_LEN, legacy_scopes,
};
pub use mint::Minter;
pub use policy::{Grant, PUBLIC_PATH_PREFIXES, Policy, Rule};
pub use revocation::Revocations;
pub use scopes::Scopes;
pub use stream::{
    STREAM_GRANT_LIFETIME, STREAM_GRANT_TYP, STREAM_TICKET_LIFETIME, STREAM_TICKET_TYP,
    StreamCredentials, StreamGrant, StreamTicket,
};
pub use verify::{Caller, ServiceCaller, TenantCaller, Verifier};

/// The only service allowed to issue tenant tokens. A tenant token with any other `iss` is
/// refused even if its key is trusted, so a compromised service key cannot mint tenants.
pub const TENANT_TOKEN_ISSUER: &str = "tenant-svc";

/// JOSE `typ` of service tokens (RFC 8725 §3.11 explicit typing).
pub const SERVICE_TOKEN_TYP: &str = "service+jwt";

/// JOSE `typ` of tenant tokens.
pub const TENANT_TOKEN_TYP: &str = "tenant+jwt";

/// Clock skew tolerated on `exp`, `nbf` and `iat`. Larger values are clamped to this, because
/// every second of leeway extends the life of a stolen token.
pub const MAX_LEEWAY: Duration = Duration::from_secs(30);

/// Default leeway of a [`Verifier`] and [`LegacyVerifier`].
pub const DEFAULT_LEEWAY: Duration = MAX_LEEWAY;

/// Default (and minting) maximum lifetime `exp - iat` of a service token.
pub const DEFAULT_MAX_SERVICE_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Default (and minting) maximum lifetime `exp - iat` of a tenant token.
pub const DEFAULT_MAX_TENANT_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The two kinds of mesh token. Carried twice in every token (header `typ` and claim `kind`)
/// and checked against each other and against the method's [`Rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A service calling another service on its own behalf.
    Service,
    /// A caller acting for one customer (a live call, a customer's team).
    Tenant,
}

impl TokenKind {
    /// The `kind` claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Service => "service",
            TokenKind::Tenant => "tenant",
        }
    }

    /// The JOSE `typ` header value.
    pub fn typ(self) -> &'static str {
        match self {
            TokenKind::Service => SERVICE_TOKEN_TYP,
            TokenKind::Tenant => TENANT_TOKEN_TYP,
        }
    }

    /// Parses a `typ` header. Media types are case-insensitive and may carry the
    /// `application/` prefix (RFC 7515 §4.1.9), so both spellings are accepted.
    pub(crate) fn from_typ(typ: &str) -> Option<TokenKind> {
        let short = match typ.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
            _ => typ,
        };
        if short.eq_ignore_ascii_case(SERVICE_TOKEN_TYP) {
            Some(TokenKind::Service)
        } else if short.eq_ignore_ascii_case(TENANT_TOKEN_TYP) {
            Some(TokenKind::Tenant)
        } else {
            None
        }
    }

    /// Parses a `kind` claim (exact match: claims are not media types).
    pub(crate) fn from_claim(kind: &str) -> Option<TokenKind> {
        match kind {
            "service" => Some(TokenKind::Service),
            "tenant" => Some(TokenKind::Tenant),
            _ => None,
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Base64url without padding, the JOSE encoding.
pub(crate) fn b64url() -> base64::engine::general_purpose::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// Whether `s` is usable as an identifier in a token (issuer, kid, audience, scope): non-empty,
/// at most 128 bytes, printable ASCII without spaces. Keeps log lines and headers clean.
pub(crate) fn is_token_word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A copy of an attacker-controlled string that is safe to log: at most 64 characters,
/// non-printable bytes replaced.
pub(crate) fn sanitize_for_log(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_parsing_accepts_media_type_forms_only() {
        assert_eq!(TokenKind::from_typ("service+jwt"), Some(TokenKind::Service));
        assert_eq!(
            TokenKind::from_typ("Application/Tenant+JWT"),
            Some(TokenKind::Tenant)
        );
        assert_eq!(TokenKind::from_typ("JWT"), None);
        assert_eq!(TokenKind::from_typ("application/"), None);
        assert_eq!(TokenKind::from_typ("sérvice+jwt"), None);
        assert_eq!(TokenKind::from_claim("Service"), None);
    }
}
