//! The server bootstrap over real sockets: graceful shutdown drains in-flight RPCs (readiness
//! and health report draining meanwhile), and a drain deadline bounds how long a stuck RPC can
//! hold the process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::api::tenant::edge_service_server::{EdgeService, EdgeServiceServer};
use mesh::api::tenant::{
    ExchangeLegacyTokenRequest, ExchangeLegacyTokenResponse, ResolveNumberRequest,
    ResolveNumberResponse,
};
use mesh::auth::{Policy, Rule};
use mesh::identity::{DevKeys, names};
use mesh::server::{ReadinessCheck, ServeConfig};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tonic::{Request, Response, Status};

/// Answers ResolveNumber once `release` is notified, telling the test it has started.
#[derive(Clone)]
struct Held {
    started: Arc<Notify>,
    release: Arc<Notify>,
}

#[tonic::async_trait]
impl EdgeService for Held {
    async fn resolve_number(
        &self,
        _: Request<ResolveNumberRequest>,
    ) -> Result<Response<ResolveNumberResponse>, Status> {
        self.started.notify_one();
        self.release.notified().await;
        Ok(Response::new(ResolveNumberResponse {
            customer_id: 7,
            ..Default::default()
        }))
    }

    async fn exchange_legacy_token(
        &self,
        _: Request<ExchangeLegacyTokenRequest>,
    ) -> Result<Response<ExchangeLegacyTokenResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

struct Running {
    grpc: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    token: String,
    held: Held,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), mesh::server::ServeError>>,
}

async fn start(drain: Duration) -> Running {
    let keys = DevKeys::generate();
    let identity = keys.identity(names::TENANT_SVC);
    let token = keys
        .identity(names::GATEWAY)
        .minter()
        .mint_service(
            names::TENANT_SVC,
            &["tenant:resolve"],
            Duration::from_secs(60),
        )
        .unwrap();
    let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = grpc_listener.local_addr().unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let held = Held {
        started: Arc::new(Notify::new()),
        release: Arc::new(Notify::new()),
    };
    let readiness: ReadinessCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    let config = ServeConfig {
        service: "test-svc",
        grpc_listener,
        admin_listener,
        verifier: identity.verifier(names::TENANT_SVC),
        policy: Arc::new(Policy::new().rule(
            "/neurosphere.tenant.v1.EdgeService/ResolveNumber",
            Rule::service("tenant:resolve").issued_by(&["gateway"]),
        )),
        health_names: vec!["neurosphere.tenant.v1.EdgeService".to_owned()],
        readiness,
        drain_deadline: drain,
        revocations: None,
    };
    let (tx, rx) = oneshot::channel::<()>();
    let routes = tonic::service::Routes::new(EdgeServiceServer::new(held.clone()));
    let done = tokio::spawn(mesh::server::serve(config, routes, async {
        let _ = rx.await;
    }));
    Running {
        grpc,
        admin,
        token,
        held,
        stop: Some(tx),
        done,
    }
}

fn request(token: &str) -> Request<ResolveNumberRequest> {
    let mut req = Request::new(ResolveNumberRequest::default());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// Starts one RPC that the handler holds, and waits until the handler has it.
async fn hold_one_rpc(
    s: &Running,
) -> tokio::task::JoinHandle<Result<Response<ResolveNumberResponse>, Status>> {
    let mut client = EdgeServiceClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    let token = s.token.clone();
    let in_flight = tokio::spawn(async move { client.resolve_number(request(&token)).await });
    s.held.started.notified().await;
    in_flight
}

#[tokio::test]
async fn shutdown_drains_in_flight_rpcs_and_reports_draining() {
    let mut s = start(Duration::from_secs(10)).await;
    let http = reqwest::Client::new();
    let readyz = format!("http://{}/readyz", s.admin);
    assert_eq!(http.get(&readyz).send().await.unwrap().status(), 200);

    let in_flight = hold_one_rpc(&s).await;

    s.stop.take().unwrap().send(()).unwrap();
    // While the RPC is held, the service reports draining and accepts no new connections.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http.get(&readyz).send().await.unwrap();
        if r.status() == 503 {
            assert!(r.text().await.unwrap().contains("draining"));
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never reported draining");
        tokio::task::yield_now().await;
    }
    let fresh = EdgeServiceClient::connect(format!("http://{}", s.grpc)).await;
    assert!(
        fresh.is_err(),
        "a new connection was accepted while draining"
    );
    assert!(
        !s.done.is_finished(),
        "the server stopped before the RPC finished"
    );

    s.held.release.notify_one();
    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight RPC completes");
    assert_eq!(answer.into_inner().customer_id, 7);
    tokio::time::timeout(Duration::from_secs(5), s.done)
        .await
        .expect("serve returns once drained")
        .unwrap()
        .unwrap();
    assert!(
        http.get(&readyz).send().await.is_err(),
        "admin port still open"
    );
}

#[tokio::test]
async fn drain_deadline_bounds_a_stuck_rpc() {
    let mut s = start(Duration::from_millis(300)).await;
    let in_flight = hold_one_rpc(&s).await;
    let stopped_at = Instant::now();
    s.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), s.done)
        .await
        .expect("serve returns after the drain deadline")
        .unwrap()
        .unwrap();
    let took = stopped_at.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "returned before the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // The process exits after `serve` returns, which closes the stuck call's connection; in
    // this test process the connection task lives on, so just stop waiting for it.
    in_flight.abort();
}
