//! The heuristic summarizer (`heuristic-v1`): deterministic word lists and extraction, no
//! model. It is the default when no OpenAI key is configured and the visible fallback when the
//! configured summarizer fails, so it must always produce an analysis, quickly and without I/O.
//! Its summary text says it is heuristic, so nobody mistakes it for a model's judgement.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use mesh::api::common::Speaker;
use serde_json::{Map, Value as Json};

use super::{CallAnalysis, CallInput, Scores, Summarizer, SummarizerError, clip};
use crate::model::{Resolution, Sentiment};

/// Name of the heuristic summarizer, stored with every summary it writes.
pub const HEURISTIC_NAME: &str = "heuristic-v1";

/// Deterministic, model-free analysis (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct HeuristicSummarizer;

const TOPICS: &[(&str, &[&str])] = &[
    (
        "claims",
        &["claim", "claims", "accident", "damage", "adjuster"],
    ),
    (
        "billing",
        &[
            "bill", "billing", "invoice", "payment", "pay", "charge", "charged", "refund",
        ],
    ),
    ("policy", &["policy", "coverage", "deductible", "premium"]),
    ("quote", &["quote", "estimate", "price", "pricing"]),
    ("renewal", &["renew", "renewal", "expire", "expiring"]),
    ("cancellation", &["cancel", "cancellation", "terminate"]),
    (
        "appointment",
        &[
            "appointment",
            "schedule",
            "reschedule",
            "booking",
            "book",
            "meeting",
        ],
    ),
    (
        "account",
        &["account", "login", "password", "address", "update"],
    ),
    (
        "technical support",
        &[
            "error", "broken", "crash", "internet", "wifi", "router", "app", "website",
        ],
    ),
    (
        "complaint",
        &[
            "complaint",
            "complain",
            "unacceptable",
            "manager",
            "supervisor",
        ],
    ),
];

const POSITIVE: &[&str] = &[
    "thanks",
    "thank",
    "great",
    "perfect",
    "awesome",
    "appreciate",
    "helpful",
    "excellent",
    "wonderful",
    "good",
    "happy",
    "glad",
    "love",
    "fantastic",
];
const NEGATIVE: &[&str] = &[
    "angry",
    "upset",
    "terrible",
    "awful",
    "frustrated",
    "frustrating",
    "ridiculous",
    "unacceptable",
    "annoyed",
    "worst",
    "bad",
    "hate",
    "disappointed",
    "useless",
    "still",
    "again",
];
const URGENT: &[&str] = &[
    "urgent",
    "urgently",
    "asap",
    "immediately",
    "emergency",
    "now",
    "today",
    "quickly",
    "right",
];
const FORMAL: &[&str] = &[
    "please",
    "would",
    "could",
    "sir",
    "madam",
    "kindly",
    "regards",
    "appreciate",
];
const CASUAL: &[&str] = &[
    "yeah", "yep", "nope", "gonna", "wanna", "hey", "cool", "ok", "okay", "kinda",
];
const TECH: &[&str] = &[
    "api",
    "server",
    "router",
    "browser",
    "software",
    "download",
    "install",
    "configure",
    "settings",
    "bluetooth",
    "wifi",
    "password",
    "app",
    "update",
    "database",
    "email",
];
const FOLLOW_UP: &[&str] = &[
    "call me back",
    "call back",
    "follow up",
    "get back to me",
    "later",
];
const RESOLVED: &[&str] = &[
    "that helps",
    "that's all",
    "perfect",
    "thank you",
    "thanks",
    "great",
    "solved",
];
const NAME_STOP: &[&str] = &[
    "calling",
    "here",
    "sorry",
    "just",
    "not",
    "the",
    "a",
    "looking",
    "trying",
    "having",
    "fine",
    "good",
    "okay",
    "ok",
    "interested",
    "about",
];

fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

fn count(list: &[&str], ws: &[String]) -> i32 {
    ws.iter().filter(|w| list.contains(&w.as_str())).count() as i32
}

/// Finds a name the caller offered: "call me X", "my name is X", "this is X".
fn learned_name(caller_text: &[&str]) -> Option<String> {
    let mut best: Option<(u8, String)> = None;
    for text in caller_text {
        let tokens: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?' | ';'))
            .filter(|t| !t.is_empty())
            .collect();
        for i in 0..tokens.len() {
            let lower = |j: usize| tokens.get(j).map(|t| t.to_lowercase());
            let (rank, at) = if lower(i).as_deref() == Some("call")
                && lower(i + 1).as_deref() == Some("me")
            {
                (3, i + 2)
            } else if lower(i).as_deref() == Some("my")
                && lower(i + 1).as_deref() == Some("name")
                && lower(i + 2).as_deref() == Some("is")
            {
                (2, i + 3)
            } else if lower(i).as_deref() == Some("this") && lower(i + 1).as_deref() == Some("is") {
                (1, i + 2)
            } else {
                continue;
            };
            let Some(candidate) = tokens.get(at) else {
                continue;
            };
            let ok = candidate.chars().next().is_some_and(char::is_uppercase)
                && candidate
                    .chars()
                    .all(|c| c.is_alphabetic() || c == '-' || c == '\'')
                && (2..=40).contains(&candidate.chars().count())
                && !NAME_STOP.contains(&candidate.to_lowercase().as_str());
            if ok && best.as_ref().is_none_or(|(r, _)| rank > *r) {
                best = Some((rank, (*candidate).to_owned()));
            }
        }
    }
    best.map(|(_, n)| n)
}

/// Extracts simple key facts (emails, policy/claim/account numbers) from the caller's words.
fn key_variables(caller_text: &[&str], name: Option<&str>) -> Map<String, Json> {
    let mut vars = Map::new();
    if let Some(n) = name {
        vars.insert("caller_name".into(), Json::String(n.to_owned()));
    }
    for text in caller_text {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        for (i, raw) in tokens.iter().enumerate() {
            let t = raw
                .trim_matches(|c: char| matches!(c, ',' | '.' | '!' | '?' | ';' | ':' | '(' | ')'));
            if t.contains('@') && t.contains('.') && t.len() <= 100 && !vars.contains_key("email") {
                vars.insert("email".into(), Json::String(t.to_owned()));
            }
            for label in ["policy", "claim", "account", "order", "case"] {
                let key = format!("{label}_number");
                if raw.to_lowercase().starts_with(label) && !vars.contains_key(&key) {
                    // "policy number is AB123", "claim #77", "account 5512"
                    let next = tokens[i + 1..]
                        .iter()
                        .take(3)
                        .map(|t| t.trim_matches(|c: char| !c.is_alphanumeric() && c != '-'))
                        .find(|t| {
                            t.len() >= 3 && t.len() <= 32 && t.chars().any(|c| c.is_ascii_digit())
                        });
                    if let Some(v) = next {
                        vars.insert(key, Json::String(v.to_owned()));
                    }
                }
            }
        }
    }
    vars
}

fn score(base: i32) -> i16 {
    base.clamp(0, 100) as i16
}

/// The caller's side of a call, the way every heuristic reads it.
struct CallerSide<'a> {
    /// The caller's turns, in order.
    text: Vec<&'a str>,
    /// Their words, lower-cased.
    words: Vec<String>,
    /// All their text, lower-cased, joined by spaces.
    lower: String,
}

impl<'a> CallerSide<'a> {
    fn of(call: &'a CallInput) -> Self {
        let text: Vec<&str> = call
            .turns
            .iter()
            .filter(|t| t.speaker == Speaker::Caller)
            .map(|t| t.text.as_str())
            .collect();
        let words = text.iter().flat_map(|t| words(t)).collect();
        let lower = text.join(" ").to_lowercase();
        Self { text, words, lower }
    }

    fn count(&self, list: &[&str]) -> i32 {
        count(list, &self.words)
    }

    /// Negative words, plus one for every two exclamation marks.
    fn negatives(&self) -> i32 {
        self.count(NEGATIVE) + self.lower.matches('!').count() as i32 / 2
    }
}

/// Topics: dictionary hits, most mentioned first, ties by name; at most five.
fn key_topics(side: &CallerSide<'_>) -> Vec<String> {
    let mut hits: BTreeMap<&str, i32> = BTreeMap::new();
    for (topic, keys) in TOPICS {
        let n = side.count(keys);
        if n > 0 {
            hits.insert(topic, n);
        }
    }
    let mut topics: Vec<(&str, i32)> = hits.into_iter().collect();
    topics.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    topics
        .iter()
        .take(5)
        .map(|(t, _)| (*t).to_owned())
        .collect()
}

fn sentiment(pos: i32, neg: i32) -> Sentiment {
    match pos - neg {
        d if d >= 2 => Sentiment::Positive,
        d if d <= -2 => Sentiment::Negative,
        _ if pos > 0 && neg == 0 => Sentiment::Positive,
        _ if neg > 0 && pos == 0 => Sentiment::Negative,
        _ => Sentiment::Neutral,
    }
}

/// A transfer wins; then a request to follow up anywhere; then thanks in the caller's last turn.
fn resolution(call: &CallInput, side: &CallerSide<'_>) -> Resolution {
    let last_caller = side
        .text
        .last()
        .map(|t| t.to_lowercase())
        .unwrap_or_default();
    if call.transferred {
        Resolution::Transferred
    } else if FOLLOW_UP.iter().any(|p| side.lower.contains(p)) {
        Resolution::FollowUp
    } else if RESOLVED.iter().any(|p| last_caller.contains(p)) {
        Resolution::Resolved
    } else {
        Resolution::Unresolved
    }
}

/// The 13 scores from word counts, turn lengths, topics and facts found.
fn scores(side: &CallerSide<'_>, topics: usize, facts: usize) -> Scores {
    let (pos, neg) = (side.count(POSITIVE), side.negatives());
    let urgent = side.count(URGENT);
    let formal = side.count(FORMAL);
    let casual = side.count(CASUAL);
    let tech = side.count(TECH);
    let questions = side.lower.matches('?').count() as i32;
    let avg_words = side.words.len() as i32 / side.text.len().max(1) as i32;
    let (topics, facts) = (topics as i32, facts as i32);
    Scores {
        openness: score(45 + questions * 5 + topics * 3),
        conscientiousness: score(50 + facts * 8),
        extraversion: score(35 + avg_words.min(40)),
        agreeableness: score(55 + pos * 8 - neg * 8),
        neuroticism: score(30 + neg * 12),
        formality: score(50 + formal * 10 - casual * 10),
        directness: score(80 - avg_words.min(50)),
        detail_orientation: score(30 + avg_words.min(50) + facts * 5),
        patience: score(70 - neg * 12 - urgent * 6),
        technical_comfort: score(35 + tech * 10),
        frustration_level: score(15 + neg * 15),
        satisfaction_level: score(50 + pos * 10 - neg * 10),
        urgency_level: score(20 + urgent * 15),
    }
}

/// The summary text: what kind of summary it is, size, topics, the caller's first and last
/// words, the outcome.
fn summary_text(
    call: &CallInput,
    side: &CallerSide<'_>,
    key_topics: &[String],
    outcome: Resolution,
) -> String {
    let first = side.text.first().map(|t| clip(t, 200));
    let last = if side.text.len() > 1 {
        side.text.last().map(|t| clip(t, 200))
    } else {
        None
    };
    let mut summary = format!(
        "Heuristic summary (no language model): {} turn(s), {} s",
        call.turns.len(),
        call.duration_seconds
    );
    if !key_topics.is_empty() {
        summary.push_str(&format!("; topics: {}", key_topics.join(", ")));
    }
    summary.push('.');
    match first {
        Some(f) => summary.push_str(&format!(" Caller opened with: \"{f}\".")),
        None => summary.push_str(" The caller said nothing that was transcribed."),
    }
    if let Some(l) = last {
        summary.push_str(&format!(" Caller's last words: \"{l}\"."));
    }
    summary.push_str(&format!(" Outcome: {outcome}."));
    summary
}

impl HeuristicSummarizer {
    /// The analysis, synchronously (it is pure).
    pub fn analyse(&self, call: &CallInput) -> CallAnalysis {
        let side = CallerSide::of(call);
        let key_topics = key_topics(&side);
        let resolution_status = resolution(call, &side);
        let name = learned_name(&side.text);
        let key_variables = key_variables(&side.text, name.as_deref());
        CallAnalysis {
            summary: summary_text(call, &side, &key_topics, resolution_status),
            sentiment: sentiment(side.count(POSITIVE), side.negatives()),
            scores: scores(&side, key_topics.len(), key_variables.len()),
            key_topics,
            key_variables,
            resolution_status,
            preferred_name: name,
            summarizer: HEURISTIC_NAME.to_owned(),
        }
    }
}

impl Summarizer for HeuristicSummarizer {
    fn name(&self) -> String {
        HEURISTIC_NAME.to_owned()
    }

    fn summarize<'a>(
        &'a self,
        call: &'a CallInput,
    ) -> BoxFuture<'a, Result<CallAnalysis, SummarizerError>> {
        let out = self.analyse(call);
        Box::pin(async move { Ok(out) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summarizer::Turn;

    fn turn(speaker: Speaker, text: &str) -> Turn {
        Turn {
            speaker,
            text: text.into(),
            offset_ms: 0,
        }
    }

    #[test]
    fn heuristic_is_deterministic_and_says_so() {
        let call = CallInput {
            duration_seconds: 95,
            transferred: false,
            turns: vec![
                turn(Speaker::Agent, "Hi, how can I help?"),
                turn(
                    Speaker::Caller,
                    "Hi, this is John. Please call me Johnny. I need to file a claim, my policy number is AB-12345.",
                ),
                turn(Speaker::Agent, "Sure."),
                turn(Speaker::Caller, "Great, thank you, that helps!"),
            ],
        };
        let a = HeuristicSummarizer.analyse(&call);
        let b = HeuristicSummarizer.analyse(&call);
        assert_eq!(a.summary, b.summary);
        assert_eq!(a.scores, b.scores);
        assert!(a.summary.starts_with("Heuristic summary"), "{}", a.summary);
        assert_eq!(a.summarizer, "heuristic-v1");
        assert_eq!(a.preferred_name.as_deref(), Some("Johnny"));
        assert!(
            a.key_topics.contains(&"claims".to_owned()),
            "{:?}",
            a.key_topics
        );
        assert_eq!(a.key_variables["policy_number"], "AB-12345");
        assert_eq!(a.sentiment.as_str(), "positive");
        assert_eq!(a.resolution_status.as_str(), "resolved");
    }

    #[test]
    fn heuristic_handles_empty_and_angry_calls() {
        let empty = HeuristicSummarizer.analyse(&CallInput {
            duration_seconds: 0,
            transferred: true,
            turns: vec![],
        });
        assert_eq!(empty.resolution_status.as_str(), "transferred");
        assert_eq!(empty.sentiment.as_str(), "neutral");
        let angry = HeuristicSummarizer.analyse(&CallInput {
            duration_seconds: 10,
            transferred: false,
            turns: vec![turn(Speaker::Caller, "This is ridiculous, I am so frustrated, the bill is still wrong again! I need it fixed today, urgent!")],
        });
        assert_eq!(angry.sentiment.as_str(), "negative");
        assert!(angry.scores.frustration_level > 50);
        assert!(angry.scores.urgency_level > 40);
        assert!(angry.preferred_name.is_none());
    }
}
