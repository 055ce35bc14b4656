//! Packages and versioned rate cards: a closed month keeps the rate card it had and nothing takes
//! effect in it, the default package covers tenants with none, every tenant's bills page by
//! customer id; the admin API is the operator's and tenant-svc's (its narrow scope) only, and bad
//! input is refused naming the field with nothing stored.

use mesh::api::media::*;
use mesh::identity::{names, scope};
use tonic::Code;

use crate::billing::{
    Admin, admin, admin_as, bill, billing, card, create_package, current_month, previous_month,
};
use crate::common::Svc;

/// Usage of a past month, as its calls left it (the API can only add to open months).
async fn seed_past_month(svc: &Svc, customer: i64, month: &str, minutes: i64) {
    svc.db
        .admin_client()
        .await
        .execute(
            "INSERT INTO media.usage_monthly (customer_id, month, total_calls, total_seconds, total_minutes) \
             VALUES ($1, ($2 || '-01')::date, 3, $3::bigint * 60, $3::bigint)",
            &[&customer, &month, &minutes],
        )
        .await
        .unwrap();
}

/// Last month: version 1 (2 cents a minute) was in effect and customer 1 was on "pro", as
/// published and assigned back then; customer 1 used 100 minutes then and 850 this month.
async fn seed_last_month(svc: &Svc, last: &str, now: &str) {
    let admin_db = svc.db.admin_client().await;
    admin_db
        .execute(
            "INSERT INTO media.rate_cards (package_id, version, effective_month, per_twilio_minute, \
               per_recorded_minute, per_million_input_text, per_million_input_audio, \
               per_million_cached_text, per_million_cached_audio, per_million_output_text, \
               per_million_output_audio) \
             SELECT id, 1, ($1 || '-01')::date, 2, 0, 0, 0, 0, 0, 0, 0 FROM media.billing_packages",
            &[&last],
        )
        .await
        .unwrap();
    admin_db
        .execute(
            "INSERT INTO media.package_assignments (customer_id, effective_month, package_id) \
             SELECT 1, ($1 || '-01')::date, id FROM media.billing_packages",
            &[&last],
        )
        .await
        .unwrap();
    seed_past_month(svc, 1, last, 100).await;
    seed_past_month(svc, 1, now, 850).await;
}

/// Nothing may take effect in the closed month: refused naming the field, nothing stored.
async fn nothing_takes_effect_in(svc: &Svc, ops: &mut Admin, last: &str) {
    let cards = "SELECT count(*) FROM media.rate_cards";
    let assignments = "SELECT count(*) FROM media.package_assignments";
    let e = ops
        .publish_rate_card(PublishRateCardRequest {
            package: "pro".into(),
            rate_card: Some(card(last)),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("rate_card.effective_month"),
        "{}",
        e.message()
    );
    let e = ops
        .assign_package(AssignPackageRequest {
            customer_id: 2,
            package: "pro".into(),
            effective_month: last.to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("effective_month"), "{}", e.message());
    let e = ops
        .set_default_package(SetDefaultPackageRequest {
            package: "pro".into(),
            effective_month: last.to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        (svc.count(cards).await, svc.count(assignments).await),
        (1, 1)
    );
}

/// Version 2 (3 cents) from this month on prices this month only.
async fn version_two_prices_only_this_month(svc: &Svc, ops: &mut Admin, last: &str, now: &str) {
    let v2 = ops
        .publish_rate_card(PublishRateCardRequest {
            package: "pro".into(),
            rate_card: Some(RateCard {
                per_twilio_minute: 3,
                ..card(now)
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .rate_card
        .unwrap();
    assert_eq!(v2.version, 2);

    let mut owner = billing(svc, 1, &[scope::MEDIA_BILLING]).await;
    let old = bill(&mut owner, last).await;
    assert!(old.closed);
    assert_eq!(
        (old.rate_card_version, old.total),
        (1, 200),
        "100 min x 2, not x 3"
    );
    assert_eq!(
        (old.cap_minutes, old.minutes_used, old.cap_percent_used),
        (1000, 100, 10)
    );
    let open = bill(&mut owner, now).await;
    assert_eq!(
        (open.rate_card_version, open.total),
        (2, 2550),
        "850 min x 3"
    );
    assert_eq!(open.cap_percent_used, 85);
    assert_eq!(open.over_cap, OverCapAction::Refuse as i32);
}

/// A tenant with no assignment gets the default package of its month; none before it.
async fn the_default_package(svc: &Svc, ops: &mut Admin, last: &str, now: &str) {
    create_package(ops, "basic", 0, OverCapAction::Unspecified).await;
    ops.publish_rate_card(PublishRateCardRequest {
        package: "basic".into(),
        rate_card: Some(RateCard {
            per_twilio_minute: 5,
            ..card("")
        }),
    })
    .await
    .unwrap();
    ops.set_default_package(SetDefaultPackageRequest {
        package: "basic".into(),
        effective_month: String::new(),
    })
    .await
    .unwrap();
    seed_past_month(svc, 2, now, 10).await;
    seed_past_month(svc, 2, last, 10).await;
    let mut two = billing(svc, 2, &[scope::MEDIA_BILLING]).await;
    let b = bill(&mut two, now).await;
    assert_eq!((b.package.as_str(), b.total), ("basic", 50));
    let b = bill(&mut two, last).await;
    assert_eq!(
        (b.package.as_str(), b.total),
        ("", 0),
        "no default back then"
    );
}

/// Every tenant's bills, a page at a time; the packages with their versions.
async fn pages(ops: &mut Admin, now: &str) {
    let page = ops
        .list_monthly_bills(ListMonthlyBillsRequest {
            month: now.to_owned(),
            page_size: 1,
            after_customer_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.bills.len(), 1);
    assert_eq!(
        (page.bills[0].customer_id, page.next_after_customer_id),
        (1, 1)
    );
    let page = ops
        .list_monthly_bills(ListMonthlyBillsRequest {
            month: now.to_owned(),
            page_size: 1,
            after_customer_id: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.bills[0].customer_id, 2);
    let listed = ops
        .list_packages(ListPackagesRequest {})
        .await
        .unwrap()
        .into_inner()
        .packages;
    let pro = listed.iter().find(|p| p.name == "pro").unwrap();
    assert_eq!(
        pro.rate_cards.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[tokio::test]
async fn a_closed_month_keeps_its_rate_card_and_nothing_takes_effect_in_it() {
    let svc = Svc::start().await;
    let mut ops = admin(&svc).await;
    create_package(&mut ops, "pro", 1000, OverCapAction::Refuse).await;
    let last = previous_month();
    let now = current_month();
    seed_last_month(&svc, &last, &now).await;
    nothing_takes_effect_in(&svc, &mut ops, &last).await;
    version_two_prices_only_this_month(&svc, &mut ops, &last, &now).await;
    the_default_package(&svc, &mut ops, &last, &now).await;
    pages(&mut ops, &now).await;
    svc.stop().await;
}

fn package(name: &str, currency: &str, cap: i64, over: OverCapAction) -> CreatePackageRequest {
    CreatePackageRequest {
        package: Some(BillingPackage {
            name: name.into(),
            currency: currency.into(),
            cap_minutes: cap,
            over_cap: over as i32,
            rate_cards: vec![],
        }),
    }
}

/// Packages with a bad field are refused naming it; nothing is stored.
async fn bad_packages(svc: &Svc, ops: &mut Admin) {
    for (request, field) in [
        (
            package("Bad Name", "USD", 0, OverCapAction::Unspecified),
            "package",
        ),
        (
            package("=cmd", "USD", 0, OverCapAction::Unspecified),
            "package",
        ),
        (
            package("ok", "usd", 0, OverCapAction::Unspecified),
            "package.currency",
        ),
        (
            package("ok", "USD", -1, OverCapAction::Refuse),
            "package.cap_minutes",
        ),
        (
            package("ok", "USD", 100, OverCapAction::Unspecified),
            "package.over_cap",
        ),
    ] {
        let e = ops.create_package(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(
            e.message().contains(&format!("`{field}`")),
            "{field}: {}",
            e.message()
        );
    }
    assert_eq!(
        svc.count("SELECT count(*) FROM media.billing_packages")
            .await,
        0
    );
}

/// Bad rate cards, assignments, pages and months.
async fn bad_requests(svc: &Svc, ops: &mut Admin) {
    let e = ops
        .create_package(package("ok", "EUR", 0, OverCapAction::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = ops
        .publish_rate_card(PublishRateCardRequest {
            package: "missing".into(),
            rate_card: Some(card("")),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "package not found")
    );
    let e = ops
        .publish_rate_card(PublishRateCardRequest {
            package: "ok".into(),
            rate_card: Some(RateCard {
                per_million_output_audio_tokens: -1,
                ..card("")
            }),
        })
        .await
        .unwrap_err();
    assert!(
        e.message()
            .contains("`rate_card.per_million_output_audio_tokens`"),
        "{}",
        e.message()
    );
    let e = ops
        .assign_package(AssignPackageRequest {
            customer_id: 0,
            package: "ok".into(),
            effective_month: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("customer_id"), "{}", e.message());
    let e = ops
        .assign_package(AssignPackageRequest {
            customer_id: 1,
            package: "missing".into(),
            effective_month: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = ops
        .list_monthly_bills(ListMonthlyBillsRequest {
            month: String::new(),
            page_size: 101,
            after_customer_id: 0,
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("`page_size`"), "{}", e.message());
    bad_months(svc).await;
}

/// Months that are not `YYYY-MM`; then nothing was stored by any refusal.
async fn bad_months(svc: &Svc) {
    let mut owner = billing(svc, 1, &[scope::MEDIA_BILLING]).await;
    for month in ["2026-13", "12-2026", "2026-1", "x"] {
        let e = owner
            .get_monthly_bill(GetMonthlyBillRequest {
                month: month.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{month}");
        assert!(e.message().contains("`month`"), "{}", e.message());
    }
    assert_eq!(
        (
            svc.count("SELECT count(*) FROM media.rate_cards").await,
            svc.count("SELECT count(*) FROM media.package_assignments")
                .await,
        ),
        (0, 0)
    );
}

/// Only the operator's `media:admin` and tenant-svc's `media:billing-admin` open the admin API.
async fn wrong_signers(svc: &Svc) {
    for (issuer, scopes) in [
        (
            names::GATEWAY,
            &[scope::MEDIA_ADMIN, scope::MEDIA_BILLING_ADMIN][..],
        ),
        (names::TENANT_SVC, &[scope::MEDIA_ADMIN][..]),
        (names::OPERATOR, &[scope::MEDIA_BILLING_ADMIN][..]),
        (
            names::MEMORY_SVC,
            &[scope::MEDIA_ADMIN, scope::MEDIA_BILLING_ADMIN][..],
        ),
    ] {
        let mut c = admin_as(svc, issuer, scopes).await;
        let e = c
            .create_package(package("sneaky", "USD", 0, OverCapAction::Unspecified))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{issuer} {scopes:?}");
    }
    assert_eq!(
        svc.count("SELECT count(*) FROM media.billing_packages")
            .await,
        1
    );
}

#[tokio::test]
async fn bad_input_names_the_field_and_stores_nothing() {
    let svc = Svc::start().await;
    let mut ops = admin(&svc).await;
    bad_packages(&svc, &mut ops).await;
    create_package(&mut ops, "ok", 0, OverCapAction::Unspecified).await;
    bad_requests(&svc, &mut ops).await;
    wrong_signers(&svc).await;
    svc.stop().await;
}
