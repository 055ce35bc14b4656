//! The tenant's callers as the portal lists them (`ListCallers`), and the opaque caller id
//! (`memory.caller_profiles.caller_ref`, migration V18) that addresses one caller without its
//! number: resolved to the number inside the tenant's transaction, so another tenant's id finds
//! nothing, exactly like an unknown one.

use chrono::{DateTime, Utc};
use mesh::api::memory::CallerListing;
use mesh::db::Tx;
use mesh::domain::{CallerNumber, CustomerId};
use uuid::Uuid;

use crate::error::{MemoryError, Result};
use crate::wire;

/// Keyset position of a callers page: (activity, caller_ref) of the last row returned.
pub type CallerCursor = (DateTime<Utc>, Uuid);

/// What a callers page lists.
#[derive(Debug, Default)]
pub struct CallerQuery {
    /// Only callers whose preferred name contains this text (case-insensitive).
    pub name: Option<String>,
    /// Only callers whose number ends with these digits.
    pub last_digits: Option<String>,
    /// Continue after this position.
    pub after: Option<CallerCursor>,
    /// Page size.
    pub limit: i64,
}

/// A LIKE pattern matching `text` literally.
fn like_literal(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '\\' | '%' | '_' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// One page of callers, latest activity first, with the cursor of each row; one row past
/// `limit` when a next page exists.
pub async fn list_callers(
    tx: &Tx<'_>,
    customer: CustomerId,
    q: &CallerQuery,
) -> Result<Vec<(CallerListing, CallerCursor)>> {
    let name = q.name.as_deref().map(|n| format!("%{}%", like_literal(n)));
    let digits = q.last_digits.as_deref().map(|d| format!("%{d}"));
    let (after_at, after_ref) = q.after.unzip();
    let rows = tx
        .query(
            "SELECT user_id, caller_ref, preferred_name, total_calls, first_call_at, last_call_at, \
                    coalesce(last_call_at, created_at) \
             FROM memory.caller_profiles \
             WHERE customer_id = $1 \
               AND ($2::text IS NULL OR preferred_name ILIKE $2) \
               AND ($3::text IS NULL OR user_id LIKE $3) \
               AND ($4::timestamptz IS NULL \
                    OR (coalesce(last_call_at, created_at), caller_ref) < ($4, $5::uuid)) \
             ORDER BY coalesce(last_call_at, created_at) DESC, caller_ref DESC \
             LIMIT $6",
            &[
                &customer,
                &name,
                &digits,
                &after_at,
                &after_ref,
                &(q.limit + 1),
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let number = CallerNumber::parse(r.get(0))
                .map_err(|_| MemoryError::Internal("stored caller number is invalid".into()))?;
            let caller_ref: Uuid = r.get(1);
            let listing = CallerListing {
                caller_id: caller_ref.to_string(),
                masked_number: number.masked(),
                preferred_name: r.get(2),
                total_calls: r.get(3),
                first_call_time: r.get::<_, Option<DateTime<Utc>>>(4).map(wire::ts),
                last_call_time: r.get::<_, Option<DateTime<Utc>>>(5).map(wire::ts),
            };
            Ok((listing, (r.get(6), caller_ref)))
        })
        .collect()
}

/// The number of the caller with this opaque id, if this tenant has one.
pub async fn caller_by_ref(
    tx: &Tx<'_>,
    customer: CustomerId,
    caller_ref: Uuid,
) -> Result<Option<CallerNumber>> {
    let row = tx
        .query_opt(
            "SELECT user_id FROM memory.caller_profiles WHERE customer_id = $1 AND caller_ref = $2",
            &[&customer, &caller_ref],
        )
        .await?;
    row.map(|r| {
        CallerNumber::parse(r.get(0))
            .map_err(|_| MemoryError::Internal("stored caller number is invalid".into()))
    })
    .transpose()
}

/// The opaque id of a caller, if this tenant has a profile for it.
pub async fn ref_of_caller(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
) -> Result<Option<Uuid>> {
    let row = tx
        .query_opt(
            "SELECT caller_ref FROM memory.caller_profiles WHERE customer_id = $1 AND user_id = $2",
            &[&customer, user],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_the_text_literally() {
        assert_eq!(like_literal("Ann"), "Ann");
        assert_eq!(like_literal("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
