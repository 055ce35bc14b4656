//! The call-routing cache across replicas: two tenant-svc replicas on one PostgreSQL, changes
//! made through one, resolutions through the other. Every change must reach the other replica's
//! answers within a second (they arrive in milliseconds through V11's notifications), and a
//! replica whose listening connection is lost must not answer from memory.

use std::time::{Duration, Instant};

use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::*;
use mesh::auth::with_bearer as auth;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const NUMBER: &str = "+14155550101";
/// How long a change may take to reach the other replica before the test fails.
const PROPAGATION: Duration = Duration::from_secs(1);

struct Mesh {
    db: TestDb,
    keys: DevKeys,
    a: Channel,
    b: Channel,
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Mesh {
    async fn start() -> Mesh {
        let db = TestDb::new().await;
        let keys = DevKeys::generate();
        let mut channels = Vec::new();
        let mut stops = Vec::new();
        for _ in 0..2 {
            let deps = tenant_svc::Deps {
                db: db.db_for_role("tenant_svc").await,
                identity: keys.identity(names::TENANT_SVC),
                legacy: None,
                webhook_allow_insecure: false,
            };
            let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = grpc.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(tenant_svc::serve(
                deps,
                grpc,
                admin,
                Duration::from_secs(1),
                async {
                    let _ = rx.await;
                },
            ));
            stops.push(tx);
            channels.push(
                Channel::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap(),
            );
        }
        Mesh {
            db,
            keys,
            b: channels.pop().unwrap(),
            a: channels.pop().unwrap(),
            _stop: stops,
        }
    }

    fn operator(&self) -> String {
        self.keys
            .identity(names::OPERATOR)
            .minter()
            .mint_service(
                names::TENANT_SVC,
                &[scope::TENANT_ADMIN],
                Duration::from_secs(300),
            )
            .unwrap()
    }

    fn gateway(&self) -> String {
        self.keys
            .identity(names::GATEWAY)
            .minter()
            .mint_service(
                names::TENANT_SVC,
                &[scope::TENANT_RESOLVE],
                Duration::from_secs(300),
            )
            .unwrap()
    }

    fn tenant(&self, customer: i64) -> String {
        self.keys
            .identity(names::TENANT_SVC)
            .minter()
            .mint_tenant(
                mesh::domain::CustomerId::new(customer).unwrap(),
                "test-user",
                &[names::TENANT_SVC],
                &[scope::TENANT_READ, scope::TENANT_WRITE],
                Duration::from_secs(300),
            )
            .unwrap()
    }

    fn admin_a(&self) -> TenantAdminServiceClient<Channel> {
        TenantAdminServiceClient::new(self.a.clone())
    }

    /// ResolveNumber of `number` through replica B.
    async fn resolve_b(&self, number: &str) -> Result<ResolveNumberResponse, tonic::Status> {
        EdgeServiceClient::new(self.b.clone())
            .resolve_number(auth(
                ResolveNumberRequest {
                    called_number: number.into(),
                    account_sid: ACCOUNT.into(),
                    call_sid: "CA0123456789abcdef0123456789abcdef".into(),
                },
                &self.gateway(),
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn create(&self, email: &str, name: &str) -> i64 {
        self.admin_a()
            .create_customer(auth(
                CreateCustomerRequest {
                    email: email.into(),
                    business_name: name.into(),
                    agent_config: Some(AgentConfig {
                        greeting_new_caller: Some(format!("Thanks for calling {name}.")),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                &self.operator(),
            ))
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap()
            .id
    }

    async fn assign(&self, customer: i64, number: &str) {
        self.admin_a()
            .assign_phone_number(auth(
                AssignPhoneNumberRequest {
                    customer_id: customer,
                    number: number.into(),
                    twilio_account_sid: String::new(),
                },
                &self.operator(),
            ))
            .await
            .unwrap();
    }

    /// Proves replica B answers `NUMBER` from memory: with V11's triggers switched off, a
    /// business name changed behind tenant-svc's back is not seen. Waits for B's listener to be
    /// up (the cache is unused until then). Puts the name back afterwards, triggers on.
    async fn b_serves_from_memory(&self) -> bool {
        let admin = self.db.admin_client().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let before = self.resolve_b(NUMBER).await.unwrap();
            let name = before.profile.unwrap().business_name;
            admin
                .batch_execute(&format!(
                    "ALTER TABLE tenant.customers DISABLE TRIGGER routing_changed; \
                     UPDATE tenant.customers SET business_name = business_name || ' (silent)' \
                     WHERE customer_id = {}; \
                     ALTER TABLE tenant.customers ENABLE TRIGGER routing_changed",
                    before.customer_id
                ))
                .await
                .unwrap();
            let after = self.resolve_b(NUMBER).await.unwrap();
            // Back to the real name, through the trigger: B drops the entry.
            admin
                .execute(
                    "UPDATE tenant.customers SET business_name = $1 WHERE customer_id = $2",
                    &[&name, &before.customer_id],
                )
                .await
                .unwrap();
            if after.profile.unwrap().business_name == name {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// Polls `check` through replica B until it holds; returns how long that took, or fails.
async fn within<T>(
    what: &str,
    m: &Mesh,
    check: impl Fn(&Result<ResolveNumberResponse, tonic::Status>) -> Option<T>,
) -> (Duration, T) {
    let start = Instant::now();
    loop {
        let r = m.resolve_b(NUMBER).await;
        if let Some(v) = check(&r) {
            return (start.elapsed(), v);
        }
        assert!(
            start.elapsed() < PROPAGATION,
            "{what}: replica B still answers {r:?} after {PROPAGATION:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn changes_through_one_replica_reach_the_others_answers_at_once() {
    let m = Mesh::start().await;
    let peterson = m
        .create("ops@peterson.example", "Peterson Family Insurance")
        .await;
    let smith = m
        .create("desk@smith.example", "Smith Insurance Agency")
        .await;
    m.assign(peterson, NUMBER).await;
    assert!(
        m.b_serves_from_memory().await,
        "replica B never answered from its routing cache"
    );
    let op = m.operator();

    // Suspension: calls are refused at once on B.
    m.resolve_b(NUMBER).await.unwrap();
    m.admin_a()
        .set_customer_status(auth(
            SetCustomerStatusRequest {
                customer_id: peterson,
                status: CustomerStatus::Suspended as i32,
            },
            &op,
        ))
        .await
        .unwrap();
    let (suspended, ()) = within("suspension", &m, |r| {
        matches!(r, Err(s) if s.code() == Code::FailedPrecondition).then_some(())
    })
    .await;
    m.admin_a()
        .set_customer_status(auth(
            SetCustomerStatusRequest {
                customer_id: peterson,
                status: CustomerStatus::Active as i32,
            },
            &op,
        ))
        .await
        .unwrap();
    within("reactivation", &m, |r| r.is_ok().then_some(())).await;

    // A new greeting, set by the tenant itself through A.
    TenantServiceClient::new(m.a.clone())
        .update_agent_config(auth(
            UpdateAgentConfigRequest {
                config: Some(AgentConfig {
                    greeting_new_caller: Some("Peterson here, {time_greeting}!".into()),
                    ..Default::default()
                }),
                update_mask: None,
            },
            &m.tenant(peterson),
        ))
        .await
        .unwrap();
    let (greeting, ()) = within("new greeting", &m, |r| {
        let p = r.as_ref().ok()?.profile.as_ref()?;
        (p.greeting_new_caller == "Peterson here, {time_greeting}!").then_some(())
    })
    .await;

    // A new platform default that Peterson does not override (the voice).
    let before = m.resolve_b(NUMBER).await.unwrap().profile.unwrap().voice;
    let voice = if before == "marin" { "cedar" } else { "marin" };
    m.admin_a()
        .update_platform_defaults(auth(
            UpdatePlatformDefaultsRequest {
                defaults: Some(PlatformDefaults {
                    voice: voice.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["voice".into()],
                }),
            },
            &op,
        ))
        .await
        .unwrap();
    let (default, ()) = within("new platform default", &m, |r| {
        (r.as_ref().ok()?.profile.as_ref()?.voice == voice).then_some(())
    })
    .await;

    // The number released by Peterson and given to Smith: B routes it to Smith, never to
    // Peterson.
    m.admin_a()
        .release_phone_number(auth(
            ReleasePhoneNumberRequest {
                customer_id: peterson,
                number: NUMBER.into(),
            },
            &op,
        ))
        .await
        .unwrap();
    let (released, ()) = within("release", &m, |r| {
        matches!(r, Err(s) if s.code() == Code::NotFound).then_some(())
    })
    .await;
    m.assign(smith, NUMBER).await;
    let (moved, id) = within("reassignment", &m, |r| {
        r.as_ref().ok().map(|r| r.customer_id)
    })
    .await;
    assert_eq!(id, smith);
    println!(
        "propagation to the other replica: suspension {suspended:?}, greeting {greeting:?}, \
         default {default:?}, release {released:?}, reassignment {moved:?}"
    );
}

#[tokio::test]
async fn a_replica_that_lost_its_listener_reads_the_database_until_it_is_back() {
    let m = Mesh::start().await;
    let peterson = m
        .create("ops@peterson.example", "Peterson Family Insurance")
        .await;
    m.assign(peterson, NUMBER).await;
    assert!(m.b_serves_from_memory().await);
    m.resolve_b(NUMBER).await.unwrap();

    // The listening connections of this test's database go away (a PostgreSQL restart or a
    // network cut looks the same to the replicas).
    let admin = m.db.admin_client().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%tenant_routing%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 2, "one listener per replica");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A change nobody is notified of (triggers off): B must see it, because without its
    // listener it does not answer from memory.
    admin
        .batch_execute(
            "ALTER TABLE tenant.customers DISABLE TRIGGER routing_changed; \
             UPDATE tenant.customers SET status = 'suspended'; \
             ALTER TABLE tenant.customers ENABLE TRIGGER routing_changed",
        )
        .await
        .unwrap();
    let r = m.resolve_b(NUMBER).await;
    assert_eq!(
        r.map(|_| ()).unwrap_err().code(),
        Code::FailedPrecondition,
        "a replica without its listener answered from memory"
    );
    admin
        .batch_execute("UPDATE tenant.customers SET status = 'active'")
        .await
        .unwrap();

    // The listener reconnects by itself (every second) and the cache is used again.
    assert!(
        m.b_serves_from_memory().await,
        "the cache was not used again after the listener came back"
    );
    let back: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%tenant_routing%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(back, 2);
}
