//! Catalog and source gates (docs/security.md tests 2, 6 and 10): every tenant table is protected
//! by row-level security (enabled AND forced), views over tenant data are security_invoker, and no
//! code sets `app.*` with a session-level SET.

use std::path::{Path, PathBuf};

use mesh::testkit::{TestDb, assert_rls_everywhere, check_rls_everywhere};

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

/// Whether `line` contains `SET [SESSION|LOCAL] app.` (any case, any whitespace), with `SET` as a
/// whole word. The needles are assembled from pieces so this file never matches itself.
fn sets_app_setting(line: &str) -> bool {
    let set = ["s", "e", "t"].concat();
    let prefix = ["a", "p", "p", "."].concat();
    let scopes = [["sess", "ion"].concat(), ["lo", "cal"].concat()];
    let lower = line.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
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
            return true;
        }
    }
    false
}

#[test]
fn grep_gate_matcher() {
    let s = |parts: &[&str]| parts.concat();
    assert!(sets_app_setting(&s(&["SET", " app.customer_id = 1"])));
    assert!(sets_app_setting(&s(&[
        "  set\t",
        "APP.customer_id TO '1';"
    ])));
    assert!(sets_app_setting(&s(&["SET ", "SESSION   app.x = 1"])));
    assert!(sets_app_setting(&s(&[
        "batch_execute(\"SET",
        " LOCAL app.customer_id = 1\")"
    ])));
    assert!(sets_app_setting(&s(&["\"SET", " app.customer_id = 1\""])));
    assert!(!sets_app_setting(
        "SELECT set_config('app.customer_id', $1, true)"
    ));
    assert!(!sets_app_setting(&s(&["RESET", " app.customer_id"])));
    assert!(!sets_app_setting("SET LOCAL ROLE neurosphere_owner;"));
    assert!(!sets_app_setting("SET statement_timeout = 1"));
}

#[test]
fn no_session_level_set_of_app_settings_anywhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("mesh/src/db/pool.rs")),
        "the scan did not reach the sources under {}",
        root.display()
    );
    let mut offenders = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if sets_app_setting(line) {
                let shown = file.strip_prefix(&root).unwrap_or(file);
                offenders.push(format!(
                    "{}:{}: {}",
                    shown.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "session-level SET of an app.* setting leaks tenant context across pooled connections; \
         use `SELECT set_config('app.customer_id', $1, true)` inside Db::tenant_tx:\n  {}",
        offenders.join("\n  ")
    );
}
