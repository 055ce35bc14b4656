//! The agent configuration's fields (names, greetings and their placeholders, voices, sliders,
//! time zones, prompt blocks, transfer rules), shared by a customer's overrides and the platform
//! defaults.

use mesh::domain::{DialPolicy, PhoneNumber, Slider, Voice};
use serde::{Deserialize, Serialize};

use super::{bounded_text, chars};
use crate::error::{Result, TenantError};

/// Longest agent name.
pub const MAX_AGENT_NAME: usize = 60;
/// Longest greeting.
pub const MAX_GREETING: usize = 500;
/// Most prompt blocks / transfer rules.
pub const MAX_LIST: usize = 20;
/// Longest prompt block text.
pub const MAX_PROMPT_TEXT: usize = 4000;
/// Placeholders a greeting may use.
pub const PLACEHOLDERS: [&str; 3] = ["agent_name", "user_name", "time_greeting"];

/// A prompt block as stored (JSON) and used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptBlock {
    /// Identifier.
    pub name: String,
    /// Instruction text.
    pub text: String,
}

/// A transfer rule as stored (JSON) and used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRule {
    /// What the caller asks for.
    pub keyword: String,
    /// E.164 target.
    pub number: String,
    /// What the target handles.
    pub description: String,
}

/// Agent name: 1-60 characters, no control characters.
pub fn agent_name(field: &str, s: &str) -> Result<String> {
    if s.trim().is_empty() {
        return Err(TenantError::invalid(field, "must not be empty"));
    }
    bounded_text(field, s, 1, MAX_AGENT_NAME, false)
}

/// Greeting template: at most 500 characters, no control characters, only the placeholders
/// `{agent_name}`, `{user_name}`, `{time_greeting}`, braces only as part of a placeholder.
pub fn greeting(field: &str, s: &str) -> Result<String> {
    bounded_text(field, s, 1, MAX_GREETING, false)?;
    let mut rest = s;
    while let Some(i) = rest.find(['{', '}']) {
        if rest[i..].starts_with('}') {
            return Err(TenantError::invalid(
                field,
                "has a `}` without a matching `{`; braces are only for placeholders",
            ));
        }
        let after = &rest[i + 1..];
        let Some(end) = after.find('}') else {
            return Err(TenantError::invalid(
                field,
                "has a `{` that is never closed",
            ));
        };
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(TenantError::invalid(
                field,
                format!(
                    "unknown placeholder `{{{}}}`; allowed: {{agent_name}}, {{user_name}}, {{time_greeting}}",
                    name.chars().take(40).collect::<String>()
                ),
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(s.to_owned())
}

/// A realtime voice.
pub fn voice(field: &str, s: &str) -> Result<Voice> {
    Voice::parse(s).map_err(|e| TenantError::invalid(field, e))
}

/// One slider.
pub fn slider(field: &str, name: &str, value: u32) -> Result<Slider> {
    Slider::new(name, value).map_err(|e| TenantError::invalid(field, e))
}

/// An IANA time zone name.
pub fn time_zone(field: &str, s: &str) -> Result<chrono_tz::Tz> {
    s.parse::<chrono_tz::Tz>().map_err(|_| {
        TenantError::invalid(
            field,
            "must be an IANA time zone name such as America/New_York or Europe/Lisbon",
        )
    })
}

/// Prompt blocks: at most 20; names 1-60 of letters, digits, `_`, `-`; texts 1-4,000 characters.
pub fn prompt_blocks(
    field: &str,
    blocks: &[mesh::api::tenant::PromptBlock],
) -> Result<Vec<PromptBlock>> {
    if blocks.len() > MAX_LIST {
        return Err(TenantError::invalid(
            field,
            format!("at most {MAX_LIST} blocks, got {}", blocks.len()),
        ));
    }
    blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let f = format!("{field}[{i}]");
            if b.name.is_empty()
                || chars(&b.name) > 60
                || !b
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(TenantError::invalid(
                    format!("{f}.name"),
                    "must be 1 to 60 letters, digits, `_` or `-`",
                ));
            }
            Ok(PromptBlock {
                name: b.name.clone(),
                text: bounded_text(&format!("{f}.text"), &b.text, 1, MAX_PROMPT_TEXT, true)?,
            })
        })
        .collect()
}

/// Transfer targets against the customer's transfer policy (its transfer regions, else the
/// regions of its own numbers; restricted kinds only when allowed): the first rule whose number
/// may not be dialled is refused, naming `{field}[i].number`, the region or kind, and the setting
/// that would allow it. Rules are already valid ([`transfer_rules`]).
pub fn transfer_targets(field: &str, rules: &[TransferRule], policy: &DialPolicy) -> Result<()> {
    for (i, rule) in rules.iter().enumerate() {
        let f = format!("{field}[{i}].number");
        let number = PhoneNumber::parse(&rule.number).map_err(|e| TenantError::invalid(&f, e))?;
        if let Err(refusal) = policy.check(&number) {
            let allowed = if policy.regions.is_empty() {
                "none: the customer has no number and no transfer_regions".to_owned()
            } else {
                policy.regions.join(", ")
            };
            return Err(TenantError::invalid(
                &f,
                format!(
                    "{refusal} as a transfer target (transfer regions: {allowed}; change them with \
                     UpdateOutboundSettings transfer_regions / allowed_number_types)"
                ),
            ));
        }
    }
    Ok(())
}

/// Transfer rules: at most 20; keyword 1-60; a valid E.164 number; description at most 200.
pub fn transfer_rules(
    field: &str,
    rules: &[mesh::api::tenant::TransferRule],
) -> Result<Vec<TransferRule>> {
    if rules.len() > MAX_LIST {
        return Err(TenantError::invalid(
            field,
            format!("at most {MAX_LIST} rules, got {}", rules.len()),
        ));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f = format!("{field}[{i}]");
            if r.keyword.trim().is_empty() {
                return Err(TenantError::invalid(
                    format!("{f}.keyword"),
                    "must not be empty",
                ));
            }
            let keyword = bounded_text(&format!("{f}.keyword"), &r.keyword, 1, 60, false)?;
            let number = PhoneNumber::parse(&r.number)
                .map_err(|e| TenantError::invalid(format!("{f}.number"), e))?;
            let description =
                bounded_text(&format!("{f}.description"), &r.description, 0, 200, false)?;
            Ok(TransferRule {
                keyword,
                number: number.as_str().to_owned(),
                description,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::email;
    use proptest::prelude::*;

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn greetings_allow_only_known_placeholders() {
        assert!(greeting("g", "Hi {user_name}, {agent_name} here. {time_greeting}!").is_ok());
        assert!(msg(greeting("g", "Hi {caller}")).contains("unknown placeholder `{caller}`"));
        assert!(msg(greeting("g", "Hi {agent_name")).contains("never closed"));
        assert!(msg(greeting("g", "Hi } there")).contains("without a matching"));
        assert!(msg(greeting("g", "Hi\u{7}")).contains("control"));
        assert!(msg(greeting("g", &"a".repeat(501))).contains("1 to 500"));
        assert!(greeting("g", &"é".repeat(500)).is_ok());
        assert!(
            msg(greeting("config.greeting_new_caller", "{x}"))
                .starts_with("config.greeting_new_caller:")
        );
    }

    #[test]
    fn agent_names_are_bounded() {
        assert!(agent_name("a", &"x".repeat(60)).is_ok());
        assert!(msg(agent_name("a", &"x".repeat(61))).contains("1 to 60"));
        assert!(agent_name("a", "  ").is_err());
        assert!(agent_name("a", "Ann\nMarie").is_err());
    }

    #[test]
    fn voices_sliders_zones_emails() {
        assert!(msg(voice("v", "nova")).contains("text-to-speech"));
        assert!(voice("v", "cedar").is_ok());
        assert!(slider("s", "warmth", 101).is_err());
        assert!(slider("s", "warmthx", 1).is_err());
        assert!(time_zone("tz", "Europe/Lisbon").is_ok());
        assert!(time_zone("tz", "Mars/Olympus").is_err());
        assert!(email("e", "ops@peterson.example").is_ok());
        for bad in ["", "no-at", "a@b", "a@@b.com", "a b@c.com"] {
            assert!(email("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn transfer_rules_need_valid_numbers() {
        let rule = |n: &str| mesh::api::tenant::TransferRule {
            keyword: "claims".into(),
            number: n.into(),
            description: "Claims desk".into(),
        };
        let ok = transfer_rules("r", &[rule("+1 415 867 5309")]).unwrap();
        assert_eq!(ok[0].number, "+14158675309");
        assert!(msg(transfer_rules("r", &[rule("555-0100")])).starts_with("r[0].number"));
        let many: Vec<_> = (0..21).map(|_| rule("+14158675309")).collect();
        assert!(transfer_rules("r", &many).is_err());
    }

    proptest! {
        #[test]
        fn greeting_validation_never_panics(s in "\\PC{0,80}") {
            let _ = greeting("g", &s);
        }

        #[test]
        fn text_without_braces_or_controls_is_a_valid_greeting(s in "[a-zA-Z0-9 ,.!?'-]{1,200}") {
            prop_assert!(greeting("g", &s).is_ok());
        }
    }
}
