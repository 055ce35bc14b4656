//! memory-svc down during a call: the call completes; once memory-svc is back, the outbox
//! delivers the record, exactly once (a real tenant-svc issues the tokens, a real memory-svc
//! records the call).

use crate::common;

use std::time::Duration;

use common::{CallStream, In, Svc, create_customer, eventually, register, sid};
use mesh::api::media::StreamStop;
use mesh::identity::{names, scope};
use tokio::net::TcpListener;

#[tokio::test]
async fn post_call_record_waits_for_memory_svc_and_lands_once() {
    // Reserve an address for memory-svc, then leave it closed: memory-svc is "down".
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let memory_addr = reserved.local_addr().unwrap();
    drop(reserved);
    let svc = Svc::start_with(
        move |mut c| {
            c.memory_svc_url = format!("http://{memory_addr}");
            c.outbox.poll_interval = Duration::from_millis(100);
            c.outbox.base_backoff = Duration::from_millis(100);
            c.outbox.max_backoff = Duration::from_millis(300);
            c
        },
        true,
    )
    .await;
    let customer = create_customer(&svc, "sage").await;
    let call_sid = sid("CA", 31);
    let mut client = svc
        .client_with(svc.tenant_token(customer, &call_sid, scope::CALL_SCOPES))
        .await;
    client
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap();
    let mut call = CallStream::open(&mut client, &mut svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    call.audio_bytes(media_svc::audio::tone_pattern().len(), true)
        .await;
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}

    let undelivered = "SELECT count(*) FROM media.outbox WHERE delivered_at IS NULL AND dead_at IS NULL AND attempts >= 2";
    eventually("retries while memory-svc is down", || async {
        svc.count(undelivered).await == 1
    })
    .await;

    // memory-svc comes back on its address.
    let grpc = TcpListener::bind(memory_addr)
        .await
        .expect("the reserved address is free");
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let memory = tokio::spawn(memory_svc::serve(
        memory_svc::Deps {
            db: svc.db.db_for_role("memory_svc").await,
            identity: svc.keys.identity(names::MEMORY_SVC),
        },
        mesh::server::Listeners::new(grpc, admin, Duration::from_secs(2)),
        async move {
            let mut s = stopped;
            let _ = s.wait_for(|v| *v).await;
        },
    ));
    eventually("delivery once memory-svc is back", || async {
        svc.count("SELECT count(*) FROM media.outbox WHERE delivered_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    let summaries = format!(
        "SELECT count(*) FROM memory.call_summaries WHERE customer_id = {customer} AND call_sid = '{call_sid}'"
    );
    assert_eq!(svc.count(&summaries).await, 1);
    // Several more worker rounds: nothing is delivered again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(svc.count(&summaries).await, 1);
    assert_eq!(
        svc.count("SELECT count(*) FROM media.outbox WHERE delivered_at IS NULL")
            .await,
        0
    );
    let _ = stop.send(true);
    let _ = memory.await;
    svc.stop().await;
}
