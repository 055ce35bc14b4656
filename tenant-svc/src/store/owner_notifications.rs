//! V25's `tenant.owner_notifications`: which owners were mailed about which callback task, and
//! the owners a notice is for. Everything runs in the tenant's own transaction.

use mesh::db::Tx;
use mesh::domain::CustomerId;
use uuid::Uuid;

use crate::error::Result;

/// An owner to mail.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// The user.
    pub user_id: i64,
    /// Their address (their own, never logged).
    pub email: String,
}

/// The customer's active owners, oldest first, split into those not yet mailed about `task` and
/// how many already were.
pub async fn recipients(tx: &Tx<'_>, id: CustomerId, task: Uuid) -> Result<(Vec<Recipient>, u32)> {
    let rows = tx
        .query(
            "SELECT u.id, u.email, n.user_id IS NOT NULL FROM tenant.users u \
             LEFT JOIN tenant.owner_notifications n \
               ON n.customer_id = u.customer_id AND n.user_id = u.id AND n.task_id = $2 \
             WHERE u.customer_id = $1 AND u.role = 'owner' AND u.disabled_at IS NULL \
             ORDER BY u.id",
            &[&id, &task],
        )
        .await?;
    let mut todo = Vec::new();
    let mut done = 0;
    for r in &rows {
        if r.get::<_, bool>(2) {
            done += 1;
        } else {
            todo.push(Recipient {
                user_id: r.get(0),
                email: r.get(1),
            });
        }
    }
    Ok((todo, done))
}

/// Records that `user_id` was mailed about `task`; `false` when that was already recorded.
pub async fn record(tx: &Tx<'_>, id: CustomerId, task: Uuid, user_id: i64) -> Result<bool> {
    let n = tx
        .execute(
            "INSERT INTO tenant.owner_notifications (customer_id, task_id, user_id) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&id, &task, &user_id],
        )
        .await?;
    Ok(n == 1)
}
