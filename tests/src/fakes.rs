//! Stand-ins for the third parties this machine cannot reach, speaking their real wire
//! protocols on loopback: Twilio's REST API (create-call) and a tenant's webhook receiver that
//! verifies signatures the way the README tells tenants to.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use tokio::sync::Notify;

/// Serves `app` on a free loopback port until the returned task is aborted.
async fn serve_on_loopback(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// One create-call request as Twilio received it.
#[derive(Debug, Clone)]
pub struct CreateCall {
    /// `{AccountSid}` from the URL path.
    pub account_sid: String,
    /// The `Authorization` header (Basic).
    pub authorization: String,
    /// The form fields in order (repeated keys kept).
    pub form: Vec<(String, String)>,
    /// The CallSid the fake answered with.
    pub call_sid: String,
}

impl CreateCall {
    /// The first value of a form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct TwilioState {
    calls: Mutex<Vec<CreateCall>>,
}

/// A fake of `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`: records the request and
/// answers 201 with a new CallSid, as Twilio does.
pub struct FakeTwilio {
    /// Base URL to configure as `TWILIO_API_BASE_URL`.
    pub base_url: String,
    state: Arc<TwilioState>,
    task: tokio::task::JoinHandle<()>,
}

async fn create_call(
    State(state): State<Arc<TwilioState>>,
    Path(file): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let (account_sid, tail) = file;
    if tail != "Calls.json" {
        return (StatusCode::NOT_FOUND, "{}".to_owned());
    }
    let form: Vec<(String, String)> = form_pairs(&body);
    let call_sid = format!("CA{}", uuid::Uuid::new_v4().simple());
    let record = CreateCall {
        account_sid: account_sid.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        form,
        call_sid: call_sid.clone(),
    };
    let to = record.field("To").unwrap_or_default().to_owned();
    let from = record.field("From").unwrap_or_default().to_owned();
    state.calls.lock().expect("not poisoned").push(record);
    let body = serde_json::json!({
        "sid": call_sid, "account_sid": account_sid, "to": to, "from": from,
        "status": "queued", "direction": "outbound-api", "api_version": "2010-04-01",
    });
    (StatusCode::CREATED, body.to_string())
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

impl FakeTwilio {
    /// Starts the fake on a loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(TwilioState::default());
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/{file}",
                axum::routing::post(create_call),
            )
            .with_state(state.clone());
        let (addr, task) = serve_on_loopback(app).await;
        Self {
            base_url: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// Every create-call request so far.
    pub fn calls(&self) -> Vec<CreateCall> {
        self.state.calls.lock().expect("not poisoned").clone()
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One delivery as the receiver got it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `NeuroSphere-Event-Id`.
    pub event_id: String,
    /// `NeuroSphere-Timestamp`.
    pub timestamp: String,
    /// `NeuroSphere-Signature`.
    pub signature: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// Whether the signature verified against the receiver's secret and the timestamp is fresh.
    pub verified: bool,
    /// The status the receiver answered.
    pub answered: u16,
}

struct ReceiverState {
    secret: Mutex<String>,
    deliveries: Mutex<Vec<Delivery>>,
    fail_first: Mutex<u32>,
    arrived: Notify,
}

/// A tenant's webhook endpoint: verifies each delivery as the README describes and answers
/// 500 for the first `fail_first` ones, then 200.
pub struct WebhookReceiver {
    /// URL to configure as the tenant's `webhook_url`.
    pub url: String,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

/// Verifies a delivery: `v1=<hex>` entries of the signature header, one of which must be the
/// HMAC-SHA256 of `<timestamp>.<body>` keyed by `secret`; the timestamp within 5 minutes.
pub fn verify(secret: &str, timestamp: &str, signature_header: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    let now = chrono::Utc::now().timestamp();
    if (now - ts).abs() > 300 {
        return false;
    }
    signature_header
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h).ok())
        .any(|sig| {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.verify_slice(&sig).is_ok()
        })
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (event_id, timestamp, signature) = (
        header("neurosphere-event-id"),
        header("neurosphere-timestamp"),
        header("neurosphere-signature"),
    );
    let secret = state.secret.lock().expect("not poisoned").clone();
    let verified = verify(&secret, &timestamp, &signature, &body);
    let status = {
        let mut fail = state.fail_first.lock().expect("not poisoned");
        if *fail > 0 {
            *fail -= 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else if verified {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        }
    };
    state
        .deliveries
        .lock()
        .expect("not poisoned")
        .push(Delivery {
            event_id,
            timestamp,
            signature,
            body: body.to_vec(),
            verified,
            answered: status.as_u16(),
        });
    state.arrived.notify_waiters();
    status
}

impl WebhookReceiver {
    /// Starts a receiver that fails the first `fail_first` deliveries.
    pub async fn start(fail_first: u32) -> Self {
        let state = Arc::new(ReceiverState {
            secret: Mutex::new(String::new()),
            deliveries: Mutex::new(Vec::new()),
            fail_first: Mutex::new(fail_first),
            arrived: Notify::new(),
        });
        let app = axum::Router::new()
            .route("/hooks/calls", axum::routing::post(receive))
            .with_state(state.clone());
        let (addr, task) = serve_on_loopback(app).await;
        Self {
            url: format!("http://{addr}/hooks/calls"),
            state,
            task,
        }
    }

    /// Sets the secret deliveries are verified with (the one `RotateWebhookSecret` returned).
    pub fn set_secret(&self, secret: &str) {
        *self.state.secret.lock().expect("not poisoned") = secret.to_owned();
    }

    /// Every delivery so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().expect("not poisoned").clone()
    }

    /// Waits until some delivery was answered 2xx, up to `deadline`.
    pub async fn wait_for_success(&self, deadline: Duration) -> Option<Delivery> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let arrived = self.state.arrived.notified();
            if let Some(d) = self
                .deliveries()
                .into_iter()
                .find(|d| (200..300).contains(&d.answered))
            {
                return Some(d);
            }
            if tokio::time::timeout_at(until, arrived).await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_of_form_fields() {
        let pairs = form_pairs(b"To=%2B351912345678&Url=http%3A%2F%2Fx%2Ftwilio%2Fvoice&A=b+c");
        assert_eq!(pairs[0], ("To".into(), "+351912345678".into()));
        assert_eq!(pairs[1], ("Url".into(), "http://x/twilio/voice".into()));
        assert_eq!(pairs[2], ("A".into(), "b c".into()));
    }
}
