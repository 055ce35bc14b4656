//! `memory.caller_profiles`: read and partial update by the API. RecordCall's counters are
//! kept by [`super::calls`], in the same transaction as the summary they count.

use mesh::api::memory::CallerProfile;
use mesh::db::Tx;
use mesh::domain::{CallerNumber, CustomerId};
use serde_json::Value as Json;
use tokio_postgres::types::Type;

use super::P;
use super::rows::{self, PROFILE_COLS};
use crate::error::Result;

/// A profile update, parsed: `None` leaves a field unchanged.
#[derive(Debug, Default)]
pub struct ProfileUpdate {
    /// New preferred name.
    pub preferred_name: Option<String>,
    /// New preferences (a JSON object).
    pub preferences: Option<Json>,
    /// New context (a JSON object).
    pub context: Option<Json>,
}

/// A caller's profile.
pub async fn get_profile(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
) -> Result<Option<CallerProfile>> {
    let params: [P; 2] = [(&customer, Type::INT8), (user, Type::TEXT)];
    let rows = tx
        .query_typed(
            &format!(
                "SELECT {PROFILE_COLS} FROM memory.caller_profiles \
                 WHERE customer_id = $1 AND user_id = $2"
            ),
            &params,
        )
        .await?;
    Ok(rows.first().map(rows::profile))
}

/// Creates or partially updates a profile.
pub async fn upsert_profile(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
    update: &ProfileUpdate,
) -> Result<CallerProfile> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO memory.caller_profiles AS p \
                     (customer_id, user_id, preferred_name, preferences, context) \
                 VALUES ($1, $2, coalesce($3::text, ''), coalesce($4::jsonb, '{{}}'::jsonb), \
                         coalesce($5::jsonb, '{{}}'::jsonb)) \
                 ON CONFLICT (customer_id, user_id) DO UPDATE SET \
                     preferred_name = coalesce($3::text, p.preferred_name), \
                     preferences = coalesce($4::jsonb, p.preferences), \
                     context = coalesce($5::jsonb, p.context), \
                     updated_at = now() \
                 RETURNING {PROFILE_COLS}"
            ),
            &[
                &customer,
                user,
                &update.preferred_name,
                &update.preferences,
                &update.context,
            ],
        )
        .await?;
    Ok(rows::profile(&row))
}
