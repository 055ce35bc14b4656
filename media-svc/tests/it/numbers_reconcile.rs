//! NumberAdminService against the fake Twilio: import (webhooks checked and corrected),
//! reconcile reporting each kind of drift and fixing it, one runner at a time, the background
//! task.

use std::time::Duration;

use mesh::api::media::number_admin_service_client::NumberAdminServiceClient;
use mesh::api::media::*;
use mesh::api::tenant::ReleasePhoneNumberRequest;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::auth::{AttachToken, TokenSource};
use mesh::identity::{names, scope};
use tonic::Code;

use crate::common::{create_customer, eventually};
use crate::numbers::bought;
use crate::numbers_common::{STATUS_URL, VOICE_URL, World, start, start_with};

fn import(customer: i64, number: &str, fix: bool) -> ImportNumberRequest {
    ImportNumberRequest {
        customer_id: customer,
        phone_number: number.into(),
        fix_webhooks: fix,
        origin: 0,
    }
}

#[tokio::test]
async fn import_checks_webhooks_and_corrects_them_on_request() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let mut admin = w.admin().await;
    w.fake
        .own("+14155550150", "https://elsewhere.example/voice", "");
    w.fake
        .own("+14155550151", "https://elsewhere.example/voice", "");

    let checked = admin
        .import_number(import(a, "+14155550150", false))
        .await
        .unwrap()
        .into_inner();
    assert!(
        checked
            .webhook_problems
            .iter()
            .any(|p| p.contains("VoiceUrl")),
        "{:?}",
        checked.webhook_problems
    );
    assert!(!checked.webhooks_fixed);
    let n = checked.number.unwrap();
    assert_eq!(
        (n.state, n.origin, n.webhooks_ok, n.customer_id),
        (
            NumberState::Active as i32,
            NumberOrigin::Imported as i32,
            false,
            a
        )
    );
    assert_eq!(w.routed_to("+14155550150").await, Some(a));
    let owned = w.fake.owned();
    assert_eq!(
        owned[0].voice_url, "https://elsewhere.example/voice",
        "left alone"
    );

    let fixed = admin
        .import_number(import(a, "+14155550151", true))
        .await
        .unwrap()
        .into_inner();
    assert!(fixed.webhooks_fixed);
    assert!(fixed.number.unwrap().webhooks_ok);
    let owned = w.fake.owned();
    let o = owned
        .iter()
        .find(|o| o.phone_number == "+14155550151")
        .unwrap();
    assert_eq!(o.voice_url, VOICE_URL);
    assert_eq!(o.voice_method, "POST");

    w.svc.stop().await;
}

#[tokio::test]
async fn import_refusals_store_nothing_and_the_admin_service_refuses_tenants() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let b = create_customer(&w.svc, "echo").await;
    let mut admin = w.admin().await;
    w.fake
        .own("+14155550150", "https://elsewhere.example/voice", "");
    w.fake.own("+14155550151", VOICE_URL, STATUS_URL);
    for number in ["+14155550150", "+14155550151"] {
        admin.import_number(import(a, number, false)).await.unwrap();
    }
    // Not on the account: NOT_FOUND, nothing stored. Held by A: B cannot take it.
    let before = w.rows().await;
    let e = admin
        .import_number(import(a, "+14155550199", true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = admin
        .import_number(import(b, "+14155550150", true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    // A customer that does not exist: nothing asked of Twilio, nothing stored.
    let asked = w.fake.requests().len();
    let e = admin
        .import_number(import(999_999, "+14155550151", true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("customer_id"), "{}", e.message());
    assert_eq!(w.fake.requests().len(), asked);
    assert_eq!(w.rows().await, before);
    assert_eq!(w.routed_to("+14155550150").await, Some(a));
    // A tenant token never reaches the admin service.
    let token = w.svc.tenant_token(a, "owner", scope::OWNER_SCOPES);
    let mut as_tenant = NumberAdminServiceClient::with_interceptor(
        w.svc.channel_to(w.svc.addr).await,
        AttachToken(TokenSource::fixed(token.into())),
    );
    let e = as_tenant
        .list_all_numbers(ListAllNumbersRequest { customer_id: 0 })
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::PermissionDenied | Code::Unauthenticated),
        "{e:?}"
    );
    let all = admin
        .list_all_numbers(ListAllNumbersRequest { customer_id: 0 })
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|n| n.customer_id == a));
    w.svc.stop().await;
}

fn kinds(report: &ReconcileResponse) -> Vec<(String, DriftKind, bool)> {
    report
        .drift
        .iter()
        .map(|d| {
            (
                d.phone_number.clone(),
                DriftKind::try_from(d.kind).unwrap(),
                d.fixed,
            )
        })
        .collect()
}

/// One number per kind of drift (customer `a`): +1415555010{0: webhooks, 1: missing at
/// Twilio, 2: not routed, 3: purchase pending}, +14155550160 unknown at the platform.
async fn drift_of_every_kind(w: &World, a: i64) {
    // Webhooks changed behind our back.
    bought(w, a, "+14155550100", "00000000-0000-4000-8000-000000000001").await;
    w.fake
        .set_voice_url("+14155550100", "https://elsewhere.example/voice");
    // Gone from the account.
    bought(w, a, "+14155550101", "00000000-0000-4000-8000-000000000002").await;
    w.fake.remove("+14155550101");
    // On the account, held by nobody.
    w.fake.own("+14155550160", VOICE_URL, STATUS_URL);
    // Held but no longer routed by tenant-svc.
    bought(w, a, "+14155550102", "00000000-0000-4000-8000-000000000003").await;
    let token = w
        .svc
        .service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    TenantAdminServiceClient::with_interceptor(
        w.svc.channel_to(w.svc.tenant_addr.unwrap()).await,
        AttachToken(TokenSource::fixed(token.into())),
    )
    .release_phone_number(ReleasePhoneNumberRequest {
        customer_id: a,
        number: "+14155550102".into(),
    })
    .await
    .unwrap();
    // A purchase whose answer was lost and never looked up (Twilio made it).
    w.fake.own("+14155550103", VOICE_URL, STATUS_URL);
    w.svc
        .db
        .admin_client()
        .await
        .execute(
            &format!(
                "INSERT INTO media.numbers (customer_id, phone_number, request_id, state, origin) \
                 VALUES ({a}, '+14155550103', gen_random_uuid(), 1, 1)"
            ),
            &[],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn reconcile_reports_each_kind_of_drift_and_fix_fixes_them() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let mut admin = w.admin().await;
    drift_of_every_kind(&w, a).await;
    let report = admin
        .reconcile(ReconcileRequest { fix: false })
        .await
        .unwrap()
        .into_inner();
    let expected = vec![
        ("+14155550100".to_owned(), DriftKind::Webhooks, false),
        ("+14155550101".to_owned(), DriftKind::MissingAtTwilio, false),
        ("+14155550102".to_owned(), DriftKind::Routing, false),
        ("+14155550103".to_owned(), DriftKind::PurchasePending, false),
        (
            "+14155550160".to_owned(),
            DriftKind::UnknownAtPlatform,
            false,
        ),
    ];
    assert_eq!(kinds(&report), expected);
    assert_eq!(report.twilio_numbers, 4);
    assert_eq!(report.platform_numbers, 3);
    // Reporting changed nothing.
    assert_eq!(w.routed_to("+14155550102").await, None);
    assert!(
        w.fake
            .owned()
            .iter()
            .any(|o| o.voice_url.contains("elsewhere"))
    );

    let report = admin
        .reconcile(ReconcileRequest { fix: true })
        .await
        .unwrap()
        .into_inner();
    let fixed: Vec<_> = kinds(&report)
        .into_iter()
        .map(|(n, k, f)| (n, k, f || k == DriftKind::UnknownAtPlatform))
        .collect();
    assert!(fixed.iter().all(|(_, _, f)| *f), "{fixed:?}");
    assert!(w.fake.owned().iter().all(|o| o.voice_url == VOICE_URL));
    assert_eq!(w.routed_to("+14155550102").await, Some(a));
    assert_eq!(w.routed_to("+14155550103").await, Some(a));
    assert_eq!(w.routed_to("+14155550101").await, None);
    assert!(
        w.fake
            .owned()
            .iter()
            .any(|o| o.phone_number == "+14155550160"),
        "an unknown number is never released"
    );
    assert!(w.fake.releases().is_empty());

    let after = admin
        .reconcile(ReconcileRequest { fix: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        kinds(&after),
        vec![(
            "+14155550160".to_owned(),
            DriftKind::UnknownAtPlatform,
            false
        )]
    );
    let listed = w
        .owner(a)
        .await
        .list_numbers(ListNumbersRequest {})
        .await
        .unwrap()
        .into_inner()
        .numbers;
    let missing = listed
        .iter()
        .find(|n| n.phone_number == "+14155550101")
        .unwrap();
    assert_eq!(missing.state, NumberState::Released as i32);
    w.svc.stop().await;
}

#[tokio::test]
async fn two_reconcilers_at_once_one_runs() {
    let w = start().await;
    let mut admin = w.admin().await;
    w.fake.delay_lists(Duration::from_millis(1500));
    let mut first = admin.clone();
    let (one, two) = tokio::join!(first.reconcile(ReconcileRequest { fix: true }), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        admin.reconcile(ReconcileRequest { fix: true }).await
    });
    assert!(one.is_ok(), "{one:?}");
    assert_eq!(two.unwrap_err().code(), Code::Aborted);
    let lists = w
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/IncomingPhoneNumbers.json"))
        .count();
    assert_eq!(lists, 1, "only one runner asked Twilio");
    w.svc.stop().await;
}

#[tokio::test]
async fn the_background_task_fixes_webhooks_changed_behind_our_back() {
    let w = start_with(|n| n.reconcile_every = Duration::from_millis(300)).await;
    let a = create_customer(&w.svc, "alloy").await;
    bought(
        &w,
        a,
        "+14155550100",
        "00000000-0000-4000-8000-000000000001",
    )
    .await;
    w.fake
        .set_voice_url("+14155550100", "https://elsewhere.example/voice");
    eventually("the background reconcile restores our VoiceUrl", || async {
        w.fake.owned()[0].voice_url == VOICE_URL
    })
    .await;
    w.svc.stop().await;
}

#[tokio::test]
async fn offboarding_releases_every_number_and_only_named_issuers_reach_the_admin_service() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let b = create_customer(&w.svc, "echo").await;
    bought(
        &w,
        a,
        "+14155550100",
        "00000000-0000-4000-8000-000000000001",
    )
    .await;
    bought(
        &w,
        a,
        "+14155550101",
        "00000000-0000-4000-8000-000000000002",
    )
    .await;
    bought(
        &w,
        b,
        "+14155550102",
        "00000000-0000-4000-8000-000000000003",
    )
    .await;
    // A signer the rule does not name, with the right scope: refused, nothing released.
    for (issuer, scopes) in [
        (names::GATEWAY, &[scope::MEDIA_NUMBERS_ADMIN][..]),
        (names::GATEWAY, &[scope::MEDIA_ADMIN][..]),
        (names::OPERATOR, &[scope::MEDIA_NUMBERS_ADMIN][..]),
    ] {
        let e = w
            .admin_as(issuer, scopes)
            .await
            .release_all_numbers(ReleaseAllNumbersRequest { customer_id: a })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{issuer} {scopes:?}");
    }
    assert!(w.fake.releases().is_empty());
    // tenant-svc offboarding the customer (its own scope).
    let token = w.svc.service_token(
        names::TENANT_SVC,
        names::MEDIA_SVC,
        &[scope::MEDIA_NUMBERS_ADMIN],
    );
    let mut tenant_svc = NumberAdminServiceClient::with_interceptor(
        w.svc.channel_to(w.svc.addr).await,
        AttachToken(TokenSource::fixed(token.into())),
    );
    let released = tenant_svc
        .release_all_numbers(ReleaseAllNumbersRequest { customer_id: a })
        .await
        .unwrap()
        .into_inner()
        .released;
    assert_eq!(released, 2);
    assert_eq!(w.fake.releases().len(), 2);
    assert_eq!(w.routed_to("+14155550100").await, None);
    assert_eq!(w.routed_to("+14155550102").await, Some(b), "B untouched");
    // Again: nothing left to release.
    let again = tenant_svc
        .release_all_numbers(ReleaseAllNumbersRequest { customer_id: a })
        .await
        .unwrap()
        .into_inner()
        .released;
    assert_eq!(again, 0);
    let history = w
        .admin()
        .await
        .list_all_numbers(ListAllNumbersRequest { customer_id: a })
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert_eq!(history.len(), 2);
    assert!(
        history
            .iter()
            .all(|n| n.state == NumberState::Released as i32)
    );
    w.svc.stop().await;
}
