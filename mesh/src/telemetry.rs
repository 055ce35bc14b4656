//! Telemetry: the `tracing` subscriber, the per-request span, and the Prometheus recorder.
//!
//! Output format is chosen by `LOG_FORMAT` (`json` or `pretty`) and filtered by `RUST_LOG`.
//! Every gRPC request runs inside an `rpc` span carrying the method, a request id (taken from
//! `x-request-id` when the caller sent a sane one, generated otherwise) and `customer_id`, which
//! starts empty and is filled by the auth layer once the token is verified, so every log line a
//! handler writes for a tenant carries the tenant.
//!
//! Never log raw phone numbers, transcripts, tokens or secrets: use [`redact_phone`] for numbers.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "plain" | "text" => Ok(Self::Pretty),
            other => Err(format!("expected `json` or `pretty`, got {other:?}")),
        }
    }
}

/// Builds a subscriber writing to `sink` (stdout in binaries, a buffer in tests).
pub fn get_subscriber<W>(
    filter: &str,
    format: LogFormat,
    sink: W,
) -> Box<dyn Subscriber + Send + Sync + 'static>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        LogFormat::Json => Box::new(
            Registry::default().with(filter).with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Pretty => Box::new(
            Registry::default()
                .with(filter)
                .with(tracing_subscriber::fmt::layer().compact().with_writer(sink)),
        ),
    }
}

/// Installs the subscriber as the global default. Safe to call more than once (later calls are
/// ignored), which matters when several services run in one process (`neurosphere up`, tests).
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync + 'static>) {
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Reads `LOG_FORMAT` and `RUST_LOG` and installs a stdout subscriber.
pub fn init_from_env() {
    let format = std::env::var("LOG_FORMAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LogFormat::Pretty);
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    init_subscriber(get_subscriber(&filter, format, std::io::stdout));
}

/// The process-wide Prometheus recorder. `metrics` has one global recorder, so services that
/// share a process share one registry; every series carries a `service` label where it matters.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then we still return a
        // handle that renders our own (empty) registry rather than failing start-up.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Makes the span every gRPC request runs in. `customer_id` is recorded by the auth layer.
pub fn rpc_span<B>(request: &http::Request<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    tracing::info_span!(
        "rpc",
        method = %request.uri().path(),
        request_id = %request_id,
        customer_id = tracing::field::Empty,
    )
}

/// Records the tenant a request concerns on the current `rpc` span, so that every line logged
/// about it from here on names it. The auth layer does this for tenant tokens; a service token
/// names no tenant, so an operator's or the edge's handler calls this once it knows the tenant.
pub fn record_customer(customer: crate::domain::CustomerId) {
    tracing::Span::current().record("customer_id", customer.get());
}

/// A phone number as it may appear in logs: country code and last two digits only, e.g.
/// `+1…12`. Use a keyed hash (gateway) where numbers must be correlated across lines.
pub fn redact_phone(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 6 {
        return "<redacted>".to_owned();
    }
    let tail: String = digits[digits.len() - 2..].iter().collect();
    format!("+{}…{tail}", digits[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_carry_span_fields() {
        let buf = Buf::default();
        let sub = get_subscriber("info", LogFormat::Json, buf.clone());
        tracing::subscriber::with_default(sub, || {
            let req = http::Request::builder()
                .uri("/neurosphere.tenant.v1.TenantService/GetMyCustomer")
                .header("x-request-id", "req-123")
                .body(())
                .unwrap();
            let span = rpc_span(&req);
            span.record("customer_id", 7);
            let _g = span.enter();
            tracing::info!("handled");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(line["message"], "handled");
        assert_eq!(line["span"]["request_id"], "req-123");
        assert_eq!(line["span"]["customer_id"], 7);
    }

    #[test]
    fn hostile_request_ids_are_replaced() {
        let req = http::Request::builder()
            .uri("/x")
            .header("x-request-id", "a b\t<c>")
            .body(())
            .unwrap();
        let buf = Buf::default();
        let sub = get_subscriber("info", LogFormat::Json, buf.clone());
        tracing::subscriber::with_default(sub, || {
            let span = rpc_span(&req);
            let _g = span.enter();
            tracing::info!("x");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!out.contains("a b"), "{out}");
        let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(
            line["span"]["request_id"].as_str().unwrap().len(),
            32,
            "{out}"
        );
    }

    #[test]
    fn phone_numbers_are_redacted() {
        assert_eq!(redact_phone("+15551111112"), "+1…12");
        assert_eq!(redact_phone("anonymous"), "<redacted>");
        assert!(!redact_phone("+15551111112").contains("555111"));
    }
}
