//! Tenant isolation under arbitrary operations (issue 9, "Hostile input and isolation"): a
//! property-based test against ONE real mesh (tenant-svc, memory-svc, media-svc and the gateway
//! on loopback sockets, PostgreSQL with forced row-level security). Four tenants are seeded; each
//! generated case runs a random sequence of operations, each by a random tenant, on a small pool
//! of caller numbers that every tenant shares (so the same caller exists in several tenants).
//!
//! Every tenant writes its own marker word into everything it stores (memories, profile names and
//! preferences, transcripts and so summaries, agent names, business names). A model in the test
//! says what each tenant should have. After every step:
//! - the answer holds only the acting tenant's data: `customer_id` fields name the token's tenant
//!   and no text carries another tenant's marker;
//! - reading back (memories, profile, calls of the caller the step touched) gives the model;
//! - row counts per tenant and table, read with the admin client (row-level security bypassed),
//!   equal the model for every tenant, no row belongs to an unknown tenant, and every other
//!   tenant's rows are byte-for-byte unchanged (a digest per tenant and table).
//!
//! After the last step of a case, every tenant's exports of every caller, its whole call list and
//! its customer record with configuration history equal the model.
//!
//! Hostile variants are generated too: another tenant's memory ids and CallSids (NOT_FOUND like an
//! unknown id, or "unused" like a fresh key), `x-customer-id` / `customer_id` metadata naming
//! another tenant, the legacy REST `customer_id` body field, admin RPCs that take a customer id
//! called with a tenant token, calls registered to another tenant's number. The tenant-facing
//! protos carry no customer id in any request body, so those are the only places one can be put.
//!
//! Size: `PROPTEST_CASES` cases (default 24) of 1-12 steps; `ISOLATION_SEED=<n>` replays a run.
//! The seed, cases, steps and wall time are printed (`--nocapture` shows them on success).
//! A failure shrinks to a short sequence of steps, printed with the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::{ACCOUNT_SID, Mesh, with_token};
use mesh::api::common::{Speaker, TranscriptTurn};
use mesh::api::media as media_pb;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::media::media_admin_service_client::MediaAdminServiceClient;
use mesh::api::memory as mem_pb;
use mesh::api::memory::memory_admin_service_client::MemoryAdminServiceClient;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant as tenant_pb;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::domain::CustomerId;
use mesh::identity::{names, scope};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::{Value as Json, json};
use tonic::transport::Channel;
use tonic::{Code, Status};

type R<T = ()> = Result<T, TestCaseError>;

/// One marker word per tenant; none is a substring of another, of a UUID or of a CallSid.
const MARKERS: [&str; 4] = ["qzalphamark", "qzbravomark", "qzcharliemark", "qzdeltamark"];
const TENANTS: usize = MARKERS.len();
const NUMBERS: [&str; TENANTS] = [
    "+14155550111",
    "+14155550112",
    "+14155550113",
    "+14155550114",
];
/// Callers every tenant shares.
const CALLERS: [&str; 3] = ["+15551230001", "+15551230002", "+447700900123"];
/// Words of transcripts and memories (none of them makes the summarizer learn a name).
const WORDS: [&str; 12] = [
    "claim", "policy", "renewal", "premium", "garage", "window", "invoice", "thanks", "great",
    "urgent", "schedule", "hail",
];
/// Names a caller may offer ("call me Alice"), which RecordCall learns into an empty profile name.
const NAMES: [&str; 3] = ["Alice", "Bruno", "Chiara"];
const DEFAULT_CASES: u32 = 24;
const MAX_STEPS: usize = 12;
/// GetEnrichedContext returns at most this many memories.
const CONTEXT_MEMORIES: usize = 20;

// ------------------------------------------------------------------------------------------
// Generated operations
// ------------------------------------------------------------------------------------------

/// A seeded tenant, by index.
#[derive(Clone, Copy, PartialEq, Eq)]
struct T(usize);

impl fmt::Debug for T {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{}", self.0)
    }
}

/// A caller of the shared pool, by index.
#[derive(Clone, Copy, PartialEq, Eq)]
struct C(usize);

impl fmt::Debug for C {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C{}", self.0)
    }
}

/// Which memory id or CallSid an operation names, resolved against the model when it runs.
#[derive(Debug, Clone)]
enum Pick {
    /// The n-th (modulo) of the acting tenant's own (a fresh one when it has none).
    Mine(usize),
    /// The n-th (modulo) of those only other tenants have (a fresh one when there are none).
    Theirs(usize),
    /// A fresh, never used one.
    Fresh,
}

/// What SearchSummaries looks for.
#[derive(Debug, Clone)]
enum Query {
    /// The acting tenant's marker: every summary of the caller matches.
    OwnMarker,
    /// Another tenant's marker (its summaries of the same caller must stay invisible).
    MarkerOf(T),
    /// A word that may or may not occur.
    Word(&'static str),
}

/// Admin RPCs whose body names a customer, called with a tenant token.
#[derive(Debug, Clone, Copy)]
enum AdminRpc {
    MemoryEraseTenant,
    MediaEraseTenant,
    GetCustomer,
    IssueTenantToken,
}

#[derive(Debug, Clone)]
enum Op {
    StoreMemory {
        caller: C,
        kind: mem_pb::MemoryType,
        words: Vec<&'static str>,
    },
    ListMemories {
        caller: C,
        page_size: i32,
    },
    DeleteMemory {
        target: Pick,
    },
    UpdateProfile {
        caller: C,
        name: Option<&'static str>,
        level: Option<u8>,
    },
    GetProfile {
        caller: C,
    },
    RecordCall {
        caller: C,
        sid: Pick,
        words: Vec<&'static str>,
        offers_name: Option<&'static str>,
    },
    ExportCaller {
        caller: C,
    },
    EraseCaller {
        caller: C,
    },
    EnrichedContext {
        caller: C,
        num_summaries: Option<i32>,
    },
    SearchSummaries {
        caller: C,
        query: Query,
    },
    UpdateAgentConfig {
        n: u8,
    },
    GetMyCustomer,
    /// media-svc RegisterCall from `caller` (None: anonymous) to tenant `to`'s number.
    RegisterCall {
        caller: Option<C>,
        to: T,
        sid: Pick,
    },
    ListCalls {
        caller: Option<C>,
        page_size: i32,
    },
    GetCall {
        sid: Pick,
    },
    MediaExportCaller {
        caller: C,
    },
    MediaEraseCaller {
        caller: C,
    },
    /// Gateway `POST /memory/store` with the acting tenant's legacy token and `claims`' id in
    /// the body's `customer_id`.
    LegacyStore {
        caller: C,
        claims: T,
        words: Vec<&'static str>,
    },
    LegacyRetrieve {
        caller: C,
        claims: T,
    },
    LegacyEnriched {
        caller: C,
        claims: T,
    },
    AdminWithTenantToken {
        rpc: AdminRpc,
        victim: T,
    },
}

impl Op {
    /// The caller a step touches, for the read-back after it.
    fn caller(&self) -> Option<usize> {
        match self {
            Op::StoreMemory { caller, .. }
            | Op::ListMemories { caller, .. }
            | Op::UpdateProfile { caller, .. }
            | Op::GetProfile { caller }
            | Op::RecordCall { caller, .. }
            | Op::ExportCaller { caller }
            | Op::EraseCaller { caller }
            | Op::EnrichedContext { caller, .. }
            | Op::SearchSummaries { caller, .. }
            | Op::MediaExportCaller { caller }
            | Op::MediaEraseCaller { caller }
            | Op::LegacyStore { caller, .. }
            | Op::LegacyRetrieve { caller, .. }
            | Op::LegacyEnriched { caller, .. } => Some(caller.0),
            Op::RegisterCall { caller, .. } | Op::ListCalls { caller, .. } => caller.map(|c| c.0),
            Op::DeleteMemory { .. }
            | Op::UpdateAgentConfig { .. }
            | Op::GetMyCustomer
            | Op::GetCall { .. }
            | Op::AdminWithTenantToken { .. } => None,
        }
    }
}

/// One step: tenant `by` runs `op`; `spoof` adds metadata naming another tenant.
#[derive(Debug, Clone)]
struct Step {
    by: T,
    spoof: Option<T>,
    op: Op,
}

fn tenant() -> impl Strategy<Value = T> + Clone {
    (0..TENANTS).prop_map(T)
}

fn caller() -> impl Strategy<Value = C> + Clone {
    (0..CALLERS.len()).prop_map(C)
}

fn words() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(&WORDS[..]), 1..4)
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        3 => (0..8usize).prop_map(Pick::Mine),
        3 => (0..8usize).prop_map(Pick::Theirs),
        1 => Just(Pick::Fresh),
    ]
}

fn page_size() -> impl Strategy<Value = i32> {
    prop_oneof![Just(0), 1..=3i32]
}

fn query() -> impl Strategy<Value = Query> {
    prop_oneof![
        Just(Query::OwnMarker),
        tenant().prop_map(Query::MarkerOf),
        prop::sample::select(&WORDS[..]).prop_map(Query::Word),
    ]
}

fn admin_rpc() -> impl Strategy<Value = AdminRpc> {
    prop::sample::select(vec![
        AdminRpc::MemoryEraseTenant,
        AdminRpc::MediaEraseTenant,
        AdminRpc::GetCustomer,
        AdminRpc::IssueTenantToken,
    ])
}

fn op() -> impl Strategy<Value = Op> {
    use mem_pb::MemoryType as K;
    let kind = prop::sample::select(vec![K::Person, K::Preference, K::Fact, K::Task]);
    prop_oneof![
        4 => (caller(), kind, words())
            .prop_map(|(caller, kind, words)| Op::StoreMemory { caller, kind, words }),
        2 => (caller(), page_size())
            .prop_map(|(caller, page_size)| Op::ListMemories { caller, page_size }),
        2 => pick().prop_map(|target| Op::DeleteMemory { target }),
        2 => (
            caller(),
            prop::option::of(prop::sample::select(&WORDS[..])),
            prop::option::of(0..10u8),
        )
            .prop_map(|(caller, name, level)| Op::UpdateProfile { caller, name, level }),
        1 => caller().prop_map(|caller| Op::GetProfile { caller }),
        4 => (
            caller(),
            pick(),
            words(),
            prop::option::weighted(0.3, prop::sample::select(&NAMES[..])),
        )
            .prop_map(|(caller, sid, words, offers_name)| Op::RecordCall {
                caller,
                sid,
                words,
                offers_name,
            }),
        1 => caller().prop_map(|caller| Op::ExportCaller { caller }),
        2 => caller().prop_map(|caller| Op::EraseCaller { caller }),
        2 => (caller(), prop::option::of(0..=20i32)).prop_map(|(caller, num_summaries)| {
            Op::EnrichedContext { caller, num_summaries }
        }),
        2 => (caller(), query()).prop_map(|(caller, query)| Op::SearchSummaries { caller, query }),
        1 => (0..4u8).prop_map(|n| Op::UpdateAgentConfig { n }),
        1 => Just(Op::GetMyCustomer),
        3 => (prop::option::weighted(0.85, caller()), tenant(), pick())
            .prop_map(|(caller, to, sid)| Op::RegisterCall { caller, to, sid }),
        1 => (prop::option::of(caller()), page_size())
            .prop_map(|(caller, page_size)| Op::ListCalls { caller, page_size }),
        2 => pick().prop_map(|sid| Op::GetCall { sid }),
        1 => caller().prop_map(|caller| Op::MediaExportCaller { caller }),
        1 => caller().prop_map(|caller| Op::MediaEraseCaller { caller }),
        1 => (caller(), tenant(), words())
            .prop_map(|(caller, claims, words)| Op::LegacyStore { caller, claims, words }),
        1 => (caller(), tenant()).prop_map(|(caller, claims)| Op::LegacyRetrieve { caller, claims }),
        1 => (caller(), tenant()).prop_map(|(caller, claims)| Op::LegacyEnriched { caller, claims }),
        1 => (admin_rpc(), tenant())
            .prop_map(|(rpc, victim)| Op::AdminWithTenantToken { rpc, victim }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (tenant(), prop::option::weighted(0.3, tenant()), op()).prop_map(|(by, spoof, op)| Step {
        by,
        spoof: spoof.filter(|s| *s != by),
        op,
    })
}

// ------------------------------------------------------------------------------------------
// The model
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Profile {
    name: String,
    level: Option<u8>,
    calls: i32,
}

/// What one tenant should have.
#[derive(Debug, Clone, Default)]
struct Model {
    /// Memory id -> (caller, value).
    memories: BTreeMap<String, (usize, Json)>,
    profiles: BTreeMap<usize, Profile>,
    /// Recorded CallSid (memory-svc) -> caller.
    summaries: BTreeMap<String, usize>,
    /// Registered CallSid (media-svc) -> (caller, index of the tenant whose number was called).
    calls: BTreeMap<String, (Option<usize>, usize)>,
    /// Export and erase audit rows.
    audits: i64,
    agent_name: Option<String>,
    /// Configuration history rows.
    history: i64,
}

impl Model {
    fn memories_of(&self, c: usize) -> BTreeMap<String, Json> {
        self.memories
            .iter()
            .filter(|(_, (mc, _))| *mc == c)
            .map(|(id, (_, v))| (id.clone(), v.clone()))
            .collect()
    }

    fn summaries_of(&self, c: usize) -> BTreeSet<String> {
        self.summaries
            .iter()
            .filter(|(_, sc)| **sc == c)
            .map(|(sid, _)| sid.clone())
            .collect()
    }

    /// Calls as ListCalls shows them: CallSid -> (caller, called).
    fn calls_of(&self, c: Option<usize>) -> BTreeMap<String, (String, String)> {
        self.calls
            .iter()
            .filter(|(_, (cc, _))| c.is_none() || *cc == c)
            .map(|(sid, (cc, to))| (sid.clone(), (caller_text(*cc), NUMBERS[*to].to_owned())))
            .collect()
    }

    /// Rows this tenant should have per table.
    fn expected_rows(&self) -> BTreeMap<&'static str, i64> {
        let averages: BTreeSet<usize> = self.summaries.values().copied().collect();
        let n = |x: usize| x as i64;
        BTreeMap::from([
            ("memory.memories", n(self.memories.len())),
            ("memory.caller_profiles", n(self.profiles.len())),
            ("memory.call_summaries", n(self.summaries.len())),
            ("memory.personality_metrics", n(self.summaries.len())),
            ("memory.personality_averages", n(averages.len())),
            ("memory.audit_log", self.audits),
            ("media.calls", n(self.calls.len())),
            ("media.transcript_turns", 0),
            ("media.outbox", 0),
            ("media.usage_monthly", 0),
            ("tenant.customers", 1),
            ("tenant.phone_numbers", 1),
            ("tenant.customer_configurations", self.history),
        ])
    }
}

fn caller_text(c: Option<usize>) -> String {
    c.map(|c| CALLERS[c].to_owned()).unwrap_or_default()
}

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

fn ok<T>(what: &str, r: Result<tonic::Response<T>, Status>) -> R<T> {
    r.map(tonic::Response::into_inner).map_err(|s| {
        fail(format!(
            "{what}: unexpected {:?}: {}",
            s.code(),
            s.message()
        ))
    })
}

/// A protobuf `Value` as JSON (numbers as floats, as protobuf carries them).
fn json_of(v: &prost_types::Value) -> Json {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number)
        }
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(json_of).collect()),
        Some(Kind::StructValue(s)) => struct_json(s),
    }
}

fn struct_json(s: &prost_types::Struct) -> Json {
    Json::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), json_of(v)))
            .collect(),
    )
}

fn value_json(v: Option<&prost_types::Value>) -> Json {
    v.map_or(Json::Null, json_of)
}

fn string_value(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(s.to_owned())),
    }
}

/// The preferences a profile update with `level` stores for tenant `t`.
fn preferences(t: usize, level: u8) -> prost_types::Struct {
    use prost_types::value::Kind;
    prost_types::Struct {
        fields: BTreeMap::from([
            ("marker".to_owned(), string_value(MARKERS[t])),
            (
                "level".to_owned(),
                prost_types::Value {
                    kind: Some(Kind::NumberValue(f64::from(level))),
                },
            ),
        ]),
    }
}

fn fresh_sid() -> String {
    format!("CA{}", uuid::Uuid::new_v4().simple())
}

fn turn(speaker: Speaker, text: &str, offset_ms: u32) -> TranscriptTurn {
    TranscriptTurn {
        speaker: speaker as i32,
        text: text.to_owned(),
        offset_ms,
    }
}

/// Resolves a [`Pick`] against the acting tenant's keys and the keys only others have.
fn resolve(
    pick: &Pick,
    mine: &[String],
    theirs: &[String],
    fresh: impl FnOnce() -> String,
) -> String {
    match pick {
        Pick::Mine(k) if !mine.is_empty() => mine[k % mine.len()].clone(),
        Pick::Theirs(k) if !theirs.is_empty() => theirs[k % theirs.len()].clone(),
        _ => fresh(),
    }
}

// ------------------------------------------------------------------------------------------
// The mesh, shared by every case
// ------------------------------------------------------------------------------------------

struct Tenant {
    id: i64,
}

/// Row count and digest per (customer_id, table).
type Snapshot = BTreeMap<(i64, String), (i64, String)>;

struct World {
    mesh: Mesh,
    admin: tokio_postgres::Client,
    tenants: Vec<Tenant>,
    /// Every table with a `customer_id` in the tenant, memory and media schemas.
    tables: Vec<String>,
    snapshot_sql: String,
    memory: MemoryServiceClient<Channel>,
    memory_admin: MemoryAdminServiceClient<Channel>,
    media: CallServiceClient<Channel>,
    media_admin: MediaAdminServiceClient<Channel>,
    tenant: TenantServiceClient<Channel>,
    tenant_admin: TenantAdminServiceClient<Channel>,
    http: reqwest::Client,
    legacy: mesh::auth::LegacyVerifier,
    cases: AtomicUsize,
    steps: AtomicUsize,
    /// Steps that named another tenant's memory id or CallSid, or another tenant's id.
    hostile: AtomicUsize,
}

/// Every base table with a `customer_id` column, and one query that digests each tenant's rows
/// of each of them.
async fn tenant_tables(admin: &tokio_postgres::Client) -> (Vec<String>, String) {
    let tables: Vec<String> = admin
        .query(
            "SELECT c.table_schema || '.' || c.table_name \
             FROM information_schema.columns c \
             JOIN information_schema.tables t USING (table_schema, table_name) \
             WHERE c.column_name = 'customer_id' AND t.table_type = 'BASE TABLE' \
               AND c.table_schema IN ('tenant', 'memory', 'media') \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("catalog")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        tables.iter().any(|t| t == "memory.memories") && tables.iter().any(|t| t == "media.calls"),
        "{tables:?}"
    );
    let snapshot_sql = tables
        .iter()
        .map(|t| {
            format!(
                "SELECT '{t}'::text, customer_id::bigint, count(*), \
                 md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {t} x GROUP BY customer_id"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    (tables, snapshot_sql)
}

impl World {
    async fn start() -> World {
        let mesh = Mesh::start().await;
        let admin = mesh.db.admin_client().await;
        let operator =
            mesh.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
        let mut tenant_admin = TenantAdminServiceClient::new(mesh.channel(mesh.tenant).await);
        let mut tenants = Vec::new();
        for (i, marker) in MARKERS.iter().enumerate() {
            let c = tenant_admin
                .create_customer(with_token(
                    tenant_pb::CreateCustomerRequest {
                        email: format!("isolation-{i}@tenants.example"),
                        business_name: format!("Isolation {marker} Agency"),
                        ..Default::default()
                    },
                    &operator,
                ))
                .await
                .expect("create tenant")
                .into_inner()
                .customer
                .expect("customer");
            tenant_admin
                .assign_phone_number(with_token(
                    tenant_pb::AssignPhoneNumberRequest {
                        customer_id: c.id,
                        number: NUMBERS[i].into(),
                        twilio_account_sid: String::new(),
                    },
                    &operator,
                ))
                .await
                .expect("assign number");
            tenants.push(Tenant { id: c.id });
        }
        let (tables, snapshot_sql) = tenant_tables(&admin).await;
        let legacy = mesh::auth::LegacyVerifier::new(&mesh.legacy_secret).expect("legacy secret");
        World {
            admin,
            tenants,
            tables,
            snapshot_sql,
            memory: MemoryServiceClient::new(mesh.channel(mesh.memory).await),
            memory_admin: MemoryAdminServiceClient::new(mesh.channel(mesh.memory).await),
            media: CallServiceClient::new(mesh.channel(mesh.media).await),
            media_admin: MediaAdminServiceClient::new(mesh.channel(mesh.media).await),
            tenant: TenantServiceClient::new(mesh.channel(mesh.tenant).await),
            tenant_admin,
            http: reqwest::Client::new(),
            legacy,
            mesh,
            cases: AtomicUsize::new(0),
            steps: AtomicUsize::new(0),
            hostile: AtomicUsize::new(0),
        }
    }

    async fn snapshot(&self) -> R<Snapshot> {
        let rows = self
            .admin
            .query(&self.snapshot_sql, &[])
            .await
            .map_err(|e| fail(format!("snapshot: {e}")))?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(1), r.get(0)), (r.get(2), r.get(3))))
            .collect())
    }

    /// Empties the memory and media tables (as the superuser), so each case starts from no
    /// caller data; tenants, their numbers and configuration history stay.
    async fn reset(&self) -> R {
        let data: Vec<&str> = self
            .tables
            .iter()
            .map(String::as_str)
            .filter(|t| t.starts_with("memory.") || t.starts_with("media."))
            .collect();
        self.admin
            .batch_execute(&format!("TRUNCATE {}", data.join(", ")))
            .await
            .map_err(|e| fail(format!("reset: {e}")))
    }

    async fn run_case(&self, steps: &[Step]) -> R {
        self.cases.fetch_add(1, Ordering::Relaxed);
        self.reset().await?;
        let mut case = Case::new(self).await?;
        let mut before = self.snapshot().await?;
        for (i, step) in steps.iter().enumerate() {
            self.steps.fetch_add(1, Ordering::Relaxed);
            let at = |e: TestCaseError| fail(format!("step {i} {step:?}: {e}"));
            case.run(step).await.map_err(at)?;
            let after = self.snapshot().await?;
            case.check_rows(step, &before, &after).map_err(at)?;
            case.read_back(step).await.map_err(at)?;
            before = after;
        }
        case.verify_everything()
            .await
            .map_err(|e| fail(format!("after the last step: {e}")))
    }
}

// ------------------------------------------------------------------------------------------
// One case
// ------------------------------------------------------------------------------------------

struct Case<'w> {
    w: &'w World,
    tokens: Vec<String>,
    legacy_tokens: Vec<String>,
    model: Vec<Model>,
    memory: MemoryServiceClient<Channel>,
    memory_admin: MemoryAdminServiceClient<Channel>,
    media: CallServiceClient<Channel>,
    media_admin: MediaAdminServiceClient<Channel>,
    tenant: TenantServiceClient<Channel>,
    tenant_admin: TenantAdminServiceClient<Channel>,
}

impl<'w> Case<'w> {
    async fn new(w: &'w World) -> R<Case<'w>> {
        let mut tokens = Vec::new();
        let mut legacy_tokens = Vec::new();
        let mut model = Vec::new();
        for t in &w.tenants {
            tokens.push(w.mesh.tenant_token(t.id, scope::TENANT_SCOPES));
            legacy_tokens.push(w.legacy.mint_for_tests(
                CustomerId::new(t.id).expect("positive id"),
                Duration::from_secs(600),
            ));
            // The tenant part is not reset between cases: start from what is stored.
            let row = w
                .admin
                .query_one(
                    "SELECT agent_name, (SELECT count(*) FROM tenant.customer_configurations h \
                         WHERE h.customer_id = c.customer_id) \
                     FROM tenant.customers c WHERE customer_id = $1",
                    &[&t.id],
                )
                .await
                .map_err(|e| fail(format!("tenant row: {e}")))?;
            model.push(Model {
                agent_name: row.get(0),
                history: row.get(1),
                ..Model::default()
            });
        }
        Ok(Case {
            w,
            tokens,
            legacy_tokens,
            model,
            memory: w.memory.clone(),
            memory_admin: w.memory_admin.clone(),
            media: w.media.clone(),
            media_admin: w.media_admin.clone(),
            tenant: w.tenant.clone(),
            tenant_admin: w.tenant_admin.clone(),
        })
    }

    fn id(&self, t: usize) -> i64 {
        self.w.tenants[t].id
    }

    /// A request with tenant `t`'s token, plus metadata naming `spoof` when given.
    fn req<M>(&self, t: usize, spoof: Option<T>, message: M) -> tonic::Request<M> {
        let mut r = with_token(message, &self.tokens[t]);
        if let Some(v) = spoof {
            let id: tonic::metadata::AsciiMetadataValue =
                self.id(v.0).to_string().parse().expect("digits");
            r.metadata_mut().insert("x-customer-id", id.clone());
            r.metadata_mut().insert("customer_id", id);
        }
        r
    }

    /// Fails when `text` carries another tenant's marker.
    fn only_own(&self, t: usize, what: &str, text: &str) -> R {
        for (j, marker) in MARKERS.iter().enumerate() {
            if j != t && text.contains(marker) {
                return Err(fail(format!(
                    "{what} answered T{t} with T{j}'s data ({marker}): {text}"
                )));
            }
        }
        Ok(())
    }

    fn text(&self, t: usize, words: &[&str]) -> String {
        format!("{} {}", MARKERS[t], words.join(" "))
    }

    /// Keys only other tenants have (`keys` picks them from a model).
    fn theirs(&self, t: usize, keys: impl Fn(&Model) -> Vec<String>) -> Vec<String> {
        let mine: BTreeSet<String> = keys(&self.model[t]).into_iter().collect();
        let mut out = BTreeSet::new();
        for (j, m) in self.model.iter().enumerate() {
            if j != t {
                out.extend(keys(m).into_iter().filter(|k| !mine.contains(k)));
            }
        }
        out.into_iter().collect()
    }

    /// [`resolve`], counting the picks that name another tenant's key.
    fn resolve(
        &self,
        pick: &Pick,
        mine: &[String],
        theirs: &[String],
        fresh: impl FnOnce() -> String,
    ) -> String {
        let key = resolve(pick, mine, theirs, fresh);
        if theirs.contains(&key) {
            self.w.hostile.fetch_add(1, Ordering::Relaxed);
        }
        key
    }

    async fn run(&mut self, s: &Step) -> R {
        let t = s.by.0;
        let names_other = match &s.op {
            Op::LegacyStore { claims, .. }
            | Op::LegacyRetrieve { claims, .. }
            | Op::LegacyEnriched { claims, .. } => claims.0 != t,
            Op::AdminWithTenantToken { .. } => true,
            Op::RegisterCall { to, .. } => to.0 != t,
            _ => false,
        };
        if s.spoof.is_some() || names_other {
            self.w.hostile.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.id(t);
        let sp = s.spoof;
        match &s.op {
            Op::StoreMemory { .. } => self.store_memory(t, id, sp, &s.op).await?,
            Op::ListMemories { .. } => self.list_memories(t, sp, &s.op).await?,
            Op::DeleteMemory { .. } => self.delete_memory(t, sp, &s.op).await?,
            Op::UpdateProfile { .. } => self.update_profile(t, sp, &s.op).await?,
            Op::GetProfile { caller } => self.check_profile_rpc(t, sp, caller.0).await?,
            Op::RecordCall { .. } => self.record_call(t, sp, &s.op).await?,
            Op::ExportCaller { .. } => self.export_caller(t, sp, &s.op).await?,
            Op::EraseCaller { .. } => self.erase_caller(t, sp, &s.op).await?,
            Op::EnrichedContext { .. } => self.enriched_context(t, id, sp, &s.op).await?,
            Op::SearchSummaries { .. } => self.search_summaries(t, sp, &s.op).await?,
            Op::UpdateAgentConfig { .. } => self.update_agent_config(t, sp, &s.op).await?,
            Op::GetMyCustomer => self.check_my_customer(t, sp).await?,
            Op::RegisterCall { .. } => self.register_call(t, sp, &s.op).await?,
            Op::ListCalls { .. } => self.list_calls(t, sp, &s.op).await?,
            Op::GetCall { .. } => self.get_call(t, sp, &s.op).await?,
            Op::MediaExportCaller { caller } => self.check_media_export(t, sp, caller.0).await?,
            Op::MediaEraseCaller { .. } => self.media_erase_caller(t, sp, &s.op).await?,
            Op::LegacyStore { .. } => self.legacy_store(t, id, &s.op).await?,
            Op::LegacyRetrieve { .. } => self.legacy_retrieve(t, id, &s.op).await?,
            Op::LegacyEnriched { .. } => self.legacy_enriched(t, id, &s.op).await?,
            Op::AdminWithTenantToken { .. } => self.admin_with_tenant_token(t, sp, &s.op).await?,
        }
        Ok(())
    }

    async fn store_memory(&mut self, t: usize, id: i64, sp: Option<T>, op: &Op) -> R {
        let Op::StoreMemory {
            caller,
            kind,
            words,
        } = op
        else {
            unreachable!("run dispatches by variant")
        };
        let text = self.text(t, words);
        let rq = self.req(
            t,
            sp,
            mem_pb::StoreMemoryRequest {
                user_id: CALLERS[caller.0].into(),
                r#type: *kind as i32,
                key: "note".into(),
                value: Some(string_value(&text)),
                scope: mem_pb::MemoryScope::User as i32,
                source: "isolation-test".into(),
                ttl_days: 30,
            },
        );
        let r = ok("StoreMemory", self.memory.store_memory(rq).await)?;
        self.only_own(t, "StoreMemory", &format!("{r:?}"))?;
        prop_assert_eq!(
            r.customer_id,
            id,
            "the answer names another customer than the token's (T{})",
            t
        );
        let m = r.memory.ok_or_else(|| fail("StoreMemory: no memory"))?;
        prop_assert_eq!(&m.user_id, CALLERS[caller.0]);
        let v = value_json(m.value.as_ref());
        prop_assert_eq!(&v, &Json::String(text));
        self.model[t].memories.insert(m.id, (caller.0, v));
        Ok(())
    }
    async fn list_memories(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::ListMemories { caller, page_size } = op else {
            unreachable!("run dispatches by variant")
        };
        self.check_memories(t, sp, caller.0, *page_size).await?;
        Ok(())
    }
    async fn delete_memory(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::DeleteMemory { target } = op else {
            unreachable!("run dispatches by variant")
        };
        let mine: Vec<String> = self.model[t].memories.keys().cloned().collect();
        let theirs = self.theirs(t, |m| m.memories.keys().cloned().collect());
        let fresh = || uuid::Uuid::new_v4().to_string();
        let memory_id = self.resolve(target, &mine, &theirs, fresh);
        let rq = self.req(
            t,
            sp,
            mem_pb::DeleteMemoryRequest {
                memory_id: memory_id.clone(),
            },
        );
        let r = self.memory.delete_memory(rq).await;
        if self.model[t].memories.remove(&memory_id).is_some() {
            ok("DeleteMemory", r)?;
        } else {
            let e = match r {
                Ok(_) => {
                    return Err(fail(format!("deleted memory {memory_id} it does not own")));
                }
                Err(e) => e,
            };
            self.same_as_unknown_memory(t, &e).await?;
        }
        Ok(())
    }
    async fn update_profile(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::UpdateProfile {
            caller,
            name,
            level,
        } = op
        else {
            unreachable!("run dispatches by variant")
        };
        let c = caller.0;
        let mut profile = mem_pb::CallerProfile::default();
        let mut paths = Vec::new();
        if let Some(w) = name {
            profile.preferred_name = format!("{} {w}", MARKERS[t]);
            paths.push("preferred_name".to_owned());
        }
        if let Some(l) = level {
            profile.preferences = Some(preferences(t, *l));
            paths.push("preferences".to_owned());
        }
        let nothing = paths.is_empty();
        let rq = self.req(
            t,
            sp,
            mem_pb::UpdateCallerProfileRequest {
                user_id: CALLERS[c].into(),
                profile: Some(profile.clone()),
                update_mask: Some(prost_types::FieldMask { paths }),
            },
        );
        let r = self.memory.update_caller_profile(rq).await;
        if nothing {
            // Refused; the row checks after the step prove nothing was written.
            let e = r
                .err()
                .ok_or_else(|| fail("an empty profile update was accepted"))?;
            prop_assert_eq!(e.code(), Code::InvalidArgument);
            return Ok(());
        }
        let r = ok("UpdateCallerProfile", r)?;
        let p = self.model[t].profiles.entry(c).or_default();
        if name.is_some() {
            p.name = profile.preferred_name;
        }
        if level.is_some() {
            p.level = *level;
        }
        let got = r
            .profile
            .ok_or_else(|| fail("UpdateCallerProfile: no profile"))?;
        self.check_profile(t, c, &got)?;
        Ok(())
    }
    async fn record_call(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::RecordCall {
            caller,
            sid,
            words,
            offers_name,
        } = op
        else {
            unreachable!("run dispatches by variant")
        };
        let c = caller.0;
        let mine: Vec<String> = self.model[t].summaries.keys().cloned().collect();
        let theirs = self.theirs(t, |m| m.summaries.keys().cloned().collect());
        let call_sid = self.resolve(sid, &mine, &theirs, fresh_sid);
        let text = self.text(t, words);
        let mut turns = vec![
            turn(Speaker::Agent, "Hello, how can I help?", 0),
            turn(Speaker::Caller, &text, 1500),
        ];
        if let Some(n) = offers_name {
            turns.push(turn(Speaker::Caller, &format!("Please call me {n}"), 4000));
        }
        let rq = self.req(
            t,
            sp,
            mem_pb::RecordCallRequest {
                call_sid: call_sid.clone(),
                user_id: CALLERS[c].into(),
                call_time: None,
                duration_seconds: 42,
                turns,
                transferred: false,
            },
        );
        let r = ok("RecordCall", self.memory.record_call(rq).await)?;
        self.only_own(t, "RecordCall", &format!("{r:?}"))?;
        let summary = r.summary.ok_or_else(|| fail("RecordCall: no summary"))?;
        prop_assert_eq!(&summary.call_sid, &call_sid);
        prop_assert!(summary.summary.contains(MARKERS[t]), "{summary:?}");
        let m = &mut self.model[t];
        match m.summaries.get(&call_sid) {
            Some(first) => {
                prop_assert!(r.already_recorded, "own CallSid recorded twice");
                prop_assert_eq!(&summary.user_id, CALLERS[*first]);
            }
            None => {
                prop_assert!(
                    !r.already_recorded,
                    "a CallSid only another tenant recorded looked used"
                );
                prop_assert_eq!(&summary.user_id, CALLERS[c]);
                m.summaries.insert(call_sid, c);
                let p = m.profiles.entry(c).or_default();
                p.calls += 1;
                if p.name.is_empty() {
                    p.name = offers_name.unwrap_or_default().to_owned();
                }
            }
        }
        Ok(())
    }
    async fn export_caller(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::ExportCaller { caller } = op else {
            unreachable!("run dispatches by variant")
        };
        self.check_export(t, sp, caller.0).await?;
        self.model[t].audits += 1;
        Ok(())
    }
    async fn erase_caller(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::EraseCaller { caller } = op else {
            unreachable!("run dispatches by variant")
        };
        let c = caller.0;
        let want = self.memory_rows_of(t, c);
        let rq = self.req(
            t,
            sp,
            mem_pb::EraseCallerRequest {
                user_id: CALLERS[c].into(),
            },
        );
        let r = ok("EraseCaller", self.memory.erase_caller(rq).await)?;
        let got: BTreeMap<String, i64> =
            r.counts.iter().map(|x| (x.table.clone(), x.rows)).collect();
        prop_assert_eq!(&got, &want, "rows erased");
        let audit = r.audit.ok_or_else(|| fail("EraseCaller: no audit entry"))?;
        prop_assert_eq!(audit.action.as_str(), "erase_caller");
        prop_assert_eq!(&audit.counts, &r.counts);
        self.forget_memory_of(t, c);
        Ok(())
    }
    /// The rows memory-svc holds about caller `c` of tenant `t`, per table, as the model sees
    /// them: what erasing the caller removes there.
    fn memory_rows_of(&self, t: usize, c: usize) -> BTreeMap<String, i64> {
        let m = &self.model[t];
        let sums = m.summaries_of(c).len() as i64;
        BTreeMap::from([
            ("memory.memories".to_owned(), m.memories_of(c).len() as i64),
            (
                "memory.caller_profiles".to_owned(),
                i64::from(m.profiles.contains_key(&c)),
            ),
            ("memory.call_summaries".to_owned(), sums),
            ("memory.personality_metrics".to_owned(), sums),
            (
                "memory.personality_averages".to_owned(),
                i64::from(sums > 0),
            ),
        ])
    }
    /// The model after memory-svc erased caller `c` of tenant `t` (and audited it).
    fn forget_memory_of(&mut self, t: usize, c: usize) {
        let m = &mut self.model[t];
        m.memories.retain(|_, (mc, _)| *mc != c);
        m.profiles.remove(&c);
        m.summaries.retain(|_, sc| *sc != c);
        m.audits += 1;
    }
    async fn enriched_context(&mut self, t: usize, id: i64, sp: Option<T>, op: &Op) -> R {
        let Op::EnrichedContext {
            caller,
            num_summaries,
        } = op
        else {
            unreachable!("run dispatches by variant")
        };
        let c = caller.0;
        let rq = self.req(
            t,
            sp,
            mem_pb::GetEnrichedContextRequest {
                user_id: CALLERS[c].into(),
                num_summaries: *num_summaries,
            },
        );
        let r = ok(
            "GetEnrichedContext",
            self.memory.get_enriched_context(rq).await,
        )?;
        self.only_own(t, "GetEnrichedContext", &format!("{r:?}"))?;
        prop_assert_eq!(
            r.customer_id,
            id,
            "the answer names another customer than the token's (T{})",
            t
        );
        let m = &self.model[t];
        let sums = m.summaries_of(c);
        let mems = m.memories_of(c);
        let n = num_summaries.unwrap_or(3) as usize;
        prop_assert_eq!(r.summary_count as usize, sums.len().min(n));
        prop_assert_eq!(r.recent_summaries.len(), sums.len().min(n));
        for s in &r.recent_summaries {
            prop_assert!(
                sums.contains(&s.call_sid),
                "summary {} is not T{t}'s",
                s.call_sid
            );
            prop_assert_eq!(&s.user_id, CALLERS[c]);
        }
        prop_assert_eq!(r.memories.len(), mems.len().min(CONTEXT_MEMORIES));
        for x in &r.memories {
            prop_assert_eq!(mems.get(&x.id), Some(&value_json(x.value.as_ref())));
        }
        prop_assert_eq!(r.has_personality_data, !sums.is_empty());
        prop_assert_eq!(r.personality.is_some(), !sums.is_empty());
        match (&r.profile, m.profiles.contains_key(&c)) {
            (Some(p), true) => self.check_profile(t, c, p)?,
            (None, false) => {}
            (got, _) => {
                return Err(fail(format!("context profile {got:?} against the model")));
            }
        }
        Ok(())
    }
    async fn search_summaries(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::SearchSummaries { caller, query } = op else {
            unreachable!("run dispatches by variant")
        };
        let c = caller.0;
        let (q, own) = match query {
            Query::OwnMarker => (MARKERS[t], Some(true)),
            Query::MarkerOf(j) => (MARKERS[j.0], Some(j.0 == t)),
            Query::Word(w) => (*w, None),
        };
        let rq = self.req(
            t,
            sp,
            mem_pb::SearchSummariesRequest {
                user_id: CALLERS[c].into(),
                query: q.into(),
                limit: 100,
            },
        );
        let r = ok("SearchSummaries", self.memory.search_summaries(rq).await)?;
        self.only_own(t, "SearchSummaries", &format!("{r:?}"))?;
        let all = self.model[t].summaries_of(c);
        let got: BTreeSet<String> = r.summaries.iter().map(|s| s.call_sid.clone()).collect();
        for s in &r.summaries {
            prop_assert_eq!(&s.user_id, CALLERS[c]);
        }
        prop_assert!(got.is_subset(&all), "found {got:?}, T{t} has {all:?}");
        match own {
            Some(true) => prop_assert_eq!(&got, &all),
            Some(false) => prop_assert!(got.is_empty()),
            None => {}
        }
        Ok(())
    }
    async fn update_agent_config(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::UpdateAgentConfig { n } = op else {
            unreachable!("run dispatches by variant")
        };
        let name = format!("{} agent {n}", MARKERS[t]);
        let rq = self.req(
            t,
            sp,
            tenant_pb::UpdateAgentConfigRequest {
                config: Some(tenant_pb::AgentConfig {
                    agent_name: Some(name.clone()),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["agent_name".into()],
                }),
            },
        );
        let r = ok(
            "UpdateAgentConfig",
            self.tenant.update_agent_config(rq).await,
        )?;
        self.only_own(t, "UpdateAgentConfig", &format!("{r:?}"))?;
        let changed = self.model[t].agent_name.as_deref() != Some(name.as_str());
        prop_assert_eq!(r.changes_recorded, i32::from(changed));
        let m = &mut self.model[t];
        m.agent_name = Some(name);
        m.history += i64::from(changed);
        let customer = r
            .customer
            .ok_or_else(|| fail("UpdateAgentConfig: no customer"))?;
        self.check_customer(t, &customer)?;
        Ok(())
    }
    async fn register_call(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::RegisterCall { caller, to, sid } = op else {
            unreachable!("run dispatches by variant")
        };
        let mine: Vec<String> = self.model[t].calls.keys().cloned().collect();
        let theirs = self.theirs(t, |m| m.calls.keys().cloned().collect());
        let call_sid = self.resolve(sid, &mine, &theirs, fresh_sid);
        let c = caller.map(|c| c.0);
        let rq = self.req(
            t,
            sp,
            media_pb::RegisterCallRequest {
                call_sid: call_sid.clone(),
                account_sid: ACCOUNT_SID.into(),
                from: c.map_or("anonymous", |c| CALLERS[c]).into(),
                to: NUMBERS[to.0].into(),
                direction: media_pb::CallDirection::Inbound as i32,
                status: media_pb::CallStatus::Ringing as i32,
            },
        );
        let r = ok("RegisterCall", self.media.register_call(rq).await)?;
        self.only_own(t, "RegisterCall", &format!("{r:?}"))?;
        let call = r.call.ok_or_else(|| fail("RegisterCall: no call"))?;
        prop_assert_eq!(&call.call_sid, &call_sid);
        let m = &mut self.model[t];
        let (first_caller, first_to) = match m.calls.get(&call_sid) {
            Some(first) => {
                prop_assert!(!r.created, "own CallSid registered twice");
                *first
            }
            None => {
                prop_assert!(
                    r.created,
                    "a CallSid only another tenant registered looked taken"
                );
                m.calls.insert(call_sid, (c, to.0));
                (c, to.0)
            }
        };
        prop_assert_eq!(call.caller, caller_text(first_caller));
        prop_assert_eq!(call.called.as_str(), NUMBERS[first_to]);
        Ok(())
    }
    async fn list_calls(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::ListCalls { caller, page_size } = op else {
            unreachable!("run dispatches by variant")
        };
        self.check_calls(t, sp, caller.map(|c| c.0), *page_size)
            .await?;
        Ok(())
    }
    async fn get_call(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::GetCall { sid } = op else {
            unreachable!("run dispatches by variant")
        };
        let mine: Vec<String> = self.model[t].calls.keys().cloned().collect();
        let theirs = self.theirs(t, |m| m.calls.keys().cloned().collect());
        let call_sid = self.resolve(sid, &mine, &theirs, fresh_sid);
        let rq = self.req(
            t,
            sp,
            media_pb::GetCallRequest {
                call_sid: call_sid.clone(),
            },
        );
        let r = self.media.get_call(rq).await;
        match self.model[t].calls.get(&call_sid).copied() {
            Some((c, to)) => {
                let r = ok("GetCall", r)?;
                self.only_own(t, "GetCall", &format!("{r:?}"))?;
                let call = r.call.ok_or_else(|| fail("GetCall: no call"))?;
                prop_assert_eq!(call.caller, caller_text(c));
                prop_assert_eq!(call.called.as_str(), NUMBERS[to]);
                prop_assert!(r.turns.is_empty());
            }
            None => {
                let e = match r {
                    Ok(r) => {
                        return Err(fail(format!(
                            "GetCall showed T{t} a call it never registered: {r:?}"
                        )));
                    }
                    Err(e) => e,
                };
                let rq = self.req(
                    t,
                    None,
                    media_pb::GetCallRequest {
                        call_sid: fresh_sid(),
                    },
                );
                let unknown = self
                    .media
                    .get_call(rq)
                    .await
                    .err()
                    .ok_or_else(|| fail("GetCall found a fresh CallSid"))?;
                prop_assert_eq!(unknown.code(), Code::NotFound);
                prop_assert_eq!(
                    (e.code(), e.message()),
                    (unknown.code(), unknown.message()),
                    "another tenant's CallSid must look unknown"
                );
            }
        }
        Ok(())
    }
    async fn media_erase_caller(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::MediaEraseCaller { caller } = op else {
            unreachable!("run dispatches by variant")
        };
        let c = caller.0;
        let n = self.model[t].calls_of(Some(c)).len() as i64;
        let rq = self.req(
            t,
            sp,
            media_pb::EraseCallerRequest {
                caller: CALLERS[c].into(),
            },
        );
        // One erase covers both services: media-svc's rows, then memory-svc's.
        let memory = self.memory_rows_of(t, c);
        let r = ok("media EraseCaller", self.media.erase_caller(rq).await)?;
        for x in &r.counts {
            let want = match x.table.as_str() {
                "media.calls" => n,
                table if table.starts_with("memory.") => memory.get(table).copied().unwrap_or(0),
                _ => 0,
            };
            prop_assert_eq!(x.rows, want, "{} rows erased", x.table);
        }
        prop_assert!(r.counts.iter().any(|x| x.table == "media.calls"), "{r:?}");
        let services: Vec<&str> = r.audits.iter().map(|a| a.service.as_str()).collect();
        prop_assert_eq!(
            services,
            ["media-svc", "memory-svc"],
            "one audit row in each"
        );
        self.model[t].calls.retain(|_, (cc, _)| *cc != Some(c));
        self.forget_memory_of(t, c);
        Ok(())
    }
    async fn legacy_store(&mut self, t: usize, id: i64, op: &Op) -> R {
        let Op::LegacyStore {
            caller,
            claims,
            words,
        } = op
        else {
            unreachable!("run dispatches by variant")
        };
        let content = self.text(t, words);
        let body = json!({
            "user_id": CALLERS[caller.0],
            "role": "user",
            "content": content,
            "customer_id": self.id(claims.0),
        });
        let r = self.legacy(t, "/memory/store", &body).await?;
        prop_assert_eq!(&r["success"], &json!(true));
        prop_assert_eq!(&r["customer_id"], &json!(id));
        let memory_id = r["memory_id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| fail(format!("/memory/store: no memory_id: {r}")))?;
        let value = json!({"role": "user", "content": content, "metadata": null});
        self.model[t]
            .memories
            .insert(memory_id.to_owned(), (caller.0, value));
        Ok(())
    }
    async fn legacy_retrieve(&mut self, t: usize, id: i64, op: &Op) -> R {
        let Op::LegacyRetrieve { caller, claims } = op else {
            unreachable!("run dispatches by variant")
        };
        let body = json!({
            "user_id": CALLERS[caller.0],
            "limit": 500,
            "customer_id": self.id(claims.0),
        });
        let r = self.legacy(t, "/memory/retrieve", &body).await?;
        prop_assert_eq!(&r["success"], &json!(true));
        prop_assert_eq!(&r["customer_id"], &json!(id));
        let got: BTreeMap<String, Json> = r["memories"]
            .as_array()
            .ok_or_else(|| fail(format!("/memory/retrieve: no memories: {r}")))?
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap_or_default().to_owned(),
                    m["value"].clone(),
                )
            })
            .collect();
        prop_assert_eq!(&got, &self.model[t].memories_of(caller.0));
        prop_assert_eq!(&r["count"], &json!(got.len()));
        Ok(())
    }
    async fn legacy_enriched(&mut self, t: usize, id: i64, op: &Op) -> R {
        let Op::LegacyEnriched { caller, claims } = op else {
            unreachable!("run dispatches by variant")
        };
        let body = json!({
            "user_id": CALLERS[caller.0],
            "num_summaries": 3,
            "customer_id": self.id(claims.0),
        });
        let r = self.legacy(t, "/v2/context/enriched", &body).await?;
        prop_assert_eq!(&r["success"], &json!(true));
        prop_assert_eq!(&r["customer_id"], &json!(id));
        let k = self.model[t].summaries_of(caller.0).len();
        prop_assert_eq!(&r["summary_count"], &json!(k.min(3)));
        prop_assert_eq!(&r["has_personality_data"], &json!(k > 0));
        Ok(())
    }
    async fn admin_with_tenant_token(&mut self, t: usize, sp: Option<T>, op: &Op) -> R {
        let Op::AdminWithTenantToken { rpc, victim } = op else {
            unreachable!("run dispatches by variant")
        };
        let vid = self.id(victim.0);
        let r: Result<(), Status> = match rpc {
            AdminRpc::MemoryEraseTenant => {
                let rq = self.req(t, sp, mem_pb::EraseTenantRequest { customer_id: vid });
                self.memory_admin.erase_tenant(rq).await.map(drop)
            }
            AdminRpc::MediaEraseTenant => {
                let rq = self.req(t, sp, media_pb::EraseTenantRequest { customer_id: vid });
                self.media_admin.erase_tenant(rq).await.map(drop)
            }
            AdminRpc::GetCustomer => {
                let rq = self.req(t, sp, tenant_pb::GetCustomerRequest { customer_id: vid });
                self.tenant_admin.get_customer(rq).await.map(drop)
            }
            AdminRpc::IssueTenantToken => {
                let rq = self.req(
                    t,
                    sp,
                    tenant_pb::IssueTenantTokenRequest {
                        customer_id: vid,
                        scopes: vec![scope::MEMORY_READ.into()],
                        subject: "isolation-test".into(),
                        ..Default::default()
                    },
                );
                self.tenant_admin.issue_tenant_token(rq).await.map(drop)
            }
        };
        let e = r
            .err()
            .ok_or_else(|| fail("an admin RPC accepted a tenant token"))?;
        prop_assert!(
            matches!(e.code(), Code::PermissionDenied | Code::Unauthenticated),
            "{:?}: {}",
            e.code(),
            e.message()
        );
        Ok(())
    }

    /// Another tenant's memory id: the same error as an id nobody has.
    async fn same_as_unknown_memory(&self, t: usize, e: &Status) -> R {
        let rq = self.req(
            t,
            None,
            mem_pb::DeleteMemoryRequest {
                memory_id: uuid::Uuid::new_v4().to_string(),
            },
        );
        let unknown = self
            .memory
            .clone()
            .delete_memory(rq)
            .await
            .err()
            .ok_or_else(|| fail("deleting a fresh id succeeded"))?;
        prop_assert_eq!(unknown.code(), Code::NotFound);
        prop_assert_eq!(
            (e.code(), e.message()),
            (unknown.code(), unknown.message()),
            "another tenant's memory id must look unknown"
        );
        Ok(())
    }

    /// POSTs a legacy REST request with tenant `t`'s legacy token; checks the answer holds
    /// nothing of other tenants.
    async fn legacy(&self, t: usize, path: &str, body: &Json) -> R<Json> {
        let url = format!("http://{}{path}", self.w.mesh.gateway.main);
        let r = self
            .w
            .http
            .post(url)
            .bearer_auth(&self.legacy_tokens[t])
            .json(body)
            .send()
            .await
            .map_err(|e| fail(format!("{path}: {e}")))?;
        let status = r.status();
        let text = r.text().await.map_err(|e| fail(format!("{path}: {e}")))?;
        prop_assert_eq!(status.as_u16(), 200, "{}: {}", path, text);
        self.only_own(t, path, &text)?;
        serde_json::from_str(&text).map_err(|e| fail(format!("{path}: {e}: {text}")))
    }

    fn check_profile(&self, t: usize, c: usize, got: &mem_pb::CallerProfile) -> R {
        let want = self.model[t]
            .profiles
            .get(&c)
            .ok_or_else(|| fail(format!("T{t} has no profile of C{c}, got {got:?}")))?;
        self.only_own(t, "profile", &format!("{got:?}"))?;
        prop_assert_eq!(&got.user_id, CALLERS[c]);
        prop_assert_eq!(&got.preferred_name, &want.name);
        prop_assert_eq!(got.total_calls, want.calls);
        let prefs = got.preferences.as_ref().map_or(json!({}), struct_json);
        let want_prefs = want
            .level
            .map_or(json!({}), |l| struct_json(&preferences(t, l)));
        prop_assert_eq!(prefs, want_prefs);
        Ok(())
    }

    async fn check_profile_rpc(&self, t: usize, sp: Option<T>, c: usize) -> R {
        let rq = self.req(
            t,
            sp,
            mem_pb::GetCallerProfileRequest {
                user_id: CALLERS[c].into(),
            },
        );
        let r = self.memory.clone().get_caller_profile(rq).await;
        match (r, self.model[t].profiles.contains_key(&c)) {
            (Ok(r), true) => {
                let p = r.into_inner().profile.ok_or_else(|| fail("no profile"))?;
                self.check_profile(t, c, &p)
            }
            (Err(e), false) if e.code() == Code::NotFound => Ok(()),
            (Ok(r), false) => Err(fail(format!(
                "GetCallerProfile showed T{t} a profile of C{c} it never made: {:?}",
                r.into_inner()
            ))),
            (Err(e), _) => Err(fail(format!(
                "GetCallerProfile: {:?} {}",
                e.code(),
                e.message()
            ))),
        }
    }

    /// Every page of ListMemories equals the model.
    async fn check_memories(&self, t: usize, sp: Option<T>, c: usize, page_size: i32) -> R {
        let mut got = BTreeMap::new();
        let mut page_token = String::new();
        for _ in 0..1000 {
            let rq = self.req(
                t,
                sp,
                mem_pb::ListMemoriesRequest {
                    user_id: CALLERS[c].into(),
                    page_size,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            );
            let r = ok("ListMemories", self.memory.clone().list_memories(rq).await)?;
            self.only_own(t, "ListMemories", &format!("{r:?}"))?;
            prop_assert_eq!(
                r.customer_id,
                self.id(t),
                "the answer names another customer than the token's (T{})",
                t
            );
            for m in r.memories {
                prop_assert_eq!(&m.user_id, CALLERS[c]);
                let v = value_json(m.value.as_ref());
                prop_assert!(
                    got.insert(m.id.clone(), v).is_none(),
                    "{} listed twice",
                    m.id
                );
            }
            if r.next_page_token.is_empty() {
                prop_assert_eq!(&got, &self.model[t].memories_of(c));
                return Ok(());
            }
            page_token = r.next_page_token;
        }
        Err(fail("ListMemories never reached the last page"))
    }

    /// Every page of ListCalls (of one caller or all) equals the model.
    async fn check_calls(&self, t: usize, sp: Option<T>, c: Option<usize>, page_size: i32) -> R {
        let mut got = BTreeMap::new();
        let mut page_token = String::new();
        for _ in 0..1000 {
            let rq = self.req(
                t,
                sp,
                media_pb::ListCallsRequest {
                    page_size,
                    page_token: page_token.clone(),
                    caller: caller_text(c),
                    ..Default::default()
                },
            );
            let r = ok("ListCalls", self.media.clone().list_calls(rq).await)?;
            self.only_own(t, "ListCalls", &format!("{r:?}"))?;
            for call in r.calls {
                let sid = call.call_sid.clone();
                prop_assert!(
                    got.insert(sid.clone(), (call.caller, call.called))
                        .is_none(),
                    "{} listed twice",
                    sid
                );
            }
            if r.next_page_token.is_empty() {
                prop_assert_eq!(&got, &self.model[t].calls_of(c));
                return Ok(());
            }
            page_token = r.next_page_token;
        }
        Err(fail("ListCalls never reached the last page"))
    }

    /// memory-svc ExportCaller gives exactly the model's rows (it writes one audit row, which
    /// the caller adds to the model).
    async fn check_export(&self, t: usize, sp: Option<T>, c: usize) -> R {
        use mem_pb::export_caller_response::Record;
        let rq = self.req(
            t,
            sp,
            mem_pb::ExportCallerRequest {
                user_id: CALLERS[c].into(),
            },
        );
        let mut stream = ok("ExportCaller", self.memory.clone().export_caller(rq).await)?;
        let mut records = Vec::new();
        while let Some(m) = stream
            .message()
            .await
            .map_err(|e| fail(format!("ExportCaller stream: {e:?}")))?
        {
            records.push(m.record.ok_or_else(|| fail("ExportCaller: empty record"))?);
        }
        self.only_own(t, "ExportCaller", &format!("{records:?}"))?;
        let (mut mems, mut profiles, mut sums, mut metrics, mut averages) = (
            BTreeMap::new(),
            Vec::new(),
            BTreeSet::new(),
            BTreeSet::new(),
            Vec::new(),
        );
        for r in records {
            match r {
                Record::Memory(m) => {
                    prop_assert_eq!(&m.user_id, CALLERS[c]);
                    mems.insert(m.id, value_json(m.value.as_ref()));
                }
                Record::Profile(p) => profiles.push(p),
                Record::Summary(s) => {
                    prop_assert_eq!(&s.user_id, CALLERS[c]);
                    sums.insert(s.call_sid);
                }
                Record::Metrics(x) => {
                    prop_assert_eq!(&x.user_id, CALLERS[c]);
                    metrics.insert(x.call_sid);
                }
                Record::Averages(a) => averages.push(a),
            }
        }
        let m = &self.model[t];
        prop_assert_eq!(&mems, &m.memories_of(c));
        let want = m.summaries_of(c);
        prop_assert_eq!(&sums, &want);
        prop_assert_eq!(&metrics, &want);
        match (profiles.as_slice(), m.profiles.contains_key(&c)) {
            ([p], true) => self.check_profile(t, c, p)?,
            ([], false) => {}
            (got, _) => return Err(fail(format!("exported profiles {got:?} against the model"))),
        }
        match averages.as_slice() {
            [] => prop_assert!(want.is_empty(), "no averages for {} calls", want.len()),
            [a] => {
                prop_assert_eq!(&a.user_id, CALLERS[c]);
                prop_assert_eq!(a.call_count as usize, want.len());
            }
            more => return Err(fail(format!("{} averages rows", more.len()))),
        }
        Ok(())
    }

    /// media-svc ExportCaller gives exactly the model's calls of the caller.
    async fn check_media_export(&self, t: usize, sp: Option<T>, c: usize) -> R {
        use media_pb::export_caller_response::Record;
        let rq = self.req(
            t,
            sp,
            media_pb::ExportCallerRequest {
                caller: CALLERS[c].into(),
            },
        );
        let mut stream = ok(
            "media ExportCaller",
            self.media.clone().export_caller(rq).await,
        )?;
        let mut got = BTreeMap::new();
        while let Some(m) = stream
            .message()
            .await
            .map_err(|e| fail(format!("media ExportCaller stream: {e:?}")))?
        {
            self.only_own(t, "media ExportCaller", &format!("{m:?}"))?;
            match m.record {
                Some(Record::Call(call)) => {
                    got.insert(call.call_sid, (call.caller, call.called));
                }
                other => return Err(fail(format!("unexpected export record {other:?}"))),
            }
        }
        prop_assert_eq!(&got, &self.model[t].calls_of(Some(c)));
        Ok(())
    }

    fn check_customer(&self, t: usize, c: &tenant_pb::Customer) -> R {
        self.only_own(t, "customer", &format!("{c:?}"))?;
        prop_assert_eq!(
            c.id,
            self.id(t),
            "the answer names another customer than the token's (T{})",
            t
        );
        prop_assert!(c.business_name.contains(MARKERS[t]), "{}", c.business_name);
        let numbers: Vec<&str> = c.phone_numbers.iter().map(|n| n.number.as_str()).collect();
        prop_assert_eq!(numbers, vec![NUMBERS[t]]);
        let agent_name = c.agent_config.as_ref().and_then(|a| a.agent_name.clone());
        prop_assert_eq!(&agent_name, &self.model[t].agent_name);
        Ok(())
    }

    /// GetMyCustomer and the whole ListConfigHistory equal the model.
    async fn check_my_customer(&self, t: usize, sp: Option<T>) -> R {
        let rq = self.req(t, sp, tenant_pb::GetMyCustomerRequest {});
        let r = ok(
            "GetMyCustomer",
            self.tenant.clone().get_my_customer(rq).await,
        )?;
        let c = r
            .customer
            .ok_or_else(|| fail("GetMyCustomer: no customer"))?;
        self.check_customer(t, &c)?;
        let mut page_token = String::new();
        let mut n = 0i64;
        for _ in 0..1000 {
            let rq = self.req(
                t,
                sp,
                tenant_pb::ListConfigHistoryRequest {
                    page_size: 500,
                    page_token: page_token.clone(),
                },
            );
            let r = ok(
                "ListConfigHistory",
                self.tenant.clone().list_config_history(rq).await,
            )?;
            self.only_own(t, "ListConfigHistory", &format!("{r:?}"))?;
            n += r.changes.len() as i64;
            if r.next_page_token.is_empty() {
                prop_assert_eq!(n, self.model[t].history);
                return Ok(());
            }
            page_token = r.next_page_token;
        }
        Err(fail("ListConfigHistory never reached the last page"))
    }

    /// Rows after a step: other tenants byte-for-byte unchanged, every tenant's counts equal to
    /// the model, no row of an unknown tenant.
    fn check_rows(&self, s: &Step, before: &Snapshot, after: &Snapshot) -> R {
        let acting = match s.op {
            Op::AdminWithTenantToken { .. } => None,
            _ => Some(s.by.0),
        };
        let ids: BTreeSet<i64> = self.w.tenants.iter().map(|t| t.id).collect();
        if let Some(((cid, table), _)) = after.iter().find(|((cid, _), _)| !ids.contains(cid)) {
            return Err(fail(format!("{table} has rows of unknown customer {cid}")));
        }
        for (j, tenant) in self.w.tenants.iter().enumerate() {
            let of = |snap: &Snapshot| -> BTreeMap<String, (i64, String)> {
                snap.iter()
                    .filter(|((cid, _), _)| *cid == tenant.id)
                    .map(|((_, table), v)| (table.clone(), v.clone()))
                    .collect()
            };
            let (b, a) = (of(before), of(after));
            if Some(j) != acting && a != b {
                let changed: Vec<String> = self
                    .w
                    .tables
                    .iter()
                    .filter(|table| a.get(*table) != b.get(*table))
                    .map(|table| {
                        let n =
                            |m: &BTreeMap<String, (i64, String)>| m.get(table).map_or(0, |x| x.0);
                        format!("{table}: {} -> {} rows, contents changed", n(&b), n(&a))
                    })
                    .collect();
                return Err(fail(format!(
                    "T{} acted and T{j}'s rows changed: {}",
                    s.by.0,
                    changed.join("; ")
                )));
            }
            for (table, want) in self.model[j].expected_rows() {
                if self.w.tables.iter().any(|t| t == table) {
                    let got = a.get(table).map_or(0, |x| x.0);
                    prop_assert_eq!(got, want, "T{}'s rows in {}", j, table);
                }
            }
        }
        Ok(())
    }

    /// The acting tenant reads back what the step touched.
    async fn read_back(&self, s: &Step) -> R {
        if matches!(s.op, Op::AdminWithTenantToken { .. }) {
            return Ok(());
        }
        let t = s.by.0;
        let c = s.op.caller();
        let caller_rows = async {
            if let Some(c) = c {
                futures::try_join!(
                    self.check_memories(t, None, c, 0),
                    self.check_profile_rpc(t, None, c)
                )?;
            }
            Ok(())
        };
        futures::try_join!(caller_rows, self.check_calls(t, None, c, 0))?;
        Ok(())
    }

    /// At the end of a case: everything every tenant holds equals the model, read through the
    /// export of each caller (memories, profile, summaries, metrics, averages), the full call list
    /// and the customer record with its history. The tenants are checked concurrently; each export
    /// writes one audit row.
    async fn verify_everything(&mut self) -> R {
        let this = &*self;
        let tenants = (0..TENANTS).map(|t| async move {
            let exports = (0..CALLERS.len()).map(|c| this.check_export(t, None, c));
            futures::future::try_join_all(exports).await?;
            futures::try_join!(
                this.check_calls(t, None, None, 0),
                this.check_my_customer(t, None)
            )?;
            Ok::<_, TestCaseError>(())
        });
        futures::future::try_join_all(tenants).await?;
        for m in &mut self.model {
            m.audits += CALLERS.len() as i64;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// The test
// ------------------------------------------------------------------------------------------

/// Expands a 64-bit seed into ChaCha's 32 bytes (splitmix64).
fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = seed;
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

fn env_parse<V: std::str::FromStr>(name: &str) -> Option<V> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn random_operations_by_random_tenants_never_cross_tenants() {
    let cases: u32 = env_parse("PROPTEST_CASES").unwrap_or(DEFAULT_CASES);
    let seed: u64 =
        env_parse("ISOLATION_SEED").unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
    println!("isolation: {cases} cases of 1-{MAX_STEPS} steps, ISOLATION_SEED={seed}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let world = rt.block_on(World::start());
    let booted = started.elapsed();

    let config = Config {
        cases,
        // Shrinking replays sequences against the live mesh: bound it.
        max_shrink_iters: 512,
        max_shrink_time: 180_000,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = prop::collection::vec(step(), 1..=MAX_STEPS);
    let result = runner.run(&strategy, |steps| rt.block_on(world.run_case(&steps)));
    println!(
        "isolation: mesh booted in {:.1} s; {} cases ({} with shrinking), {} steps ({} naming \
         another tenant or its keys) in {:.1} s; ISOLATION_SEED={seed}",
        booted.as_secs_f64(),
        cases,
        world.cases.load(Ordering::Relaxed),
        world.steps.load(Ordering::Relaxed),
        world.hostile.load(Ordering::Relaxed),
        (started.elapsed() - booted).as_secs_f64(),
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, steps)) => panic!(
            "{reason}\nminimal failing sequence ({} steps; replay with ISOLATION_SEED={seed} \
             PROPTEST_CASES={cases}):\n{steps:#?}",
            steps.len()
        ),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason} (ISOLATION_SEED={seed})"),
    }
    let World { mesh, admin, .. } = world;
    drop(admin);
    for (name, r) in rt.block_on(mesh.shutdown()) {
        if let Err(e) = r {
            panic!("{name} did not stop cleanly: {e:#}");
        }
    }
}
