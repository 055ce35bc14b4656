//! The signed-in user: [`Session`] (any role) and [`Owner`] (owners only; staff get the 403
//! page) extractors. A session is the secret in the browser's cookie; per request the portal
//! exchanges it at tenant-svc (`AccountService.ExchangeSession`, with the gateway's
//! `tenant:portal` service token) for the user and a tenant token of a few minutes, cached per
//! session for at most half the token's lifetime and at most 30 s ([`SessionCache`]), so a session
//! ended through another gateway replica stops working here within 30 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;
use mesh::api::tenant::{ExchangeSessionRequest, UserRole};
use secrecy::{ExposeSecret as _, SecretString};

use crate::layout::{Layout, NavItem, Role, UserBar};
use crate::{PageError, Portal, cookies, secret};

/// What the portal knows about a signed-in request. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionData>,
}

struct SessionData {
    user_id: i64,
    email: String,
    role: Role,
    customer_id: i64,
    business_name: String,
    session_id: i64,
    tenant_token: SecretString,
    secret: SecretString,
    csrf: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("customer_id", &self.inner.customer_id)
            .field("user_id", &self.inner.user_id)
            .field("role", &self.inner.role)
            .finish_non_exhaustive()
    }
}

/// The purpose label of the CSRF token derived from a session secret.
const CSRF_PURPOSE: &str = "session-csrf";

impl Session {
    /// The user's id within their customer.
    pub fn user_id(&self) -> i64 {
        self.inner.user_id
    }

    /// The user's e-mail address (their own; never log it).
    pub fn email(&self) -> &str {
        &self.inner.email
    }

    /// The user's role.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    /// Whether the user is an owner.
    pub fn is_owner(&self) -> bool {
        self.inner.role == Role::Owner
    }

    /// The customer (tenant) the user belongs to: log it as `customer_id`.
    pub fn customer_id(&self) -> i64 {
        self.inner.customer_id
    }

    /// The business's name.
    pub fn business_name(&self) -> &str {
        &self.inner.business_name
    }

    /// The session's id (as `AccountService.ListSessions` shows it; not its secret).
    pub fn session_id(&self) -> i64 {
        self.inner.session_id
    }

    /// The CSRF token every state-changing form of this session carries as its `csrf` field.
    pub fn csrf(&self) -> &str {
        &self.inner.csrf
    }

    /// The session secret, for the session-bound `AccountService` calls (sign-out, password,
    /// sessions). Never log it or put it in a page.
    pub fn secret(&self) -> &str {
        self.inner.secret.expose_secret()
    }

    /// `message` as a gRPC request carrying the session's tenant token (for tenant-svc,
    /// memory-svc and media-svc).
    pub fn grpc<T>(&self, message: T) -> tonic::Request<T> {
        mesh::auth::with_bearer(message, self.inner.tenant_token.expose_secret())
    }

    /// The layout of a page titled `title` with `current` marked in the navigation.
    pub fn layout(&self, title: impl Into<String>, current: NavItem) -> Layout {
        Layout {
            title: title.into(),
            current: Some(current),
            user: Some(UserBar {
                business: self.inner.business_name.clone(),
                email: self.inner.email.clone(),
                role: self.inner.role,
                csrf: self.inner.csrf.clone(),
            }),
        }
    }

    /// Whether `token` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, token: &str) -> bool {
        secret::same(token, &self.inner.csrf)
    }
}

/// The CSRF token of the session with `secret` ([`Session::csrf`]).
pub fn csrf_of(secret: &str) -> String {
    secret::derive(CSRF_PURPOSE, secret)
}

/// Where to come back to after signing in: the requested page for a GET, else the dashboard.
fn return_path(parts: &Parts) -> String {
    if parts.method == Method::GET {
        parts
            .uri
            .path_and_query()
            .map_or("/portal/", |pq| pq.as_str())
            .to_owned()
    } else {
        "/portal/".to_owned()
    }
}

impl FromRequestParts<Arc<Portal>> for Session {
    type Rejection = PageError;

    /// The session from the cookie, exchanged (or cached); without a valid one, the sign-in
    /// page (then back to the page asked for).
    async fn from_request_parts(
        parts: &mut Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(session) = parts.extensions.get::<Session>() {
            return Ok(session.clone());
        }
        let name = cookies::session_name(portal.config.cookie);
        let Some(secret) = cookies::get(&parts.headers, name) else {
            return Err(PageError::SignIn {
                next: return_path(parts),
            });
        };
        let session = match portal.sessions.get(secret) {
            Some(session) => session,
            None => exchange(portal, secret).await.map_err(|e| match e {
                PageError::SignIn { .. } => PageError::SignIn {
                    next: return_path(parts),
                },
                other => other,
            })?,
        };
        parts.extensions.insert(session.clone());
        Ok(session)
    }
}

/// Exchanges a session secret at tenant-svc and caches the answer.
async fn exchange(portal: &Portal, secret: &str) -> Result<Session, PageError> {
    let response = portal
        .account()
        .exchange_session(ExchangeSessionRequest {
            session_secret: secret.to_owned(),
        })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Unauthenticated => PageError::SignIn {
                next: "/portal/".into(),
            },
            _ => PageError::from(status),
        })?
        .into_inner();
    let user = response.user.ok_or_else(|| {
        tracing::error!("ExchangeSession answered without a user");
        PageError::Internal
    })?;
    if response.pending_approval {
        // No token for a customer awaiting approval: the waiting page is all there is (never
        // cached, so approval shows at the next page).
        tracing::debug!(
            customer_id = user.customer_id,
            user_id = user.id,
            "session of a pending customer"
        );
        return Err(PageError::Pending {
            business: user.business_name,
            email: user.email,
            csrf: csrf_of(secret),
        });
    }
    let role = match UserRole::try_from(user.role) {
        Ok(UserRole::Owner) => Role::Owner,
        Ok(UserRole::Staff) => Role::Staff,
        _ => {
            tracing::error!(
                customer_id = user.customer_id,
                "session user without a role"
            );
            return Err(PageError::Internal);
        }
    };
    let lifetime = response
        .token_expire_time
        .map(|t| t.seconds - chrono::Utc::now().timestamp())
        .and_then(|secs| u64::try_from(secs).ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let session = Session {
        inner: Arc::new(SessionData {
            user_id: user.id,
            email: user.email,
            role,
            customer_id: user.customer_id,
            business_name: user.business_name,
            session_id: response.session_id,
            tenant_token: SecretString::from(response.tenant_token),
            secret: SecretString::from(secret.to_owned()),
            csrf: csrf_of(secret),
        }),
    };
    portal
        .sessions
        .put(secret, session.clone(), cache_for(lifetime));
    Ok(session)
}

/// An owner's session; a staff user gets the 403 page.
#[derive(Debug, Clone)]
pub struct Owner(pub Session);

impl std::ops::Deref for Owner {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.0
    }
}

impl FromRequestParts<Arc<Portal>> for Owner {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, portal).await?;
        if session.is_owner() {
            Ok(Owner(session))
        } else {
            tracing::info!(
                customer_id = session.customer_id(),
                user_id = session.user_id(),
                path = parts.uri.path(),
                "staff user refused an owner page"
            );
            Err(PageError::Forbidden)
        }
    }
}

/// Longest a gateway trusts an exchanged session without asking tenant-svc again: a session
/// ended through another gateway replica (sign-out everywhere, a revoke, a password change, a
/// removed user) stops working here within this time at most.
pub const SESSION_RECHECK: Duration = Duration::from_secs(30);

/// How long an exchanged session is kept: half its token's remaining lifetime, at most
/// [`SESSION_RECHECK`].
fn cache_for(token_lifetime: Duration) -> Duration {
    (token_lifetime / 2).min(SESSION_RECHECK)
}

/// Most sessions cached at once; beyond it expired entries are dropped, then all.
const CACHE_CAP: usize = 50_000;

/// Exchanged sessions by the SHA-256 of their secret, each until half its token's lifetime or
/// [`SESSION_RECHECK`], whichever comes first.
#[derive(Default)]
pub struct SessionCache {
    map: Mutex<HashMap<[u8; 32], (Session, Instant)>>,
}

impl SessionCache {
    fn get(&self, secret: &str) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&secret::fingerprint(secret))
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(s, _)| s.clone())
    }

    fn put(&self, secret: &str, session: Session, keep: Duration) {
        if keep.is_zero() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CACHE_CAP {
            let now = Instant::now();
            map.retain(|_, (_, until)| now < *until);
            if map.len() >= CACHE_CAP {
                map.clear();
            }
        }
        map.insert(
            secret::fingerprint(secret),
            (session, Instant::now() + keep),
        );
    }

    /// Forgets a session (signed out, password changed): its next request exchanges again.
    pub fn forget(&self, secret: &str) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&secret::fingerprint(secret));
    }

    /// Forgets a cached session by its id (revoked from another browser).
    pub fn forget_session(&self, customer_id: i64, session_id: i64) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (s, _)| !(s.customer_id() == customer_id && s.session_id() == session_id));
    }

    /// Forgets every cached session of one user (signed out everywhere, password changed).
    pub fn forget_user(&self, customer_id: i64, user_id: i64) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (s, _)| !(s.customer_id() == customer_id && s.user_id() == user_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exchange_is_trusted_for_half_its_token_life_and_never_beyond_the_recheck() {
        assert_eq!(
            cache_for(Duration::from_secs(300)),
            SESSION_RECHECK,
            "a 5-minute token is rechecked after 30 s, not 150 s"
        );
        assert_eq!(cache_for(Duration::from_secs(40)), Duration::from_secs(20));
        assert_eq!(cache_for(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_cached_session_is_dropped_when_forgotten_and_zero_keep_caches_nothing() {
        let cache = SessionCache::default();
        let session = Session {
            inner: Arc::new(SessionData {
                user_id: 7,
                email: "owner@example.test".into(),
                role: Role::Owner,
                customer_id: 1,
                business_name: "Acme".into(),
                session_id: 3,
                tenant_token: SecretString::from("t".to_owned()),
                secret: SecretString::from("s".to_owned()),
                csrf: String::new(),
            }),
        };
        cache.put("s", session.clone(), Duration::ZERO);
        assert!(cache.get("s").is_none());
        cache.put("s", session, Duration::from_secs(10));
        assert_eq!(cache.get("s").map(|s| s.inner.session_id), Some(3));
        cache.forget("s");
        assert!(cache.get("s").is_none());
    }
}
