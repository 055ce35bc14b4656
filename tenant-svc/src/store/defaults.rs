//! `tenant.platform_defaults`: the one row of platform defaults (no tenant context: it is not
//! tenant data, and its triggers notify every replica's caches when it changes).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mesh::db::Tx;
use mesh::domain::Voice;
use serde_json::Value;

use crate::error::Result;
use crate::model::Defaults;
use crate::wire::{from_json, json};

/// The platform defaults row.
pub async fn load_defaults(tx: &Tx<'_>) -> Result<Defaults> {
    let r = tx
        .query_one(
            "SELECT agent_name, greeting_new_caller, greeting_returning_caller, voice, sliders, \
             prompt_blocks, transfer_rules, time_zone, updated_at FROM tenant.platform_defaults",
            &[],
        )
        .await?;
    let sliders: BTreeMap<String, u32> =
        serde_json::from_value(r.get::<_, Value>(4)).unwrap_or_default();
    Ok(Defaults {
        agent_name: r.get(0),
        greeting_new_caller: r.get(1),
        greeting_returning_caller: r.get(2),
        voice: default_voice(r.get(3)),
        sliders,
        prompt_blocks: from_json(r.get(5)).unwrap_or_default(),
        transfer_rules: from_json(r.get(6)).unwrap_or_default(),
        time_zone: r.get(7),
        updated_at: r.get(8),
    })
}

/// The stored default voice. The column is written only after `Voice::parse` (and by the
/// migration, `alloy`); a name that is no longer a realtime voice is logged and read as `alloy`, so
/// that calls keep being answered.
fn default_voice(name: String) -> Voice {
    Voice::parse(&name).unwrap_or_else(|_| {
        tracing::warn!(voice = %name, "platform default voice is not a realtime voice; using alloy");
        Voice::Alloy
    })
}

/// Replaces the platform defaults; returns the new `updated_at`.
pub async fn save_defaults(tx: &Tx<'_>, d: &Defaults) -> Result<DateTime<Utc>> {
    let r = tx
        .query_one(
            "UPDATE tenant.platform_defaults SET agent_name = $1, greeting_new_caller = $2, \
             greeting_returning_caller = $3, voice = $4, sliders = $5, prompt_blocks = $6, \
             transfer_rules = $7, time_zone = $8, updated_at = now() RETURNING updated_at",
            &[
                &d.agent_name,
                &d.greeting_new_caller,
                &d.greeting_returning_caller,
                &d.voice.as_str(),
                &json(&d.sliders),
                &json(&d.prompt_blocks),
                &json(&d.transfer_rules),
                &d.time_zone,
            ],
        )
        .await?;
    Ok(r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_voice_falls_back_to_alloy() {
        assert_eq!(default_voice("marin".into()), Voice::Marin);
        assert_eq!(default_voice("nova".into()), Voice::Alloy);
    }
}
