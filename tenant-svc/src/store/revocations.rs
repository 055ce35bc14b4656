//! `tenant.token_revocations` (V13): the second at or before which a tenant's tokens are refused
//! by every service's auth layer (`mesh::auth::Revocations`); `tenant.token_subject_revocations`
//! (V17): the same for one token subject of a tenant (`api-key:<id>`, `user:<id>`).

use mesh::db::Tx;
use mesh::domain::CustomerId;

use crate::error::Result;

/// Revokes every token of the current tenant issued up to now (suspension, deletion). Later
/// revocations move the second forward; it never moves back (reinstating does not revive old
/// tokens).
pub async fn revoke_tokens(tx: &Tx<'_>, id: CustomerId) -> Result<()> {
    tx.execute(
        "INSERT INTO tenant.token_revocations (customer_id, not_before) VALUES ($1, now()) \
         ON CONFLICT (customer_id) DO UPDATE \
         SET not_before = greatest(tenant.token_revocations.not_before, EXCLUDED.not_before), \
             updated_at = now()",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Revokes every token of the current tenant issued up to now for `subject` (a revoked API key's
/// `api-key:<id>`, a demoted or removed user's `user:<id>`); the tenant's other tokens stay
/// valid. Like [`revoke_tokens`], the second only moves forward. It is the statement's own
/// clock, not the transaction's start: a token minted while this transaction waited for a lock
/// (an exchange holding the key's row) is still covered.
pub async fn revoke_subject_tokens(tx: &Tx<'_>, id: CustomerId, subject: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO tenant.token_subject_revocations (customer_id, subject, not_before) \
         VALUES ($1, $2, clock_timestamp()) \
         ON CONFLICT (customer_id, subject) DO UPDATE \
         SET not_before = greatest(tenant.token_subject_revocations.not_before, EXCLUDED.not_before), \
             updated_at = now()",
        &[&id, &subject],
    )
    .await?;
    Ok(())
}
