//! Boots the whole mesh in-process for end-to-end tests: a fresh migrated database (from
//! `mesh::testkit`), development keys, and tenant-svc, memory-svc, media-svc and the gateway
//! each on their own loopback ports (port 0, so tests never collide), connected over real
//! sockets. Tests then talk to it exactly as other teams and Twilio would: gRPC clients with
//! tokens, HTTP requests, WebSockets.

pub mod browser;
pub mod fakes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh::auth::LegacyVerifier;
use mesh::identity::{DevKeys, names};
use mesh::testkit::TestDb;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Optional changes to how [`Mesh::start_with`] configures the services.
#[derive(Default)]
pub struct MeshOptions {
    /// Extra gateway settings (override the defaults of the same name).
    pub gateway_env: Vec<(String, String)>,
    /// Adjusts media-svc's call configuration (Twilio fake, limits, webhook pacing).
    #[allow(clippy::type_complexity)]
    pub media: Option<Box<dyn FnOnce(&mut media_svc::CallConfig) + Send>>,
    /// Adjusts tenant-svc's account configuration (owners' mail, sign-up), given the gateway's
    /// public base URL (the links mails carry).
    #[allow(clippy::type_complexity)]
    pub tenant_accounts:
        Option<Box<dyn FnOnce(&mut tenant_svc::account::AccountConfig, &str) + Send>>,
}

/// The two ports of a running service.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// gRPC (or, for the gateway, public HTTP) address.
    pub main: SocketAddr,
    /// Admin HTTP address (`/metrics`, `/healthz`, `/readyz`).
    pub admin: SocketAddr,
}

/// A running mesh. Dropping it stops the services (without waiting); call [`Mesh::shutdown`]
/// to stop them gracefully and check they exited cleanly.
pub struct Mesh {
    /// The database the services use.
    pub db: TestDb,
    /// Every service's key and the shared trust bundle.
    pub keys: Arc<DevKeys>,
    /// The legacy HS256 key (`JWT_SECRET_KEY`) tenant-svc was started with.
    pub legacy_secret: SecretString,
    /// The Twilio Auth Token the gateway checks signatures with.
    pub twilio_auth_token: String,
    /// The gateway's public base URL (what Twilio would request).
    pub public_base_url: String,
    /// tenant-svc.
    pub tenant: Ports,
    /// memory-svc.
    pub memory: Ports,
    /// media-svc.
    pub media: Ports,
    /// media-svc's recording configuration (keys, spool, store), for [`Mesh::recordings`].
    pub recording: media_svc::recording::RecordingConfig,
    /// gateway.
    pub gateway: Ports,
    /// The gateway's operator console (its own loopback listener).
    pub console: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, Task)>,
}

const DRAIN: Duration = Duration::from_secs(5);

async fn listeners() -> (TcpListener, TcpListener) {
    let a = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let b = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    (a, b)
}

fn ports(main: &TcpListener, admin: &TcpListener) -> Ports {
    Ports {
        main: main.local_addr().expect("bound"),
        admin: admin.local_addr().expect("bound"),
    }
}

/// A service task: its result once it stops.
type Task = JoinHandle<anyhow::Result<()>>;

/// A gateway replica started by [`Mesh::start_gateway_replica`].
pub struct GatewayReplica {
    /// Its public HTTP address.
    pub main: SocketAddr,
    stop: watch::Sender<bool>,
    task: Task,
}

impl GatewayReplica {
    /// Drains and stops it (what a restart begins with); panics unless it exits cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(DRAIN + Duration::from_secs(5), self.task)
            .await
            .expect("the gateway stops within its drain deadline")
            .expect("no panic")
            .expect("the gateway exits cleanly");
    }
}

/// media-svc's call configuration in the test mesh: its peers, the gateway's public URL, and the
/// test's adjustments.
#[allow(clippy::type_complexity)]
fn media_calls(
    tenant: Ports,
    memory: Ports,
    public_base_url: &str,
    adjust: Option<Box<dyn FnOnce(&mut media_svc::CallConfig) + Send>>,
) -> media_svc::CallConfig {
    let mut calls = media_svc::CallConfig::local(
        format!("http://{}", tenant.main),
        format!("http://{}", memory.main),
    );
    calls.public_base_url = public_base_url.to_owned();
    if let Some(adjust) = adjust {
        adjust(&mut calls);
    }
    calls
}

/// The gateway's operator console on its own loopback listener, as the binary serves it.
async fn start_console(
    edge: &gateway::Edge,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (SocketAddr, Task) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("bound");
    let serve = gateway::console::serve(listener, edge.console.clone(), shutdown);
    (addr, tokio::spawn(async move { Ok(serve.await?) }))
}

/// tenant-svc with a fresh legacy HS256 secret; returns its ports and that secret.
async fn start_tenant(
    db: &TestDb,
    keys: &DevKeys,
    [memory, media]: [Ports; 2],
    accounts: tenant_svc::account::AccountConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Ports, SecretString, Task) {
    let (g, a) = listeners().await;
    let tenant = ports(&g, &a);
    let legacy_secret = SecretString::from(format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    ));
    let deps = tenant_svc::Deps {
        core: mesh::server::Core {
            db: db.db_for_role("tenant_svc").await,
            identity: keys.identity(names::TENANT_SVC),
        },
        legacy: Some(LegacyVerifier::new(&legacy_secret).expect("64-byte secret")),
        // Tests point webhooks at receivers on 127.0.0.1 over http.
        webhook_allow_insecure: true,
        peers: tenant_svc::peers::Peers::new(
            &format!("http://{}", memory.main),
            &format!("http://{}", media.main),
            keys.identity(names::TENANT_SVC),
        )
        .expect("peer URLs"),
        accounts,
    };
    let task = tokio::spawn(tenant_svc::serve(
        deps,
        mesh::server::Listeners::new(g, a, DRAIN),
        shutdown,
    ));
    (tenant, legacy_secret, task)
}

async fn start_memory(
    db: &TestDb,
    keys: &DevKeys,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Ports, Task) {
    let (g, a) = listeners().await;
    let memory = ports(&g, &a);
    let deps = memory_svc::Deps {
        db: db.db_for_role("memory_svc").await,
        identity: keys.identity(names::MEMORY_SVC),
    };
    (
        memory,
        tokio::spawn(memory_svc::serve(
            deps,
            mesh::server::Listeners::new(g, a, DRAIN),
            shutdown,
        )),
    )
}

/// The gateway's settings: `extra` first, then what the test mesh needs unless `extra` set it.
fn gateway_settings(
    extra: &[(String, String)],
    gateway: Ports,
    [tenant, memory, media]: &[Ports; 3],
    twilio_auth_token: &str,
) -> gateway::Settings {
    let mut env: Vec<(String, String)> = extra.to_vec();
    env.extend(
        [
            ("BIND_HOST", "127.0.0.1".to_owned()),
            ("GATEWAY_PORT", gateway.main.port().to_string()),
            ("GATEWAY_ADMIN_PORT", gateway.admin.port().to_string()),
            ("PUBLIC_BASE_URL", format!("http://{}", gateway.main)),
            ("TWILIO_AUTH_TOKEN", twilio_auth_token.to_owned()),
            ("TENANT_SVC_URL", format!("http://{}", tenant.main)),
            ("MEMORY_SVC_URL", format!("http://{}", memory.main)),
            ("MEDIA_SVC_URL", format!("http://{}", media.main)),
            // The identity is handed over directly; these are not read.
            ("MESH_SIGNING_KEY_FILE", "unused".to_owned()),
            ("MESH_SIGNING_KEY_ID", "unused".to_owned()),
            ("MESH_TRUSTED_KEYS_FILE", "unused".to_owned()),
        ]
        .into_iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .map(|(k, v)| (k.to_owned(), v)),
    );
    gateway::Settings::from_env(mesh::settings::Env::from_pairs(env)).expect("gateway settings")
}

impl Mesh {
    /// Starts every service against a fresh database.
    pub async fn start() -> Mesh {
        Self::start_with_gateway_settings(&[]).await
    }

    /// Like [`Mesh::start`], with extra gateway settings (e.g. rate limits for load tests).
    pub async fn start_with_gateway_settings(extra: &[(&str, &str)]) -> Mesh {
        Self::start_with(MeshOptions {
            gateway_env: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..MeshOptions::default()
        })
        .await
    }

    /// Starts every service with `options` applied.
    pub async fn start_with(options: MeshOptions) -> Mesh {
        let MeshOptions {
            gateway_env: extra,
            media: media_options,
            tenant_accounts,
        } = options;
        let db = TestDb::new().await;
        let keys = Arc::new(DevKeys::generate());
        let (stop, stop_rx) = watch::channel(false);
        let shutdown = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = Vec::new();
        // memory-svc first, and media-svc's ports: tenant-svc erases deleted customers in both.
        let (memory, memory_task) = start_memory(&db, &keys, shutdown()).await;
        let (g, a) = listeners().await;
        let media = ports(&g, &a);
        // The gateway's ports are known first: media-svc gives Twilio URLs on it, tenant-svc's
        // mails link to it.
        let (h, ha) = listeners().await;
        let gateway = ports(&h, &ha);
        let public_base_url = format!("http://{}", gateway.main);
        let mut accounts = tenant_svc::account::AccountConfig::default();
        if let Some(adjust) = tenant_accounts {
            adjust(&mut accounts, &public_base_url);
        }
        let (tenant, legacy_secret, task) =
            start_tenant(&db, &keys, [memory, media], accounts, shutdown()).await;
        tasks.push((names::TENANT_SVC, task));
        tasks.push((names::MEMORY_SVC, memory_task));

        let calls = media_calls(tenant, memory, &public_base_url, media_options);
        let recording = calls.recording.clone();
        let deps = media_svc::Deps {
            core: mesh::server::Core {
                db: db.db_for_role("media_svc").await,
                identity: keys.identity(names::MEDIA_SVC),
            },
            calls,
        };
        let listeners = mesh::server::Listeners::new(g, a, DRAIN);
        let media_task = tokio::spawn(media_svc::serve(deps, listeners, shutdown()));
        tasks.push((names::MEDIA_SVC, media_task));

        let twilio_auth_token = uuid::Uuid::new_v4().simple().to_string();
        let settings = gateway_settings(
            &extra,
            gateway,
            &[tenant, memory, media],
            &twilio_auth_token,
        );
        let edge =
            gateway::edge_state(&settings, &keys.identity(names::GATEWAY)).expect("gateway state");
        let (console, console_task) = start_console(&edge, shutdown()).await;
        tasks.push(("operator-console", console_task));
        let gateway_task = tokio::spawn(gateway::serve(edge, h, ha, DRAIN, shutdown()));
        tasks.push((names::GATEWAY, gateway_task));

        Mesh {
            db,
            keys,
            legacy_secret,
            twilio_auth_token,
            public_base_url,
            tenant,
            memory,
            media,
            recording,
            gateway,
            console,
            stop,
            tasks,
        }
    }

    /// A handle on media-svc's recordings (the same keys, spool and store): a test writes a
    /// recording through the real writer as a call driver would, and media-svc reads it.
    pub async fn recordings(&self) -> media_svc::recording::Recordings {
        media_svc::recording::Recordings::new(
            self.db.db_for_role("media_svc").await,
            &self.recording,
        )
        .expect("recordings")
    }

    /// Records `seconds` of the call `call_sid` of `customer` (its row must exist) through
    /// media-svc's real writer, as a call driver feeds it: the caller a 440 Hz tone throughout,
    /// the agent a 660 Hz tone in the second half, 20 ms frames at their media time; finished
    /// (sealed in the spool). Returns the recording's id.
    pub async fn record_call(&self, customer: i64, call_sid: &str, seconds: u32) -> uuid::Uuid {
        self.record(
            customer,
            call_sid,
            seconds,
            media_svc::recording::RecordingKind::Call,
        )
        .await
    }

    /// [`Mesh::record_call`] for a recording of `kind` (a message a caller left, too).
    pub async fn record(
        &self,
        customer: i64,
        call_sid: &str,
        seconds: u32,
        kind: media_svc::recording::RecordingKind,
    ) -> uuid::Uuid {
        let recordings = self.recordings().await;
        let customer = mesh::domain::CustomerId::new(customer).expect("customer id");
        let sid = mesh::domain::CallSid::parse(call_sid).expect("CallSid");
        let mut writer = recordings
            .start(customer, &sid, kind)
            .await
            .expect("start recording")
            .expect("recording is on");
        let tone = |hz: f64, from: u32| -> Vec<u8> {
            (0..160u32)
                .map(|i| {
                    let t = f64::from(from * 8 + i) / 8000.0;
                    let v = (2.0 * std::f64::consts::PI * hz * t).sin() * 8000.0;
                    mesh::g711::linear_to_ulaw(v as i16)
                })
                .collect()
        };
        for ms in (0..seconds * 1000).step_by(20) {
            writer.caller(ms, &tone(440.0, ms));
            if ms >= seconds * 500 {
                writer.agent(ms, &tone(660.0, ms));
            }
            if ms % 1000 == 0 {
                // A call's pace, roughly: the writer task keeps up.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        assert!(!writer.truncated(), "the recording was cut short");
        writer.finish().await.expect("finish recording").0
    }

    /// A gRPC channel to a service's port.
    pub async fn channel(&self, ports: Ports) -> Channel {
        Channel::from_shared(format!("http://{}", ports.main))
            .expect("valid uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to service")
    }

    /// A service token from `issuer` (one of `mesh::identity::names::ALL`) to `audience`.
    pub fn service_token(&self, issuer: &str, audience: &str, scopes: &[&str]) -> String {
        self.keys
            .identity(issuer)
            .minter()
            .mint_service(audience, scopes, Duration::from_secs(300))
            .expect("mint service token")
    }

    /// A tenant token for `customer_id`, signed by tenant-svc's key, for every service.
    pub fn tenant_token(&self, customer_id: i64, scopes: &[&str]) -> String {
        let customer = mesh::domain::CustomerId::new(customer_id).expect("positive id");
        self.keys
            .identity(names::TENANT_SVC)
            .minter()
            .mint_tenant(
                customer,
                "e2e-test",
                &[names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC],
                scopes,
                Duration::from_secs(300),
            )
            .expect("mint tenant token")
    }

    /// Starts one more gateway replica on fresh loopback ports, in front of the same services
    /// (its own process state: limiters, caches); it stops when the returned value is dropped.
    pub async fn another_gateway(&self) -> OtherGateway {
        let (h, ha) = listeners().await;
        let ports = ports(&h, &ha);
        let settings = gateway_settings(
            &[],
            ports,
            &[self.tenant, self.memory, self.media],
            &self.twilio_auth_token,
        );
        let edge = gateway::edge_state(&settings, &self.keys.identity(names::GATEWAY))
            .expect("gateway state");
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(gateway::serve(edge, h, ha, DRAIN, async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        }));
        OtherGateway { ports, stop, task }
    }

    /// Stops every service gracefully and returns each one's result.
    pub async fn shutdown(mut self) -> Vec<(&'static str, anyhow::Result<()>)> {
        let _ = self.stop.send(true);
        let mut results = Vec::new();
        for (name, task) in self.tasks.drain(..) {
            let r = match tokio::time::timeout(DRAIN + Duration::from_secs(5), task).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(anyhow::anyhow!("task panicked: {e}")),
                Err(_) => Err(anyhow::anyhow!("did not stop within the drain deadline")),
            };
            results.push((name, r));
        }
        results
    }
}

/// A further gateway replica ([`Mesh::another_gateway`]); dropping it stops it.
pub struct OtherGateway {
    /// Its public HTTP and admin ports.
    pub ports: Ports,
    stop: watch::Sender<bool>,
    task: Task,
}

impl Drop for OtherGateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for (_, t) in &self.tasks {
            t.abort();
        }
    }
}

/// A request with `authorization: Bearer <token>` metadata.
pub use mesh::auth::with_bearer as with_token;

/// tenant-svc's admin client.
pub type TenantAdmin =
    mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient<Channel>;

/// Creates a customer with `config` and assigns it `number` through tenant-svc's admin API, as
/// an operator with `token` would; returns the customer id.
pub async fn create_tenant(
    admin: &mut TenantAdmin,
    token: &str,
    email: &str,
    business_name: &str,
    config: mesh::api::tenant::AgentConfig,
    number: &str,
) -> i64 {
    use mesh::api::tenant::{AssignPhoneNumberRequest, CreateCustomerRequest};
    let customer = admin
        .create_customer(with_token(
            CreateCustomerRequest {
                email: email.into(),
                business_name: business_name.into(),
                agent_config: Some(config),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("create tenant")
        .into_inner()
        .customer
        .expect("customer");
    admin
        .assign_phone_number(with_token(
            AssignPhoneNumberRequest {
                customer_id: customer.id,
                number: number.into(),
                twilio_account_sid: String::new(),
            },
            token,
        ))
        .await
        .expect("assign number");
    customer.id
}

/// A demo tenant created through the admin API.
#[derive(Debug, Clone)]
pub struct DemoTenant {
    /// Customer id.
    pub id: i64,
    /// Business name.
    pub name: &'static str,
    /// Its Twilio number.
    pub number: &'static str,
    /// Its greeting for new callers.
    pub greeting: &'static str,
}

/// The Twilio account used by the simulated webhooks.
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

impl Mesh {
    /// Creates "Peterson Family Insurance" and "Smith Insurance Agency", each with a number,
    /// through tenant-svc's admin API.
    pub async fn seed_demo_tenants(&self) -> (DemoTenant, DemoTenant) {
        use mesh::api::tenant::AgentConfig;
        let token = self.service_token(names::OPERATOR, names::TENANT_SVC, &["tenant:admin"]);
        let mut admin = TenantAdmin::new(self.channel(self.tenant).await);
        let mut out = Vec::new();
        for (email, name, number, greeting, voice) in [
            (
                "ops@peterson.example",
                "Peterson Family Insurance",
                "+14155550101",
                "Thank you for calling Peterson Family Insurance, this is {agent_name}.",
                "sage",
            ),
            (
                "desk@smith.example",
                "Smith Insurance Agency",
                "+14155550102",
                "Smith Insurance Agency & Sons, {time_greeting}!",
                "coral",
            ),
        ] {
            let config = AgentConfig {
                greeting_new_caller: Some(greeting.into()),
                voice: Some(voice.into()),
                ..Default::default()
            };
            let id = create_tenant(&mut admin, &token, email, name, config, number).await;
            out.push(DemoTenant {
                id,
                name,
                number,
                greeting,
            });
        }
        let smith = out.pop().expect("two");
        let peterson = out.pop().expect("two");
        (peterson, smith)
    }

    /// POSTs a form to the gateway signed exactly as Twilio signs it.
    pub async fn twilio_post(&self, path: &str, params: &[(&str, &str)]) -> reqwest::Response {
        self.twilio_post_to(self.gateway.main, path, params).await
    }

    /// [`Mesh::twilio_post`] to the gateway replica at `gateway` (signed for the public URL,
    /// which every replica serves).
    pub async fn twilio_post_to(
        &self,
        gateway: SocketAddr,
        path: &str,
        params: &[(&str, &str)],
    ) -> reqwest::Response {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let url = format!("{}{path}", self.public_base_url);
        let sig = gateway::signature::compute(self.twilio_auth_token.as_bytes(), &url, &owned);
        reqwest::Client::new()
            .post(format!("http://{gateway}{path}"))
            .header("X-Twilio-Signature", sig)
            .form(&owned)
            .send()
            .await
            .expect("gateway answers")
    }

    /// Another gateway replica in front of the same services, with the same public URL,
    /// Twilio Auth Token and keys and its own ports; [`GatewayReplica::stop`] drains it.
    pub async fn start_gateway_replica(&self) -> GatewayReplica {
        let (h, ha) = listeners().await;
        let own = ports(&h, &ha);
        let extra = [("PUBLIC_BASE_URL".to_owned(), self.public_base_url.clone())];
        let peers = [self.tenant, self.memory, self.media];
        let settings = gateway_settings(&extra, own, &peers, &self.twilio_auth_token);
        let edge = gateway::edge_state(&settings, &self.keys.identity(names::GATEWAY))
            .expect("gateway state");
        let (stop, stop_rx) = watch::channel(false);
        let shutdown = async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        };
        GatewayReplica {
            main: own.main,
            stop,
            task: tokio::spawn(gateway::serve(edge, h, ha, DRAIN, shutdown)),
        }
    }

    /// The form parameters of an incoming call from `from` to `to`.
    pub fn voice_params<'a>(
        call_sid: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("CallSid", call_sid),
            ("AccountSid", ACCOUNT_SID),
            ("From", from),
            ("To", to),
            ("CallStatus", "ringing"),
            ("ApiVersion", "2010-04-01"),
            ("Direction", "inbound"),
            ("Caller", from),
            ("Called", to),
        ]
    }
}
