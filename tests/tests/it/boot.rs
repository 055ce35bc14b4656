//! Every service boots against a real PostgreSQL, answers health and its admin endpoints,
//! refuses unauthenticated calls before any handler runs, and stops cleanly.

use e2e::{Mesh, with_token};
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::identity::scope;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn every_grpc_service_reports_serving_for_itself_and_overall() {
    let mesh = Mesh::start().await;
    let cases = [
        (
            mesh.tenant,
            vec![
                "",
                "neurosphere.tenant.v1.TenantService",
                "neurosphere.tenant.v1.TenantAdminService",
                "neurosphere.tenant.v1.EdgeService",
            ],
        ),
        (
            mesh.memory,
            vec![
                "",
                "neurosphere.memory.v1.MemoryService",
                "neurosphere.memory.v1.MemoryAdminService",
            ],
        ),
        (
            mesh.media,
            vec![
                "",
                "neurosphere.media.v1.CallService",
                "neurosphere.media.v1.MediaAdminService",
            ],
        ),
    ];
    for (ports, services) in cases {
        let mut health = HealthClient::new(mesh.channel(ports).await);
        for service in services {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap_or_else(|e| panic!("health of {service:?} on {}: {e}", ports.main))
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    }
    for (name, r) in mesh.shutdown().await {
        r.unwrap_or_else(|e| panic!("{name} did not stop cleanly: {e:#}"));
    }
}

#[tokio::test]
async fn admin_endpoints_answer_on_every_service() {
    let mesh = Mesh::start().await;
    let http = reqwest::Client::new();
    for (name, ports) in [
        ("tenant-svc", mesh.tenant),
        ("memory-svc", mesh.memory),
        ("media-svc", mesh.media),
        ("gateway", mesh.gateway),
    ] {
        let base = format!("http://{}", ports.admin);
        let healthz = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(healthz.status(), 200, "{name} /healthz");
        let readyz = http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(
            readyz.status(),
            200,
            "{name} /readyz: {:?}",
            readyz.text().await
        );
        let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(metrics.status(), 200, "{name} /metrics");
        assert!(
            metrics.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "{name} /metrics content type"
        );
    }
    // A refused call is counted in the Prometheus output.
    let mut tenant = TenantServiceClient::new(mesh.channel(mesh.tenant).await);
    let err = tenant
        .get_my_customer(mesh::api::tenant::GetMyCustomerRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let text = http
        .get(format!("http://{}/metrics", mesh.tenant.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("mesh_rpc_requests_total"), "{text}");
    assert!(text.contains("GetMyCustomer"), "{text}");
}

#[tokio::test]
async fn every_service_authenticates_before_answering() {
    let mesh = Mesh::start().await;
    let token = mesh.tenant_token(
        1,
        &[scope::TENANT_READ, scope::MEMORY_READ, scope::MEDIA_READ],
    );

    // No token: refused by the auth layer. A valid token for a customer that does not exist
    // reaches the handler, which answers NOT_FOUND.
    let mut tenant = TenantServiceClient::new(mesh.channel(mesh.tenant).await);
    let unauth = tenant
        .get_outbound_settings(mesh::api::tenant::GetOutboundSettingsRequest {})
        .await
        .unwrap_err();
    assert_eq!(unauth.code(), tonic::Code::Unauthenticated);
    let status = tenant
        .get_outbound_settings(with_token(
            mesh::api::tenant::GetOutboundSettingsRequest {},
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    // memory-svc and media-svc: no token is refused; a valid tenant token gets past the auth
    // layer to the handler, which answers what it knows: no profile for this caller (NOT_FOUND),
    // and no usage this month.
    let mut memory = MemoryServiceClient::new(mesh.channel(mesh.memory).await);
    let request = || mesh::api::memory::GetCallerProfileRequest {
        user_id: "+15551111111".into(),
    };
    let err = memory.get_caller_profile(request()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let status = memory
        .get_caller_profile(with_token(request(), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "no profile for this caller");
    let mut media = CallServiceClient::new(mesh.channel(mesh.media).await);
    let request = || mesh::api::media::GetUsageRequest {
        year: 2026,
        month: 11,
    };
    let err = media.get_usage(request()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let usage = media
        .get_usage(with_token(request(), &token))
        .await
        .expect("a valid token reaches the handler")
        .into_inner();
    assert_eq!(
        (usage.total_calls, usage.total_seconds, usage.total_minutes),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn services_exit_cleanly_on_shutdown_and_stop_listening() {
    let mesh = Mesh::start().await;
    let admin = mesh.tenant.admin;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("http://{admin}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let results = mesh.shutdown().await;
    // The four services and the gateway's operator console listener.
    assert_eq!(results.len(), 5);
    for (name, r) in results {
        r.unwrap_or_else(|e| panic!("{name} did not stop cleanly: {e:#}"));
    }
    // After shutdown nothing listens any more: the connection itself is refused.
    let err = http
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}
