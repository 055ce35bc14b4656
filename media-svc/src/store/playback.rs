//! What playback reads of `media.recordings` (V20, written by [`crate::recording`]): the
//! recording a call shows (`Call.recording` of `GetCall` and `ListCalls`) and the one
//! `ReadRecording` plays. A call has at most one of each kind; when it has both (a call that
//! switched to taking a message) the first one started is the call's.

use std::collections::HashMap;

use mesh::api::media::{Recording, RecordingState};
use mesh::db::Tx;
use mesh::domain::CallSid;
use uuid::Uuid;

use crate::error::MediaError;

/// A recording as playback sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRow {
    /// Its id.
    pub id: Uuid,
    /// Length in milliseconds.
    pub duration_ms: i64,
    /// Where it stands.
    pub state: RecordingState,
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
        }
    }
}

/// The recording of one call of the transaction's tenant, if it has one.
pub async fn of_call(tx: &Tx<'_>, call_sid: &CallSid) -> Result<Option<RecordingRow>, MediaError> {
    let row = tx
        .query_opt(
            "SELECT id, duration_ms, state FROM media.recordings \
             WHERE call_sid = $1 ORDER BY started_at, id LIMIT 1",
            &[call_sid],
        )
        .await?;
    Ok(row.as_ref().map(RecordingRow::of))
}

/// The recordings of several calls of the transaction's tenant (a listing's page), by CallSid.
pub async fn of_calls(
    tx: &Tx<'_>,
    call_sids: &[&str],
) -> Result<HashMap<String, RecordingRow>, MediaError> {
    if call_sids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = tx
        .query(
            "SELECT DISTINCT ON (call_sid) call_sid, id, duration_ms, state \
             FROM media.recordings WHERE call_sid = ANY($1) \
             ORDER BY call_sid, started_at, id",
            &[&call_sids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>("call_sid"), RecordingRow::of(r)))
        .collect())
}
