//! One delivery attempt and what its outcome writes. An attempt asks tenant-svc to sign the body
//! (`SignWebhookEvent(now, body)`: the secrets never leave it, and the answer says where to
//! deliver), checks the destination, then POSTs with the signature headers, no redirects and a
//! bounded time. 2xx: delivered. 410 Gone, or FAILED_PRECONDITION from tenant-svc (webhook
//! removed): dead at once. Anything else: retried after [`backoff`] until the event's
//! `give_up_at`, then dead (a dead letter).

use std::time::Duration;

use chrono::Utc;
use mesh::domain::CustomerId;
use rand::Rng as _;

use super::destination::{NotAllowed, check_destination};
use super::{WebhookConfig, Webhooks};
use crate::error::MediaError;
use crate::peers::PeerError;
use crate::runtime::Runtime;
use crate::store::webhooks::{self as sql, ClaimedEvent, EventState};

/// How one attempt ended.
#[derive(Debug)]
pub(super) enum Outcome {
    Delivered(u16),
    Failed {
        error: String,
        /// The receiver's HTTP status, when it answered.
        status: Option<u16>,
        /// Dead at once (410 Gone, webhook removed, request refused for good).
        permanent: bool,
    },
}

impl Outcome {
    fn failed(error: impl Into<String>, permanent: bool) -> Self {
        Self::Failed {
            error: error.into(),
            status: None,
            permanent,
        }
    }

    /// The receiver answered with a status that is not a delivery.
    fn answered(status: u16, error: impl Into<String>, permanent: bool) -> Self {
        Self::Failed {
            error: error.into(),
            status: Some(status),
            permanent,
        }
    }
}

/// One delivery attempt of one event.
pub(super) async fn attempt(rt: &Runtime, customer: CustomerId, event: &ClaimedEvent) -> Outcome {
    let timestamp = Utc::now().timestamp();
    let signed = match rt
        .peers
        .sign_webhook_event(customer, timestamp, event.body.clone())
        .await
    {
        Ok(s) => s,
        Err(PeerError::Status(s)) if s.code() == tonic::Code::FailedPrecondition => {
            return Outcome::failed("webhook removed (no URL or secret)", true);
        }
        Err(e) => {
            return Outcome::failed(format!("signing failed: {}", e.short()), e.is_permanent());
        }
    };
    if signed.signatures.is_empty() {
        return Outcome::failed("signing returned no signature", false);
    }
    let url = match check_destination(&signed.webhook_url, rt.webhooks.config().allow_insecure) {
        Ok(u) => u,
        Err(error) => return Outcome::failed(error, false),
    };
    let signature = signed
        .signatures
        .iter()
        .map(|s| format!("v1={s}"))
        .collect::<Vec<_>>()
        .join(",");
    post(&rt.webhooks, url, event, timestamp, signature).await
}

/// The POST itself, and what its answer means.
async fn post(
    webhooks: &Webhooks,
    url: reqwest::Url,
    event: &ClaimedEvent,
    timestamp: i64,
    signature: String,
) -> Outcome {
    let sent = webhooks
        .http()
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("NeuroSphere-Event-Id", event.event_id.to_string())
        .header("NeuroSphere-Timestamp", timestamp.to_string())
        .header("NeuroSphere-Signature", signature)
        .body(event.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            Outcome::Delivered(response.status().as_u16())
        }
        Ok(response) if response.status() == reqwest::StatusCode::GONE => {
            Outcome::answered(410, "HTTP 410 (endpoint gone)", true)
        }
        Ok(response) => {
            let status = response.status().as_u16();
            Outcome::answered(status, format!("HTTP {status}"), false)
        }
        Err(e) => Outcome::failed(describe(&e), false),
    }
}

/// A short description of a transport error without the URL (its query may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<NotAllowed>() {
            return NotAllowed.to_string();
        }
        source = s.source();
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_request() || e.is_body() {
        "request failed".into()
    } else {
        "transport error".into()
    }
}

/// The delay before attempt `attempts + 1`: `base * 2^(attempts-1)`, capped, then a random
/// point in `[delay/2, delay]` so that events failing together do not retry together.
pub fn backoff(config: &WebhookConfig, attempts: i32) -> Duration {
    let shift = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    let delay = config
        .base_backoff
        .saturating_mul(1u32 << shift)
        .min(config.max_backoff);
    let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let jittered = rand::thread_rng().gen_range(millis / 2..=millis);
    Duration::from_millis(jittered)
}

/// Writes the outcome of an attempt: delivered, or failed (rescheduled or dead).
pub(super) async fn record(
    rt: &Runtime,
    customer: CustomerId,
    event: &ClaimedEvent,
    outcome: Outcome,
) -> Result<(), MediaError> {
    match outcome {
        Outcome::Delivered(status) => {
            metrics::counter!("media_webhook_delivered_total").increment(1);
            tracing::info!(customer_id = customer.get(), event_id = %event.event_id, call_sid = %event.call_sid, attempt = event.attempts, status, "webhook event delivered");
            rt.db
                .tenant_tx(customer, async |tx| {
                    sql::mark_delivered(tx, event.event_id, status).await
                })
                .await
        }
        Outcome::Failed {
            error,
            status,
            permanent,
        } => {
            let delay = backoff(rt.webhooks.config(), event.attempts);
            let error: String = error.chars().take(500).collect();
            let failure = sql::Failure {
                error: &error,
                status,
                permanent,
            };
            let state = rt
                .db
                .tenant_tx(customer, async |tx| {
                    sql::mark_failed(tx, event.event_id, failure, delay).await
                })
                .await?;
            metrics::counter!("media_webhook_failures_total", "permanent" => permanent.to_string())
                .increment(1);
            if state == EventState::Dead {
                metrics::counter!("media_webhook_dead_lettered_total").increment(1);
                tracing::warn!(customer_id = customer.get(), event_id = %event.event_id, call_sid = %event.call_sid, attempt = event.attempts, %error, permanent, "webhook event dead-lettered");
            } else {
                tracing::info!(customer_id = customer.get(), event_id = %event.event_id, call_sid = %event.call_sid, attempt = event.attempts, %error, "webhook attempt failed; will retry");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let config = WebhookConfig {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..WebhookConfig::default()
        };
        for _ in 0..50 {
            let d1 = backoff(&config, 1).as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            let d3 = backoff(&config, 3).as_millis();
            assert!((200..=400).contains(&d3), "{d3}");
            let d30 = backoff(&config, 30).as_millis();
            assert!((500..=1000).contains(&d30), "{d30}");
        }
    }
}
