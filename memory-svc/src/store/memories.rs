//! `memory.memories`: store, list (keyset pages), delete, and the purge of expired rows.

use chrono::{DateTime, Utc};
use mesh::api::memory::Memory;
use mesh::db::Tx;
use mesh::domain::{CallerNumber, CustomerId};
use serde_json::Value as Json;
use tokio_postgres::types::Type;

use super::P;
use super::rows::{self, MEM_COLS};
use crate::error::{MemoryError, Result};
use crate::model::{MemoryKind, Scope};

/// A validated memory to store.
pub struct NewMemory {
    /// Caller.
    pub user_id: CallerNumber,
    /// Type.
    pub kind: MemoryKind,
    /// Key.
    pub key: String,
    /// Value.
    pub value: Json,
    /// Scope.
    pub scope: Scope,
    /// Source.
    pub source: String,
    /// TTL.
    pub ttl_days: i32,
}

/// Inserts a memory through V3's `memory.store_memory` (SECURITY INVOKER: the same RLS).
pub async fn insert_memory(tx: &Tx<'_>, customer: CustomerId, m: &NewMemory) -> Result<Memory> {
    let id = uuid::Uuid::new_v4();
    let params: [P; 9] = [
        (&customer, Type::INT8),
        (&id, Type::UUID),
        (&m.user_id, Type::TEXT),
        (&m.kind, Type::TEXT),
        (&m.key, Type::TEXT),
        (&m.value, Type::JSONB),
        (&m.scope, Type::TEXT),
        (&m.source, Type::TEXT),
        (&m.ttl_days, Type::INT4),
    ];
    let row = tx
        .query_typed(
            &format!(
                "SELECT {MEM_COLS} FROM memory.store_memory($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &params,
        )
        .await?;
    let row = row
        .first()
        .ok_or_else(|| MemoryError::Internal("insert returned no row".into()))?;
    Ok(rows::memory(row))
}

/// Keyset position of a page: (created_at, id) of the last row returned.
pub type Cursor = (DateTime<Utc>, uuid::Uuid);

/// Which memories a page lists.
pub struct MemoryQuery {
    /// Caller.
    pub user: CallerNumber,
    /// Only these types (all when empty).
    pub kinds: Vec<MemoryKind>,
    /// Only memories whose value has this `thread_id` (all when empty).
    pub thread_id: String,
    /// Rows after this position (from the start when `None`).
    pub after: Option<Cursor>,
    /// Page size.
    pub limit: i64,
}

/// Lists unexpired memories newest first; returns up to `limit + 1` rows (the extra one tells the
/// caller there is a next page).
pub async fn list_memories(
    tx: &Tx<'_>,
    customer: CustomerId,
    q: &MemoryQuery,
) -> Result<Vec<Memory>> {
    let (at, id) = match q.after {
        Some((t, i)) => (Some(t), Some(i)),
        None => (None, None),
    };
    let fetch = q.limit + 1;
    let params: [P; 7] = [
        (&customer, Type::INT8),
        (&q.user, Type::TEXT),
        (&q.kinds, Type::TEXT_ARRAY),
        (&q.thread_id, Type::TEXT),
        (&at, Type::TIMESTAMPTZ),
        (&id, Type::UUID),
        (&fetch, Type::INT8),
    ];
    let rows = tx
        .query_typed(
            &format!(
                "SELECT {MEM_COLS} FROM memory.memories \
                 WHERE customer_id = $1 AND user_id = $2 AND expires_at > now() \
                   AND (cardinality($3::text[]) = 0 OR type = ANY($3::text[])) \
                   AND ($4::text = '' OR value->>'thread_id' = $4::text) \
                   AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::uuid)) \
                 ORDER BY created_at DESC, id DESC LIMIT $7"
            ),
            &params,
        )
        .await?;
    Ok(rows.iter().map(rows::memory).collect())
}

/// Deletes one memory; false when this tenant has no such memory.
pub async fn delete_memory(tx: &Tx<'_>, customer: CustomerId, id: uuid::Uuid) -> Result<bool> {
    let n = tx
        .execute(
            "DELETE FROM memory.memories WHERE customer_id = $1 AND id = $2",
            &[&customer, &id],
        )
        .await?;
    Ok(n > 0)
}

/// Runs one purge batch (every tenant, through V3's `memory.purge_expired_memories`); returns
/// the rows deleted.
pub async fn purge_batch(tx: &Tx<'_>, batch: i32) -> Result<i64> {
    let row = tx
        .query_one("SELECT memory.purge_expired_memories($1)", &[&batch])
        .await?;
    Ok(row.get(0))
}
