//! The layers every portal request passes: security headers on every answer ([`headers`]),
//! the same-origin rule for every state-changing request ([`same_origin`]), and the
//! per-address allowance of the sign-in, invitation and reset forms ([`auth_posts`]).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::CookieMode;
use crate::{ClientAddress, PageError, Portal};

/// The Content-Security-Policy of every portal answer: only the portal's own files, no
/// framing, forms only to itself, no `<base>`.
pub const CSP: &str =
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// HSTS on https: a year, subdomains included.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Adds the security headers to every answer: CSP, `Referrer-Policy: no-referrer` (invitation
/// and reset tokens sit in URLs), `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`
/// (older browsers), HSTS on https only, and `Cache-Control: no-store` on everything but the
/// static files (pages hold a business's data and CSRF tokens).
pub async fn headers(State(portal): State<Arc<Portal>>, request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/portal/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if portal.config.cookie == CookieMode::Secure {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Whether a request may change state: it is a safe method, or its `Origin` is exactly the
/// portal's own, or it is `null` with `Sec-Fetch-Site: same-origin`. The last case is every
/// form the portal's own pages post: under the portal's `Referrer-Policy: no-referrer` a
/// browser serialises the `Origin` of a POST as `null` (Fetch, "serializing a request
/// origin"), and says where the request came from in `Sec-Fetch-Site`, a header no page can set
/// (a page of another site, even one on another port of the same host, shows `same-site` or
/// `cross-site` there). A missing `Origin` on a POST is refused.
pub fn origin_allowed(method: &Method, headers: &HeaderMap, origin: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let only = |name: &str, value: &[u8]| {
        headers
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .eq(std::iter::once(value))
    };
    only(header::ORIGIN.as_str(), origin.as_bytes())
        || only(header::ORIGIN.as_str(), b"null") && only("sec-fetch-site", b"same-origin")
}

/// Refuses (403 page) any state-changing request whose `Origin` is not the portal's, before
/// its body is read or a handler runs.
pub async fn same_origin(
    State(portal): State<Arc<Portal>>,
    request: Request,
    next: Next,
) -> Response {
    if origin_allowed(request.method(), request.headers(), &portal.config.origin) {
        return next.run(request).await;
    }
    tracing::warn!(
        path = request.uri().path(),
        "portal form refused: it did not come from the portal's own origin"
    );
    PageError::Refused(
        "This form was not sent from this site, so it was not accepted. Nothing was changed.",
    )
    .into_response()
}

type Keyed = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// The per-address allowance of the forms that cost a password hash (sign-in, invitation,
/// reset): checked before the body is read, so a flood costs no hashing at tenant-svc.
pub struct AuthLimiter {
    limiter: Keyed,
}

impl AuthLimiter {
    /// `per_minute` posts per address per minute, all of them at once at most.
    pub fn new(per_minute: u32) -> AuthLimiter {
        let n = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
        AuthLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
        }
    }

    /// `Err(seconds to wait)` when `address` is over its allowance.
    pub fn check(&self, address: IpAddr) -> Result<(), u64> {
        self.limiter.check_key(&address).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + 1
        })
    }

    /// Forgets addresses whose allowance is full again (keeps memory bounded).
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Guards the POST of the sign-in, invitation and reset forms: 429 page with `Retry-After`
/// beyond the address's allowance.
pub async fn auth_posts(
    State(portal): State<Arc<Portal>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(ClientAddress(address)) = request.extensions().get::<ClientAddress>().copied() else {
        tracing::error!("portal request without a client address (the gateway sets it)");
        return PageError::Internal.into_response();
    };
    match portal.auth_limiter.check(address) {
        Ok(()) => next.run(request).await,
        Err(secs) => {
            tracing::warn!(
                path = request.uri().path(),
                "portal sign-in form posts over the address's allowance"
            );
            PageError::TooMany(secs).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_portals_own_origin_may_post() {
        let own = "https://edge.example.com";
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::ORIGIN, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        assert!(origin_allowed(&Method::POST, &with(&[own]), own));
        assert!(origin_allowed(&Method::GET, &with(&[]), own));
        // A form of the portal's own page under `Referrer-Policy: no-referrer`, as Chromium
        // sends it (tests/tests/browser/forms.rs drives the real thing).
        let fetched = |origin: &[&str], site: &[&str]| {
            let mut h = with(origin);
            for v in site {
                h.append("sec-fetch-site", HeaderValue::from_str(v).unwrap());
            }
            h
        };
        assert!(origin_allowed(
            &Method::POST,
            &fetched(&["null"], &["same-origin"]),
            own
        ));
        for (origin, site) in [
            (&["null"][..], &["same-site"][..]),
            (&["null"], &["cross-site"]),
            (&["null"], &["none"]),
            (&["null"], &[]),
            (&["null"], &["same-origin", "cross-site"]),
            (&[], &["same-origin"]),
            (&["https://evil.example"], &["same-origin"]),
        ] {
            assert!(
                !origin_allowed(&Method::POST, &fetched(origin, site), own),
                "{origin:?} {site:?}"
            );
        }
        for refused in [
            &[][..],
            &["null"],
            &["https://evil.example"],
            &["https://edge.example.com.evil.example"],
            &["http://edge.example.com"],
            &[own, "https://evil.example"],
        ] {
            assert!(
                !origin_allowed(&Method::POST, &with(refused), own),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn the_auth_allowance_is_per_address() {
        let limiter = AuthLimiter::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!((1..=21).contains(&wait), "{wait}");
        assert!(limiter.check(b).is_ok());
    }
}
