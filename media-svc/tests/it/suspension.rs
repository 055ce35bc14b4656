//! media-svc's own tenant tokens (`peers.rs`) and the one revocation mechanism: a token cached
//! before a suspension is not presented again once the suspension is lifted.

use std::time::Duration;

use media_svc::peers::Peers;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::{CustomerStatus, SetCustomerStatusRequest};
use mesh::auth::{AttachToken, TokenSource};
use mesh::domain::CustomerId;
use mesh::identity::{names, scope};

use crate::common::{Svc, create_customer, eventually};

async fn set_status(svc: &Svc, customer_id: i64, status: CustomerStatus) {
    let token = svc.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    TenantAdminServiceClient::with_interceptor(
        svc.channel_to(svc.tenant_addr.expect("tenant-svc running"))
            .await,
        AttachToken(TokenSource::fixed(token.into())),
    )
    .set_customer_status(SetCustomerStatusRequest {
        customer_id,
        status: status.into(),
    })
    .await
    .expect("the operator sets the status");
}

#[tokio::test]
async fn a_peer_token_cached_before_a_suspension_is_replaced_once_it_is_lifted() {
    let svc = Svc::start_with(|c| c, true).await;
    let id = create_customer(&svc, "alloy").await;
    let customer = CustomerId::new(id).unwrap();
    let tenant_url = format!("http://{}", svc.tenant_addr.unwrap());
    let peers = Peers::new(
        &tenant_url,
        "http://127.0.0.1:1",
        svc.keys.identity(names::MEDIA_SVC),
        Duration::from_secs(5),
    )
    .unwrap();
    let media_db = svc.db.db_for_role("media_svc").await;
    peers.profile(customer).await.expect("a profile before");

    set_status(&svc, id, CustomerStatus::Suspended).await;
    // tenant-svc refuses the cached token within its refresh interval.
    eventually("tenant-svc refuses the suspended tenant's token", || {
        let peers = peers.clone();
        async move { peers.profile(customer).await.is_err() }
    })
    .await;
    set_status(&svc, id, CustomerStatus::Active).await;
    // What media-svc's own refresher does every few seconds.
    peers.revocations().refresh(&media_db).await.unwrap();
    let profile = peers
        .profile(customer)
        .await
        .expect("the reinstated tenant's profile at once, with a fresh token");
    assert_eq!(profile.agent_name, "Ada");
    svc.stop().await;
}
