//! Full simulated calls end to end over real sockets: signed webhook -> TwiML -> Media Streams
//! WebSocket -> gateway -> media-svc (`StreamCall`, local backend) -> audio back to the
//! simulated Twilio side. Two tenants call at once; each hears its own greeting and its call
//! record and transcript land in its own tenant only.

use std::time::Duration;

use e2e::{ACCOUNT_SID, DemoTenant, Mesh, with_token};
use gateway::sim::{self, SimCall};
use mesh::api::common::Speaker;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::media::{GetCallRequest, ListCallsRequest};
use mesh::identity::scope;

fn sim_call(mesh: &Mesh, tenant: &DemoTenant, n: u32, from: &str) -> SimCall {
    SimCall {
        gateway_addr: mesh.gateway.main.to_string(),
        public_base_url: mesh.public_base_url.clone(),
        auth_token: mesh.twilio_auth_token.clone(),
        account_sid: ACCOUNT_SID.into(),
        call_sid: format!("CA{n:032x}"),
        from: from.into(),
        to: tenant.number.into(),
        caller_audio: sim::voice_like(3.0),
        duration: Duration::from_secs(4),
        direction: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_call_at_once_and_each_hears_and_keeps_its_own_call() {
    let mesh = Mesh::start().await;
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    let p_call = sim_call(&mesh, &peterson, 1, "+15551111111");
    let s_call = sim_call(&mesh, &smith, 2, "+15551111111");
    let (p, s) = tokio::join!(sim::run(&p_call), sim::run(&s_call));
    let (p, s) = (p.expect("Peterson call"), s.expect("Smith call"));
    for (name, r) in [("Peterson", &p), ("Smith", &s)] {
        assert!(r.connected, "{name}: {}", r.twiml);
        assert!(r.frames_sent >= 150, "{name}: sent {}", r.frames_sent);
        assert!(r.frames_received > 0, "{name}: no agent audio");
        assert!(
            sim::is_audible(&r.agent_audio),
            "{name}: agent audio is silent"
        );
        assert!(r.marks > 0, "{name}: no marks echoed");
        assert!(
            r.first_audio_after
                .is_some_and(|d| d < Duration::from_secs(2)),
            "{name}: greeting took {:?}",
            r.first_audio_after
        );
    }

    // The records, read back through media-svc with each tenant's own token.
    for (tenant, call, mine, other, foreign) in [
        (
            &peterson,
            &p_call,
            "Peterson",
            "Smith Insurance Agency",
            &s_call,
        ),
        (
            &smith,
            &s_call,
            "Smith Insurance Agency",
            "Peterson",
            &p_call,
        ),
    ] {
        own_record_only(&mesh, tenant, call, [mine, other], foreign).await;
    }
}

/// `tenant` reads back its own `call` (its greeting `mine`, never `other`'s) and lists only it;
/// the `foreign` call is NOT_FOUND with its token.
async fn own_record_only(
    mesh: &Mesh,
    tenant: &DemoTenant,
    call: &SimCall,
    [mine, other]: [&str; 2],
    foreign: &SimCall,
) {
    let mut media = CallServiceClient::new(mesh.channel(mesh.media).await);
    let token = mesh.tenant_token(tenant.id, &[scope::MEDIA_READ]);
    // The call is finalised asynchronously after the stream ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        let got = media
            .get_call(with_token(
                GetCallRequest {
                    call_sid: call.call_sid.clone(),
                },
                &token,
            ))
            .await
            .expect("own call readable")
            .into_inner();
        if got.call.as_ref().is_some_and(|c| c.end_time.is_some())
            || tokio::time::Instant::now() > deadline
        {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let record = got.call.expect("call record");
    assert_eq!(record.caller, "+15551111111");
    assert_eq!(record.called, tenant.number);
    let agent_text: String = got
        .turns
        .iter()
        .filter(|t| t.speaker == Speaker::Agent as i32)
        .map(|t| t.text.clone())
        .collect();
    assert!(
        agent_text.contains(mine),
        "{mine} greeting missing from {agent_text:?}"
    );
    assert!(
        !agent_text.contains(other),
        "{other} leaked into {agent_text:?}"
    );
    assert!(
        got.turns
            .iter()
            .any(|t| t.speaker == Speaker::Caller as i32),
        "no caller turn: {:?}",
        got.turns
    );

    let list = media
        .list_calls(with_token(ListCallsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.calls.len(),
        1,
        "{mine} sees {} calls",
        list.calls.len()
    );
    assert_eq!(list.calls[0].call_sid, call.call_sid);
    // The other tenant's call is not found with this token.
    let err = media
        .get_call(with_token(
            GetCallRequest {
                call_sid: foreign.call_sid.clone(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn a_call_to_an_unknown_number_is_told_so_and_not_connected() {
    let mesh = Mesh::start().await;
    let (peterson, _) = mesh.seed_demo_tenants().await;
    let mut call = sim_call(&mesh, &peterson, 3, "anonymous");
    call.to = "+14155550199".into();
    let r = sim::run(&call).await.unwrap();
    assert!(!r.connected);
    assert!(
        r.said.iter().any(|s| s.contains("not available")),
        "{:?}",
        r.said
    );
}
