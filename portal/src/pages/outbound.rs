//! `/portal/outbound` (owners): what the business's website may do with the public
//! `POST /v1/calls` endpoint. Allowed origins, the regions calls may dial, the calls per hour
//! and whether the agent greets first (tenant-svc `UpdateOutboundSettings`, which validates
//! every value: a refused one is this page again with status 400 naming the field, nothing
//! stored), and the website token: an API key with only `media:outbound` (tenant-svc
//! `TeamService.CreateApiKey`), shown once on the answer page.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use mesh::api::tenant::team_service_client::TeamServiceClient;
use mesh::api::tenant::{
    CreateApiKeyRequest, GetOutboundSettingsRequest, OutboundSettings,
    UpdateOutboundSettingsRequest,
};
use mesh::identity::scope;

use super::settings_page::{self, Saved, SettingsPage};
use crate::layout::render_with;
use crate::{CsrfForm, Layout, NavItem, Owner, PageError, Portal};

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/outbound", get(show).post(save))
        .route("/portal/outbound/website-token", post(website_token))
}

/// What the form shows.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct OutboundForm {
    /// One origin per line.
    #[serde(default)]
    cors_origins: String,
    /// Region codes separated by commas, spaces or lines.
    #[serde(default)]
    allowed_regions: String,
    #[serde(default)]
    public_calls_per_hour: String,
    /// The checkbox: present when ticked.
    greet_first_outbound: Option<String>,
}

impl OutboundForm {
    fn of(s: &OutboundSettings) -> OutboundForm {
        OutboundForm {
            cors_origins: s.cors_origins.join("\n"),
            allowed_regions: s.allowed_regions.join(", "),
            public_calls_per_hour: s.public_calls_per_hour.to_string(),
            greet_first_outbound: s.greet_first_outbound.then(|| "on".into()),
        }
    }

    /// As an update of the four fields; a count that is not a number is refused here, naming it.
    fn settings(&self) -> Result<OutboundSettings, String> {
        let list = |s: &str, seps: &[char]| -> Vec<String> {
            s.split(seps)
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let per_hour = self.public_calls_per_hour.trim();
        let public_calls_per_hour = per_hour.parse().map_err(|_| {
            format!("public_calls_per_hour: must be a whole number, got {per_hour:?}")
        })?;
        Ok(OutboundSettings {
            cors_origins: list(&self.cors_origins, &['\n', '\r']),
            allowed_regions: list(&self.allowed_regions, &[',', ' ', '\n', '\r'])
                .into_iter()
                .map(|r| r.to_ascii_uppercase())
                .collect(),
            public_calls_per_hour,
            greet_first_outbound: self.greet_first_outbound.is_some(),
            ..Default::default()
        })
    }
}

#[derive(Template)]
#[template(path = "outbound.html")]
struct OutboundPage {
    layout: Layout,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<String>,
    form: OutboundForm,
    /// The new website token, on its answer page only.
    new_token: Option<String>,
}

impl OutboundPage {
    fn error_names(&self, field: &str) -> bool {
        self.error.as_deref().is_some_and(|e| e.contains(field))
    }

    fn greet_first(&self) -> bool {
        self.form.greet_first_outbound.is_some()
    }
}

async fn page(portal: &Portal, owner: &Owner) -> Result<OutboundPage, PageError> {
    let settings = portal
        .tenant()
        .get_outbound_settings(owner.grpc(GetOutboundSettingsRequest {}))
        .await?
        .into_inner()
        .settings
        .unwrap_or_default();
    Ok(OutboundPage {
        layout: owner.layout("Outbound calls", NavItem::Outbound),
        csrf: owner.csrf().to_owned(),
        notice: None,
        error: None,
        form: OutboundForm::of(&settings),
        new_token: None,
    })
}

impl SettingsPage for OutboundPage {
    type Form = OutboundForm;

    fn set_notice(&mut self, notice: &'static str) {
        self.notice = Some(notice);
    }

    fn refused(&mut self, form: OutboundForm, error: String) {
        self.form = form;
        self.error = Some(error);
    }
}

async fn show(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Query(saved): Query<Saved>,
) -> Result<Response, PageError> {
    Ok(settings_page::show(page(&portal, &owner).await?, &saved))
}

async fn save(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    CsrfForm(form): CsrfForm<OutboundForm>,
) -> Result<Response, PageError> {
    let (portal, owner) = (&portal, &owner);
    let checked = form.settings();
    let update = |settings| async move {
        let request = UpdateOutboundSettingsRequest {
            settings: Some(settings),
            update_mask: Some(prost_types::FieldMask {
                paths: [
                    "cors_origins",
                    "allowed_regions",
                    "public_calls_per_hour",
                    "greet_first_outbound",
                ]
                .map(str::to_owned)
                .to_vec(),
            }),
        };
        portal
            .tenant()
            .update_outbound_settings(owner.grpc(request))
            .await?;
        tracing::info!(
            customer_id = owner.customer_id(),
            "outbound settings saved from the portal"
        );
        Ok(())
    };
    let load = || page(portal, owner);
    settings_page::save(form, checked, update, load, "/portal/outbound").await
}

#[derive(Debug, serde::Deserialize)]
struct TokenForm {
    #[serde(default)]
    name: String,
}

/// Creates the website token (an API key with `media:outbound` only) and shows it once.
async fn website_token(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    CsrfForm(form): CsrfForm<TokenForm>,
) -> Result<Response, PageError> {
    let name = match form.name.trim() {
        "" => format!("website {}", chrono::Utc::now().format("%Y-%m-%d %H:%M")),
        n => n.to_owned(),
    };
    let mut team = TeamServiceClient::new(portal.channels().tenant.clone());
    let created = team
        .create_api_key(owner.grpc(CreateApiKeyRequest {
            name,
            scopes: vec![scope::MEDIA_OUTBOUND.to_owned()],
            max_token_ttl: None,
        }))
        .await;
    let mut p = page(&portal, &owner).await?;
    match created {
        Ok(r) => {
            tracing::info!(
                customer_id = owner.customer_id(),
                "website token created from the portal"
            );
            p.new_token = Some(r.into_inner().secret);
            // Shown once; every portal page is `no-store` (security::headers).
            Ok(render_with(StatusCode::OK, &p))
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            p.error = Some(s.message().to_owned());
            Ok(render_with(StatusCode::BAD_REQUEST, &p))
        }
        Err(s) => Err(s.into()),
    }
}
