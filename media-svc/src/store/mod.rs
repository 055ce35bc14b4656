//! Every SQL statement of media-svc, over its tables (`migrations/V4__media.sql`,
//! `V7__outbound_calls.sql`, `V10__webhook_events.sql`, `V12__call_answers_and_streams.sql`,
//! `V15__erasure.sql`, `V23__callback_tasks.sql`, `V24__message_calls.sql`). Every function takes a transaction
//! opened by `Db::tenant_tx`, so row-level security confines it to one tenant (the two
//! `due_tenants` scans run in `Db::service_tx` through SECURITY DEFINER functions that return
//! tenant ids only); domain values, typed ids and plain numbers go in, rows come out as typed
//! structs with the text and number columns read back as Rust enums.
//!
//! - [`audit`](mod@audit): the audit log of exports and erasures (V15);
//! - [`callback_tasks`]: the messages callers left (V23);
//! - [`calls`]: the call rows (register, refusal, status, export);
//! - [`consent`]: a call's recording policy and consent answer, and its recorded seconds in usage (V21);
//! - [`message_calls`]: the caps on message-taking calls, across replicas (V24);
//! - [`listing`]: the calls listing and the dashboard's figures (`GetCallStats`);
//! - [`streams`]: a call's one media stream (bound, started, ended);
//! - [`erase`]: one caller's rows, or a whole tenant's;
//! - [`limits`]: the per-tenant call-limit lock, the in-progress and hourly counts, and the
//!   reservations of outbound calls being placed;
//! - [`transcripts`] and [`usage`]: transcript turns and the monthly usage counters;
//! - [`playback`]: the recording a call shows and plays (V20's `media.recordings`, read only);
//! - [`outbox`]: the post-call outbox (`RecordCall` to memory-svc);
//! - [`retention`]: the retention task's tenants (V22) and its deletions;
//! - [`webhooks`]: the post-call webhook events and their dead letters;
//! - [`recordings`]: recording rows and tenant recording keys (V20).

pub mod audit;
pub mod billing;
pub mod callback_tasks;
pub mod calls;
pub mod consent;
pub mod erase;
pub mod limits;
pub mod listing;
pub mod message_calls;
pub mod outbox;
pub mod playback;
pub mod recordings;
pub mod retention;
pub mod streams;
pub mod transcripts;
pub mod usage;
pub mod webhooks;

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use mesh::api::common::TableCount;

use crate::error::MediaError;

pub use calls::{CallRow, EndReason, NewCall, NewOutboundCall, StatusUpdate};
pub use listing::{CallStats, ListFilter};

pub use mesh::api::timestamp;

/// UTC time of a proto timestamp (`None` when out of range).
pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// The first day of a month, validated.
pub fn month_start(year: i32, month: i32) -> Option<NaiveDate> {
    if !(2000..=2200).contains(&year) {
        return None;
    }
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, 1)
}

/// Rows deleted from (or read out of) one table, as the erase and export RPCs report them.
pub fn count(table: &str, rows: u64) -> TableCount {
    TableCount {
        table: table.to_owned(),
        rows: i64::try_from(rows).unwrap_or(i64::MAX),
    }
}

/// Runs `write` again while PostgreSQL is unreachable (a restart, a failover), every `pause`,
/// until `budget` has passed or `give_up` says so; `on_retry` sees each refusal that is retried.
/// Any other outcome is returned at once. Only for writes that are safe to repeat: a commit whose
/// connection was lost may have been applied.
pub async fn retry_while_unavailable<T, Fut>(
    budget: Duration,
    pause: Duration,
    give_up: impl Fn() -> bool,
    mut on_retry: impl FnMut(&mesh::db::DbError),
    mut write: impl FnMut() -> Fut,
) -> Result<T, MediaError>
where
    Fut: Future<Output = Result<T, MediaError>>,
{
    let began = Instant::now();
    loop {
        match write().await {
            Err(MediaError::Db(e))
                if e.is_unavailable() && !give_up() && began.elapsed() + pause < budget =>
            {
                on_retry(&e);
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}
