//! Who may use media-svc's admin power: `EraseTenant` is the operator's (`media:admin`) or
//! tenant-svc's fanning out a tenant erasure (`media:erase-tenant`). Any other signer, or a scope
//! from the wrong signer, is refused by the auth layer with PERMISSION_DENIED and nothing is
//! deleted.

use mesh::api::media::media_admin_service_client::MediaAdminServiceClient;
use mesh::api::media::*;
use mesh::auth::{AttachToken, TokenSource};
use mesh::identity::{names, scope};
use tonic::Code;

use crate::common::{Svc, register, sid};

const CALLS: &str = "SELECT count(*) FROM media.calls WHERE customer_id = 1";

/// EraseTenant of customer 1 with a token signed by `issuer` carrying `scopes`.
async fn erase(svc: &Svc, issuer: &str, scopes: &[&str]) -> Result<(), tonic::Status> {
    let token = svc.service_token(issuer, names::MEDIA_SVC, scopes);
    let mut admin = MediaAdminServiceClient::with_interceptor(
        svc.channel_to(svc.addr).await,
        AttachToken(TokenSource::fixed(token.into())),
    );
    admin
        .erase_tenant(EraseTenantRequest { customer_id: 1 })
        .await
        .map(drop)
}

#[tokio::test]
async fn erase_tenant_refuses_every_signer_the_rule_does_not_name() {
    let svc = Svc::start().await;
    let mut a = svc.client(1).await;
    a.register_call(register(&sid("CA", 1), "+15551111111"))
        .await
        .unwrap();
    let both = [scope::MEDIA_ADMIN, scope::MEDIA_ERASE_TENANT];
    for (issuer, scopes) in [
        (names::GATEWAY, &both[..]),
        (names::MEMORY_SVC, &both[..]),
        (names::MEDIA_SVC, &both[..]),
        (names::TENANT_SVC, &[scope::MEDIA_ADMIN][..]),
        (names::OPERATOR, &[scope::MEDIA_ERASE_TENANT][..]),
    ] {
        let e = erase(&svc, issuer, scopes).await.unwrap_err();
        assert_eq!(
            e.code(),
            Code::PermissionDenied,
            "{issuer} {scopes:?}: {e:?}"
        );
    }
    assert_eq!(
        svc.count(CALLS).await,
        1,
        "a refused erasure deleted a call"
    );

    // tenant-svc's fan-out erases; so does the operator (nothing left the second time).
    erase(&svc, names::TENANT_SVC, &[scope::MEDIA_ERASE_TENANT])
        .await
        .unwrap();
    assert_eq!(svc.count(CALLS).await, 0);
    erase(&svc, names::OPERATOR, &[scope::MEDIA_ADMIN])
        .await
        .unwrap();
    svc.stop().await;
}
