//! The public listener's connection handling. `axum::serve` gives hyper no timer, so a client
//! that connects and says nothing (or sends its request headers one byte a second, or only the
//! HTTP/2 preface) would hold a connection and a file descriptor forever; enough of them and
//! Twilio's webhooks cannot connect. This loop serves the same router with these bounds,
//! whatever the protocol:
//!
//! - a connection's request headers must be complete [`HEADER_READ_TIMEOUT`] after accept, and
//!   again after each response ends (keep-alive), else it is closed (`http/conn.rs` watches
//!   this for HTTP/1, the protocol sniff and HTTP/2 alike); a request in flight (its handler
//!   running or its body streaming) and an upgraded socket (Media Streams) are exempt: the
//!   request timeout and the stream's own rules bound those;
//! - a kept-alive connection that sends no byte [`ConnectionConfig::keepalive_idle`] after its
//!   previous response is closed;
//! - one client address (IPv6: one /64) may hold at most
//!   [`ConnectionConfig::pending_per_address`] connections whose first request's headers are
//!   not yet complete (`http/pending.rs`); the excess is answered at once with a minimal 429 and
//!   closed (trusted proxies are exempt: every client behind them shares their address);
//! - at most `max_connections` connections are open at once (beyond that new ones are closed at
//!   accept and counted);
//! - HTTP/2 (cleartext, prior knowledge) only when [`ConnectionConfig::http2`] is set, with
//!   keep-alive pings, [`H2_MAX_CONCURRENT_STREAMS`] and reset-flood limits; by default the port
//!   speaks HTTP/1.1 only (Twilio needs no h2c, and WebSocket upgrades are HTTP/1.1);
//! - on shutdown every connection is asked to finish its in-flight request and close.

mod conn;
mod pending;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::proxy::{TrustedProxies, limit_key};

/// Time a client has to complete its request headers, from accept and from the end of its
/// previous response.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default bound on open connections (Twilio's traffic for thousands of concurrent calls,
/// one WebSocket each, fits well below it; the process's descriptor limit should be above it).
pub const MAX_CONNECTIONS: usize = 20_000;

/// Streams one HTTP/2 connection may have open at once.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 32;

/// The answer to a connection over its address's cap, written without waiting (the socket's
/// send buffer is empty) before the socket is closed: a client that would have spoken learns
/// why, in a form every HTTP/1 client logs, and costs nothing more.
const TOO_MANY_PENDING: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\n\
Retry-After: 10\r\nContent-Type: text/plain\r\nContent-Length: 43\r\n\r\n\
too many unfinished connections from here\r\n";

/// The bounds on the public listener's connections (see the module).
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Open connections at most.
    pub max_connections: usize,
    /// Connections one client address may hold before their first request's headers are
    /// complete.
    pub pending_per_address: usize,
    /// How long a kept-alive connection may stay silent after a response (zero: one request per
    /// connection).
    pub keepalive_idle: Duration,
    /// Whether cleartext HTTP/2 is served too.
    pub http2: bool,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            pending_per_address: 64,
            keepalive_idle: Duration::from_secs(5),
            http2: false,
        }
    }
}

/// How connections are spoken to: HTTP/1.1 only, or HTTP/1.1 and HTTP/2 told apart by the
/// first bytes (the sniff is bounded by the header deadline like the rest).
#[derive(Clone)]
enum Protocols {
    Http1(hyper::server::conn::http1::Builder),
    Auto(Arc<auto::Builder<TokioExecutor>>),
}

impl Protocols {
    fn new(config: &ConnectionConfig) -> Self {
        let keep_alive = !config.keepalive_idle.is_zero();
        if !config.http2 {
            let mut http1 = hyper::server::conn::http1::Builder::new();
            http1
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(keep_alive);
            return Self::Http1(http1);
        }
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(keep_alive);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(10)))
            .keep_alive_timeout(Duration::from_secs(5))
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(64))
            .max_header_list_size(16 * 1024);
        Self::Auto(Arc::new(builder))
    }
}

/// Serves `app` on `listener` until `stop` resolves, then waits for open connections to finish
/// (the caller bounds that wait with its drain deadline).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    config: &ConnectionConfig,
    trusted: &TrustedProxies,
    stop: impl Future<Output = ()>,
) {
    let protocols = Protocols::new(config);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let pending = pending::PerAddress::new(config.pending_per_address);
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
            metrics::counter!("gateway_connections_refused_total", "reason" => "max_connections")
                .increment(1);
            drop(stream);
            continue;
        };
        // Behind a trusted proxy every client shares its address: no cap there.
        let held = if trusted.contains(peer.ip()) {
            None
        } else if let Some(held) = pending.hold(limit_key(peer.ip())) {
            Some(held)
        } else {
            refuse_pending(&stream);
            continue;
        };
        let connection = conn::Connection {
            peer,
            app: app.clone(),
            held,
            header_timeout: HEADER_READ_TIMEOUT,
            keepalive_idle: config.keepalive_idle,
            shutdown: signal_rx.clone(),
        };
        let (protocols, close) = (protocols.clone(), close_rx.clone());
        metrics::gauge!("gateway_open_connections").increment(1.0);
        tokio::spawn(async move {
            match protocols {
                Protocols::Http1(http1) => connection.serve_http1(stream, &http1).await,
                Protocols::Auto(builder) => connection.serve_auto(stream, &builder).await,
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

/// Answers a connection over its address's cap and closes it, without waiting for anything.
fn refuse_pending(stream: &TcpStream) {
    metrics::counter!("gateway_connections_refused_total", "reason" => "pending_per_address")
        .increment(1);
    let _ = stream.try_write(TOO_MANY_PENDING);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let text = std::str::from_utf8(TOO_MANY_PENDING).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        assert!(head.starts_with("HTTP/1.1 429 "));
    }
}
