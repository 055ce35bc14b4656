//! The call-routing cache across replicas: two tenant-svc replicas on one PostgreSQL, changes
//! made through one, resolutions through the other. Every change must reach the other replica's
//! answers within a second (they arrive in milliseconds through V11's notifications), and a
//! replica whose listening connection is lost must not answer from memory.

use std::time::{Duration, Instant};

use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{DevKeys, scope};
use mesh::testkit::TestDb;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{self, RW, Replica, auth};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const NUMBER: &str = "+14155550101";
/// How long a change may take to reach the other replica before the test fails.
const PROPAGATION: Duration = Duration::from_secs(1);

struct Mesh {
    db: TestDb,
    keys: DevKeys,
    a: Replica,
    b: Replica,
}

impl Mesh {
    async fn start() -> Mesh {
        let db = TestDb::new().await;
        let keys = DevKeys::generate();
        let a = common::serve(&db, &keys, None, false).await;
        let b = common::serve(&db, &keys, None, false).await;
        Mesh { db, keys, a, b }
    }

    fn operator(&self) -> String {
        common::operator_token(&self.keys, &[scope::TENANT_ADMIN])
    }

    fn gateway(&self) -> String {
        common::gateway_token(&self.keys, &[scope::TENANT_RESOLVE])
    }

    fn tenant(&self, customer: i64) -> String {
        common::tenant_token(&self.keys, customer, RW)
    }

    fn admin_a(&self) -> TenantAdminServiceClient<Channel> {
        TenantAdminServiceClient::new(self.a.channel.clone())
    }

    /// ResolveNumber of `number` through replica B.
    async fn resolve_b(&self, number: &str) -> Result<ResolveNumberResponse, tonic::Status> {
        EdgeServiceClient::new(self.b.channel.clone())
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

    async fn set_status(&self, customer: i64, status: CustomerStatus) {
        let request = SetCustomerStatusRequest {
            customer_id: customer,
            status: status as i32,
        };
        self.admin_a()
            .set_customer_status(auth(request, &self.operator()))
            .await
            .unwrap();
    }

    async fn release(&self, customer: i64, number: &str) {
        let request = ReleasePhoneNumberRequest {
            customer_id: customer,
            number: number.into(),
        };
        self.admin_a()
            .release_phone_number(auth(request, &self.operator()))
            .await
            .unwrap();
    }

    /// The tenant itself sets its greeting for new callers, through A.
    async fn set_greeting(&self, customer: i64, greeting: &str) {
        let request = UpdateAgentConfigRequest {
            config: Some(AgentConfig {
                greeting_new_caller: Some(greeting.into()),
                ..Default::default()
            }),
            update_mask: None,
        };
        TenantServiceClient::new(self.a.channel.clone())
            .update_agent_config(auth(request, &self.tenant(customer)))
            .await
            .unwrap();
    }

    /// The operator sets the platform's default voice, through A.
    async fn set_default_voice(&self, voice: &str) {
        let request = UpdatePlatformDefaultsRequest {
            defaults: Some(PlatformDefaults {
                voice: voice.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["voice".into()],
            }),
        };
        self.admin_a()
            .update_platform_defaults(auth(request, &self.operator()))
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

    // Suspension: calls are refused at once on B.
    m.resolve_b(NUMBER).await.unwrap();
    m.set_status(peterson, CustomerStatus::Suspended).await;
    let (suspended, ()) = within("suspension", &m, |r| {
        matches!(r, Err(s) if s.code() == Code::FailedPrecondition).then_some(())
    })
    .await;
    m.set_status(peterson, CustomerStatus::Active).await;
    within("reactivation", &m, |r| r.is_ok().then_some(())).await;

    // A new greeting, set by the tenant itself through A.
    m.set_greeting(peterson, "Peterson here, {time_greeting}!")
        .await;
    let (greeting, ()) = within("new greeting", &m, |r| {
        let p = r.as_ref().ok()?.profile.as_ref()?;
        (p.greeting_new_caller == "Peterson here, {time_greeting}!").then_some(())
    })
    .await;

    // A new platform default that Peterson does not override (the voice).
    let before = m.resolve_b(NUMBER).await.unwrap().profile.unwrap().voice;
    let voice = if before == "marin" { "cedar" } else { "marin" };
    m.set_default_voice(voice).await;
    let (default, ()) = within("new platform default", &m, |r| {
        (r.as_ref().ok()?.profile.as_ref()?.voice == voice).then_some(())
    })
    .await;

    // The number released by Peterson and given to Smith: B routes it to Smith, never to
    // Peterson.
    m.release(peterson, NUMBER).await;
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
