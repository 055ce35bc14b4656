//! The signed-in pages, one module each, registered here with one line each. A page module
//! exposes `routes() -> Router<Arc<Portal>>`; its handlers take [`crate::Session`] (any role) or
//! [`crate::Owner`] (owners only) and, for a POST, [`crate::CsrfForm`]; its template
//! (`templates/<page>.html`) extends `base.html` with a `layout` from `Session::layout`.

use std::sync::Arc;

use crate::Portal;

pub mod agent;
pub mod audit;
pub mod call_handling;
pub mod callers;
pub mod calls;
pub mod data;
pub mod home;
pub mod messages;
pub mod numbers;
pub mod outbound;
pub mod recording;
pub mod security;
pub mod settings_page;
pub mod shown_once;
pub mod team;
pub mod tokens;
pub mod usage;
pub mod webhooks;

/// Every signed-in page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .merge(home::routes())
        .merge(calls::routes())
        .merge(messages::routes())
        .merge(recording::routes())
        .merge(callers::routes())
        .merge(usage::routes())
        .merge(numbers::routes())
        .merge(security::routes())
        .merge(agent::routes())
        .merge(webhooks::routes())
        .merge(outbound::routes())
        .merge(call_handling::routes())
        .merge(tokens::routes())
        .merge(team::routes())
}
