//! `memory.audit_log`: one row per export or erase, with the caller as a keyed hash (never the
//! number), and the deployment's default key of that hash (migration V3).

use chrono::{DateTime, Utc};
use mesh::api::common::TableCount;
use mesh::db::Tx;
use mesh::domain::CustomerId;
use serde_json::{Map, Value as Json};

use crate::error::Result;
use crate::model::AuditAction;

/// Appends an audit row; returns its creation time.
pub async fn audit(
    tx: &Tx<'_>,
    customer: CustomerId,
    action: AuditAction,
    subject_hash: &str,
    actor: &str,
    counts: &[TableCount],
) -> Result<DateTime<Utc>> {
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
                &uuid::Uuid::new_v4(),
                &action,
                &subject_hash,
                &actor,
                &Json::Object(counts_json),
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// The deployment's default audit hash key (migration V3).
pub async fn audit_hash_key(tx: &Tx<'_>) -> Result<Vec<u8>> {
    let row = tx
        .query_one("SELECT key FROM memory.audit_hash_key", &[])
        .await?;
    Ok(row.get(0))
}
