//! The private PostgreSQL that `neurosphere up` runs when `DATABASE_URL` is unset: a cluster
//! under `<data dir>/pg`, created once with `initdb` and reused across runs, listening on
//! 127.0.0.1 only, with trust authentication for local development. PostgreSQL refuses to run as
//! root, so when we are root the cluster is owned by and started as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// A running local cluster.
pub struct LocalPostgres {
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    /// Port it listens on.
    pub port: u16,
    started_here: bool,
}

fn find_bin() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut candidates = on_path;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        versions.reverse();
        candidates.extend(versions);
    }
    candidates
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .context(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under \
             /usr/lib/postgresql. Install them (Debian/Ubuntu: `apt-get install postgresql`) or \
             set DATABASE_URL to an existing server.",
        )
}

/// Whether the server binaries are installed (on PATH or under /usr/lib/postgresql).
pub fn installed() -> bool {
    find_bin().is_ok()
}

/// Whether this process runs as root (PostgreSQL then runs as `postgres`; installs need no sudo).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl LocalPostgres {
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// Creates the cluster when missing and starts it when it is not already running.
    pub fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let bin = find_bin()?;
        let as_postgres = is_root();
        let dir = &std::path::absolute(dir)?;
        let data = dir.join("pg");
        let mut me = Self {
            data: data.clone(),
            bin,
            as_postgres,
            port,
            started_here: false,
        };
        if !data.join("PG_VERSION").is_file() {
            std::fs::create_dir_all(&data)?;
            if as_postgres {
                chown_postgres(&data)?;
            }
            println!(
                "  creating the local PostgreSQL cluster in {}",
                data.display()
            );
            let out = me
                .command("initdb")
                .args(["-D"])
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                ])
                .output()
                .context("running initdb")?;
            if !out.status.success() {
                bail!("initdb failed:\n{}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let status = me
            .command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&data)
            .output()?;
        if status.status.success() {
            println!(
                "  reusing the running local PostgreSQL ({})",
                data.display()
            );
            return Ok(me);
        }
        let log = dir.join("postgres.log");
        if as_postgres && !log.exists() {
            std::fs::write(&log, "")?;
            chown_postgres(&log)?;
        }
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            data.display()
        );
        let out = me
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "30", "-o", &opts, "-l"])
            .arg(&log)
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "PostgreSQL did not start on port {port} (is the port taken? set NEUROSPHERE_PG_PORT). \
                 Log: {}\n{}",
                log.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        me.started_here = true;
        Ok(me)
    }

    /// URL of `db` on this cluster for `user` (trust authentication, no password).
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the cluster if this process started it.
    pub fn stop(&self) {
        if !self.started_here {
            return;
        }
        let _ = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w"])
            .output();
    }
}

fn chown_postgres(path: &Path) -> anyhow::Result<()> {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .context("running chown")?;
    if !status.success() {
        bail!("cannot give {} to the postgres user", path.display());
    }
    Ok(())
}
