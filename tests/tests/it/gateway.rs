//! The Twilio edge end to end over real sockets: signed webhooks, TwiML, the Media Streams
//! WebSocket's checks, and the legacy REST endpoints, against the whole mesh.

use e2e::{ACCOUNT_SID, Mesh};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CALLER: &str = "+15551111111";

async fn calls(mesh: &Mesh) -> i64 {
    mesh.db
        .admin_client()
        .await
        .query_one("SELECT count(*) FROM media.calls", &[])
        .await
        .unwrap()
        .get(0)
}

fn call_sid(n: u32) -> String {
    format!("CA{n:032x}")
}

/// The stream ticket inside a `<Connect><Stream>` answer.
pub(crate) fn stream_ticket(twiml: &str) -> String {
    let marker = "name=\"stream_ticket\" value=\"";
    let start = twiml.find(marker).expect("stream ticket parameter") + marker.len();
    let end = start + twiml[start..].find('"').unwrap();
    twiml[start..end].to_owned()
}

#[tokio::test]
async fn a_signed_call_gets_connect_stream_twiml_once() {
    let mesh = Mesh::start().await;
    let (peterson, _) = mesh.seed_demo_tenants().await;
    let sid = call_sid(1);
    let params = Mesh::voice_params(&sid, CALLER, peterson.number);
    let first = mesh.twilio_post("/twilio/voice", &params).await;
    assert_eq!(first.status(), 200);
    assert!(
        first.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let first = first.text().await.unwrap();
    assert!(first.contains("<Connect><Stream url=\"ws://"), "{first}");
    assert!(first.contains("/twilio/media\""), "{first}");
    assert!(
        first.contains("<Say>") && first.ends_with("<Hangup/></Response>"),
        "{first}"
    );
    let ticket = mesh
        .keys
        .identity("media-svc")
        .stream_credentials()
        .verify_ticket(&stream_ticket(&first))
        .expect("media-svc's stream ticket");
    assert_eq!(ticket.customer_id.get(), peterson.id);
    assert_eq!(ticket.call_sid.as_str(), sid);

    // Twilio retries: the same answer, one call row. The old path works too.
    let again = mesh
        .twilio_post("/phone/incoming-realtime", &params)
        .await
        .text()
        .await
        .unwrap();
    let retry = mesh
        .twilio_post("/twilio/voice", &params)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(retry, first);
    assert!(again.contains("<Connect>"));
    assert_eq!(calls(&mesh).await, 1);
}

#[tokio::test]
async fn bad_signatures_get_403_and_store_nothing() {
    let mesh = Mesh::start().await;
    let (peterson, _) = mesh.seed_demo_tenants().await;
    let sid = call_sid(2);
    let params = Mesh::voice_params(&sid, CALLER, peterson.number);
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let url = format!("{}/twilio/voice", mesh.public_base_url);
    let good = gateway::signature::compute(mesh.twilio_auth_token.as_bytes(), &url, &owned);
    let http = reqwest::Client::new();
    let target = format!("http://{}/twilio/voice", mesh.gateway.main);

    // No header.
    let r = http.post(&target).form(&owned).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // A changed parameter.
    let mut changed = owned.clone();
    changed[3].1 = "+14155550102".into();
    let r = http
        .post(&target)
        .header("X-Twilio-Signature", &good)
        .form(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // An added parameter.
    let mut added = owned.clone();
    added.push(("Extra".into(), "1".into()));
    let r = http
        .post(&target)
        .header("X-Twilio-Signature", &good)
        .form(&added)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Signed for another URL.
    let other = gateway::signature::compute(
        mesh.twilio_auth_token.as_bytes(),
        "https://evil.example/twilio/voice",
        &owned,
    );
    let r = http
        .post(&target)
        .header("X-Twilio-Signature", other)
        .form(&owned)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Signed for a spoofed forwarded host, sent with that header: still checked against ours.
    let spoofed = gateway::signature::compute(
        mesh.twilio_auth_token.as_bytes(),
        "http://attacker.example/twilio/voice",
        &owned,
    );
    let r = http
        .post(&target)
        .header("X-Twilio-Signature", spoofed)
        .header("X-Forwarded-Host", "attacker.example")
        .header("X-Forwarded-Proto", "http")
        .form(&owned)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The status callback is checked too.
    let r = http
        .post(format!("http://{}/twilio/status", mesh.gateway.main))
        .form(&owned)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(calls(&mesh).await, 0, "a refused webhook stored a call");

    // And the correct signature passes.
    let r = http
        .post(&target)
        .header("X-Twilio-Signature", good)
        .form(&owned)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(calls(&mesh).await, 1);
}

#[tokio::test]
async fn bad_input_is_refused_without_a_panic_or_a_row() {
    let mesh = Mesh::start().await;
    let (peterson, _) = mesh.seed_demo_tenants().await;
    // A non-CA CallSid, correctly signed.
    let params = Mesh::voice_params(
        "XX0123456789abcdef0123456789abcdef",
        CALLER,
        peterson.number,
    );
    let r = mesh.twilio_post("/twilio/voice", &params).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("CallSid"));
    // A malformed form body.
    let r = reqwest::Client::new()
        .post(format!("http://{}/twilio/voice", mesh.gateway.main))
        .header("X-Twilio-Signature", "x")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("CallSid=%zz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // An oversized body.
    let r = reqwest::Client::new()
        .post(format!("http://{}/twilio/voice", mesh.gateway.main))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("a={}", "b".repeat(gateway::MAX_BODY + 10)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(calls(&mesh).await, 0);
}

#[tokio::test]
async fn an_unknown_number_gets_a_polite_goodbye() {
    let mesh = Mesh::start().await;
    mesh.seed_demo_tenants().await;
    let sid = call_sid(3);
    let r = mesh
        .twilio_post(
            "/twilio/voice",
            &Mesh::voice_params(&sid, CALLER, "+14155550199"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<Say>Sorry, this number is not available"),
        "{body}"
    );
    assert!(
        body.contains("<Hangup/>") && !body.contains("<Connect>"),
        "{body}"
    );
    assert_eq!(calls(&mesh).await, 0);
}

#[tokio::test]
async fn media_streams_without_valid_signature_or_ticket_are_closed_before_any_audio() {
    let mesh = Mesh::start().await;
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    let sid = call_sid(4);
    let twiml = mesh
        .twilio_post(
            "/twilio/voice",
            &Mesh::voice_params(&sid, CALLER, peterson.number),
        )
        .await
        .text()
        .await
        .unwrap();
    let token = stream_ticket(&twiml);
    let ws_url = format!("ws://{}/twilio/media", mesh.gateway.main);
    let signed_for = mesh.public_base_url.replacen("http://", "ws://", 1) + "/twilio/media";
    let signature =
        gateway::signature::compute(mesh.twilio_auth_token.as_bytes(), &signed_for, &[]);

    // No signature: refused at the upgrade.
    let err = tokio_tungstenite::connect_async(&ws_url).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");

    // Forged ticket, a ticket for another CallSid, and one that is expired, each then audio:
    // the socket is closed with a policy error and nothing reaches media-svc.
    let other_call = mesh
        .twilio_post(
            "/twilio/voice",
            &Mesh::voice_params(&call_sid(5), CALLER, smith.number),
        )
        .await
        .text()
        .await
        .unwrap();
    let expired = expired_stream_ticket(&mesh, peterson.id, &sid);
    for bad in [
        format!("{token}x"),
        stream_ticket(&other_call),
        expired,
        String::new(),
    ] {
        assert_eq!(
            close_code_after_start(&ws_url, &signature, &sid, &bad).await,
            Some(1008),
            "bad ticket {bad:.12}… was not refused"
        );
    }
    let turns: i64 = mesh
        .db
        .admin_client()
        .await
        .query_one("SELECT count(*) FROM media.transcript_turns", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(turns, 0);
}

/// Opens a signed Media Streams socket, sends `connected`, `start` with `token` as stream ticket
/// for `sid`, then a burst of audio; returns the close code the gateway answered with (panics if audio came
/// back).
pub(crate) async fn close_code_after_start(
    ws_url: &str,
    signature: &str,
    sid: &str,
    token: &str,
) -> Option<u16> {
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut()
        .insert("X-Twilio-Signature", signature.parse().unwrap());
    let mut ws = tokio_tungstenite::connect_async(req)
        .await
        .expect("signed upgrade accepted")
        .0;
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ0123456789abcdef0123456789abcdef",
        "start": {"accountSid": ACCOUNT_SID, "streamSid": "MZ0123456789abcdef0123456789abcdef", "callSid": sid,
                  "tracks": ["inbound"], "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                  "customParameters": {"stream_ticket": token}}
    })
    .to_string();
    ws.send(Message::Text(
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Text(start.into())).await.unwrap();
    // Audio keeps coming, as from Twilio, so the gateway closes with frames it has not read yet:
    // its close must still reach this side as a close frame, not as a reset connection.
    for n in 0..400 {
        let media = serde_json::json!({"event":"media","sequenceNumber":(n + 2).to_string(),
            "media":{"track":"inbound","chunk":(n + 1).to_string(),"timestamp":(n * 20).to_string(),"payload":"/".repeat(160)}});
        if ws
            .feed(Message::Text(media.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = ws.flush().await;
    // Twilio sends a frame every 20 ms until it has read the close; one more, after the gateway
    // has decided. The gateway must read on until this side's close (the closing handshake): a
    // socket dropped with unread frames is reset, and the reset can reach Twilio before the close
    // frame does, which then sees no close code at all.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let late = ws
        .send(Message::Text(serde_json::json!({"event":"media","sequenceNumber":"402","media":{"track":"inbound","chunk":"401","timestamp":"8000","payload":"////"}}).to_string().into()))
        .await;
    assert!(
        late.is_ok(),
        "the gateway reset the connection instead of closing it: {late:?}"
    );
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(Message::Text(t)) => panic!("audio path opened for a bad token: {t}"),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    None
}

#[tokio::test]
async fn legacy_rest_acts_for_the_token_tenant_only() {
    let mesh = Mesh::start().await;
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    let legacy = mesh::auth::LegacyVerifier::new(&mesh.legacy_secret).unwrap();
    let token = |id: i64| {
        legacy.mint_for_tests(
            mesh::domain::CustomerId::new(id).unwrap(),
            std::time::Duration::from_secs(300),
        )
    };
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", mesh.gateway.main);
    for (id, content) in [
        (peterson.id, "Peterson client John"),
        (smith.id, "Smith client Jane"),
    ] {
        let r = http
            .post(url("/memory/store"))
            .bearer_auth(token(id))
            .json(&serde_json::json!({"user_id": CALLER, "role": "user", "content": content, "metadata": {"thread_id": "t1"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    // Peterson's token with Smith's id in the body: Peterson's data, named.
    let r: serde_json::Value = http
        .post(url("/memory/retrieve"))
        .bearer_auth(token(peterson.id))
        .json(&serde_json::json!({"user_id": CALLER, "limit": 10, "customer_id": smith.id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["success"], true);
    assert_eq!(r["customer_id"], peterson.id);
    assert_eq!(r["count"], 1);
    let text = r["memories"].to_string();
    assert!(
        text.contains("Peterson client John") && !text.contains("Smith client Jane"),
        "{text}"
    );
    let r: serde_json::Value = http
        .post(url("/v2/context/enriched"))
        .bearer_auth(token(smith.id))
        .json(
            &serde_json::json!({"user_id": CALLER, "num_summaries": 3, "customer_id": peterson.id}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["customer_id"], smith.id);
    assert_eq!(r["success"], true);
    bad_legacy_tokens_get_401_and_store_nothing(&mesh, peterson.id).await;
    read_only_and_ageless_legacy_tokens_write_nothing(&mesh, peterson.id).await;
}

/// A legacy token with scope `memory:read` (or none: read-only) reads but cannot store: 403;
/// one valid for ten years is refused (401). Nothing is stored either way.
async fn read_only_and_ageless_legacy_tokens_write_nothing(mesh: &Mesh, customer_id: i64) {
    let legacy = mesh::auth::LegacyVerifier::new(&mesh.legacy_secret).unwrap();
    let id = mesh::domain::CustomerId::new(customer_id).unwrap();
    let minute = std::time::Duration::from_secs(60);
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", mesh.gateway.main);
    let count = async || -> i64 {
        let admin = mesh.db.admin_client().await;
        let sql = "SELECT count(*) FROM memory.memories";
        admin.query_one(sql, &[]).await.unwrap().get(0)
    };
    let before = count().await;
    let store = serde_json::json!({"user_id": CALLER, "role": "user", "content": "written?"});
    for (scope, status) in [(Some("memory:read"), 403), (None, 403)] {
        let token = legacy.mint_scoped_for_tests(id, minute, scope);
        let r = http
            .post(url("/memory/retrieve"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"user_id": CALLER, "limit": 10}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scope:?} reads");
        let r = (http.post(url("/memory/store")).bearer_auth(&token))
            .json(&store)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{scope:?} writes");
    }
    let ten_years = std::time::Duration::from_secs(10 * 365 * 86_400);
    let token = legacy.mint_for_tests(id, ten_years);
    let r = (http.post(url("/memory/store")).bearer_auth(&token))
        .json(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        count().await,
        before,
        "a refused legacy write stored a memory"
    );
}

/// Missing, invalid and expired legacy tokens: 401 with a JSON error, nothing stored.
async fn bad_legacy_tokens_get_401_and_store_nothing(mesh: &Mesh, customer_id: i64) {
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", mesh.gateway.main);
    let before: i64 = mesh
        .db
        .admin_client()
        .await
        .query_one("SELECT count(*) FROM memory.memories", &[])
        .await
        .unwrap()
        .get(0);
    let expired = {
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({"customer_id": customer_id, "scope": "memory:read:write", "iat": now - 600, "exp": now - 120});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(
                secrecy::ExposeSecret::expose_secret(&mesh.legacy_secret).as_bytes(),
            ),
        )
        .unwrap()
    };
    for auth in [None, Some("garbage".to_owned()), Some(expired)] {
        let mut req = http
            .post(url("/memory/store"))
            .json(&serde_json::json!({"user_id": CALLER, "role": "user", "content": "x"}));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["success"], false);
    }
    let after: i64 = mesh
        .db
        .admin_client()
        .await
        .query_one("SELECT count(*) FROM memory.memories", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after);
}

/// A stream ticket exactly like media-svc's for the call, signed with its real key, issued
/// 150 s ago (its 2 minutes are over, beyond the leeway).
fn expired_stream_ticket(mesh: &Mesh, customer: i64, call_sid: &str) -> String {
    mesh.keys
        .identity("media-svc")
        .stream_credentials()
        .ticket(&mesh::auth::StreamTicket {
            customer_id: mesh::domain::CustomerId::new(customer).unwrap(),
            call_sid: mesh::domain::CallSid::parse(call_sid).unwrap(),
            account_sid: mesh::domain::AccountSid::parse(ACCOUNT_SID).unwrap(),
            issued_at: chrono::Utc::now().timestamp() - 150,
        })
        .unwrap()
}

#[tokio::test]
async fn a_burst_over_the_per_ip_limit_gets_429_with_retry_after() {
    let mesh = Mesh::start_with_gateway_settings(&[("GATEWAY_RATE_PER_IP", "1")]).await;
    let (peterson, _) = mesh.seed_demo_tenants().await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        let sid = call_sid(100 + n);
        let r = mesh
            .twilio_post(
                "/twilio/voice",
                &Mesh::voice_params(&sid, CALLER, peterson.number),
            )
            .await;
        if r.status() == 429 {
            assert!(
                r.headers().contains_key("retry-after"),
                "429 without Retry-After"
            );
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(calls(&mesh).await, 2, "a limited request stored a call");
}

/// A TCP listener that accepts connections and never answers: a hung service.
async fn black_hole() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_down_or_hung_service_gets_the_apology_within_two_seconds() {
    let hung = black_hole().await;
    for (setting, url) in [
        ("TENANT_SVC_URL", "http://127.0.0.1:1".to_owned()),
        ("TENANT_SVC_URL", hung.clone()),
        ("MEDIA_SVC_URL", "http://127.0.0.1:1".to_owned()),
        ("MEDIA_SVC_URL", hung.clone()),
    ] {
        let mesh = Mesh::start_with_gateway_settings(&[(setting, url.as_str())]).await;
        let (peterson, _) = mesh.seed_demo_tenants().await;
        let sid = call_sid(200);
        let started = std::time::Instant::now();
        let r = mesh
            .twilio_post(
                "/twilio/voice",
                &Mesh::voice_params(&sid, CALLER, peterson.number),
            )
            .await;
        let took = started.elapsed();
        assert_eq!(r.status(), 200, "{setting}={url}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("<Say>We are sorry") && body.contains("<Hangup/>"),
            "{setting}={url}: {body}"
        );
        assert!(!body.contains("<Connect>"));
        assert!(
            took < std::time::Duration::from_millis(2500),
            "{setting}={url}: answered after {took:?}"
        );
        assert_eq!(calls(&mesh).await, 0);
    }
}

/// A signed Media Streams socket that sends `connected` every 2 s and never `start`: the 10 s
/// deadline counts from the upgrade, so the chatter does not extend it (each message used to
/// restart the timer, so such a socket stayed open forever).
#[tokio::test]
async fn a_media_stream_that_never_starts_is_closed_ten_seconds_after_the_upgrade() {
    let mesh = Mesh::start().await;
    let ws_url = format!("ws://{}/twilio/media", mesh.gateway.main);
    let signed_for = mesh.public_base_url.replacen("http://", "ws://", 1) + "/twilio/media";
    let signature =
        gateway::signature::compute(mesh.twilio_auth_token.as_bytes(), &signed_for, &[]);
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("X-Twilio-Signature", signature.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("signed upgrade accepted");
    let upgraded = std::time::Instant::now();
    let (mut tx, mut rx) = ws.split();
    let chatter = tokio::spawn(async move {
        let connected = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
        while tx.send(Message::Text(connected.into())).await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    });
    let closed = tokio::time::timeout(std::time::Duration::from_secs(14), async {
        while let Some(msg) = rx.next().await {
            match msg {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(Message::Text(t)) => panic!("the gateway sent {t} before any start"),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the socket is still open 14 s after the upgrade");
    let after = upgraded.elapsed();
    chatter.abort();
    assert_eq!(closed, Some(1008));
    assert!(
        after >= std::time::Duration::from_millis(9_500)
            && after < std::time::Duration::from_millis(11_500),
        "closed {after:?} after the upgrade"
    );
}
