//! Client-side balancing across two replicas over real sockets: when one replica dies (its whole
//! runtime is dropped, as a killed process would vanish), requests keep succeeding on the other
//! once the probe has noticed, and the replica is used again when it comes back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A replica: a gRPC server with the health service on its own runtime and thread. Dropping
/// the returned handle kills it (every task and socket of that runtime goes away).
struct Replica {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Replica {
    fn start(listener: std::net::TcpListener) -> Replica {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (_reporter, health) = tonic_health::server::health_reporter();
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        Replica {
            runtime: Some(runtime),
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn bind() -> (std::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

async fn check(client: &mut HealthClient<tonic::transport::Channel>) -> bool {
    tokio::time::timeout(
        Duration::from_secs(1),
        client.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_taken_out_and_requests_keep_succeeding() {
    let (la, a) = bind();
    let (lb, b) = bind();
    let replica_a = Replica::start(la);
    let replica_b = Replica::start(lb);
    let channel = mesh::balance::channel(&format!("http://{a}, http://{b}"), |e| {
        e.connect_timeout(Duration::from_millis(300))
    })
    .unwrap();
    let mut client = HealthClient::new(channel);
    for _ in 0..50 {
        assert!(check(&mut client).await, "both replicas up");
    }

    drop(replica_b);
    let killed = Instant::now();
    // Requests right after the kill may fail until the probe notices (at most an interval and a
    // timeout later); count them.
    let mut failed_while_noticing = 0;
    while killed.elapsed() < mesh::balance::PROBE_INTERVAL + mesh::balance::PROBE_TIMEOUT * 2 {
        if !check(&mut client).await {
            failed_while_noticing += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // From then on, every request succeeds on the surviving replica.
    for n in 0..200 {
        assert!(
            check(&mut client).await,
            "request {n} after the probe window failed"
        );
    }
    println!(
        "requests failed in the {:?} after the kill: {failed_while_noticing}",
        killed.elapsed()
    );

    // The replica comes back on the same address and the other one dies: traffic moves to it.
    let lb = std::net::TcpListener::bind(b).expect("rebind the same port");
    let _replica_b = Replica::start(lb);
    tokio::time::sleep(mesh::balance::PROBE_INTERVAL * 3).await;
    drop(replica_a);
    tokio::time::sleep(mesh::balance::PROBE_INTERVAL + mesh::balance::PROBE_TIMEOUT * 2).await;
    for n in 0..100 {
        assert!(
            check(&mut client).await,
            "request {n} on the returned replica failed"
        );
    }
}

#[tokio::test]
async fn one_url_is_a_plain_channel_and_bad_urls_are_errors() {
    assert!(mesh::balance::channel("http://127.0.0.1:1", |e| e).is_ok());
    assert!(mesh::balance::channel("", |e| e).is_err());
    assert!(mesh::balance::channel("http://a:1, not a url", |e| e).is_err());
}
