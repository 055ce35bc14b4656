//! The message flow's other paths end to end (issue 20): after hours (the tenant's
//! opening hours exclude now), a caller's export and erasure covering their callback tasks,
//! and a task naming its message's recording, read back through ReadRecording. Real
//! PostgreSQL, tenant-svc, memory-svc, media-svc over gRPC; a fake Realtime server shows when an
//! agent session was (not) opened.

use std::time::Instant;

use chrono::Datelike as _;
use futures::StreamExt as _;
use mesh::api::media::*;
use mesh::api::tenant::{OpenPeriod, OpeningHours, UpdateCallHandlingRequest};
use mesh::identity::scope;
use serde_json::json;

use crate::common::{self, Out};
use crate::fakes::FakeRealtime;
use crate::messages::{
    backend_down, hear_prompt, leave_message_and_hang_up, open, unreachable_realtime,
};
use crate::webhooks::{CALLER, Mesh, Mode, Receiver};

/// Opening hours that never include now, in any time zone: one hour, three days from today.
fn closed_now() -> OpeningHours {
    let day = (chrono::Utc::now().weekday().num_days_from_monday() + 3) % 7;
    let period = vec![OpenPeriod {
        open_minute: 600,
        close_minute: 660,
    }];
    let mut hours = OpeningHours::default();
    let slot = match day {
        0 => &mut hours.monday,
        1 => &mut hours.tuesday,
        2 => &mut hours.wednesday,
        3 => &mut hours.thursday,
        4 => &mut hours.friday,
        5 => &mut hours.saturday,
        _ => &mut hours.sunday,
    };
    *slot = period;
    hours
}

/// Sets the tenant's opening hours (closed now) and whether calls after hours take messages.
async fn after_hours(mesh: &Mesh, customer: i64, take_messages: bool) {
    mesh.tenant_service(customer)
        .await
        .update_call_handling(UpdateCallHandlingRequest {
            settings: Some(mesh::api::tenant::CallHandling {
                opening_hours: Some(closed_now()),
                messages_after_hours: take_messages,
                ..mesh::call_handling::defaults()
            }),
        })
        .await
        .unwrap();
}

/// Outside its opening hours, a tenant that takes messages then: the caller hears the message
/// prompt, no Realtime session is opened, and the call leaves a task (reason `after_hours`)
/// and a delivered `message.created`. With `messages_after_hours` off, the agent answers.
#[tokio::test]
async fn after_hours_the_caller_leaves_a_message_and_with_the_setting_off_the_agent_answers() {
    let mut realtime = FakeRealtime::start().await;
    let receiver = Receiver::start(Mode::Verify).await;
    let url = realtime.url.clone();
    let mesh = Mesh::start(backend_down(url)).await;
    let (a, secret) = mesh.tenant("closed", &receiver.url, false).await;
    receiver.set_secret(&secret);
    after_hours(&mesh, a, true).await;

    let (call_sid, mut call, opened) = open(&mesh, a, 1).await;
    let waited = hear_prompt(&mut call, opened).await;
    eprintln!("after hours: prompt {waited:?} after the stream opened");
    leave_message_and_hang_up(call).await;
    common::eventually("the after-hours task", || async {
        mesh.count(&format!(
            "SELECT count(*) FROM media.callback_tasks WHERE reason = 'after_hours' AND call_sid = '{call_sid}'"
        ))
        .await
            == 1
    })
    .await;
    let event = crate::messages_busy::message_event(&receiver).await;
    assert_eq!(event["message"]["reason"], "after_hours");
    assert!(
        realtime.conns.try_recv().is_err(),
        "no Realtime session after hours"
    );

    after_hours(&mesh, a, false).await;
    let (second_sid, mut call, _) = open(&mesh, a, 2).await;
    let mut conn = realtime.next_conn().await;
    conn.next_of("session.update").await;
    let agent: Vec<u8> = (0..320).map(|n| (n % 200) as u8).collect();
    conn.send(
        json!({"type": "response.output_audio.delta", "response_id": "r1", "item_id": "item_1",
        "delta": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &agent)}),
    );
    match call.next().await {
        Some(Out::Audio(a)) => assert_eq!(a.payload, agent, "the agent's audio"),
        other => panic!("the agent answers: {other:?}"),
    }
    leave_message_and_hang_up(call).await;
    let tasks = mesh
        .count(&format!(
            "SELECT count(*) FROM media.callback_tasks WHERE call_sid = '{second_sid}'"
        ))
        .await;
    assert_eq!(tasks, 0);
    mesh.stop().await;
}

/// The task of `call_sid` (through the inbox, scope `media:messages`).
async fn task_of(mesh: &Mesh, customer: i64, call_sid: &str) -> CallbackTask {
    let mut inbox = mesh
        .media_client(customer, "owner", &[scope::MEDIA_MESSAGES])
        .await;
    let tasks = inbox
        .list_callback_tasks(ListCallbackTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    tasks
        .into_iter()
        .find(|t| t.call_sid == call_sid)
        .expect("the call's task is listed")
}

/// A caller leaves a message with A and one with B. A's export of the caller carries A's task
/// (not B's); A's erasure of the caller removes A's task and leaves B's.
#[tokio::test]
async fn a_callers_export_carries_their_tasks_and_erasure_removes_them() {
    let mesh = Mesh::start(backend_down(unreachable_realtime().await)).await;
    let (a, _) = mesh.tenant("export-a", "", false).await;
    let (b, _) = mesh.tenant("export-b", "", false).await;
    let mut sids = Vec::new();
    for (customer, n) in [(a, 1), (b, 2)] {
        let (call_sid, mut call, opened) = open(&mesh, customer, n).await;
        hear_prompt(&mut call, opened).await;
        leave_message_and_hang_up(call).await;
        sids.push(call_sid);
    }
    common::eventually("two tasks", || async {
        mesh.count("SELECT count(*) FROM media.callback_tasks")
            .await
            == 2
    })
    .await;
    let task_a = task_of(&mesh, a, &sids[0]).await;

    let mut client = mesh
        .media_client(a, "owner", &[scope::MEDIA_EXPORT, scope::MEDIA_ERASE])
        .await;
    let mut export = client
        .export_caller(ExportCallerRequest {
            caller: CALLER.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut exported = Vec::new();
    while let Some(record) = export.next().await {
        if let Some(export_caller_response::Record::Task(t)) = record.unwrap().record {
            exported.push(t);
        }
    }
    assert_eq!(exported.len(), 1, "A's task only: {exported:?}");
    assert_eq!(exported[0].task_id, task_a.task_id);
    assert_eq!(exported[0].call_sid, sids[0]);
    assert_eq!(exported[0].caller, CALLER);
    assert_eq!(exported[0].reason, CallbackReason::BackendDown as i32);

    client
        .erase_caller(EraseCallerRequest {
            caller: CALLER.into(),
        })
        .await
        .unwrap();
    let left = |customer: i64| {
        format!("SELECT count(*) FROM media.callback_tasks WHERE customer_id = {customer}")
    };
    assert_eq!(mesh.count(&left(a)).await, 0, "A's task erased");
    assert_eq!(mesh.count(&left(b)).await, 1, "B's task kept");
    mesh.stop().await;
}

/// The task names its message's recording: the id is the call's recording of kind `message`,
/// ListCallbackTasks shows it, and ReadRecording of that id plays the caller's message (the
/// voiced frames on the caller's channel, nothing on the agent's).
#[tokio::test]
async fn a_task_names_its_message_recording_which_plays_the_callers_frames() {
    let mesh = Mesh::start(backend_down(unreachable_realtime().await)).await;
    let (a, _) = mesh.tenant("recorded", "", false).await;
    let (call_sid, mut call, opened) = open(&mesh, a, 1).await;
    hear_prompt(&mut call, opened).await;
    let started = Instant::now();
    leave_message_and_hang_up(call).await;
    common::eventually("the task", || async {
        mesh.count("SELECT count(*) FROM media.callback_tasks")
            .await
            == 1
    })
    .await;
    let task = task_of(&mesh, a, &call_sid).await;
    assert!(!task.recording_id.is_empty(), "the task names a recording");
    let named = mesh
        .count(&format!(
            "SELECT count(*) FROM media.recordings r JOIN media.callback_tasks t \
               ON t.customer_id = r.customer_id AND t.recording_id = r.id \
             WHERE r.call_sid = '{call_sid}' AND r.kind = 'message' AND t.recording_id = '{}'",
            task.recording_id
        ))
        .await;
    assert_eq!(named, 1, "the task's recording is the call's message");

    let mut player = mesh
        .media_client(a, "owner", &[scope::MEDIA_RECORDINGS])
        .await;
    let mut stream = player
        .read_recording(ReadRecordingRequest {
            call_sid: call_sid.clone(),
            recording_id: task.recording_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut wav = Vec::new();
    while let Some(chunk) = stream.next().await {
        wav.extend(chunk.unwrap().data);
    }
    let samples: Vec<(i16, i16)> = wav[44..]
        .chunks_exact(4)
        .map(|f| {
            (
                i16::from_le_bytes([f[0], f[1]]),
                i16::from_le_bytes([f[2], f[3]]),
            )
        })
        .collect();
    let voiced = samples.iter().filter(|(l, _)| l.abs() > 1000).count();
    let agent = samples.iter().filter(|(_, r)| *r != 0).count();
    // 25 frames of a 1 kHz tone at amplitude 6000: half the samples or more are above 1000.
    assert!(
        voiced >= 25 * 160 / 2,
        "{voiced} voiced caller samples of {}",
        samples.len()
    );
    assert_eq!(agent, 0, "the message has no agent audio");
    eprintln!(
        "message of {} samples read back {:?} after the caller spoke",
        samples.len(),
        started.elapsed()
    );
    mesh.stop().await;
}
