//! Tenant-token revocation: the one mechanism by which a tenant's tokens stop working on every
//! service (suspension today, the portal's "revoke all tokens" later).
//!
//! tenant-svc keeps, per tenant, the second at or before which that tenant's tokens are refused
//! (`tenant.token_revocations`, V13). Every service holds a copy, [`Revocations`], refreshed
//! from `app.token_revocations()` (ids and timestamps only) every [`REFRESH_INTERVAL`] by
//! [`refresh_forever`]; the auth layer checks it on every tenant request AFTER verification,
//! whether the verification came from the verified-token cache or not. A suspended tenant's
//! tokens therefore stop within one interval (plus the query), well inside the promised 60 s.
//!
//! When the database cannot be read, the last copy stays in force (a revocation once seen is
//! never forgotten by a failed refresh) and the failure is logged and counted.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::db::Db;
use crate::domain::CustomerId;

/// How often every service re-reads the revocations.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Each revoked tenant and the second (Unix time) at or before which its tokens are refused.
/// Cheap to clone; clones share the copy.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    not_before: Arc<RwLock<HashMap<CustomerId, i64>>>,
}

impl Revocations {
    /// No tenant revoked (until the first refresh).
    pub fn new() -> Revocations {
        Revocations::default()
    }

    /// Whether a token of `customer` issued at `iat` is revoked. A token issued in the very
    /// second of the revocation is refused too (`iat` has whole seconds).
    pub fn is_revoked(&self, customer: CustomerId, iat: i64) -> bool {
        self.not_before
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&customer)
            .is_some_and(|not_before| iat <= *not_before)
    }

    /// Replaces the copy with `rows`.
    pub fn replace(&self, rows: HashMap<CustomerId, i64>) {
        *self
            .not_before
            .write()
            .unwrap_or_else(PoisonError::into_inner) = rows;
    }

    /// Reads every revocation from the database and replaces the copy; returns how many.
    pub async fn refresh(&self, db: &Db) -> Result<usize, crate::db::DbError> {
        let rows = db
            .service_tx(async |tx| {
                tx.query(
                    "SELECT customer_id, \
                            floor(extract(epoch FROM not_before))::bigint \
                     FROM app.token_revocations()",
                    &[],
                )
                .await
            })
            .await?;
        let map: HashMap<CustomerId, i64> = rows
            .iter()
            .filter_map(|r| Some((CustomerId::new(r.get(0)).ok()?, r.get::<_, i64>(1))))
            .collect();
        let n = map.len();
        self.replace(map);
        Ok(n)
    }
}

/// Refreshes `revocations` from `db` every `interval`, forever (abort the task to stop).
pub async fn refresh_forever(revocations: Revocations, db: Db, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = revocations.refresh(&db).await {
            metrics::counter!("mesh_revocation_refresh_failures_total").increment(1);
            tracing::warn!(error = %e, "cannot refresh token revocations; keeping the last copy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_issued_at_or_before_the_second_are_revoked_for_that_tenant_only() {
        let r = Revocations::new();
        let a = CustomerId::new(1).unwrap();
        let b = CustomerId::new(2).unwrap();
        assert!(!r.is_revoked(a, 100));
        r.replace(HashMap::from([(a, 100)]));
        assert!(r.is_revoked(a, 99));
        assert!(r.is_revoked(a, 100));
        assert!(!r.is_revoked(a, 101));
        assert!(!r.is_revoked(b, 0));
        let clone = r.clone();
        r.replace(HashMap::new());
        assert!(!clone.is_revoked(a, 99), "clones share the copy");
    }
}
