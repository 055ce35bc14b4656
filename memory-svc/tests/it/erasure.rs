//! Erasure that stays done: a post-call record of a call that began before its caller (or its
//! tenant) was erased is acknowledged and dropped, later calls are recorded, other tenants are
//! untouched; and every table of the `memory` schema is either erased or kept on purpose.

use crate::common::*;
use mesh::api::common::Speaker;
use mesh::api::memory::*;

const CALLER: &str = "+15557654321";

/// A post-call record of `CALLER` for a call that began `ago_secs` seconds ago (negative: later).
fn record(sid: u32, ago_secs: i64) -> RecordCallRequest {
    let at = chrono::Utc::now() - chrono::Duration::seconds(ago_secs);
    RecordCallRequest {
        call_sid: call_sid(sid),
        user_id: CALLER.into(),
        call_time: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }),
        duration_seconds: 60,
        turns: vec![turn(
            Speaker::Caller,
            "My name is Maggie, I have a claim.",
            0,
        )],
        transferred: false,
    }
}

async fn held(admin: &tokio_postgres::Client, customer: i64) -> i64 {
    counts_for(admin, customer, CALLER)
        .await
        .iter()
        .map(|c| c.1)
        .sum()
}

#[tokio::test]
async fn a_record_that_began_before_the_erasure_is_dropped_and_later_calls_are_kept() {
    let svc = Svc::start().await;
    let mut c = svc.client().await;
    let admin = svc.admin_sql().await;
    let (a, b) = (svc.tenant(21), svc.tenant(22));
    c.record_call(req(record(1, 600), &a)).await.unwrap();
    c.record_call(req(record(2, 600), &b)).await.unwrap();
    let b_before = fingerprint(&admin, 22).await;
    erase(&mut c, &a, CALLER).await.unwrap();
    assert_eq!(held(&admin, 21).await, 0);

    // The outbox's record of a call that began before the erasure, delivered after it.
    let late = c
        .record_call(req(record(3, 300), &a))
        .await
        .unwrap()
        .into_inner();
    assert!(late.erased && late.summary.is_none() && !late.already_recorded);
    assert_eq!(held(&admin, 21).await, 0, "nothing came back");
    // The marker holds a keyed hash and a time, never the number.
    let marker: String = admin
        .query_one(
            "SELECT subject_hash FROM memory.erasures WHERE customer_id = 21",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(marker.len(), 64);
    assert!(!marker.contains(&CALLER[1..]));

    // A call that began after the erasure is a new relationship: recorded.
    let new = c
        .record_call(req(record(4, -1), &a))
        .await
        .unwrap()
        .into_inner();
    assert!(!new.erased && new.summary.is_some());
    assert_eq!(count(&admin, "memory.call_summaries", 21).await, 1);
    // The other tenant's rows of the same number are untouched, and its records still land.
    assert_eq!(fingerprint(&admin, 22).await, b_before);
    let other = c
        .record_call(req(record(5, 300), &b))
        .await
        .unwrap()
        .into_inner();
    assert!(!other.erased);
    assert_eq!(count(&admin, "memory.call_summaries", 22).await, 2);
    svc.stop().await;
}

#[tokio::test]
async fn a_record_that_began_before_a_tenant_erasure_is_dropped() {
    let svc = Svc::start().await;
    let mut c = svc.client().await;
    let admin = svc.admin_sql().await;
    let t = svc.tenant(23);
    c.record_call(req(record(1, 600), &t)).await.unwrap();
    svc.admin()
        .await
        .erase_tenant(req(
            EraseTenantRequest { customer_id: 23 },
            &svc.tenant_eraser(),
        ))
        .await
        .unwrap();
    let late = c
        .record_call(req(record(2, 300), &t))
        .await
        .unwrap()
        .into_inner();
    assert!(late.erased);
    assert_eq!(held(&admin, 23).await, 0);
    let audit: i64 = admin
        .query_one(
            "SELECT count(*) FROM memory.audit_log WHERE customer_id = 23 AND action = 'erase_tenant'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit, 1);
    svc.stop().await;
}

/// "Anything added later": every table of the `memory` schema is erased (`store::TABLES`) or
/// kept with a reason (`store::KEPT_TABLES`); a new table in neither fails here.
#[tokio::test]
async fn every_memory_table_is_erased_or_kept_on_purpose() {
    let svc = Svc::start().await;
    let admin = svc.admin_sql().await;
    let rows = admin
        .query(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
             WHERE table_schema = 'memory' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let known: Vec<&str> = memory_svc::store::TABLES
        .iter()
        .copied()
        .chain(memory_svc::store::KEPT_TABLES.iter().map(|k| k.0))
        .collect();
    let tables: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let unknown: Vec<&String> = tables
        .iter()
        .filter(|t| !known.contains(&t.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "memory tables neither erased nor kept on purpose: {unknown:?}"
    );
    for t in known {
        assert!(
            tables.iter().any(|x| x == t),
            "{t} is listed but does not exist"
        );
    }
    // The erased tables are exactly those with a caller (`user_id`).
    for t in memory_svc::store::TABLES {
        let (schema, table) = t.split_once('.').unwrap();
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 AND column_name = 'user_id'",
                &[&schema, &table],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{t} has no user_id: how is it erased per caller?");
    }
    svc.stop().await;
}
