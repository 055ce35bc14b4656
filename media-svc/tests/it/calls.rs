//! Call records over real gRPC: registration, status ordering, listing, usage, export/erase and
//! tenant isolation (counted with the admin client before and after).

use crate::common;

use common::{Svc, register, sid};
use mesh::api::media::media_admin_service_client::MediaAdminServiceClient;
use mesh::api::media::*;
use mesh::identity::{names, scope};
use tonic::Code;

#[tokio::test]
async fn register_is_idempotent_and_other_tenants_see_an_unused_key() {
    let svc = Svc::start().await;
    let mut a = svc.client(1).await;
    let mut b = svc.client(2).await;
    let call_sid = sid("CA", 1);

    let first = a
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    let call = first.call.unwrap();
    assert_eq!(call.caller, "+15551111111");
    assert_eq!(call.status, CallStatus::Ringing as i32);
    let again = a
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.call.unwrap().create_time, call.create_time);

    // B using the same CallSid gets the answer of an unused key and its own row.
    let theirs = b
        .register_call(register(&call_sid, "anonymous"))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.created);
    assert_eq!(
        theirs.call.unwrap().caller,
        "",
        "anonymous callers are stored as no caller"
    );
    assert_eq!(svc.count("SELECT count(*) FROM media.calls").await, 2);

    // Bad input names the field and stores nothing.
    let mut bad = register(&sid("CA", 2), "+15551111111");
    bad.call_sid = "CA123".into();
    let e = a.register_call(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("call_sid"), "{}", e.message());
    let mut bad = register(&sid("CA", 2), "+15551111111");
    bad.to = "not a number".into();
    let e = a.register_call(bad).await.unwrap_err();
    assert!(e.message().contains("`to`"), "{}", e.message());
    assert_eq!(svc.count("SELECT count(*) FROM media.calls").await, 2);
    mesh::testkit::assert_rls_everywhere(&svc.db.admin_client().await).await;
    svc.stop().await;
}

fn status(call_sid: &str, s: CallStatus, seq: u32, duration: i32) -> UpdateCallStatusRequest {
    UpdateCallStatusRequest {
        call_sid: call_sid.to_owned(),
        status: s as i32,
        sequence_number: seq,
        duration_seconds: duration,
        event_time: None,
    }
}

#[tokio::test]
async fn status_callbacks_never_move_a_call_backwards() {
    let svc = Svc::start().await;
    let mut a = svc.client(1).await;
    let call_sid = sid("CA", 7);
    a.register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap();

    let apply = async |a: &mut common::Client, s, seq, d| {
        a.update_call_status(status(&call_sid, s, seq, d))
            .await
            .unwrap()
            .into_inner()
    };
    assert!(apply(&mut a, CallStatus::InProgress, 2, 0).await.applied);
    // Out of order: ringing arrives after in-progress.
    let r = apply(&mut a, CallStatus::Ringing, 1, 0).await;
    assert!(!r.applied);
    assert_eq!(r.call.unwrap().status, CallStatus::InProgress as i32);
    // Duplicate.
    assert!(!apply(&mut a, CallStatus::InProgress, 2, 0).await.applied);
    let done = apply(&mut a, CallStatus::Completed, 3, 61).await;
    assert!(done.applied);
    let call = done.call.unwrap();
    assert_eq!(call.duration_seconds, 61);
    assert!(call.end_time.is_some());
    // Final states are terminal; a repeated completed changes nothing (usage counted once).
    assert!(!apply(&mut a, CallStatus::Completed, 3, 61).await.applied);
    assert!(!apply(&mut a, CallStatus::Busy, 4, 0).await.applied);
    let now = chrono::Utc::now();
    use chrono::Datelike;
    let usage = a
        .get_usage(GetUsageRequest {
            year: now.year(),
            month: now.month() as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (usage.total_calls, usage.total_minutes, usage.total_seconds),
        (1, 2, 61)
    );

    // Unknown call and B's token on A's call: the same NOT_FOUND, nothing changes.
    let mut b = svc.client(2).await;
    let e = b
        .update_call_status(status(&call_sid, CallStatus::Canceled, 9, 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = a
        .update_call_status(status(&sid("CA", 99), CallStatus::Canceled, 9, 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE status = 5")
            .await,
        1
    );
    svc.stop().await;
}

/// A's five calls in pages of two: three pages, each call once, none of B's.
async fn check_pages(a: &mut common::Client) {
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = a
            .list_calls(ListCallsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(page.calls.into_iter().map(|c| c.call_sid));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    assert!(!seen.contains(&sid("CA", 200)), "A never sees B's calls");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "no duplicates across pages");
}

/// Filters by caller, status and time, and a page token that is not one.
async fn check_filters(a: &mut common::Client) {
    let by_caller = a
        .list_calls(ListCallsRequest {
            caller: "+15552222222".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_caller.calls.len(), 2);
    let by_status = a
        .list_calls(ListCallsRequest {
            status: CallStatus::InProgress as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_status.calls.len(), 1);
    assert_eq!(by_status.calls[0].call_sid, sid("CA", 101));
    let future = a
        .list_calls(ListCallsRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: chrono::Utc::now().timestamp() + 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(future.calls.is_empty());
    let e = a
        .list_calls(ListCallsRequest {
            page_token: "garbage!".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn list_paginates_filters_and_isolates_tenants() {
    let svc = Svc::start().await;
    let mut a = svc.client(1).await;
    let mut b = svc.client(2).await;
    for n in 0..5 {
        let from = if n % 2 == 0 {
            "+15551111111"
        } else {
            "+15552222222"
        };
        a.register_call(register(&sid("CA", 100 + n), from))
            .await
            .unwrap();
    }
    b.register_call(register(&sid("CA", 200), "+15551111111"))
        .await
        .unwrap();
    a.update_call_status(status(&sid("CA", 101), CallStatus::InProgress, 1, 0))
        .await
        .unwrap();
    let b_before = svc
        .count("SELECT count(*) FROM media.calls WHERE customer_id = 2")
        .await;

    check_pages(&mut a).await;
    check_filters(&mut a).await;
    // A cannot read B's call; the answer equals a missing call.
    let e = a
        .get_call(GetCallRequest {
            call_sid: sid("CA", 200),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e2 = a
        .get_call(GetCallRequest {
            call_sid: sid("CA", 999),
        })
        .await
        .unwrap_err();
    assert_eq!(e.message(), e2.message());
    let theirs = b
        .list_calls(ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(theirs.calls.len(), 1);
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE customer_id = 2")
            .await,
        b_before
    );
    svc.stop().await;
}

/// Exporting a caller of A returns A's two calls of that number and their one turn, not B's.
async fn check_export(a: &mut common::Client) {
    let mut export = a
        .export_caller(ExportCallerRequest {
            caller: "+15551111111".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut calls = 0;
    let mut turns = 0;
    while let Some(r) = export.message().await.unwrap() {
        match r.record.unwrap() {
            export_caller_response::Record::Call(c) => {
                assert_ne!(c.call_sid, sid("CA", 4));
                calls += 1;
            }
            export_caller_response::Record::Turn(t) => {
                assert_eq!(t.call_sid, sid("CA", 1));
                turns += 1;
            }
            other => panic!("no recording here: {other:?}"),
        }
    }
    assert_eq!((calls, turns), (2, 1));
}

/// Offboarding: tenant-svc's service token with `media:erase-tenant` erases one tenant only (B
/// keeps its `b_calls` calls) and the erasure is audited; a tenant token cannot.
async fn check_erase_tenant(svc: &Svc, b_calls: i64) {
    let client = async |token: String| {
        MediaAdminServiceClient::with_interceptor(
            svc.channel_to(svc.addr).await,
            mesh::auth::AttachToken(mesh::auth::TokenSource::fixed(token.into())),
        )
    };
    let token = svc.service_token(
        names::TENANT_SVC,
        names::MEDIA_SVC,
        &[scope::MEDIA_ERASE_TENANT],
    );
    let mut admin_client = client(token).await;
    let out = admin_client
        .erase_tenant(EraseTenantRequest { customer_id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        out.counts
            .iter()
            .find(|c| c.table == "media.calls")
            .unwrap()
            .rows,
        1
    );
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE customer_id = 1")
            .await,
        0
    );
    assert_eq!(
        svc.count(
            "SELECT count(*) FROM media.audit_log WHERE customer_id = 1 AND action = 'erase_tenant' AND actor = 'tenant-svc'"
        )
        .await,
        1
    );
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE customer_id = 2")
            .await,
        b_calls
    );
    // A tenant token cannot call the admin service.
    let mut as_tenant = MediaAdminServiceClient::with_interceptor(
        svc.channel_to(svc.addr).await,
        mesh::auth::AttachToken(mesh::auth::TokenSource::fixed(
            svc.tenant_token(2, "t", scope::TENANT_SCOPES).into(),
        )),
    );
    assert!(
        as_tenant
            .erase_tenant(EraseTenantRequest { customer_id: 2 })
            .await
            .is_err()
    );
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE customer_id = 2")
            .await,
        b_calls
    );
}

#[tokio::test]
async fn export_and_erase_one_caller_for_one_tenant_only() {
    let svc = Svc::start().await;
    let mut a = svc.client(1).await;
    let mut b = svc.client(2).await;
    a.register_call(register(&sid("CA", 1), "+15551111111"))
        .await
        .unwrap();
    a.register_call(register(&sid("CA", 2), "+15551111111"))
        .await
        .unwrap();
    a.register_call(register(&sid("CA", 3), "+15552222222"))
        .await
        .unwrap();
    b.register_call(register(&sid("CA", 4), "+15551111111"))
        .await
        .unwrap();
    let admin = svc.db.admin_client().await;
    admin
        .execute(
            "INSERT INTO media.transcript_turns (customer_id, call_sid, seq, speaker, text, offset_ms) \
             VALUES (1, $1, 1, 1, 'hello', 0), (2, $2, 1, 1, 'hi', 0)",
            &[&sid("CA", 1), &sid("CA", 4)],
        )
        .await
        .unwrap();

    check_export(&mut a).await;
    let b_calls = svc
        .count("SELECT count(*) FROM media.calls WHERE customer_id = 2")
        .await;
    let b_turns = svc
        .count("SELECT count(*) FROM media.transcript_turns WHERE customer_id = 2")
        .await;
    // memory-svc is not running here: media-svc's part is done, the answer says the rest is not
    // (`tests/it/erase.rs` covers the whole erasure).
    let half = a
        .erase_caller(EraseCallerRequest {
            caller: "+15551111111".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(half.code(), Code::Unavailable);
    assert_eq!(
        svc.count("SELECT count(*) FROM media.transcript_turns WHERE customer_id = 1")
            .await,
        0
    );
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE customer_id = 1")
            .await,
        1
    );
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE customer_id = 2")
            .await,
        b_calls
    );
    assert_eq!(
        svc.count("SELECT count(*) FROM media.transcript_turns WHERE customer_id = 2")
            .await,
        b_turns
    );

    // A token without the erase scope is refused before the handler; nothing changes.
    let mut read_only = svc
        .client_with(svc.tenant_token(1, "t", &[scope::MEDIA_READ]))
        .await;
    let e = read_only
        .erase_caller(EraseCallerRequest {
            caller: "+15552222222".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE customer_id = 1")
            .await,
        1
    );

    check_erase_tenant(&svc, b_calls).await;
    svc.stop().await;
}

/// A statement cut by the statement timeout answers DEADLINE_EXCEEDED, as in every service (it
/// was INTERNAL here), with the policy's message and nothing of the SQL.
#[tokio::test]
async fn a_statement_timeout_is_deadline_exceeded() {
    let svc = Svc::start_with_statement_timeout(std::time::Duration::from_millis(300)).await;
    let mut a = svc.client(1).await;
    a.register_call(register(&sid("CA", 1), "+15551111111"))
        .await
        .unwrap();
    // The calls table is locked: the read waits until the timeout cancels it.
    let mut admin = svc.db.admin_client().await;
    let lock = admin.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE media.calls IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let e = a
        .get_call(GetCallRequest {
            call_sid: sid("CA", 1),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{}", e.message());
    assert_eq!(e.message(), "the request took too long");
    lock.rollback().await.unwrap();
    a.get_call(GetCallRequest {
        call_sid: sid("CA", 1),
    })
    .await
    .expect("answered once the lock is gone");
    svc.stop().await;
}
