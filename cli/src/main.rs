//! `neurosphere`: starts the whole mesh locally (`up`), applies migrations, manages development
//! keys, mints tokens for grpcurl and other teams, and prints the settings reference.
//!
//! This file holds the command line and dispatches it; each subject has its module: `up` (the
//! local mesh, what it installs, its demo tenants) over `localpg` (its private PostgreSQL),
//! `tokens` (keys and tokens), `ops` (operator commands over the gRPC APIs and the simulated
//! call) and `bench` (the benchmarks of BENCHMARKS.md).
#![forbid(unsafe_code)]

mod bench;
mod localpg;
mod ops;
mod tokens;
mod up;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "neurosphere",
    version,
    about = "NeuroSphere Mesh: run and operate the multi-tenant AI phone platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the whole mesh locally: a private PostgreSQL (unless DATABASE_URL is set),
    /// migrations, development keys, tenant-svc, memory-svc, media-svc and the gateway.
    Up(up::UpArgs),
    /// Apply database migrations (DATABASE_URL must name an administrative role).
    Migrate,
    /// Development keys.
    Keys {
        #[command(subcommand)]
        command: tokens::KeysCommand,
    },
    /// Mint tokens with the development keys (for grpcurl and other teams).
    Token {
        #[command(subcommand)]
        command: tokens::TokenCommand,
    },
    /// Print every environment variable the mesh reads (Markdown table).
    Settings,
    /// Customers: create, list, show, numbers, configuration and its history.
    Tenant {
        #[command(flatten)]
        conn: ops::Conn,
        #[command(subcommand)]
        command: ops::TenantCommand,
    },
    /// The tenant portal's users: invite a person to a customer (prints the one-time link).
    User {
        #[command(flatten)]
        conn: ops::Conn,
        #[command(subcommand)]
        command: ops::UserCommand,
    },
    /// The platform's operators (the operator console): add one (prints the initial password
    /// and the second factor's enrolment URI once), or disable one.
    Operator {
        #[command(flatten)]
        conn: ops::Conn,
        #[command(subcommand)]
        command: ops::OperatorCommand,
    },
    /// Phone numbers at Twilio (media-svc): search with prices, buy, import, release, list,
    /// reconcile (`--fix`).
    Numbers {
        #[command(flatten)]
        conn: ops::Conn,
        #[command(subcommand)]
        command: ops::NumbersCommand,
    },
    /// One caller's data across memory-svc and media-svc: export or erase (audited).
    Caller {
        #[command(flatten)]
        conn: ops::Conn,
        #[command(subcommand)]
        command: ops::CallerCommand,
    },
    /// Usage that can be billed: packages, versioned rate cards, a customer's package, monthly
    /// bills and their CSV.
    Billing {
        #[command(flatten)]
        conn: ops::Conn,
        #[command(subcommand)]
        command: ops::BillingCommand,
    },
    /// Benchmarks: each builds the release binaries and prints its figures and the machine.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Simulated calls.
    Call {
        #[command(flatten)]
        conn: ops::Conn,
        #[command(subcommand)]
        command: CallCommand,
    },
}

#[derive(Subcommand)]
enum CallCommand {
    /// Play a complete Twilio call against a running gateway and print what happened.
    Simulate(ops::SimulateArgs),
}

/// Sets the service roles' passwords from `<ROLE>_DB_PASSWORD` when given (quoted by the
/// server's own `format('%L')`, never by string pasting).
async fn set_role_passwords(admin_url: &str) -> anyhow::Result<()> {
    let wanted: Vec<(&str, String)> = [
        ("tenant_svc", "TENANT_SVC_DB_PASSWORD"),
        ("memory_svc", "MEMORY_SVC_DB_PASSWORD"),
        ("media_svc", "MEDIA_SVC_DB_PASSWORD"),
    ]
    .into_iter()
    .filter_map(|(role, var)| {
        std::env::var(var)
            .ok()
            .filter(|p| !p.is_empty())
            .map(|p| (role, p))
    })
    .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    for (role, password) in wanted {
        let sql: String = client
            .query_one(
                "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
                &[&role, &password],
            )
            .await?
            .get(0);
        client.batch_execute(&sql).await?;
        println!("password set for role {role}");
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("neurosphere: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("neurosphere: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => up::up(args).await,
        Command::Migrate => migrate().await,
        Command::Keys {
            command: tokens::KeysCommand::Generate { dir, force },
        } => tokens::generate(&dir, force),
        Command::Token { command } => tokens::token(command),
        Command::Tenant { conn, command } => ops::tenant(&conn, command).await,
        Command::Caller { conn, command } => ops::caller(&conn, command).await,
        Command::Numbers { conn, command } => ops::numbers(&conn, command).await,
        Command::User { conn, command } => ops::user(&conn, command).await,
        Command::Operator { conn, command } => ops::operator(&conn, command).await,
        Command::Billing { conn, command } => ops::billing(&conn, command).await,
        Command::Call {
            conn,
            command: CallCommand::Simulate(args),
        } => ops::simulate(&conn, args).await,
        Command::Bench { which } => bench::bench(&which),
        Command::Settings => {
            print!("{}", mesh::settings::markdown_table());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `neurosphere migrate`: the embedded migrations, then the service roles' passwords if given.
async fn migrate() -> anyhow::Result<ExitCode> {
    mesh::telemetry::init_from_env();
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .context("DATABASE_URL must be set to an administrative role's URL")?;
    let report = mesh::migrations::run_url(&url).await?;
    set_role_passwords(&url).await?;
    println!(
        "migrations applied: {} new ({} embedded)",
        report.applied_migrations().len(),
        mesh::migrations::embedded().len()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BENCHMARKS.md's commands pass flags through to the benchmarks: every `bench`
    /// subcommand must take them as its arguments, not reject them as its own.
    #[test]
    fn bench_flags_pass_through() {
        let cases: [(&[&str], &[&str]); 6] = [
            (&["resolve", "10000", "20000"], &["10000", "20000"]),
            (&["webhooks", "64", "10"], &["64", "10"]),
            (&["memory", "--tenants", "1000"], &["--tenants", "1000"]),
            (&["media", "--calls", "300"], &["--calls", "300"]),
            (&["floor", "--mode", "relay"], &["--mode", "relay"]),
            (
                &["calls", "--calls", "3", "--seconds", "5"],
                &["--calls", "3", "--seconds", "5"],
            ),
        ];
        for (argv, expected) in cases {
            let cli = Cli::try_parse_from(["neurosphere", "bench"].iter().chain(argv))
                .unwrap_or_else(|e| panic!("bench {argv:?}: {e}"));
            let Command::Bench { which } = cli.command else {
                panic!("bench {argv:?} parsed as another command");
            };
            assert_eq!(which.args(), expected, "bench {argv:?}");
        }
    }
}
