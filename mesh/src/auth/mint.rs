//! The issuer side: signing service and tenant tokens.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;

use super::{
    AuthError, DEFAULT_MAX_SERVICE_LIFETIME, DEFAULT_MAX_TENANT_LIFETIME, SigningKey,
    TENANT_TOKEN_ISSUER, TokenKind, is_token_word,
};
use crate::domain::CustomerId;

/// Mints tokens with one [`SigningKey`]. Service tokens name the key's issuer as `iss` and
/// `sub`; tenant tokens can only be minted with a key of [`TENANT_TOKEN_ISSUER`]. Lifetimes are
/// capped at [`DEFAULT_MAX_SERVICE_LIFETIME`] / [`DEFAULT_MAX_TENANT_LIFETIME`], the same limits
/// verifiers apply by default, so a minted token is never refused for its lifetime.
#[derive(Debug)]
pub struct Minter {
    key: SigningKey,
}

/// The claims of a mesh token, as written.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a [&'a str],
    exp: i64,
    iat: i64,
    jti: String,
    kind: &'static str,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<i64>,
}

impl Minter {
    /// A minter signing with `key`.
    pub fn new(key: SigningKey) -> Minter {
        Minter { key }
    }

    /// The signing key's id (the `kid` of minted tokens).
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// The issuer (`iss`) of minted tokens.
    pub fn issuer(&self) -> &str {
        self.key.issuer()
    }

    /// The signing key (for the other credentials this issuer signs, [`super::StreamCredentials`]).
    pub(crate) fn key(&self) -> &SigningKey {
        &self.key
    }

    /// A service token from this issuer to `audience`, granting `scopes`, valid for `ttl`
    /// (1 s to 1 h).
    pub fn mint_service(
        &self,
        audience: &str,
        scopes: &[&str],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let issuer = self.key.issuer();
        self.mint(TokenKind::Service, issuer, &[audience], scopes, None, ttl)
    }

    /// A tenant token for `customer_id`, naming `subject` (a CallSid, a team name), accepted
    /// by `audiences`, granting `scopes`, valid for `ttl` (1 s to 24 h). Refused unless this
    /// minter's key belongs to [`TENANT_TOKEN_ISSUER`].
    pub fn mint_tenant(
        &self,
        customer_id: CustomerId,
        subject: &str,
        audiences: &[&str],
        scopes: &[&str],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        if self.key.issuer() != TENANT_TOKEN_ISSUER {
            return Err(AuthError::MintRefused(format!(
                "only {TENANT_TOKEN_ISSUER} may mint tenant tokens, this key belongs to {}",
                self.key.issuer()
            )));
        }
        self.mint(
            TokenKind::Tenant,
            subject,
            audiences,
            scopes,
            Some(customer_id),
            ttl,
        )
    }

    fn mint(
        &self,
        kind: TokenKind,
        subject: &str,
        audiences: &[&str],
        scopes: &[&str],
        customer_id: Option<CustomerId>,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let max = match kind {
            TokenKind::Service => DEFAULT_MAX_SERVICE_LIFETIME,
            TokenKind::Tenant => DEFAULT_MAX_TENANT_LIFETIME,
        };
        if ttl < Duration::from_secs(1) || ttl > max {
            return Err(AuthError::MintRefused(format!(
                "{kind} token lifetime must be between 1 s and {} s",
                max.as_secs()
            )));
        }
        // Subjects are CallSids or team names: printable, but spaces are allowed.
        if subject.trim().is_empty() || subject.len() > 256 || subject.chars().any(char::is_control)
        {
            return Err(AuthError::MintRefused(
                "subject must be 1-256 printable characters".into(),
            ));
        }
        if audiences.is_empty() || !audiences.iter().all(|a| is_token_word(a)) {
            return Err(AuthError::MintRefused(
                "audiences must be one or more service names without spaces".into(),
            ));
        }
        if !scopes.iter().all(|s| is_token_word(s)) {
            return Err(AuthError::MintRefused(
                "scopes must be words without spaces".into(),
            ));
        }

        let now = jsonwebtoken::get_current_timestamp() as i64;
        let claims = Claims {
            iss: self.key.issuer(),
            sub: subject,
            aud: audiences,
            exp: now + ttl.as_secs() as i64,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kind: kind.as_str(),
            scope: scopes.join(" "),
            customer_id: customer_id.map(CustomerId::get),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(kind.typ().to_owned());
        header.kid = Some(self.key.kid().to_owned());
        jsonwebtoken::encode(&header, &claims, self.key.encoding_key())
            .map_err(|e| AuthError::MintRefused(format!("signing failed: {e}")))
    }
}
