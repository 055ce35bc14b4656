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
    AgentConfig, AgentProfile, ConfigChange, GetEffectiveProfileRequest, ListConfigHistoryRequest,
    PlatformDefaults, RevertConfigChangeRequest, TransferRule, TransferRuleList,
    UpdateAgentConfigRequest,
};
use mesh::domain::{SLIDER_NAMES, Voice};

use crate::layout::render_with;
use crate::{CsrfForm, Layout, NavItem, Owner, PageError, Portal};

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/agent", get(show).post(submit))
        .route("/portal/agent/history/{id}/revert", post(revert))
}

/// The product's slider presets (product.md): name and the sliders they set.
pub const PRESETS: [(&str, [(&str, u32); 3]); 4] = [
    (
        "professional",
        [("warmth", 50), ("empathy", 50), ("directness", 70)],
    ),
    (
        "friendly",
        [("warmth", 80), ("empathy", 75), ("directness", 40)],
    ),
    (
        "assertive",
        [("warmth", 40), ("empathy", 40), ("directness", 85)],
    ),
    (
        "empathetic",
        [("warmth", 75), ("empathy", 90), ("directness", 35)],
    ),
];

/// History entries shown.
const HISTORY_ROWS: i32 = 25;

/// The form's values (what the page shows in its fields).
#[derive(Debug, Clone, PartialEq, Default)]
struct Values {
    agent_name: String,
    greeting_new_caller: String,
    greeting_returning_caller: String,
    voice: String,
    time_zone: String,
    /// Slider values as typed (text: an invalid entry is shown back as it was).
    sliders: Vec<(String, String)>,
    /// One rule per line: `keyword | +number | description`.
    transfer_rules: String,
}

impl Values {
    fn of(p: &AgentProfile) -> Values {
        Values {
            agent_name: p.agent_name.clone(),
            greeting_new_caller: p.greeting_new_caller.clone(),
            greeting_returning_caller: p.greeting_returning_caller.clone(),
            voice: p.voice.clone(),
            time_zone: p.time_zone.clone(),
            sliders: SLIDER_NAMES
                .iter()
                .map(|n| {
                    let v = p.sliders.get(*n).copied().unwrap_or(50);
                    ((*n).to_owned(), v.to_string())
                })
                .collect(),
            transfer_rules: rules_text(&p.transfer_rules),
        }
    }

    /// The posted form; unknown fields are ignored, missing ones keep `current`'s value.
    fn from_form(form: &[(String, String)], current: &Values) -> Values {
        let mut v = current.clone();
        for (k, value) in form {
            match k.as_str() {
                "agent_name" => v.agent_name = value.clone(),
                "greeting_new_caller" => v.greeting_new_caller = value.clone(),
                "greeting_returning_caller" => v.greeting_returning_caller = value.clone(),
                "voice" => v.voice = value.clone(),
                "time_zone" => v.time_zone = value.clone(),
                "transfer_rules" => v.transfer_rules = value.clone(),
                k => {
                    if let Some(name) = k.strip_prefix("slider.")
                        && let Some(slot) = v.sliders.iter_mut().find(|(n, _)| n == name)
                    {
                        slot.1 = value.trim().to_owned();
                    }
                }
            }
        }
        v
    }

    /// The draft: the fields that differ from `current`, as an update and its mask. An entry
    /// the portal cannot even read (a slider that is not a whole number, a rule line without
    /// its parts) is refused here, naming the field like tenant-svc would.
    fn draft(&self, current: &Values) -> Result<(AgentConfig, Vec<String>), String> {
        let mut c = AgentConfig::default();
        let mut mask = Vec::new();
        let mut text = |new: &str, old: &str, path: &str, slot: &mut Option<String>| {
            if new != old {
                *slot = Some(new.to_owned());
                mask.push(path.to_owned());
            }
        };
        text(
            &self.agent_name,
            &current.agent_name,
            "agent_name",
            &mut c.agent_name,
        );
        text(
            &self.greeting_new_caller,
            &current.greeting_new_caller,
            "greeting_new_caller",
            &mut c.greeting_new_caller,
        );
        text(
            &self.greeting_returning_caller,
            &current.greeting_returning_caller,
            "greeting_returning_caller",
            &mut c.greeting_returning_caller,
        );
        text(&self.voice, &current.voice, "voice", &mut c.voice);
        text(
            &self.time_zone,
            &current.time_zone,
            "time_zone",
            &mut c.time_zone,
        );
        for ((name, new), (_, old)) in self.sliders.iter().zip(&current.sliders) {
            if new == old {
                continue;
            }
            let value: u32 = new.parse().map_err(|_| {
                format!("sliders.{name}: must be a whole number from 0 to 100, got {new:?}")
            })?;
            c.sliders.insert(name.clone(), value);
            mask.push(format!("sliders.{name}"));
        }
        let rules = parse_rules(&self.transfer_rules)?;
        if rules != parse_rules(&current.transfer_rules).unwrap_or_default() {
            c.transfer_rules = Some(TransferRuleList { rules });
            mask.push("transfer_rules".into());
        }
        Ok((c, mask))
    }

    /// The slider value to show for `name`, and whether it is a number.
    fn slider(&self, name: &str) -> Option<u32> {
        self.sliders
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse().ok())
    }

    /// The form with a preset's three sliders set.
    fn with_preset(mut self, preset: &str) -> Option<Values> {
        let (_, sliders) = PRESETS.iter().find(|(n, _)| *n == preset)?;
        for (name, value) in sliders {
            if let Some(slot) = self.sliders.iter_mut().find(|(n, _)| n == name) {
                slot.1 = value.to_string();
            }
        }
        Some(self)
    }
}

/// Transfer rules as the textarea shows them.
fn rules_text(rules: &[TransferRule]) -> String {
    rules
        .iter()
        .map(|r| format!("{} | {} | {}", r.keyword, r.number, r.description))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The textarea's lines as rules (blank lines skipped).
fn parse_rules(text: &str) -> Result<Vec<TransferRule>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let parts: Vec<&str> = line.splitn(3, '|').map(str::trim).collect();
            match parts[..] {
                [keyword, number, description] => Ok(TransferRule {
                    keyword: keyword.to_owned(),
                    number: number.to_owned(),
                    description: description.to_owned(),
                }),
                [keyword, number] => Ok(TransferRule {
                    keyword: keyword.to_owned(),
                    number: number.to_owned(),
                    description: String::new(),
                }),
                _ => Err(format!(
                    "transfer_rules: line {} must be `keyword | +number | description`",
                    i + 1
                )),
            }
        })
        .collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> AgentProfile {
        let mut p = AgentProfile {
            agent_name: "Ada".into(),
            greeting_new_caller: "Hi".into(),
            greeting_returning_caller: "Hi {user_name}".into(),
            voice: "alloy".into(),
            time_zone: "UTC".into(),
            transfer_rules: vec![TransferRule {
                keyword: "claims".into(),
                number: "+15550100123".into(),
                description: "the claims desk".into(),
            }],
            ..Default::default()
        };
        for n in SLIDER_NAMES {
            p.sliders.insert(n.to_owned(), 50);
        }
        p
    }

    #[test]
    fn only_changed_fields_are_sent() {
        let current = Values::of(&profile());
        let (c, mask) = current.draft(&current).unwrap();
        assert!(mask.is_empty() && c == AgentConfig::default());
        let form = vec![
            ("agent_name".to_owned(), "Bea".to_owned()),
            ("slider.humor".to_owned(), " 85 ".to_owned()),
            ("slider.warmth".to_owned(), "50".to_owned()),
            (
                "transfer_rules".to_owned(),
                "claims | +15550100123 | the claims desk\r\n\r\n".to_owned(),
            ),
        ];
        let v = Values::from_form(&form, &current);
        let (c, mask) = v.draft(&current).unwrap();
        assert_eq!(mask, ["agent_name", "sliders.humor"]);
        assert_eq!(c.sliders["humor"], 85);
        let bad = Values::from_form(&[("slider.warmth".into(), "lots".into())], &current);
        assert!(
            bad.draft(&current)
                .unwrap_err()
                .starts_with("sliders.warmth")
        );
        let preset = current.clone().with_preset("friendly").unwrap();
        let (c, _) = preset.draft(&current).unwrap();
        assert_eq!(
            (
                c.sliders["warmth"],
                c.sliders["empathy"],
                c.sliders["directness"]
            ),
            (80, 75, 40)
        );
    }
}
