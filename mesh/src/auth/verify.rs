//! The verifier side: from a compact JWS to a typed [`Caller`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::keys::TrustedKey;
use super::{
    AuthError, DEFAULT_LEEWAY, DEFAULT_MAX_SERVICE_LIFETIME, DEFAULT_MAX_TENANT_LIFETIME,
    MAX_LEEWAY, Scopes, TENANT_TOKEN_ISSUER, TokenKind, TrustedKeys, b64url, sanitize_for_log,
};
use crate::domain::CustomerId;

/// Upper bound on a token's size; anything longer is refused before any decoding work.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Who is calling, as established by a verified token. Handlers read only this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Another service, on its own behalf.
    Service(ServiceCaller),
    /// Someone acting for one customer.
    Tenant(TenantCaller),
}

/// A verified service token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCaller {
    /// The calling service (`iss`, equal to `sub`), e.g. "gateway".
    pub issuer: String,
    /// The granted scopes.
    pub scopes: Scopes,
}

/// A verified tenant token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCaller {
    /// The customer every query of this request is confined to.
    pub customer_id: CustomerId,
    /// `sub`: a CallSid, a team name.
    pub subject: String,
    /// The granted scopes.
    pub scopes: Scopes,
}

impl Caller {
    /// The token kind this caller presented.
    pub fn kind(&self) -> TokenKind {
        match self {
            Caller::Service(_) => TokenKind::Service,
            Caller::Tenant(_) => TokenKind::Tenant,
        }
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        match self {
            Caller::Service(s) => &s.scopes,
            Caller::Tenant(t) => &t.scopes,
        }
    }

    /// The customer of a tenant caller.
    pub fn customer_id(&self) -> Option<CustomerId> {
        match self {
            Caller::Service(_) => None,
            Caller::Tenant(t) => Some(t.customer_id),
        }
    }
}

/// Verifies mesh tokens addressed to one service. Cheap to clone (two `Arc`s); clones share
/// the trusted keys, so [`Verifier::replace_keys`] on any clone (e.g. after reloading the
/// trust bundle) takes effect for the running server.
#[derive(Clone)]
pub struct Verifier {
    config: Arc<Config>,
    keys: Arc<RwLock<Arc<TrustedKeys>>>,
    /// Tokens that verified, with their callers, until they expire (see [`Verifier::verify`]).
    accepted: Arc<Mutex<HashMap<Box<str>, Accepted>>>,
}

/// A token that passed every check, remembered until its `exp` (+ leeway).
struct Accepted {
    caller: Caller,
    exp: i64,
    iat: i64,
}

/// Most verified tokens remembered per verifier (a token is a few hundred bytes: ~3 MB at most).
/// Past it, expired ones are dropped, and if none had expired, all of them.
const MAX_ACCEPTED: usize = 4096;

#[derive(Clone)]
struct Config {
    audience: String,
    leeway: u64,
    max_service_lifetime: u64,
    max_tenant_lifetime: u64,
    /// Prepared once: algorithm allow-list, required claims, audience, leeway.
    validation: Validation,
}

/// The header members we act on, read before any other work so a disallowed algorithm is
/// refused first.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

/// The claims as received. Everything optional so that a missing claim is reported as such
/// (jsonwebtoken reports missing registered claims; we report the rest).
#[derive(Deserialize)]
struct ReceivedClaims {
    iss: Option<String>,
    sub: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
    kind: Option<String>,
    scope: Option<String>,
    /// `Some` whenever the member is present, even as `null`.
    #[serde(default, deserialize_with = "present")]
    customer_id: Option<serde_json::Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl Verifier {
    /// A verifier for tokens addressed to `audience` (this service's name, e.g. "tenant-svc"),
    /// with leeway 30 s and maximum lifetimes of 1 h (service) and 24 h (tenant).
    pub fn new(audience: &str, keys: TrustedKeys) -> Verifier {
        super::crypto::install();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.set_audience(&[audience]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        // `iss` must equal the issuer the signing key is bound to, which depends on the kid:
        // checked right after signature verification instead of with a fixed issuer set.
        validation.iss = None;
        validation.leeway = DEFAULT_LEEWAY.as_secs();
        Verifier {
            config: Arc::new(Config {
                audience: audience.to_owned(),
                leeway: DEFAULT_LEEWAY.as_secs(),
                max_service_lifetime: DEFAULT_MAX_SERVICE_LIFETIME.as_secs(),
                max_tenant_lifetime: DEFAULT_MAX_TENANT_LIFETIME.as_secs(),
                validation,
            }),
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            accepted: Arc::default(),
        }
    }

    /// Sets the clock-skew leeway. Values above [`MAX_LEEWAY`] (30 s) are clamped to it.
    pub fn with_leeway(mut self, leeway: Duration) -> Verifier {
        let secs = if leeway > MAX_LEEWAY {
            tracing::warn!(
                requested_secs = leeway.as_secs(),
                "auth leeway above 30 s refused; using 30 s"
            );
            MAX_LEEWAY.as_secs()
        } else {
            leeway.as_secs()
        };
        let config = Arc::make_mut(&mut self.config);
        config.leeway = secs;
        config.validation.leeway = secs;
        // Other rules: what a clone with the old ones accepted proves nothing here.
        self.accepted = Arc::default();
        self
    }

    /// Sets the maximum `exp - iat` of service tokens (default 1 h).
    pub fn with_max_service_lifetime(mut self, max: Duration) -> Verifier {
        Arc::make_mut(&mut self.config).max_service_lifetime = max.as_secs();
        self.accepted = Arc::default();
        self
    }

    /// Sets the maximum `exp - iat` of tenant tokens (default 24 h).
    pub fn with_max_tenant_lifetime(mut self, max: Duration) -> Verifier {
        Arc::make_mut(&mut self.config).max_tenant_lifetime = max.as_secs();
        self.accepted = Arc::default();
        self
    }

    /// The audience this verifier requires.
    pub fn audience(&self) -> &str {
        &self.config.audience
    }

    /// The current trusted keys.
    pub fn trusted_keys(&self) -> Arc<TrustedKeys> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the trusted keys for this verifier and all its clones (key rotation). Tokens
    /// verified before are verified again: one signed by a key no longer listed is refused.
    pub fn replace_keys(&self, keys: TrustedKeys) {
        let mut current = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        *current = Arc::new(keys);
        self.accepted_lock().clear();
    }

    fn accepted_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Accepted>> {
        self.accepted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Verifies a token (without the `Bearer ` prefix) and returns the caller it proves.
    ///
    /// A token that passed every check is remembered, by its exact text, until it expires, and
    /// is then accepted without checking its signature again (as API gateways do with a
    /// verified-JWT cache): a service calls with the same token for up to an hour, and an
    /// Ed25519 verification costs ~50 µs on every request. This changes no answer: every check
    /// depends only on the token's text, the trusted keys (replacing them empties the memory)
    /// and the clock, and the clock can only make an accepted token invalid through `exp`,
    /// which is checked on every use. Refused tokens are never remembered, so garbage costs a
    /// full check each time and cannot fill the memory.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_issued(token).map(|(caller, _)| caller)
    }

    /// As [`Verifier::verify`], with the token's `iat` (what revocation compares: see
    /// [`super::Revocations`], which the auth layer checks after this, cached or not).
    pub fn verify_issued(&self, token: &str) -> Result<(Caller, i64), AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("token too long"));
        }
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if let Some(hit) = self.accepted_lock().get(token)
            && now <= hit.exp.saturating_add(self.config.leeway as i64)
        {
            return Ok((hit.caller.clone(), hit.iat));
        }
        let keys = self.trusted_keys();
        let (caller, exp, iat) = self.verify_fully(token, &keys)?;
        let mut accepted = self.accepted_lock();
        // Only while the keys it was checked against are still the current ones.
        if Arc::ptr_eq(&keys, &self.trusted_keys()) {
            if accepted.len() >= MAX_ACCEPTED {
                let leeway = self.config.leeway as i64;
                accepted.retain(|_, a| now <= a.exp.saturating_add(leeway));
                if accepted.len() >= MAX_ACCEPTED {
                    accepted.clear();
                }
            }
            accepted.insert(
                token.into(),
                Accepted {
                    caller: caller.clone(),
                    exp,
                    iat,
                },
            );
        }
        Ok((caller, iat))
    }

    /// Every check, with no memory: the caller and the token's `exp` and `iat`.
    ///
    /// Order matters: the algorithm is checked before anything else, the signature before any
    /// claim is trusted, and every claim after that.
    fn verify_fully(
        &self,
        token: &str,
        keys: &TrustedKeys,
    ) -> Result<(Caller, i64, i64), AuthError> {
        let config = &*self.config;
        let (typ_kind, kid) = check_header(token)?;

        let TrustedKey { public, decoding } = keys
            .trusted(&kid)
            .ok_or_else(|| AuthError::UnknownKey(sanitize_for_log(&kid)))?;

        // Signature, then exp/nbf/aud and the presence of exp/aud/iss/sub.
        let claims = jsonwebtoken::decode::<ReceivedClaims>(token, decoding, &config.validation)
            .map_err(|e| AuthError::from_jwt(&e))?
            .claims;

        let iss = claims.iss.ok_or(AuthError::MissingClaim("iss"))?;
        if iss != public.issuer() {
            return Err(AuthError::WrongIssuer);
        }
        let sub = claims.sub.ok_or(AuthError::MissingClaim("sub"))?;
        let exp = claims.exp.ok_or(AuthError::MissingClaim("exp"))?;
        let iat = claims.iat.ok_or(AuthError::MissingClaim("iat"))?;
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if iat > now + config.leeway as i64 {
            return Err(AuthError::IssuedInFuture);
        }
        let jti = claims.jti.ok_or(AuthError::MissingClaim("jti"))?;
        if !uuid::Uuid::try_parse(&jti).is_ok_and(|u| u.get_version_num() == 4) {
            return Err(AuthError::InvalidClaim("jti"));
        }

        let kind = claims
            .kind
            .as_deref()
            .and_then(TokenKind::from_claim)
            .ok_or(AuthError::WrongType)?;
        if kind != typ_kind {
            return Err(AuthError::WrongType);
        }
        let max = match kind {
            TokenKind::Service => config.max_service_lifetime,
            TokenKind::Tenant => config.max_tenant_lifetime,
        };
        // Saturating: both values come from the token, and `iat` may be absurdly negative.
        let lifetime = exp.saturating_sub(iat);
        if lifetime <= 0 {
            return Err(AuthError::InvalidClaim("exp"));
        }
        if lifetime as u64 > max {
            return Err(AuthError::LifetimeTooLong {
                lifetime_secs: lifetime,
                max_secs: max,
            });
        }
        let scopes = Scopes::parse(claims.scope.as_deref().unwrap_or(""));

        let caller = caller_of(kind, iss, sub, claims.customer_id, scopes)?;
        Ok((caller, exp, iat))
    }
}

/// The header checks, before any key is looked up: EdDSA only, no `crit`, a known `typ`, a
/// `kid`. Returns the kind the `typ` names and the key id.
fn check_header(token: &str) -> Result<(TokenKind, String), AuthError> {
    let header = parse_header(token)?;
    match header.alg.as_deref() {
        Some("EdDSA") => {}
        Some(other) => return Err(AuthError::DisallowedAlgorithm(sanitize_for_log(other))),
        None => return Err(AuthError::DisallowedAlgorithm(String::new())),
    }
    // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
    if header.crit.is_some() {
        return Err(AuthError::Malformed("crit header not supported"));
    }
    let typ_kind = header
        .typ
        .as_deref()
        .and_then(TokenKind::from_typ)
        .ok_or(AuthError::WrongType)?;
    let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
    Ok((typ_kind, kid))
}

/// The caller of a verified token of `kind`, after the checks only one kind has: a service token
/// names itself and no tenant; a tenant token comes from tenant-svc and names a valid customer.
fn caller_of(
    kind: TokenKind,
    iss: String,
    sub: String,
    customer_id: Option<serde_json::Value>,
    scopes: Scopes,
) -> Result<Caller, AuthError> {
    match kind {
        TokenKind::Service => {
            if customer_id.is_some() {
                return Err(AuthError::UnexpectedCustomerId);
            }
            if sub != iss {
                return Err(AuthError::WrongSubject);
            }
            Ok(Caller::Service(ServiceCaller {
                issuer: iss,
                scopes,
            }))
        }
        TokenKind::Tenant => {
            if iss != TENANT_TOKEN_ISSUER {
                return Err(AuthError::WrongIssuer);
            }
            let raw = customer_id.ok_or(AuthError::MissingClaim("customer_id"))?;
            let customer_id = raw
                .as_i64()
                .and_then(|id| CustomerId::new(id).ok())
                .ok_or(AuthError::InvalidClaim("customer_id"))?;
            if sub.trim().is_empty() {
                return Err(AuthError::WrongSubject);
            }
            Ok(Caller::Tenant(TenantCaller {
                customer_id,
                subject: sub,
                scopes,
            }))
        }
    }
}

/// Decodes the protected header of a compact JWS (`header.payload.signature`).
fn parse_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not a compact JWS"));
    };
    if header.len() > 1024 {
        return Err(AuthError::Malformed("header too long"));
    }
    let json = b64url()
        .decode(header)
        .map_err(|_| AuthError::Malformed("bad base64url"))?;
    serde_json::from_slice(&json).map_err(|_| AuthError::Malformed("bad header JSON"))
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("audience", &self.config.audience)
            .field("leeway_secs", &self.config.leeway)
            .field(
                "max_service_lifetime_secs",
                &self.config.max_service_lifetime,
            )
            .field("max_tenant_lifetime_secs", &self.config.max_tenant_lifetime)
            .field("keys", &self.trusted_keys())
            .finish()
    }
}
