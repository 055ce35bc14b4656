//! `/portal/tokens` (owners only): the business's API keys for its developers. Create one (a
//! name, scopes from the developer set as checkboxes, the lifetime of the tokens it exchanges
//! for); its secret is shown once, on the answer to the form, and never again; the list shows
//! each key's hint, scopes, last use and state; revoke (the key stops at once, the tokens it
//! gave within a minute). Every action is tenant-svc's `TeamService` with the session's tenant
//! token (scope `tenant:keys`).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mesh::api::tenant::team_service_client::TeamServiceClient;
use mesh::api::tenant::{ApiKey, CreateApiKeyRequest, ListApiKeysRequest, RevokeApiKeyRequest};
use mesh::identity::scope;
use serde::Deserialize;
use tonic::transport::Channel;

use super::security::when;
use super::shown_once::{Done, ShownOnce, View};
use crate::layout::render_with;
use crate::{CsrfForm, Layout, NavItem, Owner, PageError, Portal};

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/tokens", get(page).post(create))
        .route("/portal/tokens/{id}/revoke", post(revoke))
}

/// Each developer scope, its form field and what it lets a developer do.
const SCOPES: &[(&str, &str, &str)] = &[
    (
        scope::TENANT_READ,
        "scope_tenant_read",
        "Read the business's profile and settings",
    ),
    (
        scope::MEMORY_READ,
        "scope_memory_read",
        "Read what the receptionist remembers about callers",
    ),
    (
        scope::MEMORY_WRITE,
        "scope_memory_write",
        "Add to callers' memory",
    ),
    (
        scope::MEDIA_READ,
        "scope_media_read",
        "Read calls and transcripts",
    ),
    (
        scope::MEDIA_OUTBOUND,
        "scope_media_outbound",
        "Place outbound calls",
    ),
];

/// The lifetimes offered, in minutes (the first is the default).
const LIFETIMES: &[u32] = &[15, 5, 30, 60];

/// A scope as the form shows it.
pub struct ScopeOption {
    /// The scope's name.
    pub name: &'static str,
    /// Its form field.
    pub field: &'static str,
    /// What it allows.
    pub label: &'static str,
    /// Whether it is ticked.
    pub checked: bool,
}

/// One key as the table shows it.
pub struct KeyRow {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `nsk_` and the secret's last 4 characters.
    pub hint: String,
    /// Its scopes, space-separated.
    pub scopes: String,
    /// Token lifetime in minutes.
    pub minutes: i64,
    /// When it was created.
    pub created: String,
    /// Its last exchange ("Never" when none).
    pub last_used: String,
    /// When it was revoked; `None` while active.
    pub revoked: Option<String>,
}

impl KeyRow {
    fn from_key(k: ApiKey) -> KeyRow {
        KeyRow {
            minutes: k.max_token_ttl.map_or(0, |d| d.seconds / 60),
            created: when(k.create_time.as_ref()),
            last_used: k
                .last_use_time
                .as_ref()
                .map_or_else(|| "Never".to_owned(), |t| when(Some(t))),
            revoked: k.revoke_time.as_ref().map(|t| when(Some(t))),
            scopes: k.scopes.join(" "),
            id: k.id,
            name: k.name,
            hint: k.hint,
        }
    }
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    layout: Layout,
    csrf: String,
    view: View,
    name: String,
    scopes: Vec<ScopeOption>,
    lifetimes: Vec<(u32, bool)>,
    keys: Vec<KeyRow>,
}

fn team(portal: &Portal) -> TeamServiceClient<Channel> {
    TeamServiceClient::new(portal.channels().tenant.clone())
}

/// What the form held (to show it again after a refusal).
#[derive(Debug, Default, Deserialize)]
struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    minutes: Option<u32>,
    scope_tenant_read: Option<String>,
    scope_memory_read: Option<String>,
    scope_memory_write: Option<String>,
    scope_media_read: Option<String>,
    scope_media_outbound: Option<String>,
}

impl CreateForm {
    fn ticked(&self, field: &str) -> bool {
        match field {
            "scope_tenant_read" => self.scope_tenant_read.is_some(),
            "scope_memory_read" => self.scope_memory_read.is_some(),
            "scope_memory_write" => self.scope_memory_write.is_some(),
            "scope_media_read" => self.scope_media_read.is_some(),
            "scope_media_outbound" => self.scope_media_outbound.is_some(),
            _ => false,
        }
    }

    fn scopes(&self) -> Vec<String> {
        SCOPES
            .iter()
            .filter(|(_, field, _)| self.ticked(field))
            .map(|(name, _, _)| (*name).to_owned())
            .collect()
    }
}

async fn render_page(
    portal: &Portal,
    owner: &Owner,
    form: &CreateForm,
    view: View,
    status: StatusCode,
) -> Result<Response, PageError> {
    let keys = team(portal)
        .list_api_keys(owner.grpc(ListApiKeysRequest {}))
        .await?
        .into_inner()
        .keys
        .into_iter()
        .map(KeyRow::from_key)
        .collect();
    let minutes = form.minutes.unwrap_or(LIFETIMES[0]);
    let page = TokensPage {
        layout: owner.layout("API keys", NavItem::Tokens),
        csrf: owner.csrf().to_owned(),
        view,
        name: form.name.clone(),
        scopes: SCOPES
            .iter()
            .map(|(name, field, label)| ScopeOption {
                name,
                field,
                label,
                checked: form.ticked(field),
            })
            .collect(),
        lifetimes: LIFETIMES.iter().map(|m| (*m, *m == minutes)).collect(),
        keys,
    };
    // A secret in `view` is shown this once (`shown_once`).
    Ok(render_with(status, &page))
}

async fn page(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let view = View::after(
        &done,
        &[(
            "revoked",
            "The key was revoked. Tokens it gave stop working within a minute.",
        )],
    );
    render_page(
        &portal,
        &owner,
        &CreateForm::default(),
        view,
        StatusCode::OK,
    )
    .await
}

/// A refusal of the form as the sentence the page shows.
fn problem(status: &tonic::Status) -> Option<String> {
    let m = status.message();
    match status.code() {
        tonic::Code::AlreadyExists => Some("An active key already has this name.".into()),
        tonic::Code::InvalidArgument if m.starts_with("scopes") => {
            Some("Choose at least one permission.".into())
        }
        tonic::Code::InvalidArgument if m.starts_with("name") => {
            Some("Give the key a name of 1 to 60 characters.".into())
        }
        tonic::Code::InvalidArgument if m.starts_with("max_token_ttl") => {
            Some("Choose a token lifetime from the list.".into())
        }
        _ => None,
    }
}

async fn create(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> Result<Response, PageError> {
    let minutes = form.minutes.unwrap_or(LIFETIMES[0]);
    let request = CreateApiKeyRequest {
        name: form.name.clone(),
        scopes: form.scopes(),
        max_token_ttl: Some(prost_types::Duration {
            seconds: i64::from(minutes) * 60,
            nanos: 0,
        }),
    };
    match team(&portal).create_api_key(owner.grpc(request)).await {
        Ok(r) => {
            let r = r.into_inner();
            let name = r.key.map(|k| k.name).unwrap_or_default();
            tracing::info!(
                customer_id = owner.customer_id(),
                user_id = owner.user_id(),
                "API key created in the portal"
            );
            let view = View::created(ShownOnce {
                heading: format!("Your new key “{name}”"),
                heading_id: "secret-heading",
                advice: "Copy it now: this is the only time it is shown. If it is lost, revoke \
                         it and create another.",
                secret: r.secret,
                secret_id: "new-secret",
            });
            render_page(
                &portal,
                &owner,
                &CreateForm::default(),
                view,
                StatusCode::OK,
            )
            .await
        }
        Err(e) => match problem(&e) {
            Some(error) => {
                let view = View::error(error);
                let status = StatusCode::UNPROCESSABLE_ENTITY;
                render_page(&portal, &owner, &form, view, status).await
            }
            None => Err(e.into()),
        },
    }
}

#[derive(Debug, Deserialize)]
struct Empty {}

async fn revoke(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Path(id): Path<String>,
    CsrfForm(Empty {}): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let request = RevokeApiKeyRequest { key_id: id };
    match team(&portal).revoke_api_key(owner.grpc(request)).await {
        Ok(_) => {}
        // Not a key id at all: nothing of this business by that name either.
        Err(e) if e.code() == tonic::Code::InvalidArgument => return Err(PageError::NotFound),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        customer_id = owner.customer_id(),
        user_id = owner.user_id(),
        "API key revoked in the portal"
    );
    Ok(Redirect::to("/portal/tokens?done=revoked").into_response())
}
