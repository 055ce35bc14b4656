//! One erasure of a caller across media-svc and memory-svc (real tenant-svc and memory-svc
//! in-process, real sockets): what it removes, for one tenant only, with an audit row in each
//! service; refusals change nothing; a failed second half is reported and finished by a repeat; a
//! post-call record queued or in flight never brings the caller back; and every table of the
//! `media` schema is erased or kept on purpose.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{CallStream, In, Svc, create_customer, eventually, register, sid};
use mesh::api::media::{EraseCallerRequest, EraseCallerResponse, ExportCallerRequest, StreamStop};
use mesh::api::memory::RecordCallRequest;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::auth::{AttachToken, TokenSource};
use mesh::identity::{names, scope};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::Code;

const X: &str = "+15551111111";
const Y: &str = "+15552222222";

/// A free loopback address for memory-svc, and media-svc started with it as memory-svc's URL.
async fn media_with_memory_at() -> (Svc, SocketAddr) {
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
    (svc, memory_addr)
}

/// memory-svc on `addr`, until the sender is dropped or sends true.
async fn start_memory(
    svc: &Svc,
    addr: SocketAddr,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let grpc = TcpListener::bind(addr)
        .await
        .expect("the reserved address is free");
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(memory_svc::serve(
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
    (stop, task)
}

/// Rows about one tenant, per table, in every media and memory table that holds callers.
async fn rows_of(svc: &Svc, customer: i64) -> Vec<i64> {
    let mut out = Vec::new();
    for t in [
        "media.calls",
        "media.transcript_turns",
        "media.outbox",
        "media.webhook_events",
        "memory.memories",
        "memory.call_summaries",
    ] {
        out.push(
            svc.count(&format!(
                "SELECT count(*) FROM {t} WHERE customer_id = {customer}"
            ))
            .await,
        );
    }
    out
}

/// Everything about `X` for `customer` in media-svc and memory-svc.
async fn about_x(svc: &Svc, customer: i64) -> i64 {
    let c = format!("customer_id = {customer}");
    let calls = format!("SELECT call_sid FROM media.calls WHERE {c} AND caller = '{X}'");
    let mut n = 0;
    for q in [
        format!("SELECT count(*) FROM media.calls WHERE {c} AND caller = '{X}'"),
        format!("SELECT count(*) FROM media.transcript_turns WHERE {c} AND call_sid IN ({calls})"),
        format!("SELECT count(*) FROM media.outbox WHERE {c} AND call_sid IN ({calls})"),
        format!("SELECT count(*) FROM media.callback_tasks WHERE {c} AND caller = '{X}'"),
        format!("SELECT count(*) FROM memory.memories WHERE {c} AND user_id = '{X}'"),
        format!("SELECT count(*) FROM memory.call_summaries WHERE {c} AND user_id = '{X}'"),
        format!("SELECT count(*) FROM memory.caller_profiles WHERE {c} AND user_id = '{X}'"),
    ] {
        n += svc.count(&q).await;
    }
    n
}

/// Calls, transcript turns, a queued post-call record, a pending webhook event, a callback task
/// and memories of
/// `X` (and of `Y`) for `customer`; `first` numbers the CallSids.
async fn seed(svc: &Svc, customer: i64, first: u32) {
    let mut client = svc.client(customer).await;
    for (n, from) in [(first, X), (first + 1, X), (first + 2, Y)] {
        client
            .register_call(register(&sid("CA", n), from))
            .await
            .unwrap();
    }
    let admin = svc.db.admin_client().await;
    let (c1, c2) = (sid("CA", first), sid("CA", first + 1));
    let later = "now() + interval '1 hour'";
    for sql in [
        format!(
            "INSERT INTO media.transcript_turns (customer_id, call_sid, seq, speaker, text, offset_ms) VALUES ({customer}, '{c1}', 1, 1, 'my policy is PX-1', 0)"
        ),
        format!(
            "INSERT INTO media.outbox (customer_id, kind, call_sid, payload, next_attempt_at) VALUES ({customer}, 'record_call', '{c1}', '\\x00', {later})"
        ),
        format!(
            "INSERT INTO media.webhook_events (customer_id, event_id, call_sid, body, retry_for, give_up_at, next_attempt_at) VALUES ({customer}, gen_random_uuid(), '{c2}', 'transcript', '1 day', {later}, {later})"
        ),
        format!(
            "INSERT INTO media.callback_tasks (customer_id, task_id, call_sid, caller, reason, note) VALUES ({customer}, gen_random_uuid(), '{c2}', '{X}', 'agent', 'call back about PX-1')"
        ),
        format!(
            "INSERT INTO memory.memories (customer_id, id, user_id, type, key, value, expires_at) VALUES ({customer}, gen_random_uuid(), '{X}', 'fact', 'policy', '\"PX-1\"', now() + interval '1 day'), ({customer}, gen_random_uuid(), '{Y}', 'fact', 'policy', '\"PY-2\"', now() + interval '1 day')"
        ),
    ] {
        admin.execute(&sql, &[]).await.unwrap();
    }
}

fn rows(r: &EraseCallerResponse, table: &str) -> i64 {
    r.counts
        .iter()
        .find(|c| c.table == table)
        .map_or(-1, |c| c.rows)
}

async fn audits(svc: &Svc, schema: &str, customer: i64, action: &str) -> i64 {
    svc.count(&format!(
        "SELECT count(*) FROM {schema}.audit_log WHERE customer_id = {customer} AND action = '{action}'"
    ))
    .await
}

#[tokio::test]
async fn one_erase_covers_media_and_memory_for_one_tenant_only_with_an_audit_row_in_each() {
    let (svc, memory_addr) = media_with_memory_at().await;
    let memory = start_memory(&svc, memory_addr).await;
    let a = create_customer(&svc, "sage").await;
    let b = create_customer(&svc, "alloy").await;
    seed(&svc, a, 1).await;
    seed(&svc, b, 11).await;
    let b_before = rows_of(&svc, b).await;
    let mut client = svc.client(a).await;

    // Refused before anything happens: a token without `media:erase`, a malformed number.
    let mut read_only = svc
        .client_with(svc.tenant_token(a, "t", &[scope::MEDIA_READ, scope::MEMORY_ERASE]))
        .await;
    let request = |caller: &str| EraseCallerRequest {
        caller: caller.into(),
    };
    let e = read_only.erase_caller(request(X)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = client
        .erase_caller(request("5551111111"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("`caller`"), "{}", e.message());
    assert_eq!(about_x(&svc, a).await, 6, "refusals erased nothing");
    assert_eq!(
        audits(&svc, "media", a, "erase_caller").await,
        0,
        "nor audited"
    );

    let erased = client.erase_caller(request(X)).await.unwrap().into_inner();
    assert_eq!(rows(&erased, "media.calls"), 2);
    assert_eq!(rows(&erased, "media.transcript_turns"), 1);
    assert_eq!(rows(&erased, "media.outbox"), 1);
    assert_eq!(rows(&erased, "media.webhook_events"), 1);
    assert_eq!(rows(&erased, "media.callback_tasks"), 1);
    assert_eq!(rows(&erased, "memory.memories"), 1);
    assert_eq!(about_x(&svc, a).await, 0);
    assert_eq!(
        rows_of(&svc, a).await,
        [1, 0, 0, 0, 1, 0],
        "Y's call and memory stay"
    );
    assert_eq!(
        rows_of(&svc, b).await,
        b_before,
        "the other tenant is untouched"
    );

    // One audit row in each service, the caller as a keyed hash only.
    let services: Vec<&str> = erased.audits.iter().map(|a| a.service.as_str()).collect();
    assert_eq!(services, [names::MEDIA_SVC, names::MEMORY_SVC]);
    for entry in &erased.audits {
        assert_eq!(entry.action, "erase_caller");
        assert!(entry.subject_hash.len() >= 64 && !entry.subject_hash.contains(&X[2..]));
        assert!(entry.actor.ends_with("test"), "{}", entry.actor);
    }
    assert_eq!(audits(&svc, "media", a, "erase_caller").await, 1);
    assert_eq!(audits(&svc, "memory", a, "erase_caller").await, 1);
    let stored: String = svc
        .db
        .admin_client()
        .await
        .query_one(
            &format!("SELECT subject_hash FROM media.audit_log WHERE customer_id = {a}"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, erased.audits[0].subject_hash);

    // Exports are audited too.
    let mut export = client
        .export_caller(ExportCallerRequest { caller: Y.into() })
        .await
        .unwrap()
        .into_inner();
    while export.message().await.unwrap().is_some() {}
    assert_eq!(audits(&svc, "media", a, "export_caller").await, 1);
    let _ = memory.0.send(true);
    let _ = memory.1.await;
    svc.stop().await;
}

/// A call of `X` that ends while memory-svc is down: its post-call record waits in the outbox.
async fn call_ends_with_memory_down(svc: &Svc, customer: i64, call_sid: &str) {
    let mut client = svc
        .client_with(svc.tenant_token(customer, call_sid, scope::CALL_SCOPES))
        .await;
    client.register_call(register(call_sid, X)).await.unwrap();
    let mut call = CallStream::open(&mut client, &mut svc.gateway_client().await, call_sid)
        .await
        .unwrap();
    call.audio_bytes(media_svc::audio::tone_pattern().len(), true)
        .await;
    call.send(In::Stop(StreamStop {})).await;
    while call.next().await.is_some() {}
    eventually("the record waits in the outbox", || async {
        svc.count("SELECT count(*) FROM media.outbox WHERE delivered_at IS NULL AND attempts >= 1")
            .await
            == 1
    })
    .await;
}

#[tokio::test]
async fn a_half_done_erase_says_so_a_repeat_finishes_it_and_no_queued_record_brings_the_caller_back()
 {
    let (svc, memory_addr) = media_with_memory_at().await;
    let a = create_customer(&svc, "sage").await;
    let call_sid = sid("CA", 41);
    call_ends_with_memory_down(&svc, a, &call_sid).await;
    let payload: Vec<u8> = svc
        .db
        .admin_client()
        .await
        .query_one("SELECT payload FROM media.outbox", &[])
        .await
        .unwrap()
        .get(0);
    let mut client = svc.client(a).await;
    let request = EraseCallerRequest { caller: X.into() };

    // memory-svc down: media-svc's part is done and audited, the answer says what is left.
    let e = client.erase_caller(request.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("repeat the request"),
        "{}",
        e.message()
    );
    assert_eq!(svc.count("SELECT count(*) FROM media.calls").await, 0);
    assert_eq!(
        svc.count("SELECT count(*) FROM media.outbox").await,
        0,
        "the queued record went with its call"
    );
    assert_eq!(audits(&svc, "media", a, "erase_caller").await, 1);

    // memory-svc back: the repeat finishes the erasure.
    let memory = start_memory(&svc, memory_addr).await;
    let done = client.erase_caller(request).await.unwrap().into_inner();
    assert_eq!(rows(&done, "media.calls"), 0);
    assert_eq!(audits(&svc, "memory", a, "erase_caller").await, 1);

    // The record that was in flight when the erasure happened arrives now: dropped.
    let token = svc.tenant_token(a, "media-svc", &[scope::MEMORY_WRITE]);
    let mut memory_client = MemoryServiceClient::with_interceptor(
        svc.channel_to(memory_addr).await,
        AttachToken(TokenSource::fixed(token.into())),
    );
    let late = memory_client
        .record_call(RecordCallRequest::decode(payload.as_slice()).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert!(late.erased && late.summary.is_none());
    // Several outbox rounds later, nothing about the caller exists anywhere.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(about_x(&svc, a).await, 0);
    assert_eq!(
        svc.count(&format!(
            "SELECT count(*) FROM memory.personality_averages WHERE user_id = '{X}'"
        ))
        .await,
        0
    );
    let _ = memory.0.send(true);
    let _ = memory.1.await;
    svc.stop().await;
}

/// "Anything added later": every table of the `media` schema is erased with a tenant
/// (`TENANT_TABLES`) or kept with a reason (`KEPT_TABLES`), and every one with a caller or a
/// call in it is erased with a caller (`CALLER_TABLES`).
#[tokio::test]
async fn every_media_table_is_erased_or_kept_on_purpose() {
    use media_svc::store::erase::{CALLER_TABLES, KEPT_TABLES, TENANT_TABLES};
    let svc = Svc::start().await;
    let admin = svc.db.admin_client().await;
    let tables = admin
        .query(
            "SELECT format('%I.%I', t.table_schema, t.table_name), \
                    bool_or(c.column_name IN ('caller', 'called', 'call_sid', 'user_id', 'number')) \
             FROM information_schema.tables t \
             JOIN information_schema.columns c USING (table_schema, table_name) \
             WHERE t.table_schema = 'media' AND t.table_type = 'BASE TABLE' \
             GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let kept: Vec<&str> = KEPT_TABLES.iter().map(|k| k.0).collect();
    let by_caller: Vec<&str> = CALLER_TABLES.iter().map(|c| c.0).collect();
    let mut offenders = Vec::new();
    for row in &tables {
        let (table, about_calls): (String, bool) = (row.get(0), row.get(1));
        let t = table.as_str();
        if !kept.contains(&t) && !TENANT_TABLES.contains(&t) {
            offenders.push(format!(
                "{t}: not erased with its tenant nor kept on purpose"
            ));
        }
        if about_calls && !kept.contains(&t) && !by_caller.contains(&t) {
            offenders.push(format!(
                "{t}: holds callers or calls but is not erased with a caller"
            ));
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
    for t in kept
        .iter()
        .chain(TENANT_TABLES.iter())
        .chain(by_caller.iter())
    {
        assert!(
            tables.iter().any(|r| r.get::<_, String>(0) == *t),
            "{t} is listed but does not exist"
        );
    }
    svc.stop().await;
}
