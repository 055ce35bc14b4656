//! Shared test harness: memory-svc on port 0 against a fresh migrated database, real gRPC
//! clients with tokens minted from development keys, and row counting through an admin client.
#![allow(dead_code)] // each test module uses a different part of the harness

use std::net::SocketAddr;
use std::time::Duration;

use mesh::api::memory::export_caller_response::Record;
use mesh::api::memory::memory_admin_service_client::MemoryAdminServiceClient;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::memory::*;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Channel;

/// Every tenant scope memory-svc knows.
pub const ALL_TENANT_SCOPES: &[&str] = &[
    scope::MEMORY_READ,
    scope::MEMORY_WRITE,
    scope::MEMORY_EXPORT,
    scope::MEMORY_ERASE,
];

/// The five caller tables.
pub const TABLES: [&str; 5] = memory_svc::store::TABLES;

/// A running memory-svc.
pub struct Svc {
    pub db: TestDb,
    pub keys: DevKeys,
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Svc {
    pub async fn start() -> Svc {
        Self::start_with(memory_svc::Options::default()).await
    }

    pub async fn start_with(options: memory_svc::Options) -> Svc {
        let db = TestDb::new().await;
        let keys = DevKeys::generate();
        let deps = memory_svc::Deps {
            db: db.db_for_role("memory_svc").await,
            identity: keys.identity(names::MEMORY_SVC),
        };
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap();
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(memory_svc::serve_with(
            deps,
            options,
            mesh::server::Listeners::new(grpc, admin, Duration::from_secs(5)),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
        Svc {
            db,
            keys,
            addr,
            stop,
            task,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to memory-svc")
    }

    pub async fn client(&self) -> MemoryServiceClient<Channel> {
        MemoryServiceClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> MemoryAdminServiceClient<Channel> {
        MemoryAdminServiceClient::new(self.channel().await)
    }

    /// A tenant token for `customer` with every memory scope.
    pub fn tenant(&self, customer: i64) -> String {
        self.tenant_with(customer, ALL_TENANT_SCOPES)
    }

    pub fn tenant_with(&self, customer: i64, scopes: &[&str]) -> String {
        self.keys
            .identity(names::TENANT_SVC)
            .minter()
            .mint_tenant(
                mesh::domain::CustomerId::new(customer).unwrap(),
                "memory-test",
                &[names::MEMORY_SVC],
                scopes,
                Duration::from_secs(300),
            )
            .unwrap()
    }

    /// An operator's service token with `memory:admin`.
    pub fn operator(&self) -> String {
        self.keys
            .identity(names::OPERATOR)
            .minter()
            .mint_service(
                names::MEMORY_SVC,
                &[scope::MEMORY_ADMIN],
                Duration::from_secs(300),
            )
            .unwrap()
    }

    /// tenant-svc's service token with `memory:erase-tenant`, as it fans out a customer's
    /// deletion.
    pub fn tenant_eraser(&self) -> String {
        self.keys
            .identity(names::TENANT_SVC)
            .minter()
            .mint_service(
                names::MEMORY_SVC,
                &[scope::MEMORY_ERASE_TENANT],
                Duration::from_secs(300),
            )
            .unwrap()
    }

    pub async fn admin_sql(&self) -> tokio_postgres::Client {
        self.db.admin_client().await
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let r = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("stops within the drain deadline")
            .expect("no panic");
        r.expect("served without error");
    }
}

/// A request with `authorization: Bearer <token>`.
pub fn req<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Rows of `table` for one tenant (all callers).
pub async fn count(admin: &tokio_postgres::Client, table: &str, customer: i64) -> i64 {
    admin
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE customer_id = $1"),
            &[&customer],
        )
        .await
        .unwrap()
        .get(0)
}

/// Rows of every caller table for one tenant and caller.
pub async fn counts_for(
    admin: &tokio_postgres::Client,
    customer: i64,
    user: &str,
) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for t in TABLES {
        let n: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM {t} WHERE customer_id = $1 AND user_id = $2"),
                &[&customer, &user],
            )
            .await
            .unwrap()
            .get(0);
        out.push((t.to_owned(), n));
    }
    out
}

/// Rows of every memory table (caller tables and the audit log) for one tenant.
pub async fn snapshot(admin: &tokio_postgres::Client, customer: i64) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for t in TABLES.iter().copied().chain(["memory.audit_log"]) {
        out.push((t.to_owned(), count(admin, t, customer).await));
    }
    out
}

/// A full snapshot of one tenant's rows as text (detects changes, not only counts).
pub async fn fingerprint(admin: &tokio_postgres::Client, customer: i64) -> String {
    let mut out = String::new();
    for t in TABLES {
        let rows = admin
            .query(
                &format!(
                    "SELECT coalesce(string_agg(x::text, '|' ORDER BY x::text), '') \
                     FROM {t} x WHERE customer_id = $1"
                ),
                &[&customer],
            )
            .await
            .unwrap();
        let s: String = rows[0].get(0);
        out.push_str(&s);
        out.push('\n');
    }
    out
}

/// A string JSON value.
pub fn text_value(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(s.to_owned())),
    }
}

/// A transcript turn.
pub fn turn(
    speaker: mesh::api::common::Speaker,
    text: &str,
    offset_ms: u32,
) -> mesh::api::common::TranscriptTurn {
    mesh::api::common::TranscriptTurn {
        speaker: speaker as i32,
        text: text.to_owned(),
        offset_ms,
    }
}

/// A CallSid made from a number.
pub fn call_sid(n: u32) -> String {
    format!("CA{n:032x}")
}

/// A memory-svc client.
pub type Client = MemoryServiceClient<Channel>;

/// Asserts that `e` is INVALID_ARGUMENT naming `field` first in its message.
#[track_caller]
pub fn assert_invalid(e: &tonic::Status, field: &str) {
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}: {e:?}");
    assert!(
        e.message().starts_with(&format!("{field}:")),
        "{field}: {}",
        e.message()
    );
}

/// ListMemories of every memory of `user` (first page, default size).
pub fn list_all(user: &str) -> ListMemoriesRequest {
    ListMemoriesRequest {
        user_id: user.into(),
        ..Default::default()
    }
}

/// ListMemories, which must succeed.
pub async fn list(c: &mut Client, token: &str, r: ListMemoriesRequest) -> ListMemoriesResponse {
    c.list_memories(req(r, token)).await.unwrap().into_inner()
}

/// GetEnrichedContext for `user`, which must succeed.
pub async fn context(
    c: &mut Client,
    token: &str,
    user: &str,
    num_summaries: Option<i32>,
) -> GetEnrichedContextResponse {
    let r = GetEnrichedContextRequest {
        user_id: user.into(),
        num_summaries,
    };
    c.get_enriched_context(req(r, token))
        .await
        .unwrap()
        .into_inner()
}

/// GetCallerProfile for `user`, which must exist.
pub async fn profile(c: &mut Client, token: &str, user: &str) -> CallerProfile {
    let r = GetCallerProfileRequest {
        user_id: user.into(),
    };
    c.get_caller_profile(req(r, token))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
}

/// SearchSummaries, which must succeed.
pub async fn search(
    c: &mut Client,
    token: &str,
    user: &str,
    query: &str,
    limit: i32,
) -> Vec<CallSummary> {
    let r = SearchSummariesRequest {
        user_id: user.into(),
        query: query.into(),
        limit,
    };
    c.search_summaries(req(r, token))
        .await
        .unwrap()
        .into_inner()
        .summaries
}

/// EraseCaller for `user`, with its answer.
pub async fn erase(
    c: &mut Client,
    token: &str,
    user: &str,
) -> Result<EraseCallerResponse, tonic::Status> {
    let r = EraseCallerRequest {
        user_id: user.into(),
    };
    c.erase_caller(req(r, token)).await.map(|r| r.into_inner())
}

/// Every record ExportCaller streams for `user`.
pub async fn export_all(c: &mut Client, token: &str, user: &str) -> Vec<Record> {
    let r = ExportCallerRequest {
        user_id: user.into(),
    };
    let mut s = c.export_caller(req(r, token)).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        out.push(m.record.unwrap());
    }
    out
}
