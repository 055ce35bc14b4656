//! Erasure: one caller's rows (`EraseCaller`, a data-subject request) or all of a tenant's
//! (`EraseTenant`, when the customer is deleted), each returning what it deleted per table.
//!
//! The tables each erasure covers are listed once ([`CALLER_TABLES`], [`TENANT_TABLES`]);
//! `media-svc/tests/it/erase.rs` reads the catalog and fails when a table of the `media` schema
//! that holds a caller, a call or a tenant's rows is in neither list nor in [`KEPT_TABLES`].

use mesh::api::common::TableCount;
use mesh::db::Tx;
use mesh::domain::CallerNumber;

use super::count;
use crate::error::MediaError;

/// What erasing one caller deletes, in order (every table but `calls` finds its rows through the
/// caller's calls; each also references `calls` with `ON DELETE CASCADE`, so a row written by a
/// racing transaction cannot outlive its call).
pub const CALLER_TABLES: [(&str, &str); 6] = [
    // The row holds the recording's wrapped data key: deleting it makes the recording
    // unreadable. The objects are deleted first through `Recordings::delete`.
    (
        "media.recordings",
        "DELETE FROM media.recordings r USING media.calls c \
         WHERE r.customer_id = c.customer_id AND r.call_sid = c.call_sid AND c.caller = $1",
    ),
    (
        "media.callback_tasks",
        "DELETE FROM media.callback_tasks t USING media.calls c \
         WHERE t.customer_id = c.customer_id AND t.call_sid = c.call_sid AND c.caller = $1",
    ),
    (
        "media.webhook_events",
        "DELETE FROM media.webhook_events w USING media.calls c \
         WHERE w.customer_id = c.customer_id AND w.call_sid = c.call_sid AND c.caller = $1",
    ),
    (
        "media.transcript_turns",
        "DELETE FROM media.transcript_turns t USING media.calls c \
         WHERE t.customer_id = c.customer_id AND t.call_sid = c.call_sid AND c.caller = $1",
    ),
    (
        "media.outbox",
        "DELETE FROM media.outbox o USING media.calls c \
         WHERE o.customer_id = c.customer_id AND o.call_sid = c.call_sid AND c.caller = $1",
    ),
    ("media.calls", "DELETE FROM media.calls WHERE caller = $1"),
];

/// What erasing a tenant deletes, in order (rows referencing `calls` first).
pub const TENANT_TABLES: [&str; 13] = [
    "media.numbers",
    "media.callback_tasks",
    "media.recordings",
    // Destroying the tenant's recording keys makes every copy of its recordings unreadable.
    "media.recording_keys",
    "media.webhook_events",
    "media.transcript_turns",
    "media.outbox",
    "media.usage_monthly",
    "media.package_assignments",
    "media.cap_notices",
    "media.outbound_reservations",
    "media.outbound_address_charges",
    "media.calls",
];

/// Tables an erasure keeps, and why: they hold no caller data.
pub const KEPT_TABLES: [(&str, &str); 5] = [
    (
        "media.audit_log",
        "the record of exports and erasures: a keyed hash, an actor, counts",
    ),
    (
        "media.caller_hash_key",
        "the deployment's hash key; no tenant, no caller",
    ),
    (
        "media.billing_packages",
        "the platform's packages; no tenant, no caller",
    ),
    (
        "media.rate_cards",
        "the platform's prices; no tenant, no caller",
    ),
    (
        "media.billing_default_packages",
        "the platform's default package by month; no tenant, no caller",
    ),
];

/// Deletes one caller's rows ([`CALLER_TABLES`]).
pub async fn erase_caller(
    tx: &Tx<'_>,
    caller: &CallerNumber,
) -> Result<Vec<TableCount>, MediaError> {
    let mut counts = Vec::new();
    for (table, statement) in CALLER_TABLES {
        let n = tx.execute(statement, &[caller]).await?;
        counts.push(count(table, n));
    }
    Ok(counts)
}

/// Deletes every media row of the current tenant ([`TENANT_TABLES`]).
pub async fn erase_tenant(tx: &Tx<'_>) -> Result<Vec<TableCount>, MediaError> {
    let mut counts = Vec::new();
    for table in TENANT_TABLES {
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
