//! Erasure: one caller's rows (`EraseCaller`, a data-subject request) or all of a tenant's
//! (`EraseTenant`, when the customer is deleted), each returning what it deleted per table.

use mesh::api::common::TableCount;
use mesh::db::Tx;
use mesh::domain::CallerNumber;

use super::count;
use crate::error::MediaError;

/// Deletes one caller's transcript turns, outbox rows and calls (in that order: the first two
/// find their rows through the calls).
pub async fn erase_caller(
    tx: &Tx<'_>,
    caller: &CallerNumber,
) -> Result<Vec<TableCount>, MediaError> {
    let mut counts = Vec::new();
    for (table, statement) in [
        (
            "media.transcript_turns",
            "DELETE FROM media.transcript_turns t USING media.calls c \
             WHERE t.call_sid = c.call_sid AND c.caller = $1",
        ),
        (
            "media.outbox",
            "DELETE FROM media.outbox o USING media.calls c \
             WHERE o.call_sid = c.call_sid AND c.caller = $1",
        ),
        ("media.calls", "DELETE FROM media.calls WHERE caller = $1"),
    ] {
        let n = tx.execute(statement, &[caller]).await?;
        counts.push(count(table, n));
    }
    Ok(counts)
}

/// Deletes every media row of the current tenant.
pub async fn erase_tenant(tx: &Tx<'_>) -> Result<Vec<TableCount>, MediaError> {
    let mut counts = Vec::new();
    for table in [
        "media.transcript_turns",
        "media.outbox",
        "media.usage_monthly",
        "media.outbound_reservations",
        "media.calls",
    ] {
        // RLS confines the DELETE to the tenant of this transaction; the WHERE repeats it so the
        // statement would be harmless even without the policy.
        let n = tx
            .execute(
                &format!("DELETE FROM {table} WHERE customer_id = app.current_customer_id()"),
                &[],
            )
            .await?;
        counts.push(count(table, n));
    }
    Ok(counts)
}
