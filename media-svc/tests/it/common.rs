//! Test harness: media-svc on port 0 against a fresh migrated database, tokens from dev keys,
//! optionally a real tenant-svc next to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use media_svc::CallConfig;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::media::{CallDirection, CallStatus, OpenStreamRequest, RegisterCallRequest};
use mesh::auth::{AttachToken, TokenSource};
use mesh::domain::CustomerId;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Client = CallServiceClient<InterceptedService<Channel, AttachToken>>;

pub struct Svc {
    pub db: TestDb,
    pub keys: Arc<DevKeys>,
    pub addr: SocketAddr,
    pub tenant_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A loopback URL where nothing listens (connection refused at once).
pub async fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn shutdown(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl Svc {
    /// media-svc alone; tenant-svc and memory-svc unreachable.
    pub async fn start() -> Svc {
        Self::start_with(|c| c, false).await
    }

    /// media-svc with `adjust` applied to its call config, and a real tenant-svc when asked.
    pub async fn start_with(
        adjust: impl FnOnce(CallConfig) -> CallConfig,
        with_tenant: bool,
    ) -> Svc {
        Self::start_inner(adjust, with_tenant, None).await
    }

    /// media-svc alone, its statements cut after `statement_timeout`.
    pub async fn start_with_statement_timeout(statement_timeout: Duration) -> Svc {
        Self::start_inner(|c| c, false, Some(statement_timeout)).await
    }

    async fn start_inner(
        adjust: impl FnOnce(CallConfig) -> CallConfig,
        with_tenant: bool,
        statement_timeout: Option<Duration>,
    ) -> Svc {
        if std::env::var_os("RUST_LOG").is_some() {
            mesh::telemetry::init_from_env();
        }
        let db = TestDb::new().await;
        let keys = Arc::new(DevKeys::generate());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut tenant_addr = None;
        let tenant_url = if with_tenant {
            let g = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = g.local_addr().unwrap();
            tenant_addr = Some(addr);
            let deps = tenant_svc::Deps {
                core: mesh::server::Core {
                    db: db.db_for_role("tenant_svc").await,
                    identity: keys.identity(names::TENANT_SVC),
                },
                legacy: None,
                webhook_allow_insecure: false,
                // Not exercised here: no peer answers a tenant erasure.
                peers: tenant_svc::peers::Peers::new(
                    "http://127.0.0.1:1",
                    "http://127.0.0.1:1",
                    keys.identity(names::TENANT_SVC),
                )
                .expect("peer URLs"),
                accounts: Default::default(),
            };
            tasks.push(tokio::spawn(tenant_svc::serve(
                deps,
                mesh::server::Listeners::new(g, a, Duration::from_secs(2)),
                shutdown(&stop_rx),
            )));
            format!("http://{addr}")
        } else {
            dead_url().await
        };
        let mut calls = CallConfig::local(tenant_url, dead_url().await);
        // Tests expect the tone pattern whether or not espeak-ng is installed here.
        calls.backend = media_svc::BackendChoice::Local { espeak: false };
        let calls = adjust(calls);
        let g = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = g.local_addr().unwrap();
        let mut db_config = db.db_config_for_role("media_svc");
        if statement_timeout.is_some() {
            db_config.statement_timeout = statement_timeout;
        }
        let deps = media_svc::Deps {
            core: mesh::server::Core {
                db: mesh::db::Db::connect(&db_config).await.unwrap(),
                identity: keys.identity(names::MEDIA_SVC),
            },
            calls,
        };
        tasks.push(tokio::spawn(media_svc::serve(
            deps,
            mesh::server::Listeners::new(g, a, Duration::from_secs(2)),
            shutdown(&stop_rx),
        )));
        Svc {
            db,
            keys,
            addr,
            tenant_addr,
            stop,
            tasks,
        }
    }

    pub fn tenant_token(&self, customer: i64, subject: &str, scopes: &[&str]) -> String {
        self.keys
            .identity(names::TENANT_SVC)
            .minter()
            .mint_tenant(
                CustomerId::new(customer).unwrap(),
                subject,
                &[names::MEDIA_SVC, names::TENANT_SVC, names::MEMORY_SVC],
                scopes,
                Duration::from_secs(300),
            )
            .unwrap()
    }

    pub fn service_token(&self, issuer: &str, audience: &str, scopes: &[&str]) -> String {
        self.keys
            .identity(issuer)
            .minter()
            .mint_service(audience, scopes, Duration::from_secs(300))
            .unwrap()
    }

    pub async fn channel_to(&self, addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap()
    }

    pub async fn client_with(&self, token: String) -> Client {
        CallServiceClient::with_interceptor(
            self.channel_to(self.addr).await,
            AttachToken(TokenSource::fixed(SecretString::from(token))),
        )
    }

    /// A client with the gateway's service token (`OpenStream`, `StreamCall`).
    pub async fn gateway_client(&self) -> Client {
        self.client_with(self.service_token(
            names::GATEWAY,
            names::MEDIA_SVC,
            &[scope::MEDIA_STREAM_OPEN, scope::MEDIA_STREAM],
        ))
        .await
    }

    /// A client for `customer` with every media scope, subject "test".
    pub async fn client(&self, customer: i64) -> Client {
        self.client_with(self.tenant_token(customer, "test", scope::TENANT_SCOPES))
            .await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db
            .admin_client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let r = tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("service stops within its drain deadline")
                .expect("no panic");
            r.expect("service exits cleanly");
        }
    }
}

/// A CallSid from a small number.
pub fn sid(prefix: &str, n: u32) -> String {
    format!("{prefix}{n:032x}")
}

pub fn register(call_sid: &str, from: &str) -> RegisterCallRequest {
    RegisterCallRequest {
        call_sid: call_sid.to_owned(),
        account_sid: sid("AC", 1),
        from: from.to_owned(),
        to: "+14158675309".into(),
        direction: CallDirection::Inbound as i32,
        status: CallStatus::Ringing as i32,
    }
}

/// One side of a call stream, as the edge sees it.
pub struct CallStream {
    pub tx: tokio::sync::mpsc::Sender<mesh::api::media::StreamCallRequest>,
    pub rx: tonic::Streaming<mesh::api::media::StreamCallResponse>,
}

pub use mesh::api::media::stream_call_request::Event as In;
pub use mesh::api::media::stream_call_response::Event as Out;

impl CallStream {
    /// Opens the stream as the gateway does: the call's stream ticket (`RegisterCall` answers a
    /// registered call with it again), exchanged with the gateway's service token for a grant
    /// (`OpenStream`), then `StreamCall` with the grant.
    pub async fn open(
        tenant: &mut Client,
        gateway: &mut Client,
        call_sid: &str,
    ) -> Result<CallStream, Status> {
        let answer = tenant
            .register_call(register(call_sid, "+15551111111"))
            .await?
            .into_inner();
        let account_sid = answer.call.map(|c| c.account_sid).unwrap_or_default();
        let grant = gateway
            .open_stream(OpenStreamRequest {
                stream_ticket: answer.stream_ticket,
                call_sid: call_sid.to_owned(),
                account_sid,
                stream_sid: sid("MZ", 1),
            })
            .await?
            .into_inner()
            .stream_grant;
        Self::open_granted(gateway, call_sid, &sid("MZ", 1), &grant).await
    }

    /// Opens the stream with a grant and sends `start` for `call_sid` and `stream_sid`.
    pub async fn open_granted(
        gateway: &mut Client,
        call_sid: &str,
        stream_sid: &str,
        grant: &str,
    ) -> Result<CallStream, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tx.send(mesh::api::media::StreamCallRequest {
            event: Some(In::Start(mesh::api::media::StreamStart {
                call_sid: call_sid.to_owned(),
                stream_sid: stream_sid.to_owned(),
                account_sid: sid("AC", 1),
                caller: "+15551111111".into(),
                custom_parameters: Default::default(),
                stream_grant: grant.to_owned(),
            })),
        })
        .await
        .unwrap();
        let rx = gateway
            .stream_call(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(CallStream { tx, rx })
    }

    pub async fn send(&self, event: In) {
        self.tx
            .send(mesh::api::media::StreamCallRequest { event: Some(event) })
            .await
            .unwrap();
    }

    pub async fn audio(&self, payload: Vec<u8>, timestamp_ms: u32) {
        self.send(In::Audio(mesh::api::media::AudioFrame {
            payload,
            sequence: u64::from(timestamp_ms / 20),
            timestamp_ms,
        }))
        .await;
    }

    /// The next message; `None` when the stream ended. Panics after 10 s.
    pub async fn next(&mut self) -> Option<Out> {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("a message within 10 s")
            .expect("stream ok")
            .map(|m| m.event.expect("event set"))
    }

    /// Collects outbound audio (answering every mark as Twilio would when `ack` is set) until
    /// `bytes` bytes arrived.
    pub async fn audio_bytes(&mut self, bytes: usize, ack: bool) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < bytes {
            match self.next().await.expect("stream still open") {
                Out::Audio(a) => got.extend(a.payload),
                Out::Mark(m) if ack => {
                    self.send(In::Mark(mesh::api::media::MarkPlayed { name: m.name }))
                        .await;
                }
                Out::Mark(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    }
}

/// 20 ms of a 1 kHz tone, loud enough to count as speech.
pub fn voiced_frame() -> Vec<u8> {
    (0..160)
        .map(|n| {
            let v = (2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 8000.0).sin() * 6000.0;
            mesh::g711::linear_to_ulaw(v as i16)
        })
        .collect()
}

/// 20 ms of silence.
pub fn silent_frame() -> Vec<u8> {
    vec![0xFF; 160]
}

/// Polls `f` until it returns true or 10 s pass.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates a customer in the running tenant-svc (agent "Ada", voice `voice`, warmth 90, one
/// transfer rule "claims"), returning its id.
pub async fn create_customer(svc: &Svc, voice: &str) -> i64 {
    create_customer_named(svc, voice, "Ada").await
}

/// [`create_customer`] with another agent name.
pub async fn create_customer_named(svc: &Svc, voice: &str, agent_name: &str) -> i64 {
    use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
    use mesh::api::tenant::{AgentConfig, CreateCustomerRequest, TransferRule, TransferRuleList};
    let token = svc.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    let mut admin = TenantAdminServiceClient::with_interceptor(
        svc.channel_to(svc.tenant_addr.expect("tenant-svc running"))
            .await,
        AttachToken(TokenSource::fixed(token.into())),
    );
    admin
        .create_customer(CreateCustomerRequest {
            email: format!("owner-{voice}@example.com"),
            business_name: "Smith & Sons Insurance".into(),
            contact_name: "Pat".into(),
            contact_phone: String::new(),
            package_tier: String::new(),
            agent_config: Some(AgentConfig {
                agent_name: Some(agent_name.into()),
                voice: Some(voice.into()),
                sliders: [("warmth".to_owned(), 90)].into_iter().collect(),
                transfer_rules: Some(TransferRuleList {
                    rules: vec![TransferRule {
                        keyword: "claims".into(),
                        number: "+14158675309".into(),
                        description: "the claims desk".into(),
                    }],
                }),
                time_zone: Some("America/New_York".into()),
                ..Default::default()
            }),
        })
        .await
        .expect("tenant-svc creates the customer")
        .into_inner()
        .customer
        .unwrap()
        .id
}
