//! `neurosphere bench …`: each benchmark is a cargo target elsewhere in the workspace (a tenant-svc
//! binary, media-svc, memory-svc and e2e examples); this runs it in release mode from the
//! repository with the flags given, building first what the benchmark starts as child processes,
//! then prints the machine it ran on (BENCHMARKS.md records each figure with its machine).

use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
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

/// How cargo runs one benchmark (arguments space-separated).
struct Plan {
    /// `cargo build --release` arguments of what the benchmark starts as child processes, built
    /// first; and what they are.
    build: Option<(&'static str, &'static str)>,
    /// `cargo run --release` arguments up to `--`.
    run: &'static str,
}

impl BenchCommand {
    fn plan(&self) -> (Plan, &[String]) {
        let (build, run, args) = match self {
            Self::Resolve { args } => (
                None,
                "-p tenant-svc --features bench --bin tenant-bench",
                args,
            ),
            Self::Webhooks { args } => (None, "-p e2e --example webhook_bench", args),
            Self::Memory { args } => (None, "-p memory-svc --example memory-bench", args),
            Self::Media { args } => (
                Some((
                    "-p media-svc --bin media-svc --example media_bench",
                    "the media benchmark",
                )),
                "-p media-svc --example media_bench",
                args,
            ),
            Self::Floor { args } => (None, "-p media-svc --example relay_floor", args),
            Self::Calls { args } => (
                Some((
                    "-p tenant-svc -p memory-svc -p media-svc -p gateway --bins",
                    "the service binaries",
                )),
                "-p e2e --example calls_bench",
                args,
            ),
        };
        (Plan { build, run }, args)
    }

    /// The arguments passed through to the benchmark.
    #[cfg(test)]
    pub fn args(&self) -> &[String] {
        self.plan().1
    }
}

/// Runs a benchmark through cargo from the workspace root (release build), then prints the
/// machine it ran on.
pub fn bench(which: &BenchCommand) -> anyhow::Result<ExitCode> {
    let (plan, args) = which.plan();
    if let Some((targets, what)) = plan.build {
        let built = Command::new("cargo")
            .args(["build", "--release"])
            .args(targets.split_whitespace())
            .status()?;
        if !built.success() {
            bail!("building {what} failed");
        }
    }
    let status = Command::new("cargo")
        .args(["run", "--release"])
        .args(plan.run.split_whitespace())
        .arg("--")
        .args(args)
        .status()
        .context("running cargo (run `neurosphere bench` from the repository)")?;
    println!("machine: {}", machine());
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Cores, CPU model and load average, from /proc.
fn machine() -> String {
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
    format!(
        "{cores} cores, {cpu}; load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}
