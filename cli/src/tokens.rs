//! `neurosphere keys …` and `neurosphere token …`: development keys, and tokens minted with them
//! for grpcurl and other teams (a tenant token signed with tenant-svc's key, or an operator
//! service token for admin RPCs), checked here as the services would check them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use mesh::identity::{DevKeys, names};

#[derive(Subcommand)]
pub enum KeysCommand {
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
pub enum TokenCommand {
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

/// Writes one Ed25519 key per service and the trust bundle to `dir`.
pub fn generate(dir: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if dir.join("trusted-keys.json").exists() && !force {
        bail!(
            "keys already exist in {} (use --force to replace them; running services must then be restarted)",
            dir.display()
        );
    }
    let files = DevKeys::generate().write(dir)?;
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

fn read_keys(dir: &Path) -> anyhow::Result<DevKeys> {
    DevKeys::read(dir).context(
        "reading development keys (run `neurosphere up` or `neurosphere keys generate` first)",
    )
}

/// Prints a token minted as `command` says.
pub fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let token = match command {
        TokenCommand::Mint {
            customer,
            scopes,
            ttl,
            subject,
            keys,
        } => {
            let customer = mesh::domain::CustomerId::new(customer)
                .map_err(|e| anyhow::anyhow!("--customer: {e}"))?;
            for s in &scopes {
                if !mesh::identity::scope::TENANT_SCOPES.contains(&s.as_str()) {
                    bail!(
                        "--scope {s}: not a tenant scope; choose from {}",
                        mesh::identity::scope::TENANT_SCOPES.join(", ")
                    );
                }
            }
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            read_keys(&keys)?
                .identity(names::TENANT_SVC)
                .minter()
                .mint_tenant(
                    customer,
                    &subject,
                    &[names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC],
                    &scopes,
                    ttl,
                )?
        }
        TokenCommand::Service {
            audience,
            scopes,
            ttl,
            keys,
        } => {
            if ![names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC]
                .contains(&audience.as_str())
            {
                bail!("--audience must be tenant-svc, memory-svc or media-svc");
            }
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            read_keys(&keys)?
                .identity(names::OPERATOR)
                .minter()
                .mint_service(&audience, &scopes, ttl)?
        }
    };
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
