//! `neurosphere`: starts the whole mesh locally (`up`), applies migrations, manages development
//! keys, mints tokens for grpcurl and other teams, and prints the settings reference.
#![forbid(unsafe_code)]

mod localpg;
mod ops;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mesh::identity::{DevKeys, names};

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
        command: KeysCommand,
    },
    /// Mint tokens with the development keys (for grpcurl and other teams).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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
    /// One caller's data across memory-svc and media-svc: export or erase (audited).
    Caller {
        #[command(flatten)]
        conn: ops::Conn,
        #[command(subcommand)]
        command: ops::CallerCommand,
    },
    /// Benchmarks: each builds the release binaries and prints its figures and the machine.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
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

#[derive(Subcommand)]
enum BenchCommand {
    /// tenant-svc ResolveNumber over gRPC (10,000 tenants, 20,000 numbers, concurrency 64).
    Resolve {
        /// Extra arguments: [tenants] [numbers] [concurrency] [seconds] [rate] (rate 0: closed loop;
        /// otherwise requests paced at that many per second).
        args: Vec<String>,
    },
    /// Gateway voice webhooks through the whole mesh (concurrency 64).
    Webhooks {
        /// Extra arguments: [concurrency] [seconds].
        args: Vec<String>,
    },
    /// memory-svc enriched context and writes (1,000 tenants, 1M memories, 100k summaries).
    Memory {
        /// Extra arguments passed to the benchmark (see its --help).
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// media-svc concurrent calls against a fake realtime backend.
    Media {
        /// Extra arguments, e.g. --calls 300 --seconds 20.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// The floor under the media CPU targets: a minimal one-hop relay, or only the per-call
    /// realtime WebSocket sessions, against the same fake backend as `bench media`.
    Floor {
        /// Extra arguments, e.g. --mode relay|backend --calls 300 --seconds 20.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Concurrent simulated Twilio calls through the whole mesh as separate processes; also the
    /// soak (`--seconds 1800`). Exits non-zero on a failed call or memory/fd growth.
    Calls {
        /// Extra arguments, e.g. --calls 300 --seconds 60 [--tenants 4 --stagger-ms 20 --warmup 3].
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate one Ed25519 key per service and a trust bundle listing them.
    Generate {
        /// Where to write the keys.
        #[arg(long, default_value = ".neurosphere/keys")]
        dir: PathBuf,
        /// Overwrite existing keys.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// A tenant token for one customer, signed with tenant-svc's key.
    Mint {
        /// Customer id.
        #[arg(long)]
        customer: i64,
        /// Scope, repeatable (e.g. --scope tenant:read --scope memory:read).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime, e.g. 15m, 1h, 90s (at most 24h).
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        ttl: Duration,
        /// Subject recorded in the token.
        #[arg(long, default_value = "operator")]
        subject: String,
        /// Directory of the development keys.
        #[arg(long, default_value = ".neurosphere/keys")]
        keys: PathBuf,
    },
    /// A service token from the operator's key, for admin RPCs.
    Service {
        /// Target service: tenant-svc, memory-svc or media-svc.
        #[arg(long)]
        audience: String,
        /// Scope, repeatable (e.g. --scope tenant:admin).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime (at most 1h).
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        ttl: Duration,
        /// Directory of the development keys.
        #[arg(long, default_value = ".neurosphere/keys")]
        keys: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 15m, 1h or 90s"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{s}`: unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// Runs a benchmark through cargo from the workspace root (release build), then prints the
/// machine it ran on.
fn bench(which: BenchCommand) -> anyhow::Result<ExitCode> {
    let (cargo_args, args): (Vec<&str>, Vec<String>) = match which {
        BenchCommand::Resolve { args } => (
            vec![
                "run",
                "--release",
                "-p",
                "tenant-svc",
                "--features",
                "bench",
                "--bin",
                "tenant-bench",
                "--",
            ],
            args,
        ),
        BenchCommand::Webhooks { args } => (
            vec![
                "run",
                "--release",
                "-p",
                "e2e",
                "--example",
                "webhook_bench",
                "--",
            ],
            args,
        ),
        BenchCommand::Memory { args } => (
            vec![
                "run",
                "--release",
                "-p",
                "memory-svc",
                "--example",
                "memory-bench",
                "--",
            ],
            args,
        ),
        BenchCommand::Media { args } => {
            let build = std::process::Command::new("cargo")
                .args([
                    "build",
                    "--release",
                    "-p",
                    "media-svc",
                    "--bin",
                    "media-svc",
                    "--example",
                    "media_bench",
                ])
                .status()?;
            if !build.success() {
                anyhow::bail!("building the media benchmark failed");
            }
            (
                vec![
                    "run",
                    "--release",
                    "-p",
                    "media-svc",
                    "--example",
                    "media_bench",
                    "--",
                ],
                args,
            )
        }
        BenchCommand::Floor { args } => (
            vec![
                "run",
                "--release",
                "-p",
                "media-svc",
                "--example",
                "relay_floor",
                "--",
            ],
            args,
        ),
        BenchCommand::Calls { args } => {
            // The benchmark starts the four service binaries itself: build them first.
            let build = std::process::Command::new("cargo")
                .args([
                    "build",
                    "--release",
                    "-p",
                    "tenant-svc",
                    "-p",
                    "memory-svc",
                    "-p",
                    "media-svc",
                    "-p",
                    "gateway",
                    "--bins",
                ])
                .status()?;
            if !build.success() {
                anyhow::bail!("building the service binaries failed");
            }
            (
                vec![
                    "run",
                    "--release",
                    "-p",
                    "e2e",
                    "--example",
                    "calls_bench",
                    "--",
                ],
                args,
            )
        }
    };
    let status = std::process::Command::new("cargo")
        .args(&cargo_args)
        .args(&args)
        .status()
        .context("running cargo (run `neurosphere bench` from the repository)")?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {cores} cores, {cpu}; load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
        Command::Migrate => {
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
        Command::Keys {
            command: KeysCommand::Generate { dir, force },
        } => {
            if dir.join("trusted-keys.json").exists() && !force {
                anyhow::bail!(
                    "keys already exist in {} (use --force to replace them; running services must then be restarted)",
                    dir.display()
                );
            }
            let files = DevKeys::generate().write(&dir)?;
            for (name, f) in files {
                println!(
                    "{name}: MESH_SIGNING_KEY_FILE={} MESH_SIGNING_KEY_ID={}",
                    f.signing_key.display(),
                    f.kid
                );
            }
            println!(
                "trust bundle: MESH_TRUSTED_KEYS_FILE={}",
                dir.join("trusted-keys.json").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command:
                TokenCommand::Mint {
                    customer,
                    scopes,
                    ttl,
                    subject,
                    keys,
                },
        } => {
            let customer = mesh::domain::CustomerId::new(customer)
                .map_err(|e| anyhow::anyhow!("--customer: {e}"))?;
            for s in &scopes {
                if !mesh::identity::scope::TENANT_SCOPES.contains(&s.as_str()) {
                    anyhow::bail!(
                        "--scope {s}: not a tenant scope; choose from {}",
                        mesh::identity::scope::TENANT_SCOPES.join(", ")
                    );
                }
            }
            let keys = DevKeys::read(&keys).context("reading development keys (run `neurosphere up` or `neurosphere keys generate` first)")?;
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let token = keys.identity(names::TENANT_SVC).minter().mint_tenant(
                customer,
                &subject,
                &[names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC],
                &scopes,
                ttl,
            )?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command:
                TokenCommand::Service {
                    audience,
                    scopes,
                    ttl,
                    keys,
                },
        } => {
            if ![names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC]
                .contains(&audience.as_str())
            {
                anyhow::bail!("--audience must be tenant-svc, memory-svc or media-svc");
            }
            let keys = DevKeys::read(&keys).context("reading development keys (run `neurosphere up` or `neurosphere keys generate` first)")?;
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let token = keys
                .identity(names::OPERATOR)
                .minter()
                .mint_service(&audience, &scopes, ttl)?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenant { conn, command } => ops::tenant(&conn, command).await,
        Command::Caller { conn, command } => ops::caller(&conn, command).await,
        Command::Call {
            conn,
            command: CallCommand::Simulate(args),
        } => ops::simulate(&conn, args).await,
        Command::Bench { which } => bench(which),
        Command::Settings => {
            print!("{}", mesh::settings::markdown_table());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's benchmark commands pass flags through to the benchmarks: every `bench`
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
            let args = match which {
                BenchCommand::Resolve { args }
                | BenchCommand::Webhooks { args }
                | BenchCommand::Memory { args }
                | BenchCommand::Media { args }
                | BenchCommand::Floor { args }
                | BenchCommand::Calls { args } => args,
            };
            assert_eq!(args, expected, "bench {argv:?}");
        }
    }
}
