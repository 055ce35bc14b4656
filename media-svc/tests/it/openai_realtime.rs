//! The `openai-realtime` backend against a fake Realtime server (GA and beta shapes) and a fake
//! Twilio REST server, with a real tenant-svc supplying the tenant's profile.

use crate::common;
use crate::fakes;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{CallStream, In, Out, Svc, register, sid};
use fakes::{FakeRealtime, fake_twilio};
use media_svc::BackendChoice;
use media_svc::backend::openai::{ApiShape, OpenAiConfig};
use mesh::api::common::Speaker;
use mesh::api::media::*;
use mesh::identity::scope;
use serde_json::json;

struct World {
    svc: Svc,
    realtime: FakeRealtime,
    twilio: tokio::sync::mpsc::UnboundedReceiver<fakes::TwilioRequest>,
    customer: i64,
}

async fn world(shape: ApiShape, voice: &str) -> World {
    world_with(shape, voice, media_svc::SESSION_MAX).await
}

async fn world_with(shape: ApiShape, voice: &str, session_max: std::time::Duration) -> World {
    world_stall(
        shape,
        voice,
        session_max,
        media_svc::backend::openai::DEFAULT_STALL_TIMEOUT,
    )
    .await
}

async fn world_stall(
    shape: ApiShape,
    voice: &str,
    session_max: std::time::Duration,
    stall_timeout: std::time::Duration,
) -> World {
    let realtime = FakeRealtime::start().await;
    let (twilio_url, twilio) = fake_twilio().await;
    let url = realtime.url.clone();
    let svc = Svc::start_with(
        move |mut c| {
            c.backend = BackendChoice::OpenAi(OpenAiConfig {
                url,
                model: "gpt-realtime".into(),
                api_key: "sk-test-key".to_owned().into(),
                shape,
                stall_timeout,
            });
            c.twilio.base_url = twilio_url;
            c.twilio.auth_token = Some("twilio-secret".to_owned().into());
            c.peer_timeout = std::time::Duration::from_secs(5);
            c.session_max = session_max;
            c
        },
        true,
    )
    .await;
    let customer = common::create_customer(&svc, voice).await;
    World {
        svc,
        realtime,
        twilio,
        customer,
    }
}

fn delta_type(shape: ApiShape) -> &'static str {
    match shape {
        ApiShape::Ga => "response.output_audio.delta",
        ApiShape::Beta => "response.audio.delta",
    }
}

/// Registers a call of the world's tenant from `from` and opens its stream; returns the stream
/// and the realtime session it opened.
async fn open_call(w: &mut World, call_sid: &str, from: &str) -> (CallStream, fakes::FakeConn) {
    let mut client = w
        .svc
        .client_with(w.svc.tenant_token(w.customer, call_sid, scope::CALL_SCOPES))
        .await;
    client
        .register_call(register(call_sid, from))
        .await
        .unwrap();
    let call = CallStream::open(&mut client, &mut w.svc.gateway_client().await, call_sid)
        .await
        .unwrap();
    let conn = w.realtime.next_conn().await;
    (call, conn)
}

/// The handshake (model, key, the beta header only for the beta shape) and the session: the
/// shape's audio formats, the tenant's voice, the rendered greeting, sliders and transfer rules;
/// then the greeting is asked for.
async fn check_session(conn: &mut fakes::FakeConn, shape: ApiShape, voice: &str) {
    assert!(conn.uri.contains("model=gpt-realtime"), "{}", conn.uri);
    assert_eq!(conn.headers["authorization"], "Bearer sk-test-key");
    assert_eq!(
        conn.headers.contains_key("openai-beta"),
        shape == ApiShape::Beta
    );

    let update = conn.next_of("session.update").await;
    let s = &update["session"];
    let instructions = s["instructions"].as_str().unwrap();
    match shape {
        ApiShape::Ga => {
            assert_eq!(s["type"], "realtime");
            assert_eq!(s["audio"]["output"]["voice"], voice);
            assert_eq!(s["audio"]["input"]["format"]["type"], "audio/pcmu");
            assert_eq!(s["audio"]["output"]["format"]["type"], "audio/pcmu");
            assert_eq!(s["audio"]["input"]["turn_detection"]["type"], "server_vad");
        }
        ApiShape::Beta => {
            assert_eq!(s["voice"], voice);
            assert_eq!(s["input_audio_format"], "g711_ulaw");
            assert_eq!(s["output_audio_format"], "g711_ulaw");
            assert_eq!(s["turn_detection"]["type"], "server_vad");
        }
    }
    assert!(
        instructions.contains("This is Ada"),
        "rendered greeting: {instructions}"
    );
    assert!(!instructions.contains("{agent_name}"));
    assert!(
        instructions.contains("Be very warm and friendly"),
        "sliders: {instructions}"
    );
    assert!(
        instructions.contains("the claims desk"),
        "transfer rules: {instructions}"
    );
    conn.next_of("response.create").await;
}

/// Caller audio reaches the backend byte for byte, and agent audio (of `item_1`) the caller,
/// followed by a mark.
async fn check_audio_both_ways(call: &mut CallStream, conn: &mut fakes::FakeConn, shape: ApiShape) {
    let caller_bytes: Vec<u8> = (0..160).map(|n| n as u8).collect();
    call.audio(caller_bytes.clone(), 100).await;
    let append = conn.next_of("input_audio_buffer.append").await;
    assert_eq!(
        B64.decode(append["audio"].as_str().unwrap()).unwrap(),
        caller_bytes
    );

    let agent_bytes: Vec<u8> = (0..320).map(|n| (255 - n % 256) as u8).collect();
    conn.send(json!({"type": delta_type(shape), "response_id": "r1", "item_id": "item_1", "delta": B64.encode(&agent_bytes)}));
    let Some(Out::Audio(a)) = call.next().await else {
        panic!("audio first")
    };
    assert_eq!(a.payload, agent_bytes);
    let Some(Out::Mark(m)) = call.next().await else {
        panic!("then a mark")
    };
    assert!(!m.name.is_empty());
}

/// Barge-in: the caller speaks 500 ms of media time after `item_1` started (at 100 ms) while its
/// mark is pending: `clear` to the caller, `item_1` truncated at 500 ms.
async fn barge_in(call: &mut CallStream, conn: &mut fakes::FakeConn) {
    call.audio(vec![0xFF; 160], 600).await;
    conn.next_of("input_audio_buffer.append").await;
    conn.send(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 550, "item_id": "item_2"}));
    let Some(Out::Clear(_)) = call.next().await else {
        panic!("clear on barge-in")
    };
    let truncate = conn.next_of("conversation.item.truncate").await;
    assert_eq!(truncate["item_id"], "item_1");
    assert_eq!(truncate["content_index"], 0);
    assert_eq!(truncate["audio_end_ms"], 500);
}

/// Both transcripts, then `get_current_time` answered through a function_call_output and a new
/// response.
async fn transcripts_and_time(conn: &mut fakes::FakeConn, shape: ApiShape) {
    conn.send(json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_2", "transcript": "I need the claims desk"}));
    let agent_done = match shape {
        ApiShape::Ga => "response.output_audio_transcript.done",
        ApiShape::Beta => "response.audio_transcript.done",
    };
    conn.send(json!({"type": agent_done, "item_id": "item_3", "transcript": "Let me check the time and transfer you."}));

    conn.send(json!({"type": "response.function_call_arguments.done", "call_id": "call_t", "name": "get_current_time", "arguments": "{}"}));
    let output = conn.next_of("conversation.item.create").await;
    assert_eq!(output["item"]["type"], "function_call_output");
    assert_eq!(output["item"]["call_id"], "call_t");
    assert!(
        output["item"]["output"]
            .as_str()
            .unwrap()
            .contains("America/New_York")
    );
    conn.next_of("response.create").await;
}

/// Toll fraud at dial time: the tenant has no number in the US and no transfer regions, so its
/// "claims" rule (a US number) is refused without asking Twilio, and the agent is told so; once
/// the tenant has a US number, the same rule transfers.
async fn transfer_refused_until_the_region_is_allowed(w: &mut World, conn: &mut fakes::FakeConn) {
    use mesh::api::tenant::AssignPhoneNumberRequest;
    use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
    use mesh::auth::{AttachToken, TokenSource};
    use mesh::identity::names;
    conn.send(json!({"type": "response.function_call_arguments.done", "call_id": "call_r", "name": "transfer_call", "arguments": "{\"keyword\":\"claims\"}"}));
    let output = conn.next_of("conversation.item.create").await;
    assert_eq!(output["item"]["call_id"], "call_r");
    let text = output["item"]["output"].as_str().unwrap();
    assert!(text.contains("transfer target not allowed"), "{text}");
    conn.next_of("response.create").await;
    assert!(w.twilio.try_recv().is_err(), "Twilio was not asked");
    let token = w
        .svc
        .service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    let mut admin = TenantAdminServiceClient::with_interceptor(
        w.svc.channel_to(w.svc.tenant_addr.unwrap()).await,
        AttachToken(TokenSource::fixed(token.into())),
    );
    admin
        .assign_phone_number(AssignPhoneNumberRequest {
            customer_id: w.customer,
            number: "+14155550199".into(),
            twilio_account_sid: String::new(),
        })
        .await
        .unwrap();
}

/// `transfer_call` redirects the call through Twilio REST (the call's account, basic auth with
/// the auth token, TwiML dialling the rule's number for at most the call's maximum duration) and
/// tells the edge; the stream ends.
async fn transfer(w: &mut World, call: &mut CallStream, conn: &fakes::FakeConn, call_sid: &str) {
    conn.send(json!({"type": "response.function_call_arguments.done", "call_id": "call_x", "name": "transfer_call", "arguments": "{\"keyword\":\"claims\"}"}));
    let req = tokio::time::timeout(std::time::Duration::from_secs(10), w.twilio.recv())
        .await
        .expect("Twilio redirect within 10 s")
        .unwrap();
    assert_eq!(
        req.path,
        format!(
            "/2010-04-01/Accounts/{}/Calls/{}.json",
            sid("AC", 1),
            call_sid
        )
    );
    let expected_auth = format!(
        "Basic {}",
        B64.encode(format!("{}:twilio-secret", sid("AC", 1)))
    );
    assert_eq!(req.authorization, expected_auth);
    let twiml = &req.form.iter().find(|(k, _)| k == "Twiml").unwrap().1;
    assert!(
        twiml.contains("<Dial timeLimit=\"3600\"><Number>+14158675309</Number></Dial>"),
        "{twiml}"
    );
    loop {
        match call.next().await {
            Some(Out::Transfer(t)) => {
                assert_eq!(t.number, "+14158675309");
                break;
            }
            Some(Out::Audio(_) | Out::Mark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        call.next().await.is_none(),
        "the stream ends after a transfer"
    );
}

/// The stored call: ended by the transfer, on this backend, completed, with both transcripts and
/// the transfer noted.
async fn check_stored_transfer(w: &World, call_sid: &str) {
    let mut reader = w.svc.client(w.customer).await;
    let got = reader
        .get_call(GetCallRequest {
            call_sid: call_sid.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let c = got.call.unwrap();
    assert_eq!(c.end_reason, "transfer");
    assert_eq!(c.backend, "openai-realtime");
    assert_eq!(c.status, CallStatus::Completed as i32);
    let turns: Vec<(i32, &str)> = got
        .turns
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .collect();
    assert!(
        turns.contains(&(Speaker::Caller as i32, "I need the claims desk")),
        "{turns:?}"
    );
    assert!(
        turns.contains(&(
            Speaker::Agent as i32,
            "Let me check the time and transfer you."
        )),
        "{turns:?}"
    );
    assert!(
        turns.contains(&(
            Speaker::System as i32,
            "[transferred to claims +14158675309]"
        )),
        "{turns:?}"
    );
}

async fn full_call(shape: ApiShape, voice: &str) {
    let mut w = world(shape, voice).await;
    let call_sid = sid("CA", 77);
    let (mut call, mut conn) = open_call(&mut w, &call_sid, "+15551111111").await;
    check_session(&mut conn, shape, voice).await;
    check_audio_both_ways(&mut call, &mut conn, shape).await;
    barge_in(&mut call, &mut conn).await;
    // Late audio of the truncated item is dropped.
    conn.send(
        json!({"type": delta_type(shape), "item_id": "item_1", "delta": B64.encode([1u8; 160])}),
    );
    transcripts_and_time(&mut conn, shape).await;
    transfer_refused_until_the_region_is_allowed(&mut w, &mut conn).await;
    transfer(&mut w, &mut call, &conn, &call_sid).await;
    check_stored_transfer(&w, &call_sid).await;
    w.svc.stop().await;
}

/// After a barge-in, audio of the cut response that the backend still sends never reaches the
/// caller: the next frame after the `clear` is the next response's.
#[tokio::test]
async fn late_agent_audio_of_a_cut_response_never_reaches_the_caller() {
    let mut w = world(ApiShape::Ga, "marin").await;
    let call_sid = sid("CA", 78);
    let (mut call, mut conn) = open_call(&mut w, &call_sid, "+15551111114").await;
    conn.next_of("session.update").await;
    check_audio_both_ways(&mut call, &mut conn, ApiShape::Ga).await;
    barge_in(&mut call, &mut conn).await;
    // The backend goes on with the cut item for a while, then answers with a new one.
    for _ in 0..5 {
        conn.send(json!({"type": "response.output_audio.delta", "item_id": "item_1", "delta": B64.encode([1u8; 160])}));
    }
    conn.send(json!({"type": "response.output_audio.delta", "item_id": "item_4", "delta": B64.encode([4u8; 160])}));
    let Some(Out::Audio(next)) = call.next().await else {
        panic!("the new response's audio")
    };
    assert_eq!(next.payload, vec![4u8; 160], "no frame of the cut response");
    let Some(Out::Mark(_)) = call.next().await else {
        panic!("then its mark")
    };
    drop(call.tx);
    w.svc.stop().await;
}

/// A key the caller presses reaches the realtime backend as a user message and asks for a
/// response, and is noted in the transcript.
#[tokio::test]
async fn dtmf_reaches_the_realtime_backend_and_the_transcript() {
    let mut w = world(ApiShape::Ga, "marin").await;
    let call_sid = sid("CA", 79);
    let (call, mut conn) = open_call(&mut w, &call_sid, "+15551111115").await;
    conn.next_of("session.update").await;
    conn.next_of("response.create").await;
    call.send(In::Dtmf(DtmfDigit { digit: "7".into() })).await;
    let item = conn.next_of("conversation.item.create").await;
    assert_eq!(item["item"]["type"], "message");
    assert_eq!(item["item"]["role"], "user");
    assert_eq!(item["item"]["content"][0]["type"], "input_text");
    assert_eq!(item["item"]["content"][0]["text"], "[caller pressed 7]");
    conn.next_of("response.create").await;
    // Only one key per DTMF event, and nothing that is not a key.
    call.send(In::Dtmf(DtmfDigit {
        digit: "\u{0}".into(),
    }))
    .await;
    call.send(In::Dtmf(DtmfDigit { digit: "#9".into() })).await;
    let item = conn.next_of("conversation.item.create").await;
    assert_eq!(item["item"]["content"][0]["text"], "[caller pressed #]");
    call.send(In::Stop(StreamStop {})).await;
    let mut call = call;
    while call.next().await.is_some() {}
    let mut reader = w.svc.client(w.customer).await;
    let turns = reader
        .get_call(GetCallRequest { call_sid })
        .await
        .unwrap()
        .into_inner()
        .turns;
    let system: Vec<&str> = turns
        .iter()
        .filter(|t| t.speaker == Speaker::System as i32)
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(system, ["[caller pressed 7]", "[caller pressed #]"]);
    w.svc.stop().await;
}

#[tokio::test]
async fn ga_call_bridges_audio_barges_in_stores_transcripts_and_transfers() {
    full_call(ApiShape::Ga, "marin").await;
}

#[tokio::test]
async fn beta_call_bridges_audio_barges_in_stores_transcripts_and_transfers() {
    full_call(ApiShape::Beta, "ash").await;
}

/// The caller, hearing the message prompt after the backend failed: the rest of the prompt up
/// to its record mark (answered), a short message, then a hang-up; the call is stored as ended
/// by the caller, with a callback task (reason `backend_down`).
async fn leave_message_after_failure(w: &World, mut call: CallStream, call_sid: String) {
    loop {
        match call.next().await.expect("the prompt goes on") {
            Out::Audio(_) | Out::Clear(_) => {}
            Out::Mark(m) if m.name == media_svc::call::message::RECORD_MARK => {
                call.send(In::Mark(MarkPlayed { name: m.name })).await;
                break;
            }
            other => panic!("unexpected {other:?} in the message prompt"),
        }
    }
    for i in 0..10 {
        call.audio(common::voiced_frame(), 9000 + i * 20).await;
    }
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}
    let mut reader = w.svc.client(w.customer).await;
    let c = reader
        .get_call(GetCallRequest {
            call_sid: call_sid.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    assert_eq!(c.status, CallStatus::Completed as i32);
    assert_eq!(c.end_reason, "caller-hangup");
    assert!(c.end_time.is_some());
    let tasks = w
        .svc
        .count(&format!(
            "SELECT count(*) FROM media.callback_tasks WHERE call_sid = '{call_sid}' AND reason = 'backend_down'"
        ))
        .await;
    assert_eq!(tasks, 1);
}

/// A backend that fails while the agent speaks: the edge is cleared and the message prompt
/// starts at once (the caller hears no gap over 1 s between the agent's last frame and the
/// prompt, measured where the edge receives them), then the caller leaves a message.
async fn ends_on_backend_failure(shape: ApiShape, drop_it: bool) {
    let mut w = world(shape, "cedar").await;
    let call_sid = sid("CA", 88);
    let mut client = w
        .svc
        .client_with(
            w.svc
                .tenant_token(w.customer, &call_sid, scope::CALL_SCOPES),
        )
        .await;
    client
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap();
    let mut call = CallStream::open(&mut client, &mut w.svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    let mut conn = w.realtime.next_conn().await;
    conn.next_of("session.update").await;
    let audio = B64.encode([0x7fu8; 160]);
    conn.send(json!({"type": delta_type(shape), "item_id": "item-1", "delta": audio}));
    let Some(Out::Audio(_)) = call.next().await else {
        panic!("the agent speaks")
    };
    let last_agent_frame = std::time::Instant::now();
    let Some(Out::Mark(_)) = call.next().await else {
        panic!("the agent audio's mark")
    };
    if drop_it {
        conn.drop_connection();
    } else {
        conn.send(json!({"type": "error", "error": {"type": "server_error", "code": "boom", "message": "internal"}}));
    }
    let Some(Out::Clear(_)) = call.next().await else {
        panic!("a clear, then the prompt; not a silent hang")
    };
    let Some(Out::Audio(_)) = call.next().await else {
        panic!("the message prompt")
    };
    let gap = last_agent_frame.elapsed();
    assert!(
        gap < std::time::Duration::from_secs(1),
        "{gap:?} between the agent's last frame and the prompt"
    );
    eprintln!("gap between the agent's last frame and the prompt: {gap:?}");
    leave_message_after_failure(&w, call, call_sid).await;
    w.svc.stop().await;
}

#[tokio::test]
async fn ga_error_event_switches_to_the_message_flow() {
    ends_on_backend_failure(ApiShape::Ga, false).await;
}

#[tokio::test]
async fn beta_dropped_connection_switches_to_the_message_flow() {
    ends_on_backend_failure(ApiShape::Beta, true).await;
}

/// A backend that stops answering without closing: within the configured timeout, not in dead
/// air, the call switches to the message flow (a clear, then the prompt).
#[tokio::test]
async fn stalled_backend_switches_to_the_message_flow_within_the_timeout() {
    let stall = std::time::Duration::from_millis(800);
    let mut w = world_stall(ApiShape::Ga, "cedar", media_svc::SESSION_MAX, stall).await;
    let call_sid = sid("CA", 89);
    let mut client = w
        .svc
        .client_with(
            w.svc
                .tenant_token(w.customer, &call_sid, scope::CALL_SCOPES),
        )
        .await;
    client
        .register_call(register(&call_sid, "+15551111112"))
        .await
        .unwrap();
    let mut call = CallStream::open(&mut client, &mut w.svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    let mut conn = w.realtime.next_conn().await;
    conn.next_of("session.update").await;
    conn.stall();
    let stalled_at = std::time::Instant::now();
    let Ok(Some(Out::Clear(_))) = tokio::time::timeout(stall * 4, call.next()).await else {
        panic!("the message flow, not dead air")
    };
    let Some(Out::Audio(_)) = call.next().await else {
        panic!("the message prompt")
    };
    let noticed = stalled_at.elapsed();
    assert!(
        noticed <= stall + std::time::Duration::from_millis(700),
        "stall noticed after {noticed:?} (timeout {stall:?})"
    );
    leave_message_after_failure(&w, call, call_sid).await;
    w.svc.stop().await;
}

/// A backend that goes quiet after the caller spoke: the caller hears comfort tones (never
/// more than 1 s without audio reaching the edge) until the backend answers again.
#[tokio::test]
async fn a_caller_waiting_for_a_slow_answer_hears_comfort_tones() {
    let mut w = world(ApiShape::Ga, "cedar").await;
    let (mut call, mut conn) = open_call(&mut w, &sid("CA", 91), "+15551111114").await;
    conn.next_of("session.update").await;
    for i in 0..25 {
        call.audio(common::voiced_frame(), i * 20).await;
    }
    let spoke = std::time::Instant::now();
    let comfort = media_svc::call::message::comfort_tone();
    let mut got = Vec::new();
    let mut arrivals = Vec::new();
    while got.len() < comfort.len() * 2 {
        match call.next().await {
            Some(Out::Audio(a)) => {
                arrivals.push(spoke.elapsed());
                got.extend(a.payload);
            }
            other => panic!("unexpected {other:?} while waiting"),
        }
    }
    assert_eq!(&got[..comfort.len()], &comfort[..], "the comfort tone");
    let first = arrivals[0];
    assert!(
        first >= std::time::Duration::from_millis(2400)
            && first < std::time::Duration::from_secs(4),
        "first comfort tone {first:?} after the caller spoke"
    );
    let gap = arrivals.windows(2).map(|p| p[1] - p[0]).max().unwrap();
    assert!(
        gap <= std::time::Duration::from_millis(1100),
        "{gap:?} between tones"
    );
    // The backend answers: its audio is bridged and the tones stop.
    let audio = B64.encode([0x7fu8; 160]);
    conn.send(json!({"type": "response.output_audio.delta", "item_id": "item-9", "delta": audio}));
    loop {
        match call.next().await {
            Some(Out::Audio(a)) if a.payload == vec![0x7fu8; 160] => break,
            Some(Out::Audio(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(call.tx);
    w.svc.stop().await;
}

/// A backend that is merely quiet (answers pings) keeps the call going past the stall timeout.
#[tokio::test]
async fn quiet_backend_that_answers_pings_keeps_the_call() {
    let stall = std::time::Duration::from_millis(400);
    let mut w = world_stall(ApiShape::Ga, "cedar", media_svc::SESSION_MAX, stall).await;
    let call_sid = sid("CA", 90);
    let mut client = w
        .svc
        .client_with(
            w.svc
                .tenant_token(w.customer, &call_sid, scope::CALL_SCOPES),
        )
        .await;
    client
        .register_call(register(&call_sid, "+15551111113"))
        .await
        .unwrap();
    let mut call = CallStream::open(&mut client, &mut w.svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    let mut conn = w.realtime.next_conn().await;
    conn.next_of("session.update").await;
    // Five stall timeouts of silence from the backend.
    let quiet = tokio::time::timeout(stall * 5, call.next()).await;
    assert!(quiet.is_err(), "the call ended or got output: {quiet:?}");
    let audio = B64.encode([0x7fu8; 160]);
    conn.send(json!({"type": "response.output_audio.delta", "item_id": "item-1", "delta": audio}));
    let Some(Out::Audio(a)) = call.next().await else {
        panic!("the call is still bridged after the quiet spell")
    };
    assert_eq!(a.payload, vec![0x7fu8; 160]);
    drop(call.tx);
    w.svc.stop().await;
}

/// The backend was told to fail: the call switches to the message flow (a `clear` first, after
/// everything the backend sent before its failure was handled), where the caller hangs up.
async fn hang_up_in_the_message_flow(call: &mut CallStream) {
    loop {
        match call.next().await {
            Some(Out::Clear(_)) => break,
            Some(_) => {}
            None => panic!("the call ended instead of switching to the message flow"),
        }
    }
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}
}

/// Each tenant reads only its own call's transcript; A's token can neither read nor list B's
/// call.
async fn check_tenants_apart(w: &World, (a, sid_a): (i64, &str), (b, sid_b): (i64, &str)) {
    let mut ra = w.svc.client(a).await;
    let mut rb = w.svc.client(b).await;
    let ta = ra
        .get_call(GetCallRequest {
            call_sid: sid_a.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .turns;
    let tb = rb
        .get_call(GetCallRequest {
            call_sid: sid_b.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .turns;
    assert_eq!(
        ta.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
        ["private words of A"]
    );
    assert_eq!(
        tb.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
        ["private words of B"]
    );
    // A's token cannot read or list B's call.
    assert_eq!(
        ra.get_call(GetCallRequest {
            call_sid: sid_b.to_owned()
        })
        .await
        .unwrap_err()
        .code(),
        tonic::Code::NotFound
    );
    let listed = ra
        .list_calls(ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .calls;
    assert_eq!(
        listed
            .iter()
            .map(|c| c.call_sid.as_str())
            .collect::<Vec<_>>(),
        [sid_a]
    );
}

#[tokio::test]
async fn two_tenants_calls_at_once_stay_apart() {
    let mut w = world(ApiShape::Ga, "marin").await;
    let a = w.customer;
    let b = common::create_customer_named(&w.svc, "cedar", "Bea").await;
    let (sid_a, sid_b) = (sid("CA", 0xa1), sid("CA", 0xb1));
    let mut ca = w
        .svc
        .client_with(w.svc.tenant_token(a, &sid_a, scope::CALL_SCOPES))
        .await;
    let mut cb = w
        .svc
        .client_with(w.svc.tenant_token(b, &sid_b, scope::CALL_SCOPES))
        .await;
    ca.register_call(register(&sid_a, "+15551111111"))
        .await
        .unwrap();
    cb.register_call(register(&sid_b, "+15551111111"))
        .await
        .unwrap();
    let mut call_a = CallStream::open(&mut ca, &mut w.svc.gateway_client().await, &sid_a)
        .await
        .unwrap();
    let mut call_b = CallStream::open(&mut cb, &mut w.svc.gateway_client().await, &sid_b)
        .await
        .unwrap();

    // The two sessions arrive in any order; each carries its own tenant's persona and voice.
    for _ in 0..2 {
        let mut conn = w.realtime.next_conn().await;
        let update = conn.next_of("session.update").await;
        let instructions = update["session"]["instructions"]
            .as_str()
            .unwrap()
            .to_owned();
        let voice = update["session"]["audio"]["output"]["voice"].clone();
        let (who, other) = if instructions.contains("You are Ada") {
            ("A", "Bea")
        } else {
            ("B", "Ada")
        };
        assert!(
            !instructions.contains(&format!("You are {other}")),
            "{instructions}"
        );
        assert_eq!(voice, if who == "A" { "marin" } else { "cedar" });
        conn.send(json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "x", "transcript": format!("private words of {who}")}));
        conn.send(json!({"type": "error", "error": {"type": "test", "code": "end", "message": "end of test"}}));
    }
    for call in [&mut call_a, &mut call_b] {
        hang_up_in_the_message_flow(call).await;
    }

    check_tenants_apart(&w, (a, &sid_a), (b, &sid_b)).await;
    let rows = w.svc.count(&format!("SELECT count(*) FROM media.transcript_turns WHERE customer_id = {b} AND call_sid = '{sid_b}'")).await;
    assert_eq!(rows, 1);
    w.svc.stop().await;
}

#[tokio::test]
async fn a_session_near_its_limit_rolls_over_carrying_the_conversation() {
    let mut w = world_with(ApiShape::Ga, "verse", std::time::Duration::from_secs(2)).await;
    let call_sid = sid("CA", 0x5e);
    let mut client = w
        .svc
        .client_with(
            w.svc
                .tenant_token(w.customer, &call_sid, scope::CALL_SCOPES),
        )
        .await;
    client
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap();
    let mut call = CallStream::open(&mut client, &mut w.svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    let mut first = w.realtime.next_conn().await;
    first.next_of("session.update").await;
    first.next_of("response.create").await;
    first.send(json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "i1", "transcript": "my policy number is 4242"}));

    // After the session limit a new session opens with the conversation so far and no greeting.
    let mut second = w.realtime.next_conn().await;
    let update = second.next_of("session.update").await;
    let instructions = update["session"]["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("Caller: my policy number is 4242"),
        "{instructions}"
    );
    assert!(instructions.contains("do not greet the caller again"));
    assert_eq!(update["session"]["audio"]["output"]["voice"], "verse");
    // Audio now flows to the new session.
    let bytes = vec![7u8; 160];
    call.audio(bytes.clone(), 1500).await;
    let append = second.next_of("input_audio_buffer.append").await;
    assert_eq!(
        B64.decode(append["audio"].as_str().unwrap()).unwrap(),
        bytes
    );
    second
        .send(json!({"type": "error", "error": {"type": "test", "code": "end", "message": "end"}}));
    hang_up_in_the_message_flow(&mut call).await;
    w.svc.stop().await;
}

/// The agent's `take_message` tool: the call ends normally and leaves a callback task with
/// reason `agent` and the agent's summary; a second message in the call adds to the same task;
/// an empty summary is refused to the agent.
#[tokio::test]
async fn the_agents_take_message_leaves_one_task_with_its_summary() {
    let mut w = world(ApiShape::Ga, "cedar").await;
    let call_sid = sid("CA", 92);
    let (mut call, mut conn) = open_call(&mut w, &call_sid, "+15551111115").await;
    conn.next_of("session.update").await;
    for (id, args) in [
        ("c1", r#"{"summary": ""}"#),
        (
            "c2",
            r#"{"summary": "Pat wants a callback about a claim, after 5 pm"}"#,
        ),
        ("c3", r#"{"summary": "Also: new address"}"#),
    ] {
        conn.send(json!({"type": "response.function_call_arguments.done", "call_id": id, "name": "take_message", "arguments": args}));
        let output = conn.next_of("conversation.item.create").await;
        let ok = output["item"]["output"]
            .as_str()
            .unwrap()
            .contains("\"ok\":true");
        assert_eq!(ok, id != "c1", "{output}");
    }
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}
    let note = format!(
        "SELECT count(*) FROM media.callback_tasks WHERE call_sid = '{call_sid}' AND reason = 'agent' \
         AND caller = '+15551111115' AND note = E'Pat wants a callback about a claim, after 5 pm\\nAlso: new address'"
    );
    common::eventually("the agent's task", || async {
        w.svc.count(&note).await == 1
    })
    .await;
    assert_eq!(
        w.svc
            .count("SELECT count(*) FROM media.callback_tasks")
            .await,
        1
    );
    let flagged = w
        .svc
        .count("SELECT count(*) FROM media.calls WHERE message_flow IS NOT NULL")
        .await;
    assert_eq!(
        flagged, 0,
        "an answered call did not go to the message flow"
    );
    w.svc.stop().await;
}
