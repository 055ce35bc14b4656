//! API keys through the real gateway and mesh: an owner creates a key (`TeamService`), a
//! developer exchanges it at the public `POST /v1/tokens` for a short-lived tenant token that the
//! services accept, and uses it directly on the legacy memory REST; a legacy token still
//! exchanges as before; a revoked key is refused at once and its tokens within 60 s.

use std::time::{Duration, Instant};

use e2e::Mesh;
use mesh::api::memory::ListMemoriesRequest;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant::team_service_client::TeamServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::{CreateApiKeyRequest, GetMyCustomerRequest, RevokeApiKeyRequest};
use mesh::auth::with_bearer;
use mesh::identity::scope;

const CALLER: &str = "+15551230001";

/// Peterson's owner creates a key (tenant, memory read and write; 5-minute tokens): its secret
/// and id.
async fn create_key(mesh: &Mesh, owner: &str) -> (String, String) {
    let created = TeamServiceClient::new(mesh.channel(mesh.tenant).await)
        .create_api_key(with_bearer(
            CreateApiKeyRequest {
                name: "CRM sync".into(),
                scopes: vec![
                    scope::TENANT_READ.into(),
                    scope::MEMORY_READ.into(),
                    scope::MEMORY_WRITE.into(),
                ],
                max_token_ttl: Some(prost_types::Duration {
                    seconds: 300,
                    nanos: 0,
                }),
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    (created.secret, created.key.unwrap().id)
}

/// `POST /v1/tokens` with `bearer`: the status and the JSON answer (never cacheable).
async fn exchange(mesh: &Mesh, bearer: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/tokens", mesh.gateway.main))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let no_store = r
        .headers()
        .get("cache-control")
        .is_some_and(|v| v == "no-store");
    assert!(no_store, "token answers are never cached");
    (status, r.json().await.unwrap())
}

/// `POST <path>` on the legacy memory REST with `bearer` and `body`.
async fn legacy(
    mesh: &Mesh,
    path: &str,
    bearer: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}{path}", mesh.gateway.main))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Polls memory-svc with `token` until it is refused (UNAUTHENTICATED); panics after 60 s. How
/// long it took.
async fn until_memory_refuses(mesh: &Mesh, token: &str, since: Instant) -> Duration {
    let mut memory = MemoryServiceClient::new(mesh.channel(mesh.memory).await);
    loop {
        let r = memory
            .list_memories(with_bearer(
                ListMemoriesRequest {
                    user_id: CALLER.into(),
                    ..Default::default()
                },
                token,
            ))
            .await;
        match r {
            Err(e) if e.code() == tonic::Code::Unauthenticated => return since.elapsed(),
            other => {
                assert!(other.is_ok(), "{other:?}");
                assert!(
                    since.elapsed() < Duration::from_secs(60),
                    "a revoked key's token still works after 60 s"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn an_api_key_exchanges_at_v1_tokens_works_on_legacy_rest_and_its_revocation_holds() {
    let mesh = Mesh::start().await;
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    let owner = mesh.tenant_token(peterson.id, &[scope::TENANT_KEYS]);
    let (secret, key_id) = create_key(&mesh, &owner).await;

    // The key at /v1/tokens: a tenant token of Peterson, with the key's lifetime, that tenant-svc
    // accepts.
    let (status, body) = exchange(&mesh, &secret).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["customer_id"], peterson.id);
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((290..=300).contains(&expires_in), "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let me = TenantServiceClient::new(mesh.channel(mesh.tenant).await)
        .get_my_customer(with_bearer(GetMyCustomerRequest {}, &access))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.customer.unwrap().id, peterson.id);

    // The key as the bearer of the legacy memory REST: Peterson's memory, whatever the body says.
    let store = serde_json::json!({"user_id": CALLER, "role": "user", "content": "keyed note", "customer_id": smith.id});
    let r = legacy(&mesh, "/memory/store", &secret, store).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let retrieve = serde_json::json!({"user_id": CALLER, "limit": 10});
    let r: serde_json::Value = legacy(&mesh, "/memory/retrieve", &secret, retrieve.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["customer_id"], peterson.id);
    assert!(r["memories"].to_string().contains("keyed note"), "{r}");

    // A legacy token still exchanges at /v1/tokens (the old credential, the old scopes).
    let old = mesh::auth::LegacyVerifier::new(&mesh.legacy_secret)
        .unwrap()
        .mint_for_tests(
            mesh::domain::CustomerId::new(smith.id).unwrap(),
            Duration::from_secs(300),
        );
    let (status, body) = exchange(&mesh, &old).await;
    assert_eq!(
        (status, &body["customer_id"]),
        (200, &smith.id.into()),
        "{body}"
    );

    // Unknown and missing credentials: 401 with one message.
    let (status, body) = exchange(&mesh, &format!("nsk_{}", "x".repeat(43))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid or revoked API key"))
    );
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/tokens", mesh.gateway.main))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Revoked: refused at once at /v1/tokens and on the legacy REST; the token it gave is
    // refused by memory-svc within 60 s.
    TeamServiceClient::new(mesh.channel(mesh.tenant).await)
        .revoke_api_key(with_bearer(RevokeApiKeyRequest { key_id }, &owner))
        .await
        .unwrap();
    let revoked = Instant::now();
    assert_eq!(exchange(&mesh, &secret).await.0, 401);
    let r = legacy(&mesh, "/memory/retrieve", &secret, retrieve).await;
    assert_eq!(r.status(), 401);
    let took = until_memory_refuses(&mesh, &access, revoked).await;
    eprintln!("memory-svc refused the revoked key's token {took:?} after the revocation");
}
