//! `/portal/usage` (owners): calls and billed minutes per month for the last 12 months
//! (media-svc `GetUsage`, one month each), as a table, a chart and a CSV download
//! (`/portal/usage.csv`); and this month's bill (media-svc `GetMonthlyBill`: a line per unit with
//! its quantity, unit price and amount, the total and the cap used), priced by media-svc, with
//! its CSV (`/portal/usage/bill.csv`, `ExportMonthlyBill`).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Datelike as _;
use mesh::api::media::billing_service_client::BillingServiceClient;
use mesh::api::media::{
    BillingUnit, ExportMonthlyBillRequest, GetMonthlyBillRequest, GetUsageRequest,
};

use super::data::{self, Chart};
use crate::{Layout, NavItem, Owner, PageError, Portal, Session, render};

/// Months shown.
const MONTHS: u32 = 12;

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/usage", get(page))
        .route("/portal/usage.csv", get(csv))
        .route("/portal/usage/bill.csv", get(bill_csv))
}

/// One month's usage.
struct Month {
    label: String,
    calls: i64,
    minutes: i64,
}

/// The last [`MONTHS`] months, oldest first, this month last (in the tenant's time zone).
async fn months(portal: &Portal, session: &Session) -> Result<Vec<Month>, PageError> {
    let tz = data::time_zone(portal, session).await?;
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let mut out = Vec::new();
    let mut media = portal.media();
    for back in (0..MONTHS).rev() {
        let index = today.year() * 12 + i32::try_from(today.month0()).unwrap_or(0)
            - i32::try_from(back).unwrap_or(0);
        let (year, month) = (index.div_euclid(12), index.rem_euclid(12) + 1);
        let usage = media
            .get_usage(session.grpc(GetUsageRequest { year, month }))
            .await?
            .into_inner();
        out.push(Month {
            label: format!("{year}-{month:02}"),
            calls: usage.total_calls,
            minutes: usage.total_minutes,
        });
    }
    Ok(out)
}

/// One line of this month's bill, as shown.
struct BillRow {
    unit: &'static str,
    quantity: i64,
    unit_price: String,
    amount: String,
}

/// This month's bill, as shown.
struct Bill {
    month: String,
    package: String,
    rows: Vec<BillRow>,
    total: String,
    cap: String,
}

/// An amount of minor units in major units (2 decimals; 0 for currencies without minor units
/// is not distinguished here: the CSV carries the exact minor units).
fn money(minor: i64, currency: &str) -> String {
    if currency.is_empty() {
        return minor.to_string();
    }
    format!("{}.{:02} {currency}", minor / 100, (minor % 100).abs())
}

fn unit_label(unit: i32) -> &'static str {
    match BillingUnit::try_from(unit) {
        Ok(BillingUnit::TwilioMinutes) => "Call minutes",
        Ok(BillingUnit::RecordedMinutes) => "Recorded minutes",
        Ok(BillingUnit::InputTextTokens) => "AI input text tokens",
        Ok(BillingUnit::InputAudioTokens) => "AI input audio tokens",
        Ok(BillingUnit::CachedTextTokens) => "AI cached text tokens",
        Ok(BillingUnit::CachedAudioTokens) => "AI cached audio tokens",
        Ok(BillingUnit::OutputTextTokens) => "AI output text tokens",
        Ok(BillingUnit::OutputAudioTokens) => "AI output audio tokens",
        _ => "Other",
    }
}

async fn bill(portal: &Portal, session: &Session) -> Result<Bill, PageError> {
    let mut billing = BillingServiceClient::new(portal.channels().media.clone());
    let b = billing
        .get_monthly_bill(session.grpc(GetMonthlyBillRequest {
            month: String::new(),
        }))
        .await?
        .into_inner()
        .bill
        .unwrap_or_default();
    let per = |unit: i32| match BillingUnit::try_from(unit) {
        Ok(BillingUnit::TwilioMinutes | BillingUnit::RecordedMinutes) => "per minute",
        _ => "per million",
    };
    Ok(Bill {
        rows: b
            .lines
            .iter()
            .map(|l| BillRow {
                unit: unit_label(l.unit),
                quantity: l.quantity,
                unit_price: format!("{} {}", money(l.unit_price, &b.currency), per(l.unit)),
                amount: money(l.amount, &b.currency),
            })
            .collect(),
        total: money(b.total, &b.currency),
        cap: if b.cap_minutes > 0 {
            format!(
                "{} of {} minutes ({} %)",
                b.minutes_used, b.cap_minutes, b.cap_percent_used
            )
        } else {
            "no cap".into()
        },
        package: if b.package.is_empty() {
            "none".into()
        } else {
            b.package
        },
        month: b.month,
    })
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    layout: Layout,
    months: Vec<Month>,
    chart: Chart,
    bill: Bill,
}

async fn page(State(portal): State<Arc<Portal>>, owner: Owner) -> Result<Response, PageError> {
    let months = months(&portal, &owner).await?;
    let chart = Chart::new(
        "Billed minutes per month, last 12 months",
        months
            .iter()
            .map(|m| (m.label.clone(), m.minutes))
            .collect(),
    );
    let bill = bill(&portal, &owner).await?;
    Ok(render(&UsagePage {
        layout: owner.layout("Usage", NavItem::Usage),
        months,
        chart,
        bill,
    }))
}

async fn csv(State(portal): State<Arc<Portal>>, owner: Owner) -> Result<Response, PageError> {
    let months = months(&portal, &owner).await?;
    let mut body = String::from("month,calls,minutes\r\n");
    for m in &months {
        body.push_str(&format!("{},{},{}\r\n", m.label, m.calls, m.minutes));
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"usage.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// This month's bill as CSV (media-svc's RFC 4180 text), downloaded as a file.
async fn bill_csv(State(portal): State<Arc<Portal>>, owner: Owner) -> Result<Response, PageError> {
    let mut billing = BillingServiceClient::new(portal.channels().media.clone());
    let export = billing
        .export_monthly_bill(owner.grpc(ExportMonthlyBillRequest {
            month: String::new(),
        }))
        .await?
        .into_inner();
    // The file name is media-svc's `usage-YYYY-MM.csv`; anything else falls back to a fixed one.
    let name = if export
        .filename
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
    {
        export.filename
    } else {
        "bill.csv".to_owned()
    };
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment; filename=\"bill.csv\""));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        export.csv,
    )
        .into_response())
}
