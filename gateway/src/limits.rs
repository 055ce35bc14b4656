//! Rate limits at the edge (governor, GCRA), each a layer in front of the handlers it guards, so
//! a refused request never reaches them: per client address on the Twilio endpoints
//! ([`per_ip`]), per Twilio account on voice webhooks once their signature is verified
//! ([`per_account`]), per client address on the legacy REST endpoints before their token costs
//! an exchange at tenant-svc ([`legacy_per_ip`]) and per tenant once it is exchanged
//! ([`per_tenant`]). A refused request gets 429 with `Retry-After` and is counted; nothing behind
//! the limit is touched. The per-address allowance of `POST /v1/calls` is media-svc's (it holds
//! across gateway replicas and restarts, and counts only requests with a valid token). Addresses
//! are the client's ([`ClientAddr`], behind trusted proxies the one they saw), keyed by
//! [`ClientAddr::limit_key`] (IPv6 by its /64).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use mesh::domain::{AccountSid, CustomerId};

use crate::extract::{ClientAddr, TwilioForm};
use crate::legacy::LegacyTenant;
use crate::state::Edge;
use crate::twilio::CallWebhook;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// Requests per second (sustained) and burst for each kind of key.
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    /// Per source IP.
    pub per_ip: (u32, u32),
    /// Per Twilio account.
    pub per_account: (u32, u32),
    /// Per tenant on the legacy REST endpoints.
    pub per_tenant: (u32, u32),
    /// Per client address on the legacy REST endpoints, before the token exchange.
    pub legacy_per_ip: (u32, u32),
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            per_ip: (200, 400),
            per_account: (500, 1000),
            per_tenant: (50, 100),
            legacy_per_ip: (50, 100),
        }
    }
}

/// The limiters.
pub struct Limits {
    ip: Arc<Keyed<IpAddr>>,
    account: Arc<Keyed<AccountSid>>,
    tenant: Arc<Keyed<CustomerId>>,
    legacy_ip: Arc<Keyed<IpAddr>>,
}

fn quota((per_second, burst): (u32, u32)) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second.max(1)).expect("non-zero"))
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("non-zero"))
}

/// A request over its limit: when to come back. Answers 429 with `Retry-After` in plain text;
/// the public API words it its own way ([`Refused::retry_after`]).
#[derive(Debug)]
pub struct Refused {
    retry_after_secs: u64,
}

impl Refused {
    /// The `Retry-After` header value: whole seconds, at least one.
    pub fn retry_after(&self) -> HeaderValue {
        HeaderValue::from(self.retry_after_secs)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, self.retry_after())],
            "rate limit exceeded\n",
        )
            .into_response()
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: &Keyed<K>,
    key: &K,
    kind: &'static str,
) -> Result<(), Refused> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        metrics::counter!("gateway_rate_limited_total", "key" => kind).increment(1);
        Refused {
            retry_after_secs: wait.max(Duration::from_secs(1)).as_secs(),
        }
    })
}

impl Limits {
    /// Limiters for `config`.
    pub fn new(config: LimitConfig) -> Self {
        Self {
            ip: Arc::new(RateLimiter::keyed(quota(config.per_ip))),
            account: Arc::new(RateLimiter::keyed(quota(config.per_account))),
            tenant: Arc::new(RateLimiter::keyed(quota(config.per_tenant))),
            legacy_ip: Arc::new(RateLimiter::keyed(quota(config.legacy_per_ip))),
        }
    }

    /// Takes one request of the client's allowance on the Twilio endpoints.
    pub fn check_ip(&self, client: ClientAddr) -> Result<(), Refused> {
        check(&self.ip, &client.limit_key(), "ip")
    }

    /// Takes one legacy REST request of the client's allowance (before its token exchange).
    pub fn check_legacy_ip(&self, client: ClientAddr) -> Result<(), Refused> {
        check(&self.legacy_ip, &client.limit_key(), "legacy-ip")
    }

    /// Takes one voice webhook of the Twilio account's allowance.
    pub fn check_account(&self, account_sid: &AccountSid) -> Result<(), Refused> {
        check(&self.account, account_sid, "account")
    }

    /// Takes one legacy REST request of the tenant's allowance.
    pub fn check_tenant(&self, customer_id: CustomerId) -> Result<(), Refused> {
        check(&self.tenant, &customer_id, "tenant")
    }

    /// Drops state for keys that are back under their limit (called periodically so memory
    /// stays bounded under many source addresses).
    pub fn shrink(&self) {
        self.ip.retain_recent();
        self.account.retain_recent();
        self.tenant.retain_recent();
        self.legacy_ip.retain_recent();
    }
}

/// Layer: the client address's allowance on the Twilio endpoints (webhooks, Media Streams).
pub async fn per_ip(
    State(edge): State<Arc<Edge>>,
    client: ClientAddr,
    request: Request,
    next: Next,
) -> Response {
    match edge.limits.check_ip(client) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// Layer: the Twilio account's allowance of voice webhooks. The account is only known from a
/// verified form (an unsigned request must not spend a real account's allowance), so this layer
/// runs the handler's own [`TwilioForm`] extractor (its refusals are the handler's) and hands
/// the verified webhook on to it.
pub async fn per_account(State(edge): State<Arc<Edge>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let verified =
        TwilioForm::<CallWebhook>::from_request(Request::from_parts(parts.clone(), body), &edge)
            .await;
    let form = match verified {
        Ok(form) => form,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(refused) = edge.limits.check_account(&form.0.account_sid) {
        return refused.into_response();
    }
    next.run(form.into_request(parts)).await
}

/// Layer: the client address's allowance on the legacy REST endpoints, in front of the
/// per-tenant one: a flood of made-up tokens is refused here without costing tenant-svc an
/// exchange each.
pub async fn legacy_per_ip(
    State(edge): State<Arc<Edge>>,
    client: ClientAddr,
    request: Request,
    next: Next,
) -> Response {
    match edge.limits.check_legacy_ip(client) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// Layer: the tenant's allowance on the legacy REST endpoints, once its token is exchanged
/// (the extractor keeps the exchanged tenant for the handler).
pub async fn per_tenant(
    State(edge): State<Arc<Edge>>,
    tenant: LegacyTenant,
    request: Request,
    next: Next,
) -> Response {
    match edge.limits.check_tenant(tenant.customer_id) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_over_the_limit_gets_429_with_retry_after() {
        let limits = Limits::new(LimitConfig {
            per_ip: (1, 2),
            ..Default::default()
        });
        let ip = ClientAddr("192.0.2.1".parse().unwrap());
        assert!(limits.check_ip(ip).is_ok());
        assert!(limits.check_ip(ip).is_ok());
        let refused = limits
            .check_ip(ip)
            .expect_err("third request refused")
            .into_response();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
        // Another address is unaffected.
        assert!(
            limits
                .check_ip(ClientAddr("192.0.2.2".parse().unwrap()))
                .is_ok()
        );
    }
}
