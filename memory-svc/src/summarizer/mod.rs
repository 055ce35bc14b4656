//! Post-call analysis: a call's summary, topics, key facts, sentiment, resolution, a learned
//! preferred name and the 13 personality scores.
//!
//! This module holds what every summarizer shares: its input ([`CallInput`]), its output
//! ([`CallAnalysis`], [`Scores`]) and the [`Summarizer`] trait. Two implementations:
//! - [`heuristic`]: [`HeuristicSummarizer`] (`heuristic-v1`), deterministic word lists and
//!   extraction, no model. Its summary text says it is heuristic, so nobody mistakes it for a
//!   model's judgement.
//! - [`openai`]: [`OpenAiSummarizer`] (`openai:<model>`), the chat-completions API with a JSON
//!   response, configured by base URL, model and key (tests point it at a fake server).
//!
//! When the configured summarizer fails, the service falls back to the heuristic one *visibly*:
//! the stored `summarizer` says `heuristic-v1 (fallback: ...)`, a warning is logged and
//! `memory_summarizer_fallbacks_total` counts it (the old system fell back silently).

pub mod heuristic;
pub mod openai;

use futures::future::BoxFuture;
use mesh::api::common::Speaker;
use serde_json::{Map, Value as Json};

pub use heuristic::{HEURISTIC_NAME, HeuristicSummarizer};
pub use openai::{OpenAiConfig, OpenAiSummarizer};

use crate::model::{Resolution, Sentiment};

/// One transcript turn, validated.
#[derive(Debug, Clone)]
pub struct Turn {
    /// Who spoke.
    pub speaker: Speaker,
    /// What was said.
    pub text: String,
    /// Media time of the start, ms.
    pub offset_ms: u32,
}

/// What a summarizer is given.
#[derive(Debug, Clone)]
pub struct CallInput {
    /// Seconds.
    pub duration_seconds: i32,
    /// Whether the call ended in a transfer.
    pub transferred: bool,
    /// Turns in order.
    pub turns: Vec<Turn>,
}

/// Declares [`Scores`], [`SCORE_NAMES`] and the array conversions from one list of the 13
/// score names, so their order is written once.
macro_rules! scores {
    ($($(#[$doc:meta])* $name:ident,)+) => {
        /// The 13 scores, each 0-100, in the product doc's order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct Scores {
            $($(#[$doc])* pub $name: i16,)+
        }

        /// Score names, in the order of [`Scores::to_array`].
        pub const SCORE_NAMES: [&str; 13] = [$(stringify!($name),)+];

        impl Scores {
            /// All scores in [`SCORE_NAMES`] order.
            pub fn to_array(self) -> [i16; 13] {
                [$(self.$name,)+]
            }

            /// From [`SCORE_NAMES`] order, clamped to 0-100.
            pub fn from_array(a: [i16; 13]) -> Scores {
                let mut clamped = a.into_iter().map(|v| v.clamp(0, 100));
                Scores {
                    $($name: clamped.next().unwrap_or_default(),)+
                }
            }
        }
    };
}

scores! {
    /// Big-five openness.
    openness,
    /// Big-five conscientiousness.
    conscientiousness,
    /// Big-five extraversion.
    extraversion,
    /// Big-five agreeableness.
    agreeableness,
    /// Big-five neuroticism.
    neuroticism,
    /// Formality of speech.
    formality,
    /// Directness.
    directness,
    /// Attention to detail.
    detail_orientation,
    /// Patience.
    patience,
    /// Technical comfort.
    technical_comfort,
    /// Frustration.
    frustration_level,
    /// Satisfaction.
    satisfaction_level,
    /// Urgency.
    urgency_level,
}

/// The ten averaged traits are the first ten scores; the last three are per-call levels.
pub const TRAITS: usize = 10;

/// What a summarizer produces.
#[derive(Debug, Clone)]
pub struct CallAnalysis {
    /// Summary text.
    pub summary: String,
    /// Topics discussed.
    pub key_topics: Vec<String>,
    /// Key facts.
    pub key_variables: Map<String, Json>,
    /// How the caller sounded.
    pub sentiment: Sentiment,
    /// How the call ended.
    pub resolution_status: Resolution,
    /// A name the caller asked to be called, if heard.
    pub preferred_name: Option<String>,
    /// Personality scores.
    pub scores: Scores,
    /// Who wrote it, e.g. `heuristic-v1` or `openai:gpt-4o-mini`.
    pub summarizer: String,
}

/// Why a summarizer failed (the message never contains transcript text).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SummarizerError(pub String);

/// Analyses a finished call.
pub trait Summarizer: Send + Sync + 'static {
    /// Name stored with the summaries it writes.
    fn name(&self) -> String;
    /// Analyses the call.
    fn summarize<'a>(
        &'a self,
        call: &'a CallInput,
    ) -> BoxFuture<'a, Result<CallAnalysis, SummarizerError>>;
}

/// `s` on one line, cut to `max` characters with an ellipsis (summaries and topics are shown
/// to agents and stored; both summarizers bound them the same way).
fn clip(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() <= max {
        s
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_keep_their_order_and_are_clamped() {
        let a: [i16; 13] = std::array::from_fn(|i| i as i16 * 10 - 5);
        let s = Scores::from_array(a);
        assert_eq!(s.openness, 0, "clamped up");
        assert_eq!(s.conscientiousness, 5);
        assert_eq!(s.urgency_level, 100, "clamped down");
        assert_eq!(Scores::from_array(s.to_array()), s);
        assert_eq!(SCORE_NAMES[10], "frustration_level");
        assert_eq!(s.to_array()[10], s.frustration_level);
    }

    #[test]
    fn clip_flattens_and_cuts() {
        assert_eq!(clip(" a \n b ", 10), "a b");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
