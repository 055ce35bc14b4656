//! `memory.audit_log`: one row per export or erase, with the caller as a keyed hash (never the
//! number), and the deployment's default key of that hash (migration V3).

use chrono::{DateTime, Utc};
use mesh::api::common::TableCount;
use mesh::api::memory::AuditEntry;
use mesh::audit::AuditPage;
use mesh::db::Tx;
use mesh::domain::CustomerId;
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use crate::error::Result;
use crate::model::AuditAction;

/// Appends an audit row; returns its id and creation time.
pub async fn audit(
    tx: &Tx<'_>,
    customer: CustomerId,
    action: AuditAction,
    subject_hash: &str,
    actor: &str,
    counts: &[TableCount],
) -> Result<(Uuid, DateTime<Utc>)> {
    let id = Uuid::new_v4();
    let counts_json: Map<String, Json> = counts
        .iter()
        .map(|c| (c.table.clone(), Json::from(c.rows)))
        .collect();
    let row = tx
        .query_one(
            "INSERT INTO memory.audit_log (customer_id, id, action, subject_hash, actor, counts) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
            &[
                &customer,
                &id,
                &action,
                &subject_hash,
                &actor,
                &Json::Object(counts_json),
            ],
        )
        .await?;
    Ok((id, row.get(0)))
}

/// One page of the tenant's audit rows, newest first (ties by id, descending), strictly older
/// than the page's cursor.
pub async fn list_audit(
    tx: &Tx<'_>,
    customer: CustomerId,
    page: &AuditPage,
) -> Result<Vec<AuditEntry>> {
    let (before_time, before_id) = page.before.unzip();
    let rows = tx
        .query(
            "SELECT id, action, subject_hash, actor, counts, created_at FROM memory.audit_log \
             WHERE customer_id = $1 \
               AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid)) \
             ORDER BY created_at DESC, id DESC LIMIT $4",
            &[&customer, &before_time, &before_id, &page.limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AuditEntry {
            id: r.get::<_, Uuid>(0).to_string(),
            action: r.get(1),
            subject_hash: r.get(2),
            actor: r.get(3),
            counts: table_counts(r.get(4)),
            create_time: Some(crate::wire::ts(r.get(5))),
        })
        .collect())
}

/// The `counts` column (`{"memory.memories": 3, ...}`) as the wire's list, by table name.
fn table_counts(counts: Json) -> Vec<TableCount> {
    let Json::Object(map) = counts else {
        return Vec::new();
    };
    map.into_iter()
        .map(|(table, rows)| TableCount {
            table,
            rows: rows.as_i64().unwrap_or_default(),
        })
        .collect()
}

/// The deployment's default audit hash key (migration V3).
pub async fn audit_hash_key(tx: &Tx<'_>) -> Result<Vec<u8>> {
    let row = tx
        .query_one("SELECT key FROM memory.audit_hash_key", &[])
        .await?;
    Ok(row.get(0))
}
