//! Support for the fault-injection suite (`faults.rs`): the mesh as four separate processes (the
//! real `tenant-svc`, `memory-svc`, `media-svc` and `gateway` binaries, started with
//! `mesh::testkit_process` against a `mesh::testkit::TestDb`), a simulated Twilio side that
//! measures when the gateway closes a call's Media Streams socket, and a PostgreSQL restart for
//! the private test cluster.
//!
//! Parts:
//! - [`binaries`] builds the four service binaries once per test process (same profile and target
//!   directory as the running test), or takes them from `MESH_FAULTS_BIN_DIR`;
//! - [`Service`] is one running binary that can be SIGKILLed, SIGTERMed and restarted on the same
//!   port, with its log lines kept for assertions and failure messages;
//! - [`ProcessMesh`] starts all four, seeds one tenant with a number through tenant-svc's admin
//!   gRPC API, places webhooks ([`ProcessMesh::webhook`]) and calls ([`ProcessMesh::call`]);
//! - [`LiveCall`] plays Twilio's side of one Media Streams socket (20 ms mu-law frames of a
//!   voice-like signal, marks echoed once "played", `stop` on hang-up) and records the close
//!   code and the instant the close arrived;
//! - [`restart_postgres`] runs `pg_ctl restart -m fast` on the test kit's private cluster
//!   ([`PgCtl`] also stops and starts it);
//!   [`DB_SERVER`] keeps every other test of the process off the cluster meanwhile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use mesh::testkit_process::{ServiceProcess, service_env};
use tokio::sync::{OnceCell, RwLock, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// What the gateway believes its public address is: webhooks and the Media Streams upgrade are
/// signed over it, while requests go to the gateway's real loopback port.
pub const PUBLIC_BASE_URL: &str = "https://faults.mesh.example";
/// The Twilio account of every simulated call.
pub const ACCOUNT_SID: &str = e2e::ACCOUNT_SID;
/// What a caller hears when the platform cannot take the call (set on the gateway, so the test
/// recognises the apology exactly).
pub const APOLOGY: &str = "Sorry, we cannot take your call right now. Goodbye.";
/// The seeded tenant's number.
pub const NUMBER: &str = "+14155550101";
/// The gateway's answer budget (fixed in the gateway).
pub const BUDGET: Duration = Duration::from_secs(2);

/// Tests that restart PostgreSQL hold this exclusively; every other test of the process holds it
/// shared, so a restart never hits another test's services.
pub static DB_SERVER: RwLock<()> = RwLock::const_new(());

static BINARIES: OnceCell<PathBuf> = OnceCell::const_new();

/// The directory holding the four service binaries. Unless `MESH_FAULTS_BIN_DIR` names one, they
/// are built once per test process with `cargo build --bins` in the profile and target directory
/// of this test binary (a no-op when `cargo test --workspace` already built them).
pub async fn binaries() -> &'static Path {
    BINARIES
        .get_or_init(|| async {
            if let Some(dir) = std::env::var_os("MESH_FAULTS_BIN_DIR") {
                return PathBuf::from(dir);
            }
            // target/<profile>/deps/faults-<hash>
            let exe = std::env::current_exe().expect("test executable path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>")
                .to_path_buf();
            cargo_build(
                &profile_dir,
                &[
                    "--bins",
                    "-p",
                    "tenant-svc",
                    "-p",
                    "memory-svc",
                    "-p",
                    "media-svc",
                    "-p",
                    "gateway",
                ],
            )
            .await;
            profile_dir
        })
        .await
}

/// `cargo build --quiet <args>` from the workspace into the target directory and profile of
/// `profile_dir` (`target/<profile>`); panics with cargo's output when the build fails.
pub async fn cargo_build(profile_dir: &Path, args: &[&str]) {
    let target_dir = profile_dir.parent().expect("target directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = tokio::process::Command::new(cargo);
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["build", "--quiet"])
        .args(args)
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().await.expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `check` every 10 ms until it holds or `within` passes; returns whether it held.
pub async fn wait_until(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ------------------------------------------------------------------------------------------------
// One service process
// ------------------------------------------------------------------------------------------------

/// One running service binary.
pub struct Service {
    /// Binary name, e.g. `media-svc`.
    pub name: &'static str,
    binary: PathBuf,
    env: BTreeMap<String, String>,
    port_var: &'static str,
    process: Option<ServiceProcess>,
    /// The main (gRPC or public HTTP) address; kept across restarts.
    pub addr: SocketAddr,
    /// The admin address of the current process.
    pub admin: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// One process of `name`, and a second replica from the same settings when `replicated`.
    async fn start_replicas(
        name: &'static str,
        port_var: &'static str,
        env: BTreeMap<String, String>,
        replicated: bool,
    ) -> (Service, Option<Service>) {
        let first = Service::start(name, port_var, env.clone()).await;
        let second = if replicated {
            Some(Service::start(name, port_var, env).await)
        } else {
            None
        };
        (first, second)
    }

    async fn start(
        name: &'static str,
        port_var: &'static str,
        env: BTreeMap<String, String>,
    ) -> Service {
        let binary = binaries().await.join(name);
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut service = Service {
            name,
            binary,
            env,
            port_var,
            process: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
            log,
        };
        service.spawn().await;
        service
    }

    async fn spawn(&mut self) {
        let mut process = ServiceProcess::start(&self.binary.to_string_lossy(), &self.env).await;
        self.addr = process.main;
        self.admin = process.admin;
        // Keep the log (the pipe must never fill, and failures print it).
        let mut lines =
            std::mem::replace(&mut process.lines, tokio::sync::mpsc::unbounded_channel().1);
        let log = self.log.clone();
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                log.lock().expect("log lock").push(line);
            }
        });
        self.process = Some(process);
    }

    /// Whether the process is up (it has not been killed or stopped by the test).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// SIGKILL: `ServiceProcess` owns its child with `kill_on_drop`, so dropping it sends
    /// SIGKILL at once. Returns the instant of the kill; returns once the port refuses
    /// connections (the process is gone).
    pub async fn kill(&mut self) -> Instant {
        let process = self.process.take().expect("the service is running");
        let killed_at = Instant::now();
        drop(process);
        let addr = self.addr;
        assert!(
            wait_until(Duration::from_secs(5), async || {
                tokio::net::TcpStream::connect(addr).await.is_err()
            })
            .await,
            "{} still accepts connections 5 s after SIGKILL",
            self.name
        );
        killed_at
    }

    /// SIGTERM; the returned future (independent of `self`, so the test can keep using the
    /// mesh meanwhile) resolves to the exit code and the time from the signal to the exit.
    pub fn sigterm(&mut self) -> impl Future<Output = (Option<i32>, Duration)> + Send + 'static {
        let process = self.process.take().expect("the service is running");
        async move {
            let started = Instant::now();
            let code = process.terminate().await;
            (code, started.elapsed())
        }
    }

    /// Starts the binary again on the same main port (a fresh admin port), with `extra`
    /// settings changed from the first start.
    pub async fn restart_with(&mut self, extra: &[(&str, &str)]) {
        assert!(self.process.is_none(), "{} is still running", self.name);
        self.env
            .insert(self.port_var.into(), self.addr.port().to_string());
        for (k, v) in extra {
            self.env.insert((*k).into(), (*v).into());
        }
        self.log
            .lock()
            .expect("log lock")
            .push(format!("---- {} restarted ----", self.name));
        self.spawn().await;
    }

    /// Starts the binary again on the same main port.
    pub async fn restart(&mut self) {
        self.restart_with(&[]).await;
    }

    /// Log lines printed so far (all runs of this service).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// The last `n` log lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log();
        let from = log.len().saturating_sub(n);
        format!("---- {} log ----\n{}", self.name, log[from..].join("\n"))
    }
}

// ------------------------------------------------------------------------------------------------
// The mesh of processes
// ------------------------------------------------------------------------------------------------

/// The four services as separate processes on loopback against a fresh database.
pub struct ProcessMesh {
    /// The database.
    pub db: TestDb,
    /// Every service's key and the trust bundle (also written under a temporary directory).
    pub keys: DevKeys,
    _dir: tempfile::TempDir,
    /// The Twilio Auth Token the gateway checks signatures with.
    pub auth_token: String,
    /// tenant-svc.
    pub tenant: Service,
    /// memory-svc.
    pub memory: Service,
    /// media-svc.
    pub media: Service,
    /// gateway.
    pub gateway: Service,
    /// The seeded tenant (number [`NUMBER`]).
    pub customer_id: i64,
    /// The second replica of each service ([`ProcessMesh::start_replicated`]).
    pub replicas: Option<Replicas>,
    http: reqwest::Client,
}

/// Second replicas: the gateways and media-svc reach both replicas of each peer through
/// client-side balancing (comma-separated peer URLs); both gateways take Twilio's traffic.
pub struct Replicas {
    /// tenant-svc, second replica.
    pub tenant: Service,
    /// memory-svc, second replica.
    pub memory: Service,
    /// media-svc, second replica.
    pub media: Service,
    /// gateway, second replica.
    pub gateway: Service,
}

/// Peer URLs: every replica, comma-separated.
fn peer_urls(a: &Service, b: &Option<Service>) -> String {
    let mut urls = format!("http://{}", a.addr);
    if let Some(b) = b {
        urls.push_str(&format!(",http://{}", b.addr));
    }
    urls
}

/// media-svc's settings in the process mesh, beside the identity and the drain deadline.
fn media_pairs(
    database_url: String,
    tenant_urls: &str,
    memory_urls: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url),
        ("AI_BACKEND", "local".into()),
        ("TENANT_SVC_URL", tenant_urls.to_owned()),
        ("MEMORY_SVC_URL", memory_urls.to_owned()),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL.into()),
        // Post-call records are retried every second while memory-svc is away.
        ("MEDIA_OUTBOX_MAX_BACKOFF_SECONDS", "1".into()),
        // Calls cut by a kill stay "in progress" in the database; the suite's few
        // calls must not meet the per-tenant limit.
        (
            "MEDIA_CONCURRENT_CALLS_BY_TIER",
            "starter=100,pro=100,enterprise=100".into(),
        ),
    ]
}

impl ProcessMesh {
    /// Starts the mesh with a drain deadline (`SHUTDOWN_GRACE_SECONDS`) of `grace_s` seconds and
    /// seeds one tenant owning [`NUMBER`].
    pub async fn start(grace_s: u64) -> ProcessMesh {
        Self::start_with(grace_s, false).await
    }

    /// Like [`ProcessMesh::start`], with two replicas of every service ([`ProcessMesh::replicas`]).
    pub async fn start_replicated(grace_s: u64) -> ProcessMesh {
        Self::start_with(grace_s, true).await
    }

    async fn start_with(grace_s: u64, replicated: bool) -> ProcessMesh {
        let db = TestDb::new().await;
        let keys = DevKeys::generate();
        let dir = tempfile::tempdir().expect("temp dir");
        let auth_token = uuid::Uuid::new_v4().simple().to_string();
        let grace = grace_s.to_string();
        let env = |service: &str, pairs: Vec<(&str, String)>| {
            let mut env = service_env(&keys, service, dir.path());
            env.insert("SHUTDOWN_GRACE_SECONDS".into(), grace.clone());
            env.insert("DATABASE_POOL_SIZE".into(), "8".into());
            for (k, v) in pairs {
                env.insert(k.into(), v);
            }
            env
        };
        let tenant_env = env(
            names::TENANT_SVC,
            vec![("DATABASE_URL", db.url_for_role("tenant_svc"))],
        );
        let memory_env = env(
            names::MEMORY_SVC,
            vec![("DATABASE_URL", db.url_for_role("memory_svc"))],
        );
        let (tenant, tenant_b) =
            Service::start_replicas("tenant-svc", "TENANT_SVC_PORT", tenant_env, replicated).await;
        let (memory, memory_b) =
            Service::start_replicas("memory-svc", "MEMORY_SVC_PORT", memory_env, replicated).await;
        let urls = peer_urls;
        let tenant_urls = urls(&tenant, &tenant_b);
        let memory_urls = urls(&memory, &memory_b);
        let media_env = env(
            names::MEDIA_SVC,
            media_pairs(db.url_for_role("media_svc"), &tenant_urls, &memory_urls),
        );
        let (media, media_b) =
            Service::start_replicas("media-svc", "MEDIA_SVC_PORT", media_env, replicated).await;

        let gateway_env = env(
            names::GATEWAY,
            vec![
                ("PUBLIC_BASE_URL", PUBLIC_BASE_URL.into()),
                ("TWILIO_AUTH_TOKEN", auth_token.clone()),
                ("TENANT_SVC_URL", tenant_urls.clone()),
                ("MEMORY_SVC_URL", memory_urls.clone()),
                ("MEDIA_SVC_URL", urls(&media, &media_b)),
                ("GATEWAY_APOLOGY_MESSAGE", APOLOGY.into()),
                // An https base URL needs an SMTP server for the portal's mail; none is sent here.
                ("PORTAL_SMTP_URL", "smtp://127.0.0.1:2525".into()),
            ],
        );
        let gateway = Service::start("gateway", "GATEWAY_PORT", gateway_env.clone()).await;
        let replicas = if replicated {
            Some(Replicas {
                tenant: tenant_b.expect("started"),
                memory: memory_b.expect("started"),
                media: media_b.expect("started"),
                gateway: Service::start("gateway", "GATEWAY_PORT", gateway_env).await,
            })
        } else {
            None
        };
        let mut mesh = ProcessMesh {
            db,
            keys,
            _dir: dir,
            auth_token,
            tenant,
            memory,
            media,
            gateway,
            customer_id: 0,
            replicas,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        };
        mesh.customer_id = mesh.seed_tenant().await;
        mesh.warm_up().await;
        mesh
    }

    /// Posts webhooks (CallSids of tag 0xff) until one is connected, so every process has paid
    /// its first-use costs (connections, caches, and above all libphonenumber's metadata, built
    /// on the first parse: about 2 s in a debug build on a busy machine, which alone exceeds
    /// the answer budget) before the test injects its fault. Leaves one registered call that
    /// never streams. Returns how many webhooks it took.
    pub async fn warm_up(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in 1.. {
            let answer = self.webhook(&call_sid(0xff, n), "+15550000000").await;
            if answer.stream.is_some() {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "the mesh did not connect a call within 30 s: {answer:?}\n{}",
                self.logs()
            );
        }
        unreachable!("returns or panics")
    }

    /// A gRPC channel to `addr` (connected lazily, so it can outlive a restart).
    pub fn channel(addr: SocketAddr) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy()
    }

    /// An operator token for tenant-svc's admin API.
    pub fn operator_token(&self) -> String {
        self.keys
            .identity(names::OPERATOR)
            .minter()
            .mint_service(
                names::TENANT_SVC,
                &[scope::TENANT_ADMIN],
                Duration::from_secs(600),
            )
            .expect("mint operator token")
    }

    /// A tenant token of the seeded tenant for memory-svc and media-svc.
    pub fn tenant_token(&self, scopes: &[&str]) -> String {
        self.keys
            .identity(names::TENANT_SVC)
            .minter()
            .mint_tenant(
                mesh::domain::CustomerId::new(self.customer_id).expect("positive id"),
                "faults-suite",
                &[names::MEMORY_SVC, names::MEDIA_SVC],
                scopes,
                Duration::from_secs(600),
            )
            .expect("mint tenant token")
    }

    /// Creates one tenant with [`NUMBER`] through tenant-svc's admin API (what
    /// `e2e::Mesh::seed_demo_tenants` does in-process).
    async fn seed_tenant(&self) -> i64 {
        use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
        use mesh::api::tenant::*;
        let token = self.operator_token();
        let mut admin = TenantAdminServiceClient::new(Self::channel(self.tenant.addr));
        let customer = admin
            .create_customer(e2e::with_token(
                CreateCustomerRequest {
                    email: "ops@faults.example".into(),
                    business_name: "Faults Insurance".into(),
                    agent_config: Some(AgentConfig {
                        greeting_new_caller: Some("Faults Insurance, hello.".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("create the tenant")
            .into_inner()
            .customer
            .expect("customer");
        admin
            .assign_phone_number(e2e::with_token(
                AssignPhoneNumberRequest {
                    customer_id: customer.id,
                    number: NUMBER.into(),
                    twilio_account_sid: String::new(),
                },
                &token,
            ))
            .await
            .expect("assign the number");
        customer.id
    }

    /// The signed voice webhook of call `call_sid` from `from`, timed.
    pub async fn webhook(&self, call_sid: &str, from: &str) -> Webhook {
        self.webhook_via(self.gateway.addr, call_sid, from).await
    }

    /// [`ProcessMesh::webhook`] sent to the gateway at `gateway`.
    pub async fn webhook_via(&self, gateway: SocketAddr, call_sid: &str, from: &str) -> Webhook {
        let params: Vec<(String, String)> = [
            ("CallSid", call_sid),
            ("AccountSid", ACCOUNT_SID),
            ("From", from),
            ("To", NUMBER),
            ("CallStatus", "ringing"),
            ("ApiVersion", "2010-04-01"),
            ("Direction", "inbound"),
            ("Caller", from),
            ("Called", NUMBER),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let sig = gateway::signature::compute(
            self.auth_token.as_bytes(),
            &format!("{PUBLIC_BASE_URL}/twilio/voice"),
            &params,
        );
        let started = Instant::now();
        let response = self
            .http
            .post(format!("http://{gateway}/twilio/voice"))
            .header("X-Twilio-Signature", sig)
            .form(&params)
            .send()
            .await
            .expect("the gateway answers the webhook");
        let status = response.status().as_u16();
        let twiml = response.text().await.expect("webhook body");
        let elapsed = started.elapsed();
        let (stream, said) = gateway::sim::parse_twiml(&twiml).unwrap_or((None, Vec::new()));
        Webhook {
            status,
            twiml,
            elapsed,
            stream,
            said,
        }
    }

    /// Places call `call_sid` from `from` and opens its Media Streams socket; panics unless the
    /// gateway connected it.
    pub async fn call(&self, call_sid: &str, from: &str) -> LiveCall {
        let answer = self.webhook(call_sid, from).await;
        assert!(
            answer.status == 200 && answer.stream.is_some(),
            "call {call_sid} not connected after {:?}: HTTP {} {}\n{}",
            answer.elapsed,
            answer.status,
            answer.twiml,
            self.logs()
        );
        self.call_connected(call_sid, answer).await
    }

    /// Opens the Media Streams socket of a call the gateway connected with `answer`.
    pub async fn call_connected(&self, call_sid: &str, answer: Webhook) -> LiveCall {
        LiveCall::open(self, self.gateway.addr, call_sid, answer).await
    }

    /// [`ProcessMesh::call`] through the gateway at `gateway` (webhook and Media Streams socket).
    /// `Err` carries the webhook's answer when the call was not connected.
    pub async fn call_via(
        &self,
        gateway: SocketAddr,
        call_sid: &str,
        from: &str,
    ) -> Result<LiveCall, Webhook> {
        let answer = self.webhook_via(gateway, call_sid, from).await;
        if answer.status != 200 || answer.stream.is_none() {
            return Err(answer);
        }
        Ok(LiveCall::open(self, gateway, call_sid, answer).await)
    }

    /// A superuser connection to the database, for counting rows.
    pub async fn admin(&self) -> tokio_postgres::Client {
        self.db.admin_client().await
    }

    /// The last log lines of every service, for failure messages.
    pub fn logs(&self) -> String {
        let mut services = vec![&self.tenant, &self.memory, &self.media, &self.gateway];
        if let Some(r) = &self.replicas {
            services.extend([&r.tenant, &r.memory, &r.media, &r.gateway]);
        }
        services
            .iter()
            .map(|s| s.tail(25))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `CA` + 32 hex digits, distinct per `n` and per test (`tag`).
pub fn call_sid(tag: u8, n: u32) -> String {
    format!("CA{tag:02x}{n:030x}")
}

/// One voice webhook's answer.
#[derive(Debug)]
pub struct Webhook {
    /// HTTP status.
    pub status: u16,
    /// The TwiML.
    pub twiml: String,
    /// Time from sending the request to having the whole answer.
    pub elapsed: Duration,
    /// The `<Stream>` (URL, parameters) when the call was connected.
    pub stream: Option<gateway::sim::StreamVerb>,
    /// The `<Say>` texts.
    pub said: Vec<String>,
}

impl Webhook {
    /// The apology: HTTP 200, no stream, the apology `<Say>` and a `<Hangup/>`.
    pub fn is_apology(&self) -> bool {
        self.status == 200
            && self.stream.is_none()
            && self.said == [APOLOGY]
            && self.twiml.contains("<Hangup/>")
    }
}

// ------------------------------------------------------------------------------------------------
// Twilio's side of one Media Streams socket
// ------------------------------------------------------------------------------------------------

/// How a call's socket ended, as the simulated Twilio side saw it.
#[derive(Debug, Clone, Copy)]
pub struct Closed {
    /// The close code the gateway sent (`None`: the connection ended without a close frame).
    pub code: Option<u16>,
    /// When the close arrived.
    pub at: Instant,
    /// Whether Twilio's side had sent `stop` before (a normal hang-up).
    pub after_stop: bool,
}

/// A call in progress: Twilio streaming the caller's audio and playing the agent's.
pub struct LiveCall {
    /// The CallSid.
    pub call_sid: String,
    /// The webhook's answer that connected it.
    pub answer: Webhook,
    received: Arc<AtomicU64>,
    closed: watch::Receiver<Option<Closed>>,
    hang_up: Option<oneshot::Sender<()>>,
}

impl LiveCall {
    async fn open(
        mesh: &ProcessMesh,
        gateway: SocketAddr,
        call_sid: &str,
        answer: Webhook,
    ) -> LiveCall {
        let (stream_url, params) = answer.stream.clone().expect("a connected call");
        // Twilio signs the upgrade over the stream URL with no parameters.
        let sig = gateway::signature::compute(mesh.auth_token.as_bytes(), &stream_url, &[]);
        let path = stream_url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
            .expect("a path in the stream URL");
        let mut req = format!("ws://{gateway}{path}")
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert("X-Twilio-Signature", sig.parse().expect("header value"));
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("Media Streams upgrade");
        let received = Arc::new(AtomicU64::new(0));
        let (closed_tx, closed) = watch::channel(None);
        let (hang_up, hung_up) = oneshot::channel();
        tokio::spawn(play(
            ws,
            call_sid.to_owned(),
            params,
            received.clone(),
            closed_tx,
            hung_up,
        ));
        LiveCall {
            call_sid: call_sid.to_owned(),
            answer,
            received,
            closed,
            hang_up: Some(hang_up),
        }
    }

    /// Agent audio frames received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until more than `n` agent frames arrived; false after `within`.
    pub async fn audio_beyond(&self, n: u64, within: Duration) -> bool {
        wait_until(within, async || self.received() > n).await
    }

    /// How the socket ended, if it did within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> Option<Closed> {
        tokio::time::timeout(within, self.closed.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|c| *c)
    }

    /// Hangs up like Twilio (`stop`) and returns how the socket ended.
    pub async fn hang_up(mut self) -> Closed {
        if let Some(h) = self.hang_up.take() {
            let _ = h.send(());
        }
        self.closed_within(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{}: the socket did not end after stop", self.call_sid))
    }
}

/// Standard base64 (the Media Streams payload encoding).
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Twilio's side: `connected`, `start` (with the TwiML's parameters), a frame every 20 ms of a
/// voice-like signal (1 s utterance, 1 s silence, repeated), marks echoed once the audio queued
/// before them has played, `stop` on hang-up; the close is recorded when it arrives.
async fn play(
    ws: Ws,
    call_sid: String,
    params: Vec<(String, String)>,
    received: Arc<AtomicU64>,
    closed: watch::Sender<Option<Closed>>,
    mut hang_up: oneshot::Receiver<()>,
) {
    let (mut tx, mut rx) = ws.split();
    let mut twilio = TwilioSide::new(call_sid);
    let custom: serde_json::Map<String, serde_json::Value> =
        params.into_iter().map(|(k, v)| (k, v.into())).collect();
    for m in twilio.opening(custom) {
        let _ = tx.send(m).await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut stopped = false;
    let end = |code: Option<u16>, after_stop: bool| {
        let _ = closed.send(Some(Closed {
            code,
            at: Instant::now(),
            after_stop,
        }));
    };
    loop {
        let out = tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    twilio.heard(&v, &received)
                }
                Some(Ok(Message::Close(frame))) => {
                    end(frame.map(|f| u16::from(f.code)), stopped);
                    break;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    end(None, stopped);
                    break;
                }
            },
            _ = tick.tick(), if !stopped => twilio.frame(),
            _ = &mut hang_up, if !stopped => {
                stopped = true;
                vec![twilio.stop()]
            }
        };
        for m in out {
            let _ = tx.send(m).await;
        }
    }
    let _ = tx.close().await;
}

/// What Twilio keeps about one Media Streams call: numbering, the caller audio, and when the
/// agent audio it was sent ends playing (marks are echoed then).
struct TwilioSide {
    call_sid: String,
    stream_sid: String,
    seq: u64,
    chunk: u64,
    audio: Vec<u8>,
    play_until: Instant,
    marks: std::collections::VecDeque<(Instant, String)>,
}

impl TwilioSide {
    fn new(call_sid: String) -> Self {
        Self {
            stream_sid: format!("MZ{}", &call_sid[2..]),
            call_sid,
            seq: 1,
            chunk: 0,
            audio: gateway::sim::voice_like(2.0),
            play_until: Instant::now(),
            marks: Default::default(),
        }
    }

    /// `connected`, then `start` carrying the TwiML's `<Parameter>`s.
    fn opening(&self, custom: serde_json::Map<String, serde_json::Value>) -> [Message; 2] {
        [
            Message::text(
                serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
                    .to_string(),
            ),
            Message::text(
                serde_json::json!({
                    "event": "start", "sequenceNumber": "1", "streamSid": self.stream_sid,
                    "start": {"accountSid": ACCOUNT_SID, "streamSid": self.stream_sid, "callSid": self.call_sid,
                              "tracks": ["inbound"],
                              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                              "customParameters": custom}
                })
                .to_string(),
            ),
        ]
    }

    /// The next numbered event `kind` with its `kind` body.
    fn event(&mut self, kind: &str, body: serde_json::Value) -> Message {
        self.seq += 1;
        let mut v = serde_json::json!({"event": kind, "sequenceNumber": self.seq.to_string(),
            "streamSid": self.stream_sid});
        v[kind] = body;
        Message::text(v.to_string())
    }

    fn mark(&mut self, name: String) -> Message {
        self.event("mark", serde_json::json!({ "name": name }))
    }

    /// An event from the gateway: agent audio queues up, a mark waits for it to play, `clear`
    /// drops the queue and echoes every waiting mark at once.
    fn heard(&mut self, v: &serde_json::Value, received: &AtomicU64) -> Vec<Message> {
        match v["event"].as_str() {
            Some("media") => {
                received.fetch_add(1, Ordering::Relaxed);
                let bytes = v["media"]["payload"]
                    .as_str()
                    .map_or(0, |p| p.len() * 3 / 4);
                self.play_until =
                    self.play_until.max(Instant::now()) + Duration::from_micros(bytes as u64 * 125);
                vec![]
            }
            Some("mark") => {
                let name = v["mark"]["name"].as_str().unwrap_or_default().to_owned();
                self.marks
                    .push_back((self.play_until.max(Instant::now()), name));
                vec![]
            }
            Some("clear") => {
                self.play_until = Instant::now();
                let names: Vec<String> = self.marks.drain(..).map(|(_, n)| n).collect();
                names.into_iter().map(|n| self.mark(n)).collect()
            }
            _ => vec![],
        }
    }

    /// The next 20 ms of caller audio, then the marks whose audio has played.
    fn frame(&mut self) -> Vec<Message> {
        let offset = (self.chunk as usize * 160) % self.audio.len();
        self.chunk += 1;
        let chunk = self.chunk;
        let payload = base64(&self.audio[offset..offset + 160]);
        let mut out = vec![self.event(
            "media",
            serde_json::json!({"track": "inbound", "chunk": chunk.to_string(),
                "timestamp": ((chunk - 1) * 20).to_string(), "payload": payload}),
        )];
        let now = Instant::now();
        while self.marks.front().is_some_and(|(at, _)| *at <= now) {
            let (_, name) = self.marks.pop_front().expect("non-empty");
            out.push(self.mark(name));
        }
        out
    }

    fn stop(&mut self) -> Message {
        let body = serde_json::json!({"accountSid": ACCOUNT_SID, "callSid": self.call_sid});
        self.event("stop", body)
    }
}

// ------------------------------------------------------------------------------------------------
// Database checks
// ------------------------------------------------------------------------------------------------

/// One count over the admin connection.
pub async fn count(
    admin: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    admin
        .query_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// A call's row in `media.calls`: (ended, end_reason).
pub async fn call_row(admin: &tokio_postgres::Client, call_sid: &str) -> Option<(bool, String)> {
    admin
        .query_opt(
            "SELECT ended_at IS NOT NULL, end_reason FROM media.calls WHERE call_sid = $1",
            &[&call_sid],
        )
        .await
        .expect("read media.calls")
        .map(|r| (r.get(0), r.get(1)))
}

// ------------------------------------------------------------------------------------------------
// PostgreSQL restart
// ------------------------------------------------------------------------------------------------

/// `pg_ctl` for the test kit's private PostgreSQL cluster, found from the running server.
///
/// The test kit runs the first postmaster under a watchdog that stops it when the test process
/// ends, unless the file `exited` in the cluster directory says it already stopped: once the old
/// postmaster is gone that file appears, and it is removed here so the watchdog stops the new
/// postmaster (found through `postmaster.pid`) at exit as well.
pub struct PgCtl {
    pg_ctl: PathBuf,
    data: PathBuf,
    dir: PathBuf,
    /// The server's command-line options (from `postmaster.opts`), for `pg_ctl start`.
    options: String,
}

impl PgCtl {
    /// Or why the cluster cannot be controlled (a shared server named by `DATABASE_URL`).
    pub async fn of(admin: &tokio_postgres::Client) -> Result<PgCtl, String> {
        let server = mesh::testkit::TestPostgres::global().await;
        if !server.is_private() {
            return Err(
                "DATABASE_URL names a shared server, which this suite does not restart".into(),
            );
        }
        let data: String = admin
            .query_one("SHOW data_directory", &[])
            .await
            .map_err(|e| format!("SHOW data_directory: {e}"))?
            .get(0);
        let data = PathBuf::from(data);
        let dir = data
            .parent()
            .ok_or("data directory has no parent")?
            .to_owned();
        // postmaster.opts: the postgres binary (pg_ctl sits next to it), then its arguments,
        // each quoted.
        let opts = std::fs::read_to_string(data.join("postmaster.opts"))
            .map_err(|e| format!("postmaster.opts: {e}"))?;
        let opts = opts.trim();
        let (postgres, options) = opts.split_once(char::is_whitespace).unwrap_or((opts, ""));
        Ok(PgCtl {
            pg_ctl: Path::new(postgres.trim_matches('"')).with_file_name("pg_ctl"),
            data,
            dir,
            options: options.trim().to_owned(),
        })
    }

    /// Runs `pg_ctl <action>` and waits for it (`-w`); returns how long it took.
    async fn run(&self, action: &str) -> Result<Duration, String> {
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt as _;
            m.uid() == 0
        });
        let mut cmd = if root {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&self.pg_ctl);
            c
        } else {
            tokio::process::Command::new(&self.pg_ctl)
        };
        cmd.arg(action)
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60"]);
        match action {
            "stop" => {
                cmd.args(["-m", "fast"]);
            }
            "restart" => {
                cmd.args(["-m", "fast", "-l"])
                    .arg(self.dir.join("restart.log"));
            }
            _ => {
                cmd.args(["-o", &self.options, "-l"])
                    .arg(self.dir.join("restart.log"));
            }
        }
        let started = Instant::now();
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.pg_ctl.display()))?;
        let took = started.elapsed();
        if !out.status.success() {
            return Err(format!(
                "pg_ctl {action} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(took)
    }

    /// Removes the watchdog's `exited` marker once the first postmaster is gone (see above).
    async fn clear_exited(&self) -> Result<(), String> {
        let exited = self.dir.join("exited");
        if wait_until(Duration::from_secs(10), async || exited.exists()).await {
            std::fs::remove_file(&exited)
                .map_err(|e| format!("removing {}: {e}", exited.display()))?;
        }
        Ok(())
    }

    /// `pg_ctl restart -m fast`: every session is terminated, the server shuts down cleanly and
    /// starts again on the same port and data directory with the same options. Returns how long
    /// the server was unavailable as `pg_ctl` saw it.
    pub async fn restart(&self) -> Result<Duration, String> {
        let took = self.run("restart").await?;
        self.clear_exited().await?;
        Ok(took)
    }

    /// `pg_ctl stop -m fast`: the server is down until [`PgCtl::start`].
    pub async fn stop(&self) -> Result<(), String> {
        self.run("stop").await.map(|_| ())
    }

    /// Starts the stopped server again with its old options.
    pub async fn start(&self) -> Result<(), String> {
        self.run("start").await?;
        self.clear_exited().await
    }
}

/// Restarts the test kit's private PostgreSQL cluster ([`PgCtl::restart`]).
pub async fn restart_postgres(admin: &tokio_postgres::Client) -> Result<Duration, String> {
    PgCtl::of(admin).await?.restart().await
}
