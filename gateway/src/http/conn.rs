//! One connection of the public listener: the router served over it, and the watch that closes
//! it when its client does not speak in time. What the watch needs is kept in [`Progress`]:
//! requests in flight (from the moment their headers are complete until their response body
//! has been sent or dropped), whether the connection was upgraded, bytes read, and when the last
//! response ended. The rules it applies are the module's parent's.

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use futures::future::BoxFuture;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::pending::Held;

/// How long a connection that was told to close may take to close by itself before it is
/// dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// One accepted connection, ready to be served.
pub(super) struct Connection {
    pub peer: SocketAddr,
    pub app: axum::Router,
    /// The connection's place under its address's cap, given back with its first request.
    pub held: Option<Held>,
    pub header_timeout: Duration,
    pub keepalive_idle: Duration,
    /// Changes (or closes) when the server shuts down.
    pub shutdown: watch::Receiver<()>,
}

impl Connection {
    /// Serves HTTP/1.1 (with upgrades) until the connection ends.
    pub async fn serve_http1(self, stream: TcpStream, http1: &hyper::server::conn::http1::Builder) {
        let (io, service, watch) = self.parts(stream);
        let conn = http1.serve_connection(io, service).with_upgrades();
        watch
            .drive(
                conn,
                hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown,
            )
            .await;
    }

    /// Serves HTTP/1.1 or HTTP/2, whichever the client speaks, until the connection ends.
    pub async fn serve_auto(self, stream: TcpStream, builder: &auto::Builder<TokioExecutor>) {
        let (io, service, watch) = self.parts(stream);
        let conn = builder.serve_connection_with_upgrades(io, service);
        watch
            .drive(conn, auto::UpgradeableConnection::graceful_shutdown)
            .await;
    }

    /// The socket (counting what it reads), the router (tracking each request) and the watch,
    /// all sharing one [`Progress`].
    fn parts(self, stream: TcpStream) -> (TokioIo<Counted>, TowerToHyperService<Tracker>, Watch) {
        // Media Streams frames are small and latency-sensitive: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let progress = Arc::new(Progress::new(self.held));
        let io = TokioIo::new(Counted {
            stream,
            progress: progress.clone(),
        });
        let service = TowerToHyperService::new(Tracker {
            app: self.app,
            peer: self.peer,
            progress: progress.clone(),
        });
        let watch = Watch {
            progress,
            header_timeout: self.header_timeout,
            keepalive_idle: self.keepalive_idle,
            shutdown: self.shutdown,
        };
        (io, service, watch)
    }
}

/// The router, with each request counted in flight until its response body is done, and
/// given the peer's address (`ConnectInfo`, which `extract::resolve_client` starts from).
#[derive(Clone)]
pub(super) struct Tracker {
    app: axum::Router,
    peer: SocketAddr,
    progress: Arc<Progress>,
}

impl tower::Service<Request<Incoming>> for Tracker {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let guard = self.progress.begin();
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request).await?;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                guard.progress.upgraded.store(true, Ordering::SeqCst);
            }
            Ok(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _guard: guard,
                })
            }))
        })
    }
}

/// What the watch of one connection knows about it.
struct Progress {
    in_flight: AtomicUsize,
    requests: AtomicU64,
    upgraded: AtomicBool,
    bytes_read: AtomicU64,
    /// When the connection last had nothing in flight (accept, or a response's end), and how
    /// many bytes had been read then.
    idle_since: Mutex<(Instant, u64)>,
    changed: Notify,
    held: Mutex<Option<Held>>,
}

impl Progress {
    fn new(held: Option<Held>) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            bytes_read: AtomicU64::new(0),
            idle_since: Mutex::new((Instant::now(), 0)),
            changed: Notify::new(),
            held: Mutex::new(held),
        }
    }

    /// A request's headers are complete: it is in flight until the guard drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        // The client has spoken: its place under the address's cap is free again.
        drop(self.held.lock().expect("not poisoned").take());
        self.changed.notify_waiters();
        InFlight {
            progress: self.clone(),
        }
    }

    fn idle_since(&self) -> (Instant, u64) {
        *self.idle_since.lock().expect("not poisoned")
    }
}

/// A request in flight; dropped when its response body is done (or the request abandoned).
struct InFlight {
    progress: Arc<Progress>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let p = &self.progress;
        if p.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *p.idle_since.lock().expect("not poisoned") =
                (Instant::now(), p.bytes_read.load(Ordering::SeqCst));
        }
        p.changed.notify_waiters();
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
struct Tracked {
    body: Body,
    _guard: InFlight,
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, counting the bytes read from it (a kept-alive client that sends nothing is told
/// apart from one slowly sending its next request).
pub(super) struct Counted {
    stream: TcpStream,
    progress: Arc<Progress>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.progress
                .bytes_read
                .fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Why a connection was closed for not speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Silence {
    /// Request headers not complete in time (after accept or the previous response).
    Headers,
    /// Kept alive, and not a byte since the previous response.
    KeepAliveIdle,
}

impl Silence {
    fn label(self) -> &'static str {
        match self {
            Self::Headers => "header_timeout",
            Self::KeepAliveIdle => "keepalive_idle",
        }
    }
}

/// Drives one connection and closes it when its client does not speak in time.
pub(super) struct Watch {
    progress: Arc<Progress>,
    header_timeout: Duration,
    keepalive_idle: Duration,
    shutdown: watch::Receiver<()>,
}

impl Watch {
    /// Runs `conn` to its end: gracefully shut down (`graceful`) when the server stops, shut
    /// down and then dropped when the client is silent too long.
    async fn drive<C, E>(mut self, conn: C, graceful: fn(Pin<&mut C>))
    where
        C: Future<Output = Result<(), E>>,
        E: Display,
    {
        tokio::pin!(conn);
        let silence = self
            .progress
            .clone()
            .silence(self.header_timeout, self.keepalive_idle);
        tokio::pin!(silence);
        let mut stopping = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.shutdown.changed(), if !stopping => {
                    stopping = true;
                    graceful(conn.as_mut());
                }
                why = &mut silence, if !stopping => {
                    let reason = why.label();
                    metrics::counter!("gateway_connections_closed_silent_total", "reason" => reason)
                        .increment(1);
                    graceful(conn.as_mut());
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
                    return;
                }
            }
        }
    }
}

impl Progress {
    /// Resolves when the connection has been silent too long; never while a request is in
    /// flight or after an upgrade.
    async fn silence(
        self: Arc<Self>,
        header_timeout: Duration,
        keepalive_idle: Duration,
    ) -> Silence {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.upgraded.load(Ordering::SeqCst) {
                return std::future::pending().await;
            }
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                notified.await;
                continue;
            }
            let (since, bytes_then) = self.idle_since();
            let kept_alive = self.requests.load(Ordering::SeqCst) > 0;
            let quiet = self.bytes_read.load(Ordering::SeqCst) == bytes_then;
            let header_deadline = since + header_timeout;
            let deadline = if kept_alive && quiet {
                header_deadline.min(since + keepalive_idle)
            } else {
                header_deadline
            };
            tokio::select! {
                () = &mut notified => continue,
                () = tokio::time::sleep_until(deadline) => {}
            }
            if let Some(why) = self.verdict(since, header_timeout, keepalive_idle) {
                return why;
            }
        }
    }

    /// Whether the connection, idle since `since`, has now been silent too long.
    fn verdict(
        &self,
        since: Instant,
        header_timeout: Duration,
        keepalive_idle: Duration,
    ) -> Option<Silence> {
        if self.upgraded.load(Ordering::SeqCst)
            || self.in_flight.load(Ordering::SeqCst) > 0
            || self.idle_since().0 != since
        {
            return None;
        }
        let (now, bytes_then) = (Instant::now(), self.idle_since().1);
        if now >= since + header_timeout {
            return Some(Silence::Headers);
        }
        let kept_alive = self.requests.load(Ordering::SeqCst) > 0;
        let quiet = self.bytes_read.load(Ordering::SeqCst) == bytes_then;
        (kept_alive && quiet && now >= since + keepalive_idle).then_some(Silence::KeepAliveIdle)
    }
}
