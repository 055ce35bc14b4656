//! A customer's outbound-call and post-call webhook settings as tenant-svc reasons about them:
//! the stored values ([`OutboundSettings`], defaults when never set), the validated part of an
//! update ([`Patch`]: only the fields its mask names, each checked before any database work), and
//! the per-field history entries of a change ([`diff`], config type `outbound`).

use mesh::api::tenant as pb;
use serde_json::Value;

use mesh::domain::{DialPolicy, PhoneNumber};

use crate::error::{Result, TenantError};
use crate::history::{Change, ConfigType};
use crate::validate;

/// The fields of `OutboundSettings`, as an update mask names them.
pub const FIELDS: [&str; 11] = [
    "allowed_regions",
    "allowed_personas",
    "do_not_call",
    "cors_origins",
    "greet_first_outbound",
    "webhook_url",
    "webhook_raw_numbers",
    "public_calls_per_hour",
    "allowed_number_types",
    "transfer_regions",
    "max_call_minutes",
];

/// The platform's longest call, in minutes, when a customer's `max_call_minutes` is 0.
pub const DEFAULT_MAX_CALL_MINUTES: u32 = 60;

/// A customer's settings. `Default` is what a customer that never set them has: no outbound
/// calls (no allowed region), no webhook, the platform's hourly limit (0), no restricted kind of
/// number, transfers to the regions of its own numbers, the platform's longest call (0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundSettings {
    /// ISO 3166 regions outbound calls may dial (e.g. `PT`).
    pub allowed_regions: Vec<String>,
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
    /// Restricted kinds of number (`premium_rate`, ...) allowed anyway.
    pub allowed_number_types: Vec<String>,
    /// ISO 3166 regions transfer targets may be in; empty: the regions of the customer's numbers.
    pub transfer_regions: Vec<String>,
    /// Longest call in minutes; 0: [`DEFAULT_MAX_CALL_MINUTES`].
    pub max_call_minutes: u32,
}

impl OutboundSettings {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::OutboundSettings {
        pb::OutboundSettings {
            allowed_regions: self.allowed_regions.clone(),
            allowed_personas: self.allowed_personas.clone(),
            do_not_call: self.do_not_call.clone(),
            cors_origins: self.cors_origins.clone(),
            greet_first_outbound: self.greet_first_outbound,
            webhook_url: self.webhook_url.clone(),
            webhook_raw_numbers: self.webhook_raw_numbers,
            public_calls_per_hour: self.public_calls_per_hour,
            allowed_number_types: self.allowed_number_types.clone(),
            transfer_regions: self.transfer_regions.clone(),
            max_call_minutes: self.max_call_minutes,
        }
    }

    /// What transfers may dial: `transfer_regions`, or, when empty, the regions of `own_numbers`
    /// (the customer's numbers), with the restricted kinds the customer allows.
    pub fn transfer_policy(&self, own_numbers: &[PhoneNumber]) -> DialPolicy {
        DialPolicy::for_transfers(
            &self.transfer_regions,
            &self.allowed_number_types,
            own_numbers.iter().map(PhoneNumber::as_str),
        )
    }

    /// One field's value as JSON (the unit of history).
    fn value(&self, field: &str) -> Value {
        match field {
            "allowed_regions" => Value::from(self.allowed_regions.clone()),
            "allowed_personas" => Value::from(self.allowed_personas.clone()),
            "do_not_call" => Value::from(self.do_not_call.clone()),
            "cors_origins" => Value::from(self.cors_origins.clone()),
            "greet_first_outbound" => Value::from(self.greet_first_outbound),
            "webhook_url" => Value::from(self.webhook_url.clone()),
            "webhook_raw_numbers" => Value::from(self.webhook_raw_numbers),
            "public_calls_per_hour" => Value::from(self.public_calls_per_hour),
            "allowed_number_types" => Value::from(self.allowed_number_types.clone()),
            "transfer_regions" => Value::from(self.transfer_regions.clone()),
            "max_call_minutes" => Value::from(self.max_call_minutes),
            _ => Value::Null,
        }
    }

    /// Sets `field` from `v`.
    fn take(&mut self, field: &str, v: &OutboundSettings) {
        match field {
            "allowed_regions" => self.allowed_regions = v.allowed_regions.clone(),
            "allowed_personas" => self.allowed_personas = v.allowed_personas.clone(),
            "do_not_call" => self.do_not_call = v.do_not_call.clone(),
            "cors_origins" => self.cors_origins = v.cors_origins.clone(),
            "greet_first_outbound" => self.greet_first_outbound = v.greet_first_outbound,
            "webhook_url" => self.webhook_url = v.webhook_url.clone(),
            "webhook_raw_numbers" => self.webhook_raw_numbers = v.webhook_raw_numbers,
            "public_calls_per_hour" => self.public_calls_per_hour = v.public_calls_per_hour,
            "allowed_number_types" => self.allowed_number_types = v.allowed_number_types.clone(),
            "transfer_regions" => self.transfer_regions = v.transfer_regions.clone(),
            "max_call_minutes" => self.max_call_minutes = v.max_call_minutes,
            _ => unreachable!("names come from FIELDS"),
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

/// The mask's names, checked: known, without repeats, at least one.
fn mask_fields(mask: &[String]) -> Result<Vec<&'static str>> {
    if mask.is_empty() {
        return Err(TenantError::invalid(
            "update_mask",
            format!("name the fields to change; allowed: {}", FIELDS.join(", ")),
        ));
    }
    let mut fields: Vec<&'static str> = Vec::with_capacity(mask.len());
    for path in mask {
        if path == "allowed_country_codes" {
            return Err(TenantError::invalid(
                "update_mask",
                "`allowed_country_codes` was replaced by `allowed_regions` (ISO 3166 regions, e.g. US, CA, PT)",
            ));
        }
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
    Ok(fields)
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
        let fields = mask_fields(mask)?;
        let mut values = OutboundSettings::default();
        for field in &fields {
            parse_field(&mut values, field, update, allow_insecure)?;
        }
        Ok(Self { fields, values })
    }

    /// `current` with the named fields replaced.
    pub fn apply(&self, current: &OutboundSettings) -> OutboundSettings {
        let mut out = current.clone();
        for field in &self.fields {
            out.take(field, &self.values);
        }
        out
    }
}

/// Validates `update`'s value of `field` into `values`.
fn parse_field(
    values: &mut OutboundSettings,
    field: &str,
    update: &pb::OutboundSettings,
    allow_insecure: bool,
) -> Result<()> {
    let f = format!("settings.{field}");
    match field {
        "allowed_regions" => {
            values.allowed_regions = validate::regions(&f, &update.allowed_regions)?
        }
        "allowed_personas" => {
            values.allowed_personas = validate::personas(&f, &update.allowed_personas)?
        }
        "do_not_call" => values.do_not_call = validate::do_not_call(&f, &update.do_not_call)?,
        "cors_origins" => {
            values.cors_origins = validate::cors_origins(&f, &update.cors_origins, allow_insecure)?
        }
        "greet_first_outbound" => values.greet_first_outbound = update.greet_first_outbound,
        "webhook_url" => {
            values.webhook_url = validate::webhook_url(&f, &update.webhook_url, allow_insecure)?
        }
        "webhook_raw_numbers" => values.webhook_raw_numbers = update.webhook_raw_numbers,
        "public_calls_per_hour" => {
            values.public_calls_per_hour =
                validate::public_calls_per_hour(&f, update.public_calls_per_hour)?
        }
        "allowed_number_types" => {
            values.allowed_number_types = validate::number_types(&f, &update.allowed_number_types)?
        }
        "transfer_regions" => {
            values.transfer_regions = validate::regions(&f, &update.transfer_regions)?
        }
        "max_call_minutes" => {
            values.max_call_minutes = validate::max_call_minutes(&f, update.max_call_minutes)?
        }
        _ => unreachable!("names come from FIELDS"),
    }
    Ok(())
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
            allowed_regions: vec!["pt".into(), "PT".into(), "GB".into()],
            allowed_personas: vec!["ignored: not in the mask".into()],
            webhook_url: String::new(),
            ..Default::default()
        };
        let patch = Patch::parse(
            &update,
            &mask(&["allowed_regions", "webhook_url", "webhook_url"]),
            false,
        )
        .unwrap();
        let next = patch.apply(&current);
        assert_eq!(next.allowed_regions, ["PT", "GB"]);
        assert_eq!(next.allowed_personas, ["Sofia"], "outside the mask");
        assert_eq!(next.webhook_url, "", "masked and empty: cleared");
        let changes = diff(&current, &next);
        let keys: Vec<_> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["allowed_regions", "webhook_url"]);
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
            mask(&["allowed_country_codes"]),
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
