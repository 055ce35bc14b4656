//! Legacy HS256 tokens at the exchange: a bounded lifetime (`JWT_MAX_LIFETIME_SECONDS`) and
//! scopes mapped explicitly (a missing scope is read-only, `memory:read` never writes).

use std::time::Duration;

use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::*;
use mesh::auth::LegacyVerifier;
use mesh::domain::CustomerId;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use secrecy::SecretString;
use tonic::Code;

use crate::common::{self, auth};

const SECRET: &str = "legacy-secret-for-tests-0123456789abcdef";

/// tenant-svc with a legacy verifier accepting at most `max_lifetime`, one customer; returns
/// the edge client (with the gateway's token), the verifier (to mint) and the customer.
async fn start(
    max_lifetime: Duration,
) -> (TestDb, DevKeys, common::Replica, LegacyVerifier, CustomerId) {
    let db = TestDb::new().await;
    let keys = DevKeys::generate();
    let legacy = LegacyVerifier::new(&SecretString::from(SECRET))
        .unwrap()
        .with_max_lifetime(max_lifetime);
    let replica = common::serve(&db, &keys, Some(legacy.clone()), false).await;
    let op = common::operator_token(&keys, &[scope::TENANT_ADMIN]);
    let c = TenantAdminServiceClient::new(replica.channel.clone())
        .create_customer(auth(
            CreateCustomerRequest {
                email: "legacy@tokens.example".into(),
                business_name: "Legacy Agency".into(),
                ..Default::default()
            },
            &op,
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    (db, keys, replica, legacy, CustomerId::new(c.id).unwrap())
}

/// Exchanges `legacy_token` as the gateway; the scopes of the token it gets, sorted.
async fn exchange(
    keys: &DevKeys,
    replica: &common::Replica,
    legacy_token: String,
) -> Result<Vec<String>, tonic::Status> {
    let gateway = common::gateway_token(keys, &[scope::TENANT_EXCHANGE]);
    let r = EdgeServiceClient::new(replica.channel.clone())
        .exchange_legacy_token(auth(ExchangeLegacyTokenRequest { legacy_token }, &gateway))
        .await?
        .into_inner();
    let caller = (keys.identity(names::MEMORY_SVC))
        .verifier(names::MEMORY_SVC)
        .verify(&r.tenant_token)
        .unwrap();
    Ok(caller.scopes().iter().map(str::to_owned).collect())
}

#[tokio::test]
async fn a_legacy_token_living_longer_than_the_maximum_is_refused() {
    let hour = Duration::from_secs(3600);
    let (_db, keys, replica, legacy, id) = start(hour).await;
    exchange(&keys, &replica, legacy.mint_for_tests(id, hour))
        .await
        .expect("exactly the maximum");
    for ttl in [
        hour + Duration::from_secs(1),
        Duration::from_secs(10 * 365 * 86_400),
    ] {
        let err = exchange(&keys, &replica, legacy.mint_for_tests(id, ttl))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{ttl:?}: {err:?}");
    }
    // The default is 24 h.
    let default = LegacyVerifier::new(&SecretString::from(SECRET)).unwrap();
    let day = Duration::from_secs(86_400);
    assert!(default.verify(&default.mint_for_tests(id, day)).is_ok());
    let long = default.mint_for_tests(id, day + Duration::from_secs(1));
    assert!(matches!(
        default.verify(&long),
        Err(mesh::auth::AuthError::LifetimeTooLong { .. })
    ));
}

#[tokio::test]
async fn legacy_scopes_are_mapped_and_a_missing_scope_is_read_only() {
    let (_db, keys, replica, legacy, id) = start(Duration::from_secs(3600)).await;
    let minute = Duration::from_secs(60);
    let read = vec![scope::MEMORY_READ.to_owned()];
    let rw = vec![
        scope::MEMORY_READ.to_owned(),
        scope::MEMORY_WRITE.to_owned(),
    ];
    for (claim, granted) in [
        (None, read.clone()),
        (Some(""), read.clone()),
        (Some("memory:read"), read.clone()),
        (Some("memory:write"), vec![scope::MEMORY_WRITE.to_owned()]),
        (Some("memory:read:write"), rw.clone()),
        (Some("memory:read memory:write"), rw.clone()),
    ] {
        let token = legacy.mint_scoped_for_tests(id, minute, claim);
        let got = exchange(&keys, &replica, token).await.unwrap();
        assert_eq!(got, granted, "{claim:?}");
    }
    // A scope that names no memory power grants nothing: refused, not read-write.
    let token = legacy.mint_scoped_for_tests(id, minute, Some("admin tenant:admin"));
    let err = exchange(&keys, &replica, token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}
