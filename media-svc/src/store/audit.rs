//! `media.audit_log` (migration V15): one row per export or erasure, with the caller as the keyed
//! hash tenants see in webhook events (never the number). media-svc only adds and reads rows.

use chrono::{DateTime, Utc};
use mesh::api::common::TableCount;
use mesh::db::Tx;
use serde_json::{Map, Value as Json};

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

/// Appends an audit row for the current tenant; returns its creation time. `actor` is cut to
/// the column's 200 characters.
pub async fn audit(
    tx: &Tx<'_>,
    action: AuditAction,
    subject_hash: &str,
    actor: &str,
    counts: &[TableCount],
) -> Result<DateTime<Utc>, MediaError> {
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
                &uuid::Uuid::new_v4(),
                &action.as_str(),
                &subject_hash,
                &actor,
                &Json::Object(counts),
            ],
        )
        .await?;
    Ok(row.get(0))
}
