//! The row-level security catalog check: every tenant table protected (enabled and forced),
//! views over tenant data `security_invoker`, no materialized view over them. Run against the
//! fully migrated database by mesh's tests, and usable on any database a test builds.

use tokio_postgres::Client;

use super::APP_SCHEMAS;

/// The catalog check behind [`assert_rls_everywhere`]; returns one line per offender:
/// - every table (`relkind` r or p, partitions included) outside the system schemas that has a
///   `customer_id` column must have row-level security ENABLED and FORCED;
/// - every view over relations in [`APP_SCHEMAS`] or over tables with a `customer_id` column (in
///   any schema) must be `security_invoker = true`;
/// - no materialized view may read such relations (they cannot enforce row-level security).
pub async fn check_rls_everywhere(admin: &Client) -> Vec<String> {
    let mut offenders = unprotected_tables(admin).await;
    offenders.extend(unsafe_views(admin).await);
    offenders
}

/// Tables with a `customer_id` column whose row-level security is not enabled and forced.
async fn unprotected_tables(admin: &Client) -> Vec<String> {
    let mut offenders = Vec::new();
    let tables = admin
        .query(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), \
                    c.relkind::text, c.relrowsecurity, c.relforcerowsecurity \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') \
               AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                           WHERE a.attrelid = c.oid AND a.attname = 'customer_id' \
                             AND a.attnum > 0 AND NOT a.attisdropped) \
               AND NOT (c.relrowsecurity AND c.relforcerowsecurity) \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("catalog query (tables)");
    for row in &tables {
        let name: String = row.get(0);
        let enabled: bool = row.get(2);
        let forced: bool = row.get(3);
        let missing = match (enabled, forced) {
            (false, false) => "ENABLE and FORCE ROW LEVEL SECURITY",
            (false, true) => "ENABLE ROW LEVEL SECURITY",
            _ => "FORCE ROW LEVEL SECURITY",
        };
        offenders.push(format!("table {name} has customer_id but lacks {missing}"));
    }
    offenders
}

/// Views over tenant data that are not `security_invoker`, and materialized views over it.
async fn unsafe_views(admin: &Client) -> Vec<String> {
    let mut offenders = Vec::new();
    let views = admin
        .query(
            "WITH sensitive AS ( \
                 SELECT c.oid FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = ANY($1) \
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                               WHERE a.attrelid = c.oid AND a.attname = 'customer_id' \
                                 AND a.attnum > 0 AND NOT a.attisdropped) \
             ) \
             SELECT pg_catalog.format('%I.%I', n.nspname, v.relname), v.relkind::text, \
                    coalesce(v.reloptions, '{}')::text[] \
             FROM pg_catalog.pg_class v \
             JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace \
             WHERE v.relkind IN ('v', 'm') \
               AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
               AND EXISTS ( \
                   SELECT 1 FROM pg_catalog.pg_rewrite r \
                   JOIN pg_catalog.pg_depend d \
                     ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
                    AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                   WHERE r.ev_class = v.oid AND d.refobjid <> v.oid \
                     AND d.refobjid IN (SELECT oid FROM sensitive)) \
             ORDER BY 1",
            &[&APP_SCHEMAS.map(str::to_owned).to_vec()],
        )
        .await
        .expect("catalog query (views)");
    for row in &views {
        let name: String = row.get(0);
        let kind: String = row.get(1);
        let options: Vec<String> = row.get(2);
        if kind == "m" {
            offenders.push(format!(
                "materialized view {name} reads tenant data but cannot enforce row-level security"
            ));
            continue;
        }
        let invoker = options.iter().any(|o| {
            o.split_once('=').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("security_invoker")
                    && matches!(v.to_ascii_lowercase().as_str(), "true" | "on" | "1" | "yes")
            })
        });
        if !invoker {
            offenders.push(format!(
                "view {name} reads tenant data but is not WITH (security_invoker = true)"
            ));
        }
    }
    offenders
}

/// Panics, listing every offender, unless [`check_rls_everywhere`] finds none.
pub async fn assert_rls_everywhere(admin: &Client) {
    let offenders = check_rls_everywhere(admin).await;
    assert!(
        offenders.is_empty(),
        "row-level security is missing on {} relation(s):\n  {}",
        offenders.len(),
        offenders.join("\n  ")
    );
}
