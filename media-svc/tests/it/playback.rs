//! Playback over gRPC (issue 20): `ReadRecording` streams a recording written through
//! the real writer (the running media-svc's keys, spool and store) whole or in ranges, in
//! chunks of at most 64 KiB, each saying the file's size; `GetCall` and `ListCalls` describe the
//! recording and every recording of a call (a call and its message, each read by its id only
//! through its own call and tenant); another tenant's call, an unknown call and a call without a recording are the
//! same NOT_FOUND; a recording still being written is FAILED_PRECONDITION; an offset past the
//! end OUT_OF_RANGE; the scope `media:recordings` is required.

use futures::StreamExt as _;
use media_svc::recording::{RecordingConfig, RecordingKind, Recordings};
use mesh::api::media::{
    GetCallRequest, ListCallsRequest, ReadRecordingRequest, ReadRecordingResponse, RecordingState,
};
use mesh::domain::{CallSid, CustomerId};
use mesh::identity::scope;

use crate::common::{Client, Svc};

/// Three seconds of stereo 16-bit PCM at 8 kHz behind a 44-byte header.
const WAV_BYTES: u64 = 44 + 3 * 8000 * 4;

struct Rig {
    svc: Svc,
    rec: Recordings,
}

impl Rig {
    async fn start() -> Rig {
        let dir = std::env::temp_dir().join(format!("ns-playback-{}", uuid::Uuid::new_v4()));
        let config = RecordingConfig::local(dir);
        let shared = config.clone();
        let svc = Svc::start_with(
            move |mut c| {
                c.recording = shared;
                c
            },
            false,
        )
        .await;
        let rec = Recordings::new(svc.db.db_for_role("media_svc").await, &config).unwrap();
        Rig { svc, rec }
    }

    /// A finished call row of `customer`.
    async fn call(&self, customer: i64, n: u32) -> CallSid {
        let sid = CallSid::parse(&format!("CA{customer:016x}{n:016x}")).unwrap();
        self.svc
            .db
            .admin_client()
            .await
            .execute(
                "INSERT INTO media.calls (customer_id, call_sid, account_sid, called, direction, status) \
                 VALUES ($1, $2, 'AC' || repeat('0', 32), '+14155550101', 1, 5)",
                &[&customer, &sid.as_str()],
            )
            .await
            .unwrap();
        sid
    }

    /// Three seconds recorded for `sid` (caller bytes varying by frame, agent from 1 s), finished.
    async fn record(&self, customer: i64, sid: &CallSid) {
        self.record_kind(customer, sid, RecordingKind::Call, 3000, 0)
            .await;
    }

    /// `ms` of audio of `kind` recorded for `sid` (caller bytes varying by frame from `base`,
    /// agent from 1 s), finished; its id.
    async fn record_kind(
        &self,
        customer: i64,
        sid: &CallSid,
        kind: RecordingKind,
        ms: u32,
        base: u8,
    ) -> uuid::Uuid {
        let mut w = self
            .rec
            .start(CustomerId::new(customer).unwrap(), sid, kind)
            .await
            .unwrap()
            .expect("recording on");
        for ms in (0..ms).step_by(20) {
            w.caller(ms, &[base.wrapping_add((ms / 20 % 120) as u8); 160]);
            if ms >= 1000 {
                w.agent(ms, &[0x90; 160]);
            }
        }
        w.finish().await.unwrap().0
    }

    async fn client(&self, customer: i64, scopes: &[&str]) -> Client {
        self.svc
            .client_with(self.svc.tenant_token(customer, "test", scopes))
            .await
    }
}

async fn read(
    client: &mut Client,
    sid: &CallSid,
    offset: u64,
    length: Option<u64>,
) -> Result<Vec<ReadRecordingResponse>, tonic::Status> {
    read_request(
        client,
        ReadRecordingRequest {
            call_sid: sid.as_str().to_owned(),
            offset,
            length,
            ..Default::default()
        },
    )
    .await
}

async fn read_request(
    client: &mut Client,
    request: ReadRecordingRequest,
) -> Result<Vec<ReadRecordingResponse>, tonic::Status> {
    let mut stream = client.read_recording(request).await?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.next().await {
        out.push(m?);
    }
    Ok(out)
}

fn joined(messages: &[ReadRecordingResponse]) -> Vec<u8> {
    messages
        .iter()
        .flat_map(|m| m.data.iter().copied())
        .collect()
}

#[tokio::test]
async fn a_recording_streams_whole_and_in_ranges_in_chunks_of_at_most_64_kib() {
    let rig = Rig::start().await;
    let sid = rig.call(1, 1).await;
    rig.record(1, &sid).await;
    let mut a = rig.client(1, &[scope::MEDIA_RECORDINGS]).await;

    let whole = read(&mut a, &sid, 0, None).await.unwrap();
    assert!(whole.len() >= 2, "96 KB come in more than one message");
    let mut at = 0;
    for m in &whole {
        assert!(m.data.len() <= 64 * 1024 && !m.data.is_empty());
        assert_eq!(
            (m.total_bytes, m.content_type.as_str(), m.offset),
            (WAV_BYTES, "audio/wav", at)
        );
        at += m.data.len() as u64;
    }
    let wav = joined(&whole);
    assert_eq!(wav.len() as u64, WAV_BYTES);
    assert_eq!((&wav[0..4], &wav[8..12]), (&b"RIFF"[..], &b"WAVE"[..]));
    // Caller on the left, silence on the right for the first second, the agent after it.
    let frame = |i: usize| {
        let f = &wav[44 + i * 4..48 + i * 4];
        (
            i16::from_le_bytes([f[0], f[1]]),
            i16::from_le_bytes([f[2], f[3]]),
        )
    };
    assert_eq!(frame(20).0, mesh::g711::ulaw_to_linear(0));
    assert_eq!(frame(160 * 7 + 3).0, mesh::g711::ulaw_to_linear(7));
    assert_eq!(frame(100).1, mesh::g711::ulaw_to_linear(0xFF));
    assert_eq!(frame(8000 + 5).1, mesh::g711::ulaw_to_linear(0x90));

    for (offset, length) in [
        (0, Some(44)),
        (100, Some(1000)),
        (60_000, Some(10_000)),
        (90_000, None),
        (96_000, Some(1_000_000)),
    ] {
        let part = read(&mut a, &sid, offset, length).await.unwrap();
        let end = length.map_or(WAV_BYTES, |n| (offset + n).min(WAV_BYTES));
        assert_eq!(
            joined(&part),
            &wav[offset as usize..end as usize],
            "{offset}+{length:?}"
        );
        assert_eq!(part[0].offset, offset);
    }
    // Nothing asked (what an HTTP HEAD needs): one message with the size.
    let size = read(&mut a, &sid, 0, Some(0)).await.unwrap();
    assert_eq!(size.len(), 1);
    assert_eq!((size[0].total_bytes, size[0].data.len()), (WAV_BYTES, 0));
    let end = read(&mut a, &sid, WAV_BYTES, None).await.unwrap();
    assert_eq!((end.len(), end[0].data.len()), (1, 0));
    let past = read(&mut a, &sid, WAV_BYTES + 1, None).await.unwrap_err();
    assert_eq!(past.code(), tonic::Code::OutOfRange);

    described_by_get_call_and_list_calls(&rig, &sid).await;
}

/// `GetCall` and `ListCalls` describe the recording of `sid` (three seconds, complete), and no
/// recording for a call without one.
async fn described_by_get_call_and_list_calls(rig: &Rig, sid: &CallSid) {
    let mut reader = rig.client(1, &[scope::MEDIA_READ]).await;
    let call = reader
        .get_call(GetCallRequest {
            call_sid: sid.as_str().to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    let r = call.recording.expect("Call.recording");
    assert_eq!(r.duration_ms, 3000);
    assert!(
        [
            RecordingState::Spooled as i32,
            RecordingState::Stored as i32
        ]
        .contains(&r.state),
        "complete: {r:?}"
    );
    uuid::Uuid::parse_str(&r.recording_id).expect("a UUID");
    let unrecorded = rig.call(1, 2).await;
    let listed = reader
        .list_calls(ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .calls;
    let recording_of = |s: &CallSid| {
        listed
            .iter()
            .find(|c| c.call_sid == s.as_str())
            .expect("listed")
            .recording
            .clone()
    };
    assert_eq!(recording_of(sid), Some(r));
    assert_eq!(recording_of(&unrecorded), None);
}

#[tokio::test]
async fn another_tenants_unknown_and_unrecorded_calls_are_one_not_found_and_the_scope_is_needed() {
    let rig = Rig::start().await;
    let sid = rig.call(1, 1).await;
    rig.record(1, &sid).await;
    let unrecorded = rig.call(1, 2).await;
    let b_call = rig.call(2, 1).await;
    let live = rig.call(1, 3).await;
    let writer = rig
        .rec
        .start(CustomerId::new(1).unwrap(), &live, RecordingKind::Call)
        .await
        .unwrap()
        .expect("recording on");
    let rows = || rig.svc.count("SELECT count(*) FROM media.recordings");
    assert_eq!(rows().await, 2);

    let mut b = rig
        .client(2, &[scope::MEDIA_READ, scope::MEDIA_RECORDINGS])
        .await;
    let unknown = CallSid::parse(&format!("CA{:032x}", 0xdead)).unwrap();
    let mut answers = Vec::new();
    for s in [&sid, &unknown, &b_call] {
        let e = read(&mut b, s, 0, None).await.unwrap_err();
        answers.push((e.code(), e.message().to_owned()));
    }
    let mut a = rig.client(1, &[scope::MEDIA_RECORDINGS]).await;
    let e = read(&mut a, &unrecorded, 0, None).await.unwrap_err();
    answers.push((e.code(), e.message().to_owned()));
    assert_eq!(answers[0].0, tonic::Code::NotFound);
    assert!(
        answers.iter().all(|x| *x == answers[0]),
        "one answer: {answers:?}"
    );
    // B's GetCall of A's call is not found either (nothing of the recording shows).
    let e = b
        .get_call(GetCallRequest {
            call_sid: sid.as_str().to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Still being recorded: not readable yet, and said so.
    let e = read(&mut a, &live, 0, None).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    drop(writer);

    // Without `media:recordings` (a read-only or developer token): refused.
    for scopes in [&[scope::MEDIA_READ][..], scope::DEVELOPER_SCOPES] {
        let mut c = rig.client(1, scopes).await;
        let e = read(&mut c, &sid, 0, None).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{scopes:?}");
    }
    // A malformed CallSid names the field.
    let e = a
        .read_recording(ReadRecordingRequest {
            call_sid: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("call_sid"));
    assert_eq!(rows().await, 2, "reads and refusals change nothing");
}

/// The whole recording `id` of `sid` through `ReadRecording`, or its status.
async fn read_by_id(
    client: &mut Client,
    sid: &CallSid,
    id: &str,
) -> Result<Vec<u8>, tonic::Status> {
    read_request(
        client,
        ReadRecordingRequest {
            call_sid: sid.as_str().to_owned(),
            recording_id: id.to_owned(),
            ..Default::default()
        },
    )
    .await
    .map(|m| joined(&m))
}

#[tokio::test]
async fn every_recording_of_a_call_is_listed_and_read_by_its_id_only_through_its_call_and_tenant() {
    let rig = Rig::start().await;
    // A call that switched to taking a message: its conversation (3 s), then the message (2 s).
    let sid = rig.call(1, 1).await;
    let call_id = rig.record_kind(1, &sid, RecordingKind::Call, 3000, 0).await;
    let message_id = rig
        .record_kind(1, &sid, RecordingKind::Message, 2000, 7)
        .await;
    rig.svc
        .db
        .admin_client()
        .await
        .execute(
            "INSERT INTO media.callback_tasks (customer_id, task_id, call_sid, reason, recording_id) \
             VALUES (1, $1, $2, 'backend_down', $3)",
            &[&uuid::Uuid::new_v4(), &sid.as_str(), &message_id],
        )
        .await
        .unwrap();
    let other = rig.call(1, 2).await;
    let other_id = rig
        .record_kind(1, &other, RecordingKind::Call, 1000, 3)
        .await;
    let b_call = rig.call(2, 1).await;
    let b_id = rig
        .record_kind(2, &b_call, RecordingKind::Call, 1000, 5)
        .await;
    let rows = || rig.svc.count("SELECT count(*) FROM media.recordings");
    assert_eq!(rows().await, 4);

    described_with_kinds_and_the_message_flag(&rig, &sid, &other, call_id, message_id).await;

    // Each id serves its own bytes; no id is the call's first recording.
    let mut a = rig.client(1, &[scope::MEDIA_RECORDINGS]).await;
    let first = joined(&read(&mut a, &sid, 0, None).await.unwrap());
    let conversation = read_by_id(&mut a, &sid, &call_id.to_string())
        .await
        .unwrap();
    let message = read_by_id(&mut a, &sid, &message_id.to_string())
        .await
        .unwrap();
    assert_eq!(first, conversation);
    assert_eq!(conversation.len() as u64, WAV_BYTES);
    assert_eq!(message.len() as u64, 44 + 2 * 8000 * 4);
    // The message's caller channel starts at its own base byte.
    let left = |wav: &[u8]| i16::from_le_bytes([wav[44], wav[45]]);
    assert_eq!(left(&conversation), mesh::g711::ulaw_to_linear(0));
    assert_eq!(left(&message), mesh::g711::ulaw_to_linear(7));

    // Another call's recording id through this call, another tenant's id, an unknown id: the
    // NOT_FOUND of an unknown call. B cannot reach A's by A's call and id either.
    let mut answers = Vec::new();
    for id in [other_id, b_id, uuid::Uuid::new_v4()] {
        let e = read_by_id(&mut a, &sid, &id.to_string()).await.unwrap_err();
        answers.push((e.code(), e.message().to_owned()));
    }
    let mut b = rig
        .client(2, &[scope::MEDIA_READ, scope::MEDIA_RECORDINGS])
        .await;
    for (s, id) in [(&sid, message_id), (&b_call, message_id)] {
        let e = read_by_id(&mut b, s, &id.to_string()).await.unwrap_err();
        answers.push((e.code(), e.message().to_owned()));
    }
    assert_eq!(answers[0].0, tonic::Code::NotFound);
    assert!(
        answers.iter().all(|x| *x == answers[0]),
        "one answer: {answers:?}"
    );
    // A malformed id names the field.
    let e = read_by_id(&mut a, &sid, "not-a-uuid").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("recording_id"), "{}", e.message());
    assert_eq!(rows().await, 4, "reads and refusals change nothing");
}

/// GetCall and ListCalls: both recordings of `sid`, oldest first, with their kinds; the
/// message flag; `other` has one recording and no message.
async fn described_with_kinds_and_the_message_flag(
    rig: &Rig,
    sid: &CallSid,
    other: &CallSid,
    call_id: uuid::Uuid,
    message_id: uuid::Uuid,
) {
    let mut reader = rig.client(1, &[scope::MEDIA_READ]).await;
    let call = reader
        .get_call(GetCallRequest {
            call_sid: sid.as_str().to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    let described: Vec<(String, String, i64)> = call
        .recordings
        .iter()
        .map(|r| (r.recording_id.clone(), r.kind.clone(), r.duration_ms))
        .collect();
    assert_eq!(
        described,
        [
            (call_id.to_string(), "call".to_owned(), 3000),
            (message_id.to_string(), "message".to_owned(), 2000)
        ]
    );
    assert_eq!(call.recording.as_ref(), call.recordings.first());
    assert!(call.has_message);
    let listed = reader
        .list_calls(ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .calls;
    let of = |s: &CallSid| listed.iter().find(|c| c.call_sid == s.as_str()).unwrap();
    assert_eq!(of(sid).recordings, call.recordings);
    assert!(of(sid).has_message);
    assert_eq!(of(other).recordings.len(), 1);
    assert!(!of(other).has_message);
}
