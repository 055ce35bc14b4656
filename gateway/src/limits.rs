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
    /// Requests per source IP on `POST /v1/calls`, and the window they are counted over.
    pub public_calls_per_ip: (u32, Duration),
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            per_ip: (200, 400),
            per_account: (500, 1000),
            per_tenant: (50, 100),
            public_calls_per_ip: (3, Duration::from_secs(24 * 3600)),
        }
    }
}

/// The limiters.
pub struct Limits {
    ip: Arc<Keyed<IpAddr>>,
    account: Arc<Keyed<String>>,
    tenant: Arc<Keyed<i64>>,
    public_calls: Arc<Keyed<IpAddr>>,
}

/// `n` requests per `window`: a burst of `n`, then one more each `window / n` (GCRA), so a
/// client that used its `n` waits for capacity to come back rather than for a calendar reset.
fn per_window((n, window): (u32, Duration)) -> Quota {
    let n = NonZeroU32::new(n.max(1)).expect("non-zero");
    let period = (window / n.get()).max(Duration::from_millis(1));
    Quota::with_period(period)
        .expect("non-zero period")
        .allow_burst(n)
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
            public_calls: Arc::new(RateLimiter::keyed(per_window(config.public_calls_per_ip))),
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

    /// `Some(429)` when `ip` has used its `POST /v1/calls` allowance.
    pub fn check_public_calls(&self, ip: IpAddr) -> Option<Response> {
        check(&self.public_calls, &ip, "public-calls-ip")
    }

    /// Drops state for keys that are back under their limit (called periodically so memory
    /// stays bounded under many source addresses).
    pub fn shrink(&self) {
        self.ip.retain_recent();
        self.account.retain_recent();
        self.tenant.retain_recent();
        self.public_calls.retain_recent();
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

    #[test]
    fn public_calls_allow_n_per_window_then_429_until_capacity_returns() {
        let limits = Limits::new(LimitConfig {
            public_calls_per_ip: (3, Duration::from_secs(24 * 3600)),
            ..Default::default()
        });
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.check_public_calls(ip).is_none());
        }
        let refused = limits.check_public_calls(ip).expect("fourth refused");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = refused.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // One request's worth of capacity comes back after a third of the window.
        assert!((7 * 3600..=8 * 3600).contains(&wait), "{wait}");
        // The webhook limit of the same address is separate.
        assert!(limits.check_ip(ip).is_none());
    }
}
