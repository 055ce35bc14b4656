//! The numbered SQL files in `migrations/` (repository root), embedded at compile time and applied
//! by refinery's runner, which records version, name and checksum of each applied file in
//! `refinery_schema_history` and refuses to run when an applied file was changed or removed.
//!
//! Migrations run as an administrative connection: a superuser in dev and tests; in production a
//! role with CREATEROLE that may `SET ROLE neurosphere_owner` (V1 grants that membership). Each file
//! switches to the owner role with `SET LOCAL ROLE neurosphere_owner` so every object it creates is
//! owned by that NOLOGIN role and never by a service's login role, and ends with `RESET ROLE` so that
//! refinery can record it (refinery runs each file and its history insert in one transaction).
//! `V1__roles_and_schemas.sql` documents the conventions for later files.
//!
//! Note: cargo notices edits to the embedded files, but only a build-script
//! `cargo:rerun-if-changed=../migrations` makes it notice a newly added file.

use refinery::Report;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Why migrating failed. Messages name the migration and the database error, never row values.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// Connecting to the administrative URL failed.
    #[error("cannot connect to the database for migrations: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// Refinery refused (divergent or missing migrations) or a migration failed.
    #[error("migration failed: {0}")]
    Refinery(#[from] refinery::Error),
}

/// The embedded migrations, in version order: (version, name, SQL). Used by the test harness to
/// derive a template-database name from the migrations' contents.
pub fn embedded() -> Vec<(i64, String, String)> {
    let runner = embedded::migrations::runner();
    let mut all: Vec<(i64, String, String)> = runner
        .get_migrations()
        .iter()
        .map(|m| {
            (
                i64::from(m.version()),
                m.name().to_owned(),
                m.sql().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    all.sort_by_key(|(version, _, _)| *version);
    all
}

/// Applies every embedded migration not yet recorded in `refinery_schema_history`, each in its own
/// transaction. `client` must be an administrative connection (see the module docs).
pub async fn run(client: &mut tokio_postgres::Client) -> Result<Report, MigrationError> {
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(client)
        .await?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "applied migration"
        );
    }
    Ok(report)
}

/// Connects to `admin_database_url` (`postgres://user[:password]@host:port/dbname`, no TLS) and
/// runs [`run`]. The connection is closed before returning.
pub async fn run_url(admin_database_url: &str) -> Result<Report, MigrationError> {
    let (mut client, connection) =
        tokio_postgres::connect(admin_database_url, tokio_postgres::NoTls)
            .await
            .map_err(MigrationError::Connect)?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "migration connection ended with an error");
        }
    });
    let result = run(&mut client).await;
    drop(client);
    let _ = driver.await;
    result
}
