//! The portal's caller RPCs over real gRPC and PostgreSQL (migration V18): `ListCallers`
//! (opaque ids, masked numbers, search, pages, one tenant only), `GetCaller` by opaque id
//! (another tenant's id answers exactly like an unknown one), `GetCallSummary`; a staff token
//! (`memory:read` alone) suffices, and none of them writes anything.

use crate::common::*;
use mesh::api::common::Speaker;
use mesh::api::memory::*;
use mesh::identity::scope;
use tonic::Code;

/// Five callers of tenant 1 (the last one also a caller of tenant 2), oldest call first.
const NUMBERS: [&str; 5] = [
    "+14155550101",
    "+14155550202",
    "+447700900303",
    "+33612340404",
    "+14155550505",
];

fn call_at(sid: u32, user: &str, days_ago: i64) -> RecordCallRequest {
    let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
    RecordCallRequest {
        call_sid: call_sid(sid),
        user_id: user.into(),
        call_time: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }),
        duration_seconds: 60,
        turns: vec![
            turn(Speaker::Agent, "Hello, how can I help?", 0),
            turn(Speaker::Caller, "I would like to renew my policy.", 1200),
        ],
        transferred: false,
    }
}

async fn name(c: &mut Client, t: &str, user: &str, preferred: &str) {
    c.update_caller_profile(req(
        UpdateCallerProfileRequest {
            user_id: user.into(),
            profile: Some(CallerProfile {
                preferred_name: preferred.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["preferred_name".into()],
            }),
        },
        t,
    ))
    .await
    .unwrap();
}

/// Tenant 1: five callers with one call each (10 - n days ago), two of them named, one memory;
/// tenant 2: one call of the last number.
async fn seed(svc: &Svc) {
    let mut c = svc.client().await;
    let a = svc.tenant(1);
    let b = svc.tenant(2);
    for (n, user) in NUMBERS.iter().enumerate() {
        let n = n as u32;
        c.record_call(req(call_at(100 + n, user, 10 - i64::from(n)), &a))
            .await
            .unwrap();
    }
    c.record_call(req(call_at(200, NUMBERS[4], 1), &b))
        .await
        .unwrap();
    name(&mut c, &a, NUMBERS[0], "Margaret").await;
    name(&mut c, &a, NUMBERS[3], "Émile 50%").await;
    name(&mut c, &b, NUMBERS[4], "Tenant B's Bob").await;
    c.store_memory(req(
        StoreMemoryRequest {
            user_id: NUMBERS[0].into(),
            r#type: MemoryType::Preference as i32,
            key: "contact".into(),
            value: Some(text_value("prefers mornings")),
            ..Default::default()
        },
        &a,
    ))
    .await
    .unwrap();
}

async fn list(c: &mut Client, t: &str, r: ListCallersRequest) -> ListCallersResponse {
    c.list_callers(req(r, t)).await.unwrap().into_inner()
}

fn search(q: &str) -> ListCallersRequest {
    ListCallersRequest {
        query: q.into(),
        ..Default::default()
    }
}

fn get(id: &str, token: &str) -> tonic::Request<GetCallerRequest> {
    req(
        GetCallerRequest {
            caller_id: id.to_owned(),
        },
        token,
    )
}

fn summary_of(sid: &str, token: &str) -> tonic::Request<GetCallSummaryRequest> {
    req(
        GetCallSummaryRequest {
            call_sid: sid.to_owned(),
        },
        token,
    )
}

#[tokio::test]
async fn callers_are_listed_masked_latest_first_searched_and_paged_per_tenant() {
    let svc = Svc::start().await;
    seed(&svc).await;
    let mut c = svc.client().await;
    let staff = svc.tenant_with(1, &[scope::MEMORY_READ]);
    let admin = svc.admin_sql().await;
    let before = fingerprint(&admin, 1).await;

    let seen = check_pages(&mut c, &staff).await;
    check_search(&mut c, &staff).await;

    // Tenant 2 sees its one caller, with its own opaque id.
    let theirs = list(&mut c, &svc.tenant(2), ListCallersRequest::default()).await;
    assert_eq!(theirs.callers.len(), 1);
    assert_eq!(theirs.callers[0].preferred_name, "Tenant B's Bob");
    assert!(
        seen.iter()
            .all(|l| l.caller_id != theirs.callers[0].caller_id)
    );

    check_refusals(&mut c, &staff).await;
    let writer = svc.tenant_with(1, &[scope::MEMORY_WRITE]);
    let e = c
        .list_callers(req(ListCallersRequest::default(), &writer))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(fingerprint(&admin, 1).await, before, "reads change nothing");
    svc.stop().await;
}

/// Pages of two: 2 + 2 + 1, latest call first, no duplicates, numbers masked; returns the
/// callers in listing order.
async fn check_pages(c: &mut Client, staff: &str) -> Vec<CallerListing> {
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = ListCallersRequest {
            page_size: 2,
            page_token: token.clone(),
            query: String::new(),
        };
        let page = list(c, staff, r).await;
        pages += 1;
        seen.extend(page.callers);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let masked: Vec<&str> = seen.iter().map(|l| l.masked_number.as_str()).collect();
    assert_eq!(
        masked,
        [
            "+1 ••• ••• 0505",
            "+33 ••• ••• 0404",
            "+44 ••• ••• 0303",
            "+1 ••• ••• 0202",
            "+1 ••• ••• 0101"
        ]
    );
    let mut ids: Vec<&str> = seen.iter().map(|l| l.caller_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "five distinct opaque ids");
    for l in &seen {
        uuid::Uuid::parse_str(&l.caller_id).expect("the opaque id is a UUID");
        assert_eq!(l.total_calls, 1);
        assert!(l.last_call_time.is_some());
        assert_ne!(
            l.preferred_name, "Tenant B's Bob",
            "tenant 2's profile never shows"
        );
    }
    let listed = format!("{seen:?}");
    for n in NUMBERS {
        assert!(
            !listed.contains(&n[1..]),
            "a listing never holds a full number"
        );
    }
    seen
}

/// Search: a name part (any case, LIKE characters literal), last digits, nothing.
async fn check_search(c: &mut Client, staff: &str) {
    let r = list(c, staff, search("marg")).await;
    assert_eq!(r.callers.len(), 1);
    assert_eq!(r.callers[0].preferred_name, "Margaret");
    assert_eq!(r.callers[0].masked_number, "+1 ••• ••• 0101");
    let r = list(c, staff, search("50%")).await;
    assert_eq!(r.callers.len(), 1);
    assert_eq!(r.callers[0].preferred_name, "Émile 50%");
    assert_eq!(list(c, staff, search("%")).await.callers.len(), 1);
    assert!(list(c, staff, search("_")).await.callers.is_empty());
    let r = list(c, staff, search("0303")).await;
    assert_eq!(r.callers.len(), 1);
    assert_eq!(r.callers[0].masked_number, "+44 ••• ••• 0303");
    assert_eq!(list(c, staff, search("05")).await.callers.len(), 1);
    let middle = list(c, staff, search("41555")).await;
    assert!(
        middle.callers.is_empty(),
        "digits match the number's end only"
    );
    assert!(list(c, staff, search("Bob")).await.callers.is_empty());
}

/// Bad input is refused naming the field.
async fn check_refusals(c: &mut Client, staff: &str) {
    for (r, field) in [
        (search("7"), "query"),
        (search(&"1".repeat(16)), "query"),
        (search(&"a".repeat(101)), "query"),
        (
            ListCallersRequest {
                page_size: 201,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListCallersRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ] {
        let e = c.list_callers(req(r, staff)).await.unwrap_err();
        assert_invalid(&e, field);
    }
    assert_invalid(
        &c.get_caller(get("not-a-uuid", staff)).await.unwrap_err(),
        "caller_id",
    );
    let e = c
        .get_call_summary(summary_of("CA1", staff))
        .await
        .unwrap_err();
    assert_invalid(&e, "call_sid");
}

#[tokio::test]
async fn a_caller_is_read_by_opaque_id_and_another_tenants_id_is_not_found() {
    let svc = Svc::start().await;
    seed(&svc).await;
    let mut c = svc.client().await;
    let staff = svc.tenant_with(1, &[scope::MEMORY_READ]);
    let admin = svc.admin_sql().await;
    let (before_a, before_b) = (fingerprint(&admin, 1).await, fingerprint(&admin, 2).await);
    let audit_before = snapshot(&admin, 1).await;

    let margaret = list(&mut c, &staff, search("Margaret"))
        .await
        .callers
        .remove(0);
    let got = c
        .get_caller(get(&margaret.caller_id, &staff))
        .await
        .unwrap()
        .into_inner();
    let profile = got.profile.unwrap();
    assert_eq!(profile.user_id, NUMBERS[0]);
    assert_eq!(profile.caller_id, margaret.caller_id);
    assert_eq!(profile.preferred_name, "Margaret");
    assert_eq!(got.masked_number, "+1 ••• ••• 0101");
    assert_eq!(got.memories.len(), 1);
    assert_eq!(got.summaries.len(), 1);
    assert_eq!(got.summaries[0].call_sid, call_sid(100));

    // GetCallSummary answers with the caller's opaque id.
    let s = c
        .get_call_summary(summary_of(&call_sid(100), &staff))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.summary.unwrap().call_sid, call_sid(100));
    assert_eq!(s.caller_id, margaret.caller_id);

    // Tenant 2's caller id and call, read with tenant 1's token: the same NOT_FOUND as unknown
    // ones, nothing of tenant 2 in the answer.
    let bob = list(&mut c, &svc.tenant(2), ListCallersRequest::default())
        .await
        .callers
        .remove(0);
    let theirs = c.get_caller(get(&bob.caller_id, &staff)).await.unwrap_err();
    let random = uuid::Uuid::new_v4().to_string();
    let unknown = c.get_caller(get(&random, &staff)).await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    assert_eq!(theirs.message(), unknown.message());
    assert!(!format!("{theirs:?}").contains("Bob"));
    let theirs = c
        .get_call_summary(summary_of(&call_sid(200), &staff))
        .await
        .unwrap_err();
    let unknown = c
        .get_call_summary(summary_of(&call_sid(999), &staff))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    assert_eq!(theirs.message(), unknown.message());

    assert_eq!(
        fingerprint(&admin, 1).await,
        before_a,
        "reads change nothing"
    );
    assert_eq!(fingerprint(&admin, 2).await, before_b);
    assert_eq!(
        snapshot(&admin, 1).await,
        audit_before,
        "no audit row for reads"
    );

    // An erased caller's id finds nothing.
    erase(&mut c, &svc.tenant(1), NUMBERS[0]).await.unwrap();
    let e = c
        .get_caller(get(&margaret.caller_id, &staff))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    svc.stop().await;
}
