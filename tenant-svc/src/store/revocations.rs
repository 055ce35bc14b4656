//! `tenant.token_revocations` (V13): the second at or before which a tenant's tokens are refused
//! by every service's auth layer (`mesh::auth::Revocations`).

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
