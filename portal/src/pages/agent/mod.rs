//! `/portal/agent` (owners): the receptionist's settings. Agent name, the two greetings, voice,
//! time zone, the 30 sliders (with the product's presets, platform defaults marked) and transfer
//! rules, in one form; "Preview" renders the unsaved form through media-svc's
//! `RenderInstructions` (the function calls use, tenant-svc validating the draft), "Save" sends
//! only the fields that differ from what the agent runs with now to `UpdateAgentConfig`. The
//! instructions preview is exactly what a call would send. The change history lists what
//! changed, with a revert per agent or slider entry (`RevertConfigChange`).
//!
//! Nothing here is decided by the portal: every value is validated by tenant-svc (an invalid one
//! is the page again with status 400 and the field named), and nothing is stored by a preview.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mesh::api::media::{ExampleCaller, RenderInstructionsRequest, RenderInstructionsResponse};
use mesh::api::tenant::{
    AgentConfig, ConfigChange, GetEffectiveProfileRequest, ListConfigHistoryRequest,
    PlatformDefaults, RevertConfigChangeRequest, UpdateAgentConfigRequest,
};
use mesh::domain::{SLIDER_NAMES, Voice};

mod form;

pub use form::PRESETS;
use form::Values;

use crate::layout::render_with;
use crate::{CsrfForm, Layout, NavItem, Owner, PageError, Portal};

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/agent", get(show).post(submit))
        .route("/portal/agent/history/{id}/revert", post(revert))
}

/// History entries shown.
const HISTORY_ROWS: i32 = 25;

/// One slider as the page shows it.
struct SliderRow {
    name: &'static str,
    value: String,
    /// The value as a number (the range input's position; 50 when the text is not a number).
    position: u32,
    default: u32,
    /// Whether the value shown is the platform default.
    is_default: bool,
    /// Whether the error names this slider.
    invalid: bool,
}

/// One history entry.
struct HistoryRow {
    id: i64,
    when: String,
    field: String,
    old: String,
    new: String,
    by: String,
    revertable: bool,
}

/// The preview box.
struct PreviewBox {
    /// Whether it shows the unsaved form (else the saved configuration).
    draft: bool,
    greeting_new_caller: String,
    greeting_returning_caller: String,
    voice: String,
    instructions: String,
}

#[derive(Template)]
#[template(path = "agent.html")]
struct AgentPage {
    layout: Layout,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<String>,
    values: Values,
    defaults: PlatformDefaults,
    voices: Vec<(&'static str, bool)>,
    sliders: Vec<SliderRow>,
    presets: Vec<&'static str>,
    preview: Option<PreviewBox>,
    history: Vec<HistoryRow>,
}

impl AgentPage {
    fn error_names(&self, field: &str) -> bool {
        self.error.as_deref().is_some_and(|e| e.contains(field))
    }
}

/// What the page reads: the effective profile and the platform defaults, and the history.
struct Current {
    values: Values,
    defaults: PlatformDefaults,
    history: Vec<ConfigChange>,
}

async fn load(portal: &Portal, owner: &Owner) -> Result<Current, PageError> {
    let mut tenant = portal.tenant();
    let profile = tenant
        .get_effective_profile(owner.grpc(GetEffectiveProfileRequest::default()))
        .await?
        .into_inner();
    let history = tenant
        .list_config_history(owner.grpc(ListConfigHistoryRequest {
            page_size: HISTORY_ROWS,
            page_token: String::new(),
        }))
        .await?
        .into_inner()
        .changes;
    let (Some(profile), Some(defaults)) = (profile.profile, profile.defaults) else {
        tracing::error!(
            customer_id = owner.customer_id(),
            "GetEffectiveProfile answered without a profile"
        );
        return Err(PageError::Internal);
    };
    Ok(Current {
        values: Values::of(&profile),
        defaults,
        history,
    })
}

/// The preview of `draft` (the saved configuration when `None`).
async fn preview(
    portal: &Portal,
    owner: &Owner,
    draft: Option<(AgentConfig, Vec<String>)>,
) -> Result<RenderInstructionsResponse, tonic::Status> {
    let (draft, mask) = draft.unzip();
    let request = RenderInstructionsRequest {
        draft,
        draft_mask: mask.map(|paths| prost_types::FieldMask { paths }),
        example_caller: ExampleCaller::New.into(),
        example_caller_name: String::new(),
        time: None,
    };
    portal
        .media()
        .render_instructions(owner.grpc(request))
        .await
        .map(tonic::Response::into_inner)
}

fn preview_box(r: RenderInstructionsResponse, draft: bool) -> PreviewBox {
    PreviewBox {
        draft,
        greeting_new_caller: r.greeting_new_caller,
        greeting_returning_caller: r.greeting_returning_caller,
        voice: r.voice,
        instructions: r.instructions,
    }
}

/// A history value as text: a JSON string unquoted, anything else as JSON, "(platform default)"
/// when unset.
fn history_value(json: &str) -> String {
    if json.is_empty() {
        return "(platform default)".into();
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => json.to_owned(),
    }
}

fn page(
    owner: &Owner,
    current: Current,
    values: Values,
    preview: Option<PreviewBox>,
    notice: Option<&'static str>,
    error: Option<String>,
) -> AgentPage {
    let d = &current.defaults;
    let sliders = SLIDER_NAMES
        .iter()
        .map(|name| {
            let default = d.sliders.get(*name).copied().unwrap_or(50);
            let value = values
                .sliders
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let position = values.slider(name).unwrap_or(50).min(100);
            SliderRow {
                name,
                is_default: values.slider(name) == Some(default),
                invalid: error
                    .as_deref()
                    .is_some_and(|e| e.contains(&format!("sliders.{name}"))),
                value,
                position,
                default,
            }
        })
        .collect();
    let voices = Voice::ALL
        .iter()
        .map(|v| (v.as_str(), v.as_str() == values.voice))
        .collect();
    let history = current
        .history
        .iter()
        .map(|c| HistoryRow {
            id: c.id,
            when: c
                .change_time
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default(),
            field: c.config_key.clone(),
            old: history_value(&c.old_value_json),
            new: history_value(&c.new_value_json),
            by: c.changed_by.clone(),
            revertable: c.config_type == "agent" || c.config_type == "slider",
        })
        .collect();
    AgentPage {
        layout: owner.layout("Agent", NavItem::Agent),
        csrf: owner.csrf().to_owned(),
        notice,
        error,
        defaults: current.defaults,
        voices,
        sliders,
        presets: PRESETS.iter().map(|(n, _)| *n).collect(),
        preview,
        history,
        values,
    }
}

/// `?saved` / `?reverted` after a redirect.
#[derive(Debug, serde::Deserialize)]
struct Notice {
    saved: Option<String>,
    reverted: Option<String>,
}

async fn show(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Query(q): Query<Notice>,
) -> Result<Response, PageError> {
    let current = load(&portal, &owner).await?;
    let saved = preview(&portal, &owner, None).await?;
    let notice = match (q.saved, q.reverted) {
        (Some(_), _) => Some("Saved. The next call uses these settings."),
        (_, Some(_)) => Some("Reverted. The next call uses the previous value."),
        _ => None,
    };
    let values = current.values.clone();
    Ok(render_with(
        StatusCode::OK,
        &page(
            &owner,
            current,
            values,
            Some(preview_box(saved, false)),
            notice,
            None,
        ),
    ))
}

/// The form: `action` = `preview` (the default) or `save`; a `preset` button (a preset's name)
/// sets its sliders in the form and previews.
async fn submit(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let current = load(&portal, &owner).await?;
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut values = Values::from_form(&form, &current.values);
    let action = field("action").unwrap_or("preview");
    if let Some(name) = field("preset") {
        values = values
            .with_preset(name)
            .ok_or_else(|| PageError::BadRequest(format!("preset: unknown preset {name:?}")))?;
    }
    let refused = |values: Values, current: Current, message: String| {
        tracing::info!(
            customer_id = owner.customer_id(),
            "agent settings refused (invalid field)"
        );
        render_with(
            StatusCode::BAD_REQUEST,
            &page(&owner, current, values, None, None, Some(message)),
        )
    };
    let (config, mask) = match values.draft(&current.values) {
        Ok(d) => d,
        Err(message) => return Ok(refused(values, current, message)),
    };
    if action == "save" {
        if mask.is_empty() {
            return Ok(Redirect::to("/portal/agent?saved=1").into_response());
        }
        let request = UpdateAgentConfigRequest {
            config: Some(config),
            update_mask: Some(prost_types::FieldMask { paths: mask }),
        };
        return match portal
            .tenant()
            .update_agent_config(owner.grpc(request))
            .await
        {
            Ok(_) => {
                tracing::info!(
                    customer_id = owner.customer_id(),
                    "agent settings saved from the portal"
                );
                Ok(Redirect::to("/portal/agent?saved=1").into_response())
            }
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                Ok(refused(values, current, s.message().to_owned()))
            }
            Err(s) => Err(s.into()),
        };
    }
    let draft = (!mask.is_empty()).then_some((config, mask));
    let is_draft = draft.is_some();
    match preview(&portal, &owner, draft).await {
        Ok(r) => Ok(render_with(
            StatusCode::OK,
            &page(
                &owner,
                current,
                values,
                Some(preview_box(r, is_draft)),
                None,
                None,
            ),
        )),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            Ok(refused(values, current, s.message().to_owned()))
        }
        Err(s) => Err(s.into()),
    }
}

/// Reverts one history entry; another tenant's id is the 404 page (tenant-svc answers NOT_FOUND
/// and the page says nothing more).
async fn revert(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<HashMap<String, String>>,
) -> Result<Response, PageError> {
    portal
        .tenant()
        .revert_config_change(owner.grpc(RevertConfigChangeRequest { change_id: id }))
        .await?;
    tracing::info!(
        customer_id = owner.customer_id(),
        change_id = id,
        "agent setting reverted from the portal"
    );
    Ok(Redirect::to("/portal/agent?reverted=1").into_response())
}
