//! Monthly bills: known tokens and minutes give exact amounts (each line rounded half-up once)
//! and a CSV; tenant B never reads A's bill; the operator and tenant-svc's console read any.
//! The helpers here serve `billing_admin` (packages, versions, bad input) and `billing_caps`.

use mesh::api::media::billing_admin_service_client::BillingAdminServiceClient;
use mesh::api::media::billing_service_client::BillingServiceClient;
use mesh::api::media::*;
use mesh::auth::{AttachToken, TokenSource};
use mesh::identity::{names, scope};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::billing_usage::{ga_usage, open_call, realtime_world};
use crate::common::{self, In, Svc, sid};
use crate::fakes::FakeRealtime;

pub type Admin = BillingAdminServiceClient<InterceptedService<Channel, AttachToken>>;
pub type Billing = BillingServiceClient<InterceptedService<Channel, AttachToken>>;

/// The admin API with a token of `issuer` carrying `scopes`.
pub async fn admin_as(svc: &Svc, issuer: &str, scopes: &[&str]) -> Admin {
    let token = svc.service_token(issuer, names::MEDIA_SVC, scopes);
    BillingAdminServiceClient::with_interceptor(
        svc.channel_to(svc.addr).await,
        AttachToken(TokenSource::fixed(token.into())),
    )
}

/// The operator's admin client.
pub async fn admin(svc: &Svc) -> Admin {
    admin_as(svc, names::OPERATOR, &[scope::MEDIA_ADMIN]).await
}

/// A tenant's billing client with `scopes`.
pub async fn billing(svc: &Svc, customer: i64, scopes: &[&str]) -> Billing {
    let token = svc.tenant_token(customer, "owner", scopes);
    BillingServiceClient::with_interceptor(
        svc.channel_to(svc.addr).await,
        AttachToken(TokenSource::fixed(token.into())),
    )
}

/// A package, created through the API.
pub async fn create_package(admin: &mut Admin, name: &str, cap: i64, over: OverCapAction) {
    admin
        .create_package(CreatePackageRequest {
            package: Some(BillingPackage {
                name: name.into(),
                currency: "USD".into(),
                cap_minutes: cap,
                over_cap: over as i32,
                rate_cards: vec![],
            }),
        })
        .await
        .unwrap();
}

/// The test's prices: 2 cents a Twilio minute, 1 a recorded minute, per million tokens 400
/// input text, 3200 input audio, 40 cached of each, 1650 output text, 6400 output audio.
pub fn card(effective_month: &str) -> RateCard {
    RateCard {
        version: 0,
        effective_month: effective_month.into(),
        per_twilio_minute: 2,
        per_recorded_minute: 1,
        per_million_input_text_tokens: 400,
        per_million_input_audio_tokens: 3200,
        per_million_cached_text_tokens: 40,
        per_million_cached_audio_tokens: 40,
        per_million_output_text_tokens: 1650,
        per_million_output_audio_tokens: 6400,
    }
}

pub fn current_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

pub fn previous_month() -> String {
    use chrono::Datelike as _;
    let now = chrono::Utc::now().date_naive();
    let first = now.with_day(1).unwrap();
    (first - chrono::Days::new(1)).format("%Y-%m").to_string()
}

pub async fn bill(client: &mut Billing, month: &str) -> MonthlyBill {
    client
        .get_monthly_bill(GetMonthlyBillRequest {
            month: month.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .bill
        .unwrap()
}

pub fn amounts(b: &MonthlyBill) -> Vec<(i64, i64, i64)> {
    b.lines
        .iter()
        .map(|l| (l.quantity, l.unit_price, l.amount))
        .collect()
}

/// The operator's package "starter" (no cap) with [`card`] from this month, customer `a` on it.
async fn starter_for(ops: &mut Admin, a: i64) {
    create_package(ops, "starter", 0, OverCapAction::Unspecified).await;
    let published = ops
        .publish_rate_card(PublishRateCardRequest {
            package: "starter".into(),
            rate_card: Some(card("")),
        })
        .await
        .unwrap()
        .into_inner()
        .rate_card
        .unwrap();
    assert_eq!(published.version, 1);
    assert_eq!(published.effective_month, current_month());
    ops.assign_package(AssignPackageRequest {
        customer_id: a,
        package: "starter".into(),
        effective_month: String::new(),
    })
    .await
    .unwrap();
}

/// One call of `a`: 61 s by Twilio's final callback (2 minutes), and the model's known usage.
async fn one_known_call(svc: &Svc, realtime: &mut FakeRealtime, a: i64) {
    // One call: 61 s by Twilio's final callback (2 minutes), and the model's known usage.
    let call_sid = sid("CA", 301);
    let (call, conn) = open_call(svc, realtime, a, &call_sid).await;
    conn.response_done(
        "r1",
        ga_usage(1_000_000, 2_000_000, 400_000, 500_000, 30_000, 700_000),
    );
    let mut edge = svc
        .client_with(svc.tenant_token(a, &call_sid, scope::CALL_SCOPES))
        .await;
    edge.update_call_status(UpdateCallStatusRequest {
        call_sid: call_sid.clone(),
        status: CallStatus::Completed as i32,
        sequence_number: 5,
        duration_seconds: 61,
        event_time: None,
    })
    .await
    .unwrap();
    call.send(In::Stop(StreamStop {})).await;
    common::eventually("the call's tokens stored", || async {
        svc.count("SELECT count(*) FROM media.calls WHERE model_input_text_tokens IS NOT NULL")
            .await
            == 1
    })
    .await;
}

/// The bill of that call, line by line.
async fn check_exact_bill(owner: &mut Billing, a: i64) {
    let b = bill(owner, "").await;
    assert_eq!(
        (
            b.customer_id,
            b.package.as_str(),
            b.rate_card_version,
            b.currency.as_str()
        ),
        (a, "starter", 1, "USD")
    );
    assert_eq!(b.month, current_month());
    assert_eq!(b.calls, 1);
    assert!(!b.closed);
    // Twilio 2 min x 2 = 4; recorded 0; uncached text 600,000 x 400/M = 240; uncached audio
    // 1,500,000 x 3200/M = 4800; cached text 400,000 x 40/M = 16; cached audio 500,000 x 40/M =
    // 20; output text 30,000 x 1650/M = 49.5 -> 50 (half up); output audio 700,000 x 6400/M =
    // 4480.
    assert_eq!(
        amounts(&b),
        vec![
            (2, 2, 4),
            (0, 1, 0),
            (600_000, 400, 240),
            (1_500_000, 3200, 4800),
            (400_000, 40, 16),
            (500_000, 40, 20),
            (30_000, 1650, 50),
            (700_000, 6400, 4480),
        ]
    );
    assert_eq!(b.lines[6].amount_micros, 49_500_000);
    assert_eq!(b.total, 9610);
    assert_eq!(
        (b.cap_minutes, b.minutes_used, b.cap_percent_used),
        (0, 2, 0)
    );
}

/// The same bill as CSV.
async fn check_csv(owner: &mut Billing, a: i64) {
    let csv = owner
        .export_monthly_bill(ExportMonthlyBillRequest {
            month: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(csv.filename, format!("usage-{}.csv", current_month()));
    let rows: Vec<&str> = csv.csv.split("\r\n").collect();
    assert_eq!(rows.len(), 11, "header, 8 lines, total, and the last CRLF");
    assert!(
        rows[0].starts_with("customer_id,month,package"),
        "{}",
        rows[0]
    );
    assert_eq!(
        rows[7],
        format!(
            "{a},{},starter,1,USD,output_text_tokens,30000,1650,49500000,50,0.50",
            current_month()
        )
    );
    assert_eq!(
        rows[9],
        format!("{a},{},starter,1,USD,total,,,,9610,96.10", current_month())
    );
}

/// Tenant B's own month; no tenant token reaches the admin API or another scope's bill.
async fn check_isolation(svc: &Svc, a: i64) {
    // Tenant B sees its own empty month, never A's figures; no tenant token opens the admin API;
    // a token without `media:billing` is refused.
    let b_id = a + 1000;
    let mut other = billing(svc, b_id, &[scope::MEDIA_BILLING]).await;
    let theirs = bill(&mut other, "").await;
    assert_eq!(
        (theirs.customer_id, theirs.calls, theirs.total),
        (b_id, 0, 0)
    );
    assert!(theirs.package.is_empty());
    assert!(theirs.lines.iter().all(|l| l.quantity == 0));
    let theirs_csv = other
        .export_monthly_bill(ExportMonthlyBillRequest {
            month: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .csv;
    assert!(!theirs_csv.contains("starter") && !theirs_csv.contains(&format!("\r\n{a},")));
    let token = svc.tenant_token(b_id, "owner", scope::TENANT_SCOPES);
    let mut sneaky = BillingAdminServiceClient::with_interceptor(
        svc.channel_to(svc.addr).await,
        AttachToken(TokenSource::fixed(token.into())),
    );
    let e = sneaky
        .get_customer_bill(GetCustomerBillRequest {
            customer_id: a,
            month: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let mut reader = billing(svc, a, &[scope::MEDIA_READ]).await;
    let e = reader
        .get_monthly_bill(GetMonthlyBillRequest {
            month: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
}

/// The operator and tenant-svc's console read A's bill and everyone's CSV.
async fn check_admin_reads(svc: &Svc, ops: &mut Admin, a: i64) {
    // The operator (and tenant-svc with its narrow scope) read A's bill and everyone's CSV.
    let mut console = admin_as(svc, names::TENANT_SVC, &[scope::MEDIA_BILLING_ADMIN]).await;
    let theirs = console
        .get_customer_bill(GetCustomerBillRequest {
            customer_id: a,
            month: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .bill
        .unwrap();
    assert_eq!(theirs.total, 9610);
    let all = ops
        .export_monthly_bills(ExportMonthlyBillsRequest {
            month: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.filename, format!("usage-all-{}.csv", current_month()));
    assert!(all.csv.contains(&format!(
        "{a},{},starter,1,USD,total,,,,9610,96.10",
        current_month()
    )));
}

#[tokio::test]
async fn known_tokens_and_minutes_give_exact_amounts_and_a_csv() {
    let (svc, mut realtime, a) = realtime_world().await;
    let mut ops = admin(&svc).await;
    starter_for(&mut ops, a).await;
    one_known_call(&svc, &mut realtime, a).await;
    let mut owner = billing(&svc, a, &[scope::MEDIA_BILLING]).await;
    check_exact_bill(&mut owner, a).await;
    check_csv(&mut owner, a).await;
    check_isolation(&svc, a).await;
    check_admin_reads(&svc, &mut ops, a).await;
    svc.stop().await;
}
