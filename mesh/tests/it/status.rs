//! Database failures through the status policy, against a real PostgreSQL: a statement timeout
//! reads DEADLINE_EXCEEDED, an unreachable or vanished database UNAVAILABLE, anything else
//! INTERNAL, and none of them shows the client its cause.

use std::time::Duration;

use mesh::db::{Db, DbConfig, DbError};
use mesh::status::{ServiceError, ServiceErrorCode, to_status};
use mesh::testkit::TestDb;
use tonic::Code;

async fn db() -> (TestDb, Db) {
    let test_db = TestDb::new().await;
    let db = test_db.db_for_role("tenant_svc").await;
    (test_db, db)
}

async fn service_error(db: &Db, sql: &'static str) -> DbError {
    db.service_tx(async |tx| tx.batch_execute(sql).await)
        .await
        .expect_err(sql)
}

#[tokio::test]
async fn a_statement_timeout_is_deadline_exceeded() {
    let (_test_db, db) = db().await;
    let e = service_error(&db, "SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)").await;
    assert_eq!(e.error_code(), ServiceErrorCode::DeadlineExceeded, "{e}");
    let status = to_status(&e);
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "the request took too long");
}

#[tokio::test]
async fn a_lost_connection_is_unavailable() {
    let (_test_db, db) = db().await;
    let e = service_error(&db, "SELECT pg_terminate_backend(pg_backend_pid())").await;
    assert_eq!(e.error_code(), ServiceErrorCode::Unavailable, "{e}");
    assert_eq!(to_status(&e).code(), Code::Unavailable);
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = DbConfig::new(format!("postgres://tenant_svc@127.0.0.1:{port}/none"));
    config.connect_timeout = Some(Duration::from_secs(2));
    let e = Db::connect(&config).await.expect_err("nothing listens");
    assert_eq!(e.error_code(), ServiceErrorCode::Unavailable, "{e}");
    let status = to_status(&e);
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.message().contains(&port.to_string()), "{status:?}");
}

#[tokio::test]
async fn an_exhausted_pool_is_unavailable() {
    let test_db = TestDb::new().await;
    let mut config = test_db.db_config_for_role("tenant_svc");
    config.max_connections = 1;
    config.checkout_timeout = Some(Duration::from_millis(50));
    let db = Db::connect(&config).await.unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (taken, wait_taken) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn({
        let db = db.clone();
        async move {
            // Holds the pool's only connection until released.
            db.service_tx(async |_tx| {
                let _ = taken.send(());
                let _ = released.await;
                Ok::<_, DbError>(())
            })
            .await
        }
    });
    wait_taken.await.unwrap();
    let e = service_error(&db, "SELECT 1").await;
    assert_eq!(e.error_code(), ServiceErrorCode::Unavailable, "{e}");
    drop(release);
    holder.await.unwrap().unwrap();
}

#[tokio::test]
async fn other_database_errors_are_internal_and_opaque() {
    let (_test_db, db) = db().await;
    for sql in [
        "SELEC 1",
        // No tenant context: the policies' function raises insufficient_privilege.
        "SELECT count(*) FROM tenant.customers",
        "SELECT 'secret-value'::int",
    ] {
        let e = service_error(&db, sql).await;
        assert_eq!(e.error_code(), ServiceErrorCode::Internal, "{sql}: {e}");
        let status = to_status(&e);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }
}
