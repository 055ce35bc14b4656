//! A whole call through StreamCall with the offline `local` backend: greeting audio, utterance
//! detection and replay, marks, barge-in with `clear`, DTMF, transcript turns written as they
//! happen, finalisation, usage and the post-call outbox (memory-svc down: the row waits).

use crate::common;

use common::{CallStream, In, Out, Svc, eventually, register, sid, silent_frame, voiced_frame};
use mesh::api::common::Speaker;
use mesh::api::media::*;
use mesh::identity::scope;

/// The stored call: completed by the caller's hang-up on the local backend, its turns in media
/// time (greeting, caller audio, replay, the DTMF note).
async fn check_recorded(svc: &Svc, call_sid: &str) {
    let mut client = svc.client(1).await;
    let got = client
        .get_call(GetCallRequest {
            call_sid: call_sid.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let c = got.call.unwrap();
    assert_eq!(c.status, CallStatus::Completed as i32);
    assert_eq!(c.end_reason, "caller-hangup");
    assert_eq!(c.backend, "local");
    assert_eq!(c.stream_sid, sid("MZ", 1));
    assert!(c.answer_time.is_some() && c.end_time.is_some());
    let turns: Vec<(i32, String)> = got
        .turns
        .iter()
        .map(|t| (t.speaker, t.text.clone()))
        .collect();
    assert!(
        turns[0].0 == Speaker::Agent as i32 && turns[0].1.contains("This is AI Assistant"),
        "{turns:?}"
    );
    assert!(turns[0].1.contains("[greeting, tone pattern]"), "{turns:?}");
    assert!(
        turns.contains(&(Speaker::Caller as i32, "[caller audio 0.4 s]".into())),
        "{turns:?}"
    );
    assert!(
        turns.contains(&(
            Speaker::Agent as i32,
            "[replay of caller audio 0.4 s]".into()
        )),
        "{turns:?}"
    );
    assert!(
        turns.contains(&(Speaker::System as i32, "[caller pressed 5]".into())),
        "{turns:?}"
    );
    let caller_turn = got
        .turns
        .iter()
        .find(|t| t.speaker == Speaker::Caller as i32)
        .unwrap();
    assert!(caller_turn.offset_ms >= 1000, "offsets are media time");
}

/// Usage counted once, and RecordCall waiting in the outbox while memory-svc is down.
async fn check_usage_and_outbox(svc: &Svc) {
    let mut client = svc.client(1).await;
    use chrono::Datelike;
    let now = chrono::Utc::now();
    let usage = client
        .get_usage(GetUsageRequest {
            year: now.year(),
            month: now.month() as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(usage.total_calls, 1);
    assert_eq!(
        svc.count("SELECT count(*) FROM media.outbox WHERE delivered_at IS NULL")
            .await,
        1
    );
    eventually("a failed delivery attempt", || async {
        svc.count("SELECT count(*) FROM media.outbox WHERE attempts >= 1 AND last_error IS NOT NULL AND dead_at IS NULL").await == 1
    })
    .await;
}

#[tokio::test]
async fn local_call_greets_replays_barges_in_and_is_recorded() {
    let svc = Svc::start().await;
    let call_sid = sid("CA", 42);
    let mut client = svc
        .client_with(svc.tenant_token(1, &call_sid, scope::CALL_SCOPES))
        .await;
    client
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap();

    let mut call = CallStream::open(&mut client, &mut svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    // The agent speaks first: the greeting as the recognisable tone pattern.
    let tone = media_svc::audio::tone_pattern();
    let greeting = call.audio_bytes(tone.len(), true).await;
    assert_eq!(greeting, tone);
    // The mark after the last chunk: played.
    let Some(Out::Mark(last)) = call.next().await else {
        panic!("a mark follows every chunk")
    };
    call.send(In::Mark(MarkPlayed { name: last.name })).await;

    // One utterance of 400 ms followed by 400 ms of silence: replayed byte for byte.
    let mut spoken = Vec::new();
    let mut ts = 1000;
    for _ in 0..20 {
        call.audio(voiced_frame(), ts).await;
        spoken.extend(voiced_frame());
        ts += 20;
    }
    for _ in 0..20 {
        call.audio(silent_frame(), ts).await;
        ts += 20;
    }
    let replay = call.audio_bytes(spoken.len(), false).await;
    assert_eq!(replay, spoken);

    call.send(In::Dtmf(DtmfDigit { digit: "5".into() })).await;

    // Marks of the replay are still pending: the caller speaking now is a barge-in.
    call.audio(voiced_frame(), ts).await;
    loop {
        match call.next().await.expect("open") {
            Out::Clear(_) => break,
            Out::Audio(_) | Out::Mark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Twilio echoes the cleared marks; unknown names are tolerated.
    call.send(In::Mark(MarkPlayed { name: "m1".into() })).await;
    call.send(In::Stop(StreamStop {})).await;
    while let Some(ev) = call.next().await {
        assert!(matches!(ev, Out::Audio(_) | Out::Mark(_)), "{ev:?}");
    }

    check_recorded(&svc, &call_sid).await;
    check_usage_and_outbox(&svc).await;
    svc.stop().await;
}
