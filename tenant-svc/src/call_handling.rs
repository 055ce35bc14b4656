//! A customer's call-handling settings (issue 20) as tenant-svc reasons about them: the
//! validation of an update ([`parse`]: the whole message, every field checked before any database
//! work, errors naming the field), the stored form of the opening hours (JSON), and the per-field
//! history entries of a change ([`diff`], config type `call_handling`).
//!
//! The defaults and the opening-hours rule live in `mesh::call_handling`, shared with media-svc.

use mesh::api::tenant::{CallHandling, OpenPeriod, OpeningHours, RecordingPolicy};
use mesh::call_handling::{WEEKDAY_NAMES, limits, weekdays};
use serde_json::{Value, json};

use crate::error::{Result, TenantError};
use crate::history::{Change, ConfigType};

/// The fields of `CallHandling`, in proto order (history keys and the audit detail's names).
pub const FIELDS: [&str; 8] = [
    "recording_policy",
    "recording_announcement",
    "consent_prompt",
    "retention_days",
    "message_prompt",
    "message_max_seconds",
    "opening_hours",
    "messages_after_hours",
];

/// The stored text of a policy (V22's CHECK lists exactly these).
pub fn policy_text(p: RecordingPolicy) -> &'static str {
    match p {
        RecordingPolicy::On => "on",
        RecordingPolicy::OnWithConsent => "on_with_consent",
        RecordingPolicy::Off | RecordingPolicy::Unspecified => "off",
    }
}

/// The policy of a stored text (anything unknown: off).
pub fn policy_from_text(s: &str) -> RecordingPolicy {
    match s {
        "on" => RecordingPolicy::On,
        "on_with_consent" => RecordingPolicy::OnWithConsent,
        _ => RecordingPolicy::Off,
    }
}

/// The opening hours as stored: `{"monday": [[open, close], ...], ...}`, only days with periods.
pub fn hours_to_json(hours: Option<&OpeningHours>) -> Value {
    let mut map = serde_json::Map::new();
    if let Some(h) = hours {
        for (name, day) in WEEKDAY_NAMES.iter().zip(weekdays(h)) {
            if !day.is_empty() {
                let periods: Vec<Value> = day
                    .iter()
                    .map(|p| json!([p.open_minute, p.close_minute]))
                    .collect();
                map.insert((*name).to_owned(), Value::Array(periods));
            }
        }
    }
    Value::Object(map)
}

/// The opening hours of their stored form (what tenant-svc wrote; anything else is skipped).
pub fn hours_from_json(v: &Value) -> OpeningHours {
    let day = |name: &str| -> Vec<OpenPeriod> {
        v.get(name)
            .and_then(Value::as_array)
            .map(|periods| {
                periods
                    .iter()
                    .filter_map(|p| {
                        let open = p.get(0)?.as_u64()?;
                        let close = p.get(1)?.as_u64()?;
                        Some(OpenPeriod {
                            open_minute: u32::try_from(open).ok()?,
                            close_minute: u32::try_from(close).ok()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    OpeningHours {
        monday: day("monday"),
        tuesday: day("tuesday"),
        wednesday: day("wednesday"),
        thursday: day("thursday"),
        friday: day("friday"),
        saturday: day("saturday"),
        sunday: day("sunday"),
    }
}

/// A spoken text: 1-500 characters after trimming, no control characters.
fn text(field: &str, s: &str) -> Result<String> {
    let t = s.trim();
    let n = t.chars().count();
    if n == 0 || n > limits::MAX_TEXT {
        return Err(TenantError::invalid(
            field,
            format!("must be 1 to {} characters, got {n}", limits::MAX_TEXT),
        ));
    }
    if let Some(c) = t.chars().find(|c| c.is_control()) {
        return Err(TenantError::invalid(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(t.to_owned())
}

fn in_range(field: &str, v: u32, r: std::ops::RangeInclusive<u32>, unit: &str) -> Result<u32> {
    if r.contains(&v) {
        Ok(v)
    } else {
        Err(TenantError::invalid(
            field,
            format!("must be {} to {} {unit}, got {v}", r.start(), r.end()),
        ))
    }
}

/// Opening hours: per weekday at most 6 periods, open 0-1439, close 1-1440, open != close;
/// each day's periods sorted by opening time.
fn hours(field: &str, h: Option<&OpeningHours>) -> Result<OpeningHours> {
    let Some(h) = h else {
        return Ok(OpeningHours::default());
    };
    let mut out: [Vec<OpenPeriod>; 7] = Default::default();
    for ((name, day), slot) in WEEKDAY_NAMES.iter().zip(weekdays(h)).zip(out.iter_mut()) {
        let f = format!("{field}.{name}");
        if day.len() > limits::MAX_PERIODS_PER_DAY {
            return Err(TenantError::invalid(
                &f,
                format!(
                    "at most {} periods a day, got {}",
                    limits::MAX_PERIODS_PER_DAY,
                    day.len()
                ),
            ));
        }
        for (i, p) in day.iter().enumerate() {
            if p.open_minute >= limits::DAY_MINUTES {
                return Err(TenantError::invalid(
                    format!("{f}[{i}].open_minute"),
                    format!(
                        "must be 0 to 1439 (minutes after midnight), got {}",
                        p.open_minute
                    ),
                ));
            }
            if p.close_minute == 0 || p.close_minute > limits::DAY_MINUTES {
                return Err(TenantError::invalid(
                    format!("{f}[{i}].close_minute"),
                    format!(
                        "must be 1 to 1440 (minutes after midnight), got {}",
                        p.close_minute
                    ),
                ));
            }
            if p.open_minute == p.close_minute {
                return Err(TenantError::invalid(
                    format!("{f}[{i}].close_minute"),
                    "must differ from open_minute (a whole day is 0 to 1440)",
                ));
            }
        }
        let mut sorted = day.to_vec();
        sorted.sort_by_key(|p| (p.open_minute, p.close_minute));
        sorted.dedup();
        *slot = sorted;
    }
    let [
        monday,
        tuesday,
        wednesday,
        thursday,
        friday,
        saturday,
        sunday,
    ] = out;
    Ok(OpeningHours {
        monday,
        tuesday,
        wednesday,
        thursday,
        friday,
        saturday,
        sunday,
    })
}

/// Validates a whole `CallHandling` (the update replaces the stored one), normalised: texts
/// trimmed, each day's periods sorted. Errors name the field under `settings.`.
pub fn parse(update: Option<&CallHandling>) -> Result<CallHandling> {
    let Some(u) = update else {
        return Err(TenantError::invalid(
            "settings",
            "required: the whole CallHandling (GetCallHandling's answer with your changes)",
        ));
    };
    let policy = match RecordingPolicy::try_from(u.recording_policy) {
        Ok(RecordingPolicy::Unspecified) | Err(_) => {
            return Err(TenantError::invalid(
                "settings.recording_policy",
                "must be RECORDING_POLICY_OFF, RECORDING_POLICY_ON or RECORDING_POLICY_ON_WITH_CONSENT",
            ));
        }
        Ok(p) => p,
    };
    Ok(CallHandling {
        recording_policy: policy as i32,
        recording_announcement: text("settings.recording_announcement", &u.recording_announcement)?,
        consent_prompt: text("settings.consent_prompt", &u.consent_prompt)?,
        retention_days: in_range(
            "settings.retention_days",
            u.retention_days,
            limits::RETENTION_DAYS,
            "days",
        )?,
        message_prompt: text("settings.message_prompt", &u.message_prompt)?,
        message_max_seconds: in_range(
            "settings.message_max_seconds",
            u.message_max_seconds,
            limits::MESSAGE_MAX_SECONDS,
            "seconds",
        )?,
        opening_hours: Some(hours("settings.opening_hours", u.opening_hours.as_ref())?),
        messages_after_hours: u.messages_after_hours,
    })
}

/// One field's value as JSON (the unit of history).
fn value(s: &CallHandling, field: &str) -> Value {
    match field {
        "recording_policy" => Value::from(policy_text(mesh::call_handling::recording_policy(s))),
        "recording_announcement" => Value::from(s.recording_announcement.clone()),
        "consent_prompt" => Value::from(s.consent_prompt.clone()),
        "retention_days" => Value::from(s.retention_days),
        "message_prompt" => Value::from(s.message_prompt.clone()),
        "message_max_seconds" => Value::from(s.message_max_seconds),
        "opening_hours" => hours_to_json(s.opening_hours.as_ref()),
        "messages_after_hours" => Value::from(s.messages_after_hours),
        _ => Value::Null,
    }
}

/// One history entry per field whose value differs.
pub fn diff(before: &CallHandling, after: &CallHandling) -> Vec<Change> {
    FIELDS
        .iter()
        .filter_map(|field| {
            let (old, new) = (value(before, field), value(after, field));
            (old != new).then(|| Change {
                config_type: ConfigType::CallHandling,
                key: (*field).to_owned(),
                old: Some(old),
                new: Some(new),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh::call_handling::defaults;

    fn p(open: u32, close: u32) -> OpenPeriod {
        OpenPeriod {
            open_minute: open,
            close_minute: close,
        }
    }

    #[test]
    fn defaults_pass_and_round_trip() {
        let d = defaults();
        let parsed = parse(Some(&d)).unwrap();
        assert_eq!(parsed, d);
        assert!(diff(&d, &parsed).is_empty());
    }

    #[test]
    fn hours_are_sorted_and_stored_as_json() {
        let u = CallHandling {
            opening_hours: Some(OpeningHours {
                monday: vec![p(780, 1050), p(540, 720)],
                friday: vec![p(1320, 120)],
                ..Default::default()
            }),
            ..defaults()
        };
        let parsed = parse(Some(&u)).unwrap();
        let h = parsed.opening_hours.as_ref().unwrap();
        assert_eq!(h.monday, [p(540, 720), p(780, 1050)]);
        let stored = hours_to_json(Some(h));
        assert_eq!(
            stored,
            json!({"monday": [[540, 720], [780, 1050]], "friday": [[1320, 120]]})
        );
        assert_eq!(&hours_from_json(&stored), h);
        let keys: Vec<_> = diff(&defaults(), &parsed)
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(keys, ["opening_hours"]);
    }

    /// The defaults with one change.
    fn with(change: impl FnOnce(&mut CallHandling)) -> CallHandling {
        let mut s = defaults();
        change(&mut s);
        s
    }

    fn hours(h: OpeningHours) -> CallHandling {
        with(|s| s.opening_hours = Some(h))
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: Vec<(CallHandling, &str)> = vec![
            (with(|s| s.recording_policy = 0), "recording_policy"),
            (
                with(|s| s.recording_announcement = " ".into()),
                "recording_announcement",
            ),
            (
                with(|s| s.consent_prompt = "x".repeat(501)),
                "consent_prompt",
            ),
            (
                with(|s| s.message_prompt = "a\u{7}b".into()),
                "message_prompt",
            ),
            (with(|s| s.retention_days = 0), "retention_days"),
            (with(|s| s.retention_days = 3651), "retention_days"),
            (with(|s| s.message_max_seconds = 9), "message_max_seconds"),
            (with(|s| s.message_max_seconds = 301), "message_max_seconds"),
            (
                hours(OpeningHours {
                    tuesday: vec![p(540, 600), p(1440, 10)],
                    ..Default::default()
                }),
                "opening_hours.tuesday[1].open_minute",
            ),
            (
                hours(OpeningHours {
                    sunday: vec![p(600, 600)],
                    ..Default::default()
                }),
                "opening_hours.sunday[0].close_minute",
            ),
            (
                hours(OpeningHours {
                    monday: vec![p(0, 1441)],
                    ..Default::default()
                }),
                "opening_hours.monday[0].close_minute",
            ),
            (
                hours(OpeningHours {
                    monday: (0..7).map(|i| p(i * 60, i * 60 + 30)).collect(),
                    ..Default::default()
                }),
                "opening_hours.monday",
            ),
        ];
        for (u, field) in cases {
            let e = parse(Some(&u)).unwrap_err().to_string();
            assert!(e.starts_with(&format!("settings.{field}:")), "{field}: {e}");
        }
        let e = parse(None).unwrap_err().to_string();
        assert!(e.starts_with("settings:"), "{e}");
    }
}
