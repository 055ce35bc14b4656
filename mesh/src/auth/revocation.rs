//! Tenant-token revocation: the one mechanism by which tenant tokens stop working on every
//! service, for a whole tenant (suspension) or for one subject of a tenant (a revoked API key's
//! `api-key:<id>`, a demoted or removed portal user's `user:<id>`).
//!
//! tenant-svc keeps, per tenant, the second at or before which that tenant's tokens are refused
//! (`tenant.token_revocations`, V13), and per (tenant, token subject) the same for that subject's
//! tokens only (`tenant.token_subject_revocations`, V17). Every service holds a copy,
//! [`Revocations`], refreshed from `app.token_revocations()` and
//! `app.token_subject_revocations()` (ids and timestamps only) every [`REFRESH_INTERVAL`] by
//! [`refresh_forever`]; the auth layer checks it on every tenant request AFTER verification,
//! whether the verification came from the verified-token cache or not. A suspended tenant's
//! tokens, or a revoked key's, therefore stop within one interval (plus the query), well inside
//! the promised 60 s.
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

/// Each revoked tenant and the second (Unix time) at or before which its tokens are refused,
/// and each revoked (tenant, subject) with its second. Cheap to clone; clones share the copy.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    not_before: Arc<RwLock<HashMap<CustomerId, i64>>>,
    subjects: Arc<RwLock<HashMap<(CustomerId, String), i64>>>,
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

    /// Whether a token of `customer` for `subject` issued at `iat` is revoked: its whole
    /// tenant's tokens are ([`Revocations::is_revoked`]), or that subject's.
    pub fn refuses(&self, customer: CustomerId, subject: &str, iat: i64) -> bool {
        self.is_revoked(customer, iat)
            || self
                .subjects
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&(customer, subject.to_owned()))
                .is_some_and(|not_before| iat <= *not_before)
    }

    /// Replaces the copy of tenant revocations with `rows`.
    pub fn replace(&self, rows: HashMap<CustomerId, i64>) {
        *self
            .not_before
            .write()
            .unwrap_or_else(PoisonError::into_inner) = rows;
    }

    /// Replaces the copy of subject revocations with `rows`.
    pub fn replace_subjects(&self, rows: HashMap<(CustomerId, String), i64>) {
        *self
            .subjects
            .write()
            .unwrap_or_else(PoisonError::into_inner) = rows;
    }

    /// Reads every revocation from the database and replaces the copy; returns how many
    /// (tenants and subjects).
    pub async fn refresh(&self, db: &Db) -> Result<usize, crate::db::DbError> {
        let (tenants, subjects) = db
            .service_tx(async |tx| {
                let tenants = tx
                    .query(
                        "SELECT customer_id, \
                                floor(extract(epoch FROM not_before))::bigint \
                         FROM app.token_revocations()",
                        &[],
                    )
                    .await?;
                let subjects = tx
                    .query(
                        "SELECT customer_id, subject, \
                                floor(extract(epoch FROM not_before))::bigint \
                         FROM app.token_subject_revocations()",
                        &[],
                    )
                    .await?;
                Ok::<_, crate::db::DbError>((tenants, subjects))
            })
            .await?;
        let map: HashMap<CustomerId, i64> = tenants
            .iter()
            .filter_map(|r| Some((CustomerId::new(r.get(0)).ok()?, r.get::<_, i64>(1))))
            .collect();
        let subjects: HashMap<(CustomerId, String), i64> = subjects
            .iter()
            .filter_map(|r| {
                let customer = CustomerId::new(r.get(0)).ok()?;
                Some(((customer, r.get::<_, String>(1)), r.get::<_, i64>(2)))
            })
            .collect();
        let n = map.len() + subjects.len();
        self.replace(map);
        self.replace_subjects(subjects);
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

    #[test]
    fn a_revoked_subject_refuses_only_that_subjects_tokens_issued_at_or_before_its_second() {
        let r = Revocations::new();
        let a = CustomerId::new(1).unwrap();
        let b = CustomerId::new(2).unwrap();
        r.replace_subjects(HashMap::from([((a, "api-key:k1".to_owned()), 100)]));
        assert!(r.refuses(a, "api-key:k1", 100));
        assert!(!r.refuses(a, "api-key:k1", 101));
        assert!(!r.refuses(a, "api-key:k2", 50));
        assert!(!r.refuses(b, "api-key:k1", 50));
        assert!(!r.is_revoked(a, 50), "the tenant's other tokens stay valid");
        r.replace(HashMap::from([(b, 100)]));
        assert!(
            r.refuses(b, "anyone", 100),
            "a tenant revocation covers every subject"
        );
    }
}
