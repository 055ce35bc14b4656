//! `media.audit_log` (migration V15): one row per export or erasure, with the caller as the keyed
//! hash tenants see in webhook events (never the number). media-svc only adds and reads rows.

use chrono::{DateTime, Utc};
use mesh::api::common::TableCount;
use mesh::api::media::ErasureAudit;
use mesh::audit::AuditPage;
use mesh::db::Tx;
use mesh::identity::names;
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use crate::error::MediaError;

/// What an audit row records: the text of `media.audit_log.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// A caller's calls were read out (ExportCaller).
    ExportCaller,
    /// A caller's calls were deleted (EraseCaller).
    EraseCaller,
    /// A tenant's call data was deleted (EraseTenant).
    EraseTenant,
}

impl AuditAction {
    /// The column's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExportCaller => "export_caller",
            Self::EraseCaller => "erase_caller",
            Self::EraseTenant => "erase_tenant",
        }
    }
}

/// Appends an audit row for the current tenant; returns its id and creation time. `actor` is
/// cut to the column's 200 characters.
pub async fn audit(
    tx: &Tx<'_>,
    action: AuditAction,
    subject_hash: &str,
    actor: &str,
    counts: &[TableCount],
) -> Result<(Uuid, DateTime<Utc>), MediaError> {
    let id = Uuid::new_v4();
    let counts: Map<String, Json> = counts
        .iter()
        .map(|c| (c.table.clone(), Json::from(c.rows)))
        .collect();
    let actor: String = actor.chars().take(200).collect();
    let row = tx
        .query_one(
            "INSERT INTO media.audit_log (customer_id, id, action, subject_hash, actor, counts) \
             VALUES (app.current_customer_id(), $1, $2, $3, $4, $5) RETURNING created_at",
            &[
                &id,
                &action.as_str(),
                &subject_hash,
                &actor,
                &Json::Object(counts),
            ],
        )
        .await?;
    Ok((id, row.get(0)))
}

/// One page of the current tenant's audit rows, newest first (ties by id, descending), strictly
/// older than the page's cursor.
pub async fn list_audit(tx: &Tx<'_>, page: &AuditPage) -> Result<Vec<ErasureAudit>, MediaError> {
    let (before_time, before_id) = page.before.unzip();
    let rows = tx
        .query(
            "SELECT id, action, subject_hash, actor, counts, created_at FROM media.audit_log \
             WHERE customer_id = app.current_customer_id() \
               AND ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2::uuid)) \
             ORDER BY created_at DESC, id DESC LIMIT $3",
            &[&before_time, &before_id, &page.limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ErasureAudit {
            service: names::MEDIA_SVC.into(),
            id: r.get::<_, Uuid>(0).to_string(),
            action: r.get(1),
            subject_hash: r.get(2),
            actor: r.get(3),
            counts: table_counts(r.get(4)),
            create_time: Some(super::timestamp(r.get(5))),
        })
        .collect())
}

/// The `counts` column (`{"media.calls": 2, ...}`) as the wire's list, by table name.
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
