//! A tenant at its concurrent-call limit (issue 20): an inbound caller gets the message
//! flow instead of the busy goodbye, with no agent session (a fake Realtime server sees no
//! connection), within the caps on message-taking calls, which hold across two media-svc
//! replicas on one database; beyond them, today's refusal. Real PostgreSQL, tenant-svc,
//! memory-svc, media-svc over gRPC, and a webhook receiver verifying signatures.

use std::net::SocketAddr;
use std::time::Instant;

use mesh::api::media::*;
use mesh::identity::scope;
use tonic::Code;

use crate::common::{self, register, sid};
use crate::fakes::FakeRealtime;
use crate::messages::{backend_down, hear_prompt, leave_message_and_hang_up, open};
use crate::webhooks::{Mesh, Mode, Receiver, body_json};

/// One call at a time per tenant, whatever its tier.
fn one_call(c: media_svc::CallConfig) -> media_svc::CallConfig {
    let mut c = c;
    c.limits.concurrent_by_tier = vec![("starter".into(), 1)];
    c
}

/// Registers call `n` of `customer` on the replica at `addr` from the test caller.
async fn register_on(
    mesh: &Mesh,
    addr: SocketAddr,
    customer: i64,
    n: u32,
) -> Result<RegisterCallResponse, tonic::Status> {
    let call_sid = sid("CA", n);
    let mut client = mesh
        .media_client_on(addr, customer, &call_sid, scope::CALL_SCOPES)
        .await;
    client
        .register_call(register(&call_sid, crate::webhooks::CALLER))
        .await
        .map(tonic::Response::into_inner)
}

async fn message_flow_of(mesh: &Mesh, call_sid: &str) -> i64 {
    mesh.count(&format!(
        "SELECT count(*) FROM media.calls WHERE call_sid = '{call_sid}' AND message_flow = 'busy' \
           AND message_flow_at IS NOT NULL"
    ))
    .await
}

async fn usage_calls(client: &mut common::Client) -> i64 {
    let now = chrono::Utc::now();
    use chrono::Datelike as _;
    client
        .get_usage(GetUsageRequest {
            year: now.year(),
            month: now.month() as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .total_calls
}

/// With the first call ended, the freed slot goes to the next caller (a normal call, not a
/// message); a `<Dial>` leg at the limit is refused as before (`call-limit`, not a message).
async fn freed_slot_goes_to_a_normal_call_and_a_dial_leg_is_refused(
    mesh: &Mesh,
    a: i64,
    client: &mut common::Client,
) {
    let third = register_on(mesh, mesh.media_addr(), a, 3).await.unwrap();
    assert_eq!(third.answer, CallAnswer::Stream as i32);
    assert_eq!(
        message_flow_of(mesh, &sid("CA", 3)).await,
        0,
        "a freed slot goes to a normal call"
    );
    // Not an inbound call: the old refusal, nothing else stored for it.
    let mut dial = register(&sid("CA", 4), crate::webhooks::CALLER);
    dial.direction = CallDirection::OutboundDial as i32;
    let e = client.register_call(dial).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    let refused = mesh
        .count(&format!(
            "SELECT count(*) FROM media.calls WHERE call_sid = '{}' AND end_reason = 'call-limit' \
               AND message_flow IS NULL",
            sid("CA", 4)
        ))
        .await;
    assert_eq!(refused, 1);
}

/// The first verified `message.created` event the receiver got, as JSON.
pub(crate) async fn message_event(receiver: &Receiver) -> serde_json::Value {
    let delivered = receiver
        .wait_until("the message.created event", |all| {
            all.iter()
                .any(|d| body_json(d)["type"] == "message.created" && d.verified)
        })
        .await;
    let event = delivered
        .iter()
        .find(|d| body_json(d)["type"] == "message.created" && d.verified)
        .unwrap();
    body_json(event)
}

/// At the limit (one call), a second inbound call is answered with a stream ticket (a repeat
/// of the webhook gets the identical one), hears the message prompt with no Realtime connection
/// made, and leaves a task (reason busy) with a delivered `message.created`; it counts in
/// GetUsage. While it takes its message, the first call ends and a third call gets the agent
/// (message-taking calls never hold a normal slot). An outbound `<Dial>` leg at the limit is
/// refused as before, stored as `call-limit`.
#[tokio::test]
async fn a_busy_tenants_caller_leaves_a_message_with_no_agent_session() {
    let mut realtime = FakeRealtime::start().await;
    let receiver = Receiver::start(Mode::Verify).await;
    let url = realtime.url.clone();
    let mesh = Mesh::start(move |c| one_call(backend_down(url)(c))).await;
    let (a, secret) = mesh.tenant("busy", &receiver.url, false).await;
    receiver.set_secret(&secret);
    let mut client = mesh.media_client(a, "edge", scope::CALL_SCOPES).await;
    let first = client
        .register_call(register(&sid("CA", 1), crate::webhooks::CALLER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.answer, CallAnswer::Stream as i32);
    assert_eq!(message_flow_of(&mesh, &sid("CA", 1)).await, 0);

    let busy_sid = sid("CA", 2);
    let answered = register_on(&mesh, mesh.media_addr(), a, 2).await.unwrap();
    assert!(answered.created);
    assert_eq!(answered.answer, CallAnswer::Stream as i32);
    assert!(!answered.stream_ticket.is_empty());
    let again = register_on(&mesh, mesh.media_addr(), a, 2).await.unwrap();
    assert!(!again.created);
    assert_eq!(
        again.stream_ticket, answered.stream_ticket,
        "a repeat gets the same ticket"
    );
    assert_eq!(message_flow_of(&mesh, &busy_sid).await, 1);

    let (_, mut call, opened) = open(&mesh, a, 2).await;
    let waited = hear_prompt(&mut call, opened).await;
    eprintln!("busy call: prompt {waited:?} after the stream opened");

    // The first call ends while the busy one is still taking its message: the freed slot goes
    // to the next caller, who gets the agent.
    client
        .update_call_status(UpdateCallStatusRequest {
            call_sid: sid("CA", 1),
            status: CallStatus::Completed as i32,
            sequence_number: 9,
            ..Default::default()
        })
        .await
        .unwrap();
    let reader = mesh.media_client(a, "owner", &[scope::MEDIA_READ]).await;
    let usage_before = usage_calls(&mut reader.clone()).await;
    freed_slot_goes_to_a_normal_call_and_a_dial_leg_is_refused(&mesh, a, &mut client).await;

    leave_message_and_hang_up(call).await;
    common::eventually("the busy call's task", || async {
        mesh.count(&format!(
            "SELECT count(*) FROM media.callback_tasks WHERE reason = 'busy' AND call_sid = '{busy_sid}'"
        ))
        .await
            == 1
    })
    .await;
    let event = message_event(&receiver).await;
    assert_eq!(event["message"]["reason"], "busy");
    assert_eq!(event["message"]["call_sid"], busy_sid.as_str());
    common::eventually("GetUsage to count the busy call", || {
        let mut reader = reader.clone();
        async move { usage_calls(&mut reader).await == usage_before + 1 }
    })
    .await;
    assert!(
        realtime.conns.try_recv().is_err(),
        "no Realtime session was opened for the busy call"
    );
    mesh.stop().await;
}

/// Two media-svc replicas on one database, one call per tenant, caps of 3 message-taking calls
/// per tenant and 5 in all: twelve registrations of A and twelve of B, all at once and spread
/// over both replicas, take exactly 5 places, at most 3 each; C gets none (refused as before,
/// `call-limit`). A place held by a row older than the window (a replica that died mid-message)
/// stops counting.
#[tokio::test]
async fn message_caps_hold_across_two_replicas() {
    let caps = |c: media_svc::CallConfig| {
        let mut c = one_call(c);
        c.message_calls = (3, 5);
        c
    };
    let mut mesh = Mesh::start(caps).await;
    let second = mesh.start_replica(caps).await;
    let replicas = [mesh.media_addr(), second];
    let mut tenants = Vec::new();
    for name in ["race-a", "race-b", "race-c"] {
        let (id, _) = mesh.tenant(name, "", false).await;
        tenants.push(id);
    }
    for (i, &t) in tenants.iter().enumerate() {
        register_on(&mesh, replicas[i % 2], t, 1000 + i as u32)
            .await
            .unwrap();
    }
    let race = |customer: i64, base: u32| {
        let mesh = &mesh;
        async move {
            let attempts =
                (0..12u32).map(|i| register_on(mesh, replicas[i as usize % 2], customer, base + i));
            let answers = futures::future::join_all(attempts).await;
            let mut taken = 0;
            for answer in answers {
                match answer {
                    Ok(r) => {
                        assert_eq!(r.answer, CallAnswer::Stream as i32);
                        taken += 1;
                    }
                    Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}"),
                }
            }
            taken
        }
    };
    let busy = |customer: i64| {
        format!(
            "SELECT count(*) FROM media.calls WHERE customer_id = {customer} AND message_flow = 'busy'"
        )
    };
    // A and B race each other too: only the platform-wide lock keeps them from both taking
    // the fifth place (each tenant's own registrations queue on its call-limit lock).
    let (taken_a, taken_b) = tokio::join!(race(tenants[0], 100), race(tenants[1], 200));
    eprintln!("places taken: A {taken_a}, B {taken_b}");
    assert_eq!(taken_a + taken_b, 5, "the platform-wide cap");
    assert!(taken_a <= 3 && taken_b <= 3, "the per-tenant cap");
    assert_eq!(mesh.count(&busy(tenants[0])).await, taken_a);
    assert_eq!(mesh.count(&busy(tenants[1])).await, taken_b);
    let e = register_on(&mesh, second, tenants[2], 300)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(mesh.count(&busy(tenants[2])).await, 0);
    assert_eq!(
        mesh.count("SELECT count(*) FROM media.calls WHERE end_reason = 'call-limit'")
            .await,
        24 - 5 + 1
    );
    // A's places were taken 11 minutes ago by a replica that died: they no longer count.
    mesh.db
        .admin_client()
        .await
        .execute(
            &format!(
                "UPDATE media.calls SET message_flow_at = now() - interval '11 minutes' \
                 WHERE customer_id = {} AND message_flow = 'busy'",
                tenants[0]
            ),
            &[],
        )
        .await
        .unwrap();
    let started = Instant::now();
    let answered = register_on(&mesh, second, tenants[2], 301).await.unwrap();
    assert_eq!(answered.answer, CallAnswer::Stream as i32);
    eprintln!("registration answered busy in {:?}", started.elapsed());
    assert_eq!(mesh.count(&busy(tenants[2])).await, 1);
    mesh.stop().await;
}
