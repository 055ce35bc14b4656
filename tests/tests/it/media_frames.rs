//! Media Streams frames the gateway must never pass on: binary frames and messages over 64 KiB,
//! before `start` and after it, over a real WebSocket to the real gateway and media-svc (local
//! backend, which writes a `[caller audio …]` turn for every utterance it hears). The `start`
//! parameters are the ones the TwiML carried, whatever credential that is. Every refusal also
//! checks what was not stored: no stream on the call before `start`, no caller turn after it; and
//! every refusal has a control, the same frames sent the accepted way, that does get through.

use std::time::Duration;

use e2e::{DemoTenant, Mesh};
use futures::{SinkExt, StreamExt};
use gateway::sim;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const CALLER: &str = "+15552223333";

/// The largest message the gateway may accept from Twilio (64 KiB); its own constant is not used
/// here, so that raising it fails these tests.
const MAX_WS_MESSAGE: usize = 64 * 1024;

/// One 20 ms mu-law frame of silence.
const SILENCE: [u8; 160] = [0xff; 160];

/// A call the gateway answered with `<Connect><Stream>`, and a signed socket to its stream
/// (also used by the log-privacy test to present bad stream credentials).
pub(crate) struct Stream {
    ws: Ws,
    url: String,
    pub(crate) call_sid: String,
    stream_sid: String,
    /// The `<Parameter>`s of the TwiML, sent as `customParameters` in `start`.
    pub(crate) params: serde_json::Map<String, Value>,
    seq: u64,
}

/// How a socket ended, if it did, and how much agent audio came back before.
#[derive(Debug)]
pub(crate) struct Ending {
    /// `None`: still open; `Some(None)`: closed without a close frame; else the close code.
    pub(crate) closed: Option<Option<u16>>,
    pub(crate) agent_frames: u64,
}

impl Stream {
    /// Posts the signed voice webhook of call `n` to `tenant`, then opens the signed socket the
    /// TwiML names and says `connected`.
    async fn answer(mesh: &Mesh, tenant: &DemoTenant, n: u32) -> Stream {
        Self::answer_from(mesh, tenant, n, CALLER).await
    }

    /// [`Stream::answer`] for a call from `caller`.
    pub(crate) async fn answer_from(
        mesh: &Mesh,
        tenant: &DemoTenant,
        n: u32,
        caller: &str,
    ) -> Stream {
        let call_sid = format!("CA{n:032x}");
        let params = Mesh::voice_params(&call_sid, caller, tenant.number);
        let response = mesh.twilio_post("/twilio/voice", &params).await;
        let twiml = response.text().await.unwrap();
        let (Some((url, params)), _) = sim::parse_twiml(&twiml).unwrap() else {
            panic!("no <Stream> in {twiml}");
        };
        let mut stream = Stream {
            ws: open(mesh, &url).await,
            url,
            stream_sid: format!("MZ{}", &call_sid[2..]),
            call_sid,
            params: params.into_iter().map(|(k, v)| (k, v.into())).collect(),
            seq: 1,
        };
        stream.connected("").await;
        stream
    }

    /// A fresh signed socket for the same call (same parameters, same StreamSid).
    pub(crate) async fn reopen(&mut self, mesh: &Mesh) {
        self.ws = open(mesh, &self.url).await;
        self.seq = 1;
        self.connected("").await;
    }

    async fn text(&mut self, text: String) {
        // The gateway may already have closed the socket: later sends fail, which is the point.
        let _ = self.ws.send(Message::Text(text.into())).await;
    }

    async fn binary(&mut self, bytes: Vec<u8>) {
        let _ = self.ws.send(Message::Binary(bytes.into())).await;
    }

    /// `connected`, with a `pad` member of `pad` (Twilio's parser ignores unknown members).
    async fn connected(&mut self, pad: &str) {
        let m = json!({"event": "connected", "protocol": "Call", "version": "1.0.0", "pad": pad});
        self.text(m.to_string()).await;
    }

    fn start_message(&mut self) -> String {
        self.seq += 1;
        json!({
            "event": "start", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid,
            "start": {"accountSid": e2e::ACCOUNT_SID, "streamSid": self.stream_sid,
                      "callSid": self.call_sid, "tracks": ["inbound"],
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                      "customParameters": self.params}
        })
        .to_string()
    }

    pub(crate) async fn start(&mut self) {
        let start = self.start_message();
        self.text(start).await;
    }

    /// A `media` message carrying `frame` as chunk `chunk`, padded with `pad` extra bytes.
    fn media_message(&mut self, chunk: u64, frame: &[u8], pad: usize) -> String {
        self.seq += 1;
        let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, frame);
        json!({"event": "media", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid,
               "media": {"track": "inbound", "chunk": chunk.to_string(),
                         "timestamp": ((chunk - 1) * 20).to_string(), "payload": payload},
               "pad": "p".repeat(pad)})
        .to_string()
    }

    /// Speaks `audio` in real time, 20 ms a frame, sending each frame as `how` does, then 0.6 s
    /// of silence as ordinary text frames (the end of the utterance).
    async fn speak(&mut self, audio: &[u8], how: How) {
        let voiced = audio.chunks(160).map(<[u8]>::to_vec);
        let silence = std::iter::repeat_n(SILENCE.to_vec(), 30);
        for (i, frame) in voiced.chain(silence).enumerate() {
            let chunk = i as u64 + 1;
            let voiced = i < audio.len() / 160;
            match (how, voiced) {
                (How::Binary, true) => {
                    let m = self.media_message(chunk, &frame, 0);
                    self.binary(m.into_bytes()).await;
                }
                (How::Oversized, true) => {
                    let m = self.media_message(chunk, &frame, MAX_WS_MESSAGE);
                    self.text(m).await;
                }
                _ => {
                    let m = self.media_message(chunk, &frame, 0);
                    self.text(m).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(&mut self) {
        self.seq += 1;
        let m = json!({"event": "stop", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid,
                       "stop": {"accountSid": e2e::ACCOUNT_SID, "callSid": self.call_sid}});
        self.text(m.to_string()).await;
    }

    /// Reads what the gateway sends for up to `within`: agent audio is counted, a close or the
    /// end of the connection ends the wait.
    pub(crate) async fn ending(&mut self, within: Duration) -> Ending {
        let mut agent_frames = 0;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.ws.next()).await else {
                return Ending {
                    closed: None,
                    agent_frames,
                };
            };
            let closed = match next {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    agent_frames += u64::from(v["event"] == "media");
                    continue;
                }
                Some(Ok(Message::Close(frame))) => Some(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Some(None),
            };
            return Ending {
                closed,
                agent_frames,
            };
        }
    }
}

/// How `speak` sends the voiced frames.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// As Twilio does: text frames.
    Text,
    /// The same JSON in binary frames.
    Binary,
    /// Text frames padded past the 64 KiB limit.
    Oversized,
}

/// Opens a Media Streams socket signed as Twilio signs it: over the stream URL, no parameters.
async fn open(mesh: &Mesh, url: &str) -> Ws {
    let signature = gateway::signature::compute(mesh.twilio_auth_token.as_bytes(), url, &[]);
    let path = &url[url.find("/twilio/").expect("a /twilio/ path")..];
    let mut req = format!("ws://{}{path}", mesh.gateway.main)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("X-Twilio-Signature", signature.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("signed upgrade accepted")
        .0
}

/// The call's recorded StreamSid (set when media-svc starts the stream).
async fn recorded_stream(mesh: &Mesh, call_sid: &str) -> Option<String> {
    let admin = mesh.db.admin_client().await;
    let row = admin
        .query_one(
            "SELECT stream_sid FROM media.calls WHERE call_sid = $1",
            &[&call_sid],
        )
        .await
        .expect("the webhook registered the call");
    row.get(0)
}

/// Every transcript turn of the call, once media-svc has ended it (within 10 s).
async fn turns_after_the_end(mesh: &Mesh, call_sid: &str) -> Vec<String> {
    let admin = mesh.db.admin_client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ended: bool = admin
            .query_one(
                "SELECT ended_at IS NOT NULL FROM media.calls WHERE call_sid = $1",
                &[&call_sid],
            )
            .await
            .unwrap()
            .get(0);
        if ended {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "call not ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Turns are written as they happen; the last ones just before the call is ended.
    tokio::time::sleep(Duration::from_millis(200)).await;
    admin
        .query(
            "SELECT text FROM media.transcript_turns WHERE call_sid = $1 ORDER BY seq",
            &[&call_sid],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn heard_the_caller(turns: &[String]) -> bool {
    turns.iter().any(|t| t.contains("[caller audio"))
}

#[tokio::test]
async fn binary_and_oversized_frames_before_start_close_the_socket_and_start_nothing() {
    let mesh = Mesh::start().await;
    let (peterson, _) = mesh.seed_demo_tenants().await;
    let mut call = Stream::answer(&mesh, &peterson, 1).await;

    // A valid `start`, but in a binary frame: refused, never read as a start.
    let start = call.start_message();
    call.binary(start.into_bytes()).await;
    let ending = call.ending(Duration::from_secs(3)).await;
    assert_eq!(ending.closed, Some(Some(1003)), "{ending:?}");
    assert_eq!(ending.agent_frames, 0);

    // A message one byte over the limit, text then binary: the socket is closed.
    call.reopen(&mesh).await;
    call.connected(&"p".repeat(MAX_WS_MESSAGE)).await;
    let ending = call.ending(Duration::from_secs(3)).await;
    assert!(ending.closed.is_some(), "oversized text left open");
    call.reopen(&mesh).await;
    call.binary(vec![b'{'; MAX_WS_MESSAGE + 1]).await;
    let ending = call.ending(Duration::from_secs(3)).await;
    assert!(ending.closed.is_some(), "oversized binary left open");
    assert_eq!(ending.agent_frames, 0);

    // Nothing started, nothing stored.
    assert_eq!(recorded_stream(&mesh, &call.call_sid).await, None);
    let admin = mesh.db.admin_client().await;
    let turns: i64 = admin
        .query_one("SELECT count(*) FROM media.transcript_turns", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(turns, 0);

    // Control: a message just under the limit, then the same start as text, opens the stream.
    call.reopen(&mesh).await;
    call.connected(&"p".repeat(MAX_WS_MESSAGE - 200)).await;
    call.start().await;
    let ending = call.ending(Duration::from_secs(2)).await;
    assert_eq!(ending.closed, None, "{ending:?}");
    assert!(ending.agent_frames > 0, "the greeting never came");
    assert_eq!(
        recorded_stream(&mesh, &call.call_sid).await,
        Some(call.stream_sid.clone())
    );
}

#[tokio::test]
async fn binary_and_oversized_frames_after_start_never_reach_media_svc() {
    let mesh = Mesh::start().await;
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    let voice = sim::voice_like(1.2);
    let mut results = Vec::new();
    for (n, tenant, how) in [
        (1, &peterson, How::Text),
        (2, &smith, How::Binary),
        (3, &peterson, How::Oversized),
    ] {
        let mut call = Stream::answer(&mesh, tenant, n).await;
        call.start().await;
        call.speak(&voice, how).await;
        // Binary frames are dropped, the call goes on; an oversized one ends it.
        let open = call.ending(Duration::from_millis(300)).await;
        call.stop().await;
        let ending = call.ending(Duration::from_secs(3)).await;
        let turns = turns_after_the_end(&mesh, &call.call_sid).await;
        assert_eq!(
            recorded_stream(&mesh, &call.call_sid).await,
            Some(call.stream_sid.clone()),
            "the stream started"
        );
        results.push((how, open, ending, turns));
    }
    for (how, open, ending, turns) in &results {
        let heard = heard_the_caller(turns);
        match how {
            How::Text => assert!(heard, "control: text audio is heard: {turns:?}"),
            _ => assert!(!heard, "audio reached media-svc: {turns:?}"),
        }
        if *how == How::Oversized {
            assert!(
                open.closed.is_some(),
                "oversized message left the socket open"
            );
        } else {
            assert_eq!(open.closed, None, "{open:?}");
            assert_eq!(ending.closed, Some(Some(1000)), "{ending:?}");
            assert!(open.agent_frames + ending.agent_frames > 0);
        }
    }
}
