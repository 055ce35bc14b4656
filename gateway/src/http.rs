//! The public listener's connection handling. `axum::serve` gives hyper no timer, so a client
//! that sends its request headers one byte a second holds its connection (and a file descriptor)
//! forever; enough of them and legitimate webhooks cannot connect. This loop serves the same
//! router with three bounds: request headers must arrive within [`HEADER_READ_TIMEOUT`], at most
//! `max_connections` connections are open at once (beyond that new ones are closed at accept and
//! counted), and on shutdown every connection is asked to finish its in-flight request and close.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// Time a client has to send its complete request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default bound on open connections (Twilio's traffic for thousands of concurrent calls,
/// one WebSocket each, fits well below it; the process's descriptor limit should be above it).
pub const MAX_CONNECTIONS: usize = 20_000;

/// Serves `app` on `listener` until `stop` resolves, then waits for open connections to finish
/// (the caller bounds that wait with its drain deadline).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    max_connections: usize,
    stop: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(max_connections));
    // Dropped on shutdown: every connection task sees it and shuts its connection down
    // gracefully; `closed` resolves once every task has dropped its receiver.
    let (signal_tx, signal_rx) = watch::channel(());
    let (close_tx, close_rx) = watch::channel(());
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("gateway_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        // Media Streams frames are small and latency-sensitive: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request.map(axum::body::Body::new)
            });
        let builder = builder.clone();
        let mut signal = signal_rx.clone();
        let close = close_rx.clone();
        metrics::gauge!("gateway_open_connections").increment(1.0);
        tokio::spawn(async move {
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            tokio::pin!(conn);
            let mut shutting_down = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = signal.changed(), if !shutting_down => {
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            metrics::gauge!("gateway_open_connections").decrement(1.0);
            drop(permit);
            drop(close);
        });
    }
    drop(listener);
    drop(signal_rx);
    let _ = signal_tx.send(());
    drop(close_rx);
    close_tx.closed().await;
}
