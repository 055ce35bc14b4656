//! `tenant.customer_configurations`: the append-only history of every configuration change.

use mesh::api::tenant as pb;
use mesh::db::Tx;
use mesh::domain::CustomerId;
use serde_json::Value;

use crate::error::Result;
use crate::history::Change;
use crate::wire::timestamp;

/// Appends history rows.
pub async fn record_changes(
    tx: &Tx<'_>,
    id: CustomerId,
    changes: &[Change],
    by: &str,
) -> Result<()> {
    for c in changes {
        tx.execute(
            "INSERT INTO tenant.customer_configurations \
             (customer_id, config_type, config_key, old_value, new_value, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&id, &c.config_type.as_str(), &c.key, &c.old, &c.new, &by],
        )
        .await?;
    }
    Ok(())
}

/// History, newest first, ids below `before`.
pub async fn list_history(
    tx: &Tx<'_>,
    id: CustomerId,
    before: i64,
    limit: i64,
) -> Result<Vec<pb::ConfigChange>> {
    let rows = tx
        .query(
            "SELECT id, config_type, config_key, old_value, new_value, created_by, created_at \
             FROM tenant.customer_configurations WHERE customer_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3",
            &[&id, &before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let text = |v: Option<Value>| v.map(|v| v.to_string()).unwrap_or_default();
            pb::ConfigChange {
                id: r.get(0),
                config_type: r.get(1),
                config_key: r.get(2),
                old_value_json: text(r.get(3)),
                new_value_json: text(r.get(4)),
                changed_by: r.get(5),
                change_time: Some(timestamp(r.get(6))),
            }
        })
        .collect())
}

/// One history entry of the customer: (config_type, config_key, old_value); `None` when `change`
/// is not in its history.
pub async fn config_change(
    tx: &Tx<'_>,
    id: CustomerId,
    change: i64,
) -> Result<Option<(String, String, Option<Value>)>> {
    let row = tx
        .query_opt(
            "SELECT config_type, config_key, old_value FROM tenant.customer_configurations \
             WHERE customer_id = $1 AND id = $2",
            &[&id, &change],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}
