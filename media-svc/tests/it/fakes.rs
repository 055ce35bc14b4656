//! Fakes of third parties, speaking their real wire protocols on port 0: an OpenAI Realtime
//! WebSocket server (scripted by the test) and Twilio's REST call-update endpoint.
#![allow(dead_code)]

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// A fake Realtime server: every accepted WebSocket becomes a [`FakeConn`].
pub struct FakeRealtime {
    pub url: String,
    pub conns: mpsc::UnboundedReceiver<FakeConn>,
}

/// What the test tells a connection to do.
enum Out {
    Send(Value),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Stop reading and writing (pings unanswered) but keep the connection open.
    Stall,
}

/// One session as the fake sees it.
pub struct FakeConn {
    /// Request target (path and query).
    pub uri: String,
    /// Handshake headers.
    pub headers: http::HeaderMap,
    events: mpsc::UnboundedReceiver<Value>,
    out: mpsc::UnboundedSender<Out>,
}

impl FakeRealtime {
    pub async fn start() -> FakeRealtime {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
        let (conn_tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn_tx = conn_tx.clone();
                tokio::spawn(async move {
                    let (req_tx, req_rx) = std::sync::mpsc::channel();
                    // The handshake callback's signature is tungstenite's; its error type is large.
                    #[allow(clippy::result_large_err)]
                    let callback = move |req: &Request, resp: Response| {
                        let _ = req_tx.send((req.uri().to_string(), req.headers().clone()));
                        Ok(resp)
                    };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                        return;
                    };
                    let (uri, headers) = req_rx.recv().unwrap();
                    let (events_tx, events) = mpsc::unbounded_channel();
                    let (out, mut out_rx) = mpsc::unbounded_channel::<Out>();
                    let _ = conn_tx.send(FakeConn {
                        uri,
                        headers,
                        events,
                        out,
                    });
                    let (mut sink, mut stream) = ws.split();
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(Ok(Message::Text(t))) => {
                                    let _ = events_tx.send(serde_json::from_str(t.as_str()).unwrap());
                                }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                            out = out_rx.recv() => match out {
                                Some(Out::Send(v)) => {
                                    if sink.send(Message::text(v.to_string())).await.is_err() {
                                        return;
                                    }
                                }
                                Some(Out::Stall) => {
                                    // Hold both halves, never poll them again.
                                    let _held = (sink, stream);
                                    std::future::pending::<()>().await;
                                    return;
                                }
                                Some(Out::Drop) | None => return,
                            },
                        }
                    }
                });
            }
        });
        FakeRealtime { url, conns }
    }

    pub async fn next_conn(&mut self) -> FakeConn {
        tokio::time::timeout(Duration::from_secs(10), self.conns.recv())
            .await
            .expect("a realtime connection within 10 s")
            .unwrap()
    }
}

impl FakeConn {
    /// The next client event of type `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let v = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no `{kind}` within 10 s"))
                .unwrap_or_else(|| panic!("connection closed before `{kind}`"));
            if v["type"] == kind {
                return v;
            }
        }
    }

    pub fn send(&self, v: Value) {
        self.out.send(Out::Send(v)).unwrap();
    }

    /// A `response.done` whose `response.usage` is `usage` (the GA and beta shapes agree; an
    /// older beta answer simply lacks `cached_tokens_details`).
    pub fn response_done(&self, response_id: &str, usage: Value) {
        self.send(serde_json::json!({
            "type": "response.done",
            "event_id": format!("event_{response_id}"),
            "response": {"object": "realtime.response", "id": response_id, "status": "completed",
                         "output": [], "usage": usage},
        }));
    }

    pub fn drop_connection(&self) {
        let _ = self.out.send(Out::Drop);
    }

    /// The server hangs: it neither reads nor writes again, the TCP connection stays open.
    pub fn stall(&self) {
        let _ = self.out.send(Out::Stall);
    }
}

/// What the fake Twilio REST server received.
#[derive(Debug, Clone)]
pub struct TwilioRequest {
    pub path: String,
    pub authorization: String,
    pub form: Vec<(String, String)>,
}

/// A fake of Twilio's `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`.
pub async fn fake_twilio() -> (String, mpsc::UnboundedReceiver<TwilioRequest>) {
    use axum::extract::State;
    let (tx, rx) = mpsc::unbounded_channel::<TwilioRequest>();
    async fn update(
        State(tx): State<mpsc::UnboundedSender<TwilioRequest>>,
        uri: http::Uri,
        headers: http::HeaderMap,
        body: String,
    ) -> axum::Json<Value> {
        let form = body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect();
        let _ = tx.send(TwilioRequest {
            path: uri.path().to_owned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            form,
        });
        axum::Json(serde_json::json!({"status": "in-progress"}))
    }
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}",
            axum::routing::post(update),
        )
        .with_state(tx);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

/// `application/x-www-form-urlencoded` decoding.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}
