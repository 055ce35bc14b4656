//! `media.callback_tasks` (migration V23): the messages callers leave when the agent cannot
//! answer (the message flow, [`crate::call::message`]) and the ones the agent takes itself
//! (`take_message`). At most one task per call: a second write for the same call adds to it
//! (the recording, the transcript, the note) instead of making another, so a finish retried
//! through a database restart is harmless. The inbox lists them and marks them done.

use chrono::{DateTime, Utc};
use mesh::api::media::{CallbackReason, CallbackTask, CallbackTaskFilter};
use mesh::db::Tx;
use mesh::domain::{CallSid, CallerNumber};
use uuid::Uuid;

use super::timestamp;
use crate::error::MediaError;

/// Longest transcript and note a task keeps (the columns' limits).
pub const MAX_TRANSCRIPT: usize = 20_000;
/// Longest note (the agent's summary).
pub const MAX_NOTE: usize = 4_000;

/// Why a task exists: the text of `media.callback_tasks.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The realtime backend could not be reached, failed or stalled.
    BackendDown,
    /// The tenant was at its concurrent-call limit.
    Busy,
    /// Outside the tenant's opening hours.
    AfterHours,
    /// The agent took the message during a normal call.
    Agent,
}

impl Reason {
    /// The column's spelling (also the `reason` of the `message.created` event).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BackendDown => "backend_down",
            Self::Busy => "busy",
            Self::AfterHours => "after_hours",
            Self::Agent => "agent",
        }
    }

    fn parse(s: &str) -> CallbackReason {
        match s {
            "backend_down" => CallbackReason::BackendDown,
            "busy" => CallbackReason::Busy,
            "after_hours" => CallbackReason::AfterHours,
            "agent" => CallbackReason::Agent,
            _ => CallbackReason::Unspecified,
        }
    }
}

/// A task to write.
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    /// Its id, chosen once per call by the writer (a retried write reuses it).
    pub task_id: Uuid,
    /// The call it came from (must exist: the row references it).
    pub call_sid: &'a CallSid,
    /// The caller, as the call row has it.
    pub caller: Option<&'a CallerNumber>,
    /// Why.
    pub reason: Reason,
    /// The recording of the message, when one was kept.
    pub recording_id: Option<Uuid>,
    /// What the caller said, when available.
    pub transcript: Option<&'a str>,
    /// The agent's summary.
    pub note: &'a str,
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Writes the call's task, or adds to the one it has (a recording or transcript it lacked, the
/// note appended); returns the task's id and creation time, and whether it is new.
pub async fn upsert(
    tx: &Tx<'_>,
    task: &NewTask<'_>,
) -> Result<(Uuid, DateTime<Utc>, bool), MediaError> {
    let transcript = task.transcript.map(|t| cut(t, MAX_TRANSCRIPT));
    let note = cut(task.note, MAX_NOTE);
    let row = tx
        .query_one(
            "INSERT INTO media.callback_tasks AS t \
               (customer_id, task_id, call_sid, caller, reason, recording_id, transcript, note) \
             VALUES (app.current_customer_id(), $1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (customer_id, call_sid) DO UPDATE SET \
               recording_id = coalesce(t.recording_id, EXCLUDED.recording_id), \
               transcript = coalesce(t.transcript, EXCLUDED.transcript), \
               note = CASE WHEN EXCLUDED.note = '' OR t.task_id = EXCLUDED.task_id THEN t.note \
                           WHEN t.note = '' THEN EXCLUDED.note \
                           ELSE left(t.note || E'\\n' || EXCLUDED.note, 4000) END \
             RETURNING task_id, created_at, (xmax = 0)",
            &[
                &task.task_id,
                task.call_sid,
                &task.caller,
                &task.reason.as_str(),
                &task.recording_id,
                &transcript,
                &note,
            ],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Records on the call why it went to the message flow (the first reason stays). Normally the
/// call was marked when it took its place under the message caps ([`super::message_calls`]);
/// this covers a call let in by the process-local caps while the database could not be asked.
pub async fn mark_call(tx: &Tx<'_>, call_sid: &CallSid, reason: Reason) -> Result<(), MediaError> {
    tx.execute(
        "UPDATE media.calls SET message_flow = $2 WHERE call_sid = $1 AND message_flow IS NULL",
        &[call_sid, &reason.as_str()],
    )
    .await?;
    Ok(())
}

const COLUMNS: &str = "task_id, call_sid, coalesce(caller, ''), reason, created_at, done_at, \
                       recording_id, coalesce(transcript, ''), note";

fn to_proto(r: &tokio_postgres::Row) -> CallbackTask {
    let reason: String = r.get(3);
    CallbackTask {
        task_id: r.get::<_, Uuid>(0).to_string(),
        call_sid: r.get(1),
        caller: r.get(2),
        reason: Reason::parse(&reason) as i32,
        create_time: Some(timestamp(r.get(4))),
        done_time: r.get::<_, Option<DateTime<Utc>>>(5).map(timestamp),
        recording_id: r
            .get::<_, Option<Uuid>>(6)
            .map(|id| id.to_string())
            .unwrap_or_default(),
        transcript: r.get(7),
        note: r.get(8),
    }
}

/// A position in the task list: (created_at, task_id).
pub type TaskCursor = (DateTime<Utc>, Uuid);

/// One page of the tenant's tasks, newest first, and the position after its last row when
/// another page exists.
pub async fn list(
    tx: &Tx<'_>,
    filter: CallbackTaskFilter,
    after: Option<TaskCursor>,
    limit: i64,
) -> Result<(Vec<CallbackTask>, Option<TaskCursor>), MediaError> {
    let (after_time, after_id) = after.unzip();
    let done: Option<bool> = match filter {
        CallbackTaskFilter::Open => Some(false),
        CallbackTaskFilter::Done => Some(true),
        CallbackTaskFilter::Unspecified => None,
    };
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM media.callback_tasks \
                 WHERE ($1::timestamptz IS NULL OR (created_at, task_id) < ($1, $2::uuid)) \
                   AND ($3::bool IS NULL OR (done_at IS NOT NULL) = $3) \
                 ORDER BY created_at DESC, task_id DESC LIMIT $4"
            ),
            &[&after_time, &after_id, &done, &(limit + 1)],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next = match (more, rows.last()) {
        (true, Some(last)) => Some((last.get(4), last.get(0))),
        _ => None,
    };
    Ok((rows.iter().map(to_proto).collect(), next))
}

/// How many of the tenant's tasks are open (the partial index `callback_tasks_open_idx`).
pub async fn open_count(tx: &Tx<'_>) -> Result<i64, MediaError> {
    Ok(tx
        .query_one(
            "SELECT count(*) FROM media.callback_tasks WHERE done_at IS NULL",
            &[],
        )
        .await?
        .get(0))
}

/// Marks a task of the tenant done (keeping the first time it was marked) or open again; the
/// task as it is now, `None` when the tenant has no such task.
pub async fn set_done(
    tx: &Tx<'_>,
    task_id: Uuid,
    done: bool,
) -> Result<Option<CallbackTask>, MediaError> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE media.callback_tasks SET done_at = CASE WHEN $2 THEN coalesce(done_at, now()) END \
                 WHERE task_id = $1 RETURNING {COLUMNS}"
            ),
            &[&task_id, &done],
        )
        .await?;
    Ok(row.as_ref().map(to_proto))
}

/// The tasks of one caller (ExportCaller), oldest first.
pub async fn of_caller(
    tx: &Tx<'_>,
    caller: &CallerNumber,
) -> Result<Vec<CallbackTask>, MediaError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM media.callback_tasks WHERE caller = $1 \
                 ORDER BY created_at, task_id"
            ),
            &[caller],
        )
        .await?;
    Ok(rows.iter().map(to_proto).collect())
}

/// Deletes one task of the tenant (retention may call this); whether it existed.
pub async fn delete(tx: &Tx<'_>, task_id: Uuid) -> Result<bool, MediaError> {
    let n = tx
        .execute(
            "DELETE FROM media.callback_tasks WHERE task_id = $1",
            &[&task_id],
        )
        .await?;
    Ok(n == 1)
}

/// Deletes the tenant's tasks created before `before` (retention); how many went.
pub async fn delete_older_than(tx: &Tx<'_>, before: DateTime<Utc>) -> Result<u64, MediaError> {
    Ok(tx
        .execute(
            "DELETE FROM media.callback_tasks WHERE created_at < $1",
            &[&before],
        )
        .await?)
}
