//! `/portal/webhooks` (owners): where post-call events go and how their delivery went. The URL
//! (tenant-svc `UpdateOutboundSettings`), the signing secret's rotation (`RotateWebhookSecret`:
//! the new secret is on the answer page once, never stored by the portal and never shown
//! again), recent deliveries with attempts and the receiver's last HTTP status (media-svc
//! `ListWebhookDeliveries`), and dead letters with a replay button (`ListDeadLetters`,
//! `RedeliverDeadLetter`). Event ids in URLs are the events' UUIDs; another tenant's is a 404.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mesh::api::media::{
    ListDeadLettersRequest, ListWebhookDeliveriesRequest, RedeliverDeadLetterRequest,
    WebhookDeliveryState,
};
use mesh::api::tenant::{
    GetOutboundSettingsRequest, OutboundSettings, RotateWebhookSecretRequest,
    UpdateOutboundSettingsRequest,
};

use crate::layout::render_with;
use crate::{CsrfForm, Layout, NavItem, Owner, PageError, Portal};

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/webhooks", get(show).post(save))
        .route("/portal/webhooks/rotate", post(rotate))
        .route(
            "/portal/webhooks/dead-letters/{event_id}/replay",
            post(replay),
        )
}

/// Rows per list.
const ROWS: i32 = 25;

/// A time as the page shows it.
fn when(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

struct DeliveryRow {
    call_sid: String,
    state: &'static str,
    attempts: i32,
    response: String,
    error: String,
    created: String,
    last_attempt: String,
}

struct DeadRow {
    event_id: String,
    call_sid: String,
    attempts: i32,
    error: String,
    created: String,
    dead: String,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    layout: Layout,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<String>,
    webhook_url: String,
    raw_numbers: bool,
    has_secret: bool,
    /// The new secret, on the rotation's answer page only.
    new_secret: Option<String>,
    deliveries: Vec<DeliveryRow>,
    more_deliveries: Option<String>,
    dead_letters: Vec<DeadRow>,
}

#[derive(Debug, serde::Deserialize)]
struct Params {
    saved: Option<String>,
    replayed: Option<String>,
    /// Page token of the deliveries list.
    after: Option<String>,
}

async fn load(
    portal: &Portal,
    owner: &Owner,
    after: Option<String>,
) -> Result<WebhooksPage, PageError> {
    let settings = portal
        .tenant()
        .get_outbound_settings(owner.grpc(GetOutboundSettingsRequest {}))
        .await?
        .into_inner();
    let mut media = portal.media();
    let deliveries = media
        .list_webhook_deliveries(owner.grpc(ListWebhookDeliveriesRequest {
            page_size: ROWS,
            page_token: after.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    let dead = media
        .list_dead_letters(owner.grpc(ListDeadLettersRequest {
            page_size: ROWS,
            page_token: String::new(),
        }))
        .await?
        .into_inner();
    let s = settings.settings.unwrap_or_default();
    Ok(WebhooksPage {
        layout: owner.layout("Webhooks", NavItem::Webhooks),
        csrf: owner.csrf().to_owned(),
        notice: None,
        error: None,
        webhook_url: s.webhook_url,
        raw_numbers: s.webhook_raw_numbers,
        has_secret: settings.has_webhook_secret,
        new_secret: None,
        deliveries: deliveries
            .deliveries
            .into_iter()
            .map(|d| DeliveryRow {
                state: match d.state() {
                    WebhookDeliveryState::Delivered => "Delivered",
                    WebhookDeliveryState::Dead => "Failed (dead letter)",
                    _ => "Pending",
                },
                response: match d.last_response_code {
                    0 => "no answer".into(),
                    code => code.to_string(),
                },
                created: when(d.create_time.as_ref()),
                last_attempt: when(d.last_attempt_time.as_ref()),
                call_sid: d.call_sid,
                attempts: d.attempts,
                error: d.last_error,
            })
            .collect(),
        more_deliveries: Some(deliveries.next_page_token).filter(|t| !t.is_empty()),
        dead_letters: dead
            .dead_letters
            .into_iter()
            .map(|d| DeadRow {
                created: when(d.create_time.as_ref()),
                dead: when(d.dead_time.as_ref()),
                event_id: d.event_id,
                call_sid: d.call_sid,
                attempts: d.attempts,
                error: d.last_error,
            })
            .collect(),
    })
}

async fn show(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Query(q): Query<Params>,
) -> Result<Response, PageError> {
    let mut page = load(&portal, &owner, q.after).await?;
    page.notice = match (q.saved, q.replayed) {
        (Some(_), _) => Some("Saved."),
        (_, Some(_)) => Some("The event is queued for delivery again."),
        _ => None,
    };
    Ok(render_with(StatusCode::OK, &page))
}

#[derive(Debug, serde::Deserialize)]
struct UrlForm {
    webhook_url: String,
    /// The checkbox: present when ticked.
    webhook_raw_numbers: Option<String>,
}

/// Saves the URL and whether events carry raw caller numbers.
async fn save(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    CsrfForm(form): CsrfForm<UrlForm>,
) -> Result<Response, PageError> {
    let request = UpdateOutboundSettingsRequest {
        settings: Some(OutboundSettings {
            webhook_url: form.webhook_url.trim().to_owned(),
            webhook_raw_numbers: form.webhook_raw_numbers.is_some(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["webhook_url".into(), "webhook_raw_numbers".into()],
        }),
    };
    match portal
        .tenant()
        .update_outbound_settings(owner.grpc(request))
        .await
    {
        Ok(_) => {
            tracing::info!(
                customer_id = owner.customer_id(),
                "webhook settings saved from the portal"
            );
            Ok(Redirect::to("/portal/webhooks?saved=1").into_response())
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            let mut page = load(&portal, &owner, None).await?;
            page.webhook_url = form.webhook_url;
            page.error = Some(s.message().to_owned());
            Ok(render_with(StatusCode::BAD_REQUEST, &page))
        }
        Err(s) => Err(s.into()),
    }
}

/// Rotates the signing secret and shows the new one, once (the answer is not cached).
async fn rotate(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    CsrfForm(_): CsrfForm<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let rotated = portal
        .tenant()
        .rotate_webhook_secret(owner.grpc(RotateWebhookSecretRequest { overlap: None }))
        .await?
        .into_inner();
    tracing::info!(
        customer_id = owner.customer_id(),
        "webhook secret rotated from the portal"
    );
    let mut page = load(&portal, &owner, None).await?;
    page.new_secret = Some(rotated.secret);
    page.has_secret = true;
    // Shown once; every portal page is `no-store` (security::headers).
    Ok(render_with(StatusCode::OK, &page))
}

/// Queues a dead letter again. An id that is not one of this tenant's dead letters is the 404
/// page; a malformed one too (nothing to tell apart).
async fn replay(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Path(event_id): Path<String>,
    CsrfForm(_): CsrfForm<HashMap<String, String>>,
) -> Result<Response, PageError> {
    if uuid::Uuid::parse_str(&event_id).is_err() {
        return Err(PageError::NotFound);
    }
    portal
        .media()
        .redeliver_dead_letter(owner.grpc(RedeliverDeadLetterRequest {
            event_id: event_id.clone(),
        }))
        .await?;
    tracing::info!(customer_id = owner.customer_id(), %event_id, "dead letter replayed from the portal");
    Ok(Redirect::to("/portal/webhooks?replayed=1").into_response())
}
