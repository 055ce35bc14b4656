//! The customer's configuration as tenant-svc reasons about it: overrides (what the customer
//! set), platform defaults (everything else), the merged effective profile, and the field-mask
//! update that produces one history entry per changed field.

use std::collections::BTreeMap;

use mesh::api::tenant as pb;
use mesh::domain::{SLIDER_NAMES, Voice};
use serde_json::Value;

use crate::error::{Result, TenantError};
use crate::history::{Change, ConfigType};
use crate::validate::{self, PromptBlock, TransferRule};
use crate::wire::{json, timestamp};

/// What a customer has set; `None` / a missing slider means "use the platform default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Agent name.
    pub agent_name: Option<String>,
    /// Greeting for new callers.
    pub greeting_new_caller: Option<String>,
    /// Greeting for returning callers.
    pub greeting_returning_caller: Option<String>,
    /// Voice.
    pub voice: Option<Voice>,
    /// Slider overrides by name.
    pub sliders: BTreeMap<String, u32>,
    /// Prompt blocks.
    pub prompt_blocks: Option<Vec<PromptBlock>>,
    /// Transfer rules.
    pub transfer_rules: Option<Vec<TransferRule>>,
    /// IANA time zone.
    pub time_zone: Option<String>,
}

/// Platform defaults: every field set.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// Agent name.
    pub agent_name: String,
    /// Greeting for new callers.
    pub greeting_new_caller: String,
    /// Greeting for returning callers.
    pub greeting_returning_caller: String,
    /// Voice.
    pub voice: Voice,
    /// All 30 sliders.
    pub sliders: BTreeMap<String, u32>,
    /// Prompt blocks.
    pub prompt_blocks: Vec<PromptBlock>,
    /// Transfer rules.
    pub transfer_rules: Vec<TransferRule>,
    /// IANA time zone.
    pub time_zone: String,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Overrides {
    /// Each set field as `key -> JSON value` (`sliders.<name>` per slider): the unit of history.
    pub fn entries(&self) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        put("agent_name", self.agent_name.as_ref().map(json));
        put(
            "greeting_new_caller",
            self.greeting_new_caller.as_ref().map(json),
        );
        put(
            "greeting_returning_caller",
            self.greeting_returning_caller.as_ref().map(json),
        );
        put("voice", self.voice.map(|v| json(&v.as_str())));
        put("prompt_blocks", self.prompt_blocks.as_ref().map(json));
        put("transfer_rules", self.transfer_rules.as_ref().map(json));
        put("time_zone", self.time_zone.as_ref().map(json));
        for (k, v) in &self.sliders {
            m.insert(format!("sliders.{k}"), Value::from(*v));
        }
        m
    }

    /// The protobuf form.
    pub fn to_pb(&self) -> pb::AgentConfig {
        pb::AgentConfig {
            agent_name: self.agent_name.clone(),
            greeting_new_caller: self.greeting_new_caller.clone(),
            greeting_returning_caller: self.greeting_returning_caller.clone(),
            voice: self.voice.map(|v| v.as_str().to_owned()),
            sliders: self.sliders.clone().into_iter().collect(),
            prompt_blocks: self.prompt_blocks.as_ref().map(|b| pb::PromptBlockList {
                blocks: b.iter().map(block_pb).collect(),
            }),
            transfer_rules: self.transfer_rules.as_ref().map(|r| pb::TransferRuleList {
                rules: r.iter().map(rule_pb).collect(),
            }),
            time_zone: self.time_zone.clone(),
        }
    }

    /// Applies `config` to a copy of `self` for the paths in `mask` (field-mask semantics: a path
    /// whose value is unset resets the field to the platform default; `sliders` replaces the
    /// slider overrides with `config.sliders`; `sliders.<name>` sets or resets one slider). An
    /// empty mask updates every field that is set in `config`, sliders one by one.
    pub fn apply(&self, config: &pb::AgentConfig, mask: &[String], field: &str) -> Result<Self> {
        let derived;
        let paths: &[String] = if mask.is_empty() {
            derived = set_paths(config);
            &derived
        } else {
            mask
        };
        let mut out = self.clone();
        for path in paths {
            out.set_path(config, path, field)?;
        }
        Ok(out)
    }

    /// Sets (or, with no value in `config`, resets) the field one mask path names.
    fn set_path(&mut self, config: &pb::AgentConfig, path: &str, field: &str) -> Result<()> {
        let f = |name: &str| format!("{field}.{name}");
        let text = |v: &Option<String>, check: fn(&str, &str) -> Result<String>| {
            v.as_deref().map(|v| check(&f(path), v)).transpose()
        };
        match path {
            "agent_name" => self.agent_name = text(&config.agent_name, validate::agent_name)?,
            "greeting_new_caller" => {
                self.greeting_new_caller = text(&config.greeting_new_caller, validate::greeting)?
            }
            "greeting_returning_caller" => {
                self.greeting_returning_caller =
                    text(&config.greeting_returning_caller, validate::greeting)?
            }
            "voice" => {
                let voice = config.voice.as_deref();
                self.voice = voice.map(|v| validate::voice(&f(path), v)).transpose()?
            }
            "time_zone" => self.time_zone = text(&config.time_zone, time_zone_name)?,
            "prompt_blocks" => {
                let blocks = config.prompt_blocks.as_ref().map(|l| &l.blocks[..]);
                self.prompt_blocks = list(blocks, |b| validate::prompt_blocks(&f(path), b))?
            }
            "transfer_rules" => {
                let rules = config.transfer_rules.as_ref().map(|l| &l.rules[..]);
                self.transfer_rules = list(rules, |r| validate::transfer_rules(&f(path), r))?
            }
            "sliders" => {
                self.sliders = BTreeMap::new();
                set_sliders(&mut self.sliders, &config.sliders, field)?;
            }
            p if p.starts_with("sliders.") => {
                let name = &p["sliders.".len()..];
                self.set_slider(name, config.sliders.get(name).copied(), &f(p))?
            }
            other => {
                return Err(TenantError::invalid(
                    "update_mask",
                    format!(
                        "unknown path `{}`; allowed: agent_name, greeting_new_caller, greeting_returning_caller, voice, sliders, sliders.<name>, prompt_blocks, transfer_rules, time_zone",
                        other.escape_debug()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `sliders.<name>`: sets the slider to `value`, or resets it to the default when unset.
    fn set_slider(&mut self, name: &str, value: Option<u32>, field: &str) -> Result<()> {
        match value {
            Some(v) => {
                let s = validate::slider(field, name, v)?;
                self.sliders
                    .insert(s.name().to_owned(), u32::from(s.value()));
            }
            None => {
                if !SLIDER_NAMES.contains(&name) {
                    return Err(TenantError::invalid(
                        "update_mask",
                        format!("unknown slider `{}`", name.escape_debug()),
                    ));
                }
                self.sliders.remove(name);
            }
        }
        Ok(())
    }

    /// Merged over `defaults`.
    pub fn effective(&self, defaults: &Defaults) -> Defaults {
        let mut sliders = defaults.sliders.clone();
        for (k, v) in &self.sliders {
            sliders.insert(k.clone(), *v);
        }
        // What the customer set, else the platform's value.
        fn or<T: Clone>(set: &Option<T>, default: &T) -> T {
            set.as_ref().unwrap_or(default).clone()
        }
        Defaults {
            agent_name: or(&self.agent_name, &defaults.agent_name),
            greeting_new_caller: or(&self.greeting_new_caller, &defaults.greeting_new_caller),
            greeting_returning_caller: or(
                &self.greeting_returning_caller,
                &defaults.greeting_returning_caller,
            ),
            voice: self.voice.unwrap_or(defaults.voice),
            sliders,
            prompt_blocks: or(&self.prompt_blocks, &defaults.prompt_blocks),
            transfer_rules: or(&self.transfer_rules, &defaults.transfer_rules),
            time_zone: or(&self.time_zone, &defaults.time_zone),
            updated_at: defaults.updated_at,
        }
    }
}

/// The update that reverts one history entry (`config_type`, `config_key`, `old_value`): the one
/// mask path `key`, with the value it had before in `config` (unset when it was unset, which
/// resets the field to the platform default). FAILED_PRECONDITION for an entry that is not of
/// the agent configuration, or whose old value is not of the field's shape.
pub fn revert_update(
    config_type: &str,
    key: &str,
    old: Option<Value>,
) -> Result<(pb::AgentConfig, Vec<String>)> {
    if config_type != ConfigType::Agent.as_str() && config_type != ConfigType::Slider.as_str() {
        return Err(TenantError::FailedPrecondition(format!(
            "only agent configuration changes can be reverted; this one is of kind `{config_type}`"
        )));
    }
    let bad = || {
        TenantError::FailedPrecondition(format!(
            "the previous value of `{}` cannot be read back",
            key.escape_debug()
        ))
    };
    let mut c = pb::AgentConfig::default();
    if let Some(old) = old {
        let text = || old.as_str().map(str::to_owned).ok_or_else(bad);
        match key {
            "agent_name" => c.agent_name = Some(text()?),
            "greeting_new_caller" => c.greeting_new_caller = Some(text()?),
            "greeting_returning_caller" => c.greeting_returning_caller = Some(text()?),
            "voice" => c.voice = Some(text()?),
            "time_zone" => c.time_zone = Some(text()?),
            "prompt_blocks" => {
                let blocks: Vec<PromptBlock> = serde_json::from_value(old).map_err(|_| bad())?;
                c.prompt_blocks = Some(pb::PromptBlockList {
                    blocks: blocks.iter().map(block_pb).collect(),
                });
            }
            "transfer_rules" => {
                let rules: Vec<TransferRule> = serde_json::from_value(old).map_err(|_| bad())?;
                c.transfer_rules = Some(pb::TransferRuleList {
                    rules: rules.iter().map(rule_pb).collect(),
                });
            }
            k if k.starts_with("sliders.") => {
                let v = old
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(bad)?;
                c.sliders.insert(k["sliders.".len()..].to_owned(), v);
            }
            _ => return Err(bad()),
        }
    }
    Ok((c, vec![key.to_owned()]))
}

/// The paths of every field set in `config` (for an empty mask).
fn set_paths(config: &pb::AgentConfig) -> Vec<String> {
    let mut p = Vec::new();
    let mut add = |set: bool, name: &str| {
        if set {
            p.push(name.to_owned());
        }
    };
    add(config.agent_name.is_some(), "agent_name");
    add(config.greeting_new_caller.is_some(), "greeting_new_caller");
    add(
        config.greeting_returning_caller.is_some(),
        "greeting_returning_caller",
    );
    add(config.voice.is_some(), "voice");
    add(config.prompt_blocks.is_some(), "prompt_blocks");
    add(config.transfer_rules.is_some(), "transfer_rules");
    add(config.time_zone.is_some(), "time_zone");
    let mut names: Vec<_> = config.sliders.keys().collect();
    names.sort();
    p.extend(names.into_iter().map(|n| format!("sliders.{n}")));
    p
}

/// The fields that differ between `before` and `after`.
pub fn diff(before: &Overrides, after: &Overrides) -> Vec<Change> {
    let a = before.entries();
    let b = after.entries();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| Change {
            config_type: if k.starts_with("sliders.") {
                ConfigType::Slider
            } else {
                ConfigType::Agent
            },
            key: k.clone(),
            old: a.get(k).cloned(),
            new: b.get(k).cloned(),
        })
        .collect()
}

/// Protobuf prompt block.
pub fn block_pb(b: &PromptBlock) -> pb::PromptBlock {
    pb::PromptBlock {
        name: b.name.clone(),
        text: b.text.clone(),
    }
}

/// Protobuf transfer rule.
pub fn rule_pb(r: &TransferRule) -> pb::TransferRule {
    pb::TransferRule {
        keyword: r.keyword.clone(),
        number: r.number.clone(),
        description: r.description.clone(),
    }
}

impl Defaults {
    /// As the merged agent profile of `customer_id`.
    pub fn to_profile(&self, customer_id: i64, business_name: &str) -> pb::AgentProfile {
        // The same fields as the platform-defaults message, under a customer's name.
        let d = self.to_pb();
        pb::AgentProfile {
            customer_id,
            business_name: business_name.to_owned(),
            agent_name: d.agent_name,
            greeting_new_caller: d.greeting_new_caller,
            greeting_returning_caller: d.greeting_returning_caller,
            voice: d.voice,
            sliders: d.sliders,
            prompt_blocks: d.prompt_blocks,
            transfer_rules: d.transfer_rules,
            time_zone: d.time_zone,
        }
    }

    /// As the platform-defaults message.
    pub fn to_pb(&self) -> pb::PlatformDefaults {
        pb::PlatformDefaults {
            agent_name: self.agent_name.clone(),
            greeting_new_caller: self.greeting_new_caller.clone(),
            greeting_returning_caller: self.greeting_returning_caller.clone(),
            voice: self.voice.as_str().to_owned(),
            sliders: self.sliders.clone().into_iter().collect(),
            prompt_blocks: self.prompt_blocks.iter().map(block_pb).collect(),
            transfer_rules: self.transfer_rules.iter().map(rule_pb).collect(),
            time_zone: self.time_zone.clone(),
            update_time: Some(timestamp(self.updated_at)),
        }
    }

    /// Applies an admin update of the defaults (field-mask semantics; every path needs a value,
    /// since defaults cannot be unset).
    pub fn apply(&self, update: &pb::PlatformDefaults, mask: &[String]) -> Result<Self> {
        if mask.is_empty() {
            return Err(TenantError::invalid(
                "update_mask",
                "name the fields to change, e.g. [\"voice\", \"sliders.warmth\"]",
            ));
        }
        let mut out = self.clone();
        for path in mask {
            out.set_path(update, path)?;
        }
        Ok(out)
    }

    /// Sets the field one mask path names to its value in `update`.
    fn set_path(&mut self, update: &pb::PlatformDefaults, path: &str) -> Result<()> {
        let f = |n: &str| format!("defaults.{n}");
        match path {
            "agent_name" => self.agent_name = validate::agent_name(&f(path), &update.agent_name)?,
            "greeting_new_caller" => {
                self.greeting_new_caller =
                    validate::greeting(&f(path), &update.greeting_new_caller)?
            }
            "greeting_returning_caller" => {
                self.greeting_returning_caller =
                    validate::greeting(&f(path), &update.greeting_returning_caller)?
            }
            "voice" => self.voice = validate::voice(&f(path), &update.voice)?,
            "time_zone" => self.time_zone = time_zone_name(&f(path), &update.time_zone)?,
            "prompt_blocks" => {
                self.prompt_blocks = validate::prompt_blocks(&f(path), &update.prompt_blocks)?
            }
            "transfer_rules" => {
                self.transfer_rules = validate::transfer_rules(&f(path), &update.transfer_rules)?
            }
            "sliders" => set_sliders(&mut self.sliders, &update.sliders, "defaults")?,
            p if p.starts_with("sliders.") => {
                let name = &p["sliders.".len()..];
                let value = update.sliders.get(name).ok_or_else(|| {
                    TenantError::invalid(
                        f(p),
                        "a default slider cannot be unset; give a value 0-100",
                    )
                })?;
                set_sliders(
                    &mut self.sliders,
                    &[(name.to_owned(), *value)].into(),
                    "defaults",
                )?;
            }
            other => {
                return Err(TenantError::invalid(
                    "update_mask",
                    format!("unknown path `{}`", other.escape_debug()),
                ));
            }
        }
        Ok(())
    }
}

/// A list that is set validated by `check`; `None` (reset to the default) when it is unset.
fn list<T, U>(set: Option<&[T]>, check: impl FnOnce(&[T]) -> Result<U>) -> Result<Option<U>> {
    set.map(check).transpose()
}

/// A validated IANA time zone, as given.
fn time_zone_name(field: &str, v: &str) -> Result<String> {
    validate::time_zone(field, v).map(|_| v.to_owned())
}

/// Validates each of `sliders` (errors name `{field}.sliders.<name>`) and sets it in `into`.
fn set_sliders(
    into: &mut BTreeMap<String, u32>,
    sliders: &std::collections::HashMap<String, u32>,
    field: &str,
) -> Result<()> {
    for (name, value) in sliders {
        let s = validate::slider(&format!("{field}.sliders.{name}"), name, *value)?;
        into.insert(s.name().to_owned(), u32::from(s.value()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> pb::AgentConfig {
        pb::AgentConfig::default()
    }

    #[test]
    fn empty_mask_updates_set_fields_and_sliders_one_by_one() {
        let before = Overrides {
            sliders: [("humor".to_owned(), 10)].into(),
            ..Default::default()
        };
        let mut c = cfg();
        c.agent_name = Some("Ava".into());
        c.sliders.insert("warmth".into(), 80);
        let after = before.apply(&c, &[], "config").unwrap();
        assert_eq!(after.agent_name.as_deref(), Some("Ava"));
        assert_eq!(
            after.sliders.get("humor"),
            Some(&10),
            "untouched slider kept"
        );
        assert_eq!(after.sliders.get("warmth"), Some(&80));
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 2);
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn a_history_entry_reverts_through_its_one_path() {
        let before = Overrides {
            agent_name: Some("Ada".into()),
            ..Default::default()
        };
        let mut after = before.clone();
        after.agent_name = Some("Bob".into());
        after.sliders.insert("warmth".into(), 90);
        after.transfer_rules = Some(vec![TransferRule {
            keyword: "claims".into(),
            number: "+15550100123".into(),
            description: "claims desk".into(),
        }]);
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 3, "{changes:?}");
        let mut state = after.clone();
        for c in &changes {
            let (config, mask) =
                revert_update(c.config_type.as_str(), &c.key, c.old.clone()).unwrap();
            state = state.apply(&config, &mask, "revert").unwrap();
        }
        assert_eq!(
            state, before,
            "every change reverted: back where it started"
        );
        let err = revert_update("outbound", "webhook_url", None).unwrap_err();
        assert!(matches!(err, TenantError::FailedPrecondition(_)), "{err:?}");
        let err = revert_update("slider", "sliders.warmth", Some(Value::from("x"))).unwrap_err();
        assert!(matches!(err, TenantError::FailedPrecondition(_)), "{err:?}");
    }

    #[test]
    fn a_masked_path_without_value_resets_to_default() {
        let before = Overrides {
            voice: Some(Voice::Ash),
            sliders: [("humor".to_owned(), 10)].into(),
            ..Default::default()
        };
        let after = before
            .apply(&cfg(), &["voice".into(), "sliders.humor".into()], "config")
            .unwrap();
        assert_eq!(after.voice, None);
        assert!(after.sliders.is_empty());
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| c.new.is_none()));
    }

    #[test]
    fn unknown_paths_and_bad_values_are_refused() {
        let o = Overrides::default();
        assert!(
            o.apply(&cfg(), &["colour".into()], "config")
                .unwrap_err()
                .to_string()
                .contains("update_mask")
        );
        assert!(
            o.apply(&cfg(), &["sliders.bogus".into()], "config")
                .is_err()
        );
        let mut c = cfg();
        c.voice = Some("onyx".into());
        let e = o.apply(&c, &[], "config").unwrap_err().to_string();
        assert!(
            e.starts_with("config.voice:") && e.contains("text-to-speech"),
            "{e}"
        );
    }
}
