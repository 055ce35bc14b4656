//! Catalog and source gates (docs/security.md tests 2, 6 and 10): every tenant table is protected
//! by row-level security (enabled AND forced) with policies of the one canonical shape, views over
//! tenant data are security_invoker, SECURITY DEFINER functions are only the allow-listed ones, and
//! no code sets an `app` setting for the whole session (a plain SET, or set_config with is_local false).

use std::path::{Path, PathBuf};

use mesh::testkit::{
    SECURITY_DEFINER_ALLOW_LIST, TENANT_POLICY_EXPR, TestDb, assert_rls_everywhere,
    check_rls_everywhere,
};

#[tokio::test]
async fn fully_migrated_database_has_rls_everywhere() {
    let db = TestDb::new().await;
    let admin = db.admin_client().await;
    assert_rls_everywhere(&admin).await;

    // Re-running the migrations is a no-op (refinery's history table, checksums verified).
    let report = mesh::migrations::run_url(db.admin_url()).await.unwrap();
    assert!(report.applied_migrations().is_empty());

    // Everything the migrations created in the app schemas belongs to the owner role.
    let foreign_owned: Vec<String> = admin
        .query(
            "SELECT format('%s %I.%I', c.relkind, n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname IN ('app', 'tenant', 'memory', 'media') \
               AND c.relowner <> 'neurosphere_owner'::regrole \
             UNION ALL \
             SELECT format('function %s', p.oid::regprocedure) FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname IN ('app', 'tenant', 'memory', 'media') \
               AND p.proowner <> 'neurosphere_owner'::regrole",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        foreign_owned.is_empty(),
        "not owned by neurosphere_owner: {foreign_owned:?}"
    );

    // The policy helper is STABLE and executable by the service roles only.
    let row = admin
        .query_one(
            "SELECT provolatile::text, \
                    has_function_privilege('tenant_svc', p.oid, 'EXECUTE'), \
                    has_function_privilege('public', p.oid, 'EXECUTE') \
             FROM pg_proc p WHERE p.oid = 'app.current_customer_id()'::regprocedure",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "s");
    assert!(row.get::<_, bool>(1));
    assert!(!row.get::<_, bool>(2));
}

#[tokio::test]
async fn catalog_check_catches_unprotected_tables_and_views() {
    let db = TestDb::new().await;
    let admin = db.admin_client().await;
    admin
        .batch_execute(
            "SET ROLE neurosphere_owner;
             CREATE TABLE app.not_forced (customer_id bigint NOT NULL, id bigint NOT NULL,
                                          PRIMARY KEY (customer_id, id));
             ALTER TABLE app.not_forced ENABLE ROW LEVEL SECURITY;
             CREATE TABLE app.no_rls (customer_id bigint NOT NULL);
             CREATE TABLE app.protected (customer_id bigint NOT NULL);
             ALTER TABLE app.protected ENABLE ROW LEVEL SECURITY;
             ALTER TABLE app.protected FORCE ROW LEVEL SECURITY;
             CREATE TABLE app.parted (customer_id bigint NOT NULL) PARTITION BY LIST (customer_id);
             ALTER TABLE app.parted ENABLE ROW LEVEL SECURITY;
             ALTER TABLE app.parted FORCE ROW LEVEL SECURITY;
             CREATE TABLE app.parted_1 PARTITION OF app.parted FOR VALUES IN (1);
             CREATE VIEW app.definer_view AS SELECT customer_id FROM app.protected;
             CREATE VIEW app.invoker_view WITH (security_invoker = true) AS
                 SELECT customer_id FROM app.protected;
             CREATE TABLE app.platform (id bigint);
             CREATE VIEW app.constants AS SELECT 1 AS one;
             RESET ROLE;
             CREATE VIEW public.leaky_view AS SELECT customer_id FROM app.invoker_view;",
        )
        .await
        .unwrap();

    let offenders = check_rls_everywhere(&admin).await;
    let mentions = |name: &str| offenders.iter().any(|o| o.contains(name));
    assert!(mentions("app.not_forced"), "{offenders:#?}");
    assert!(mentions("app.no_rls"), "{offenders:#?}");
    assert!(
        mentions("app.parted_1"),
        "a bare partition is unprotected: {offenders:#?}"
    );
    assert!(mentions("app.definer_view"), "{offenders:#?}");
    assert!(!mentions("app.protected"), "{offenders:#?}");
    assert!(!mentions("app.invoker_view"), "{offenders:#?}");
    assert!(!mentions("app.platform"), "{offenders:#?}");
    assert!(
        !offenders.iter().any(|o| o.contains("app.parted ")),
        "{offenders:#?}"
    );
    assert!(
        mentions("public.leaky_view"),
        "views anywhere count: {offenders:#?}"
    );
    assert!(!mentions("app.constants"), "{offenders:#?}");
    assert_eq!(offenders.len(), 5, "{offenders:#?}");

    // The assert form panics with the list.
    let panic = tokio::spawn(async move { assert_rls_everywhere(&admin).await })
        .await
        .unwrap_err();
    let message = panic.into_panic();
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("app.not_forced"), "{message}");

    // Fixing the tables makes the check pass again.
    let admin = db.admin_client().await;
    admin
        .batch_execute(
            "ALTER TABLE app.not_forced FORCE ROW LEVEL SECURITY;
             DROP TABLE app.no_rls;
             ALTER TABLE app.parted_1 ENABLE ROW LEVEL SECURITY;
             ALTER TABLE app.parted_1 FORCE ROW LEVEL SECURITY;
             ALTER VIEW app.definer_view SET (security_invoker = on);
             DROP VIEW public.leaky_view;",
        )
        .await
        .unwrap();
    assert_rls_everywhere(&admin).await;
}

/// Offenders mentioning `needle`, to assert on one kind of finding at a time.
fn naming<'a>(offenders: &'a [String], needle: &str) -> Vec<&'a String> {
    offenders.iter().filter(|o| o.contains(needle)).collect()
}

#[tokio::test]
async fn migrated_tenant_policies_deparse_to_the_canonical_shape() {
    let db = TestDb::new().await;
    let admin = db.admin_client().await;
    // Every policy of the migrated database deparses to the canonical shape, or is an owner policy.
    let policies: Vec<(String, Option<String>, Option<String>)> = admin
        .query(
            "SELECT polname || ' on ' || polrelid::regclass::text, pg_get_expr(polqual, polrelid), \
                    pg_get_expr(polwithcheck, polrelid) FROM pg_policy \
             WHERE polroles <> ARRAY['neurosphere_owner'::regrole::oid]",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(policies.len() >= 15, "{policies:#?}");
    for (name, using, check) in &policies {
        assert_eq!(using.as_deref(), Some(TENANT_POLICY_EXPR), "{name}");
        assert_eq!(check.as_deref(), Some(TENANT_POLICY_EXPR), "{name}");
    }
}

#[tokio::test]
async fn catalog_check_catches_policies_of_another_shape() {
    let db = TestDb::new().await;
    let admin = db.admin_client().await;
    admin
        .batch_execute(
            "SET ROLE neurosphere_owner;
             CREATE TABLE app.p (customer_id bigint NOT NULL, owner_id bigint NOT NULL);
             ALTER TABLE app.p ENABLE ROW LEVEL SECURITY;
             ALTER TABLE app.p FORCE ROW LEVEL SECURITY;
             CREATE POLICY good ON app.p TO tenant_svc USING (customer_id = app.current_customer_id())
                 WITH CHECK (customer_id = app.current_customer_id());
             CREATE POLICY good_read ON app.p FOR SELECT USING (customer_id = app.current_customer_id());
             CREATE POLICY good_insert ON app.p FOR INSERT
                 WITH CHECK (customer_id = app.current_customer_id());
             CREATE POLICY owner_read ON app.p FOR SELECT TO neurosphere_owner USING (true);
             CREATE POLICY owner_delete ON app.p FOR DELETE TO neurosphere_owner USING (owner_id > 0);
             CREATE POLICY always ON app.p TO media_svc USING (true) WITH CHECK (true);
             CREATE POLICY no_check ON app.p USING (customer_id = app.current_customer_id());
             CREATE POLICY loose_check ON app.p FOR UPDATE USING (customer_id = app.current_customer_id())
                 WITH CHECK (true);
             CREATE POLICY other_column ON app.p USING (owner_id = app.current_customer_id())
                 WITH CHECK (owner_id = app.current_customer_id());
             CREATE POLICY widened ON app.p USING (customer_id = app.current_customer_id() OR true)
                 WITH CHECK (customer_id = app.current_customer_id());
             CREATE POLICY owner_writes ON app.p TO neurosphere_owner USING (true);
             CREATE POLICY owner_and_service ON app.p FOR SELECT TO neurosphere_owner, memory_svc
                 USING (true);
             RESET ROLE;",
        )
        .await
        .unwrap();
    let offenders = check_rls_everywhere(&admin).await;
    for fine in [
        "good ",
        "good_read ",
        "good_insert ",
        "owner_read ",
        "owner_delete ",
    ] {
        assert!(
            naming(&offenders, &format!("policy {fine}")).is_empty(),
            "{fine}: {offenders:#?}"
        );
    }
    assert_eq!(
        naming(&offenders, "policy always ").len(),
        2,
        "{offenders:#?}"
    );
    assert!(naming(&offenders, "policy no_check ")[0].contains("WITH CHECK (missing)"));
    assert!(naming(&offenders, "policy loose_check ")[0].contains("WITH CHECK true"));
    assert_eq!(
        naming(&offenders, "policy other_column ").len(),
        2,
        "{offenders:#?}"
    );
    assert_eq!(
        naming(&offenders, "policy widened ").len(),
        1,
        "{offenders:#?}"
    );
    assert!(naming(&offenders, "policy owner_writes ")[0].contains("not FOR SELECT"));
    assert_eq!(naming(&offenders, "policy owner_and_service ").len(), 1);
    assert_eq!(offenders.len(), 9, "{offenders:#?}");

    admin
        .batch_execute(
            "DROP POLICY always ON app.p; DROP POLICY no_check ON app.p;
             DROP POLICY loose_check ON app.p; DROP POLICY other_column ON app.p;
             DROP POLICY widened ON app.p; DROP POLICY owner_writes ON app.p;
             DROP POLICY owner_and_service ON app.p;",
        )
        .await
        .unwrap();
    assert_rls_everywhere(&admin).await;
}

#[tokio::test]
async fn security_definer_functions_are_the_allow_listed_ones_pinned_and_private() {
    let db = TestDb::new().await;
    let admin = db.admin_client().await;
    // Every allow-listed function exists as listed (the list never holds stale entries).
    for (signature, result) in SECURITY_DEFINER_ALLOW_LIST {
        let row = admin
            .query_one(
                "SELECT prosecdef, pg_get_function_result(oid) FROM pg_proc \
                 WHERE oid = $1::text::regprocedure",
                &[signature],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "{signature}");
        assert_eq!(row.get::<_, String>(1), *result, "{signature}");
    }
    admin
        .batch_execute(
            "SET ROLE neurosphere_owner;
             CREATE FUNCTION app.peek(p bigint) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
                 SET search_path = pg_catalog, pg_temp AS $$ SELECT 'x' $$;
             REVOKE ALL ON FUNCTION app.peek(bigint) FROM PUBLIC;
             CREATE FUNCTION tenant.resolve_number(p text) RETURNS bigint LANGUAGE sql
                 SECURITY DEFINER AS $$ SELECT 1::bigint $$;
             CREATE FUNCTION app.invoker() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
             DROP FUNCTION media.webhook_due_tenants(integer);
             CREATE FUNCTION media.webhook_due_tenants(max_tenants integer)
                 RETURNS TABLE (customer_id bigint, url text) LANGUAGE sql STABLE SECURITY DEFINER
                 SET search_path = pg_catalog, pg_temp AS $$ SELECT 1::bigint, 'u' $$;
             REVOKE ALL ON FUNCTION media.webhook_due_tenants(integer) FROM PUBLIC;
             ALTER FUNCTION tenant.list_customer_ids(bigint, integer) RESET search_path;
             ALTER FUNCTION memory.purge_expired_memories(integer)
                 SET search_path = pg_temp, pg_catalog;
             GRANT EXECUTE ON FUNCTION media.outbox_due_tenants(integer) TO PUBLIC;
             RESET ROLE;",
        )
        .await
        .unwrap();
    let offenders = check_rls_everywhere(&admin).await;
    let peek = naming(&offenders, "app.peek(bigint)");
    assert_eq!(peek.len(), 1, "{offenders:#?}");
    assert!(peek[0].contains("not in SECURITY_DEFINER_ALLOW_LIST"));
    // An overload of an allowed name is another function: unlisted (and unpinned).
    let overload = naming(&offenders, "tenant.resolve_number(text)");
    assert_eq!(overload.len(), 2, "{offenders:#?}");
    assert!(
        naming(&offenders, "app.invoker").is_empty(),
        "{offenders:#?}"
    );
    let widened = naming(&offenders, "media.webhook_due_tenants(integer)");
    assert!(widened[0].contains("the allow-list says TABLE(customer_id bigint)"));
    assert!(naming(&offenders, "tenant.list_customer_ids")[0].contains("search_path"));
    assert!(naming(&offenders, "memory.purge_expired")[0].contains("search_path"));
    assert!(naming(&offenders, "media.outbox_due_tenants")[0].contains("PUBLIC"));
    assert_eq!(offenders.len(), 7, "{offenders:#?}");

    admin
        .batch_execute(
            "DROP FUNCTION app.peek(bigint); DROP FUNCTION tenant.resolve_number(text);
             REVOKE EXECUTE ON FUNCTION media.outbox_due_tenants(integer) FROM PUBLIC;
             ALTER FUNCTION memory.purge_expired_memories(integer)
                 SET search_path = pg_catalog, pg_temp;
             ALTER FUNCTION tenant.list_customer_ids(bigint, integer)
                 SET search_path = pg_catalog, pg_temp;",
        )
        .await
        .unwrap();
    let offenders = check_rls_everywhere(&admin).await;
    assert_eq!(offenders.len(), 1, "{offenders:#?}");
}

/// Directories never scanned by the grep gate.
const SKIPPED_DIRS: [&str; 3] = ["target", ".git", "node_modules"];

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                source_files(&path, out);
            }
        } else if kind.is_file() && (name.ends_with(".rs") || name.ends_with(".sql")) {
            out.push(path);
        }
    }
}

/// Written on the line of a finding, or the line before it, this exempts one deliberate use (a
/// test proving the pool resets what a closure left behind); say why beside it.
const EXEMPTION: &str = "grep-gate: allow";

/// The text as the gate reads it: ASCII lower case, and backslashes (Rust string continuations
/// and escaped quotes) read as spaces; byte offsets are those of the original.
fn normalized(text: &str) -> String {
    text.to_ascii_lowercase().replace('\\', " ")
}

/// Byte offsets of every `SET [SESSION|LOCAL] app.` in `text` (any case, any whitespace, across
/// lines), with `SET` a whole word: this also catches a role or database default (`ALTER ROLE`). The needles are
/// assembled from pieces so this file never matches itself.
fn app_set_statements(text: &str) -> Vec<usize> {
    let set = ["s", "e", "t"].concat();
    let prefix = ["a", "p", "p", "."].concat();
    let scopes = [["sess", "ion"].concat(), ["lo", "cal"].concat()];
    let lower = normalized(text);
    let words: Vec<&str> = lower.split_whitespace().collect();
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        // `set` must end the word and start one (`"set` yes; `reset`, `offset` no).
        let Some(head) = word.strip_suffix(set.as_str()) else {
            continue;
        };
        if head
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let mut next = i + 1;
        if words
            .get(next)
            .is_some_and(|w| scopes.iter().any(|s| s == w))
        {
            next += 1;
        }
        if words.get(next).is_some_and(|w| w.starts_with(&prefix)) {
            found.push(word.as_ptr() as usize - lower.as_ptr() as usize);
        }
    }
    found
}

/// The arguments of the call whose `(` is at the start of `rest`, split at top-level commas
/// (quotes and nested parentheses respected), or `None` when it does not close within 400 bytes.
fn call_arguments(rest: &str) -> Option<Vec<String>> {
    let mut args = vec![String::new()];
    let (mut depth, mut quote) = (0_u32, None::<char>);
    for c in rest.chars().take(400) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(args.into_iter().map(|a| a.trim().to_owned()).collect());
                }
            }
            (None, ',') if depth == 1 => {
                args.push(String::new());
                continue;
            }
            _ => {}
        }
        args.last_mut()?.push(c);
    }
    None
}

/// Whether a SQL boolean argument is certainly `true` (`true`, `'on'`, `'yes'`, `1`, …, casts
/// allowed); anything else (`false`, a parameter, an expression) may be session-level.
fn certainly_true(arg: &str) -> bool {
    let bare = arg
        .trim_end_matches("::boolean")
        .trim_end_matches("::bool")
        .trim()
        .trim_matches(|c| c == '\'' || c == '"')
        .trim();
    matches!(
        bare,
        "true" | "tru" | "tr" | "t" | "on" | "yes" | "ye" | "y" | "1"
    )
}

/// Byte offsets of every `set_config(name, value, is_local)` in `text` whose name is an `app.`
/// literal (any quotes) or a bind parameter (`$1`), and whose `is_local` is not certainly true.
fn app_set_config_calls(text: &str) -> Vec<usize> {
    let needle = ["set_", "config"].concat();
    let prefix = ["a", "p", "p", "."].concat();
    let lower = normalized(text);
    let mut found = Vec::new();
    for (at, _) in lower.match_indices(&needle) {
        let before = lower[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = lower[at + needle.len()..].trim_start();
        if !rest.starts_with('(') {
            continue;
        }
        let Some(args) = call_arguments(rest) else {
            continue;
        };
        let [name, _, is_local] = args.as_slice() else {
            continue;
        };
        let name_literal = name.trim_matches(|c| c == '\'' || c == '"' || c == ' ');
        let may_be_app = (name.starts_with(['\'', '"']) && name_literal.starts_with(&prefix))
            || (name.starts_with('$') && name[1..].chars().all(|c| c.is_ascii_digit()));
        if may_be_app && !certainly_true(is_local) {
            found.push(at);
        }
    }
    found
}

/// 1-based line numbers of the session-level `app.` settings in `text`, in order, without the
/// exempted ones.
fn session_level_app_settings(text: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut offsets = app_set_statements(text);
    offsets.extend(app_set_config_calls(text));
    offsets.sort_unstable();
    let mut numbers: Vec<usize> = offsets
        .into_iter()
        .map(|at| text[..at].matches('\n').count() + 1)
        .filter(|&n| {
            let exempt = |i: usize| lines.get(i).is_some_and(|l| l.contains(EXEMPTION));
            !(exempt(n - 1) || n >= 2 && exempt(n - 2))
        })
        .collect();
    numbers.dedup();
    numbers
}

#[test]
fn grep_gate_matcher_for_set_statements() {
    let s = |parts: &[&str]| parts.concat();
    let hit = |text: String| session_level_app_settings(&text);
    assert_eq!(hit(s(&["SET", " app.customer_id = 1"])), [1]);
    assert_eq!(hit(s(&["  set\t", "APP.customer_id TO '1';"])), [1]);
    assert_eq!(hit(s(&["SET ", "SESSION   app.x = 1"])), [1]);
    assert_eq!(
        hit(s(&["batch_execute(\"SET", " LOCAL app.customer_id = 1\")"])),
        [1]
    );
    assert_eq!(hit(s(&["\"SET", " app.customer_id = 1\""])), [1]);
    // Across lines, through a Rust string continuation, and as a role default.
    assert_eq!(hit(s(&["x\n\"SE", "T \\\n   app.customer_id = 1\""])), [2]);
    assert_eq!(
        hit(s(&["ALTER ROLE media_svc SE", "T app.customer_id = 1"])),
        [1]
    );
    assert!(hit("SELECT set_config('app.customer_id', $1, true)".into()).is_empty());
    assert!(hit(s(&["RESET", " app.customer_id"])).is_empty());
    assert!(hit("SET LOCAL ROLE neurosphere_owner;".into()).is_empty());
    assert!(hit("SET statement_timeout = 1".into()).is_empty());
}

#[test]
fn grep_gate_matcher_for_set_config() {
    let call = |args: &str| [["set_con", "fig"].concat(), args.to_owned()].concat();
    let hit = |args: &str| session_level_app_settings(&call(args));
    for session in [
        "('app.customer_id', $1, false)",
        "( 'app.customer_id' ,'1',FALSE )",
        "(\"app.customer_id\", $1, false)",
        "(\\\"app.customer_id\\\", $1, false)",
        "('APP.customer_id', '1', 'f')",
        "('app.x', '1', 'off'::boolean)",
        "('app.customer_id', $1, $2)",
        "('app.customer_id', format('%s', 1), 0)",
        "($1, $2, false)",
        "('app.customer_id',\n      $1,\n      false)",
        "('app.customer_id', $1, \\\n  false)",
    ] {
        assert_eq!(hit(session), [1], "{session}");
    }
    assert_eq!(
        session_level_app_settings(
            &["SELECT pg_catalog.", &call("('app.x', '1', false)")].concat()
        ),
        [1]
    );
    for local in [
        "('app.customer_id', $1, true)",
        "('app.customer_id', $1, TRUE)",
        "('app.customer_id', '1', 'on'::bool)",
        "('statement_timeout', '1s', false)",
        "('probe.n', $1, false)",
        "(conn, customer, &set)",
        "(.., false)",
        "('app.customer_id', $1",
    ] {
        assert!(hit(local).is_empty(), "{local}");
    }
    let named = ["my_", &call("('app.x', '1', false)")].concat();
    assert!(session_level_app_settings(&named).is_empty());
    // The exemption covers its own line and the next one, nothing further.
    let exempt = format!(
        "// {EXEMPTION}: why\n{}\n\n{}",
        call("('app.x', '1', false)"),
        call("('app.y', '1', false)")
    );
    assert_eq!(session_level_app_settings(&exempt), [4]);
}

#[test]
fn no_session_level_set_of_app_settings_anywhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("mesh/src/db/pool.rs"))
            && files
                .iter()
                .any(|f| f.ends_with("migrations/V1__roles_and_schemas.sql")),
        "the scan did not reach the sources under {}",
        root.display()
    );
    let mut offenders = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        for number in session_level_app_settings(&text) {
            let shown = file.strip_prefix(&root).unwrap_or(file);
            let line = lines.get(number - 1).map_or("", |l| l.trim());
            offenders.push(format!("{}:{number}: {line}", shown.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "session-level setting of app.* leaks tenant context across pooled connections; \
         use `SELECT set_config('app.customer_id', $1, true)` inside Db::tenant_tx:\n  {}",
        offenders.join("\n  ")
    );
}
