//! The retention task (issue 20) against a real tenant-svc and PostgreSQL: transcripts
//! and recordings (row, spool file, object) of calls past each tenant's own retention go, fresh
//! ones stay, another tenant's (with a
//! longer retention) are untouched, a tenant whose settings cannot be read loses nothing, and
//! while another replica holds the round's advisory lock nothing happens.

use std::time::Duration;

use media_svc::recording::{RecordingConfig, RecordingId, RecordingKind, Recordings};
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::{CallHandling, UpdateCallHandlingRequest};
use mesh::auth::{AttachToken, TokenSource};
use mesh::domain::{CallSid, CustomerId};
use mesh::identity::scope;

use crate::common::{self, Svc, create_customer, eventually, register, sid};

/// The advisory lock key of a retention round (`store::retention`).
const LOCK_KEY: i64 = 0x7265_746e;
/// A tenant tenant-svc does not know: its settings cannot be read.
const UNKNOWN: i64 = 999_999;

/// A call of `customer` created `days_old` days ago with one transcript turn.
async fn old_call(svc: &Svc, customer: i64, n: u32, days_old: i64) -> String {
    let call = sid("CA", n);
    svc.client(customer)
        .await
        .register_call(register(&call, "+15551234567"))
        .await
        .unwrap();
    let admin = svc.db.admin_client().await;
    admin
        .execute(
            "UPDATE media.calls SET created_at = now() - make_interval(days => $3) \
             WHERE customer_id = $1 AND call_sid = $2",
            &[&customer, &call, &(days_old as i32)],
        )
        .await
        .unwrap();
    turn(svc, customer, &call).await;
    call
}

async fn turn(svc: &Svc, customer: i64, call: &str) {
    svc.db
        .admin_client()
        .await
        .execute(
            "INSERT INTO media.transcript_turns (customer_id, call_sid, seq, speaker, text, offset_ms) \
             VALUES ($1, $2, 1, 1, 'my order number is 42', 0)",
            &[&customer, &call],
        )
        .await
        .unwrap();
    // And a callback task of the call's time.
    svc.db
        .admin_client()
        .await
        .execute(
            "INSERT INTO media.callback_tasks (customer_id, task_id, call_sid, caller, reason, created_at) \
             SELECT customer_id, gen_random_uuid(), call_sid, caller, 'agent', created_at \
             FROM media.calls WHERE customer_id = $1 AND call_sid = $2",
            &[&customer, &call],
        )
        .await
        .unwrap();
}

async fn tasks(svc: &Svc, customer: i64, call: &str) -> i64 {
    svc.count(&format!(
        "SELECT count(*) FROM media.callback_tasks WHERE customer_id = {customer} \
         AND call_sid = '{call}'"
    ))
    .await
}

async fn turns(svc: &Svc, customer: i64, call: &str) -> i64 {
    svc.count(&format!(
        "SELECT count(*) FROM media.transcript_turns WHERE customer_id = {customer} \
         AND call_sid = '{call}'"
    ))
    .await
}

async fn set_retention(svc: &Svc, customer: i64, days: u32) {
    let token = svc.tenant_token(customer, "owner", &[scope::TENANT_WRITE]);
    let mut client = TenantServiceClient::with_interceptor(
        svc.channel_to(svc.tenant_addr.unwrap()).await,
        AttachToken(TokenSource::fixed(token.into())),
    );
    client
        .update_call_handling(UpdateCallHandlingRequest {
            settings: Some(CallHandling {
                retention_days: days,
                ..mesh::call_handling::defaults()
            }),
        })
        .await
        .unwrap();
}

/// A one-second recording of `call`.
async fn record(rec: &Recordings, customer: i64, call: &str) -> RecordingId {
    let mut w = rec
        .start(
            CustomerId::new(customer).unwrap(),
            &CallSid::parse(call).unwrap(),
            RecordingKind::Call,
        )
        .await
        .unwrap()
        .expect("recording is on");
    for ms in (0..1000u32).step_by(20) {
        w.caller(ms, &[0x10; 160]);
    }
    w.finish().await.unwrap()
}

async fn recording_rows(svc: &Svc, id: RecordingId) -> i64 {
    svc.count(&format!(
        "SELECT count(*) FROM media.recordings WHERE id = '{id}'"
    ))
    .await
}

/// Files under `dir` whose path holds `id` (spool or store).
fn files_of(dir: &std::path::Path, id: RecordingId) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(&id.to_string()) {
                n += 1;
            }
        }
    }
    n
}

/// media-svc (a retention round every 100 ms, recording into `dir`) with tenant-svc, and a
/// recording handle on the same database, keys and folder.
async fn start(dir: &std::path::Path) -> (Svc, Recordings) {
    let config = RecordingConfig::local(dir);
    let served = config.clone();
    let svc = Svc::start_with(
        move |mut c| {
            c.retention.interval = Duration::from_millis(100);
            c.recording = served;
            c
        },
        true,
    )
    .await;
    let rec = Recordings::new(svc.db.db_for_role("media_svc").await, &config).unwrap();
    (svc, rec)
}

/// A call of a tenant tenant-svc cannot answer for, long past any retention, with a turn (a
/// copy of `a`'s `call` row under another customer id).
async fn unknown_tenant_call(svc: &Svc, a: i64, call: &str) -> String {
    let unknown = sid("CA", 5);
    svc.db
        .admin_client()
        .await
        .execute(
            "INSERT INTO media.calls (customer_id, call_sid, account_sid, called, direction, status, created_at) \
             SELECT $1, $2, account_sid, called, direction, status, now() - interval '4000 days' \
             FROM media.calls WHERE customer_id = $3 AND call_sid = $4",
            &[&UNKNOWN, &unknown, &a, &call],
        )
        .await
        .unwrap();
    turn(svc, UNKNOWN, &unknown).await;
    unknown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_transcripts_go_per_tenant_and_nothing_goes_on_a_default_or_without_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, rec) = start(dir.path()).await;
    let a = create_customer(&svc, "alloy").await;
    let b = create_customer(&svc, "echo").await;
    set_retention(&svc, a, 30).await;
    // Another replica's round holds the lock while everything is seeded.
    let holder = svc.db.admin_client().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let a_old = old_call(&svc, a, 1, 40).await;
    let a_fresh = old_call(&svc, a, 2, 10).await;
    let b_40 = old_call(&svc, b, 3, 40).await;
    let b_old = old_call(&svc, b, 4, 100).await;
    let rec_old = record(&rec, a, &a_old).await;
    let rec_fresh = record(&rec, a, &a_fresh).await;
    let rec_b40 = record(&rec, b, &b_40).await;
    let unknown = unknown_tenant_call(&svc, a, &a_old).await;

    tokio::time::sleep(Duration::from_millis(600)).await;
    for (c, call) in [(a, &a_old), (b, &b_old)] {
        assert_eq!(turns(&svc, c, call).await, 1, "the lock is held elsewhere");
    }
    assert_eq!(
        recording_rows(&svc, rec_old).await,
        1,
        "the lock is held elsewhere"
    );
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .unwrap();

    eventually(
        "A's 40-day-old and B's 100-day-old data deleted",
        || async {
            turns(&svc, a, &a_old).await == 0
                && turns(&svc, b, &b_old).await == 0
                && tasks(&svc, a, &a_old).await == 0
                && tasks(&svc, b, &b_old).await == 0
                && recording_rows(&svc, rec_old).await == 0
        },
    )
    .await;
    assert_eq!(
        files_of(dir.path(), rec_old),
        0,
        "its spool file or object too"
    );
    // A few more rounds: what must stay stays.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        turns(&svc, a, &a_fresh).await,
        1,
        "A's fresh call (10 < 30 days)"
    );
    assert_eq!(
        turns(&svc, b, &b_40).await,
        1,
        "B keeps 90 days (the default)"
    );
    assert_eq!(
        turns(&svc, UNKNOWN, &unknown).await,
        1,
        "unreadable: skipped"
    );
    for (c, call) in [(a, &a_fresh), (b, &b_40), (UNKNOWN, &unknown)] {
        assert_eq!(tasks(&svc, c, call).await, 1, "callback task kept");
    }
    for id in [rec_fresh, rec_b40] {
        assert_eq!(recording_rows(&svc, id).await, 1, "within retention");
        assert!(files_of(dir.path(), id) > 0);
    }
    // The call rows stay (usage and history); only their transcripts went.
    let calls = svc
        .count(&format!(
            "SELECT count(*) FROM media.calls WHERE customer_id IN ({a}, {b})"
        ))
        .await;
    assert_eq!(calls, 4);
    common::Svc::stop(svc).await;
}
