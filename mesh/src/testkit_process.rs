//! Runs a service *binary* as a child process for tests (feature `testkit`): settings come from
//! the environment exactly as in production, ports are 0 (the OS picks), and the addresses are
//! read back from the binary's JSON `serving` log line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::identity::DevKeys;

/// A running service binary.
pub struct ServiceProcess {
    child: Child,
    /// The main (gRPC or HTTP) address from the `serving` log line.
    pub main: SocketAddr,
    /// The admin address, when the log line names one.
    pub admin: Option<SocketAddr>,
    /// Every log line printed so far and from now on.
    pub lines: mpsc::UnboundedReceiver<String>,
}

/// The environment for `service` (one of `identity::names::ALL`): its key and the trust bundle
/// written under `dir`, JSON logs, loopback, port 0 for every port.
pub fn service_env(keys: &DevKeys, service: &str, dir: &Path) -> BTreeMap<String, String> {
    let files = keys.write(dir).expect("write development keys");
    let (_, f) = files
        .into_iter()
        .find(|(n, _)| n == service)
        .expect("a key for the service");
    let mut env = BTreeMap::new();
    env.insert("LOG_FORMAT".into(), "json".into());
    env.insert("RUST_LOG".into(), "info".into());
    env.insert("BIND_HOST".into(), "127.0.0.1".into());
    for port in [
        "TENANT_SVC_PORT",
        "MEMORY_SVC_PORT",
        "MEDIA_SVC_PORT",
        "GATEWAY_PORT",
        "TENANT_SVC_ADMIN_PORT",
        "MEMORY_SVC_ADMIN_PORT",
        "MEDIA_SVC_ADMIN_PORT",
        "GATEWAY_ADMIN_PORT",
    ] {
        env.insert(port.into(), "0".into());
    }
    env.insert("OPERATOR_CONSOLE_ADDR".into(), "127.0.0.1:0".into());
    env.insert(
        "MESH_SIGNING_KEY_FILE".into(),
        f.signing_key.display().to_string(),
    );
    env.insert("MESH_SIGNING_KEY_ID".into(), f.kid);
    env.insert(
        "MESH_TRUSTED_KEYS_FILE".into(),
        f.trusted_keys.display().to_string(),
    );
    env.insert("SHUTDOWN_GRACE_SECONDS".into(), "5".into());
    env
}

impl ServiceProcess {
    /// Starts `binary` with exactly `env` (plus PATH) and waits for its `serving` line.
    pub async fn start(binary: &str, env: &BTreeMap<String, String>) -> ServiceProcess {
        let mut child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let (tx, mut rx) = mpsc::unbounded_channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send(line);
                }
            });
        }
        let (seen_tx, lines) = mpsc::unbounded_channel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{binary} printed no `serving` line within 30 s"))
                .unwrap_or_else(|| panic!("{binary} exited before serving"));
            let _ = seen_tx.send(line.clone());
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if json["message"] != "serving" {
                continue;
            }
            let addr = |k: &str| json[k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
            let main = addr("grpc_addr")
                .or_else(|| addr("http_addr"))
                .unwrap_or_else(|| panic!("no address in {line}"));
            let admin = addr("admin_addr");
            // Keep forwarding later lines.
            tokio::spawn(async move {
                while let Some(l) = rx.recv().await {
                    if seen_tx.send(l).is_err() {
                        break;
                    }
                }
            });
            return ServiceProcess {
                child,
                main,
                admin,
                lines,
            };
        }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|s| s.code())
    }
}

/// Runs `binary` with `env` to completion (for start-up failures) and returns its exit code and
/// output.
pub async fn run_to_exit(binary: &str, env: &BTreeMap<String, String>) -> (Option<i32>, String) {
    let out = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("exits within 30 s")
        .expect("runs");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The start-up contract every database-backed service binary keeps, checked against a real
/// database: it serves gRPC health (SERVING) and its admin endpoints, and exits 0 on SIGTERM; it
/// exits 2 listing every settings problem at once; it refuses to run as a superuser (exit 1,
/// naming the reason).
pub async fn check_service_binary(binary: &str, service: &str, role: &str, port_var: &str) {
    let db = crate::testkit::TestDb::new().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = DevKeys::generate();
    let mut env = service_env(&keys, service, dir.path());

    // 1. Serves and stops cleanly.
    env.insert("DATABASE_URL".into(), db.url_for_role(role));
    let process = ServiceProcess::start(binary, &env).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", process.main))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the binary's gRPC port");
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status;
    assert_eq!(status, 1, "{service} is not SERVING");
    let admin = process.admin.expect("admin address in the serving line");
    let ready = http_get(admin, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 200"),
        "{service} /readyz: {ready}"
    );
    assert_eq!(
        process.terminate().await,
        Some(0),
        "{service} did not exit 0 on SIGTERM"
    );

    // 2. Every settings problem at once, exit code 2.
    let mut bad = env.clone();
    bad.remove("DATABASE_URL");
    bad.insert(port_var.into(), "not-a-port".into());
    bad.remove("MESH_SIGNING_KEY_ID");
    let (code, out) = run_to_exit(binary, &bad).await;
    assert_eq!(code, Some(2), "{out}");
    for name in ["DATABASE_URL", port_var, "MESH_SIGNING_KEY_ID"] {
        assert!(out.contains(name), "{name} not reported:\n{out}");
    }

    // 3. A superuser connection is refused before anything is served.
    let mut superuser = env.clone();
    superuser.insert("DATABASE_URL".into(), db.admin_url().to_owned());
    let (code, out) = run_to_exit(binary, &superuser).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.to_lowercase().contains("superuser"), "{out}");
    assert!(!out.contains("\"serving\""), "served as superuser:\n{out}");
}

/// A minimal HTTP/1.1 GET over a fresh connection, returning the raw response.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}
