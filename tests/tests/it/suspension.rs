//! Suspension through the one revocation mechanism (V13, `mesh::auth::Revocations`): a
//! suspended tenant's tokens stop on every service within the refresh interval, cached
//! verifications included; another tenant is unaffected; reinstating revives no old token, and
//! a token issued after it works.

use std::time::{Duration, Instant};

use e2e::{Mesh, with_token};
use mesh::api::media::ListCallsRequest;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::memory::ListMemoriesRequest;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::{
    CustomerStatus, GetMyCustomerRequest, IssueTenantTokenRequest, SetCustomerStatusRequest,
};
use mesh::auth::revocation::REFRESH_INTERVAL;
use mesh::identity::{names, scope};
use tonic::Code;

/// One tenant RPC on each service with `token`: the codes of the refusals (`None`: answered).
async fn probe(mesh: &Mesh, token: &str) -> [Option<(Code, String)>; 3] {
    let code = |r: Result<(), tonic::Status>| r.err().map(|e| (e.code(), e.message().to_owned()));
    let tenant = TenantServiceClient::new(mesh.channel(mesh.tenant).await)
        .get_my_customer(with_token(GetMyCustomerRequest {}, token))
        .await;
    let request = ListMemoriesRequest {
        user_id: "+15551111111".into(),
        ..Default::default()
    };
    let memory = MemoryServiceClient::new(mesh.channel(mesh.memory).await)
        .list_memories(with_token(request, token))
        .await;
    let media = CallServiceClient::new(mesh.channel(mesh.media).await)
        .list_calls(with_token(ListCallsRequest::default(), token))
        .await;
    [
        code(tenant.map(drop)),
        code(memory.map(drop)),
        code(media.map(drop)),
    ]
}

async fn set_status(mesh: &Mesh, customer_id: i64, status: CustomerStatus) {
    let op = mesh.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    let request = SetCustomerStatusRequest {
        customer_id,
        status: status.into(),
    };
    TenantAdminServiceClient::new(mesh.channel(mesh.tenant).await)
        .set_customer_status(with_token(request, &op))
        .await
        .expect("operator sets the status");
}

/// Waits (at most the refresh interval and a margin) until `token`'s probe gives `want`.
async fn until(mesh: &Mesh, token: &str, want: Option<Code>) -> Duration {
    let start = Instant::now();
    loop {
        let got = probe(mesh, token).await;
        if got.iter().all(|g| g.as_ref().map(|(c, _)| *c) == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < REFRESH_INTERVAL + Duration::from_secs(5),
            "still {got:?} after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_suspended_tenants_tokens_stop_on_every_service_within_the_refresh_interval() {
    let mesh = Mesh::start().await;
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    let scopes = [scope::TENANT_READ, scope::MEMORY_READ, scope::MEDIA_READ];
    let old = mesh.tenant_token(peterson.id, &scopes);
    let other = mesh.tenant_token(smith.id, &scopes);
    // Both work everywhere (and every service now holds them as verified).
    assert_eq!(probe(&mesh, &old).await, [None, None, None]);
    assert_eq!(probe(&mesh, &other).await, [None, None, None]);

    set_status(&mesh, peterson.id, CustomerStatus::Suspended).await;
    let took = until(&mesh, &old, Some(Code::Unauthenticated)).await;
    for refused in probe(&mesh, &old).await {
        assert_eq!(
            refused,
            Some((Code::Unauthenticated, "token revoked".into()))
        );
    }
    assert!(
        took <= REFRESH_INTERVAL + Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(
        probe(&mesh, &other).await,
        [None, None, None],
        "Smith unaffected"
    );
    // No new token while suspended.
    let op = mesh.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    let issue = || IssueTenantTokenRequest {
        customer_id: peterson.id,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        subject: "after-reinstatement".into(),
        ..Default::default()
    };
    let mut admin = TenantAdminServiceClient::new(mesh.channel(mesh.tenant).await);
    let err = (admin.issue_tenant_token(with_token(issue(), &op)).await).unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // Reinstated: the old token stays dead, a token issued after the suspension's second works.
    set_status(&mesh, peterson.id, CustomerStatus::Active).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = admin
        .issue_tenant_token(with_token(issue(), &op))
        .await
        .unwrap()
        .into_inner()
        .token;
    until(&mesh, &new, None).await;
    for refused in probe(&mesh, &old).await {
        assert_eq!(refused.map(|r| r.0), Some(Code::Unauthenticated));
    }
}
