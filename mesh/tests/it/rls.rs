//! Row-level security as the services see it, against a real PostgreSQL (docs/security.md,
//! "PostgreSQL row-level security"): isolation without WHERE clauses, failing closed without
//! tenant context, no leak across pooled connections or cancelled requests, cross-tenant writes
//! refused, and the start-up self-check.

use std::time::Duration;

use mesh::db::{Db, DbError};
use mesh::domain::CustomerId;
use mesh::testkit::TestDb;
use tokio_postgres::error::SqlState;

const A: i64 = 1;
const B: i64 = 2;

fn tenant(id: i64) -> CustomerId {
    CustomerId::new(id).unwrap()
}

/// A fresh database with `app.rls_probe` (owned by neurosphere_owner, RLS enabled + forced, the
/// standard policy, DML granted to tenant_svc) holding 3 rows of tenant A and 2 of tenant B.
async fn probe_db() -> TestDb {
    let db = TestDb::new().await;
    let admin = db.admin_client().await;
    admin
        .batch_execute(
            "BEGIN;
             SET LOCAL ROLE neurosphere_owner;
             CREATE TABLE app.rls_probe (
                 customer_id bigint NOT NULL,
                 id bigint NOT NULL,
                 body text NOT NULL,
                 PRIMARY KEY (customer_id, id)
             );
             ALTER TABLE app.rls_probe ENABLE ROW LEVEL SECURITY;
             ALTER TABLE app.rls_probe FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON app.rls_probe
                 USING (customer_id = app.current_customer_id())
                 WITH CHECK (customer_id = app.current_customer_id());
             GRANT SELECT, INSERT, UPDATE, DELETE ON app.rls_probe TO tenant_svc;
             RESET ROLE;
             INSERT INTO app.rls_probe (customer_id, id, body) VALUES
                 (1, 1, 'a-one'), (1, 2, 'a-two'), (1, 3, 'a-three'),
                 (2, 1, 'b-one'), (2, 2, 'b-two');
             COMMIT;",
        )
        .await
        .expect("create app.rls_probe");
    db
}

/// Row count per tenant, as admin (superuser: bypasses RLS).
async fn count_as_admin(db: &TestDb, customer: i64) -> i64 {
    db.admin_client()
        .await
        .query_one(
            "SELECT count(*) FROM app.rls_probe WHERE customer_id = $1",
            &[&customer],
        )
        .await
        .unwrap()
        .get(0)
}

async fn select_all(db: &Db, customer: i64) -> Vec<(i64, i64, String)> {
    db.tenant_tx(tenant(customer), async |tx| {
        let rows = tx
            .query(
                "SELECT customer_id, id, body FROM app.rls_probe ORDER BY id",
                &[],
            )
            .await?;
        Ok::<_, DbError>(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        )
    })
    .await
    .unwrap()
}

fn is_no_tenant_context(error: &DbError) -> bool {
    error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
        && error.to_string().contains("no tenant context")
}

#[tokio::test]
async fn each_tenant_sees_only_its_rows_without_any_where_clause() {
    let test_db = probe_db().await;
    let db = test_db.db_for_role("tenant_svc").await;

    let a = select_all(&db, A).await;
    assert_eq!(a.len(), 3);
    assert!(
        a.iter()
            .all(|(c, _, body)| *c == A && body.starts_with("a-"))
    );

    let b = select_all(&db, B).await;
    assert_eq!(b.len(), 2);
    assert!(
        b.iter()
            .all(|(c, _, body)| *c == B && body.starts_with("b-"))
    );

    // Even asking for the other tenant explicitly returns nothing.
    let asked_for_b: i64 = db
        .tenant_tx(tenant(A), async |tx| {
            let row = tx
                .query_one(
                    "SELECT count(*) FROM app.rls_probe WHERE customer_id = 2",
                    &[],
                )
                .await?;
            Ok::<_, DbError>(row.get(0))
        })
        .await
        .unwrap();
    assert_eq!(asked_for_b, 0);

    assert_eq!(count_as_admin(&test_db, A).await, 3);
    assert_eq!(count_as_admin(&test_db, B).await, 2);
}

#[tokio::test]
async fn no_tenant_context_fails_closed_and_writes_nothing() {
    let test_db = probe_db().await;
    let db = test_db.db_for_role("tenant_svc").await;

    // service_tx: no tenant context.
    let read = db
        .service_tx(async |tx| {
            tx.query("SELECT * FROM app.rls_probe", &[]).await?;
            Ok::<_, DbError>(())
        })
        .await
        .unwrap_err();
    assert!(is_no_tenant_context(&read), "unexpected error: {read}");

    let write = db
        .service_tx(async |tx| {
            tx.execute(
                "INSERT INTO app.rls_probe (customer_id, id, body) VALUES (1, 99, 'x')",
                &[],
            )
            .await?;
            Ok::<_, DbError>(())
        })
        .await
        .unwrap_err();
    assert!(is_no_tenant_context(&write), "unexpected error: {write}");

    // A raw connection as the service role, outside any helper, fresh session (setting NULL).
    let (raw, connection) =
        tokio_postgres::connect(&test_db.url_for_role("tenant_svc"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let error = raw
        .query("SELECT * FROM app.rls_probe", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let error = raw
        .execute(
            "INSERT INTO app.rls_probe (customer_id, id, body) VALUES (2, 99, 'x')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // After an earlier transaction-local setting the value is '' rather than NULL: still closed.
    raw.batch_execute("BEGIN; SELECT set_config('app.customer_id', '1', true); COMMIT;")
        .await
        .unwrap();
    let row = raw
        .query_one("SELECT current_setting('app.customer_id', true)", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some(""));
    let error = raw
        .query("SELECT * FROM app.rls_probe", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // set_config(.., true) outside a transaction has no lasting effect.
    raw.query("SELECT set_config('app.customer_id', '1', true)", &[])
        .await
        .unwrap();
    let error = raw
        .query("SELECT * FROM app.rls_probe", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    assert_eq!(count_as_admin(&test_db, A).await, 3);
    assert_eq!(count_as_admin(&test_db, B).await, 2);
}

/// The connection the pool hands out next must not be inside a transaction, and the next
/// transaction on it (every use of a pooled connection is one) must start with no tenant and
/// with no session-level setting of a previous user, whatever that user left on the session.
async fn assert_pooled_connection_is_clean(db: &Db) {
    {
        let conn = db.raw_connection_for_tests().await.unwrap();
        // Simple-query protocol: transaction_timestamp() equals statement_timestamp() only when
        // the transaction was started by this very message.
        let messages = conn
            .simple_query("SELECT (transaction_timestamp() = statement_timestamp())::text")
            .await
            .unwrap();
        let open = messages.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(
            open.as_deref(),
            Some("true"),
            "pooled connection is inside a transaction"
        );
    }
    let (setting, timeout) = db
        .service_tx(async |tx| {
            let row = tx
                .query_one(
                    "SELECT coalesce(current_setting('app.customer_id', true), '<null>'), \
                            current_setting('statement_timeout')",
                    &[],
                )
                .await?;
            Ok::<_, DbError>((row.get::<_, String>(0), row.get::<_, String>(1)))
        })
        .await
        .unwrap();
    assert!(
        setting.is_empty() || setting == "<null>",
        "tenant context leaked into the next transaction: {setting:?}"
    );
    assert_eq!(
        timeout, "10s",
        "a session-level setting leaked into the next transaction"
    );
}

async fn assert_no_context_sees_nothing(db: &Db) {
    let result = db
        .service_tx(async |tx| {
            let rows = tx.query("SELECT body FROM app.rls_probe", &[]).await?;
            Ok::<_, DbError>(rows.len())
        })
        .await;
    match result {
        Ok(n) => assert_eq!(n, 0, "a query without tenant context saw rows"),
        Err(e) => assert!(is_no_tenant_context(&e), "unexpected error: {e}"),
    }
}

#[tokio::test]
async fn pool_of_one_never_leaks_tenant_context() {
    let test_db = probe_db().await;
    let mut config = test_db.db_config_for_role("tenant_svc");
    config.max_connections = 1;
    let db = Db::connect(&config).await.unwrap();

    let backend_pid = async |db: &Db| -> i32 {
        db.service_tx(async |tx| {
            Ok::<_, DbError>(tx.query_one("SELECT pg_backend_pid()", &[]).await?.get(0))
        })
        .await
        .unwrap()
    };
    let pid = backend_pid(&db).await;

    assert_eq!(select_all(&db, A).await.len(), 3);
    assert_eq!(select_all(&db, B).await.len(), 2);
    assert_no_context_sees_nothing(&db).await;
    assert_pooled_connection_is_clean(&db).await;

    // A closure that fails after setting the tenant: rolled back, nothing left behind.
    let failed = db
        .tenant_tx(tenant(A), async |tx| {
            tx.query("SELECT * FROM app.rls_probe", &[]).await?;
            tx.query("SELECT 1/0", &[]).await?;
            Ok::<_, DbError>(())
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Some(&SqlState::DIVISION_BY_ZERO));
    assert_no_context_sees_nothing(&db).await;
    assert_pooled_connection_is_clean(&db).await;

    // The same physical connection was used throughout.
    assert_eq!(backend_pid(&db).await, pid);

    // Session-level state a closure might leave behind is reset on the next checkout.
    db.service_tx(async |tx| {
        tx.batch_execute(
            // grep-gate: allow (the deliberate session-level setting this test proves is reset)
            "SELECT set_config('app.customer_id', '1', false); SET statement_timeout = 1",
        )
        .await?;
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
    assert_pooled_connection_is_clean(&db).await;
    assert_no_context_sees_nothing(&db).await;
    let timeout: String = db
        .service_tx(async |tx| {
            Ok::<_, DbError>(tx.query_one("SHOW statement_timeout", &[]).await?.get(0))
        })
        .await
        .unwrap();
    assert_eq!(
        timeout, "10s",
        "the configured statement timeout survives the reset"
    );
}

#[tokio::test]
async fn cancelled_request_leaves_no_tenant_context() {
    let test_db = probe_db().await;
    let mut config = test_db.db_config_for_role("tenant_svc");
    config.max_connections = 1;
    let db = Db::connect(&config).await.unwrap();

    // 1. A spawned request aborted while it holds the connection mid-transaction.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<usize>();
    let task = tokio::spawn({
        let db = db.clone();
        async move {
            db.tenant_tx(tenant(A), async move |tx| {
                let rows = tx.query("SELECT * FROM app.rls_probe", &[]).await?;
                let _ = started_tx.send(rows.len());
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, DbError>(())
            })
            .await
        }
    });
    assert_eq!(started_rx.await.unwrap(), 3, "the request ran as tenant A");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_no_context_sees_nothing(&db).await;
    assert_pooled_connection_is_clean(&db).await;

    // 2. A request dropped by a timeout while a statement is in flight.
    let timed_out = tokio::time::timeout(
        Duration::from_millis(200),
        db.tenant_tx(tenant(A), async |tx| {
            tx.query("SELECT * FROM app.rls_probe", &[]).await?;
            tx.query("SELECT pg_sleep(1)", &[]).await?;
            Ok::<_, DbError>(())
        }),
    )
    .await;
    assert!(timed_out.is_err(), "the request should have been cut off");
    assert_pooled_connection_is_clean(&db).await;
    assert_no_context_sees_nothing(&db).await;
    assert_eq!(select_all(&db, B).await.len(), 2);

    assert_eq!(count_as_admin(&test_db, A).await, 3);
    assert_eq!(count_as_admin(&test_db, B).await, 2);
}

/// Runs one statement in a transaction of `customer`; the rows it affected.
async fn execute_as(db: &Db, customer: i64, sql: &str) -> Result<u64, DbError> {
    db.tenant_tx(tenant(customer), async |tx| tx.execute(sql, &[]).await)
        .await
}

#[tokio::test]
async fn cross_tenant_writes_are_refused_or_affect_nothing() {
    let test_db = probe_db().await;
    let db = test_db.db_for_role("tenant_svc").await;
    let b_before = select_all(&db, B).await;

    // INSERT a row for B under A's context: WITH CHECK refuses it.
    let insert = execute_as(
        &db,
        A,
        "INSERT INTO app.rls_probe (customer_id, id, body) VALUES (2, 50, 'planted')",
    )
    .await
    .unwrap_err();
    assert_eq!(
        insert.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{insert}"
    );
    assert!(
        !insert.to_string().contains("planted"),
        "row values in an error: {insert}"
    );
    assert_eq!(count_as_admin(&test_db, B).await, 2);

    // UPDATE moving A's row to B: refused.
    let moved = execute_as(
        &db,
        A,
        "UPDATE app.rls_probe SET customer_id = 2 WHERE id = 3",
    )
    .await
    .unwrap_err();
    assert_eq!(
        moved.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{moved}"
    );
    assert_eq!(count_as_admin(&test_db, A).await, 3);
    assert_eq!(count_as_admin(&test_db, B).await, 2);

    // UPDATE / DELETE of B's row ids (1 and 2 exist for B) under A's context with an explicit
    // customer_id = 2: 0 rows, exactly like a missing id.
    let (updated, deleted, missing) = db
        .tenant_tx(tenant(A), async |tx| {
            let updated = tx
                .execute(
                    "UPDATE app.rls_probe SET body = 'hijacked' WHERE customer_id = 2 AND id = 1",
                    &[],
                )
                .await?;
            let deleted = tx
                .execute(
                    "DELETE FROM app.rls_probe WHERE customer_id = 2 AND id = 2",
                    &[],
                )
                .await?;
            let missing = tx
                .execute("DELETE FROM app.rls_probe WHERE id = 12345", &[])
                .await?;
            Ok::<_, DbError>((updated, deleted, missing))
        })
        .await
        .unwrap();
    assert_eq!((updated, deleted, missing), (0, 0, 0));

    // Without the customer filter, A's UPDATE touches only A's rows.
    let touched = execute_as(
        &db,
        A,
        "UPDATE app.rls_probe SET body = body || '!' WHERE id = 1",
    )
    .await
    .unwrap();
    assert_eq!(touched, 1);

    assert_eq!(
        select_all(&db, B).await,
        b_before,
        "tenant B's rows changed"
    );
    assert_eq!(count_as_admin(&test_db, A).await, 3);
    assert_eq!(count_as_admin(&test_db, B).await, 2);
}

#[tokio::test]
async fn policy_predicate_can_use_the_customer_index() {
    let test_db = probe_db().await;
    let db = test_db.db_for_role("tenant_svc").await;
    let plan = db
        .tenant_tx(tenant(A), async |tx| {
            tx.batch_execute("SET LOCAL enable_seqscan = off").await?;
            let rows = tx
                .query("EXPLAIN (COSTS OFF) SELECT * FROM app.rls_probe", &[])
                .await?;
            Ok::<_, DbError>(
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })
        .await
        .unwrap();
    assert!(
        plan.contains("Index") && plan.contains("rls_probe_pkey"),
        "expected an index scan on the primary key, got:\n{plan}"
    );
}

#[tokio::test]
async fn self_check_accepts_service_roles_and_refuses_privileged_ones() {
    let test_db = probe_db().await;

    for role in mesh::testkit::SERVICE_ROLES {
        test_db
            .db_for_role(role)
            .await
            .self_check()
            .await
            .unwrap_or_else(|e| panic!("{role} should pass the self-check: {e}"));
    }

    // The admin URL is a superuser on the test server.
    let admin = Db::connect(&mesh::db::DbConfig::new(test_db.admin_url()))
        .await
        .unwrap();
    let refused = admin.self_check().await.unwrap_err();
    assert!(matches!(refused, DbError::Superuser { .. }), "{refused}");
    assert!(refused.to_string().contains("superuser"), "{refused}");

    // A login role that owns a table.
    let role = format!("owner_probe_{}", uuid::Uuid::new_v4().simple());
    let admin_client = test_db.admin_client().await;
    admin_client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             CREATE TABLE public.owned_probe (customer_id bigint, id bigint);
             ALTER TABLE public.owned_probe OWNER TO {role};
             GRANT USAGE ON SCHEMA public TO {role};"
        ))
        .await
        .unwrap();
    let owner = test_db.db_for_role(&role).await;
    let refused = owner.self_check().await.unwrap_err();
    match &refused {
        DbError::OwnsTables {
            role: r, examples, ..
        } => {
            assert_eq!(r, &role);
            assert_eq!(examples, &vec!["public.owned_probe".to_owned()]);
        }
        other => panic!("expected OwnsTables, got {other}"),
    }
    assert!(refused.to_string().contains("owned_probe"), "{refused}");

    // A BYPASSRLS role.
    admin_client
        .batch_execute(&format!(
            "ALTER TABLE public.owned_probe OWNER TO neurosphere_owner; ALTER ROLE {role} BYPASSRLS"
        ))
        .await
        .unwrap();
    let refused = test_db
        .db_for_role(&role)
        .await
        .self_check()
        .await
        .unwrap_err();
    assert!(matches!(refused, DbError::BypassRls { .. }), "{refused}");

    // Clean up the cluster-wide role (the database itself is dropped with the TestDb).
    drop(owner);
    admin_client
        .batch_execute(&format!(
            "DROP TABLE public.owned_probe; REVOKE USAGE ON SCHEMA public FROM {role}; DROP ROLE {role};"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn keys_used_by_another_tenant_look_unused_and_errors_hide_values() {
    let test_db = probe_db().await;
    let db = test_db.db_for_role("tenant_svc").await;
    test_db
        .admin_client()
        .await
        .batch_execute("INSERT INTO app.rls_probe VALUES (2, 10, 'b-ten')")
        .await
        .unwrap();

    // B uses id 10; for A it is as free as any unused id.
    let insert = async |id: i64| {
        db.tenant_tx(tenant(A), async |tx| {
            tx.execute(
                "INSERT INTO app.rls_probe (customer_id, id, body) VALUES (1, $1, 'secret-body')",
                &[&id],
            )
            .await?;
            Ok::<_, DbError>(())
        })
        .await
    };
    insert(10).await.unwrap();
    insert(11).await.unwrap();

    // A's own duplicate: unique_violation, without the key or the row in the message.
    let duplicate = insert(10).await.unwrap_err();
    assert_eq!(duplicate.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let text = format!("{duplicate} {duplicate:?}");
    assert!(text.contains("rls_probe_pkey"), "{text}");
    assert!(
        !text.contains("secret-body") && !text.contains("(1, 10)"),
        "{text}"
    );

    assert_eq!(count_as_admin(&test_db, A).await, 5);
    assert_eq!(count_as_admin(&test_db, B).await, 3);
}

/// Statements run through a transaction are cached per pooled connection (named prepared
/// statements that outlive the transaction); a cached plan is the same for every tenant, so it
/// must never carry one tenant's rows to another, also once PostgreSQL has switched to a
/// generic plan (after five executions).
#[tokio::test]
async fn cached_statements_are_shared_by_tenants_without_sharing_rows() {
    let test_db = probe_db().await;
    let mut config = test_db.db_config_for_role("tenant_svc");
    config.max_connections = 1;
    let db = Db::connect(&config).await.unwrap();

    for round in 0..12 {
        let customer = if round % 2 == 0 { A } else { B };
        let rows = select_all(&db, customer).await;
        assert_eq!(rows.len(), if customer == A { 3 } else { 2 });
        assert!(rows.iter().all(|(c, _, _)| *c == customer), "{rows:?}");
        // Typed statements are cached too, and the cached plan takes its parameter per call.
        let body: Option<String> = db
            .tenant_tx(tenant(customer), async |tx| {
                let id = 2_i64;
                let rows = tx
                    .query_typed(
                        "SELECT body FROM app.rls_probe WHERE id = $1",
                        &[(&id, tokio_postgres::types::Type::INT8)],
                    )
                    .await?;
                Ok::<_, DbError>(rows.first().map(|r| r.get(0)))
            })
            .await
            .unwrap();
        let expected = if customer == A { "a-two" } else { "b-two" };
        assert_eq!(body.as_deref(), Some(expected));
    }

    // Both statements are prepared once on the one connection and reused by every round (the
    // first run of a typed statement runs unnamed while it is being prepared).
    let prepared: Vec<(String, i64)> = db
        .service_tx(async |tx| {
            let rows = tx
                .query(
                    "SELECT statement, generic_plans + custom_plans \
                     FROM pg_catalog.pg_prepared_statements \
                     WHERE statement LIKE '%app.rls_probe%' \
                       AND statement NOT LIKE '%pg_prepared_statements%' ORDER BY 1",
                    &[],
                )
                .await?;
            Ok::<_, DbError>(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .await
        .unwrap();
    assert_eq!(
        prepared,
        [
            (
                "SELECT body FROM app.rls_probe WHERE id = $1".to_owned(),
                11
            ),
            (
                "SELECT customer_id, id, body FROM app.rls_probe ORDER BY id".to_owned(),
                12
            ),
        ]
    );
    assert_no_context_sees_nothing(&db).await;
    assert_pooled_connection_is_clean(&db).await;
}

/// Typed statements polled together run in the order they were first polled, also when none of
/// them is prepared yet on the connection (the first run of each must not wait for its prepare
/// while a later statement overtakes it).
#[tokio::test]
async fn pipelined_typed_statements_keep_their_order_on_a_cold_cache() {
    let test_db = probe_db().await;
    let config = test_db.db_config_for_role("tenant_svc");
    let db = Db::connect(&config).await.unwrap();
    use tokio_postgres::types::Type;
    for n in 0..20_i64 {
        let seen: Option<String> = db
            .tenant_tx(tenant(A), async |tx| {
                // Distinct text per round: always a cache miss.
                let set = format!("SELECT set_config('probe.n', $1, true), {n}");
                let get = format!("SELECT current_setting('probe.n', true), {n}");
                let value = n.to_string();
                let set_params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 1] =
                    [(&value, Type::TEXT)];
                let (_, rows) = tokio::try_join!(
                    tx.query_typed(&set, &set_params),
                    tx.query_typed(&get, &[]),
                )?;
                Ok::<_, DbError>(rows[0].get(0))
            })
            .await
            .unwrap();
        assert_eq!(seen, Some(n.to_string()), "round {n}");
    }
}
