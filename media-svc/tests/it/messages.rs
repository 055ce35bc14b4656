//! The message flow end to end: real PostgreSQL, real tenant-svc (webhook settings, secrets,
//! signatures), real memory-svc, media-svc over gRPC, and a realtime backend that cannot be
//! reached (its URL refuses connections). Callers hear the prompt at once, leave a message, and
//! each call ends with a stored callback task and a signed `message.created` webhook event that
//! a local receiver verifies. Also the caps on message-taking calls, and the inbox RPCs
//! (`ListCallbackTasks`, `SetCallbackTaskDone`) across two tenants.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{CallStream, In, Out, register, sid, voiced_frame};
use media_svc::backend::openai::{ApiShape, DEFAULT_STALL_TIMEOUT, OpenAiConfig};
use media_svc::{BackendChoice, CallConfig};
use mesh::api::media::*;
use mesh::identity::scope;
use tokio::net::TcpListener;
use tonic::Code;
use webhooks::{CALLER, Mesh, Mode, Receiver, body_json, fast};

use crate::{common, webhooks};

/// A realtime URL where nothing listens: every session fails to open at once.
pub(crate) async fn unreachable_realtime() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("ws://{addr}/v1/realtime")
}

pub(crate) fn backend_down(url: String) -> impl FnOnce(CallConfig) -> CallConfig {
    move |c| {
        let mut c = fast(c);
        c.backend = BackendChoice::OpenAi(OpenAiConfig {
            url,
            model: "gpt-realtime".into(),
            api_key: "sk-test-key".to_owned().into(),
            shape: ApiShape::Ga,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        });
        c
    }
}

/// Opens call `n` of `customer` from [`CALLER`]; returns the stream and when it was opened.
pub(crate) async fn open(mesh: &Mesh, customer: i64, n: u32) -> (String, CallStream, Instant) {
    let call_sid = sid("CA", n);
    let mut client = mesh
        .media_client(customer, &call_sid, scope::CALL_SCOPES)
        .await;
    client
        .register_call(register(&call_sid, CALLER))
        .await
        .unwrap();
    let opened = Instant::now();
    let call = CallStream::open(&mut client, &mut mesh.gateway_client().await, &call_sid)
        .await
        .unwrap();
    (call_sid, call, opened)
}

/// Reads the message prompt up to its record mark (answering it as Twilio would); returns the
/// time from `since` to the prompt's first audio frame.
pub(crate) async fn hear_prompt(call: &mut CallStream, since: Instant) -> Duration {
    let mut first_audio = None;
    loop {
        match call.next().await.expect("the call goes on to the prompt") {
            Out::Clear(_) => {}
            Out::Audio(_) => {
                first_audio.get_or_insert_with(|| since.elapsed());
            }
            Out::Mark(m) if m.name == media_svc::call::message::RECORD_MARK => {
                call.send(In::Mark(MarkPlayed { name: m.name })).await;
                return first_audio.expect("prompt audio before the record mark");
            }
            other => panic!("unexpected {other:?} before the record mark"),
        }
    }
}

/// Says something for half a second, then hangs up; waits for the stream to end.
pub(crate) async fn leave_message_and_hang_up(mut call: CallStream) {
    for i in 0..25 {
        call.audio(voiced_frame(), 5000 + i * 20).await;
    }
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}
}

/// With the realtime backend unreachable, 50 of 50 calls end with a stored callback task (reason
/// `backend_down`, counted in usage) and a delivered, verified `message.created` event carrying
/// the task, never the caller's number; the callers hear the prompt soon after their stream
/// opens (median under 1 s; every call under 3 s even on a loaded test machine).
#[tokio::test]
async fn backend_unreachable_50_of_50_calls_leave_a_task_and_a_delivered_event() {
    let receiver = Receiver::start(Mode::Verify).await;
    let mesh = Mesh::start(backend_down(unreachable_realtime().await)).await;
    let (a, secret) = mesh.tenant("msgs", &receiver.url, false).await;
    receiver.set_secret(&secret);
    let mut waits = Vec::with_capacity(50);
    // Five at a time: the tenant's concurrent-call limit (starter tier).
    for batch in 0..10u32 {
        let calls = (0..5u32).map(|i| {
            let mesh = &mesh;
            async move {
                let (_, mut call, opened) = open(mesh, a, 100 + batch * 5 + i).await;
                let waited = hear_prompt(&mut call, opened).await;
                leave_message_and_hang_up(call).await;
                waited
            }
        });
        waits.extend(futures::future::join_all(calls).await);
    }
    waits.sort();
    let (median, slowest) = (waits[waits.len() / 2], waits[waits.len() - 1]);
    eprintln!("prompt start after the stream opened: median {median:?}, slowest {slowest:?}");
    // The 1 s is a figure (about 0.2 s at worst on an idle machine, see the note of
    // issue 20), held here by the median; the slowest call on a loaded test machine (debug
    // build, the whole suite beside it) gets three times that, still far from the 10 s stall
    // timeout or the apology a call without the message flow would end with.
    assert!(
        median < Duration::from_secs(1),
        "the median prompt started {median:?} after the stream opened"
    );
    assert!(
        slowest < Duration::from_secs(3),
        "the prompt started {slowest:?} after the stream opened"
    );
    let tasks = mesh
        .count("SELECT count(*) FROM media.callback_tasks WHERE reason = 'backend_down' AND caller = '+15551111111'")
        .await;
    assert_eq!(tasks, 50);
    let flagged = mesh
        .count("SELECT count(*) FROM media.calls WHERE message_flow = 'backend_down' AND ended_at IS NOT NULL")
        .await;
    assert_eq!(flagged, 50);
    let usage = mesh
        .count("SELECT coalesce(sum(total_calls), 0)::int8 FROM media.usage_monthly")
        .await;
    assert_eq!(usage, 50, "message-taking calls count in usage");
    check_message_events(&receiver).await;
    common::eventually("50 message.created events marked delivered", || async {
        mesh.count("SELECT count(*) FROM media.webhook_events WHERE event_type = 'message.created' AND delivered_at IS NOT NULL")
            .await
            == 50
    })
    .await;
    mesh.stop().await;
}

/// The receiver got 50 verified `message.created` events, one per task, with the reason, the
/// caller's keyed hash and a portal link; never the caller's number or a transcript.
async fn check_message_events(receiver: &Receiver) {
    let is_message = |d: &webhooks::Delivery| body_json(d)["type"] == "message.created";
    let delivered = receiver
        .wait_until("50 message.created deliveries", |all| {
            all.iter()
                .filter(|d| is_message(d) && d.verified && d.answered == 200)
                .count()
                >= 50
        })
        .await;
    let messages: Vec<_> = delivered.iter().filter(|d| is_message(d)).collect();
    let task_ids: HashSet<String> = messages
        .iter()
        .map(|d| {
            body_json(d)["message"]["task_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(task_ids.len(), 50, "one event per task");
    let body = body_json(messages[0]);
    assert_eq!(body["message"]["reason"], "backend_down");
    assert!(
        body["message"]["caller_number_hash"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    assert!(
        body["message"]["portal_url"]
            .as_str()
            .unwrap()
            .contains("/portal/messages#task-")
    );
    for d in &messages {
        let text = String::from_utf8_lossy(&d.body);
        assert!(!text.contains("5551111111"), "no caller number: {text}");
        assert!(!text.contains("transcript"), "no transcript: {text}");
    }
}

/// One message-taking call per tenant: a second caller while the first is leaving a message
/// gets the old end (a hang-up, so the edge plays its apology) and no task is stored for it.
#[tokio::test]
async fn the_cap_on_message_taking_calls_refuses_beyond_it() {
    let url = unreachable_realtime().await;
    let mesh = Mesh::start(move |c| {
        let mut c = backend_down(url)(c);
        c.message_calls = (1, 200);
        c
    })
    .await;
    let (a, _) = mesh.tenant("capped", "", false).await;
    let (_, mut first, opened) = open(&mesh, a, 1).await;
    hear_prompt(&mut first, opened).await;
    let (second_sid, mut second, _) = open(&mesh, a, 2).await;
    match second.next().await {
        Some(Out::Hangup(h)) => assert_eq!(h.reason, "backend-error"),
        other => panic!("the second caller is refused the message flow: {other:?}"),
    }
    assert!(second.next().await.is_none());
    drop(second);
    leave_message_and_hang_up(first).await;
    common::eventually("the first call's task", || async {
        mesh.count("SELECT count(*) FROM media.callback_tasks")
            .await
            == 1
    })
    .await;
    let refused = mesh
        .count(&format!(
            "SELECT count(*) FROM media.callback_tasks WHERE call_sid = '{second_sid}'"
        ))
        .await;
    assert_eq!(refused, 0);
    // The place is given back: the next caller leaves a message again.
    let (_, mut third, opened) = open(&mesh, a, 3).await;
    hear_prompt(&mut third, opened).await;
    leave_message_and_hang_up(third).await;
    common::eventually("the third call's task", || async {
        mesh.count("SELECT count(*) FROM media.callback_tasks")
            .await
            == 2
    })
    .await;
    mesh.stop().await;
}

fn list(
    page_size: i32,
    page_token: String,
    filter: CallbackTaskFilter,
) -> ListCallbackTasksRequest {
    ListCallbackTasksRequest {
        page_size,
        page_token,
        filter: filter as i32,
    }
}

const DONE_COUNT: &str = "SELECT count(*) FROM media.callback_tasks WHERE done_at IS NOT NULL";

/// A's three tasks in pages of two; the first marked done; the open and done filters. Returns
/// the done task's id and an open one's.
async fn check_paging_and_marking(inbox: &mut common::Client) -> (String, String) {
    let page1 = inbox
        .list_callback_tasks(list(2, String::new(), CallbackTaskFilter::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page1.tasks.len(), 2);
    assert!(!page1.next_page_token.is_empty());
    let page2 = inbox
        .list_callback_tasks(list(
            2,
            page1.next_page_token,
            CallbackTaskFilter::Unspecified,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.tasks.len(), 1);
    assert!(page2.next_page_token.is_empty());
    let task = &page1.tasks[0];
    assert_eq!(task.reason, CallbackReason::BackendDown as i32);
    assert_eq!(task.caller, CALLER);
    assert!(task.done_time.is_none());
    let done = inbox
        .set_callback_task_done(SetCallbackTaskDoneRequest {
            task_id: task.task_id.clone(),
            done: true,
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert!(done.done_time.is_some());
    let open_tasks = inbox
        .list_callback_tasks(list(0, String::new(), CallbackTaskFilter::Open))
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(open_tasks.len(), 2);
    assert!(open_tasks.iter().all(|t| t.task_id != task.task_id));
    let done_tasks = inbox
        .list_callback_tasks(list(0, String::new(), CallbackTaskFilter::Done))
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(done_tasks.len(), 1);
    (task.task_id.clone(), open_tasks[0].task_id.clone())
}

/// Tenant B sees nothing of A's and cannot mark A's tasks either way (NOT_FOUND, nothing
/// changed).
async fn check_other_tenant(mesh: &Mesh, b: i64, a_tasks: [&String; 2]) {
    let mut inbox_b = mesh
        .media_client(b, "owner", &[scope::MEDIA_MESSAGES])
        .await;
    let seen = inbox_b
        .list_callback_tasks(list(0, String::new(), CallbackTaskFilter::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert!(seen.tasks.is_empty());
    for task_id in a_tasks {
        for done in [false, true] {
            let e = inbox_b
                .set_callback_task_done(SetCallbackTaskDoneRequest {
                    task_id: task_id.clone(),
                    done,
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound);
        }
    }
    assert_eq!(mesh.count(DONE_COUNT).await, 1, "B changed nothing");
}

/// A token without `media:messages` is refused; bad input is refused naming the field and
/// changes nothing.
async fn check_refusals(mesh: &Mesh, a: i64, inbox: &mut common::Client) {
    let mut reader = mesh.media_client(a, "reader", &[scope::MEDIA_READ]).await;
    let e = reader
        .list_callback_tasks(list(0, String::new(), CallbackTaskFilter::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = inbox
        .set_callback_task_done(SetCallbackTaskDoneRequest {
            task_id: "not-a-task".into(),
            done: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("task_id"), "{}", e.message());
    for (request, field) in [
        (
            list(501, String::new(), CallbackTaskFilter::Unspecified),
            "page_size",
        ),
        (
            list(0, "zz".into(), CallbackTaskFilter::Unspecified),
            "page_token",
        ),
        (
            ListCallbackTasksRequest {
                filter: 9,
                ..Default::default()
            },
            "filter",
        ),
    ] {
        let e = inbox.list_callback_tasks(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(field), "{}", e.message());
    }
    assert_eq!(mesh.count(DONE_COUNT).await, 1);
}

/// The inbox: A lists its tasks in pages, filtered open / done, and marks one done and open
/// again; B sees none of them and cannot mark A's (NOT_FOUND, nothing changed); a token without
/// `media:messages` is refused; bad input is refused naming the field, and changes nothing.
#[tokio::test]
async fn the_inbox_lists_and_marks_tasks_and_keeps_tenants_apart() {
    let mesh = Mesh::start(backend_down(unreachable_realtime().await)).await;
    let (a, _) = mesh.tenant("inbox-a", "", false).await;
    let (b, _) = mesh.tenant("inbox-b", "", false).await;
    for n in 1..=3 {
        let (_, mut call, opened) = open(&mesh, a, n).await;
        hear_prompt(&mut call, opened).await;
        leave_message_and_hang_up(call).await;
    }
    common::eventually("three tasks", || async {
        mesh.count("SELECT count(*) FROM media.callback_tasks")
            .await
            == 3
    })
    .await;
    let mut inbox_a = mesh
        .media_client(a, "owner", &[scope::MEDIA_MESSAGES])
        .await;
    let (done_id, open_id) = check_paging_and_marking(&mut inbox_a).await;
    check_other_tenant(&mesh, b, [&done_id, &open_id]).await;
    check_refusals(&mesh, a, &mut inbox_a).await;
    let reopened = inbox_a
        .set_callback_task_done(SetCallbackTaskDoneRequest {
            task_id: done_id,
            done: false,
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert!(reopened.done_time.is_none());
    assert_eq!(mesh.count(DONE_COUNT).await, 0);
    mesh.stop().await;
}

/// A realtime backend that accepts the connection and never answers the handshake: the caller
/// hears comfort tones (about one a second, from 1 s on) while the session is being opened, and
/// the message flow once its opening times out; no dead air in between.
#[tokio::test]
async fn a_backend_that_never_opens_plays_comfort_tones_then_the_message_flow() {
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/realtime", hung.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hung.accept().await {
            conns.push(c);
        }
    });
    let mesh = Mesh::start(backend_down(url)).await;
    let (a, _) = mesh.tenant("hung", "", false).await;
    let (_, mut call, opened) = open(&mesh, a, 1).await;
    let mut arrivals = Vec::new();
    let prompt_at = loop {
        match call.next().await.expect("the call goes on") {
            Out::Audio(_) => arrivals.push(opened.elapsed()),
            Out::Clear(_) => break opened.elapsed(),
            other => panic!("unexpected {other:?} while the backend opens"),
        }
    };
    let mut gaps: Vec<Duration> = arrivals.windows(2).map(|p| p[1] - p[0]).collect();
    gaps.push(prompt_at - *arrivals.last().expect("comfort tones before the prompt"));
    let longest = gaps.iter().max().unwrap();
    assert!(
        arrivals[0] < Duration::from_millis(1500),
        "first comfort tone after {:?}",
        arrivals[0]
    );
    assert!(
        *longest <= Duration::from_millis(1100),
        "{longest:?} without audio"
    );
    assert!(
        prompt_at >= Duration::from_secs(9),
        "prompt at {prompt_at:?}"
    );
    hear_prompt(&mut call, Instant::now()).await;
    leave_message_and_hang_up(call).await;
    common::eventually("the task", || async {
        mesh.count("SELECT count(*) FROM media.callback_tasks WHERE reason = 'backend_down'")
            .await
            == 1
    })
    .await;
    held.abort();
    mesh.stop().await;
}
