//! The client side: where a call's token comes from, and the interceptor that attaches it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret as _, SecretString};
use tonic::metadata::AsciiMetadataValue;

use super::{AuthError, Minter};

/// Lifetime of service tokens minted by [`TokenSource::service`]: short, so a leaked token is
/// useless soon, and re-minted at half-life so a call never leaves with an almost-expired one.
pub const DEFAULT_SERVICE_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// Where a client's bearer token comes from. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Source>,
}

enum Source {
    /// A token obtained elsewhere (e.g. a tenant token from `ResolveNumber`).
    Fixed(SecretString),
    /// Service tokens minted on demand with our own key.
    Service(ServiceSource),
}

struct ServiceSource {
    minter: Arc<Minter>,
    audience: String,
    scopes: Vec<String>,
    ttl: Duration,
    cache: Mutex<Option<Cached>>,
}

struct Cached {
    token: SecretString,
    header: AsciiMetadataValue,
    refresh_at: Instant,
}

impl ServiceSource {
    /// Reads the cached token, minting a fresh one first when none is cached or the cached
    /// one is past half its lifetime.
    fn with_cached<R>(&self, read: impl FnOnce(&Cached) -> R) -> Result<R, AuthError> {
        // Minting is a microseconds-long signature, so holding the lock while minting is
        // simpler than coordinating concurrent refreshes and costs nothing measurable.
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some(cached) = cache.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(read(cached));
        }
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let token = SecretString::from(self.minter.mint_service(
            &self.audience,
            &scopes,
            self.ttl,
        )?);
        let header = bearer_value(&token)?;
        let fresh = cache.insert(Cached {
            token,
            header,
            refresh_at: now + self.ttl / 2,
        });
        Ok(read(fresh))
    }
}

impl TokenSource {
    /// Always the same token.
    pub fn fixed(token: SecretString) -> TokenSource {
        TokenSource {
            inner: Arc::new(Source::Fixed(token)),
        }
    }

    /// Service tokens from `minter` for `audience` with `scopes`, living
    /// [`DEFAULT_SERVICE_TOKEN_TTL`], cached and re-minted when less than half their lifetime
    /// remains.
    pub fn service(minter: Arc<Minter>, audience: &str, scopes: &[&str]) -> TokenSource {
        TokenSource {
            inner: Arc::new(Source::Service(ServiceSource {
                minter,
                audience: audience.to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                ttl: DEFAULT_SERVICE_TOKEN_TTL,
                cache: Mutex::new(None),
            })),
        }
    }

    /// Sets the lifetime of minted service tokens (no effect on a fixed source). Returns a
    /// source with an empty cache.
    pub fn with_ttl(self, ttl: Duration) -> TokenSource {
        match &*self.inner {
            Source::Fixed(_) => self,
            Source::Service(s) => TokenSource {
                inner: Arc::new(Source::Service(ServiceSource {
                    minter: s.minter.clone(),
                    audience: s.audience.clone(),
                    scopes: s.scopes.clone(),
                    ttl,
                    cache: Mutex::new(None),
                })),
            },
        }
    }

    /// The current token.
    pub fn token(&self) -> Result<SecretString, AuthError> {
        match &*self.inner {
            Source::Fixed(token) => Ok(token.clone()),
            Source::Service(s) => s.with_cached(|c| c.token.clone()),
        }
    }

    /// The `authorization` metadata value (`Bearer <token>`), marked sensitive so HTTP/2
    /// never puts it in a compression table and debug output hides it.
    pub fn authorization(&self) -> Result<AsciiMetadataValue, AuthError> {
        match &*self.inner {
            Source::Fixed(token) => bearer_value(token),
            Source::Service(s) => s.with_cached(|c| c.header.clone()),
        }
    }
}

fn bearer_value(token: &SecretString) -> Result<AsciiMetadataValue, AuthError> {
    let mut value = AsciiMetadataValue::try_from(format!("Bearer {}", token.expose_secret()))
        .map_err(|_| AuthError::MintRefused("token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Source::Fixed(_) => f.write_str("TokenSource::Fixed(..)"),
            Source::Service(s) => f
                .debug_struct("TokenSource::Service")
                .field("issuer", &s.minter.issuer())
                .field("audience", &s.audience)
                .field("scopes", &s.scopes)
                .field("ttl", &s.ttl)
                .finish(),
        }
    }
}

/// Client interceptor setting `authorization: Bearer <token>` from a [`TokenSource`]:
/// `EdgeServiceClient::with_interceptor(channel, AttachToken(source))`.
#[derive(Debug, Clone)]
pub struct AttachToken(pub TokenSource);

impl tonic::service::Interceptor for AttachToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match self.0.authorization() {
            Ok(value) => {
                req.metadata_mut().insert("authorization", value);
                Ok(req)
            }
            Err(err) => {
                tracing::warn!(reason = %err, "cannot attach a bearer token");
                Err(err.to_status())
            }
        }
    }
}

/// `message` as a request carrying `authorization: Bearer <token>`, for one-off calls with a
/// token the caller already holds (a tenant token for one call, an operator token). A token
/// that is not valid header text is left out, so the call is refused as unauthenticated rather
/// than panicking.
pub fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(mut value) = AsciiMetadataValue::try_from(format!("Bearer {token}")) {
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{SigningKey, TrustedKeys, Verifier};

    #[test]
    fn service_source_caches_until_half_life() {
        let key = SigningKey::generate("gateway");
        let verifier = Verifier::new("tenant-svc", TrustedKeys::new().with(key.public_key()));
        let source = TokenSource::service(Arc::new(Minter::new(key)), "tenant-svc", &["a", "b"]);
        let first = source.token().unwrap();
        let again = source.token().unwrap();
        assert_eq!(first.expose_secret(), again.expose_secret());
        let caller = verifier.verify(first.expose_secret()).unwrap();
        assert!(caller.scopes().contains("b"));

        // Past half-life (simulated by moving the refresh point to now): a fresh token.
        let Source::Service(inner) = &*source.inner else {
            unreachable!()
        };
        inner.cache.lock().unwrap().as_mut().unwrap().refresh_at = Instant::now();
        let fresh = source.token().unwrap();
        assert_ne!(fresh.expose_secret(), first.expose_secret());
        assert!(verifier.verify(fresh.expose_secret()).is_ok());
        assert_eq!(
            source.token().unwrap().expose_secret(),
            fresh.expose_secret()
        );
    }

    #[test]
    fn header_value_is_sensitive_and_debug_hides_tokens() {
        let source = TokenSource::fixed(SecretString::from("abc.def.ghi"));
        let value = source.authorization().unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "Bearer abc.def.ghi");
        assert!(!format!("{source:?}").contains("abc"));
        assert!(!format!("{value:?}").contains("abc"));
        assert!(
            TokenSource::fixed(SecretString::from("a\nb"))
                .authorization()
                .is_err()
        );
    }
}
