//! Monthly caps: a finalised call that takes a tenant past 80 % of its package's cap queues one
//! `usage.warning` event and one owners' notice (once per tenant, month and cap); at 100 %
//! `RegisterCall` sends new inbound calls to the message flow or refuses them, per package, and
//! another tenant is unaffected.

use mesh::api::media::*;
use mesh::api::tenant::{NotifyOwnersRequest, OwnerNotice};
use prost::Message as _;
use tonic::Code;

use crate::billing::{admin, card, create_package, current_month};
use crate::common::{Svc, register, sid};

/// Puts `customer` on a new package `name` with a cap of `cap` minutes.
async fn capped(svc: &Svc, customer: i64, name: &str, cap: i64, over: OverCapAction) {
    let mut ops = admin(svc).await;
    create_package(&mut ops, name, cap, over).await;
    ops.publish_rate_card(PublishRateCardRequest {
        package: name.into(),
        rate_card: Some(card("")),
    })
    .await
    .unwrap();
    ops.assign_package(AssignPackageRequest {
        customer_id: customer,
        package: name.into(),
        effective_month: String::new(),
    })
    .await
    .unwrap();
}

/// An inbound call of `customer` that Twilio reports completed after `seconds`.
async fn ended_call(svc: &Svc, customer: i64, n: u32, seconds: i32) {
    let mut client = svc.client(customer).await;
    let call_sid = sid("CA", n);
    client
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap();
    client
        .update_call_status(UpdateCallStatusRequest {
            call_sid,
            status: CallStatus::Completed as i32,
            sequence_number: 3,
            duration_seconds: seconds,
            event_time: None,
        })
        .await
        .unwrap();
}

/// (cap notices, usage.warning events, owners' usage notices queued) of `customer`.
async fn warnings(svc: &Svc, customer: i64) -> (i64, i64, i64) {
    (
        svc.count(&format!(
            "SELECT count(*) FROM media.cap_notices WHERE customer_id = {customer}"
        ))
        .await,
        svc.count(&format!(
            "SELECT count(*) FROM media.webhook_events WHERE customer_id = {customer} \
             AND event_type = 'usage.warning'"
        ))
        .await,
        svc.count(&format!(
            "SELECT count(*) FROM media.outbox WHERE customer_id = {customer} \
             AND kind = 'notify_owners_usage'"
        ))
        .await,
    )
}

#[tokio::test]
async fn eighty_percent_warns_once_and_the_cap_sends_new_calls_to_the_message_flow() {
    let svc = Svc::start().await;
    capped(&svc, 1, "ten", 10, OverCapAction::MessageFlow).await;
    ended_call(&svc, 1, 1, 300).await;
    assert_eq!(warnings(&svc, 1).await, (0, 0, 0), "5 of 10 minutes: 50 %");
    ended_call(&svc, 1, 2, 221).await;
    assert_eq!(warnings(&svc, 1).await, (1, 1, 1), "9 of 10 minutes: 90 %");

    // The event and the notice say the month, the cap and the share; nothing about a call.
    let admin_db = svc.db.admin_client().await;
    let body: Vec<u8> = admin_db
        .query_one(
            "SELECT body FROM media.webhook_events WHERE event_type = 'usage.warning'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "usage.warning");
    assert_eq!(event["customer_id"], 1);
    assert_eq!(
        event["usage"],
        serde_json::json!({"month": current_month(), "cap": "minutes", "limit": 10, "used": 9,
                           "percent_used": 90, "over_cap": "message_flow"})
    );
    let payload: Vec<u8> = admin_db
        .query_one(
            "SELECT payload FROM media.outbox WHERE kind = 'notify_owners_usage'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let notice = NotifyOwnersRequest::decode(payload.as_slice()).unwrap();
    assert_eq!(notice.kind, OwnerNotice::UsageWarning as i32);
    assert_eq!((notice.customer_id, notice.percent_used), (1, 90));
    assert_eq!(notice.month, current_month());

    // Past 100 %: still one warning.
    ended_call(&svc, 1, 3, 60).await;
    assert_eq!(warnings(&svc, 1).await, (1, 1, 1));

    // At the cap a new inbound call is answered for the message flow (no agent), like a busy
    // one; an outbound one is refused and nothing live is stored for it.
    let mut client = svc.client(1).await;
    let answer = client
        .register_call(register(&sid("CA", 4), "+15551111111"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.answer, CallAnswer::Stream as i32);
    assert!(!answer.stream_ticket.is_empty());
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE message_flow = 'busy' AND status < 5")
            .await,
        1
    );
    let mut outbound = register(&sid("CA", 5), "+15551111111");
    outbound.direction = CallDirection::OutboundApi as i32;
    let e = client.register_call(outbound).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(
        e.metadata().get("x-neurosphere-limit").unwrap(),
        "monthly-cap"
    );
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE status < 5")
            .await,
        1,
        "only the message-flow call is live"
    );
    svc.stop().await;
}

#[tokio::test]
async fn a_refusing_package_refuses_new_calls_at_the_cap_and_other_tenants_go_on() {
    let svc = Svc::start().await;
    capped(&svc, 2, "strict", 1, OverCapAction::Refuse).await;
    ended_call(&svc, 2, 10, 45).await;
    assert_eq!(warnings(&svc, 2).await, (1, 1, 1), "1 of 1 minute");
    let mut client = svc.client(2).await;
    let e = client
        .register_call(register(&sid("CA", 11), "+15551111111"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(e.message(), "the customer's monthly minutes are used up");
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE customer_id = 2 AND (status < 5 OR message_flow IS NOT NULL)")
            .await,
        0,
        "no live call, no message place"
    );
    // Tenant 3 (no package, so no cap) and its calls are untouched by tenant 2's cap.
    let mut other = svc.client(3).await;
    let answer = other
        .register_call(register(&sid("CA", 12), "+15551111111"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.answer, CallAnswer::Stream as i32);
    assert_eq!(warnings(&svc, 3).await, (0, 0, 0));
    svc.stop().await;
}
