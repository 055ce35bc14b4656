//! `/portal/`: the dashboard. Calls today and this week, minutes this month and calls in
//! progress (media-svc `GetCallStats`, counted in the tenant's time zone), a 30-day
//! calls-per-day chart drawn as SVG on the server with a table as its text alternative, and
//! the last calls (numbers masked), and the count of open messages (callback tasks) linking to
//! the inbox, so an owner notices them.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use mesh::api::media::{GetCallStatsRequest, ListCallsRequest};

use super::calls::CallRow;
use super::data::{self, Chart};
use crate::{Layout, NavItem, PageError, Portal, Session, render};

/// Calls the dashboard lists.
const LAST_CALLS: i32 = 8;

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new().route("/portal/", get(home))
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    business: String,
    time_zone: String,
    calls_today: i64,
    calls_this_week: i64,
    minutes_this_month: i64,
    calls_in_progress: i64,
    /// Open messages.
    open_messages: i64,
    chart: Chart,
    calls: Vec<CallRow>,
}

async fn home(State(portal): State<Arc<Portal>>, session: Session) -> Result<Response, PageError> {
    let tz = data::time_zone(&portal, &session).await?;
    let mut media = portal.media();
    let mut media2 = portal.media();
    let (stats, last, open_messages) = tokio::try_join!(
        async {
            media
                .get_call_stats(session.grpc(GetCallStatsRequest {
                    time_zone: tz.name().to_owned(),
                }))
                .await
                .map_err(PageError::from)
        },
        async {
            media2
                .list_calls(session.grpc(ListCallsRequest {
                    page_size: LAST_CALLS,
                    ..Default::default()
                }))
                .await
                .map_err(PageError::from)
        },
        super::messages::open_count(&portal, &session),
    )?;
    let stats = stats.into_inner();
    let chart = Chart::new(
        "Calls per day, last 30 days",
        stats
            .days
            .iter()
            .map(|d| (d.date.clone(), d.calls))
            .collect(),
    );
    Ok(render(&HomePage {
        layout: session.layout("Dashboard", NavItem::Dashboard),
        business: session.business_name().to_owned(),
        time_zone: tz.name().to_owned(),
        calls_today: stats.calls_today,
        calls_this_week: stats.calls_this_week,
        minutes_this_month: stats.minutes_this_month,
        calls_in_progress: stats.calls_in_progress,
        open_messages,
        chart,
        calls: last
            .into_inner()
            .calls
            .iter()
            .map(|c| CallRow::new(c, tz))
            .collect(),
    }))
}
