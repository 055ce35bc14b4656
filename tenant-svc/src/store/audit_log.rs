//! Reading `tenant.audit_log` (V16) for `TeamService.ListAuditEvents`: a page of the tenant's own
//! events below a cursor, and the e-mail addresses of the tenant's users who acted.

use chrono::{DateTime, Utc};
use mesh::db::Tx;
use mesh::domain::CustomerId;
use serde_json::Value as Json;

use crate::error::Result;

/// One row of `tenant.audit_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Its id (unique per customer).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (a token subject).
    pub actor: String,
    /// What, dotted.
    pub action: String,
    /// Details (an object).
    pub detail: Json,
}

/// Up to `limit` of the current tenant's events, newest first (ties by id, descending),
/// strictly older than `before` in that order (`None`: the newest).
pub async fn list_audit_log(
    tx: &Tx<'_>,
    id: CustomerId,
    before: Option<(DateTime<Utc>, i64)>,
    limit: i64,
) -> Result<Vec<AuditRow>> {
    let (before_at, before_id) = before.unzip();
    let rows = tx
        .query(
            "SELECT id, at, actor, action, detail FROM tenant.audit_log \
             WHERE customer_id = $1 \
               AND ($2::timestamptz IS NULL OR (at, id) < ($2, $3::bigint)) \
             ORDER BY at DESC, id DESC LIMIT $4",
            &[&id, &before_at, &before_id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AuditRow {
            id: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            detail: r.get(4),
        })
        .collect())
}

/// The e-mail addresses of the current tenant's users among `ids`, by id.
pub async fn user_emails(tx: &Tx<'_>, id: CustomerId, ids: &[i64]) -> Result<Vec<(i64, String)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "SELECT id, email FROM tenant.users WHERE customer_id = $1 AND id = ANY($2)",
            &[&id, &ids],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
