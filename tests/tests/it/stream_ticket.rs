//! What travels in TwiML is a stream credential and nothing more, and media-svc decides the
//! answer to a CallSid once: the whole mesh, over real sockets, with two gateway replicas and a
//! gateway restart.

use e2e::{ACCOUNT_SID, Mesh};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::gateway::{close_code_after_start, stream_ticket};

const CALLER: &str = "+15553333333";

fn call_sid(n: u32) -> String {
    format!("CA{n:032x}")
}

/// The JSON of a compact JWS's header and payload.
fn decode(token: &str) -> (serde_json::Value, serde_json::Value) {
    use base64::Engine as _;
    let part = |n: usize| -> serde_json::Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(n).expect("a compact JWS"))
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    (part(0), part(1))
}

#[tokio::test]
async fn the_twiml_carries_only_a_stream_ticket_that_no_grpc_method_accepts() {
    let mesh = Mesh::start().await;
    let (peterson, _) = mesh.seed_demo_tenants().await;
    let sid = call_sid(1);
    let twiml = mesh
        .twilio_post(
            "/twilio/voice",
            &Mesh::voice_params(&sid, CALLER, peterson.number),
        )
        .await
        .text()
        .await
        .unwrap();
    // One parameter, and it is no tenant token: its own type, no scope, media-svc's.
    assert_eq!(twiml.matches("<Parameter ").count(), 1, "{twiml}");
    let ticket = stream_ticket(&twiml);
    let (header, claims) = decode(&ticket);
    assert_eq!(header["typ"], "stream-ticket+jwt");
    assert_eq!(claims["iss"], "media-svc");
    assert_eq!(claims["sub"], sid.as_str());
    assert!(claims.get("scope").is_none() && claims.get("kind") != Some(&"tenant".into()));

    // Presented as a bearer token to every method of every service: UNAUTHENTICATED.
    let services = [
        (mesh.tenant, tenant_svc::policy()),
        (mesh.memory, memory_svc::policy()),
        (mesh.media, media_svc::policy()),
    ];
    let mut tried = 0;
    for (ports, policy) in services {
        let channel = mesh.channel(ports).await;
        for (path, _) in policy.iter() {
            let code = call_with_bearer(channel.clone(), path, &ticket).await;
            assert_eq!(
                code,
                tonic::Code::Unauthenticated,
                "{path} accepted the ticket"
            );
            tried += 1;
        }
    }
    assert!(tried >= 30, "only {tried} methods tried");
}

/// Calls `path` with an empty request and `token` as bearer; the status code it answered.
async fn call_with_bearer(
    channel: tonic::transport::Channel,
    path: &str,
    token: &str,
) -> tonic::Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path.to_owned()).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.unary(request, path, codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn a_replayed_webhook_gets_the_same_answer_from_any_gateway_and_hang_up_once_ended() {
    let mesh = Mesh::start().await;
    let (peterson, _) = mesh.seed_demo_tenants().await;
    let sid = call_sid(2);
    let params = Mesh::voice_params(&sid, CALLER, peterson.number);
    let first = mesh
        .twilio_post("/twilio/voice", &params)
        .await
        .text()
        .await
        .unwrap();
    assert!(first.contains("<Connect>"), "{first}");

    // Another replica, and a replica restarted in between: the identical TwiML (same ticket).
    let replica = mesh.start_gateway_replica().await;
    let text = |r: reqwest::Response| async move { r.text().await.unwrap() };
    let other = text(
        mesh.twilio_post_to(replica.main, "/twilio/voice", &params)
            .await,
    )
    .await;
    assert_eq!(other, first);
    replica.stop().await;
    let restarted = mesh.start_gateway_replica().await;
    let again = text(
        mesh.twilio_post_to(restarted.main, "/twilio/voice", &params)
            .await,
    )
    .await;
    assert_eq!(again, first);

    // The call completes; a replay now gets `<Hangup/>` and no ticket, from every replica.
    let mut status: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| *k != "CallStatus")
        .copied()
        .collect();
    status.extend([
        ("CallStatus", "completed"),
        ("CallDuration", "7"),
        ("SequenceNumber", "4"),
    ]);
    let r = mesh.twilio_post("/twilio/status", &status).await;
    assert_eq!(r.status(), 200);
    for gateway in [mesh.gateway.main, restarted.main] {
        let after = text(mesh.twilio_post_to(gateway, "/twilio/voice", &params).await).await;
        assert!(
            after.ends_with("<Response><Hangup/></Response>") && !after.contains("<Parameter"),
            "{after}"
        );
    }
    let rows: i64 = mesh
        .db
        .admin_client()
        .await
        .query_one("SELECT count(*) FROM media.calls", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    restarted.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Whether agent audio arrives on `ws` within 10 s (marks and the like are skipped).
async fn hears_agent(ws: &mut Ws) -> bool {
    let within = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(within, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"event\":\"media\"") => return true,
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => {
                return false;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A signed Media Streams socket that sent `start` for `sid` with `ticket` and stream `stream`.
async fn started_socket(mesh: &Mesh, sid: &str, ticket: &str, stream: u32) -> Ws {
    let ws_url = format!("ws://{}/twilio/media", mesh.gateway.main);
    let signed_for = mesh.public_base_url.replacen("http://", "ws://", 1) + "/twilio/media";
    let signature =
        gateway::signature::compute(mesh.twilio_auth_token.as_bytes(), &signed_for, &[]);
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut()
        .insert("X-Twilio-Signature", signature.parse().unwrap());
    let mut ws = tokio_tungstenite::connect_async(req).await.unwrap().0;
    let stream_sid = format!("MZ{stream:032x}");
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
        "start": {"accountSid": ACCOUNT_SID, "streamSid": stream_sid, "callSid": sid,
                  "tracks": ["inbound"], "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                  "customParameters": {"stream_ticket": ticket}}
    });
    ws.send(Message::Text(start.to_string().into()))
        .await
        .unwrap();
    ws
}

#[tokio::test]
async fn a_second_stream_for_a_live_call_is_refused_before_audio_and_the_first_goes_on() {
    let mesh = Mesh::start().await;
    let (peterson, _) = mesh.seed_demo_tenants().await;
    let sid = call_sid(3);
    let params = Mesh::voice_params(&sid, CALLER, peterson.number);
    let ticket = stream_ticket(
        &mesh
            .twilio_post("/twilio/voice", &params)
            .await
            .text()
            .await
            .unwrap(),
    );
    let mut first = started_socket(&mesh, &sid, &ticket, 1).await;
    assert!(
        hears_agent(&mut first).await,
        "the first stream hears the agent"
    );

    // The TwiML's ticket replayed with another StreamSid: closed with a policy error, no audio.
    let signed_for = mesh.public_base_url.replacen("http://", "ws://", 1) + "/twilio/media";
    let signature =
        gateway::signature::compute(mesh.twilio_auth_token.as_bytes(), &signed_for, &[]);
    let ws_url = format!("ws://{}/twilio/media", mesh.gateway.main);
    assert_eq!(
        close_code_after_start(&ws_url, &signature, &sid, &ticket).await,
        Some(1008)
    );
    // The same StreamSid replayed: media-svc grants it (the edge retrying) but the call streams
    // once, so this socket is closed before any audio too.
    let mut replayed = started_socket(&mesh, &sid, &ticket, 1).await;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), replayed.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(Message::Text(t)))) => panic!("a second stream got audio: {t:.60}"),
            Ok(Some(Ok(_))) => continue,
            Err(_) => panic!("the replayed start was not closed"),
        }
    }
    // The first stream goes on, and the call has one stream.
    for _ in 0..3 {
        assert!(
            hears_agent(&mut first).await,
            "the first stream still hears the agent"
        );
    }
    let row = mesh
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT stream_sid, stream_started_at IS NOT NULL FROM media.calls WHERE call_sid = $1",
            &[&sid],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), format!("MZ{:032x}", 1));
    assert!(row.get::<_, bool>(1));
}
