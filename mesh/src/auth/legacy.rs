//! Legacy HS256 bearer tokens (the old memory service's format). Opt-in, for the legacy REST
//! endpoints and the token exchange only: a shared secret means every holder can mint, so
//! these tokens are never accepted on the gRPC mesh itself.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::{AuthError, DEFAULT_LEEWAY, MAX_LEEWAY, b64url, sanitize_for_log};
use crate::domain::CustomerId;

/// Default longest legacy token accepted (`exp - iat`); `JWT_MAX_LIFETIME_SECONDS` sets it.
pub const DEFAULT_MAX_LEGACY_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The mesh scopes a legacy `scope` claim grants, mapped explicitly (the old system wrote
/// `memory:read:write`): `memory:read` reads, `memory:write` writes, `memory:read:write` (or
/// `memory:write:read`) both; items may be separated by spaces or commas. A missing or empty
/// claim means read-only. Anything else grants nothing (an unknown item is not a write).
pub fn legacy_scopes(scope: &str) -> Vec<&'static str> {
    use crate::identity::scope::{MEMORY_READ, MEMORY_WRITE};
    let items: Vec<&str> = scope
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|i| !i.is_empty())
        .collect();
    if items.is_empty() {
        return vec![MEMORY_READ];
    }
    let (mut read, mut write) = (false, false);
    for item in items {
        match item {
            "memory:read" => read = true,
            "memory:write" => write = true,
            "memory:read:write" | "memory:write:read" => (read, write) = (true, true),
            _ => {}
        }
    }
    [(read, MEMORY_READ), (write, MEMORY_WRITE)]
        .into_iter()
        .filter_map(|(granted, s)| granted.then_some(s))
        .collect()
}

/// The shortest HS256 secret accepted: 256 bits, the size of the HMAC-SHA256 output
/// (RFC 7518 §3.2).
pub const MIN_LEGACY_SECRET_LEN: usize = 32;

/// What a legacy token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyClaims {
    /// The customer the token names.
    pub customer_id: CustomerId,
    /// The legacy `scope` claim, as written (empty when absent).
    pub scope: String,
    /// The token's `exp` (seconds since the Unix epoch), so an exchanged token never outlives it.
    pub expires_at: i64,
}

/// Verifies legacy HS256 tokens: HS256 only, `exp` and `iat` required, leeway at most 30 s,
/// a lifetime `exp - iat` of at most 24 h (or as set), a positive integer `customer_id`.
#[derive(Clone)]
pub struct LegacyVerifier {
    key: DecodingKey,
    validation: Validation,
    max_lifetime: Duration,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<i64>,
    iat: Option<i64>,
    customer_id: Option<serde_json::Value>,
    scope: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
}

impl LegacyVerifier {
    /// A verifier for tokens signed with `secret`. Refuses secrets shorter than
    /// [`MIN_LEGACY_SECRET_LEN`] bytes: a short HMAC key can be brute-forced offline from any
    /// one token.
    pub fn new(secret: &SecretString) -> Result<LegacyVerifier, AuthError> {
        super::crypto::install();
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_LEGACY_SECRET_LEN {
            return Err(AuthError::WeakSecret {
                len: bytes.len(),
                min: MIN_LEGACY_SECRET_LEN,
            });
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Legacy tokens carry no audience; there is nothing to match.
        validation.validate_aud = false;
        validation.leeway = DEFAULT_LEEWAY.as_secs();
        Ok(LegacyVerifier {
            key: DecodingKey::from_secret(bytes),
            validation,
            max_lifetime: DEFAULT_MAX_LEGACY_LIFETIME,
        })
    }

    /// Sets the clock-skew leeway; values above 30 s are clamped to 30 s.
    pub fn with_leeway(mut self, leeway: Duration) -> LegacyVerifier {
        self.validation.leeway = leeway.min(MAX_LEEWAY).as_secs();
        self
    }

    /// Sets the longest lifetime `exp - iat` accepted (default 24 h): a shared-secret token
    /// minted for ten years is a password that never expires.
    pub fn with_max_lifetime(mut self, max: Duration) -> LegacyVerifier {
        self.max_lifetime = max;
        self
    }

    /// Verifies a legacy token (without `Bearer `).
    pub fn verify(&self, token: &str) -> Result<LegacyClaims, AuthError> {
        if token.len() > 8 * 1024 {
            return Err(AuthError::Malformed("token too long"));
        }
        // The algorithm first: nothing but HS256 (no `none`, no public-key algorithms).
        let header = token.split('.').next().unwrap_or_default();
        let header: RawHeader = b64url()
            .decode(header)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(AuthError::Malformed("bad header"))?;
        match header.alg.as_deref() {
            Some("HS256") => {}
            other => {
                return Err(AuthError::DisallowedAlgorithm(sanitize_for_log(
                    other.unwrap_or_default(),
                )));
            }
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::from_jwt(&e))?
            .claims;
        let expires_at = claims.exp.ok_or(AuthError::MissingClaim("exp"))?;
        let iat = claims.iat.ok_or(AuthError::MissingClaim("iat"))?;
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if iat > now + self.validation.leeway as i64 {
            return Err(AuthError::IssuedInFuture);
        }
        let max_secs = self.max_lifetime.as_secs();
        if expires_at.saturating_sub(iat) > i64::try_from(max_secs).unwrap_or(i64::MAX) {
            return Err(AuthError::LifetimeTooLong {
                lifetime_secs: expires_at.saturating_sub(iat),
                max_secs,
            });
        }
        let customer_id = claims
            .customer_id
            .ok_or(AuthError::MissingClaim("customer_id"))?
            .as_i64()
            .and_then(|id| CustomerId::new(id).ok())
            .ok_or(AuthError::InvalidClaim("customer_id"))?;
        Ok(LegacyClaims {
            customer_id,
            scope: claims.scope.unwrap_or_default(),
            expires_at,
        })
    }
}

#[cfg(any(test, feature = "testkit"))]
impl LegacyVerifier {
    /// Test helper: a legacy token for `customer_id` signed with this verifier's secret.
    /// Compiled only for tests and the `testkit` feature; production code never mints these.
    pub fn mint_for_tests(&self, customer_id: CustomerId, ttl: Duration) -> String {
        self.mint_scoped_for_tests(customer_id, ttl, Some("memory:read memory:write"))
    }

    /// Test helper: as [`LegacyVerifier::mint_for_tests`] with this `scope` claim (`None`: no
    /// claim).
    pub fn mint_scoped_for_tests(
        &self,
        customer_id: CustomerId,
        ttl: Duration,
        scope: Option<&str>,
    ) -> String {
        let secret = self
            .key
            .try_get_as_bytes()
            .expect("HMAC keys are raw bytes");
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = serde_json::json!({
            "customer_id": customer_id.get(),
            "iat": now,
            "exp": now + ttl.as_secs(),
        });
        if let Some(scope) = scope {
            claims["scope"] = scope.into();
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .expect("HS256 signing cannot fail")
    }
}

impl fmt::Debug for LegacyVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyVerifier")
            .field("leeway_secs", &self.validation.leeway)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let secret = SecretString::from("0123456789abcdef0123456789abcdef");
        let v = LegacyVerifier::new(&secret).unwrap();
        assert!(!format!("{v:?}").contains("0123456789"));
    }

    #[test]
    fn legacy_scopes_are_mapped_explicitly_and_default_to_read_only() {
        let rw = vec!["memory:read", "memory:write"];
        for (claim, granted) in [
            ("", vec!["memory:read"]),
            ("  ", vec!["memory:read"]),
            ("memory:read", vec!["memory:read"]),
            ("memory:write", vec!["memory:write"]),
            ("memory:read:write", rw.clone()),
            ("memory:write:read", rw.clone()),
            ("memory:read memory:write", rw.clone()),
            ("memory:read,memory:write", rw.clone()),
            ("memory:write memory:read memory:read", rw.clone()),
            ("memory:read admin", vec!["memory:read"]),
            ("admin", vec![]),
            ("memory:readwrite", vec![]),
            ("MEMORY:WRITE", vec![]),
            ("memory:*", vec![]),
        ] {
            assert_eq!(legacy_scopes(claim), granted, "{claim:?}");
        }
    }
}
