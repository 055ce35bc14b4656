//! Validation of everything a client can set, turning protobuf strings into checked values.
//! Each function names the field in its error, so the client sees exactly what to fix; nothing is
//! stored unless every field of the request passed.
//!
//! One module per subject: `config` (the agent configuration and platform defaults),
//! `customer` (a customer's contact fields), `outbound` (outbound-call settings: countries,
//! personas, do-not-call, origins, the hourly limit) and `url` (the strict `http(s)` URL parser
//! behind the webhook URL and the origins, and the webhook host's address check). The text rules
//! they share are here.

mod config;
mod customer;
mod outbound;
mod url;

pub use config::{
    MAX_AGENT_NAME, MAX_GREETING, MAX_LIST, MAX_PROMPT_TEXT, PLACEHOLDERS, PromptBlock,
    TransferRule, agent_name, greeting, prompt_blocks, slider, time_zone, transfer_rules,
    transfer_targets, voice,
};
pub use customer::{TIERS, business_name, contact_name, email, optional_phone, package_tier};
pub use outbound::{
    MAX_CALL_MINUTES, MAX_DO_NOT_CALL, MAX_ORIGINS, MAX_PERSONA, MAX_PERSONAS,
    MAX_PUBLIC_CALLS_PER_HOUR, MAX_REGIONS, cors_origins, do_not_call, max_call_minutes,
    number_types, personas, public_calls_per_hour, regions,
};
pub use url::{MAX_WEBHOOK_URL, webhook_url};

use crate::error::{Result, TenantError};

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn no_control(field: &str, s: &str, allow_newlines: bool) -> Result<()> {
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() && !(allow_newlines && (*c == '\n' || *c == '\t')))
    {
        return Err(TenantError::invalid(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(())
}

fn bounded_text(field: &str, s: &str, min: usize, max: usize, newlines: bool) -> Result<String> {
    let n = chars(s);
    if n < min || n > max {
        return Err(TenantError::invalid(
            field,
            if min > 0 {
                format!("must be {min} to {max} characters, got {n}")
            } else {
                format!("must be at most {max} characters, got {n}")
            },
        ));
    }
    no_control(field, s, newlines)?;
    Ok(s.to_owned())
}

fn too_many(field: &str, max: usize, what: &str, got: usize) -> Result<()> {
    if got > max {
        return Err(TenantError::invalid(
            field,
            format!("at most {max} {what}, got {got}"),
        ));
    }
    Ok(())
}

/// Keeps the first occurrence of each value (lists whose entries are normalised, so that
/// `+351 912 345 678` and `+351912345678` are one entry).
fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    values
        .into_iter()
        .filter(|v| seen.insert(v.clone()))
        .collect()
}
