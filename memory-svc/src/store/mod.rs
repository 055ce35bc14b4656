//! All of memory-svc's SQL, over the `memory` schema (migration V3), one module per table
//! family. Every function runs inside a transaction opened by `Db::tenant_tx` (so row-level
//! security scopes it to one tenant; the purge and the audit key use `Db::service_tx`) and takes
//! domain values only: `mesh::domain` newtypes for tenants, callers and calls (bound as
//! themselves through their `ToSql`, never unwrapped at a call site), and the enums of
//! [`crate::model`] for the text columns with a closed set of values. Queries also name
//! `customer_id` explicitly so the planner picks the composite indexes; RLS, not that predicate,
//! is what isolates tenants.
//!
//! Parts: [`rows`] (the columns each read selects and the row mappers), [`memories`] (store,
//! list, delete, purge), [`profiles`], [`calls`] (summaries and recording a finished call),
//! [`personality`] (the per-call scores and the averages and trends computed from them),
//! [`context`](mod@context) (the enriched context's four reads), [`directory`] (the callers
//! listing and the opaque caller ids of V18), [`caller`] (export and erase of one caller
//! or tenant), [`erasures`] (the markers that keep erased callers erased), [`audit`](mod@audit)
//! (the audit log and its hash key).
//!
//! The hot paths (StoreMemory, GetEnrichedContext) use `query_typed`, which sends parse, bind
//! and execute in one round trip, and GetEnrichedContext pipelines its four reads on one
//! connection; every statement is prepared once per pooled connection (`mesh::db::Tx`).

pub mod audit;
pub mod caller;
pub mod calls;
pub mod context;
pub mod directory;
pub mod erasures;
pub mod memories;
pub mod personality;
pub mod profiles;
pub mod rows;

use tokio_postgres::types::{ToSql, Type};

pub use audit::{audit, audit_hash_key, list_audit};
pub use caller::{Export, erase, export};
pub use calls::{CallRecord, get_summary, record_call, search_summaries};
pub use context::{ContextRows, context};
pub use directory::{CallerCursor, CallerQuery, caller_by_ref, list_callers, ref_of_caller};
pub use erasures::{erased_at, lock_caller, mark_erased};
pub use memories::{
    Cursor, MemoryQuery, NewMemory, delete_memory, insert_memory, list_memories, purge_batch,
};
pub use profiles::{ProfileUpdate, get_profile, upsert_profile};

/// The five caller tables, in export/erase order.
pub const TABLES: [&str; 5] = [
    "memory.memories",
    "memory.caller_profiles",
    "memory.call_summaries",
    "memory.personality_metrics",
    "memory.personality_averages",
];

/// The tables of the `memory` schema that erasures keep, and why (they hold no caller data).
/// `memory-svc/tests/it/erasure.rs` reads the catalog and fails when a table of the schema is in
/// neither [`TABLES`] nor this list, so a table added later is erased or kept on purpose.
pub const KEPT_TABLES: [(&str, &str); 3] = [
    (
        "memory.audit_log",
        "the record of exports and erasures: a keyed hash, an actor, counts",
    ),
    (
        "memory.erasures",
        "erasure markers: a keyed hash and a time, kept so erased callers stay erased",
    ),
    (
        "memory.audit_hash_key",
        "the deployment's hash key; no tenant, no caller",
    ),
];

/// A parameter of a `query_typed` statement with its declared type.
type P<'a> = (&'a (dyn ToSql + Sync), Type);
