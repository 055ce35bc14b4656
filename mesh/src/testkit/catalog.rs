//! The row-level security catalog check: every tenant table protected (enabled and forced), every
//! policy on it of the one canonical shape, views over tenant data `security_invoker`, no
//! materialized view over them, and SECURITY DEFINER functions only from
//! [`SECURITY_DEFINER_ALLOW_LIST`]. Run against the fully migrated database by mesh's tests (and by
//! each service's), and usable on any database a test builds.

use tokio_postgres::Client;

use super::APP_SCHEMAS;

/// The only SECURITY DEFINER functions the database may hold, as `(signature, result)`: the
/// signature as `oid::regprocedure` prints it, the result as `pg_get_function_result` prints it.
///
/// A definer function runs as `neurosphere_owner` and reads across tenants, so EVERY ENTRY MUST
/// RETURN IDS ONLY (customer ids, counts), never row contents: a caller learns which tenant, never
/// what a tenant holds, and then works inside that tenant's own transaction. Each must also pin
/// `search_path` (ending in `pg_temp`) and must not be executable by PUBLIC; the check enforces
/// both. A migration adding one adds its line here in the same commit.
pub const SECURITY_DEFINER_ALLOW_LIST: &[(&str, &str)] = &[
    // Number -> customer id for the call path (tenant-svc ResolveNumber).
    ("tenant.resolve_number(text,text)", "bigint"),
    // Customer ids, paginated, for the admin listing.
    ("tenant.list_customer_ids(bigint,integer)", "SETOF bigint"),
    // Deletes expired memories of every tenant; returns a count.
    ("memory.purge_expired_memories(integer)", "bigint"),
    // Customer ids with outbox rows due.
    (
        "media.outbox_due_tenants(integer)",
        "TABLE(customer_id bigint)",
    ),
    // Customer ids with webhook events due.
    (
        "media.webhook_due_tenants(integer)",
        "TABLE(customer_id bigint)",
    ),
    // Customer ids with a call older than a cutoff (V22), for media-svc's retention task.
    (
        "media.retention_tenants(timestamp with time zone,integer)",
        "TABLE(customer_id bigint)",
    ),
    // How many calls of all tenants hold a place under the message-call caps (V24): a count,
    // for media-svc's platform-wide cap.
    (
        "media.message_calls_in_progress(timestamp with time zone)",
        "bigint",
    ),
    // Customer ids holding a recording key wrapped by an older platform key (V20), for the
    // rewrap pass of a platform key rotation.
    (
        "media.recording_keys_to_rewrap(integer,integer)",
        "TABLE(customer_id bigint)",
    ),
    // Customer ids with usage in a month, a page at a time (V29), for the operator's monthly
    // totals of every tenant (media-svc `BillingAdminService`).
    (
        "media.usage_tenants(date,bigint,integer)",
        "TABLE(customer_id bigint)",
    ),
    // Customer ids holding a number being bought, held or being released (V26), for
    // media-svc's numbers reconcile.
    ("media.number_tenants()", "TABLE(customer_id bigint)"),
    // Customer ids and the second before which their tenant tokens are refused (V13), for
    // every service's auth layer.
    (
        "app.token_revocations()",
        "TABLE(customer_id bigint, not_before timestamp with time zone)",
    ),
    // Portal sign-in and reset requests (V16): every (customer, user) with a keyed e-mail hash.
    (
        "tenant.user_ids_by_email_hash(bytea)",
        "TABLE(customer_id bigint, user_id bigint)",
    ),
    // The portal's invitation page and acceptance (V16): the invitation with a token hash.
    (
        "tenant.invitation_id_by_token_hash(bytea)",
        "TABLE(customer_id bigint, invitation_id bigint)",
    ),
    // A portal password reset (V16): the reset with a token hash.
    (
        "tenant.password_reset_id_by_token_hash(bytea)",
        "TABLE(customer_id bigint, reset_id bigint)",
    ),
    // Every portal request (V16): the session with a secret hash.
    (
        "tenant.session_id_by_secret_hash(bytea)",
        "TABLE(customer_id bigint, session_id bigint)",
    ),
    // The API key exchange (V17): the key with a secret hash.
    (
        "tenant.api_key_id_by_secret_hash(bytea)",
        "TABLE(customer_id bigint, key_id uuid)",
    ),
    // Customer ids, token subjects (`api-key:<id>`, `user:<id>`) and the second before which
    // that subject's tenant tokens are refused (V17), for every service's auth layer.
    (
        "app.token_subject_revocations()",
        "TABLE(customer_id bigint, subject text, not_before timestamp with time zone)",
    ),
    // The offboarding task (V28): customers whose grace period has passed.
    (
        "tenant.due_offboardings(integer)",
        "TABLE(customer_id bigint)",
    ),
    // The operator console's dead-letter page (V28): per customer, a count.
    (
        "media.dead_letter_counts()",
        "TABLE(customer_id bigint, dead bigint)",
    ),
];

/// The one policy expression a tenant policy may have, as PostgreSQL deparses it
/// (`pg_get_expr`), in USING and in WITH CHECK alike.
pub const TENANT_POLICY_EXPR: &str = "(customer_id = app.current_customer_id())";

/// The role owning every object; policies bound to it alone serve the definer functions.
const OWNER_ROLE: &str = "neurosphere_owner";

/// The catalog check behind [`assert_rls_everywhere`]; returns one line per offender:
/// - every table (`relkind` r or p, partitions included) outside the system schemas that has a
///   `customer_id` column must have row-level security ENABLED and FORCED;
/// - every policy on such a table is a tenant policy, or an owner policy (see [`bad_policies`]);
/// - every SECURITY DEFINER function outside the system schemas is in
///   [`SECURITY_DEFINER_ALLOW_LIST`] with the listed result, pins `search_path` ending in
///   `pg_temp`, and is not executable by PUBLIC;
/// - every view over relations in [`APP_SCHEMAS`] or over tables with a `customer_id` column (in
///   any schema) must be `security_invoker = true`;
/// - no materialized view may read such relations (they cannot enforce row-level security).
pub async fn check_rls_everywhere(admin: &Client) -> Vec<String> {
    let mut offenders = unprotected_tables(admin).await;
    offenders.extend(bad_policies(admin).await);
    offenders.extend(unsafe_views(admin).await);
    offenders.extend(definer_functions(admin).await);
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

/// Policies on tables with a `customer_id` column that are neither
/// - a tenant policy: bound to any roles but the owner alone, with USING and WITH CHECK both
///   exactly [`TENANT_POLICY_EXPR`] where the command has them (ALL and UPDATE: both, explicitly,
///   since an omitted WITH CHECK silently reuses USING; SELECT and DELETE: USING; INSERT: WITH
///   CHECK), nor
/// - an owner policy: bound to `neurosphere_owner` alone, for SELECT or DELETE only. Only the
///   allow-listed definer functions run as the owner (it never logs in), so these policies are
///   what those functions may see across tenants; they can never insert or update.
async fn bad_policies(admin: &Client) -> Vec<String> {
    let rows = admin
        .query(
            "SELECT pg_catalog.format('%I on %I.%I', p.polname, n.nspname, c.relname), \
                    p.polcmd::text, \
                    ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END \
                          FROM pg_catalog.unnest(p.polroles) r ORDER BY 1), \
                    pg_catalog.pg_get_expr(p.polqual, p.polrelid), \
                    pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) \
             FROM pg_catalog.pg_policy p \
             JOIN pg_catalog.pg_class c ON c.oid = p.polrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                           WHERE a.attrelid = c.oid AND a.attname = 'customer_id' \
                             AND a.attnum > 0 AND NOT a.attisdropped) \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("catalog query (policies)");
    let mut offenders = Vec::new();
    for row in &rows {
        let name: String = row.get(0);
        let cmd: String = row.get(1);
        let roles: Vec<String> = row.get(2);
        let using: Option<String> = row.get(3);
        let check: Option<String> = row.get(4);
        if roles == [OWNER_ROLE] {
            if !matches!(cmd.as_str(), "r" | "d") {
                offenders.push(format!(
                    "policy {name} is bound to {OWNER_ROLE} but not FOR SELECT or FOR DELETE"
                ));
            }
            continue;
        }
        let (wants_using, wants_check) = match cmd.as_str() {
            "r" | "d" => (true, false),
            "a" => (false, true),
            _ => (true, true),
        };
        for (clause, wanted, expr) in [
            ("USING", wants_using, using),
            ("WITH CHECK", wants_check, check),
        ] {
            if wanted && expr.as_deref() != Some(TENANT_POLICY_EXPR) {
                offenders.push(format!(
                    "policy {name} has {clause} {} instead of {TENANT_POLICY_EXPR}",
                    expr.as_deref().unwrap_or("(missing)")
                ));
            }
        }
    }
    offenders
}

/// SECURITY DEFINER functions not in [`SECURITY_DEFINER_ALLOW_LIST`] (or with another result),
/// without a pinned `search_path` ending in `pg_temp`, or executable by PUBLIC.
async fn definer_functions(admin: &Client) -> Vec<String> {
    let rows = admin
        .query(
            "SELECT p.oid::regprocedure::text, pg_catalog.pg_get_function_result(p.oid), \
                    coalesce(p.proconfig, '{}')::text[], \
                    pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE') \
             FROM pg_catalog.pg_proc p \
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.prosecdef \
               AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("catalog query (definer functions)");
    let mut offenders = Vec::new();
    for row in &rows {
        let signature: String = row.get(0);
        let result: String = row.get(1);
        let config: Vec<String> = row.get(2);
        let public: bool = row.get(3);
        match SECURITY_DEFINER_ALLOW_LIST
            .iter()
            .find(|(listed, _)| *listed == signature)
        {
            None => offenders.push(format!(
                "SECURITY DEFINER function {signature} returning {result} is not in \
                 SECURITY_DEFINER_ALLOW_LIST (mesh/src/testkit/catalog.rs; ids only)"
            )),
            Some((_, listed)) if *listed != result => offenders.push(format!(
                "SECURITY DEFINER function {signature} returns {result}, the allow-list says {listed}"
            )),
            Some(_) => {}
        }
        if !pins_search_path(&config) {
            offenders.push(format!(
                "SECURITY DEFINER function {signature} does not pin search_path ending in pg_temp \
                 (SET search_path = pg_catalog, pg_temp)"
            ));
        }
        if public {
            offenders.push(format!(
                "SECURITY DEFINER function {signature} is executable by PUBLIC (REVOKE ALL ... FROM PUBLIC)"
            ));
        }
    }
    offenders
}

/// Whether a function's `proconfig` sets `search_path` with `pg_temp` last (when `pg_temp` is not
/// listed PostgreSQL searches it FIRST, so a temporary object could shadow anything).
fn pins_search_path(config: &[String]) -> bool {
    config.iter().any(|entry| {
        entry
            .split_once('=')
            .filter(|(key, _)| key.trim().eq_ignore_ascii_case("search_path"))
            .and_then(|(_, value)| value.split(',').next_back())
            .is_some_and(|last| last.trim().trim_matches('"') == "pg_temp")
    })
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
