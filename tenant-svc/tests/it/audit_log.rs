//! `TeamService.ListAuditEvents`: the tenant's audit log merged from tenant-svc's own rows and
//! memory-svc's and media-svc's export and erasure rows (real services over real gRPC, one
//! database), newest first with ties in source order, paged with a cursor, never another
//! tenant's rows; UNAVAILABLE naming a service that cannot be read.

use mesh::api::memory::ListAuditEntriesRequest as MemoryListAudit;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant::team_service_client::TeamServiceClient;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{self, Peers, auth};

/// A customer created by the operator; its id.
async fn customer(replica: &common::Replica, op: &str, n: u32) -> i64 {
    TenantAdminServiceClient::new(replica.channel.clone())
        .create_customer(auth(
            CreateCustomerRequest {
                email: format!("audit{n}@example.com"),
                business_name: format!("Audit {n}"),
                ..Default::default()
            },
            op,
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id
}

/// A token of `customer` with `scopes` for tenant-svc.
fn token(keys: &DevKeys, customer: i64, scopes: &[&str]) -> String {
    common::tenant_token(keys, customer, scopes)
}

/// Rows of `customer` in the three logs, at seconds after a fixed instant: tenant-svc's at 10,
/// 20 (two: ids in order), 30; memory-svc's at 20 and 40; media-svc's at 20 and 5. Each row's
/// label is in its detail (or a row count's name), so the order can be read back.
async fn seed(db: &TestDb, customer: i64, user_email: &str) {
    let sql = db.admin_client().await;
    let base = "timestamptz '2026-01-01 00:00:00+00'";
    sql.execute(
        "INSERT INTO tenant.users (customer_id, email_hash, email, role, password_hash) \
         VALUES ($1, sha256($2::text::bytea), $2, 'owner', '$argon2id$x') ",
        &[&customer, &user_email],
    )
    .await
    .unwrap();
    let user: i64 = sql
        .query_one(
            "SELECT id FROM tenant.users WHERE customer_id = $1",
            &[&customer],
        )
        .await
        .unwrap()
        .get(0);
    for (secs, label) in [(10, "t10"), (20, "t20a"), (20, "t20b"), (30, "t30")] {
        sql.execute(
            &format!(
                "INSERT INTO tenant.audit_log (customer_id, at, actor, action, detail) \
                 VALUES ($1, {base} + make_interval(secs => $2), $3, 'auth.sign_in', \
                         jsonb_build_object('label', $4::text, 'n', 1))"
            ),
            &[&customer, &f64::from(secs), &format!("user:{user}"), &label],
        )
        .await
        .unwrap();
    }
    for (schema, rows) in [
        ("memory", [(20, "m20"), (40, "m40")]),
        ("media", [(20, "d20"), (5, "d05")]),
    ] {
        for (secs, label) in rows {
            sql.execute(
                &format!(
                    "INSERT INTO {schema}.audit_log (customer_id, id, action, actor, counts, created_at) \
                     VALUES ($1, gen_random_uuid(), 'erase_caller', $3, \
                             jsonb_build_object('{schema}.rows', 2, 'label:' || $2::text, 1), \
                             {base} + make_interval(secs => $4))"
                ),
                &[&customer, &label, &format!("user:{user}"), &f64::from(secs)],
            )
            .await
            .unwrap();
        }
    }
}

/// Each event's label (tenant-svc's detail `label`, the others' row count named `label:<it>`).
fn label(e: &AuditEvent) -> String {
    e.details.get("label").cloned().unwrap_or_else(|| {
        e.details
            .keys()
            .find_map(|k| k.strip_prefix("label:"))
            .unwrap_or_default()
            .to_owned()
    })
}

type Team = TeamServiceClient<Channel>;

/// A ListAuditEvents request.
fn list(page_size: i32, page_token: String, token: &str) -> tonic::Request<ListAuditEventsRequest> {
    auth(
        ListAuditEventsRequest {
            page_size,
            page_token,
        },
        token,
    )
}

/// The whole log in one page, newest first, ties by source (tenant, memory, media) then id;
/// actors' addresses shown; only A's rows. Its labels.
fn whole_log_in_order(all: &ListAuditEventsResponse) -> Vec<String> {
    let labels: Vec<String> = all.events.iter().map(label).collect();
    // Within a source, ids descending: t20b was written after t20a.
    assert_eq!(
        labels,
        vec!["m40", "t30", "t20b", "t20a", "m20", "d20", "t10", "d05"]
    );
    assert_eq!(all.next_page_token, "");
    let services: Vec<&str> = all.events.iter().map(|e| e.service.as_str()).collect();
    assert_eq!(
        services,
        vec![
            names::MEMORY_SVC,
            names::TENANT_SVC,
            names::TENANT_SVC,
            names::TENANT_SVC,
            names::MEMORY_SVC,
            names::MEDIA_SVC,
            names::TENANT_SVC,
            names::MEDIA_SVC
        ]
    );
    for e in &all.events {
        assert_eq!(e.actor_email, "owner@a.example", "{e:?}");
        assert!(!format!("{e:?}").contains("b.example"));
    }
    let m40 = &all.events[0];
    assert_eq!(m40.action, "caller.erased");
    assert_eq!(
        m40.details.get("memory.rows").map(String::as_str),
        Some("2")
    );
    assert_eq!(all.events[1].action, "auth.sign_in");
    assert_eq!(
        all.events[1].details.get("n").map(String::as_str),
        Some("1")
    );

    labels
}

/// Paged by 3 (and by 1): the same events in the same order, each exactly once.
async fn pages_match(team: &mut Team, audit: &str, labels: &[String]) {
    for size in [3, 1] {
        let mut paged = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = team
                .list_audit_events(list(size, page_token, audit))
                .await
                .unwrap()
                .into_inner();
            assert!(page.events.len() <= size as usize);
            paged.extend(page.events.iter().map(label));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        assert_eq!(paged, labels, "pages of {size}");
    }
}

/// Refused: without `tenant:audit`; a page size or token out of range; memory-svc's
/// ListAuditEntries without `memory:audit`.
async fn refusals(team: &mut Team, keys: &DevKeys, a: i64, audit: &str, peers: &Peers) {
    let e = team
        .list_audit_events(list(0, String::new(), &token(keys, a, scope::STAFF_SCOPES)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    for (size, page_token, field) in [
        (201, String::new(), "page_size"),
        (-1, String::new(), "page_size"),
        (0, "garbage".to_owned(), "page_token"),
    ] {
        let e = team
            .list_audit_events(list(size, page_token, audit))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(field), "{}", e.message());
    }

    // memory-svc's ListAuditEntries itself wants `memory:audit`: a reading token is refused.
    let channel = Channel::from_shared(format!("http://{}", peers.memory))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let reader = keys
        .identity(names::TENANT_SVC)
        .minter()
        .mint_tenant(
            mesh::domain::CustomerId::new(a).unwrap(),
            "user:1",
            &[names::MEMORY_SVC],
            &[scope::MEMORY_READ],
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    let e = MemoryServiceClient::new(channel)
        .list_audit_entries(auth(MemoryListAudit::default(), &reader))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn the_audit_log_merges_three_services_in_order_pages_and_shows_no_other_tenant() {
    let db = TestDb::new().await;
    let keys = DevKeys::generate();
    let peers = Peers {
        memory: common::dead_addr().await,
        media: common::dead_addr().await,
    };
    let replica = common::serve_with_peers(&db, &keys, None, false, &peers).await;
    let op = common::operator_token(&keys, &[scope::TENANT_ADMIN]);
    let (a, b) = (
        customer(&replica, &op, 1).await,
        customer(&replica, &op, 2).await,
    );
    seed(&db, a, "owner@a.example").await;
    seed(&db, b, "owner@b.example").await;
    let audit = token(&keys, a, &[scope::TENANT_AUDIT]);
    let mut team = TeamServiceClient::new(replica.channel.clone());
    // memory-svc down: UNAVAILABLE naming it, never a partial log.
    let _media = common::serve_peers(&db, &keys, &peers, false, true).await;
    let e = team
        .list_audit_events(list(0, String::new(), &audit))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("memory-svc"), "{}", e.message());

    // Both up: the whole log, and the same in pages.
    let _memory = common::serve_peers(&db, &keys, &peers, true, false).await;
    let all = team
        .list_audit_events(list(0, String::new(), &audit))
        .await
        .unwrap()
        .into_inner();
    let labels = whole_log_in_order(&all);
    pages_match(&mut team, &audit, &labels).await;

    // B sees only its own log (its own labels, its own address).
    let b_log = team
        .list_audit_events(list(
            0,
            String::new(),
            &token(&keys, b, &[scope::TENANT_AUDIT]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b_log.events.len(), 8);
    assert!(
        b_log
            .events
            .iter()
            .all(|e| e.actor_email == "owner@b.example")
    );
    let a_ids: Vec<&str> = all.events.iter().map(|e| e.id.as_str()).collect();
    assert!(
        b_log
            .events
            .iter()
            .all(|e| e.service == names::TENANT_SVC || !a_ids.contains(&e.id.as_str()))
    );

    refusals(&mut team, &keys, a, &audit, &peers).await;
}
