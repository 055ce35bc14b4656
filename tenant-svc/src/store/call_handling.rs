//! `tenant.call_handling` (V22): a customer's call-handling settings, the defaults
//! (`mesh::call_handling::defaults`) when the row was never written.

use mesh::api::tenant::CallHandling;
use mesh::db::Tx;
use mesh::domain::CustomerId;
use serde_json::Value;
use tokio_postgres::Row;

use crate::call_handling::{hours_from_json, hours_to_json, policy_from_text, policy_text};
use crate::error::Result;

const COLUMNS: &str = "recording_policy, recording_announcement, consent_prompt, retention_days, \
     message_prompt, message_max_seconds, opening_hours, messages_after_hours";

fn from_row(r: &Row) -> CallHandling {
    CallHandling {
        recording_policy: policy_from_text(r.get("recording_policy")) as i32,
        recording_announcement: r.get("recording_announcement"),
        consent_prompt: r.get("consent_prompt"),
        // The columns' CHECKs keep these within 1..=3650 and 10..=300.
        retention_days: u32::try_from(r.get::<_, i32>("retention_days")).unwrap_or(1),
        message_prompt: r.get("message_prompt"),
        message_max_seconds: u32::try_from(r.get::<_, i32>("message_max_seconds")).unwrap_or(10),
        opening_hours: Some(hours_from_json(&r.get::<_, Value>("opening_hours"))),
        messages_after_hours: r.get("messages_after_hours"),
    }
}

/// The stored settings, the defaults when never set (the customer's existence is the caller's
/// to check: RLS shows only the current tenant's row).
pub async fn load_call_handling(tx: &Tx<'_>, id: CustomerId) -> Result<CallHandling> {
    Ok(tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM tenant.call_handling WHERE customer_id = $1"),
            &[&id],
        )
        .await?
        .map(|r| from_row(&r))
        .unwrap_or_else(mesh::call_handling::defaults))
}

/// Writes the (validated) settings, creating the row on the first change.
pub async fn save_call_handling(tx: &Tx<'_>, id: CustomerId, s: &CallHandling) -> Result<()> {
    let policy = policy_text(mesh::call_handling::recording_policy(s));
    tx.execute(
        &format!(
            "INSERT INTO tenant.call_handling (customer_id, {COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (customer_id) DO UPDATE SET \
             recording_policy = EXCLUDED.recording_policy, \
             recording_announcement = EXCLUDED.recording_announcement, \
             consent_prompt = EXCLUDED.consent_prompt, \
             retention_days = EXCLUDED.retention_days, \
             message_prompt = EXCLUDED.message_prompt, \
             message_max_seconds = EXCLUDED.message_max_seconds, \
             opening_hours = EXCLUDED.opening_hours, \
             messages_after_hours = EXCLUDED.messages_after_hours, updated_at = now()"
        ),
        &[
            &id,
            &policy,
            &s.recording_announcement,
            &s.consent_prompt,
            &i32::try_from(s.retention_days).unwrap_or(i32::MAX),
            &s.message_prompt,
            &i32::try_from(s.message_max_seconds).unwrap_or(i32::MAX),
            &hours_to_json(s.opening_hours.as_ref()),
            &s.messages_after_hours,
        ],
    )
    .await?;
    Ok(())
}
