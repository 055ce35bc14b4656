//! Tenant isolation over real gRPC and real PostgreSQL (row-level security, migration V3).
use crate::common::*;
use mesh::api::common::Speaker;
use mesh::api::memory::*;
use tonic::Code;

const CALLER: &str = "+15551111111";

fn store(user: &str, key: &str, value: &str) -> StoreMemoryRequest {
    StoreMemoryRequest {
        user_id: user.into(),
        r#type: MemoryType::Person as i32,
        key: key.into(),
        value: Some(text_value(value)),
        ..Default::default()
    }
}

fn values(memories: &[Memory]) -> Vec<String> {
    memories
        .iter()
        .map(|m| match &m.value.as_ref().unwrap().kind {
            Some(prost_types::value::Kind::StringValue(s)) => s.clone(),
            other => panic!("unexpected value {other:?}"),
        })
        .collect()
}

/// The old plan's test, as written there: Peterson (customer 1) and Smith (customer 2) store a
/// memory for the same caller; each sees only its own; Peterson's token with `customer_id: 2`
/// (requests have no such field, so it travels as metadata) still acts for Peterson, and the
/// response names the tenant it acted for.
#[tokio::test]
async fn peterson_and_smith_see_only_their_own_caller_memory() {
    let svc = Svc::start().await;
    let mut c = svc.client().await;
    let peterson = svc.tenant(1);
    let smith = svc.tenant(2);

    let r = c
        .store_memory(req(
            store(CALLER, "client", "Peterson client John"),
            &peterson,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.customer_id, 1);
    let r = c
        .store_memory(req(store(CALLER, "client", "Smith client Jane"), &smith))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.customer_id, 2);

    let list = |token: &str| req(list_all(CALLER), token);
    let p = c.list_memories(list(&peterson)).await.unwrap().into_inner();
    assert_eq!(values(&p.memories), ["Peterson client John"]);
    assert_eq!(p.customer_id, 1);
    let s = c.list_memories(list(&smith)).await.unwrap().into_inner();
    assert_eq!(values(&s.memories), ["Smith client Jane"]);
    assert_eq!(s.customer_id, 2);

    // Spoofed tenant: Peterson's token plus `customer_id: 2` (metadata; the body has no such
    // field). Ignored: Peterson's data, and the response says customer 1.
    let admin = svc.admin_sql().await;
    let smith_before = fingerprint(&admin, 2).await;
    let mut spoof = list(&peterson);
    spoof
        .metadata_mut()
        .insert("x-customer-id", "2".parse().unwrap());
    spoof
        .metadata_mut()
        .insert("customer_id", "2".parse().unwrap());
    let r = c.list_memories(spoof).await.unwrap().into_inner();
    assert_eq!(values(&r.memories), ["Peterson client John"]);
    assert_eq!(r.customer_id, 1);

    let mut spoof = req(store(CALLER, "client", "written by Peterson"), &peterson);
    spoof
        .metadata_mut()
        .insert("x-customer-id", "2".parse().unwrap());
    let r = c.store_memory(spoof).await.unwrap().into_inner();
    assert_eq!(r.customer_id, 1);
    let mut spoof = req(
        GetEnrichedContextRequest {
            user_id: CALLER.into(),
            num_summaries: None,
        },
        &peterson,
    );
    spoof
        .metadata_mut()
        .insert("x-customer-id", "2".parse().unwrap());
    let ctx = c.get_enriched_context(spoof).await.unwrap().into_inner();
    assert_eq!(ctx.customer_id, 1);
    assert!(ctx.rendered_text.contains("Peterson client John"));
    assert!(!ctx.rendered_text.contains("Smith"));
    assert_eq!(
        fingerprint(&admin, 2).await,
        smith_before,
        "Smith's rows changed"
    );
    assert_eq!(count(&admin, "memory.memories", 1).await, 2);
    svc.stop().await;
}

/// Gives tenant `customer` a full set of rows for CALLER: a memory, a recorded call (summary,
/// metrics, profile, averages). Returns the memory id.
async fn seed(c: &mut Client, token: &str, sid: u32, words: &str) -> String {
    let m = c
        .store_memory(req(store(CALLER, "note", words), token))
        .await
        .unwrap()
        .into_inner()
        .memory
        .unwrap();
    c.record_call(req(
        RecordCallRequest {
            call_sid: call_sid(sid),
            user_id: CALLER.into(),
            call_time: None,
            duration_seconds: 60,
            turns: vec![
                turn(Speaker::Agent, "Hello, how can I help?", 0),
                turn(Speaker::Caller, words, 1000),
            ],
            transferred: false,
        },
        token,
    ))
    .await
    .unwrap();
    m.id
}

/// A's reads of CALLER: nothing of B's.
async fn assert_reads_see_nothing(c: &mut Client, a: &str) {
    let l = list(c, a, list_all(CALLER)).await;
    assert!(l.memories.is_empty());
    let e = c
        .get_caller_profile(req(
            GetCallerProfileRequest {
                user_id: CALLER.into(),
            },
            a,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let ctx = context(c, a, CALLER, Some(20)).await;
    assert!(ctx.profile.is_none() && ctx.personality.is_none());
    assert!(ctx.recent_summaries.is_empty() && ctx.memories.is_empty());
    assert!(!ctx.has_personality_data);
    assert!(!ctx.rendered_text.contains("Bravo"));
    assert!(search(c, a, CALLER, "claim", 0).await.is_empty());
    assert!(
        export_all(c, a, CALLER).await.is_empty(),
        "A exported B's rows"
    );
}

/// A's writes about CALLER and B's memory `b_memory`: B's memory id is "not found" for A exactly
/// like an unknown id; a profile update and B's CallSid make A's own rows.
async fn assert_writes_stay_in_a(c: &mut Client, a: &str, b_memory: &str) {
    let delete = |memory_id: String| req(DeleteMemoryRequest { memory_id }, a);
    let e = c
        .delete_memory(delete(b_memory.to_owned()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let unknown = c
        .delete_memory(delete(uuid::Uuid::new_v4().to_string()))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.message()), (unknown.code(), unknown.message()));

    // A profile update for the same number creates A's own profile, never touches B's.
    let p = c
        .update_caller_profile(req(
            UpdateCallerProfileRequest {
                user_id: CALLER.into(),
                profile: Some(CallerProfile {
                    preferred_name: "Alpha".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["preferred_name".into()],
                }),
            },
            a,
        ))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(p.total_calls, 0, "A sees B's call count");

    // The same CallSid B used: A gets a fresh recording (same answer as an unused sid), and B's
    // summary is untouched.
    let r = c
        .record_call(req(
            RecordCallRequest {
                call_sid: call_sid(1),
                user_id: CALLER.into(),
                duration_seconds: 5,
                turns: vec![turn(Speaker::Caller, "Alpha call", 0)],
                ..Default::default()
            },
            a,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.already_recorded);
    assert!(!r.summary.unwrap().summary.contains("Bravo"));
}

/// Every RPC, with tenant A's token, against rows only tenant B has: A reads nothing of B's,
/// changes nothing of B's, erases nothing of B's; B's rows are byte-for-byte unchanged.
#[tokio::test]
async fn no_rpc_reaches_another_tenants_rows() {
    let svc = Svc::start().await;
    let mut c = svc.client().await;
    let a = svc.tenant(10);
    let b = svc.tenant(20);
    let b_memory = seed(&mut c, &b, 1, "Bravo secret about the claim for Jane").await;
    let admin = svc.admin_sql().await;
    let b_before = fingerprint(&admin, 20).await;
    let b_counts = snapshot(&admin, 20).await;
    assert!(
        b_counts.iter().take(5).all(|(_, n)| *n == 1),
        "{b_counts:?}"
    );

    assert_reads_see_nothing(&mut c, &a).await;
    assert_writes_stay_in_a(&mut c, &a, &b_memory).await;

    // Erase for A: counts only A's rows, B's rows for the same number stay.
    let erased = erase(&mut c, &a, CALLER).await.unwrap();
    let total: i64 = erased.counts.iter().map(|c| c.rows).sum();
    assert_eq!(
        total, 4,
        "A had a profile, a summary, metrics and averages: {:?}",
        erased.counts
    );
    assert_eq!(
        counts_for(&admin, 10, CALLER)
            .await
            .iter()
            .map(|c| c.1)
            .sum::<i64>(),
        0
    );

    assert_eq!(fingerprint(&admin, 20).await, b_before, "B's rows changed");
    assert_eq!(
        snapshot(&admin, 20).await,
        b_counts,
        "B's row counts changed"
    );
    svc.stop().await;
}

/// Offboarding A (EraseTenant) removes A's rows only.
#[tokio::test]
async fn erase_tenant_leaves_other_tenants_intact() {
    let svc = Svc::start().await;
    let mut c = svc.client().await;
    let a = svc.tenant(31);
    let b = svc.tenant(32);
    seed(&mut c, &a, 7, "alpha words").await;
    seed(&mut c, &b, 7, "bravo words").await;
    let admin = svc.admin_sql().await;
    let b_before = fingerprint(&admin, 32).await;

    // A tenant token cannot call the admin API.
    let mut adm = svc.admin().await;
    let e = adm
        .erase_tenant(req(EraseTenantRequest { customer_id: 31 }, &a))
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::Unauthenticated | Code::PermissionDenied),
        "{e:?}"
    );
    assert_eq!(count(&admin, "memory.memories", 31).await, 1);

    let r = adm
        .erase_tenant(req(
            EraseTenantRequest { customer_id: 31 },
            &svc.tenant_eraser(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.counts.iter().map(|c| c.rows).sum::<i64>(), 5);
    for t in TABLES {
        assert_eq!(count(&admin, t, 31).await, 0, "{t}");
    }
    let audits: i64 = admin
        .query_one(
            "SELECT count(*) FROM memory.audit_log WHERE customer_id = 31 AND action = 'erase_tenant'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audits, 1);
    assert_eq!(fingerprint(&admin, 32).await, b_before);

    let e = adm
        .erase_tenant(req(
            EraseTenantRequest { customer_id: 0 },
            &svc.tenant_eraser(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("customer_id"));
    svc.stop().await;
}

/// The catalog check passes with memory-svc's tables; the service role without tenant context
/// sees nothing (fails loudly), and with context sees one tenant even without a WHERE.
#[tokio::test]
async fn rls_is_enabled_forced_and_fails_closed() {
    let svc = Svc::start().await;
    let mut c = svc.client().await;
    seed(&mut c, &svc.tenant(41), 3, "one").await;
    seed(&mut c, &svc.tenant(42), 3, "two").await;
    let admin = svc.admin_sql().await;
    mesh::testkit::assert_rls_everywhere(&admin).await;

    let db = svc.db.db_for_role("memory_svc").await;
    for t in TABLES.iter().copied().chain(["memory.audit_log"]) {
        let r = db
            .service_tx(async |tx| tx.query(&format!("SELECT * FROM {t}"), &[]).await)
            .await;
        let err = r.expect_err("no tenant context must fail");
        assert!(err.is_insufficient_privilege(), "{t}: {err}");

        let customer = mesh::domain::CustomerId::new(41).unwrap();
        let ids: Vec<i64> = db
            .tenant_tx(customer, async |tx| {
                Ok::<_, mesh::db::DbError>(
                    tx.query(&format!("SELECT customer_id FROM {t}"), &[])
                        .await?
                        .iter()
                        .map(|r| r.get(0))
                        .collect(),
                )
            })
            .await
            .unwrap();
        assert!(ids.iter().all(|id| *id == 41), "{t}: {ids:?}");
    }

    // Writing another tenant's customer_id under A's context fails; B unchanged.
    let before = fingerprint(&admin, 42).await;
    let customer = mesh::domain::CustomerId::new(41).unwrap();
    let r = db
        .tenant_tx(customer, async |tx| {
            tx.execute(
                "INSERT INTO memory.memories (customer_id, id, user_id, type, key, value, expires_at) \
                 VALUES (42, gen_random_uuid(), '+15551111111', 'fact', 'k', '1', now() + interval '1 day')",
                &[],
            )
            .await?;
            Ok::<_, mesh::db::DbError>(())
        })
        .await;
    assert!(r.is_err());
    let moved = db
        .tenant_tx(customer, async |tx| {
            Ok::<_, mesh::db::DbError>(
                tx.execute("UPDATE memory.caller_profiles SET customer_id = 42", &[])
                    .await,
            )
        })
        .await
        .unwrap();
    assert!(moved.is_err(), "moving a row to another tenant must fail");
    assert_eq!(fingerprint(&admin, 42).await, before);
    svc.stop().await;
}
