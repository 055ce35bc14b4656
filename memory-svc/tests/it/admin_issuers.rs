//! Who may use memory-svc's admin powers: `PurgeExpiredMemories` is the operator's;
//! `EraseTenant` is the operator's (`memory:admin`) or tenant-svc's fanning out a tenant erasure
//! (`memory:erase-tenant`). Any other signer, or a scope from the wrong signer, is refused by the
//! auth layer with PERMISSION_DENIED and nothing is deleted.

use std::time::Duration;

use mesh::api::memory::*;
use mesh::identity::{names, scope};
use tonic::Code;

use crate::common::*;

const CUSTOMER: i64 = 51;

/// A service token signed by `issuer`'s own key, for memory-svc, with `scopes`.
fn token(svc: &Svc, issuer: &str, scopes: &[&str]) -> String {
    svc.keys
        .identity(issuer)
        .minter()
        .mint_service(names::MEMORY_SVC, scopes, Duration::from_secs(300))
        .unwrap()
}

/// Two memories of [`CUSTOMER`], one of them past its TTL (what a purge would delete).
async fn seed(svc: &Svc) {
    let mut c = svc.client().await;
    let t = svc.tenant(CUSTOMER);
    for key in ["kept", "expired"] {
        let request = StoreMemoryRequest {
            user_id: "+15551112222".into(),
            r#type: MemoryType::Fact as i32,
            key: key.into(),
            value: Some(text_value("a fact")),
            ..Default::default()
        };
        c.store_memory(req(request, &t)).await.unwrap();
    }
    svc.admin_sql()
        .await
        .execute(
            "UPDATE memory.memories SET created_at = now() - interval '400 days', \
             expires_at = now() - interval '35 days' WHERE key = 'expired'",
            &[],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn admin_methods_refuse_every_signer_the_rule_does_not_name() {
    let svc = Svc::start().await;
    seed(&svc).await;
    let admin = svc.admin_sql().await;
    let before = fingerprint(&admin, CUSTOMER).await;
    let mut adm = svc.admin().await;
    let both = [scope::MEMORY_ADMIN, scope::MEMORY_ERASE_TENANT];
    let refused = [
        // Other services' keys claiming the admin scopes.
        (names::GATEWAY, &both[..]),
        (names::MEDIA_SVC, &both[..]),
        (names::MEMORY_SVC, &both[..]),
        // tenant-svc may erase a tenant with its narrow scope only, never purge.
        (names::TENANT_SVC, &[scope::MEMORY_ADMIN][..]),
        // The operator's power is `memory:admin`; the fan-out scope is not its.
        (names::OPERATOR, &[scope::MEMORY_ERASE_TENANT][..]),
    ];
    for (issuer, scopes) in refused {
        let t = token(&svc, issuer, scopes);
        let erase = EraseTenantRequest {
            customer_id: CUSTOMER,
        };
        let e = adm.erase_tenant(req(erase, &t)).await.unwrap_err();
        assert_eq!(
            e.code(),
            Code::PermissionDenied,
            "{issuer} {scopes:?}: {e:?}"
        );
        let e = (adm
            .purge_expired_memories(req(PurgeExpiredMemoriesRequest {}, &t))
            .await)
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::PermissionDenied,
            "{issuer} {scopes:?}: {e:?}"
        );
    }
    let t = token(&svc, names::TENANT_SVC, &[scope::MEMORY_ERASE_TENANT]);
    let e = (adm
        .purge_expired_memories(req(PurgeExpiredMemoriesRequest {}, &t))
        .await)
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(
        fingerprint(&admin, CUSTOMER).await,
        before,
        "a refused call deleted rows"
    );

    // The operator purges; tenant-svc's fan-out erases.
    let purged = adm
        .purge_expired_memories(req(PurgeExpiredMemoriesRequest {}, &svc.operator()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(purged.deleted, 1);
    let erase = EraseTenantRequest {
        customer_id: CUSTOMER,
    };
    adm.erase_tenant(req(erase, &t)).await.unwrap();
    assert_eq!(count(&admin, "memory.memories", CUSTOMER).await, 0);
    svc.stop().await;
}

#[tokio::test]
async fn the_operator_still_erases_a_tenant() {
    let svc = Svc::start().await;
    seed(&svc).await;
    let mut adm = svc.admin().await;
    let erase = EraseTenantRequest {
        customer_id: CUSTOMER,
    };
    adm.erase_tenant(req(erase, &svc.operator())).await.unwrap();
    let admin = svc.admin_sql().await;
    assert_eq!(count(&admin, "memory.memories", CUSTOMER).await, 0);
    svc.stop().await;
}
