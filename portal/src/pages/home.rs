//! `/portal/`: the signed-in start page. A placeholder naming the user and the business until
//! the dashboard replaces it (no figures it cannot back).

use std::sync::Arc;

use askama::Template;
use axum::response::Response;
use axum::routing::get;

use crate::{Layout, NavItem, Portal, Session, render};

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new().route("/portal/", get(home))
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    email: String,
    business: String,
    role: &'static str,
}

async fn home(session: Session) -> Response {
    render(&HomePage {
        layout: session.layout("Dashboard", NavItem::Dashboard),
        email: session.email().to_owned(),
        business: session.business_name().to_owned(),
        role: session.role().as_str(),
    })
}
