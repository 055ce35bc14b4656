//! `DeleteCustomer` is one operator action that erases a customer in every service: real
//! memory-svc and media-svc in-process, real sockets, one database. A service that does not
//! confirm stops it visibly (UNAVAILABLE, the customer suspended and marked); the same action
//! again resumes it; another tenant's rows are untouched; refusals store nothing.

use crate::common::{self, Peers, auth};

use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::{
    AssignPhoneNumberRequest, CreateCustomerRequest, CustomerStatus, DeleteCustomerRequest,
    SetCustomerStatusRequest,
};
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use tonic::Code;
use tonic::transport::Channel;

type Admin = TenantAdminServiceClient<Channel>;

/// A customer with a number, and rows about one caller in media-svc and memory-svc.
async fn customer(db: &TestDb, admin: &mut Admin, token: &str, n: u32) -> i64 {
    let id = admin
        .create_customer(auth(
            CreateCustomerRequest {
                email: format!("owner{n}@example.com"),
                business_name: format!("Business {n}"),
                contact_name: "Pat".into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id;
    admin
        .assign_phone_number(auth(
            AssignPhoneNumberRequest {
                customer_id: id,
                number: format!("+1415555{n:04}"),
                twilio_account_sid: String::new(),
            },
            token,
        ))
        .await
        .unwrap();
    let call = format!("CA{n:032x}");
    let sql = db.admin_client().await;
    for q in [
        format!(
            "INSERT INTO media.calls (customer_id, call_sid, account_sid, caller, called, direction, status) VALUES ({id}, '{call}', 'AC{n:032x}', '+15551112222', '+1415555{n:04}', 1, 5)"
        ),
        format!(
            "INSERT INTO media.transcript_turns (customer_id, call_sid, seq, speaker, text, offset_ms) VALUES ({id}, '{call}', 1, 1, 'my policy is PX-1', 0)"
        ),
        format!(
            "INSERT INTO memory.memories (customer_id, id, user_id, type, key, value, expires_at) VALUES ({id}, gen_random_uuid(), '+15551112222', 'fact', 'policy', '\"PX-1\"', now() + interval '1 day')"
        ),
    ] {
        sql.execute(&q, &[]).await.unwrap();
    }
    id
}

/// Rows of `id` in each table the erasure covers (tenant, media, memory) and its audit rows.
async fn rows(db: &TestDb, id: i64) -> [i64; 7] {
    let sql = db.admin_client().await;
    let mut out = [0; 7];
    for (i, t) in [
        "tenant.customers",
        "tenant.phone_numbers",
        "media.calls",
        "media.transcript_turns",
        "memory.memories",
        "media.audit_log",
        "memory.audit_log",
    ]
    .iter()
    .enumerate()
    {
        out[i] = sql
            .query_one(
                &format!("SELECT count(*) FROM {t} WHERE customer_id = $1"),
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
    }
    out
}

async fn erasure_row(db: &TestDb, id: i64) -> Option<(String, bool, bool, bool)> {
    db.admin_client()
        .await
        .query_opt(
            "SELECT requested_by, media_erased_at IS NOT NULL, memory_erased_at IS NOT NULL, \
                    completed_at IS NOT NULL FROM tenant.erasures WHERE customer_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

/// A customer being erased stays suspended: reactivating it is refused.
async fn assert_stays_suspended(db: &TestDb, admin: &mut Admin, op: &str, a: i64) {
    let status = |s: CustomerStatus| {
        auth(
            SetCustomerStatusRequest {
                customer_id: a,
                status: s as i32,
            },
            op,
        )
    };
    let e = admin
        .set_customer_status(status(CustomerStatus::Active))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "a customer being erased stays suspended"
    );
    let suspended: String = db
        .admin_client()
        .await
        .query_one(
            "SELECT status FROM tenant.customers WHERE customer_id = $1",
            &[&a],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(suspended, "suspended");
}

/// Who media-svc's audit row of the tenant erasure names.
async fn media_audit_actor(db: &TestDb, a: i64) -> String {
    db.admin_client()
        .await
        .query_one(
            "SELECT actor FROM media.audit_log WHERE customer_id = $1",
            &[&a],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn deleting_a_customer_erases_it_everywhere_and_a_half_done_erasure_resumes() {
    let db = TestDb::new().await;
    let keys = DevKeys::generate();
    let peers = Peers {
        memory: common::dead_addr().await,
        media: common::dead_addr().await,
    };
    let replica = common::serve_with_peers(&db, &keys, None, false, &peers).await;
    let mut admin = TenantAdminServiceClient::new(replica.channel.clone());
    let op = common::operator_token(&keys, &[scope::TENANT_ADMIN]);
    let (a, b) = (
        customer(&db, &mut admin, &op, 1).await,
        customer(&db, &mut admin, &op, 2).await,
    );
    let b_before = rows(&db, b).await;
    let operator = format!("service:{}", names::OPERATOR);
    let delete = |token: &str| auth(DeleteCustomerRequest { customer_id: a }, token);

    // Refused before anything happens: not an admin token.
    let gateway = common::gateway_token(&keys, &[scope::TENANT_RESOLVE]);
    let e = admin.delete_customer(delete(&gateway)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(erasure_row(&db, a).await, None, "a refusal marks nothing");

    // memory-svc up, media-svc down: stopped at media-svc, visibly; nothing of A is gone yet.
    let _memory = common::serve_peers(&db, &keys, &peers, true, false).await;
    let e = admin.delete_customer(delete(&op)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("media-svc") && e.message().contains("again"),
        "{}",
        e.message()
    );
    assert_eq!(
        erasure_row(&db, a).await,
        Some((operator.clone(), false, false, false))
    );
    assert_eq!(rows(&db, a).await, [1, 1, 1, 1, 1, 0, 0]);
    assert_stays_suspended(&db, &mut admin, &op, a).await;

    // media-svc back: the same action resumes and finishes; every service audited its part.
    let _media = common::serve_peers(&db, &keys, &peers, false, true).await;
    let done = admin
        .delete_customer(delete(&op))
        .await
        .unwrap()
        .into_inner();
    let count = |t: &str| {
        done.counts
            .iter()
            .find(|c| c.table == t)
            .map_or(-1, |c| c.rows)
    };
    assert_eq!(
        [
            count("media.calls"),
            count("media.transcript_turns"),
            count("memory.memories"),
            count("tenant.customers")
        ],
        [1, 1, 1, 1]
    );
    assert_eq!(
        rows(&db, a).await,
        [0, 0, 0, 0, 0, 1, 1],
        "only the audit rows stay"
    );
    assert_eq!(
        erasure_row(&db, a).await,
        Some((operator.clone(), true, true, true))
    );
    assert_eq!(media_audit_actor(&db, a).await, "tenant-svc");
    assert_eq!(
        rows(&db, b).await,
        b_before,
        "the other tenant is untouched"
    );
    let e = admin.delete_customer(delete(&op)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}
