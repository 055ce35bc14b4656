//! API keys (`TeamService.CreateApiKey` / `ListApiKeys` / `RevokeApiKey`) and their exchange
//! (`ApiKeyExchangeService.ExchangeApiKey`), over real gRPC, a real PostgreSQL and a real
//! memory-svc: the secret is shown once and stored hashed; the exchange mints a token of the
//! key's scopes and lifetime and records the last use at most once a minute; a revoked key no
//! longer exchanges and the tokens already minted from it are refused by every service within
//! 60 s; another tenant's key is NOT_FOUND; refusals store nothing.

use std::time::{Duration, Instant};

use mesh::api::memory::ListMemoriesRequest;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant::api_key_exchange_service_client::ApiKeyExchangeServiceClient;
use mesh::api::tenant::team_service_client::TeamServiceClient;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{self, Peers, auth};

type Team = TeamServiceClient<Channel>;

/// A customer created by the operator; its id.
async fn customer(replica: &common::Replica, op: &str, n: u32) -> i64 {
    TenantAdminServiceClient::new(replica.channel.clone())
        .create_customer(auth(
            CreateCustomerRequest {
                email: format!("keys{n}@example.com"),
                business_name: format!("Keys {n}"),
                ..Default::default()
            },
            op,
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id
}

/// A portal owner's token of `customer` (subject `user:1`) with `scopes`, for tenant-svc.
fn owner(keys: &DevKeys, customer: i64, scopes: &[&str]) -> String {
    keys.identity(names::TENANT_SVC)
        .minter()
        .mint_tenant(
            mesh::domain::CustomerId::new(customer).unwrap(),
            "user:1",
            &[names::TENANT_SVC],
            scopes,
            Duration::from_secs(300),
        )
        .unwrap()
}

fn create(name: &str, scopes: &[&str], ttl: Option<i64>) -> CreateApiKeyRequest {
    CreateApiKeyRequest {
        name: name.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        max_token_ttl: ttl.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
    }
}

/// Exchanges `secret` as the gateway.
async fn exchange(
    keys: &DevKeys,
    replica: &common::Replica,
    secret: &str,
) -> Result<ExchangeApiKeyResponse, tonic::Status> {
    let gateway = common::gateway_token(keys, &[scope::TENANT_EXCHANGE]);
    Ok(ApiKeyExchangeServiceClient::new(replica.channel.clone())
        .exchange_api_key(auth(
            ExchangeApiKeyRequest {
                api_key: secret.into(),
            },
            &gateway,
        ))
        .await?
        .into_inner())
}

/// (keys, audit rows, subject revocations) of `customer` in the database.
async fn stored(db: &TestDb, customer: i64) -> [i64; 3] {
    let sql = db.admin_client().await;
    let mut out = [0; 3];
    for (i, t) in [
        "tenant.api_keys",
        "tenant.audit_log",
        "tenant.token_subject_revocations",
    ]
    .iter()
    .enumerate()
    {
        out[i] = sql
            .query_one(
                &format!("SELECT count(*) FROM {t} WHERE customer_id = $1"),
                &[&customer],
            )
            .await
            .unwrap()
            .get(0);
    }
    out
}

async fn last_used(db: &TestDb, key: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    db.admin_client()
        .await
        .query_one(
            "SELECT last_used_at FROM tenant.api_keys WHERE id = $1::text::uuid",
            &[&key],
        )
        .await
        .unwrap()
        .get(0)
}

/// One tenant with an owner, tenant-svc and memory-svc on one database.
struct Setup {
    db: TestDb,
    keys: DevKeys,
    replica: common::Replica,
    memory: MemoryServiceClient<Channel>,
    _memory_svc: tokio::sync::watch::Sender<bool>,
    a: i64,
    owner: String,
    team: Team,
}

async fn setup() -> Setup {
    let db = TestDb::new().await;
    let keys = DevKeys::generate();
    let peers = Peers {
        memory: common::dead_addr().await,
        media: common::dead_addr().await,
    };
    let replica = common::serve_with_peers(&db, &keys, None, false, &peers).await;
    let memory_svc = common::serve_peers(&db, &keys, &peers, true, false).await;
    let op = common::operator_token(&keys, &[scope::TENANT_ADMIN]);
    let a = customer(&replica, &op, 1).await;
    let owner = owner(&keys, a, &[scope::TENANT_KEYS]);
    let team = Team::new(replica.channel.clone());
    let memory_channel = Channel::from_shared(format!("http://{}", peers.memory))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Setup {
        db,
        keys,
        replica,
        memory: MemoryServiceClient::new(memory_channel),
        _memory_svc: memory_svc,
        a,
        owner,
        team,
    }
}

/// A ListMemories request with `token`.
fn list_memories(token: &str) -> tonic::Request<ListMemoriesRequest> {
    auth(
        ListMemoriesRequest {
            user_id: "+15551234567".into(),
            ..Default::default()
        },
        token,
    )
}

/// Created: the secret once, in the documented shape; stored as its SHA-256 only; listed
/// without it. The secret and the key.
async fn created_once_and_stored_hashed(s: &mut Setup) -> (String, ApiKey) {
    let created = s
        .team
        .create_api_key(auth(
            create(
                " CRM sync ",
                &[scope::MEMORY_READ, scope::TENANT_READ],
                Some(600),
            ),
            &s.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let secret = created.secret.clone();
    let key = created.key.unwrap();
    assert!(secret.starts_with("nsk_") && secret.len() == 47, "{secret}");
    assert_eq!(key.hint, format!("nsk_{}", &secret[43..]));
    assert_eq!(key.name, "CRM sync");
    assert_eq!(key.scopes, vec![scope::TENANT_READ, scope::MEMORY_READ]);
    assert_eq!(key.max_token_ttl.unwrap().seconds, 600);
    assert_eq!(key.created_by, "user:1");
    assert!(key.last_use_time.is_none() && key.revoke_time.is_none());

    // Stored hashed: the row holds the SHA-256 and nothing of the secret but its hint.
    let row = s
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT secret_hash, row_to_json(k)::text FROM tenant.api_keys k WHERE customer_id = $1",
            &[&s.a],
        )
        .await
        .unwrap();
    let hash: Vec<u8> = row.get(0);
    assert_eq!(hash, Sha256::digest(secret.as_bytes()).to_vec());
    let whole: String = row.get(1);
    assert!(!whole.contains(&secret[4..20]), "the secret is not stored");

    // Never shown again: the listing has the key, not its secret.
    let listed = s
        .team
        .list_api_keys(auth(ListApiKeysRequest {}, &s.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.keys, vec![key.clone()]);
    assert!(!format!("{listed:?}").contains(&secret[4..]));
    (secret, key)
}

/// Exchanged: a token of the key's scopes and lifetime, for the key's subject, accepted by
/// tenant-svc and memory-svc.
async fn exchanged(s: &mut Setup, secret: &str, key: &ApiKey) -> String {
    let got = exchange(&s.keys, &s.replica, secret).await.unwrap();
    assert_eq!(got.customer_id, s.a);
    let expires = got.token_expire_time.unwrap().seconds - chrono::Utc::now().timestamp();
    assert!((595..=600).contains(&expires), "{expires}");
    let caller = s
        .keys
        .identity(names::TENANT_SVC)
        .verifier(names::TENANT_SVC)
        .verify(&got.tenant_token)
        .unwrap();
    let mesh::auth::Caller::Tenant(t) = caller else {
        panic!("a tenant token")
    };
    assert_eq!(t.subject, format!("api-key:{}", key.id));
    let mut scopes: Vec<&str> = t.scopes.iter().collect();
    scopes.sort_unstable();
    assert_eq!(scopes, vec![scope::MEMORY_READ, scope::TENANT_READ]);
    TenantServiceClient::new(s.replica.channel.clone())
        .get_my_customer(auth(GetMyCustomerRequest {}, &got.tenant_token))
        .await
        .unwrap();
    s.memory
        .list_memories(list_memories(&got.tenant_token))
        .await
        .unwrap();
    got.tenant_token
}

/// The last use: written by the first exchange, not again within the minute, again after.
/// The token of the last exchange.
async fn last_use_is_written_at_most_once_a_minute(
    s: &mut Setup,
    secret: &str,
    key: &ApiKey,
) -> String {
    let first = last_used(&s.db, &key.id).await.expect("last use written");
    exchange(&s.keys, &s.replica, secret).await.unwrap();
    assert_eq!(
        last_used(&s.db, &key.id).await,
        Some(first),
        "at most once a minute"
    );
    s.db.admin_client()
        .await
        .execute(
            "UPDATE tenant.api_keys SET last_used_at = last_used_at - interval '61 seconds' WHERE customer_id = $1",
            &[&s.a],
        )
        .await
        .unwrap();
    let aged = last_used(&s.db, &key.id).await.unwrap();
    let again = exchange(&s.keys, &s.replica, secret).await.unwrap();
    assert!(last_used(&s.db, &key.id).await.unwrap() > aged);
    let listed = s
        .team
        .list_api_keys(auth(ListApiKeysRequest {}, &s.owner))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.keys[0].last_use_time.is_some());
    again.tenant_token
}

/// Revokes `key`; the key after.
async fn revoke(s: &mut Setup, key: &ApiKey) -> ApiKey {
    s.team
        .revoke_api_key(auth(
            RevokeApiKeyRequest {
                key_id: key.id.clone(),
            },
            &s.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap()
}

/// Polls tenant-svc and memory-svc with `tokens` until both refuse them (UNAUTHENTICATED);
/// panics after 60 s. How long it took.
async fn until_refused_everywhere(s: &mut Setup, tokens: &[String]) -> Duration {
    let since = Instant::now();
    let mut tenant = TenantServiceClient::new(s.replica.channel.clone());
    let mut refused = [false, false];
    while refused != [true, true] {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "a revoked key's tokens still work after 60 s: {refused:?}"
        );
        for t in tokens {
            if let Err(e) = tenant
                .get_my_customer(auth(GetMyCustomerRequest {}, t))
                .await
            {
                assert_eq!(e.code(), Code::Unauthenticated);
                refused[0] = true;
            }
            if let Err(e) = s.memory.list_memories(list_memories(t)).await {
                assert_eq!(e.code(), Code::Unauthenticated);
                refused[1] = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    since.elapsed()
}

/// Audited: created and revoked, by the owner, with the key id, without the secret.
async fn audited(s: &Setup, secret: &str, key: &ApiKey) {
    let audit: Vec<(String, String, String)> = s
        .db
        .admin_client()
        .await
        .query(
            "SELECT actor, action, detail::text FROM tenant.audit_log WHERE customer_id = $1 ORDER BY id",
            &[&s.a],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let what: Vec<(&str, &str)> = audit
        .iter()
        .map(|(actor, action, _)| (actor.as_str(), action.as_str()))
        .collect();
    assert_eq!(
        what,
        vec![("user:1", "keys.created"), ("user:1", "keys.revoked")]
    );
    for (_, _, detail) in &audit {
        assert!(detail.contains(&key.id), "{detail}");
        assert!(!detail.contains(&secret[4..]), "{detail}");
    }
}

#[tokio::test]
async fn a_key_is_shown_once_stored_hashed_exchanged_and_its_revocation_reaches_every_service() {
    let mut s = setup().await;
    let (secret, key) = created_once_and_stored_hashed(&mut s).await;
    let first = exchanged(&mut s, &secret, &key).await;
    let last = last_use_is_written_at_most_once_a_minute(&mut s, &secret, &key).await;
    let other = common::tenant_token(&s.keys, s.a, &[scope::TENANT_READ]);

    // Revoked: no more exchanges; the minted tokens are refused by tenant-svc and memory-svc
    // within 60 s (the refresh interval is 5 s); the tenant's other tokens still work.
    let revoked = revoke(&mut s, &key).await;
    assert!(revoked.revoke_time.is_some());
    let e = exchange(&s.keys, &s.replica, &secret).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let took = until_refused_everywhere(&mut s, &[first, last]).await;
    eprintln!(
        "a revoked key's tokens refused by tenant-svc and memory-svc {took:?} after the revocation"
    );
    TenantServiceClient::new(s.replica.channel.clone())
        .get_my_customer(auth(GetMyCustomerRequest {}, &other))
        .await
        .expect("the tenant's other tokens are untouched");

    // Revoking again changes nothing and succeeds.
    assert_eq!(revoke(&mut s, &key).await, revoked);
    audited(&s, &secret, &key).await;
}

/// Scopes a developer may not hold, bad lifetimes and names: INVALID_ARGUMENT; a token without
/// `tenant:keys`: PERMISSION_DENIED; nothing stored.
async fn invalid_requests_store_nothing(team: &mut Team, db: &TestDb, keys: &DevKeys, a: i64) {
    let token_a = owner(keys, a, &[scope::TENANT_KEYS]);
    for (req, field) in [
        (
            create("k", &[scope::TENANT_READ, scope::TENANT_KEYS], None),
            "scopes",
        ),
        (create("k", &[scope::TENANT_TEAM], None), "scopes"),
        (create("k", &[scope::TENANT_AUDIT], None), "scopes"),
        (create("k", &[scope::MEMORY_ERASE], None), "scopes"),
        (create("k", &[], None), "scopes"),
        (
            create("k", &[scope::TENANT_READ], Some(59)),
            "max_token_ttl",
        ),
        (
            create("k", &[scope::TENANT_READ], Some(3601)),
            "max_token_ttl",
        ),
        (create(" ", &[scope::TENANT_READ], None), "name"),
        (create(&"n".repeat(61), &[scope::TENANT_READ], None), "name"),
    ] {
        let e = team.create_api_key(auth(req, &token_a)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().starts_with(&format!("{field}: ")),
            "{}",
            e.message()
        );
    }
    assert_eq!(stored(db, a).await, [0, 0, 0], "a refusal stores nothing");

    // Without `tenant:keys` (a staff token, say): PERMISSION_DENIED before anything.
    let staff = owner(keys, a, scope::STAFF_SCOPES);
    let e = team
        .create_api_key(auth(create("k", &[scope::TENANT_READ], None), &staff))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(stored(db, a).await, [0, 0, 0]);
}

/// The exchange: one UNAUTHENTICATED answer for malformed and unknown keys; only the gateway's
/// `tenant:exchange` token may ask; a suspended tenant's key does not exchange (same answer),
/// reinstated it does again.
async fn exchange_refusals(
    keys: &DevKeys,
    replica: &common::Replica,
    op: &str,
    a: i64,
    secret: &str,
) {
    let token_a = owner(keys, a, &[scope::TENANT_KEYS]);
    let unknown = format!("nsk_{}", "A".repeat(43));
    for bad in ["", "nsk_", "Bearer x", unknown.as_str(), &secret[..46]] {
        let e = exchange(keys, replica, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{bad}");
        assert_eq!(e.message(), "invalid or revoked API key");
    }
    let e = ApiKeyExchangeServiceClient::new(replica.channel.clone())
        .exchange_api_key(auth(
            ExchangeApiKeyRequest {
                api_key: secret.to_owned(),
            },
            &token_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // A suspended tenant's key does not exchange (same answer); reinstated, it does again.
    let mut admin = TenantAdminServiceClient::new(replica.channel.clone());
    for (status, ok) in [
        (CustomerStatus::Suspended, false),
        (CustomerStatus::Active, true),
    ] {
        admin
            .set_customer_status(auth(
                SetCustomerStatusRequest {
                    customer_id: a,
                    status: status as i32,
                },
                op,
            ))
            .await
            .unwrap();
        let r = exchange(keys, replica, secret).await;
        match ok {
            true => assert!(r.is_ok(), "{r:?}"),
            false => assert_eq!(r.unwrap_err().code(), Code::Unauthenticated),
        }
    }
}

#[tokio::test]
async fn refusals_store_nothing_and_another_tenants_key_is_not_found() {
    let db = TestDb::new().await;
    let keys = DevKeys::generate();
    let replica = common::serve(&db, &keys, None, false).await;
    let op = common::operator_token(&keys, &[scope::TENANT_ADMIN]);
    let (a, b) = (
        customer(&replica, &op, 1).await,
        customer(&replica, &op, 2).await,
    );
    let token_a = owner(&keys, a, &[scope::TENANT_KEYS]);
    let token_b = owner(&keys, b, &[scope::TENANT_KEYS]);
    let mut team = Team::new(replica.channel.clone());

    invalid_requests_store_nothing(&mut team, &db, &keys, a).await;

    // A's key; an active key's name is taken (ALREADY_EXISTS, nothing stored).
    let created = team
        .create_api_key(auth(create("sync", &[scope::MEDIA_READ], None), &token_a))
        .await
        .unwrap()
        .into_inner();
    let key = created.key.unwrap();
    assert_eq!(
        key.max_token_ttl.unwrap().seconds,
        15 * 60,
        "the default lifetime"
    );
    let e = team
        .create_api_key(auth(create("sync", &[scope::MEDIA_READ], None), &token_a))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(stored(&db, a).await, [1, 1, 0]);

    // B cannot see, nor revoke, A's key: NOT_FOUND like an unknown one; nothing changes.
    let listed_b = team
        .list_api_keys(auth(ListApiKeysRequest {}, &token_b))
        .await
        .unwrap()
        .into_inner();
    assert!(listed_b.keys.is_empty());
    for id in [key.id.clone(), uuid_like()] {
        let e = team
            .revoke_api_key(auth(RevokeApiKeyRequest { key_id: id }, &token_b))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    let e = team
        .revoke_api_key(auth(
            RevokeApiKeyRequest {
                key_id: "not-a-key".into(),
            },
            &token_b,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(stored(&db, b).await, [0, 0, 0]);
    assert_eq!(stored(&db, a).await, [1, 1, 0]);
    exchange(&keys, &replica, &created.secret)
        .await
        .expect("A's key still works");

    exchange_refusals(&keys, &replica, &op, a, &created.secret).await;
}

/// A UUID nobody's key has.
fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000001".into()
}
