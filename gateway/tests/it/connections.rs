//! Connections that never speak: silent sockets, sockets that send only the HTTP/2 preface and
//! sockets that dribble their headers are closed by the gateway within the header deadline
//! (thousands at once, from several addresses, while signed calls complete); one address's
//! unfinished connections are capped and the excess answered at once; kept-alive connections
//! are closed when idle; upgraded sockets and streamed bodies are exempt from the deadline.
//! Every socket here is real, on loopback; clients are told apart by their 127.0.0.x address.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{Gateway, call_params, call_sid};

/// The HTTP/2 connection preface (prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Raises this process's descriptor limit to at least `needed` (it holds both ends of every
/// socket), up to the hard limit; fails clearly when the hard limit is lower.
fn raise_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < needed {
            limit.rlim_cur = needed.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= needed,
        "this test needs {needed} file descriptors; the hard limit is {}",
        limit.rlim_max
    );
}

/// A connection to `to` from `from` (any loopback address).
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the gateway closes the socket (EOF or reset); how long that took, or `None` if
/// it was still open after `give_up`. Whatever the gateway sent first is returned too.
async fn wait_closed(stream: &mut TcpStream, give_up: Duration) -> (Option<Duration>, Vec<u8>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + give_up).into(), stream.read(&mut buf)).await {
            Err(_) => return (None, seen),
            Ok(Ok(0) | Err(_)) => return (Some(started.elapsed()), seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n.min(256 - seen.len().min(256))]),
        }
    }
}

/// How a hostile socket behaves after connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hostile {
    Silent,
    PrefaceOnly,
    Dribbling,
}

/// One hostile socket from `from`: how long the gateway kept it open, and what it sent first.
async fn hostile(
    kind: Hostile,
    from: IpAddr,
    to: SocketAddr,
    give_up: Duration,
) -> (Option<Duration>, Vec<u8>) {
    let mut stream = connect_from(from, to).await;
    let started = Instant::now();
    match kind {
        Hostile::Silent => {}
        Hostile::PrefaceOnly => stream.write_all(H2_PREFACE).await.unwrap(),
        Hostile::Dribbling => {
            let head = b"POST /twilio/voice HTTP/1.1\r\nHost: edge\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for byte in head {
                if stream.write_all(&[*byte]).await.is_err() {
                    return (Some(started.elapsed()), Vec::new());
                }
                let mut one = [0u8; 1];
                let answer =
                    tokio::time::timeout(Duration::from_millis(500), stream.read(&mut one)).await;
                if let Ok(Ok(0) | Err(_)) = answer {
                    return (Some(started.elapsed()), Vec::new());
                }
            }
        }
    }
    let (closed, seen) = wait_closed(&mut stream, give_up.saturating_sub(started.elapsed())).await;
    (closed.map(|_| started.elapsed()), seen)
}

/// Signed voice webhooks, one every 250 ms from 127.0.0.1, each answered with a stream.
async fn signed_calls(gateway: &Gateway, n: u32) {
    for k in 0..n {
        let sid = call_sid(1000 + k);
        let r = gateway
            .twilio_post(
                "/twilio/voice",
                &call_params(&sid, "+15551111111", "+14155550101", "inbound"),
                true,
            )
            .await;
        assert_eq!(r.status(), 200, "call {k}");
        let twiml = r.text().await.unwrap();
        assert!(twiml.contains("<Connect><Stream"), "call {k}: {twiml}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The value of SETTINGS_MAX_CONCURRENT_STREAMS in the first frame of `bytes`, if it is a
/// SETTINGS frame that names it.
fn max_concurrent_streams(bytes: &[u8]) -> Option<u32> {
    let (header, rest) = bytes.split_at_checked(9)?;
    let length = usize::from(header[1]) << 8 | usize::from(header[2]);
    if header[3] != 0x4 || rest.len() < length {
        return None;
    }
    rest[..length].chunks_exact(6).find_map(|s| {
        (u16::from_be_bytes([s[0], s[1]]) == 0x3)
            .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_silent_and_preface_only_sockets_are_closed_while_signed_calls_complete() {
    const ADDRESSES: u8 = 4;
    const PER_ADDRESS: usize = 600;
    raise_fd_limit(2 * ADDRESSES as u64 * PER_ADDRESS as u64 + 1024);
    // HTTP/2 on, so the protocol sniff is exercised too; the per-address cap above the flood
    // (it is tested on its own below); no rate limit in the way of the calls.
    let gateway = Gateway::start(&[
        ("GATEWAY_HTTP2", "true"),
        ("GATEWAY_MAX_PENDING_CONNECTIONS_PER_IP", "1000"),
        ("GATEWAY_RATE_PER_IP", "100000"),
    ])
    .await;
    let give_up = Duration::from_secs(15);
    let mut sockets = Vec::new();
    for a in 0..ADDRESSES {
        let from = IpAddr::from([127, 0, 0, 10 + a]);
        for n in 0..PER_ADDRESS {
            let kind = match n % 20 {
                0 => Hostile::Dribbling,
                k if k % 2 == 0 => Hostile::Silent,
                _ => Hostile::PrefaceOnly,
            };
            sockets.push((
                kind,
                tokio::spawn(hostile(kind, from, gateway.addr, give_up)),
            ));
            // Paced, so the listener's accept queue never overflows: a silent client whose
            // handshake the kernel dropped would wait for SYN-ACK retransmits (seconds) before
            // the gateway even sees it, and its time would not be the gateway's.
            if n % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    signed_calls(&gateway, 12).await;
    let mut longest = Duration::ZERO;
    let mut settings_seen = 0;
    for (kind, task) in sockets {
        let (closed, first) = task.await.unwrap();
        let closed =
            closed.unwrap_or_else(|| panic!("a {kind:?} socket was open after {give_up:?}"));
        assert!(
            closed >= Duration::from_secs(9),
            "a {kind:?} socket closed early: {closed:?}"
        );
        longest = longest.max(closed);
        if kind == Hostile::PrefaceOnly
            && let Some(streams) = max_concurrent_streams(&first)
        {
            assert_eq!(streams, gateway::http::H2_MAX_CONCURRENT_STREAMS);
            settings_seen += 1;
        }
    }
    assert!(settings_seen > 0, "no HTTP/2 SETTINGS frame seen");
    println!(
        "{} hostile sockets closed, the last after {longest:?}",
        ADDRESSES as usize * PER_ADDRESS
    );
}

#[tokio::test]
async fn the_per_address_cap_answers_the_excess_at_once() {
    let gateway = Gateway::start(&[
        ("GATEWAY_MAX_PENDING_CONNECTIONS_PER_IP", "20"),
        ("GATEWAY_TRUSTED_PROXIES", "127.0.0.32"),
    ])
    .await;
    let (flooder, bystander, proxy) = (ip("127.0.0.31"), ip("127.0.0.33"), ip("127.0.0.32"));
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from(flooder, gateway.addr).await);
    }
    // The excess is answered 429 and closed at once.
    for _ in 0..5 {
        let mut excess = connect_from(flooder, gateway.addr).await;
        let (closed, first) = wait_closed(&mut excess, Duration::from_secs(1)).await;
        assert!(closed.is_some(), "an excess connection was kept");
        let first = String::from_utf8_lossy(&first);
        assert!(first.starts_with("HTTP/1.1 429"), "{first}");
    }
    // Another address, and the trusted proxy beyond the cap, are not refused.
    let mut others = vec![connect_from(bystander, gateway.addr).await];
    for _ in 0..30 {
        others.push(connect_from(proxy, gateway.addr).await);
    }
    // (All at once: the held connections must still be within their header deadline below.)
    let waits = others
        .iter_mut()
        .map(|other| wait_closed(other, Duration::from_millis(300)));
    for (closed, _) in futures::future::join_all(waits).await {
        assert!(closed.is_none(), "a connection under the cap was closed");
    }
    // Signed calls from elsewhere go on.
    signed_calls(&gateway, 1).await;
    // A held connection that speaks gives its place back: one more is accepted.
    let speaker = &mut held[0];
    speaker
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    speaker.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let mut next = connect_from(flooder, gateway.addr).await;
    let (closed, _) = wait_closed(&mut next, Duration::from_millis(300)).await;
    assert!(closed.is_none(), "the freed place was not given back");
}

#[tokio::test]
async fn kept_alive_connections_are_closed_when_idle_and_when_their_next_headers_dribble() {
    let gateway = Gateway::start(&[("GATEWAY_KEEPALIVE_IDLE_SECONDS", "2")]).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n";
    let answered = async |stream: &mut TcpStream| {
        stream.write_all(request).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    };
    let idle = async {
        let mut stream = connect_from(ip("127.0.0.41"), gateway.addr).await;
        answered(&mut stream).await;
        wait_closed(&mut stream, Duration::from_secs(15)).await.0
    };
    let dribbling = async {
        let mut stream = connect_from(ip("127.0.0.42"), gateway.addr).await;
        answered(&mut stream).await;
        let started = Instant::now();
        for byte in
            b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            let mut one = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(400), stream.read(&mut one)).await
            {
                break;
            }
        }
        started.elapsed()
    };
    let (idle, dribbling) = tokio::join!(idle, dribbling);
    let idle = idle.expect("an idle kept-alive connection stayed open");
    assert!(
        idle >= Duration::from_millis(1500) && idle < Duration::from_secs(4),
        "{idle:?}"
    );
    assert!(
        dribbling >= Duration::from_secs(9) && dribbling < Duration::from_millis(12_500),
        "{dribbling:?}"
    );
}

#[tokio::test]
async fn http2_is_not_spoken_unless_enabled() {
    let gateway = Gateway::start(&[]).await;
    let (closed, first) = hostile(
        Hostile::PrefaceOnly,
        ip("127.0.0.51"),
        gateway.addr,
        Duration::from_secs(3),
    )
    .await;
    assert!(closed.is_some(), "the preface was not refused at once");
    assert!(
        max_concurrent_streams(&first).is_none(),
        "HTTP/2 was spoken"
    );
}

/// A router with a WebSocket echo and a body that streams for `secs` seconds, one chunk a
/// second, served by `gateway::http::serve` with the default bounds.
async fn exempt_server(secs: u64) -> SocketAddr {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    let app = axum::Router::new()
        .route(
            "/ws",
            axum::routing::get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    while let Some(Ok(Message::Text(t))) = socket.recv().await {
                        let _ = socket.send(Message::Text(t)).await;
                    }
                })
            }),
        )
        .route(
            "/download",
            axum::routing::get(move || async move {
                let chunks = futures::stream::unfold(0, move |n| async move {
                    (n < secs).then_some(())?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Some((Ok::<_, std::io::Error>(format!("chunk {n}\n")), n + 1))
                });
                axum::body::Body::from_stream(chunks)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        gateway::http::serve(
            listener,
            app,
            &gateway::http::ConnectionConfig::default(),
            &gateway::proxy::TrustedProxies::default(),
            std::future::pending(),
        )
        .await;
    });
    addr
}

#[tokio::test]
async fn upgraded_sockets_and_streamed_bodies_outlive_the_header_deadline() {
    let addr = exempt_server(13).await;
    let websocket = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(13)).await;
        ws.send("still here".into()).await.unwrap();
        let echo = ws.next().await.expect("open").expect("a message");
        assert_eq!(echo.into_text().unwrap().as_str(), "still here");
    };
    let download = async {
        let body = reqwest::get(format!("http://{addr}/download"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body.lines().count(), 13, "{body}");
    };
    tokio::join!(websocket, download);
}
