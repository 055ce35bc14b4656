//! The agent page's form: the values its fields show ([`Values`], from the effective profile or
//! as posted), the draft of only the fields that differ, the slider presets, and the transfer
//! rules' one-per-line text.

use mesh::api::tenant::{AgentConfig, AgentProfile, TransferRule, TransferRuleList};
use mesh::domain::SLIDER_NAMES;

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

/// The form's values (what the page shows in its fields).
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Values {
    pub(super) agent_name: String,
    pub(super) greeting_new_caller: String,
    pub(super) greeting_returning_caller: String,
    pub(super) voice: String,
    pub(super) time_zone: String,
    /// Slider values as typed (text: an invalid entry is shown back as it was).
    pub(super) sliders: Vec<(String, String)>,
    /// One rule per line: `keyword | +number | description`.
    pub(super) transfer_rules: String,
}

impl Values {
    pub(super) fn of(p: &AgentProfile) -> Values {
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
    pub(super) fn from_form(form: &[(String, String)], current: &Values) -> Values {
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
    pub(super) fn draft(&self, current: &Values) -> Result<(AgentConfig, Vec<String>), String> {
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
    pub(super) fn slider(&self, name: &str) -> Option<u32> {
        self.sliders
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse().ok())
    }

    /// The form with a preset's three sliders set.
    pub(super) fn with_preset(mut self, preset: &str) -> Option<Values> {
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
pub(super) fn rules_text(rules: &[TransferRule]) -> String {
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
