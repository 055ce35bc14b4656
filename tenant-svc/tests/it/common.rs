//! What the test modules share: a tenant-svc replica served on port 0 over a test database, the
//! tokens the tests present (an operator's, the gateway's, a tenant's), and the bearer metadata.

use std::net::SocketAddr;
use std::time::Duration;

use mesh::auth::LegacyVerifier;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Request;
use tonic::transport::Channel;

/// A running replica; it stops when this is dropped.
pub struct Replica {
    /// A connected channel to its gRPC port.
    pub channel: Channel,
    _stop: oneshot::Sender<()>,
}

/// Serves one tenant-svc replica on port 0 over `db` (as role `tenant_svc`), with `keys`'
/// tenant-svc identity, the legacy verifier and `WEBHOOK_ALLOW_INSECURE` as given.
/// Its peers (memory-svc, media-svc) are unreachable: see [`serve_with_peers`].
pub async fn serve(
    db: &TestDb,
    keys: &DevKeys,
    legacy: Option<LegacyVerifier>,
    webhook_allow_insecure: bool,
) -> Replica {
    let peers = Peers {
        memory: dead_addr().await,
        media: dead_addr().await,
    };
    serve_with_peers(db, keys, legacy, webhook_allow_insecure, &peers).await
}

/// Where a replica's peers are (`DeleteCustomer` asks them to erase the customer's data).
#[derive(Debug, Clone, Copy)]
pub struct Peers {
    /// memory-svc's gRPC address.
    pub memory: SocketAddr,
    /// media-svc's gRPC address.
    pub media: SocketAddr,
}

/// A loopback address where nothing listens (until a test binds it again).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// [`serve`] with its peers at `peers`.
pub async fn serve_with_peers(
    db: &TestDb,
    keys: &DevKeys,
    legacy: Option<LegacyVerifier>,
    webhook_allow_insecure: bool,
    peers: &Peers,
) -> Replica {
    serve_configured(
        db,
        keys,
        legacy,
        webhook_allow_insecure,
        peers,
        tenant_svc::account::AccountConfig::default(),
    )
    .await
}

/// [`serve`] with portal sessions configured as `accounts` (its peers unreachable).
pub async fn serve_with_accounts(
    db: &TestDb,
    keys: &DevKeys,
    accounts: tenant_svc::account::AccountConfig,
) -> Replica {
    let peers = Peers {
        memory: dead_addr().await,
        media: dead_addr().await,
    };
    serve_configured(db, keys, None, false, &peers, accounts).await
}

/// [`serve_with_peers`] with portal sessions configured as `accounts`.
pub async fn serve_configured(
    db: &TestDb,
    keys: &DevKeys,
    legacy: Option<LegacyVerifier>,
    webhook_allow_insecure: bool,
    peers: &Peers,
    accounts: tenant_svc::account::AccountConfig,
) -> Replica {
    let deps = tenant_svc::Deps {
        core: mesh::server::Core {
            db: db.db_for_role("tenant_svc").await,
            identity: keys.identity(names::TENANT_SVC),
        },
        legacy,
        webhook_allow_insecure,
        peers: tenant_svc::peers::Peers::new(
            &format!("http://{}", peers.memory),
            &format!("http://{}", peers.media),
            keys.identity(names::TENANT_SVC),
        )
        .unwrap(),
        accounts,
    };
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(tenant_svc::serve(
        deps,
        mesh::server::Listeners::new(grpc, admin, Duration::from_secs(1)),
        async {
            let _ = rx.await;
        },
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Replica { channel, _stop: tx }
}

/// An operator's service token for tenant-svc with `scopes`.
pub fn operator_token(keys: &DevKeys, scopes: &[&str]) -> String {
    keys.identity(names::OPERATOR)
        .minter()
        .mint_service(names::TENANT_SVC, scopes, Duration::from_secs(300))
        .unwrap()
}

/// The gateway's service token for tenant-svc with `scopes`.
pub fn gateway_token(keys: &DevKeys, scopes: &[&str]) -> String {
    keys.identity(names::GATEWAY)
        .minter()
        .mint_service(names::TENANT_SVC, scopes, Duration::from_secs(300))
        .unwrap()
}

/// A tenant token of `customer` (subject `test-user`) for tenant-svc with `scopes`.
pub fn tenant_token(keys: &DevKeys, customer: i64, scopes: &[&str]) -> String {
    keys.identity(names::TENANT_SVC)
        .minter()
        .mint_tenant(
            mesh::domain::CustomerId::new(customer).unwrap(),
            "test-user",
            &[names::TENANT_SVC],
            scopes,
            Duration::from_secs(300),
        )
        .unwrap()
}

/// `msg` with `authorization: Bearer <token>`.
pub fn auth<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The read-and-write tenant scopes.
pub const RW: &[&str] = &[scope::TENANT_READ, scope::TENANT_WRITE];

/// memory-svc and media-svc served in-process over `db` at `peers` (each when asked), until
/// the returned sender is dropped: the services `DeleteCustomer` fans out to.
pub async fn serve_peers(
    db: &TestDb,
    keys: &DevKeys,
    peers: &Peers,
    memory: bool,
    media: bool,
) -> tokio::sync::watch::Sender<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = move || {
        let mut s = stopped.clone();
        async move {
            let _ = s.wait_for(|v| *v).await;
        }
    };
    let bind = |addr: SocketAddr| async move {
        let grpc = TcpListener::bind(addr)
            .await
            .expect("the peer's address is free");
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        mesh::server::Listeners::new(grpc, admin, Duration::from_secs(1))
    };
    if memory {
        let deps = memory_svc::Deps {
            db: db.db_for_role("memory_svc").await,
            identity: keys.identity(names::MEMORY_SVC),
        };
        tokio::spawn(memory_svc::serve(deps, bind(peers.memory).await, until()));
    }
    if media {
        let nowhere = format!("http://{}", dead_addr().await);
        let deps = media_svc::Deps {
            core: mesh::server::Core {
                db: db.db_for_role("media_svc").await,
                identity: keys.identity(names::MEDIA_SVC),
            },
            calls: media_svc::CallConfig::local(nowhere.clone(), nowhere),
        };
        tokio::spawn(media_svc::serve(deps, bind(peers.media).await, until()));
    }
    stop
}
