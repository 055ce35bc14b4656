//! Rate limits at the edge (governor, GCRA): per source IP on the public endpoints, per Twilio
//! account on webhooks, per tenant on the legacy REST endpoints. A refused request gets 429 with
//! `Retry-After` and is counted; nothing behind the limit is touched.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

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
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            per_ip: (200, 400),
            per_account: (500, 1000),
            per_tenant: (50, 100),
        }
    }
}

/// The three limiters.
pub struct Limits {
    ip: Arc<Keyed<IpAddr>>,
    account: Arc<Keyed<String>>,
    tenant: Arc<Keyed<i64>>,
}

fn quota((per_second, burst): (u32, u32)) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second.max(1)).expect("non-zero"))
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("non-zero"))
}

fn check<K: Hash + Eq + Clone>(
    limiter: &Keyed<K>,
    key: &K,
    kind: &'static str,
) -> Option<Response> {
    match limiter.check_key(key) {
        Ok(()) => None,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.max(Duration::from_secs(1)).as_secs().to_string();
            metrics::counter!("gateway_rate_limited_total", "key" => kind).increment(1);
            Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, secs)],
                    "rate limit exceeded\n",
                )
                    .into_response(),
            )
        }
    }
}

impl Limits {
    /// Limiters for `config`.
    pub fn new(config: LimitConfig) -> Self {
        Self {
            ip: Arc::new(RateLimiter::keyed(quota(config.per_ip))),
            account: Arc::new(RateLimiter::keyed(quota(config.per_account))),
            tenant: Arc::new(RateLimiter::keyed(quota(config.per_tenant))),
        }
    }

    /// `Some(429)` when `ip` is over its limit.
    pub fn check_ip(&self, ip: IpAddr) -> Option<Response> {
        check(&self.ip, &ip, "ip")
    }

    /// `Some(429)` when the Twilio account is over its limit.
    pub fn check_account(&self, account_sid: &str) -> Option<Response> {
        check(&self.account, &account_sid.to_owned(), "account")
    }

    /// `Some(429)` when the tenant is over its limit.
    pub fn check_tenant(&self, customer_id: i64) -> Option<Response> {
        check(&self.tenant, &customer_id, "tenant")
    }

    /// Drops state for keys that are back under their limit (called periodically so memory
    /// stays bounded under many source addresses).
    pub fn shrink(&self) {
        self.ip.retain_recent();
        self.account.retain_recent();
        self.tenant.retain_recent();
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
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limits.check_ip(ip).is_none());
        assert!(limits.check_ip(ip).is_none());
        let refused = limits.check_ip(ip).expect("third request refused");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
        // Another address is unaffected.
        assert!(limits.check_ip("192.0.2.2".parse().unwrap()).is_none());
    }
}
