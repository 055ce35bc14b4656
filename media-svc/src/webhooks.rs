//! Post-call webhooks: events built when a call's record reaches memory-svc, stored durably,
//! signed by tenant-svc and delivered with retries, then dead-lettered.

use std::time::Duration;

use secrecy::SecretSlice;

/// Delivery pacing and safety.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// How long an event is retried before it is dead-lettered.
    pub retry_for: Duration,
    /// First retry delay (doubles per attempt, with jitter).
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Time a receiver has to answer one attempt.
    pub timeout: Duration,
    /// Allow `http://` and loopback/private destinations (development and tests).
    pub allow_insecure: bool,
    /// Key of the caller hash; the database's key when unset.
    pub caller_hash_key: Option<SecretSlice<u8>>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            retry_for: Duration::from_secs(24 * 3600),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(900),
            timeout: Duration::from_secs(10),
            allow_insecure: false,
            caller_hash_key: None,
        }
    }
}
