//! The gateway binary: serves its public and admin ports from environment settings, reports not
//! ready while its dependencies are unreachable, stops with
//! exit code 0 on SIGTERM, and reports every settings problem at once (exit code 2).

use mesh::identity::{DevKeys, names};
use mesh::testkit_process::{ServiceProcess, http_get, run_to_exit, service_env};

#[tokio::test]
async fn binary_serves_and_stops_and_reports_every_settings_problem() {
    let dir = tempfile::tempdir().unwrap();
    let keys = DevKeys::generate();
    let mut env = service_env(&keys, names::GATEWAY, dir.path());
    env.insert(
        "TWILIO_AUTH_TOKEN".into(),
        "test-auth-token-not-a-secret".into(),
    );
    let binary = env!("CARGO_BIN_EXE_gateway");

    let process = ServiceProcess::start(binary, &env).await;
    let health = http_get(process.main, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let admin = process.admin.expect("admin address logged");
    // Alone, the gateway is alive but not ready: its dependencies are unreachable.
    let ready = http_get(admin, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("tenant-svc unreachable"), "{ready}");
    let alive = http_get(admin, "/healthz").await;
    assert!(alive.starts_with("HTTP/1.1 200"), "{alive}");
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert_eq!(process.terminate().await, Some(0));

    let mut bad = env.clone();
    bad.remove("TWILIO_AUTH_TOKEN");
    bad.insert("GATEWAY_PORT".into(), "99999".into());
    bad.insert("PUBLIC_BASE_URL".into(), "ftp://example.com".into());
    bad.insert(
        "GATEWAY_TRUSTED_PROXIES".into(),
        "10.0.0.0/8,proxy.internal".into(),
    );
    bad.insert("GATEWAY_KEEPALIVE_IDLE_SECONDS".into(), "30".into());
    bad.insert("GATEWAY_MAX_PENDING_CONNECTIONS_PER_IP".into(), "0".into());
    let (code, out) = run_to_exit(binary, &bad).await;
    assert_eq!(code, Some(2), "{out}");
    for name in [
        "TWILIO_AUTH_TOKEN",
        "GATEWAY_PORT",
        "PUBLIC_BASE_URL",
        "GATEWAY_TRUSTED_PROXIES",
        "GATEWAY_KEEPALIVE_IDLE_SECONDS",
        "GATEWAY_MAX_PENDING_CONNECTIONS_PER_IP",
    ] {
        assert!(out.contains(name), "{name} not reported:\n{out}");
    }
}
