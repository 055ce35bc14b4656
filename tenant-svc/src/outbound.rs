//! A customer's outbound-call and post-call webhook settings as tenant-svc reasons about them:
//! the stored values ([`OutboundSettings`], defaults when never set), the validated part of an
//! update ([`Patch`]: only the fields its mask names, each checked before any database work), and
//! the per-field history entries of a change ([`diff`], config type `outbound`).

use mesh::api::tenant as pb;
use serde_json::Value;

use crate::error::{Result, TenantError};
use crate::history::{Change, ConfigType};
use crate::validate;

/// The fields of `OutboundSettings`, as an update mask names them.
pub const FIELDS: [&str; 8] = [
    "allowed_country_codes",
    "allowed_personas",
    "do_not_call",
    "cors_origins",
    "greet_first_outbound",
    "webhook_url",
    "webhook_raw_numbers",
    "public_calls_per_hour",
];

/// A customer's settings. `Default` is what a customer that never set them has: no outbound
/// calls (no allowed country), no webhook, the platform's hourly limit (0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundSettings {
    /// Country calling codes outbound calls may dial (digits, e.g. `351`).
    pub allowed_country_codes: Vec<String>,
    /// Persona names a website may request.
    pub allowed_personas: Vec<String>,
    /// E.164 numbers never dialled.
    pub do_not_call: Vec<String>,
    /// Exact origins of the public calls endpoint.
    pub cors_origins: Vec<String>,
    /// Whether the agent speaks first on outbound calls.
    pub greet_first_outbound: bool,
    /// Where post-call events go; empty: nowhere.
    pub webhook_url: String,
    /// Whether events carry raw caller numbers.
    pub webhook_raw_numbers: bool,
    /// Public calls per hour; 0: the platform default.
    pub public_calls_per_hour: u32,
}

impl OutboundSettings {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::OutboundSettings {
        pb::OutboundSettings {
            allowed_country_codes: self.allowed_country_codes.clone(),
            allowed_personas: self.allowed_personas.clone(),
            do_not_call: self.do_not_call.clone(),
            cors_origins: self.cors_origins.clone(),
            greet_first_outbound: self.greet_first_outbound,
            webhook_url: self.webhook_url.clone(),
            webhook_raw_numbers: self.webhook_raw_numbers,
            public_calls_per_hour: self.public_calls_per_hour,
        }
    }

    /// One field's value as JSON (the unit of history).
    fn value(&self, field: &str) -> Value {
        match field {
            "allowed_country_codes" => Value::from(self.allowed_country_codes.clone()),
            "allowed_personas" => Value::from(self.allowed_personas.clone()),
            "do_not_call" => Value::from(self.do_not_call.clone()),
            "cors_origins" => Value::from(self.cors_origins.clone()),
            "greet_first_outbound" => Value::from(self.greet_first_outbound),
            "webhook_url" => Value::from(self.webhook_url.clone()),
            "webhook_raw_numbers" => Value::from(self.webhook_raw_numbers),
            "public_calls_per_hour" => Value::from(self.public_calls_per_hour),
            _ => Value::Null,
        }
    }
}

/// The validated fields named by an update mask, ready to apply to whatever is stored.
#[derive(Debug, Clone)]
pub struct Patch {
    /// The named fields (known, in mask order, without repeats).
    fields: Vec<&'static str>,
    /// Their new values; other fields are ignored.
    values: OutboundSettings,
}

impl Patch {
    /// Checks the mask (every name a field of `OutboundSettings`; at least one, since proto3
    /// cannot tell an unset field from one set to its default) and validates the value of each
    /// named field; fields outside the mask are ignored. `allow_insecure` is
    /// `WEBHOOK_ALLOW_INSECURE` (`http://` webhook URLs and origins, internal hosts).
    pub fn parse(
        update: &pb::OutboundSettings,
        mask: &[String],
        allow_insecure: bool,
    ) -> Result<Self> {
        if mask.is_empty() {
            return Err(TenantError::invalid(
                "update_mask",
                format!("name the fields to change; allowed: {}", FIELDS.join(", ")),
            ));
        }
        let mut fields: Vec<&'static str> = Vec::with_capacity(mask.len());
        for path in mask {
            let Some(name) = FIELDS.iter().find(|f| **f == path.as_str()) else {
                return Err(TenantError::invalid(
                    "update_mask",
                    format!(
                        "unknown field `{}`; allowed: {}",
                        path.chars().take(80).collect::<String>().escape_debug(),
                        FIELDS.join(", ")
                    ),
                ));
            };
            if !fields.contains(name) {
                fields.push(name);
            }
        }
        let mut values = OutboundSettings::default();
        for field in &fields {
            let f = format!("settings.{field}");
            match *field {
                "allowed_country_codes" => {
                    values.allowed_country_codes =
                        validate::country_codes(&f, &update.allowed_country_codes)?
                }
                "allowed_personas" => {
                    values.allowed_personas = validate::personas(&f, &update.allowed_personas)?
                }
                "do_not_call" => {
                    values.do_not_call = validate::do_not_call(&f, &update.do_not_call)?
                }
                "cors_origins" => {
                    values.cors_origins =
                        validate::cors_origins(&f, &update.cors_origins, allow_insecure)?
                }
                "greet_first_outbound" => values.greet_first_outbound = update.greet_first_outbound,
                "webhook_url" => {
                    values.webhook_url =
                        validate::webhook_url(&f, &update.webhook_url, allow_insecure)?
                }
                "webhook_raw_numbers" => values.webhook_raw_numbers = update.webhook_raw_numbers,
                "public_calls_per_hour" => {
                    values.public_calls_per_hour =
                        validate::public_calls_per_hour(&f, update.public_calls_per_hour)?
                }
                _ => unreachable!("names come from FIELDS"),
            }
        }
        Ok(Self { fields, values })
    }

    /// `current` with the named fields replaced.
    pub fn apply(&self, current: &OutboundSettings) -> OutboundSettings {
        let mut out = current.clone();
        let v = &self.values;
        for field in &self.fields {
            match *field {
                "allowed_country_codes" => {
                    out.allowed_country_codes = v.allowed_country_codes.clone()
                }
                "allowed_personas" => out.allowed_personas = v.allowed_personas.clone(),
                "do_not_call" => out.do_not_call = v.do_not_call.clone(),
                "cors_origins" => out.cors_origins = v.cors_origins.clone(),
                "greet_first_outbound" => out.greet_first_outbound = v.greet_first_outbound,
                "webhook_url" => out.webhook_url = v.webhook_url.clone(),
                "webhook_raw_numbers" => out.webhook_raw_numbers = v.webhook_raw_numbers,
                "public_calls_per_hour" => out.public_calls_per_hour = v.public_calls_per_hour,
                _ => unreachable!("names come from FIELDS"),
            }
        }
        out
    }
}

/// One history entry per field whose value differs (old and new values as JSON; a customer that
/// never set them starts from the defaults).
pub fn diff(before: &OutboundSettings, after: &OutboundSettings) -> Vec<Change> {
    FIELDS
        .iter()
        .filter_map(|field| {
            let (old, new) = (before.value(field), after.value(field));
            (old != new).then(|| Change {
                config_type: ConfigType::Outbound,
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

    fn mask(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn only_masked_fields_change_and_each_change_is_one_entry() {
        let current = OutboundSettings {
            allowed_personas: vec!["Sofia".into()],
            webhook_url: "https://hooks.example.com/a".into(),
            ..Default::default()
        };
        let update = pb::OutboundSettings {
            allowed_country_codes: vec!["+351".into(), "351".into(), "44".into()],
            allowed_personas: vec!["ignored: not in the mask".into()],
            webhook_url: String::new(),
            ..Default::default()
        };
        let patch = Patch::parse(
            &update,
            &mask(&["allowed_country_codes", "webhook_url", "webhook_url"]),
            false,
        )
        .unwrap();
        let next = patch.apply(&current);
        assert_eq!(next.allowed_country_codes, ["351", "44"]);
        assert_eq!(next.allowed_personas, ["Sofia"], "outside the mask");
        assert_eq!(next.webhook_url, "", "masked and empty: cleared");
        let changes = diff(&current, &next);
        let keys: Vec<_> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["allowed_country_codes", "webhook_url"]);
        assert!(
            changes
                .iter()
                .all(|c| c.config_type == ConfigType::Outbound)
        );
        assert!(diff(&next, &patch.apply(&next)).is_empty(), "idempotent");
    }

    #[test]
    fn the_mask_must_name_known_fields() {
        let u = pb::OutboundSettings::default();
        for m in [
            mask(&[]),
            mask(&["webhook_secret"]),
            mask(&["greet_first_outbound", "x"]),
        ] {
            let e = Patch::parse(&u, &m, true).unwrap_err().to_string();
            assert!(e.starts_with("update_mask:"), "{e}");
        }
    }

    #[test]
    fn invalid_values_name_their_field() {
        let u = pb::OutboundSettings {
            public_calls_per_hour: 10_001,
            ..Default::default()
        };
        let e = Patch::parse(&u, &mask(&["public_calls_per_hour"]), false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("settings.public_calls_per_hour:"), "{e}");
    }
}
