//! The call's answer is decided once, and what the TwiML carries opens this call's stream and
//! nothing else: `RegisterCall` answers a repeat with the identical stream ticket (or "ended");
//! `OpenStream` takes only the gateway's service token and a valid, unexpired ticket for the
//! very call and account, binds the first StreamSid and refuses any other; `StreamCall` takes
//! only a grant for its call and stream, once.

use crate::common;

use common::{CallStream, In, Out, Svc, register, sid, silent_frame, voiced_frame};
use mesh::api::media::*;
use mesh::auth::StreamTicket;
use mesh::domain::{AccountSid, CallSid, CustomerId};
use mesh::identity::{names, scope};
use tonic::Code;

async fn tenant_client(svc: &Svc, customer: i64, call_sid: &str) -> common::Client {
    svc.client_with(svc.tenant_token(customer, call_sid, scope::CALL_SCOPES))
        .await
}

fn open_request(ticket: &str, call_sid: &str, stream: u32) -> OpenStreamRequest {
    OpenStreamRequest {
        stream_ticket: ticket.to_owned(),
        call_sid: call_sid.to_owned(),
        account_sid: sid("AC", 1),
        stream_sid: sid("MZ", stream),
    }
}

/// The JSON payload of a compact JWS, decoded.
fn payload(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).expect("a compact JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_call_is_answered_once_with_the_same_ticket_and_with_hang_up_once_it_ended() {
    let svc = Svc::start().await;
    let call_sid = sid("CA", 1);
    let mut tenant = tenant_client(&svc, 1, &call_sid).await;
    let first = tenant
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    assert_eq!(first.answer(), CallAnswer::Stream);
    let claims = payload(&first.stream_ticket);
    assert_eq!(claims["sub"], call_sid.as_str());
    assert_eq!(claims["acct"], sid("AC", 1).as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    assert!(
        claims.get("scope").is_none(),
        "a ticket grants no scope: {claims}"
    );

    // Twilio's retry, a replay, a second later: the identical ticket (its time is the call's
    // first answer, not the replay's), nothing registered again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = tenant
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.answer(), CallAnswer::Stream);
    assert_eq!(again.stream_ticket, first.stream_ticket);

    // Once the call ended: "hang up", and no ticket at all.
    tenant
        .update_call_status(UpdateCallStatusRequest {
            call_sid: call_sid.clone(),
            status: CallStatus::Completed as i32,
            sequence_number: 3,
            duration_seconds: 5,
            event_time: None,
        })
        .await
        .unwrap();
    let after = tenant
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.answer(), CallAnswer::Ended);
    assert!(after.stream_ticket.is_empty());
    assert_eq!(svc.count("SELECT count(*) FROM media.calls").await, 1);
    svc.stop().await;
}

/// A tenant token cannot open streams at all, even with a valid ticket; nor can another
/// service's key claiming the gateway's scope.
async fn only_the_gateway_opens_streams(
    svc: &Svc,
    tenant: &mut common::Client,
    ticket: &str,
    call_sid: &str,
) {
    let e = tenant
        .open_stream(open_request(ticket, call_sid, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    for issuer in [names::MEMORY_SVC, names::TENANT_SVC, names::OPERATOR] {
        let mut impostor = svc
            .client_with(svc.service_token(
                issuer,
                names::MEDIA_SVC,
                &[scope::MEDIA_STREAM_OPEN, scope::MEDIA_STREAM],
            ))
            .await;
        let e = impostor
            .open_stream(open_request(ticket, call_sid, 1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{issuer}: {e:?}");
    }
}

#[tokio::test]
async fn a_ticket_opens_only_its_own_call_and_only_for_two_minutes() {
    let svc = Svc::start().await;
    let (a, b) = (sid("CA", 0xa), sid("CA", 0xb));
    let mut tenant = tenant_client(&svc, 1, &a).await;
    let ticket_a = tenant
        .register_call(register(&a, "+15551111111"))
        .await
        .unwrap()
        .into_inner()
        .stream_ticket;
    tenant
        .register_call(register(&b, "+15552222222"))
        .await
        .unwrap();
    let mut gateway = svc.gateway_client().await;

    // Call A's ticket for call B, or for another account: not its call.
    let e = gateway
        .open_stream(open_request(&ticket_a, &b, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let mut other_account = open_request(&ticket_a, &a, 1);
    other_account.account_sid = sid("AC", 2);
    let e = gateway.open_stream(other_account).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // A ticket for call A minted 150 s ago (media-svc's own key): expired. One signed by
    // another service's trusted key, a tenant token, a tampered ticket: not tickets at all.
    let ticket = |identity: &str, issued_at: i64| {
        svc.keys
            .identity(identity)
            .stream_credentials()
            .ticket(&StreamTicket {
                customer_id: CustomerId::new(1).unwrap(),
                call_sid: CallSid::parse(&a).unwrap(),
                account_sid: AccountSid::parse(&sid("AC", 1)).unwrap(),
                issued_at,
            })
            .unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    for (what, bad) in [
        ("expired", ticket(names::MEDIA_SVC, now - 150)),
        ("signed by the gateway", ticket(names::GATEWAY, now)),
        ("signed by tenant-svc", ticket(names::TENANT_SVC, now)),
        (
            "a tenant token",
            svc.tenant_token(1, &a, scope::TENANT_SCOPES),
        ),
        ("tampered", format!("{ticket_a}x")),
        ("empty", String::new()),
    ] {
        let e = gateway
            .open_stream(open_request(&bad, &a, 1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{what}: {e:?}");
    }
    only_the_gateway_opens_streams(&svc, &mut tenant, &ticket_a, &a).await;
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE stream_sid IS NOT NULL")
            .await,
        0,
        "a refused ticket bound nothing"
    );

    // The ticket itself opens its call.
    let opened = gateway
        .open_stream(open_request(&ticket_a, &a, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.customer_id, 1);
    assert!(!opened.stream_grant.is_empty());
    svc.stop().await;
}

/// Speech then silence; the local backend replays the speech.
async fn speak_and_hear_it_back(call: &mut CallStream, ts: u32) {
    let mut t = ts;
    for _ in 0..20 {
        call.audio(voiced_frame(), t).await;
        t += 20;
    }
    for _ in 0..20 {
        call.audio(silent_frame(), t).await;
        t += 20;
    }
    let replay = call.audio_bytes(20 * 160, true).await;
    assert_eq!(replay.len(), 20 * 160);
}

#[tokio::test]
async fn a_second_stream_is_refused_before_any_audio_and_the_first_goes_on() {
    let svc = Svc::start().await;
    let call_sid = sid("CA", 0x51);
    let mut tenant = tenant_client(&svc, 1, &call_sid).await;
    tenant
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap();
    let mut gateway = svc.gateway_client().await;
    let mut call = CallStream::open(&mut tenant, &mut gateway, &call_sid)
        .await
        .unwrap();
    let tone = media_svc::audio::tone_pattern();
    call.audio_bytes(tone.len(), true).await;
    let Some(Out::Mark(last)) = call.next().await else {
        panic!("a mark follows the greeting")
    };
    call.send(In::Mark(MarkPlayed { name: last.name })).await;
    let ticket = tenant
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap()
        .into_inner()
        .stream_ticket;

    // Another StreamSid with the call's ticket (a replayed `start`): refused, nothing bound.
    let e = gateway
        .open_stream(open_request(&ticket, &call_sid, 2))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // The same StreamSid again (the edge retrying) gets a grant, but the call streams once.
    let grant = gateway
        .open_stream(open_request(&ticket, &call_sid, 1))
        .await
        .unwrap()
        .into_inner()
        .stream_grant;
    let e = CallStream::open_granted(&mut gateway, &call_sid, &sid("MZ", 1), &grant)
        .await
        .err()
        .expect("a second start of the call is refused");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // A grant presented for another stream, or none: refused.
    let e = CallStream::open_granted(&mut gateway, &call_sid, &sid("MZ", 2), &grant)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = CallStream::open_granted(&mut gateway, &call_sid, &sid("MZ", 1), "")
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // A tenant token cannot stream, even with the grant.
    let e = CallStream::open_granted(&mut tenant, &call_sid, &sid("MZ", 1), &grant)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // The first stream goes on untouched.
    speak_and_hear_it_back(&mut call, 1000).await;
    call.send(In::Stop(StreamStop {})).await;
    while let Some(ev) = call.next().await {
        assert!(matches!(ev, Out::Audio(_) | Out::Mark(_)), "{ev:?}");
    }
    let row = svc
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT stream_sid, end_reason FROM media.calls WHERE call_sid = $1",
            &[&call_sid],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), sid("MZ", 1));
    assert_eq!(row.get::<_, String>(1), "caller-hangup");
    svc.stop().await;
}
