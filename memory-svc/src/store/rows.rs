//! The columns each read selects and how a row becomes its API message: one list of columns per
//! table, shared by every statement that reads that table, so a row mapper's column numbers
//! cannot drift from the `SELECT` it reads.

use chrono::{DateTime, Utc};
use mesh::api::memory::{
    CallSummary, CallerProfile, Memory, PersonalityAverages, PersonalityMetrics,
};
use serde_json::Value as Json;
use tokio_postgres::Row;

use crate::model::{MemoryKind, Resolution, Scope, Sentiment, Trend};
use crate::summarizer::{SCORE_NAMES, TRAITS};
use crate::wire;

/// `memories` columns read by [`memory`].
pub const MEM_COLS: &str =
    "id, user_id, type, key, value, scope, source, ttl_days, created_at, expires_at";
/// `caller_profiles` columns read by [`profile`].
pub const PROFILE_COLS: &str = "user_id, first_call_at, last_call_at, total_calls, \
     preferred_name, preferences, context, created_at, updated_at, caller_ref";
/// `call_summaries` columns read by [`summary`].
pub const SUMMARY_COLS: &str = "call_sid, user_id, call_at, summary, key_topics, key_variables, \
     sentiment, duration_seconds, resolution_status, summarizer";
/// `personality_metrics` columns read by [`metrics`](fn@metrics).
pub const METRIC_COLS: &str = "call_sid, user_id, measured_at, openness, conscientiousness, \
     extraversion, agreeableness, neuroticism, formality, directness, detail_orientation, \
     patience, technical_comfort, frustration_level, satisfaction_level, urgency_level";
/// `personality_averages` columns read by [`averages`].
pub const AVG_COLS: &str = "user_id, call_count, avg_openness, avg_conscientiousness, \
     avg_extraversion, avg_agreeableness, avg_neuroticism, avg_formality, avg_directness, \
     avg_detail_orientation, avg_patience, avg_technical_comfort, recent_frustration, \
     recent_satisfaction, recent_urgency, satisfaction_trend, frustration_trend, updated_at";

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(wire::ts)
}

/// A `memories` row.
pub fn memory(r: &Row) -> Memory {
    let id: uuid::Uuid = r.get(0);
    let kind: MemoryKind = r.get(2);
    let scope: Scope = r.get(5);
    let value: Json = r.get(4);
    Memory {
        id: id.to_string(),
        user_id: r.get(1),
        r#type: kind.to_wire() as i32,
        key: r.get(3),
        value: Some(wire::json_to_value(&value)),
        scope: scope.to_wire() as i32,
        source: r.get(6),
        ttl_days: r.get(7),
        create_time: Some(wire::ts(r.get(8))),
        expire_time: Some(wire::ts(r.get(9))),
    }
}

/// A `caller_profiles` row.
pub fn profile(r: &Row) -> CallerProfile {
    let prefs: Json = r.get(5);
    let ctx: Json = r.get(6);
    CallerProfile {
        user_id: r.get(0),
        first_call_time: opt_ts(r.get(1)),
        last_call_time: opt_ts(r.get(2)),
        total_calls: r.get(3),
        preferred_name: r.get(4),
        preferences: Some(wire::json_to_struct(&prefs)),
        context: Some(wire::json_to_struct(&ctx)),
        create_time: Some(wire::ts(r.get(7))),
        update_time: Some(wire::ts(r.get(8))),
        caller_id: r.get::<_, uuid::Uuid>(9).to_string(),
    }
}

/// A `call_summaries` row.
pub fn summary(r: &Row) -> CallSummary {
    let topics: Json = r.get(4);
    let vars: Json = r.get(5);
    let sentiment: Sentiment = r.get(6);
    let resolution: Resolution = r.get(8);
    CallSummary {
        call_sid: r.get(0),
        user_id: r.get(1),
        call_time: Some(wire::ts(r.get(2))),
        summary: r.get(3),
        key_topics: topics
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        key_variables: Some(wire::json_to_struct(&vars)),
        sentiment: sentiment.as_str().to_owned(),
        duration_seconds: r.get(7),
        resolution_status: resolution.as_str().to_owned(),
        summarizer: r.get(9),
    }
}

/// A `personality_metrics` row.
pub fn metrics(r: &Row) -> PersonalityMetrics {
    let s = |i: usize| i32::from(r.get::<_, i16>(i));
    PersonalityMetrics {
        call_sid: r.get(0),
        user_id: r.get(1),
        measure_time: Some(wire::ts(r.get(2))),
        openness: s(3),
        conscientiousness: s(4),
        extraversion: s(5),
        agreeableness: s(6),
        neuroticism: s(7),
        formality: s(8),
        directness: s(9),
        detail_orientation: s(10),
        patience: s(11),
        technical_comfort: s(12),
        frustration_level: s(13),
        satisfaction_level: s(14),
        urgency_level: s(15),
    }
}

/// A `personality_averages` row.
pub fn averages(r: &Row) -> PersonalityAverages {
    let satisfaction: Trend = r.get(15);
    let frustration: Trend = r.get(16);
    PersonalityAverages {
        user_id: r.get(0),
        call_count: r.get(1),
        averages: SCORE_NAMES[..TRAITS]
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).to_owned(), r.get::<_, f64>(2 + i)))
            .collect(),
        recent_frustration: r.get(12),
        recent_satisfaction: r.get(13),
        recent_urgency: r.get(14),
        satisfaction_trend: satisfaction.as_str().to_owned(),
        frustration_trend: frustration.as_str().to_owned(),
        update_time: Some(wire::ts(r.get(17))),
    }
}
