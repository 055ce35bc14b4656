//! The start-up self-check: a service refuses to serve when its role could bypass row-level
//! security, since then RLS would isolate nothing.

use super::{Db, DbError};

impl Db {
    /// Start-up self-check: refuses when the connected role is a superuser, has BYPASSRLS, is a
    /// member of such a role, or owns (directly or through membership) any table, partitioned
    /// table, view, materialized view or foreign table outside the system schemas. Each of these
    /// would let the service bypass row-level security. Services call this before serving.
    pub async fn self_check(&self) -> Result<(), DbError> {
        let conn = self.checkout().await?;
        let me = conn
            .query_one(
                "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls \
                 FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await?;
        let role: String = me.get(0);
        if me.get::<_, bool>(1) {
            return Err(DbError::Superuser { role });
        }
        if me.get::<_, bool>(2) {
            return Err(DbError::BypassRls { role });
        }

        let granted: Vec<String> = conn
            .query(
                "SELECT r.rolname::text FROM pg_catalog.pg_roles r \
                 WHERE r.rolname <> current_user AND (r.rolsuper OR r.rolbypassrls) \
                   AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') \
                 ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if !granted.is_empty() {
            return Err(DbError::PrivilegedMembership { role, granted });
        }

        let owned = conn
            .query(
                "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), count(*) OVER () \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
                   AND pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER') \
                 ORDER BY 1 LIMIT 10",
                &[],
            )
            .await?;
        if let Some(first) = owned.first() {
            return Err(DbError::OwnsTables {
                role,
                count: first.get(1),
                examples: owned.iter().map(|row| row.get(0)).collect(),
            });
        }
        Ok(())
    }
}
