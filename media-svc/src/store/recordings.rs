//! Recording rows and tenant recording keys (`migrations/V20__recordings.sql`): every statement
//! runs in the tenant's transaction (row-level security), except the rewrap scan, a SECURITY
//! DEFINER function returning customer ids only. The audio is never here: only a wrapped data
//! key, the segment size and the spool/upload bookkeeping.

use chrono::{DateTime, Utc};
use mesh::db::Tx;
use mesh::domain::{CallSid, CustomerId};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::MediaError;

/// What a recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingKind {
    /// A call's conversation.
    Call,
    /// A caller's message (the message flow).
    Message,
}

impl RecordingKind {
    /// The `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Message => "message",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "message" {
            Self::Message
        } else {
            Self::Call
        }
    }
}

/// Where a recording's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingState {
    /// The call is still being recorded (a `.part` file in the spool).
    Recording,
    /// Finished, sealed, waiting in the spool for the uploader (a `.rec` file).
    Spooled,
    /// In the object store.
    Stored,
}

impl RecordingState {
    fn parse(s: &str) -> Self {
        match s {
            "stored" => Self::Stored,
            "spooled" => Self::Spooled,
            _ => Self::Recording,
        }
    }
}

/// One `media.recordings` row.
#[derive(Debug, Clone)]
pub struct RecordingRow {
    /// The recording id.
    pub id: Uuid,
    /// Its call.
    pub call_sid: String,
    /// Call or message.
    pub kind: RecordingKind,
    /// The tenant key version wrapping `wrapped_key`.
    pub key_version: i32,
    /// The data key, wrapped.
    pub wrapped_key: Vec<u8>,
    /// Frames per segment.
    pub segment_frames: u32,
    /// Spool or store.
    pub state: RecordingState,
    /// Stopped growing before the call ended (spool full, writer behind).
    pub truncated: bool,
    /// Stereo frames at 8 kHz (0 while recording).
    pub frames: u64,
    /// Bytes of the encrypted object.
    pub object_bytes: u64,
    /// When recording began.
    pub started_at: DateTime<Utc>,
    /// When it was sealed.
    pub finished_at: Option<DateTime<Utc>>,
}

impl RecordingRow {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.frames / 8
    }
}

const COLUMNS: &str = "id, call_sid, kind, key_version, wrapped_key, segment_frames, state, \
                       truncated, frames, object_bytes, started_at, finished_at";

fn row(r: &Row) -> RecordingRow {
    RecordingRow {
        id: r.get(0),
        call_sid: r.get(1),
        kind: RecordingKind::parse(r.get(2)),
        key_version: r.get(3),
        wrapped_key: r.get(4),
        segment_frames: u32::try_from(r.get::<_, i32>(5)).unwrap_or(1),
        state: RecordingState::parse(r.get(6)),
        truncated: r.get(7),
        frames: u64::try_from(r.get::<_, i64>(8)).unwrap_or(0),
        object_bytes: u64::try_from(r.get::<_, i64>(9)).unwrap_or(0),
        started_at: r.get(10),
        finished_at: r.get(11),
    }
}

/// A new recording row (state `recording`).
pub struct NewRecording<'a> {
    /// Id.
    pub id: Uuid,
    /// Its call (must exist).
    pub call_sid: &'a CallSid,
    /// Call or message.
    pub kind: RecordingKind,
    /// Tenant key version.
    pub key_version: i32,
    /// Wrapped data key.
    pub wrapped_key: &'a [u8],
    /// Frames per segment.
    pub segment_frames: u32,
}

/// Inserts a recording row.
pub async fn insert(tx: &Tx<'_>, r: &NewRecording<'_>) -> Result<(), MediaError> {
    tx.execute(
        "INSERT INTO media.recordings \
         (customer_id, id, call_sid, kind, key_version, wrapped_key, segment_frames) \
         VALUES (app.current_customer_id(), $1, $2, $3, $4, $5, $6)",
        &[
            &r.id,
            r.call_sid,
            &r.kind.as_str(),
            &r.key_version,
            &r.wrapped_key,
            &i32::try_from(r.segment_frames).unwrap_or(i32::MAX),
        ],
    )
    .await?;
    Ok(())
}

/// One recording of the tenant.
pub async fn get(tx: &Tx<'_>, id: Uuid) -> Result<Option<RecordingRow>, MediaError> {
    let r = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM media.recordings WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(r.as_ref().map(row))
}

/// The recordings of one call, oldest first.
pub async fn for_call(tx: &Tx<'_>, call_sid: &CallSid) -> Result<Vec<RecordingRow>, MediaError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM media.recordings WHERE call_sid = $1 \
                 ORDER BY started_at, id"
            ),
            &[call_sid],
        )
        .await?;
    Ok(rows.iter().map(row).collect())
}

/// The sealed file is in the spool: its length, frames and whether it was cut short. `false`
/// when the row is gone (the call was erased meanwhile).
pub async fn mark_spooled(
    tx: &Tx<'_>,
    id: Uuid,
    frames: u64,
    object_bytes: u64,
    truncated: bool,
) -> Result<bool, MediaError> {
    let n = tx
        .execute(
            "UPDATE media.recordings SET state = 'spooled', frames = $2, object_bytes = $3, \
             truncated = $4, finished_at = now() WHERE id = $1",
            &[
                &id,
                &i64::try_from(frames).unwrap_or(i64::MAX),
                &i64::try_from(object_bytes).unwrap_or(i64::MAX),
                &truncated,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// The object is in the store. `false` when the row is gone.
pub async fn mark_stored(tx: &Tx<'_>, id: Uuid) -> Result<bool, MediaError> {
    let n = tx
        .execute(
            "UPDATE media.recordings SET state = 'stored', stored_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Deletes a recording row; `false` when there was none.
pub async fn delete(tx: &Tx<'_>, id: Uuid) -> Result<bool, MediaError> {
    let n = tx
        .execute("DELETE FROM media.recordings WHERE id = $1", &[&id])
        .await?;
    Ok(n == 1)
}

/// One tenant key row: version, the platform version wrapping it, the wrapped key.
#[derive(Debug, Clone)]
pub struct TenantKeyRow {
    /// Tenant key version.
    pub version: i32,
    /// Platform key version that wraps it.
    pub platform_version: i32,
    /// The wrapped key.
    pub wrapped: Vec<u8>,
}

fn key_row(r: &Row) -> TenantKeyRow {
    TenantKeyRow {
        version: r.get(0),
        platform_version: r.get(1),
        wrapped: r.get(2),
    }
}

/// The tenant's newest key.
pub async fn current_tenant_key(tx: &Tx<'_>) -> Result<Option<TenantKeyRow>, MediaError> {
    let r = tx
        .query_opt(
            "SELECT version, platform_version, wrapped FROM media.recording_keys \
             ORDER BY version DESC LIMIT 1",
            &[],
        )
        .await?;
    Ok(r.as_ref().map(key_row))
}

/// The tenant's key of `version`.
pub async fn tenant_key(tx: &Tx<'_>, version: i32) -> Result<Option<TenantKeyRow>, MediaError> {
    let r = tx
        .query_opt(
            "SELECT version, platform_version, wrapped FROM media.recording_keys \
             WHERE version = $1",
            &[&version],
        )
        .await?;
    Ok(r.as_ref().map(key_row))
}

/// Every key of the tenant, locked for a rewrap.
pub async fn tenant_keys_for_update(tx: &Tx<'_>) -> Result<Vec<TenantKeyRow>, MediaError> {
    let rows = tx
        .query(
            "SELECT version, platform_version, wrapped FROM media.recording_keys \
             ORDER BY version FOR UPDATE",
            &[],
        )
        .await?;
    Ok(rows.iter().map(key_row).collect())
}

/// Adds a tenant key; `false` when that version exists already (a concurrent first recording).
pub async fn insert_tenant_key(tx: &Tx<'_>, key: &TenantKeyRow) -> Result<bool, MediaError> {
    let n = tx
        .execute(
            "INSERT INTO media.recording_keys (customer_id, version, platform_version, wrapped) \
             VALUES (app.current_customer_id(), $1, $2, $3) ON CONFLICT DO NOTHING",
            &[&key.version, &key.platform_version, &key.wrapped],
        )
        .await?;
    Ok(n == 1)
}

/// Replaces a tenant key's wrapping (platform key rotation).
pub async fn rewrap_tenant_key(tx: &Tx<'_>, key: &TenantKeyRow) -> Result<(), MediaError> {
    tx.execute(
        "UPDATE media.recording_keys SET platform_version = $2, wrapped = $3, \
         rewrapped_at = now() WHERE version = $1",
        &[&key.version, &key.platform_version, &key.wrapped],
    )
    .await?;
    Ok(())
}

/// Deletes every recording key of the tenant: its recordings can no longer be decrypted,
/// wherever copies of them are. Returns the keys deleted.
pub async fn destroy_tenant_keys(tx: &Tx<'_>) -> Result<u64, MediaError> {
    Ok(tx
        .execute(
            "DELETE FROM media.recording_keys WHERE customer_id = app.current_customer_id()",
            &[],
        )
        .await?)
}

/// Customers with a key wrapped by a platform key older than `current` (service transaction).
pub async fn rewrap_due_tenants(
    tx: &Tx<'_>,
    current: u32,
    max: i32,
) -> Result<Vec<CustomerId>, MediaError> {
    let rows = tx
        .query(
            "SELECT customer_id FROM media.recording_keys_to_rewrap($1, $2)",
            &[&i32::try_from(current).unwrap_or(i32::MAX), &max],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
