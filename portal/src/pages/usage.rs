//! `/portal/usage` (owners): calls and billed minutes per month for the last 12 months
//! (media-svc `GetUsage`, one month each), as a table, a chart and a CSV download
//! (`/portal/usage.csv`).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Datelike as _;
use mesh::api::media::GetUsageRequest;

use super::data::{self, Chart};
use crate::{Layout, NavItem, Owner, PageError, Portal, Session, render};

/// Months shown.
const MONTHS: u32 = 12;

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/usage", get(page))
        .route("/portal/usage.csv", get(csv))
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

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    layout: Layout,
    months: Vec<Month>,
    chart: Chart,
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
    Ok(render(&UsagePage {
        layout: owner.layout("Usage", NavItem::Usage),
        months,
        chart,
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
