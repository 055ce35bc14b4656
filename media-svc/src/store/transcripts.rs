//! Transcript turns (`media.transcript_turns`): appended one by one while the call runs (so a
//! dropped call keeps everything already said), read back in order.

use mesh::api::common::{Speaker, TranscriptTurn};
use mesh::db::Tx;
use mesh::domain::CallSid;

use crate::error::MediaError;

/// Longest turn stored, in characters (the column's CHECK).
const MAX_TURN_CHARS: usize = 8000;

/// The transcript of one call, in order.
pub async fn turns(tx: &Tx<'_>, call_sid: &CallSid) -> Result<Vec<TranscriptTurn>, MediaError> {
    let rows = tx
        .query(
            "SELECT speaker, text, offset_ms FROM media.transcript_turns \
             WHERE call_sid = $1 ORDER BY seq",
            &[call_sid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TranscriptTurn {
            speaker: i32::from(r.get::<_, i16>(0)),
            text: r.get(1),
            offset_ms: u32::try_from(r.get::<_, i64>(2)).unwrap_or(u32::MAX),
        })
        .collect())
}

/// Appends one transcript turn.
pub async fn append_turn(
    tx: &Tx<'_>,
    call_sid: &CallSid,
    seq: i32,
    speaker: Speaker,
    text: &str,
    offset_ms: u32,
) -> Result<(), MediaError> {
    let text: String = text.chars().take(MAX_TURN_CHARS).collect();
    tx.execute(
        "INSERT INTO media.transcript_turns (customer_id, call_sid, seq, speaker, text, offset_ms) \
         VALUES (app.current_customer_id(), $1, $2, $3, $4, $5)",
        &[
            call_sid,
            &seq,
            &(speaker as i32 as i16),
            &text,
            &i64::from(offset_ms),
        ],
    )
    .await?;
    Ok(())
}
