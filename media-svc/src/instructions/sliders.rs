//! The 30 sliders as instruction text (product.md: above 50 an intensity word, "very" >= 80,
//! "quite" >= 65, "moderately" > 50; below 30 a strong opposite; 30-49 a mild opposite; exactly
//! 50 nothing).

use mesh::api::tenant::AgentProfile;
use mesh::domain::SLIDER_NAMES;

/// For each slider: the trait it raises and the trait its low end means. Both are adjective
/// phrases, because they are read after "Be very/quite/moderately" and "Lean towards being" /
/// "Be clearly" (a phrase opening with a gerund, like "using plain words", does not read as
/// English there; `slider_phrases_read_as_english` checks every one).
const SLIDER_TEXT: [(&str, &str, &str); 30] = [
    ("warmth", "warm and friendly", "reserved and matter-of-fact"),
    ("formality", "formal in wording", "casual in wording"),
    ("humor", "humorous", "serious, without jokes"),
    (
        "directness",
        "direct and to the point",
        "gentle and indirect",
    ),
    (
        "empathy",
        "empathetic about the caller's feelings",
        "focused on facts rather than feelings",
    ),
    (
        "confidence",
        "confident in your answers",
        "tentative, offering answers as suggestions",
    ),
    (
        "curiosity",
        "curious, asking follow-up questions",
        "sparing with questions",
    ),
    (
        "patience",
        "patient, letting the caller take their time",
        "brisk, keeping the call moving",
    ),
    (
        "creativity",
        "creative in suggesting solutions",
        "conventional, sticking to standard answers",
    ),
    (
        "analytical",
        "analytical, reasoning step by step",
        "intuitive rather than analytical",
    ),
    (
        "storytelling",
        "illustrative, using short examples",
        "plain, without anecdotes",
    ),
    (
        "detail",
        "detailed in explanations",
        "brief, giving only the essentials",
    ),
    (
        "assertiveness",
        "assertive in guiding the conversation",
        "deferential, letting the caller lead",
    ),
    ("humility", "humble about what you know", "self-assured"),
    (
        "optimism",
        "optimistic and encouraging",
        "realistic, not sugar-coating",
    ),
    (
        "sarcasm",
        "dryly witty",
        "completely literal, never sarcastic",
    ),
    (
        "memory",
        "attentive to what the caller said earlier and in past calls",
        "focused on the present request",
    ),
    (
        "formalityShift",
        "adaptive, mirroring the caller's level of formality",
        "steady in tone whatever the caller's tone",
    ),
    ("inclusive", "inclusive in language", "neutral in language"),
    (
        "risk",
        "open to unusual options",
        "cautious, preferring safe options",
    ),
    (
        "selfReference",
        "willing to speak about yourself",
        "focused on the caller, rarely mentioning yourself",
    ),
    (
        "topicFocus",
        "focused on the topic at hand",
        "open to side topics",
    ),
    (
        "repetition",
        "insistent on repeating key points to confirm them",
        "sparing with repetition",
    ),
    ("intensity", "energetic and expressive", "calm and low-key"),
    (
        "humorSensitivity",
        "quick to pick up on the caller's humor",
        "careful not to read jokes into what the caller says",
    ),
    (
        "consistency",
        "consistent in phrasing and procedure",
        "flexible in phrasing and procedure",
    ),
    (
        "metaAwareness",
        "open about how you work when asked",
        "focused on the task rather than on how you work",
    ),
    (
        "jargon",
        "comfortable using industry terms",
        "plain-spoken, avoiding jargon",
    ),
    (
        "polish",
        "polished and well-phrased",
        "relaxed and conversational",
    ),
    (
        "caution",
        "careful to double-check before committing",
        "decisive",
    ),
];

/// The slider bullets, in the canonical slider order.
pub fn render_sliders(profile: &AgentProfile) -> Vec<String> {
    let mut out = Vec::new();
    for name in SLIDER_NAMES {
        let value = profile.sliders.get(name).copied().unwrap_or(50).min(100);
        let (_, high, low) = SLIDER_TEXT
            .iter()
            .find(|(n, _, _)| *n == name)
            .copied()
            .unwrap_or((name, name, name));
        let line = match value {
            80.. => format!("Be very {high}."),
            65..=79 => format!("Be quite {high}."),
            51..=64 => format!("Be moderately {high}."),
            50 => continue,
            30..=49 => format!("Lean towards being {low}."),
            _ => format!("Be clearly {low}."),
        };
        out.push(format!("- {line} ({name} {value}/100)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::fallback_profile;

    fn profile() -> AgentProfile {
        let mut p = fallback_profile(1);
        p.agent_name = "Ada".into();
        p.business_name = "Smith & Sons".into();
        p.sliders.insert("warmth".into(), 85);
        p.sliders.insert("directness".into(), 70);
        p.sliders.insert("humor".into(), 55);
        p.sliders.insert("sarcasm".into(), 10);
        p.sliders.insert("jargon".into(), 40);
        p.time_zone = "America/New_York".into();
        p
    }

    #[test]
    fn sliders_follow_the_product_rules() {
        let lines = render_sliders(&profile());
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(lines[0].starts_with("- Be very warm"), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("- Be moderately humorous"))
        );
        assert!(lines.iter().any(|l| l.starts_with("- Be quite direct")));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("- Be clearly completely literal"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("- Lean towards being plain-spoken, avoiding jargon"))
        );
        assert!(render_sliders(&fallback_profile(1)).is_empty());
        assert_eq!(SLIDER_TEXT.len(), SLIDER_NAMES.len());
        for name in SLIDER_NAMES {
            assert!(SLIDER_TEXT.iter().any(|(n, _, _)| *n == name), "{name}");
        }
    }

    /// Every phrase opens with an adjective (or a participle used as one: "willing", "sparing"),
    /// so each of the five sentences a slider can become reads as English.
    #[test]
    fn slider_phrases_read_as_english() {
        const ADJECTIVES_ENDING_IN_ING: [&str; 2] = ["sparing", "willing"];
        for (name, high, low) in SLIDER_TEXT {
            for phrase in [high, low] {
                let first = phrase.split([' ', ',']).next().unwrap_or_default();
                assert!(
                    !first.ends_with("ing") || ADJECTIVES_ENDING_IN_ING.contains(&first),
                    "{name}: \"{phrase}\" opens with a gerund: \"Be very {phrase}\" / \"Lean towards being {phrase}\""
                );
            }
        }
        let mut p = fallback_profile(1);
        for (value, opening) in [
            (90, "- Be very "),
            (70, "- Be quite "),
            (60, "- Be moderately "),
            (40, "- Lean towards being "),
            (10, "- Be clearly "),
        ] {
            for name in SLIDER_NAMES {
                p.sliders.insert(name.into(), value);
            }
            let lines = render_sliders(&p);
            assert_eq!(lines.len(), 30);
            assert!(lines.iter().all(|l| l.starts_with(opening)), "{lines:?}");
        }
    }
}
