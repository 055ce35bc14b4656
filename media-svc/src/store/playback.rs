//! What playback reads of `media.recordings` (V20, written by [`crate::recording`]): the
//! recordings a call shows (`Call.recording` and `Call.recordings` of `GetCall` and
//! `ListCalls`) and the one `ReadRecording` plays. A call has at most one of each kind; when it
//! has both (a call that switched to taking a message) the first one started is the call's
//! `recording`, and either is read by its id. Every query runs in the tenant's transaction
//! (RLS), and a recording is only ever found through its call: an id of another call or tenant
//! is not found.

use std::collections::{HashMap, HashSet};

use mesh::api::media::{Recording, RecordingState};
use mesh::db::Tx;
use mesh::domain::CallSid;
use uuid::Uuid;

use crate::error::MediaError;
use crate::store::recordings::RecordingKind;

/// A recording as playback sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRow {
    /// Its id.
    pub id: Uuid,
    /// Length in milliseconds.
    pub duration_ms: i64,
    /// Where it stands.
    pub state: RecordingState,
    /// The call's conversation or a caller's message.
    pub kind: RecordingKind,
}

impl RecordingRow {
    fn of(r: &tokio_postgres::Row) -> RecordingRow {
        RecordingRow {
            id: r.get("id"),
            duration_ms: r.get("duration_ms"),
            state: match r.get::<_, &str>("state") {
                "recording" => RecordingState::Recording,
                "spooled" => RecordingState::Spooled,
                "stored" => RecordingState::Stored,
                _ => RecordingState::Unspecified,
            },
            kind: match r.get::<_, &str>("kind") {
                "message" => RecordingKind::Message,
                _ => RecordingKind::Call,
            },
        }
    }

    /// Whether it is complete (sealed): only then it can be played.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, RecordingState::Spooled | RecordingState::Stored)
    }

    /// The wire form.
    pub fn to_proto(&self) -> Recording {
        Recording {
            recording_id: self.id.to_string(),
            duration_ms: self.duration_ms,
            state: self.state as i32,
            kind: self.kind.as_str().to_owned(),
        }
    }
}

const COLUMNS: &str = "call_sid, id, duration_ms, state, kind";

/// The recordings of one call of the transaction's tenant, the first started first.
pub async fn of_call(tx: &Tx<'_>, call_sid: &CallSid) -> Result<Vec<RecordingRow>, MediaError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM media.recordings WHERE call_sid = $1 ORDER BY started_at, id"
            ),
            &[call_sid],
        )
        .await?;
    Ok(rows.iter().map(RecordingRow::of).collect())
}

/// The recording `id` of one call of the transaction's tenant, when it is one of that call's.
pub async fn by_id(
    tx: &Tx<'_>,
    call_sid: &CallSid,
    id: Uuid,
) -> Result<Option<RecordingRow>, MediaError> {
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM media.recordings WHERE call_sid = $1 AND id = $2"),
            &[call_sid, &id],
        )
        .await?;
    Ok(row.as_ref().map(RecordingRow::of))
}

/// The recordings of several calls of the transaction's tenant (a listing's page), by CallSid,
/// each call's first started first.
pub async fn of_calls(
    tx: &Tx<'_>,
    call_sids: &[&str],
) -> Result<HashMap<String, Vec<RecordingRow>>, MediaError> {
    if call_sids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM media.recordings WHERE call_sid = ANY($1) \
                 ORDER BY call_sid, started_at, id"
            ),
            &[&call_sids],
        )
        .await?;
    let mut out: HashMap<String, Vec<RecordingRow>> = HashMap::new();
    for r in &rows {
        out.entry(r.get::<_, String>("call_sid"))
            .or_default()
            .push(RecordingRow::of(r));
    }
    Ok(out)
}

/// Which of several calls of the transaction's tenant have a callback task (`Call.has_message`).
pub async fn with_messages(tx: &Tx<'_>, call_sids: &[&str]) -> Result<HashSet<String>, MediaError> {
    if call_sids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = tx
        .query(
            "SELECT call_sid FROM media.callback_tasks WHERE call_sid = ANY($1)",
            &[&call_sids],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// Fills a call's `recording`, `recordings` and `has_message` from what was read.
pub fn fill(call: &mut mesh::api::media::Call, recordings: Vec<RecordingRow>, has_message: bool) {
    call.recording = recordings.first().map(RecordingRow::to_proto);
    call.recordings = recordings.iter().map(RecordingRow::to_proto).collect();
    call.has_message = has_message;
}
