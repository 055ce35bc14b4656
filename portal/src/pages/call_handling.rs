//! `/portal/call-handling` (owners): how calls are handled (issue 20). Whether calls are
//! recorded (off, on, on with the caller's consent) with the announcement and the consent
//! question, how many days recordings and transcripts are kept, the message flow's prompt and
//! longest message, the weekly opening hours and whether calls after hours leave a message.
//! tenant-svc `UpdateCallHandling` (the whole settings) validates every value: a refused one is
//! this page again with status 400 naming the field, nothing stored. Staff get the 403 page
//! (`Owner`): the settings decide what is recorded about callers.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use mesh::api::tenant::{
    CallHandling, GetCallHandlingRequest, OpenPeriod, OpeningHours, RecordingPolicy,
    UpdateCallHandlingRequest,
};
use mesh::call_handling::{WEEKDAY_NAMES, weekdays};

use super::settings_page::{self, Saved, SettingsPage};
use crate::{CsrfForm, Layout, NavItem, Owner, PageError, Portal};

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new().route("/portal/call-handling", get(show).post(save))
}

/// What the form shows and posts.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct CallHandlingForm {
    /// `off`, `on` or `on_with_consent`.
    #[serde(default)]
    recording_policy: String,
    #[serde(default)]
    recording_announcement: String,
    #[serde(default)]
    consent_prompt: String,
    #[serde(default)]
    retention_days: String,
    #[serde(default)]
    message_prompt: String,
    #[serde(default)]
    message_max_seconds: String,
    /// Per weekday "09:00-12:00, 13:00-17:30" (empty: closed; all empty: always open).
    #[serde(default)]
    monday: String,
    #[serde(default)]
    tuesday: String,
    #[serde(default)]
    wednesday: String,
    #[serde(default)]
    thursday: String,
    #[serde(default)]
    friday: String,
    #[serde(default)]
    saturday: String,
    #[serde(default)]
    sunday: String,
    /// The checkbox: present when ticked.
    messages_after_hours: Option<String>,
}

/// "09:00" for 540, "24:00" for 1440.
fn hhmm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Minutes after midnight of "9:00", "09:00" or "24:00".
fn minutes(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.trim().parse().ok()?, m.trim().parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// The periods of one weekday's text ("09:00-12:00, 13:00-17:30"), naming the field when one
/// is not of that form.
fn periods(day: &str, text: &str) -> Result<Vec<OpenPeriod>, String> {
    text.split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let parsed = p.split_once('-').and_then(|(open, close)| {
                Some(OpenPeriod {
                    open_minute: minutes(open)?,
                    close_minute: minutes(close)?,
                })
            });
            parsed.ok_or_else(|| {
                format!(
                    "settings.opening_hours.{day}: write periods as 09:00-17:30, separated by commas; got {:?}",
                    p.chars().take(40).collect::<String>()
                )
            })
        })
        .collect()
}

fn policy_name(p: RecordingPolicy) -> &'static str {
    match p {
        RecordingPolicy::On => "on",
        RecordingPolicy::OnWithConsent => "on_with_consent",
        RecordingPolicy::Off | RecordingPolicy::Unspecified => "off",
    }
}

impl CallHandlingForm {
    fn of(s: &CallHandling) -> CallHandlingForm {
        let hours = s.opening_hours.clone().unwrap_or_default();
        let day = |d: &[OpenPeriod]| -> String {
            d.iter()
                .map(|p| format!("{}-{}", hhmm(p.open_minute), hhmm(p.close_minute)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let [mo, tu, we, th, fr, sa, su] = weekdays(&hours);
        CallHandlingForm {
            recording_policy: policy_name(mesh::call_handling::recording_policy(s)).into(),
            recording_announcement: s.recording_announcement.clone(),
            consent_prompt: s.consent_prompt.clone(),
            retention_days: s.retention_days.to_string(),
            message_prompt: s.message_prompt.clone(),
            message_max_seconds: s.message_max_seconds.to_string(),
            monday: day(mo),
            tuesday: day(tu),
            wednesday: day(we),
            thursday: day(th),
            friday: day(fr),
            saturday: day(sa),
            sunday: day(su),
            messages_after_hours: s.messages_after_hours.then(|| "on".into()),
        }
    }

    /// The weekdays' texts, Monday first.
    fn days(&self) -> [&str; 7] {
        [
            &self.monday,
            &self.tuesday,
            &self.wednesday,
            &self.thursday,
            &self.friday,
            &self.saturday,
            &self.sunday,
        ]
    }

    /// As the whole settings; what is not a number or a period is refused here, naming it.
    fn settings(&self) -> Result<CallHandling, String> {
        let number = |field: &str, s: &str| -> Result<u32, String> {
            s.trim()
                .parse()
                .map_err(|_| format!("settings.{field}: must be a whole number, got {s:?}"))
        };
        let recording_policy = match self.recording_policy.as_str() {
            "off" => RecordingPolicy::Off,
            "on" => RecordingPolicy::On,
            "on_with_consent" => RecordingPolicy::OnWithConsent,
            _ => return Err("settings.recording_policy: choose one of the options".into()),
        };
        let mut days: Vec<Vec<OpenPeriod>> = Vec::with_capacity(7);
        for (name, text) in WEEKDAY_NAMES.iter().zip(self.days()) {
            days.push(periods(name, text)?);
        }
        let mut days = days.into_iter();
        let mut next = || days.next().unwrap_or_default();
        Ok(CallHandling {
            recording_policy: recording_policy as i32,
            recording_announcement: self.recording_announcement.clone(),
            consent_prompt: self.consent_prompt.clone(),
            retention_days: number("retention_days", &self.retention_days)?,
            message_prompt: self.message_prompt.clone(),
            message_max_seconds: number("message_max_seconds", &self.message_max_seconds)?,
            opening_hours: Some(OpeningHours {
                monday: next(),
                tuesday: next(),
                wednesday: next(),
                thursday: next(),
                friday: next(),
                saturday: next(),
                sunday: next(),
            }),
            messages_after_hours: self.messages_after_hours.is_some(),
        })
    }
}

/// One weekday's row of the form.
struct DayRow {
    name: &'static str,
    label: &'static str,
    value: String,
}

#[derive(Template)]
#[template(path = "call_handling.html")]
struct CallHandlingPage {
    layout: Layout,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<String>,
    form: CallHandlingForm,
    /// The time zone the opening hours are read in.
    time_zone: String,
}

impl CallHandlingPage {
    fn error_names(&self, field: &str) -> bool {
        self.error
            .as_deref()
            .is_some_and(|e| e.contains(&format!(".{field}")))
    }

    fn policy_is(&self, p: &str) -> bool {
        self.form.recording_policy == p
    }

    fn after_hours(&self) -> bool {
        self.form.messages_after_hours.is_some()
    }

    fn day_rows(&self) -> Vec<DayRow> {
        const LABELS: [&str; 7] = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ];
        WEEKDAY_NAMES
            .iter()
            .zip(LABELS)
            .zip(self.form.days())
            .map(|((name, label), value)| DayRow {
                name,
                label,
                value: value.to_owned(),
            })
            .collect()
    }
}

async fn page(portal: &Portal, owner: &Owner) -> Result<CallHandlingPage, PageError> {
    let r = portal
        .tenant()
        .get_call_handling(owner.grpc(GetCallHandlingRequest {}))
        .await?
        .into_inner();
    let settings = r.settings.unwrap_or_else(mesh::call_handling::defaults);
    Ok(CallHandlingPage {
        layout: owner.layout("Call handling", NavItem::CallHandling),
        csrf: owner.csrf().to_owned(),
        notice: None,
        error: None,
        form: CallHandlingForm::of(&settings),
        time_zone: r.time_zone,
    })
}

impl SettingsPage for CallHandlingPage {
    type Form = CallHandlingForm;

    fn set_notice(&mut self, notice: &'static str) {
        self.notice = Some(notice);
    }

    fn refused(&mut self, form: CallHandlingForm, error: String) {
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
    CsrfForm(form): CsrfForm<CallHandlingForm>,
) -> Result<Response, PageError> {
    let (portal, owner) = (&portal, &owner);
    let checked = form.settings();
    let update = |settings| async move {
        let request = UpdateCallHandlingRequest {
            settings: Some(settings),
        };
        let r = portal
            .tenant()
            .update_call_handling(owner.grpc(request))
            .await?;
        tracing::info!(
            customer_id = owner.customer_id(),
            changes = r.get_ref().changes_recorded,
            "call handling saved from the portal"
        );
        Ok(())
    };
    let load = || page(portal, owner);
    settings_page::save(form, checked, update, load, "/portal/call-handling").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_texts_round_trip() {
        let s = CallHandling {
            opening_hours: Some(OpeningHours {
                monday: vec![
                    OpenPeriod {
                        open_minute: 540,
                        close_minute: 720,
                    },
                    OpenPeriod {
                        open_minute: 780,
                        close_minute: 1440,
                    },
                ],
                friday: vec![OpenPeriod {
                    open_minute: 1320,
                    close_minute: 120,
                }],
                ..Default::default()
            }),
            ..mesh::call_handling::defaults()
        };
        let form = CallHandlingForm::of(&s);
        assert_eq!(form.monday, "09:00-12:00, 13:00-24:00");
        assert_eq!(form.friday, "22:00-02:00");
        assert_eq!(form.recording_policy, "off");
        assert_eq!(form.settings().unwrap(), s);
    }

    #[test]
    fn unreadable_values_name_their_field() {
        let base = CallHandlingForm::of(&mesh::call_handling::defaults());
        let cases = [
            (
                CallHandlingForm {
                    tuesday: "9-17".into(),
                    ..base.clone()
                },
                "settings.opening_hours.tuesday:",
            ),
            (
                CallHandlingForm {
                    retention_days: "ninety".into(),
                    ..base.clone()
                },
                "settings.retention_days:",
            ),
            (
                CallHandlingForm {
                    recording_policy: "sometimes".into(),
                    ..base.clone()
                },
                "settings.recording_policy:",
            ),
        ];
        for (form, field) in cases {
            let e = form.settings().unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
    }
}
