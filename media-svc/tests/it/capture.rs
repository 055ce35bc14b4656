//! Recording a call under the tenant's policy (issue 20), through a real StreamCall with
//! the local backend and a real tenant-svc: the announcement before the greeting, the two
//! channels (every caller frame, and exactly the agent audio the edge reported played, cut at a
//! barge-in), consent (nothing stored without a 1; recorded from the 1 on), policy OFF and
//! unreadable settings storing nothing.

use std::path::Path;

use futures::TryStreamExt as _;
use media_svc::recording::{RecordingConfig, RecordingId, Recordings};
use mesh::api::media::*;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::{GetCallHandlingRequest, RecordingPolicy, UpdateCallHandlingRequest};
use mesh::auth::{AttachToken, TokenSource};
use mesh::domain::{CallSid, CustomerId};
use mesh::g711::ulaw_to_linear;
use mesh::identity::scope;

use crate::common::{self, CallStream, In, Out, Svc, eventually, sid, voiced_frame};

/// media-svc (recording into a folder this test reads too) next to a real tenant-svc.
async fn start(with_tenant: bool) -> (Svc, RecordingConfig) {
    let config = RecordingConfig::temporary();
    let for_svc = config.clone();
    let svc = Svc::start_with(
        move |mut c| {
            c.recording = for_svc;
            c
        },
        with_tenant,
    )
    .await;
    (svc, config)
}

/// Sets the tenant's recording policy through tenant-svc (the portal's path).
async fn set_policy(svc: &Svc, customer: i64, policy: RecordingPolicy) {
    let token = svc.tenant_token(
        customer,
        "owner",
        &[scope::TENANT_READ, scope::TENANT_WRITE],
    );
    let mut tenant = TenantServiceClient::with_interceptor(
        svc.channel_to(svc.tenant_addr.unwrap()).await,
        AttachToken(TokenSource::fixed(token.into())),
    );
    let mut settings = tenant
        .get_call_handling(GetCallHandlingRequest {})
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    settings.recording_policy = policy as i32;
    tenant
        .update_call_handling(UpdateCallHandlingRequest {
            settings: Some(settings),
        })
        .await
        .unwrap();
}

/// Opens a call of `customer`.
async fn open(svc: &Svc, customer: i64, n: u32) -> (String, CallStream) {
    let call_sid = sid("CA", n);
    let mut client = svc
        .client_with(svc.tenant_token(customer, &call_sid, scope::CALL_SCOPES))
        .await;
    let call = CallStream::open(&mut client, &mut svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    (call_sid, call)
}

/// 20 ms of quiet caller audio (below the speech threshold), different for every `n`, so a
/// frame's place in the recording can be checked.
fn quiet_frame(n: u32) -> Vec<u8> {
    (0..160)
        .map(|i| {
            let v = ((n * 7 + i) % 64) as i16 * 4 - 128;
            mesh::g711::linear_to_ulaw(v)
        })
        .collect()
}

/// What the edge sent until the mark `name`: the audio bytes before it.
async fn audio_until_mark(call: &mut CallStream, name: &str) -> Vec<u8> {
    let mut audio = Vec::new();
    loop {
        match call.next().await.expect("stream open") {
            Out::Audio(a) => audio.extend(a.payload),
            Out::Mark(m) if m.name == name => return audio,
            Out::Mark(m) => panic!("mark {} before {name}", m.name),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The next `n` chunks of agent audio with their marks (not echoed).
async fn chunks(call: &mut CallStream, n: usize) -> Vec<(Vec<u8>, String)> {
    let mut out = Vec::new();
    let mut audio = None;
    while out.len() < n {
        match call.next().await.expect("stream open") {
            Out::Audio(a) => audio = Some(a.payload),
            Out::Mark(m) => out.push((audio.take().expect("audio before its mark"), m.name)),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// The call's row once it ended (finalising sets `recorded_seconds`, 0 when nothing was).
async fn ended_call(svc: &Svc, customer: i64, call_sid: &str) -> Call {
    let finalised = format!(
        "SELECT count(*) FROM media.calls WHERE call_sid = '{call_sid}' AND recorded_seconds IS NOT NULL"
    );
    eventually("the call to be finalised", || async {
        svc.count(&finalised).await == 1
    })
    .await;
    svc.client(customer)
        .await
        .get_call(GetCallRequest {
            call_sid: call_sid.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap()
}

/// The call's one recording as (caller, agent) PCM samples.
async fn read_recording(
    svc: &Svc,
    config: &RecordingConfig,
    customer: i64,
    call_sid: &str,
) -> (Vec<i16>, Vec<i16>) {
    let rec = Recordings::new(svc.db.db_for_role("media_svc").await, config).unwrap();
    let customer = CustomerId::new(customer).unwrap();
    let rows = rec
        .for_call(customer, &CallSid::parse(call_sid).unwrap())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one recording of the call");
    let wav = rec.wav(customer, RecordingId(rows[0].id)).await.unwrap();
    let bytes: Vec<u8> = wav
        .read(0..wav.len())
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    let samples: Vec<i16> = bytes[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let caller = samples.iter().step_by(2).copied().collect();
    let agent = samples.iter().skip(1).step_by(2).copied().collect();
    (caller, agent)
}

fn pcm(mulaw: &[u8]) -> Vec<i16> {
    mulaw.iter().map(|b| ulaw_to_linear(*b)).collect()
}

/// Files under `dir` (recursively).
fn files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Nothing of the call is stored: no recording row, no spool file, no object.
async fn nothing_recorded(svc: &Svc, config: &RecordingConfig) {
    assert_eq!(svc.count("SELECT count(*) FROM media.recordings").await, 0);
    assert_eq!(files(&config.spool_dir), 0, "no spool file");
    if let media_svc::recording::StoreConfig::Local(store) = &config.store {
        // (`prompts/` holds the rendered announcement, no call's audio.)
        assert_eq!(files(&store.join("recordings")), 0, "no object");
    }
}

/// One recorded second counted in the month's usage (one minute), and the rendered
/// announcement kept in the object store for the next process.
async fn recorded_usage_and_stored_prompt(svc: &Svc, config: &RecordingConfig, customer: i64) {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    let usage = svc
        .client(customer)
        .await
        .get_usage(GetUsageRequest {
            year: now.year(),
            month: now.month() as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((usage.recorded_seconds, usage.recorded_minutes), (1, 1));
    // The rendered announcement is kept in the object store for the next process (beside the
    // message prompt, which every call warms for the message flow).
    if let media_svc::recording::StoreConfig::Local(store) = &config.store {
        let prompts = store.join("prompts");
        eventually("the announcement in the store", || async {
            files(&prompts) == 2
        })
        .await;
    }
}

#[tokio::test]
async fn on_records_every_caller_frame_and_exactly_the_agent_audio_played_cut_by_a_barge_in() {
    let (svc, config) = start(true).await;
    let customer = common::create_customer(&svc, "alloy").await;
    set_policy(&svc, customer, RecordingPolicy::On).await;
    let (call_sid, mut call) = open(&svc, customer, 1).await;

    // The announcement comes first, then the greeting (the tone pattern, one mark per chunk).
    let announcement = audio_until_mark(&mut call, "announcement").await;
    assert!(
        announcement.len() >= media_svc::audio::tone_pattern().len(),
        "the announcement (espeak-ng, or the tone)"
    );
    let tone = media_svc::audio::tone_pattern();
    let greeting = chunks(&mut call, tone.len() / 160).await;
    let sent: Vec<u8> = greeting.iter().flat_map(|(a, _)| a.clone()).collect();
    assert_eq!(sent, tone, "the whole greeting follows the announcement");

    // The edge reports the announcement played at media time 3000: the recording begins there
    // (the caller frame that arrived before it is not recorded).
    call.audio(quiet_frame(0), 3000).await;
    call.send(In::Mark(MarkPlayed {
        name: "announcement".into(),
    }))
    .await;
    // Twenty greeting chunks play, each echoed as it ends, one caller frame each.
    let mut caller_sent = Vec::new();
    for i in 1..=20u32 {
        let ts = 3000 + 20 * i;
        call.audio(quiet_frame(i), ts).await;
        caller_sent.push((ts, quiet_frame(i)));
        call.send(In::Mark(MarkPlayed {
            name: greeting[i as usize - 1].1.clone(),
        }))
        .await;
    }
    // 3400-3420: chunk 21 plays (no echo yet); at 3430 the caller speaks: a barge-in cuts chunk
    // 22 after 10 ms, and the rest of the greeting was never heard.
    call.audio(voiced_frame(), 3430).await;
    caller_sent.push((3430, voiced_frame()));
    loop {
        match call.next().await.expect("open") {
            Out::Clear(_) => break,
            Out::Audio(_) | Out::Mark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Twilio echoes cleared marks: they add nothing.
    call.send(In::Mark(MarkPlayed {
        name: greeting[30].1.clone(),
    }))
    .await;
    call.audio(quiet_frame(22), 3450).await;
    caller_sent.push((3450, quiet_frame(22)));
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}

    let c = ended_call(&svc, customer, &call_sid).await;
    assert_eq!(c.recording_policy, CallRecordingPolicy::On as i32);
    assert_eq!(c.recording_consent, RecordingConsent::Unspecified as i32);
    assert_eq!(c.recording_offset_ms, 3000);
    assert_eq!(c.recorded_seconds, 1, "470 ms, rounded up");

    let (caller, agent) = read_recording(&svc, &config, customer, &call_sid).await;
    // Caller: every frame from 3000 on, at its time; silence elsewhere.
    let mut want_caller = vec![0i16; caller.len()];
    for (ts, frame) in &caller_sent {
        let at = ((ts - 3000) * 8) as usize;
        want_caller[at..at + 160].copy_from_slice(&pcm(frame));
    }
    assert_eq!(caller, want_caller);
    // Agent: chunks 1-21 whole, 10 ms of chunk 22, nothing after.
    let heard = 21 * 160 + 80;
    let mut want_agent = vec![0i16; agent.len()];
    want_agent[..heard].copy_from_slice(&pcm(&tone[..heard]));
    assert_eq!(agent, want_agent);
    assert_eq!(caller.len(), (3470 - 3000) * 8, "ends with the last frame");

    recorded_usage_and_stored_prompt(&svc, &config, customer).await;
    svc.stop().await;
}

#[tokio::test]
async fn consent_without_a_1_stores_nothing_and_the_answer_is_no_answer() {
    let (svc, config) = start(true).await;
    let customer = common::create_customer(&svc, "echo").await;
    set_policy(&svc, customer, RecordingPolicy::OnWithConsent).await;
    let (call_sid, mut call) = open(&svc, customer, 2).await;
    let question = audio_until_mark(&mut call, "announcement").await;
    assert!(question.len() >= media_svc::audio::tone_pattern().len());
    let greeting = chunks(&mut call, 45).await;
    call.send(In::Mark(MarkPlayed {
        name: "announcement".into(),
    }))
    .await;
    for i in 0..45u32 {
        call.audio(quiet_frame(i), 4000 + 20 * i).await;
        call.send(In::Mark(MarkPlayed {
            name: greeting[i as usize].1.clone(),
        }))
        .await;
    }
    // Another key is no consent.
    call.send(In::Dtmf(DtmfDigit { digit: "2".into() })).await;
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}

    let c = ended_call(&svc, customer, &call_sid).await;
    assert_eq!(
        c.recording_policy,
        CallRecordingPolicy::OnWithConsent as i32
    );
    assert_eq!(c.recording_consent, RecordingConsent::NoAnswer as i32);
    assert!(c.recording_consent_time.is_some());
    assert_eq!((c.recorded_seconds, c.recording_offset_ms), (0, 0));
    nothing_recorded(&svc, &config).await;
    svc.stop().await;
}

#[tokio::test]
async fn consent_by_pressing_1_records_from_then_on() {
    let (svc, config) = start(true).await;
    let customer = common::create_customer(&svc, "marin").await;
    set_policy(&svc, customer, RecordingPolicy::OnWithConsent).await;
    let (call_sid, mut call) = open(&svc, customer, 3).await;
    audio_until_mark(&mut call, "announcement").await;
    let greeting = chunks(&mut call, 45).await;
    call.send(In::Mark(MarkPlayed {
        name: "announcement".into(),
    }))
    .await;
    // Before the 1: neither side is recorded.
    for i in 0..10u32 {
        call.audio(quiet_frame(i), 5000 + 20 * i).await;
        call.send(In::Mark(MarkPlayed {
            name: greeting[i as usize].1.clone(),
        }))
        .await;
    }
    call.send(In::Dtmf(DtmfDigit { digit: "1".into() })).await;
    // A row exists once the writer started: the consent was taken.
    eventually("the recording to start", || async {
        svc.count("SELECT count(*) FROM media.recordings").await == 1
    })
    .await;
    // The 1 came at media time 5180: from there on both channels are recorded. The chunks
    // sent before the consent are not kept (they were sent before recording began).
    let mut caller_sent = Vec::new();
    for i in 10..20u32 {
        let ts = 5000 + 20 * i;
        call.audio(quiet_frame(i), ts).await;
        caller_sent.push((ts, quiet_frame(i)));
    }
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}

    let c = ended_call(&svc, customer, &call_sid).await;
    assert_eq!(c.recording_consent, RecordingConsent::Agreed as i32);
    assert!(c.recording_consent_time.is_some());
    assert_eq!(c.recording_offset_ms, 5180);
    let (caller, agent) = read_recording(&svc, &config, customer, &call_sid).await;
    let mut want = vec![0i16; caller.len()];
    for (ts, frame) in &caller_sent {
        let at = ((ts - 5180) * 8) as usize;
        want[at..at + 160].copy_from_slice(&pcm(frame));
    }
    assert_eq!(
        caller, want,
        "caller audio from the consent on, nothing before"
    );
    assert!(
        agent.iter().all(|s| *s == 0),
        "no agent audio played after it"
    );
    let turns = svc
        .client(customer)
        .await
        .get_call(GetCallRequest {
            call_sid: call_sid.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .turns;
    assert!(
        turns
            .iter()
            .any(|t| t.text == "[caller agreed to recording, pressed 1]" && t.offset_ms == 5180),
        "{turns:?}"
    );
    svc.stop().await;
}

#[tokio::test]
async fn policy_off_or_unreadable_settings_record_nothing_and_play_no_announcement() {
    for with_tenant in [true, false] {
        let (svc, config) = start(with_tenant).await;
        let customer = if with_tenant {
            let id = common::create_customer(&svc, "alloy").await;
            set_policy(&svc, id, RecordingPolicy::Off).await;
            id
        } else {
            // tenant-svc unreachable: the call-handling settings cannot be read.
            1
        };
        let (call_sid, mut call) = open(&svc, customer, 4).await;
        // The greeting comes first: no announcement.
        let first = chunks(&mut call, 1).await;
        assert_eq!(
            first[0].1, "m1",
            "the agent's first chunk is the first audio"
        );
        for i in 0..10u32 {
            call.audio(quiet_frame(i), 1000 + 20 * i).await;
        }
        call.send(In::Dtmf(DtmfDigit { digit: "1".into() })).await;
        call.send(In::Stop(StreamStop {})).await;
        while call.next().await.is_some() {}
        let c = ended_call(&svc, customer, &call_sid).await;
        assert_eq!(c.recording_policy, CallRecordingPolicy::Off as i32);
        assert_eq!(c.recording_consent, RecordingConsent::Unspecified as i32);
        assert_eq!(c.recorded_seconds, 0);
        nothing_recorded(&svc, &config).await;
        svc.stop().await;
    }
}

/// With the realtime backend: the session offers `record_consent` and says why; the agent's
/// confirmed "no" is kept (a second answer is refused, a later 1 changes nothing), and nothing
/// is recorded.
#[tokio::test]
async fn a_refusal_the_agent_confirms_is_kept_and_nothing_is_recorded() {
    use serde_json::json;

    let (svc, config, mut realtime) = start_realtime().await;
    let customer = common::create_customer(&svc, "cedar").await;
    set_policy(&svc, customer, RecordingPolicy::OnWithConsent).await;
    let (call_sid, mut call) = open(&svc, customer, 5).await;
    let mut conn = realtime.next_conn().await;
    let session = conn.next_of("session.update").await;
    let tools = session["session"]["tools"].as_array().unwrap();
    assert!(
        tools.iter().any(|t| t["name"] == "record_consent"),
        "{tools:?}"
    );
    let instructions = session["session"]["instructions"].as_str().unwrap();
    assert!(instructions.contains("record_consent"), "the agent is told");
    audio_until_mark(&mut call, "announcement").await;

    let answer = async |conn: &mut crate::fakes::FakeConn, id: &str, args: &str| {
        conn.send(json!({"type": "response.function_call_arguments.done", "call_id": id, "name": "record_consent", "arguments": args}));
        let out = conn.next_of("conversation.item.create").await;
        assert_eq!(out["item"]["call_id"], id);
        serde_json::from_str::<serde_json::Value>(out["item"]["output"].as_str().unwrap()).unwrap()
    };
    call.audio(quiet_frame(1), 2000).await;
    let no = answer(&mut conn, "c1", r#"{"agreed": false}"#).await;
    assert_eq!(no, json!({"ok": true, "recording": false}));
    let again = answer(&mut conn, "c2", r#"{"agreed": true}"#).await;
    assert_eq!(again["ok"], false, "the first answer stands");
    let bad = answer(&mut conn, "c3", r#"{"agreed": "maybe"}"#).await;
    assert_eq!(bad["ok"], false);
    call.send(In::Dtmf(DtmfDigit { digit: "1".into() })).await;
    conn.next_of("conversation.item.create").await;
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}

    let c = ended_call(&svc, customer, &call_sid).await;
    assert_eq!(c.recording_consent, RecordingConsent::Declined as i32);
    assert!(c.recording_consent_time.is_some());
    assert_eq!(c.recorded_seconds, 0);
    nothing_recorded(&svc, &config).await;
    svc.stop().await;
}

/// An outbound call (the agent waits for the callee): the callee hears the announcement before
/// anything the agent says, and the call is recorded from its echo.
#[tokio::test]
async fn an_outbound_call_hears_the_announcement_before_the_agent() {
    let (svc, _config) = start(true).await;
    let customer = common::create_customer(&svc, "alloy").await;
    set_policy(&svc, customer, RecordingPolicy::On).await;
    let call_sid = sid("CA", 6);
    let mut client = svc
        .client_with(svc.tenant_token(customer, &call_sid, scope::CALL_SCOPES))
        .await;
    client
        .register_call(RegisterCallRequest {
            direction: CallDirection::OutboundApi as i32,
            ..common::register(&call_sid, "+15551111111")
        })
        .await
        .unwrap();
    let mut call = CallStream::open(&mut client, &mut svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    let announcement = audio_until_mark(&mut call, "announcement").await;
    assert!(!announcement.is_empty());
    call.send(In::Mark(MarkPlayed {
        name: "announcement".into(),
    }))
    .await;
    // The callee says hello; the agent (the local backend replays it) answers after.
    let mut ts = 1000;
    for frame in std::iter::repeat_n(voiced_frame(), 20)
        .chain(std::iter::repeat_n(common::silent_frame(), 20))
    {
        call.audio(frame, ts).await;
        ts += 20;
    }
    let reply = chunks(&mut call, 20).await;
    assert_eq!(
        reply[0].1, "m1",
        "the agent's first audio comes after the announcement"
    );
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}
    let c = ended_call(&svc, customer, &call_sid).await;
    assert_eq!(c.direction, CallDirection::OutboundApi as i32);
    assert_eq!(c.recording_policy, CallRecordingPolicy::On as i32);
    assert_eq!((c.recording_offset_ms, c.recorded_seconds), (0, 2));
    svc.stop().await;
}

/// media-svc with the realtime backend (a fake Realtime server), recording into a folder the
/// test reads, next to a real tenant-svc.
async fn start_realtime() -> (Svc, RecordingConfig, crate::fakes::FakeRealtime) {
    use media_svc::BackendChoice;
    use media_svc::backend::openai::{ApiShape, OpenAiConfig};
    let realtime = crate::fakes::FakeRealtime::start().await;
    let url = realtime.url.clone();
    let config = RecordingConfig::temporary();
    let for_svc = config.clone();
    let svc = Svc::start_with(
        move |mut c| {
            c.backend = BackendChoice::OpenAi(OpenAiConfig {
                url,
                model: "gpt-realtime".into(),
                api_key: "sk-test-key".to_owned().into(),
                shape: ApiShape::Ga,
                stall_timeout: media_svc::backend::openai::DEFAULT_STALL_TIMEOUT,
            });
            c.recording = for_svc;
            c
        },
        true,
    )
    .await;
    (svc, config, realtime)
}

/// The agent confirms a spoken yes: the recording begins at that moment.
#[tokio::test]
async fn a_yes_the_agent_confirms_records_from_then_on() {
    let (svc, config, mut realtime) = start_realtime().await;
    let customer = common::create_customer(&svc, "coral").await;
    set_policy(&svc, customer, RecordingPolicy::OnWithConsent).await;
    let (call_sid, mut call) = open(&svc, customer, 7).await;
    let mut conn = realtime.next_conn().await;
    conn.next_of("session.update").await;
    audio_until_mark(&mut call, "announcement").await;
    call.audio(quiet_frame(1), 2000).await;
    call.audio(quiet_frame(2), 2020).await;
    // The driver relayed both frames (so its media time is 2020) before the agent confirms.
    conn.next_of("input_audio_buffer.append").await;
    conn.next_of("input_audio_buffer.append").await;
    conn.send(serde_json::json!({"type": "response.function_call_arguments.done", "call_id": "y1", "name": "record_consent", "arguments": "{\"agreed\": true}"}));
    let out = conn.next_of("conversation.item.create").await;
    assert_eq!(out["item"]["output"], r#"{"ok":true,"recording":true}"#);
    call.audio(quiet_frame(3), 2040).await;
    call.audio(quiet_frame(4), 2060).await;
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}
    let c = ended_call(&svc, customer, &call_sid).await;
    assert_eq!(c.recording_consent, RecordingConsent::Agreed as i32);
    assert_eq!(c.recording_offset_ms, 2020);
    let (caller, _) = read_recording(&svc, &config, customer, &call_sid).await;
    let mut want = vec![0i16; caller.len()];
    want[160..320].copy_from_slice(&pcm(&quiet_frame(3)));
    want[320..480].copy_from_slice(&pcm(&quiet_frame(4)));
    assert_eq!(caller, want, "only what the caller said after the yes");
    svc.stop().await;
}
