//! Post-call webhooks end to end: real PostgreSQL, real tenant-svc (settings, secrets,
//! signatures), real memory-svc (the summary) and media-svc over gRPC; calls run through
//! StreamCall with the offline backend; tenants' endpoints are local axum receivers that verify
//! deliveries with their own HMAC, as the README tells tenants to.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{CallStream, In, eventually, register, sid};
use hmac::{Hmac, Mac as _};
use media_svc::CallConfig;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::media::{
    DeadLetter, ListDeadLettersRequest, ListWebhookDeliveriesRequest, RedeliverDeadLetterRequest,
    StreamStop, WebhookDeliveryState,
};
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::{
    CreateCustomerRequest, OutboundSettings, RotateWebhookSecretRequest,
    UpdateOutboundSettingsRequest,
};
use mesh::auth::{AttachToken, TokenSource};
use mesh::domain::CustomerId;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use secrecy::SecretString;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tonic::Code;
use tonic::transport::Channel;

pub(crate) const CALLER: &str = "+15551111111";

// ---------------------------------------------------------------------------------------------
// A tenant's receiver
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// 200 for a verified delivery, 401 otherwise.
    Verify,
    /// 500 for the first n deliveries, then like `Verify`.
    FailFirst(u32),
    /// Never answers (the sender's timeout ends the attempt).
    Hang,
    /// 410 Gone.
    Gone,
}

#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) at: Instant,
    pub(crate) event_id: String,
    pub(crate) timestamp: String,
    pub(crate) signature: String,
    pub(crate) content_type: String,
    pub(crate) user_agent: String,
    pub(crate) body: Vec<u8>,
    pub(crate) verified: bool,
    pub(crate) answered: u16,
}

struct ReceiverState {
    secret: Mutex<String>,
    mode: Mutex<Mode>,
    deliveries: Mutex<Vec<Delivery>>,
    in_flight: AtomicUsize,
    arrived: Notify,
}

pub(crate) struct Receiver {
    pub(crate) url: String,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

/// What a tenant's endpoint does with a delivery: the timestamp must be within 5 minutes of now
/// and one `v1=` entry must be the HMAC-SHA256 of `<timestamp>.<body>` keyed by the secret
/// (the base64url string itself), compared in constant time.
fn verify(secret: &str, timestamp: &str, signature_header: &str, body: &[u8]) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - ts).abs() > 300 {
        return false;
    }
    signature_header
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h).ok())
        .any(|sig| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.verify_slice(&sig).is_ok()
        })
}

struct InFlight(Arc<ReceiverState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(state.clone());
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (timestamp, signature) = (
        header("neurosphere-timestamp"),
        header("neurosphere-signature"),
    );
    let secret = state.secret.lock().unwrap().clone();
    let verified = verify(&secret, &timestamp, &signature, &body);
    let mode = *state.mode.lock().unwrap();
    let answered = match mode {
        Mode::Hang => 0,
        Mode::Gone => 410,
        Mode::FailFirst(n) if n > 0 => {
            *state.mode.lock().unwrap() = Mode::FailFirst(n - 1);
            500
        }
        _ if verified => 200,
        _ => 401,
    };
    state.deliveries.lock().unwrap().push(Delivery {
        at: Instant::now(),
        event_id: header("neurosphere-event-id"),
        timestamp,
        signature,
        content_type: header("content-type"),
        user_agent: header("user-agent"),
        body: body.to_vec(),
        verified,
        answered,
    });
    state.arrived.notify_waiters();
    if mode == Mode::Hang {
        std::future::pending::<()>().await;
    }
    StatusCode::from_u16(answered).unwrap()
}

impl Receiver {
    pub(crate) async fn start(mode: Mode) -> Receiver {
        let state = Arc::new(ReceiverState {
            secret: Mutex::new(String::new()),
            mode: Mutex::new(mode),
            deliveries: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            arrived: Notify::new(),
        });
        let app = axum::Router::new()
            .route("/hooks/calls", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hooks/calls?token=query-secret"),
            state,
            task,
        }
    }

    pub(crate) fn set_secret(&self, secret: &str) {
        *self.state.secret.lock().unwrap() = secret.to_owned();
    }

    fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap().clone()
    }

    fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `pred` holds for the deliveries so far (up to 15 s).
    pub(crate) async fn wait_until(
        &self,
        what: &str,
        pred: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let until = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let arrived = self.state.arrived.notified();
            let all = self.deliveries();
            if pred(&all) {
                return all;
            }
            if tokio::time::timeout_at(until, arrived).await.is_err() {
                panic!(
                    "timed out waiting for {what}; deliveries: {:?}",
                    self.deliveries()
                );
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port that accepts TCP connections and counts them (never speaks).
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((_conn, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        Listener {
            port,
            accepted,
            task,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// The mesh: tenant-svc, memory-svc and media-svc on loopback ports
// ---------------------------------------------------------------------------------------------

pub(crate) struct Mesh {
    pub(crate) db: TestDb,
    keys: Arc<DevKeys>,
    tenant: SocketAddr,
    memory: SocketAddr,
    media: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn shutdown(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

async fn ports() -> (TcpListener, TcpListener, SocketAddr) {
    let g = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = g.local_addr().unwrap();
    (g, a, addr)
}

/// Webhook pacing for tests: 100 ms first retry, 400 ms at most, 1.5 s per attempt, insecure
/// (loopback http) destinations allowed.
pub(crate) fn fast(mut c: CallConfig) -> CallConfig {
    c.webhooks.allow_insecure = true;
    c.webhooks.base_backoff = Duration::from_millis(100);
    c.webhooks.max_backoff = Duration::from_millis(400);
    c.webhooks.timeout = Duration::from_millis(1500);
    c.webhooks.retry_for = Duration::from_secs(60);
    c.outbox.poll_interval = Duration::from_millis(100);
    c
}

impl Mesh {
    pub(crate) async fn start(adjust: impl FnOnce(CallConfig) -> CallConfig) -> Mesh {
        Self::start_with(adjust, Default::default()).await
    }

    /// [`Mesh::start`] with tenant-svc's accounts configured as `accounts` (its owners' mail).
    pub(crate) async fn start_with(
        adjust: impl FnOnce(CallConfig) -> CallConfig,
        accounts: tenant_svc::account::AccountConfig,
    ) -> Mesh {
        if std::env::var_os("RUST_LOG").is_some() {
            mesh::telemetry::init_from_env();
        }
        let db = TestDb::new().await;
        let keys = Arc::new(DevKeys::generate());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let (g, a, tenant) = ports().await;
        tasks.push(tokio::spawn(tenant_svc::serve(
            tenant_svc::Deps {
                core: mesh::server::Core {
                    db: db.db_for_role("tenant_svc").await,
                    identity: keys.identity(names::TENANT_SVC),
                },
                legacy: None,
                // Receivers here are plain-http loopback servers.
                webhook_allow_insecure: true,
                // Not exercised here: no peer answers a tenant erasure.
                peers: tenant_svc::peers::Peers::new(
                    "http://127.0.0.1:1",
                    "http://127.0.0.1:1",
                    keys.identity(names::TENANT_SVC),
                )
                .expect("peer URLs"),
                accounts,
            },
            mesh::server::Listeners::new(g, a, Duration::from_secs(2)),
            shutdown(&stop_rx),
        )));
        let (g, a, memory) = ports().await;
        tasks.push(tokio::spawn(memory_svc::serve(
            memory_svc::Deps {
                db: db.db_for_role("memory_svc").await,
                identity: keys.identity(names::MEMORY_SVC),
            },
            mesh::server::Listeners::new(g, a, Duration::from_secs(2)),
            shutdown(&stop_rx),
        )));
        let mut calls = CallConfig::local(format!("http://{tenant}"), format!("http://{memory}"));
        calls.backend = media_svc::BackendChoice::Local { espeak: false };
        let calls = adjust(calls);
        let (g, a, media) = ports().await;
        tasks.push(tokio::spawn(media_svc::serve(
            media_svc::Deps {
                core: mesh::server::Core {
                    db: db.db_for_role("media_svc").await,
                    identity: keys.identity(names::MEDIA_SVC),
                },
                calls,
            },
            mesh::server::Listeners::new(g, a, Duration::from_secs(2)),
            shutdown(&stop_rx),
        )));
        Mesh {
            db,
            keys,
            tenant,
            memory,
            media,
            stop,
            tasks,
        }
    }

    /// A tenant-svc client with the tenant's owner token (settings: call handling, webhooks).
    pub(crate) async fn tenant_service(
        &self,
        customer: i64,
    ) -> TenantServiceClient<tonic::service::interceptor::InterceptedService<Channel, AttachToken>>
    {
        TenantServiceClient::with_interceptor(
            self.channel(self.tenant).await,
            AttachToken(TokenSource::fixed(self.token(
                customer,
                "owner",
                &[scope::TENANT_READ, scope::TENANT_WRITE],
            ))),
        )
    }

    /// The first media-svc replica's address.
    pub(crate) fn media_addr(&self) -> SocketAddr {
        self.media
    }

    /// Another media-svc replica on the same database, tenant-svc and memory-svc; its address
    /// (for [`Self::media_client_on`]).
    pub(crate) async fn start_replica(
        &mut self,
        adjust: impl FnOnce(CallConfig) -> CallConfig,
    ) -> SocketAddr {
        let mut calls = CallConfig::local(
            format!("http://{}", self.tenant),
            format!("http://{}", self.memory),
        );
        calls.backend = media_svc::BackendChoice::Local { espeak: false };
        let (g, a, addr) = ports().await;
        self.tasks.push(tokio::spawn(media_svc::serve(
            media_svc::Deps {
                core: mesh::server::Core {
                    db: self.db.db_for_role("media_svc").await,
                    identity: self.keys.identity(names::MEDIA_SVC),
                },
                calls: adjust(calls),
            },
            mesh::server::Listeners::new(g, a, Duration::from_secs(2)),
            shutdown(&self.stop.subscribe()),
        )));
        addr
    }

    /// A media-svc client of the replica at `addr` with a tenant token.
    pub(crate) async fn media_client_on(
        &self,
        addr: SocketAddr,
        customer: i64,
        subject: &str,
        scopes: &[&str],
    ) -> common::Client {
        CallServiceClient::with_interceptor(
            self.channel(addr).await,
            AttachToken(TokenSource::fixed(self.token(customer, subject, scopes))),
        )
    }

    fn token(&self, customer: i64, subject: &str, scopes: &[&str]) -> SecretString {
        self.keys
            .identity(names::TENANT_SVC)
            .minter()
            .mint_tenant(
                CustomerId::new(customer).unwrap(),
                subject,
                &[names::MEDIA_SVC, names::TENANT_SVC],
                scopes,
                Duration::from_secs(300),
            )
            .unwrap()
            .into()
    }

    async fn channel(&self, addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A media-svc client with the gateway's service token (`OpenStream`, `StreamCall`).
    pub(crate) async fn gateway_client(&self) -> common::Client {
        let token = self
            .keys
            .identity(names::GATEWAY)
            .minter()
            .mint_service(
                names::MEDIA_SVC,
                &[scope::MEDIA_STREAM_OPEN, scope::MEDIA_STREAM],
                Duration::from_secs(300),
            )
            .unwrap();
        CallServiceClient::with_interceptor(
            self.channel(self.media).await,
            AttachToken(TokenSource::fixed(token.into())),
        )
    }

    pub(crate) async fn media_client(
        &self,
        customer: i64,
        subject: &str,
        scopes: &[&str],
    ) -> common::Client {
        self.media_client_on(self.media, customer, subject, scopes)
            .await
    }

    /// A customer with the given webhook settings; returns its id and (when a URL is set) the
    /// webhook secret tenant-svc generated.
    pub(crate) async fn tenant(
        &self,
        name: &str,
        webhook_url: &str,
        raw_numbers: bool,
    ) -> (i64, String) {
        let operator = self
            .keys
            .identity(names::OPERATOR)
            .minter()
            .mint_service(
                names::TENANT_SVC,
                &[scope::TENANT_ADMIN],
                Duration::from_secs(300),
            )
            .unwrap();
        let mut admin = TenantAdminServiceClient::with_interceptor(
            self.channel(self.tenant).await,
            AttachToken(TokenSource::fixed(operator.into())),
        );
        let id = admin
            .create_customer(CreateCustomerRequest {
                email: format!("{name}@example.com"),
                business_name: format!("{name} Ltd"),
                contact_name: "Pat".into(),
                ..Default::default()
            })
            .await
            .expect("tenant-svc creates the customer")
            .into_inner()
            .customer
            .unwrap()
            .id;
        if webhook_url.is_empty() {
            return (id, String::new());
        }
        let mut tenant = TenantServiceClient::with_interceptor(
            self.channel(self.tenant).await,
            AttachToken(TokenSource::fixed(self.token(
                id,
                "owner",
                &[scope::TENANT_READ, scope::TENANT_WRITE],
            ))),
        );
        tenant
            .update_outbound_settings(UpdateOutboundSettingsRequest {
                settings: Some(OutboundSettings {
                    webhook_url: webhook_url.into(),
                    webhook_raw_numbers: raw_numbers,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["webhook_url".into(), "webhook_raw_numbers".into()],
                }),
            })
            .await
            .expect("tenant-svc stores the webhook settings");
        let secret = tenant
            .rotate_webhook_secret(RotateWebhookSecretRequest { overlap: None })
            .await
            .expect("tenant-svc creates a webhook secret")
            .into_inner()
            .secret;
        (id, secret)
    }

    /// Removes the tenant's webhook URL.
    async fn remove_webhook(&self, customer: i64) {
        TenantServiceClient::with_interceptor(
            self.channel(self.tenant).await,
            AttachToken(TokenSource::fixed(self.token(
                customer,
                "owner",
                &[scope::TENANT_WRITE],
            ))),
        )
        .update_outbound_settings(UpdateOutboundSettingsRequest {
            settings: Some(OutboundSettings::default()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["webhook_url".into()],
            }),
        })
        .await
        .expect("tenant-svc removes the webhook URL");
    }

    /// Runs one inbound call from [`CALLER`] through StreamCall (greeting, then the caller
    /// hangs up); returns its CallSid. The outbox then records it in memory-svc.
    async fn call(&self, customer: i64, n: u32) -> String {
        let call_sid = sid("CA", n);
        let mut client = self
            .media_client(customer, &call_sid, scope::CALL_SCOPES)
            .await;
        client
            .register_call(register(&call_sid, CALLER))
            .await
            .unwrap();
        let mut call = CallStream::open(&mut client, &mut self.gateway_client().await, &call_sid)
            .await
            .unwrap();
        call.audio_bytes(media_svc::audio::tone_pattern().len(), true)
            .await;
        call.send(In::Stop(StreamStop {})).await;
        while call.next().await.is_some() {}
        call_sid
    }

    pub(crate) async fn count(&self, sql: &str) -> i64 {
        self.db
            .admin_client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("service stops")
                .expect("no panic")
                .expect("service exits cleanly");
        }
    }
}

pub(crate) fn body_json(d: &Delivery) -> serde_json::Value {
    serde_json::from_slice(&d.body).expect("JSON body")
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// A delivery carries the documented headers, verifies with the tenant's secret, and fails
/// verification when the body is changed or the timestamp is old. The caller number is a keyed
/// hash unless the tenant opted in to raw numbers; a tenant without a webhook URL gets no event.
/// Forgeries and replays of delivery `d` (signed with `secret` at `ts`) fail the receiver's
/// verification.
fn check_forgeries_fail(d: &Delivery, secret: &str, raw_secret: &str, ts: i64) {
    // Forgeries and replays fail the same verification.
    let mut tampered = d.body.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    assert!(!verify(secret, &d.timestamp, &d.signature, &tampered));
    let old = (ts - 301).to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{old}.").as_bytes());
    mac.update(&d.body);
    let old_but_signed = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    assert!(
        !verify(secret, &old, &old_but_signed, &d.body),
        "a correctly signed but 5-minute-old delivery is rejected as a replay"
    );
    assert!(!verify(secret, &old, &d.signature, &d.body));
    assert!(!verify(raw_secret, &d.timestamp, &d.signature, &d.body));
}

/// The body of a hashed-caller event: the call, the keyed hash of the caller, memory-svc's
/// summary and the transcript.
async fn check_hashed_body(mesh: &Mesh, d: &Delivery, t_hash: i64, call_sid: &str) {
    // The body.
    let event = body_json(d);
    assert_eq!(event["type"], "call.completed");
    assert_eq!(event["event_id"], d.event_id.as_str());
    assert_eq!(event["customer_id"], t_hash);
    assert!(chrono::DateTime::parse_from_rfc3339(event["created_at"].as_str().unwrap()).is_ok());
    let call = &event["call"];
    assert_eq!(call["call_sid"], call_sid);
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["status"], "completed");
    assert!(call["duration_seconds"].as_i64().unwrap() >= 0);
    assert!(call["started_at"].is_string() && call["ended_at"].is_string());
    assert!(call.get("caller_number").is_none(), "{event}");
    let key: Vec<u8> = mesh
        .db
        .admin_client()
        .await
        .query_one("SELECT key FROM media.caller_hash_key", &[])
        .await
        .unwrap()
        .get(0);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{t_hash}:{CALLER}").as_bytes());
    assert_eq!(
        call["caller_number_hash"],
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes())),
        "keyed hash of customer id and number with the database's key"
    );
    let text = String::from_utf8_lossy(&d.body);
    assert!(!text.contains("5551111111"), "raw number in {text}");
    let summary: String = mesh
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT summary FROM memory.call_summaries WHERE customer_id = $1 AND call_sid = $2",
            &[&t_hash, &call_sid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(event["summary"], summary.as_str(), "memory-svc's summary");
    let transcript = event["transcript"].as_array().unwrap();
    assert_eq!(transcript[0]["speaker"], "agent");
    assert!(transcript[0]["text"].as_str().unwrap().contains("greeting"));
    assert!(transcript[0]["offset_ms"].is_u64());
}

/// Without a webhook URL the record reaches memory-svc and no event is queued; the other
/// tenants got one event per call, each delivered once.
async fn no_url_no_event(mesh: &Mesh, t_none: i64, hashed: &Receiver, raw: &Receiver) {
    // No webhook URL: the record reaches memory-svc, no event is queued.
    let before = mesh
        .count("SELECT count(*) FROM media.webhook_events")
        .await;
    let none_sid = mesh.call(t_none, 3).await;
    let delivered = format!(
        "SELECT count(*) FROM media.outbox WHERE customer_id = {t_none} AND call_sid = '{none_sid}' AND delivered_at IS NOT NULL"
    );
    eventually("the record of the call without webhook", || async {
        mesh.count(&delivered).await == 1
    })
    .await;
    assert_eq!(
        mesh.count("SELECT count(*) FROM media.webhook_events")
            .await,
        before
    );
    assert_eq!(
        mesh.count(&format!(
            "SELECT count(*) FROM media.webhook_events WHERE customer_id = {t_none}"
        ))
        .await,
        0
    );
    // One event per call, each delivered once.
    assert_eq!(hashed.deliveries().len(), 1);
    assert_eq!(raw.deliveries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_events_verify_hash_or_show_the_caller_and_need_a_webhook_url() {
    let mesh = Mesh::start(fast).await;
    let hashed = Receiver::start(Mode::Verify).await;
    let raw = Receiver::start(Mode::Verify).await;
    let (t_hash, secret) = mesh.tenant("hash", &hashed.url, false).await;
    hashed.set_secret(&secret);
    let (t_raw, raw_secret) = mesh.tenant("raw", &raw.url, true).await;
    raw.set_secret(&raw_secret);
    let (t_none, _) = mesh.tenant("none", "", false).await;

    let started = chrono::Utc::now().timestamp();
    let call_sid = mesh.call(t_hash, 1).await;
    let ended = Instant::now();
    let d = hashed
        .wait_until("the event", |ds| ds.iter().any(|d| d.answered == 200))
        .await
        .remove(0);
    println!("event delivered {:?} after the call ended", d.at - ended);
    assert_eq!(d.answered, 200, "the receiver verified it: {d:?}");
    assert!(d.verified);
    assert_eq!(d.content_type, "application/json");
    assert_eq!(d.user_agent, "NeuroSphere-Webhooks/1");
    assert!(d.signature.starts_with("v1="), "{}", d.signature);
    let ts: i64 = d.timestamp.parse().unwrap();
    assert!(ts >= started && ts <= chrono::Utc::now().timestamp());

    check_forgeries_fail(&d, &secret, &raw_secret, ts);
    check_hashed_body(&mesh, &d, t_hash, &call_sid).await;
    // Raw numbers for the tenant that opted in.
    mesh.call(t_raw, 2).await;
    let d = raw
        .wait_until("the raw-number event", |ds| {
            ds.iter().any(|d| d.answered == 200)
        })
        .await
        .remove(0);
    let event = body_json(&d);
    assert_eq!(event["call"]["caller_number"], CALLER);
    assert!(event["call"].get("caller_number_hash").is_none());
    assert_eq!(event["customer_id"], t_raw);

    no_url_no_event(&mesh, t_none, &hashed, &raw).await;
    // Erasing the caller also erases the events that carry the transcript (they cascade with
    // the calls), and only in that tenant.
    mesh.media_client(t_hash, "owner", &[scope::MEDIA_ERASE])
        .await
        .erase_caller(mesh::api::media::EraseCallerRequest {
            caller: CALLER.into(),
        })
        .await
        .unwrap();
    let events_of =
        |t: i64| format!("SELECT count(*) FROM media.webhook_events WHERE customer_id = {t}");
    assert_eq!(mesh.count(&events_of(t_hash)).await, 0);
    assert_eq!(mesh.count(&events_of(t_raw)).await, 1);
    mesh.stop().await;
}

/// Three failed attempts, then success: the receiver sees the same event id and bytes four
/// times, with growing gaps, and accepts it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_three_times_gets_the_event_once_after_backoff() {
    let mesh = Mesh::start(fast).await;
    let receiver = Receiver::start(Mode::FailFirst(3)).await;
    let (tenant, secret) = mesh.tenant("flaky", &receiver.url, false).await;
    receiver.set_secret(&secret);
    let call_sid = mesh.call(tenant, 1).await;
    receiver
        .wait_until("success after three failures", |ds| {
            ds.iter().any(|d| d.answered == 200)
        })
        .await;
    let delivered = format!(
        "SELECT count(*) FROM media.webhook_events WHERE call_sid = '{call_sid}' AND delivered_at IS NOT NULL AND attempts = 4"
    );
    eventually("the event marked delivered", || async {
        mesh.count(&delivered).await == 1
    })
    .await;
    // Delivered rows are never claimed again: these are all the attempts there will be.
    let all = receiver.deliveries();
    let answers: Vec<u16> = all.iter().map(|d| d.answered).collect();
    assert_eq!(answers, [500, 500, 500, 200]);
    assert!(all.iter().all(|d| d.verified), "every attempt is signed");
    assert!(all.iter().all(|d| d.event_id == all[0].event_id));
    assert!(all.iter().all(|d| d.body == all[0].body));
    assert_eq!(body_json(&all[0])["event_id"], all[0].event_id.as_str());
    // Backoff: base 100 ms doubling, jittered into [delay/2, delay].
    for (k, pair) in all.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let floor = Duration::from_millis(50 << k);
        assert!(
            gap >= floor,
            "gap {k} was {gap:?}, at least {floor:?} expected"
        );
    }
    assert_eq!(
        mesh.count("SELECT count(*) FROM media.webhook_events WHERE last_error IS NOT NULL OR dead_at IS NOT NULL")
            .await,
        0
    );
    deliveries_listed_for_the_owner(&mesh, tenant, &all[0].event_id, &call_sid).await;
    mesh.stop().await;
}

/// The owner's delivery list shows the event delivered on its fourth attempt with the 200 the
/// receiver answered; a token without `media:webhooks` (staff: `media:read`) may not list, and
/// another tenant sees nothing.
async fn deliveries_listed_for_the_owner(mesh: &Mesh, tenant: i64, event_id: &str, call_sid: &str) {
    let listed = mesh
        .media_client(tenant, "user:1", &[scope::MEDIA_WEBHOOKS])
        .await
        .list_webhook_deliveries(ListWebhookDeliveriesRequest::default())
        .await
        .expect("the owner lists deliveries")
        .into_inner();
    assert_eq!(listed.deliveries.len(), 1, "{listed:?}");
    let d = &listed.deliveries[0];
    assert_eq!(d.event_id, event_id);
    assert_eq!(d.call_sid, call_sid);
    assert_eq!(d.state(), WebhookDeliveryState::Delivered);
    assert_eq!((d.attempts, d.last_response_code), (4, 200));
    assert_eq!(d.last_error, "");
    assert!(d.create_time.is_some() && d.last_attempt_time.is_some() && d.finish_time.is_some());
    assert!(listed.next_page_token.is_empty());
    let refused = mesh
        .media_client(tenant, "user:2", &[scope::MEDIA_READ])
        .await
        .list_webhook_deliveries(ListWebhookDeliveriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let (other, _) = mesh.tenant("other", "", false).await;
    let theirs = mesh
        .media_client(other, "user:3", &[scope::MEDIA_WEBHOOKS])
        .await
        .list_webhook_deliveries(ListWebhookDeliveriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.deliveries.is_empty(), "{theirs:?}");
}

/// A tenant whose endpoint hangs until the timeout is dead-lettered after the retry window, and
/// meanwhile another tenant's event arrives while the hanging attempt is still open. Dead
/// letters are listed (paginated) for their own tenant only; RedeliverDeadLetter delivers again
/// once the endpoint recovers; another tenant's event id is NOT_FOUND and changes nothing.
/// The healthy tenant's event arrives while the slow tenant's attempts hang; returns its
/// CallSid and event id.
async fn healthy_event_goes_out(
    mesh: &Mesh,
    fine: i64,
    healthy: &Receiver,
    stuck: &Receiver,
) -> (String, String) {
    // The other tenant's event arrives while they hang.
    let fine_sid = mesh.call(fine, 3).await;
    let ended = Instant::now();
    let d = healthy
        .wait_until("the healthy tenant's event", |ds| !ds.is_empty())
        .await
        .remove(0);
    let latency = d.at - ended;
    let open_meanwhile = stuck.in_flight();
    assert_eq!(d.answered, 200);
    assert!(
        open_meanwhile >= 1,
        "delivered while the slow tenant's attempts were still hanging"
    );
    // Had it queued behind a hanging attempt, it would have waited for the 1.5 s timeout.
    assert!(
        latency < Duration::from_millis(1500),
        "call end to delivery took {latency:?} (attempt timeout 1.5 s)"
    );
    println!(
        "healthy tenant's event: {latency:?} after the call ended, {open_meanwhile} slow attempts open"
    );
    let fine_event = body_json(&d)["event_id"].as_str().unwrap().to_owned();

    (fine_sid, fine_event)
}

/// Both slow events are dead-lettered and listed a page at a time, newest first, with the
/// attempts the endpoint saw; returns them.
async fn dead_letters_listed(
    mesh: &Mesh,
    slow_client: &mut common::Client,
    stuck: &Receiver,
) -> [DeadLetter; 2] {
    let dead = "SELECT count(*) FROM media.webhook_events WHERE dead_at IS NOT NULL";
    eventually("both slow events dead-lettered", || async {
        mesh.count(dead).await == 2
    })
    .await;
    let first = slow_client
        .list_dead_letters(ListDeadLettersRequest {
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.dead_letters.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = slow_client
        .list_dead_letters(ListDeadLettersRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.dead_letters.len(), 1);
    assert!(second.next_page_token.is_empty());
    let letters = [
        first.dead_letters[0].clone(),
        second.dead_letters[0].clone(),
    ];
    assert!(
        letters[0].dead_time.as_ref().unwrap().seconds
            >= letters[1].dead_time.as_ref().unwrap().seconds,
        "newest dead first"
    );
    let sids: Vec<&str> = letters.iter().map(|l| l.call_sid.as_str()).collect();
    assert!(sids.contains(&sid("CA", 1).as_str()) && sids.contains(&sid("CA", 2).as_str()));
    for l in &letters {
        assert!(l.attempts >= 2, "{l:?}");
        assert_eq!(l.last_error, "timed out");
        assert!(l.create_time.is_some());
    }
    let attempts_by_event: HashMap<String, usize> =
        stuck.deliveries().iter().fold(HashMap::new(), |mut m, d| {
            *m.entry(d.event_id.clone()).or_default() += 1;
            m
        });
    for l in &letters {
        assert_eq!(attempts_by_event[&l.event_id], l.attempts as usize);
    }
    let bad = slow_client
        .list_dead_letters(ListDeadLettersRequest {
            page_size: 501,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    letters
}

/// The other tenant sees none of the dead letters and cannot requeue them; a delivered event or
/// a malformed id is no dead letter.
async fn others_cannot_requeue(
    mesh: &Mesh,
    fine: i64,
    slow_client: &mut common::Client,
    letters: &[DeadLetter; 2],
    fine_event: String,
) {
    // The other tenant sees none of them and cannot requeue them.
    let mut fine_client = mesh
        .media_client(fine, "owner", &[scope::MEDIA_READ, scope::MEDIA_CALLS])
        .await;
    let listed = fine_client
        .list_dead_letters(ListDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.dead_letters.is_empty());
    let snapshot =
        "SELECT count(*) FROM media.webhook_events WHERE dead_at IS NOT NULL AND attempts >= 2";
    let err = fine_client
        .redeliver_dead_letter(RedeliverDeadLetterRequest {
            event_id: letters[0].event_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(mesh.count(snapshot).await, 2, "nothing changed");
    // A delivered event is not a dead letter; nor is a malformed id.
    let err = fine_client
        .redeliver_dead_letter(RedeliverDeadLetterRequest {
            event_id: fine_event,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = slow_client
        .redeliver_dead_letter(RedeliverDeadLetterRequest {
            event_id: "not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("event_id"), "{}", err.message());
}

/// The endpoint recovers and the tenant redelivers one dead letter: delivered once, under the
/// same event id; the other stays dead.
async fn redeliver_one(
    mesh: &Mesh,
    stuck: &Receiver,
    slow_client: &mut common::Client,
    letters: &[DeadLetter; 2],
) {
    // The endpoint recovers; the tenant redelivers one dead letter.
    stuck.set_mode(Mode::Verify);
    let target = letters[0].event_id.clone();
    slow_client
        .redeliver_dead_letter(RedeliverDeadLetterRequest {
            event_id: target.clone(),
        })
        .await
        .unwrap();
    let ds = stuck
        .wait_until("the redelivered event", |ds| {
            ds.iter().any(|d| d.answered == 200)
        })
        .await;
    let ok: Vec<&Delivery> = ds.iter().filter(|d| d.answered == 200).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].event_id, target, "same event id as before");
    assert!(ok[0].verified);
    let requeued = format!(
        "SELECT count(*) FROM media.webhook_events WHERE event_id = '{target}' AND delivered_at IS NOT NULL AND dead_at IS NULL AND attempts = 1"
    );
    eventually("the redelivered event marked delivered", || async {
        mesh.count(&requeued).await == 1
    })
    .await;
    let remaining = slow_client
        .list_dead_letters(ListDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(remaining.dead_letters.len(), 1);
    assert_eq!(remaining.dead_letters[0].event_id, letters[1].event_id);
    // Once delivered it is no longer a dead letter.
    let err = slow_client
        .redeliver_dead_letter(RedeliverDeadLetterRequest { event_id: target })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_is_dead_lettered_without_delaying_another_tenant() {
    let mesh = Mesh::start(|c| {
        let mut c = fast(c);
        c.webhooks.retry_for = Duration::from_secs(3);
        c
    })
    .await;
    let stuck = Receiver::start(Mode::Hang).await;
    let healthy = Receiver::start(Mode::Verify).await;
    let (slow, slow_secret) = mesh.tenant("slow", &stuck.url, false).await;
    stuck.set_secret(&slow_secret);
    let (fine, fine_secret) = mesh.tenant("fine", &healthy.url, false).await;
    healthy.set_secret(&fine_secret);

    // Two events of the slow tenant are hanging at its endpoint.
    mesh.call(slow, 1).await;
    let t = Instant::now();
    mesh.call(slow, 2).await;
    println!("one call took {:?}", t.elapsed());
    stuck
        .wait_until("both slow events in flight", |ds| {
            ds.iter()
                .map(|d| &d.event_id)
                .collect::<std::collections::HashSet<_>>()
                .len()
                == 2
        })
        .await;
    assert_eq!(stuck.in_flight(), 2);

    let (fine_sid, fine_event) = healthy_event_goes_out(&mesh, fine, &healthy, &stuck).await;
    // The slow tenant's events die after the 3 s window. Its owner replays with the portal's
    // `media:webhooks` (the other tenant below with the older `media:calls`).
    let mut slow_client = mesh
        .media_client(slow, "owner", &[scope::MEDIA_READ, scope::MEDIA_WEBHOOKS])
        .await;
    let letters = dead_letters_listed(&mesh, &mut slow_client, &stuck).await;
    others_cannot_requeue(&mesh, fine, &mut slow_client, &letters, fine_event).await;
    redeliver_one(&mesh, &stuck, &mut slow_client, &letters).await;
    assert_eq!(healthy.deliveries().len(), 1);
    assert_eq!(
        mesh.count(&format!(
            "SELECT count(*) FROM media.webhook_events WHERE call_sid = '{fine_sid}' AND delivered_at IS NOT NULL"
        ))
        .await,
        1
    );
    mesh.stop().await;
}

/// Without `allow_insecure`, loopback destinations are refused before connecting, whether the
/// URL names them (resolved, checked) or is a literal address; the event dies after its window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_destinations_are_refused_unless_insecure_is_allowed() {
    let mesh = Mesh::start(|c| {
        let mut c = fast(c);
        c.webhooks.allow_insecure = false;
        c.webhooks.retry_for = Duration::from_millis(600);
        c
    })
    .await;
    let listener = Listener::start().await;
    let (by_name, _) = mesh
        .tenant(
            "name",
            &format!("https://localhost:{}/hooks", listener.port),
            false,
        )
        .await;
    let (by_literal, _) = mesh
        .tenant(
            "literal",
            &format!("https://127.0.0.1:{}/hooks", listener.port),
            false,
        )
        .await;
    mesh.call(by_name, 1).await;
    mesh.call(by_literal, 2).await;
    let dead = "SELECT count(*) FROM media.webhook_events \
                WHERE dead_at IS NOT NULL AND last_error = 'destination address not allowed'";
    eventually("both events refused and dead-lettered", || async {
        mesh.count(dead).await == 2
    })
    .await;
    assert_eq!(
        listener.accepted.load(Ordering::SeqCst),
        0,
        "nothing connected"
    );
    for tenant in [by_name, by_literal] {
        let letters = mesh
            .media_client(tenant, "owner", &[scope::MEDIA_READ])
            .await
            .list_dead_letters(ListDeadLettersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .dead_letters;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].last_error, "destination address not allowed");
    }
    mesh.stop().await;
}

/// 410 Gone, and a webhook the tenant removed while an event was pending, dead-letter the event
/// at once instead of retrying for the whole window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_or_removed_endpoints_are_dead_lettered_at_once() {
    let mesh = Mesh::start(fast).await;
    let gone = Receiver::start(Mode::Gone).await;
    let stuck = Receiver::start(Mode::Hang).await;
    let (t_gone, gone_secret) = mesh.tenant("gone", &gone.url, false).await;
    gone.set_secret(&gone_secret);
    let (t_removed, removed_secret) = mesh.tenant("removed", &stuck.url, false).await;
    stuck.set_secret(&removed_secret);

    mesh.call(t_gone, 1).await;
    mesh.call(t_removed, 2).await;
    stuck
        .wait_until("the first attempt hanging", |ds| !ds.is_empty())
        .await;
    mesh.remove_webhook(t_removed).await;

    let dead = |tenant: i64, error: &str| {
        format!(
            "SELECT count(*) FROM media.webhook_events WHERE customer_id = {tenant} \
             AND dead_at IS NOT NULL AND last_error = '{error}' AND dead_at < give_up_at"
        )
    };
    let (gone_dead, removed_dead) = (
        dead(t_gone, "HTTP 410 (endpoint gone)"),
        dead(t_removed, "webhook removed (no URL or secret)"),
    );
    eventually(
        "both events dead-lettered before their window ends",
        || async { mesh.count(&gone_dead).await == 1 && mesh.count(&removed_dead).await == 1 },
    )
    .await;
    assert_eq!(gone.deliveries().len(), 1, "no retry after 410");
    assert!(gone.deliveries()[0].verified);
    assert_eq!(stuck.deliveries().len(), 1, "no attempt after the removal");
    assert_eq!(
        mesh.count("SELECT count(*) FROM media.webhook_events WHERE attempts = 1")
            .await,
        1,
        "410: one attempt"
    );
    // The owner sees what the endpoint answered (410) or that no answer came (removed).
    for (tenant, code) in [(t_gone, 410), (t_removed, 0)] {
        let listed = mesh
            .media_client(tenant, "user:1", &[scope::MEDIA_WEBHOOKS])
            .await
            .list_webhook_deliveries(ListWebhookDeliveriesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.deliveries.len(), 1);
        let d = &listed.deliveries[0];
        assert_eq!(d.state(), WebhookDeliveryState::Dead, "{d:?}");
        assert_eq!(d.last_response_code, code, "{d:?}");
    }
    mesh.stop().await;
}
