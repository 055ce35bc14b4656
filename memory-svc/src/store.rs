//! SQL over the `memory` schema. Every function runs inside a transaction opened by
//! `Db::tenant_tx` (so row-level security scopes it to one tenant) and takes domain values only.
//! Queries also name `customer_id` explicitly so the planner picks the composite indexes; RLS,
//! not that predicate, is what isolates tenants.
//!
//! The hot paths (StoreMemory, GetEnrichedContext) call PL/pgSQL functions of migration V3
//! (SECURITY INVOKER, so the same RLS applies) whose plans PostgreSQL caches per connection,
//! use `query_typed`, which sends parse, bind and execute in one round trip, and
//! GetEnrichedContext pipelines its four reads on one connection.

use chrono::{DateTime, Utc};
use mesh::api::common::TableCount;
use mesh::api::memory::{
    CallSummary, CallerProfile, Memory, PersonalityAverages, PersonalityMetrics,
};
use mesh::db::Tx;
use mesh::domain::{CallSid, CallerNumber, CustomerId};
use serde_json::{Map, Value as Json};
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use crate::error::{MemoryError, Result};
use crate::summarizer::{CallAnalysis, SCORE_NAMES};
use crate::wire;

/// The five caller tables, in export/erase order.
pub const TABLES: [&str; 5] = [
    "memory.memories",
    "memory.caller_profiles",
    "memory.call_summaries",
    "memory.personality_metrics",
    "memory.personality_averages",
];

const MEM_COLS: &str =
    "id, user_id, type, key, value, scope, source, ttl_days, created_at, expires_at";
const PROFILE_COLS: &str = "user_id, first_call_at, last_call_at, total_calls, preferred_name, \
     preferences, context, created_at, updated_at";
const SUMMARY_COLS: &str = "call_sid, user_id, call_at, summary, key_topics, key_variables, \
     sentiment, duration_seconds, resolution_status, summarizer";
const METRIC_COLS: &str = "call_sid, user_id, measured_at, openness, conscientiousness, \
     extraversion, agreeableness, neuroticism, formality, directness, detail_orientation, \
     patience, technical_comfort, frustration_level, satisfaction_level, urgency_level";
const AVG_COLS: &str = "user_id, call_count, avg_openness, avg_conscientiousness, \
     avg_extraversion, avg_agreeableness, avg_neuroticism, avg_formality, avg_directness, \
     avg_detail_orientation, avg_patience, avg_technical_comfort, recent_frustration, \
     recent_satisfaction, recent_urgency, satisfaction_trend, frustration_trend, updated_at";

/// The ten averaged traits (the first ten scores).
const TRAITS: usize = 10;

type P<'a> = (&'a (dyn ToSql + Sync), Type);

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(wire::ts)
}

/// A `memories` row.
pub fn memory_from_row(r: &Row) -> Memory {
    let id: uuid::Uuid = r.get(0);
    let kind: String = r.get(2);
    let scope: String = r.get(5);
    let value: Json = r.get(4);
    Memory {
        id: id.to_string(),
        user_id: r.get(1),
        r#type: wire::type_from_name(&kind) as i32,
        key: r.get(3),
        value: Some(wire::json_to_value(&value)),
        scope: wire::scope_from_name(&scope) as i32,
        source: r.get(6),
        ttl_days: r.get(7),
        create_time: Some(wire::ts(r.get(8))),
        expire_time: Some(wire::ts(r.get(9))),
    }
}

fn profile_from_row(r: &Row) -> CallerProfile {
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
    }
}

fn summary_from_row(r: &Row) -> CallSummary {
    let topics: Json = r.get(4);
    let vars: Json = r.get(5);
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
        sentiment: r.get(6),
        duration_seconds: r.get(7),
        resolution_status: r.get(8),
        summarizer: r.get(9),
    }
}

fn metrics_from_row(r: &Row) -> PersonalityMetrics {
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

fn averages_from_row(r: &Row) -> PersonalityAverages {
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
        satisfaction_trend: r.get(15),
        frustration_trend: r.get(16),
        update_time: Some(wire::ts(r.get(17))),
    }
}

/// A validated memory to store.
pub struct NewMemory {
    /// Caller.
    pub user_id: CallerNumber,
    /// Database type spelling.
    pub kind: &'static str,
    /// Key.
    pub key: String,
    /// Value.
    pub value: Json,
    /// Database scope spelling.
    pub scope: &'static str,
    /// Source.
    pub source: String,
    /// TTL.
    pub ttl_days: i32,
}

/// Inserts a memory.
pub async fn insert_memory(tx: &Tx<'_>, customer: CustomerId, m: &NewMemory) -> Result<Memory> {
    let id = uuid::Uuid::new_v4();
    let cid = customer.get();
    let params: [P; 9] = [
        (&cid, Type::INT8),
        (&id, Type::UUID),
        (&m.user_id.as_str(), Type::TEXT),
        (&m.kind, Type::TEXT),
        (&m.key, Type::TEXT),
        (&m.value, Type::JSONB),
        (&m.scope, Type::TEXT),
        (&m.source, Type::TEXT),
        (&m.ttl_days, Type::INT4),
    ];
    let row = tx
        .query_typed(
            &format!(
                "SELECT {MEM_COLS} FROM memory.store_memory($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &params,
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    let row = row
        .first()
        .ok_or_else(|| MemoryError::Internal("insert returned no row".into()))?;
    Ok(memory_from_row(row))
}

/// Keyset position of a page: (created_at, id) of the last row returned.
pub type Cursor = (DateTime<Utc>, uuid::Uuid);

/// Lists unexpired memories newest first; returns up to `limit + 1` rows (the extra one tells the
/// caller there is a next page).
pub async fn list_memories(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
    types: &[&'static str],
    thread_id: &str,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Memory>> {
    let cid = customer.get();
    let types: Vec<&str> = types.to_vec();
    let (at, id) = match after {
        Some((t, i)) => (Some(t), Some(i)),
        None => (None, None),
    };
    let fetch = limit + 1;
    let params: [P; 7] = [
        (&cid, Type::INT8),
        (&user.as_str(), Type::TEXT),
        (&types, Type::TEXT_ARRAY),
        (&thread_id, Type::TEXT),
        (&at, Type::TIMESTAMPTZ),
        (&id, Type::UUID),
        (&fetch, Type::INT8),
    ];
    let rows = tx
        .query_typed(
            &format!(
                "SELECT {MEM_COLS} FROM memory.memories \
                 WHERE customer_id = $1 AND user_id = $2 AND expires_at > now() \
                   AND (cardinality($3::text[]) = 0 OR type = ANY($3::text[])) \
                   AND ($4::text = '' OR value->>'thread_id' = $4::text) \
                   AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::uuid)) \
                 ORDER BY created_at DESC, id DESC LIMIT $7"
            ),
            &params,
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(rows.iter().map(memory_from_row).collect())
}

/// Deletes one memory; false when this tenant has no such memory.
pub async fn delete_memory(tx: &Tx<'_>, customer: CustomerId, id: uuid::Uuid) -> Result<bool> {
    let n = tx
        .execute(
            "DELETE FROM memory.memories WHERE customer_id = $1 AND id = $2",
            &[&customer.get(), &id],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(n > 0)
}

/// A caller's profile.
pub async fn get_profile(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
) -> Result<Option<CallerProfile>> {
    let cid = customer.get();
    let params: [P; 2] = [(&cid, Type::INT8), (&user.as_str(), Type::TEXT)];
    let rows = tx
        .query_typed(
            &format!(
                "SELECT {PROFILE_COLS} FROM memory.caller_profiles \
                 WHERE customer_id = $1 AND user_id = $2"
            ),
            &params,
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(rows.first().map(profile_from_row))
}

/// Creates or partially updates a profile (`None` leaves a field unchanged).
pub async fn upsert_profile(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
    preferred_name: Option<&str>,
    preferences: Option<&Json>,
    context: Option<&Json>,
) -> Result<CallerProfile> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO memory.caller_profiles AS p \
                     (customer_id, user_id, preferred_name, preferences, context) \
                 VALUES ($1, $2, coalesce($3::text, ''), coalesce($4::jsonb, '{{}}'::jsonb), \
                         coalesce($5::jsonb, '{{}}'::jsonb)) \
                 ON CONFLICT (customer_id, user_id) DO UPDATE SET \
                     preferred_name = coalesce($3::text, p.preferred_name), \
                     preferences = coalesce($4::jsonb, p.preferences), \
                     context = coalesce($5::jsonb, p.context), \
                     updated_at = now() \
                 RETURNING {PROFILE_COLS}"
            ),
            &[
                &customer.get(),
                &user.as_str(),
                &preferred_name,
                &preferences,
                &context,
            ],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(profile_from_row(&row))
}

/// A stored summary by CallSid.
pub async fn get_summary(
    tx: &Tx<'_>,
    customer: CustomerId,
    call: &CallSid,
) -> Result<Option<CallSummary>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {SUMMARY_COLS} FROM memory.call_summaries \
                 WHERE customer_id = $1 AND call_sid = $2"
            ),
            &[&customer.get(), &call.as_str()],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(rows.first().map(summary_from_row))
}

/// Records a call: the summary (idempotent on the CallSid), and only when it was new the
/// metrics row, the profile counters and the averages. Returns the summary and whether it was
/// already recorded.
pub async fn record_call(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
    call: &CallSid,
    call_at: DateTime<Utc>,
    duration_seconds: i32,
    a: &CallAnalysis,
) -> Result<(CallSummary, bool)> {
    let cid = customer.get();
    let topics = Json::from(a.key_topics.clone());
    let vars = Json::Object(a.key_variables.clone());
    let inserted = tx
        .query(
            &format!(
                "INSERT INTO memory.call_summaries (customer_id, call_sid, user_id, call_at, \
                     summary, key_topics, key_variables, sentiment, duration_seconds, \
                     resolution_status, summarizer) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (customer_id, call_sid) DO NOTHING \
                 RETURNING {SUMMARY_COLS}"
            ),
            &[
                &cid,
                &call.as_str(),
                &user.as_str(),
                &call_at,
                &a.summary,
                &topics,
                &vars,
                &a.sentiment,
                &duration_seconds,
                &a.resolution_status,
                &a.summarizer,
            ],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    let Some(row) = inserted.first() else {
        // Recorded before (possibly concurrently): change nothing, answer with the stored one.
        let existing = get_summary(tx, customer, call)
            .await?
            .ok_or_else(|| MemoryError::Internal("conflicting summary vanished".into()))?;
        return Ok((existing, true));
    };
    let summary = summary_from_row(row);

    let s = a.scores.to_array();
    tx.execute(
        "INSERT INTO memory.personality_metrics (customer_id, call_sid, user_id, measured_at, \
             openness, conscientiousness, extraversion, agreeableness, neuroticism, formality, \
             directness, detail_orientation, patience, technical_comfort, frustration_level, \
             satisfaction_level, urgency_level) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        &[
            &cid,
            &call.as_str(),
            &user.as_str(),
            &call_at,
            &s[0],
            &s[1],
            &s[2],
            &s[3],
            &s[4],
            &s[5],
            &s[6],
            &s[7],
            &s[8],
            &s[9],
            &s[10],
            &s[11],
            &s[12],
        ],
    )
    .await
    .map_err(mesh::db::DbError::from)?;

    // A learned name fills an empty preferred name; it never overwrites one set on purpose.
    tx.execute(
        "INSERT INTO memory.caller_profiles AS p (customer_id, user_id, first_call_at, \
             last_call_at, total_calls, preferred_name) \
         VALUES ($1, $2, $3, $3, 1, coalesce($4::text, '')) \
         ON CONFLICT (customer_id, user_id) DO UPDATE SET \
             first_call_at = LEAST(p.first_call_at, EXCLUDED.first_call_at), \
             last_call_at = GREATEST(p.last_call_at, EXCLUDED.last_call_at), \
             total_calls = p.total_calls + 1, \
             preferred_name = CASE WHEN p.preferred_name = '' THEN EXCLUDED.preferred_name \
                                   ELSE p.preferred_name END, \
             updated_at = now()",
        &[&cid, &user.as_str(), &call_at, &a.preferred_name],
    )
    .await
    .map_err(mesh::db::DbError::from)?;

    // Averages over every call; recent = last 3 calls; trend = last 3 against the 3 before
    // (or, with fewer calls, the latest against the earlier ones); +-5 points is "stable".
    tx.execute(
        "WITH ranked AS ( \
             SELECT *, row_number() OVER (ORDER BY measured_at DESC, call_sid DESC) AS rn \
             FROM memory.personality_metrics WHERE customer_id = $1 AND user_id = $2 \
         ), agg AS ( \
             SELECT count(*)::int AS n, \
                 avg(openness)::float8 AS o, avg(conscientiousness)::float8 AS c, \
                 avg(extraversion)::float8 AS e, avg(agreeableness)::float8 AS a, \
                 avg(neuroticism)::float8 AS ne, avg(formality)::float8 AS f, \
                 avg(directness)::float8 AS d, avg(detail_orientation)::float8 AS dt, \
                 avg(patience)::float8 AS p, avg(technical_comfort)::float8 AS t, \
                 avg(frustration_level) FILTER (WHERE rn <= 3)::float8 AS rf, \
                 avg(satisfaction_level) FILTER (WHERE rn <= 3)::float8 AS rs, \
                 avg(urgency_level) FILTER (WHERE rn <= 3)::float8 AS ru, \
                 coalesce(avg(frustration_level) FILTER (WHERE rn BETWEEN 4 AND 6), \
                          avg(frustration_level) FILTER (WHERE rn > 1))::float8 AS pf, \
                 coalesce(avg(satisfaction_level) FILTER (WHERE rn BETWEEN 4 AND 6), \
                          avg(satisfaction_level) FILTER (WHERE rn > 1))::float8 AS ps, \
                 avg(frustration_level) FILTER (WHERE rn = 1)::float8 AS lf, \
                 avg(satisfaction_level) FILTER (WHERE rn = 1)::float8 AS ls, \
                 count(*) FILTER (WHERE rn BETWEEN 4 AND 6) AS prev3 \
             FROM ranked \
         ), cmp AS ( \
             SELECT *, CASE WHEN prev3 > 0 THEN rs ELSE ls END AS cs, \
                       CASE WHEN prev3 > 0 THEN rf ELSE lf END AS cf FROM agg \
         ) \
         INSERT INTO memory.personality_averages (customer_id, user_id, call_count, \
             avg_openness, avg_conscientiousness, avg_extraversion, avg_agreeableness, \
             avg_neuroticism, avg_formality, avg_directness, avg_detail_orientation, \
             avg_patience, avg_technical_comfort, recent_frustration, recent_satisfaction, \
             recent_urgency, satisfaction_trend, frustration_trend, updated_at) \
         SELECT $1, $2, n, o, c, e, a, ne, f, d, dt, p, t, rf, rs, ru, \
             CASE WHEN ps IS NULL THEN 'stable' WHEN cs - ps >= 5 THEN 'improving' \
                  WHEN cs - ps <= -5 THEN 'declining' ELSE 'stable' END, \
             CASE WHEN pf IS NULL THEN 'stable' WHEN cf - pf <= -5 THEN 'improving' \
                  WHEN cf - pf >= 5 THEN 'declining' ELSE 'stable' END, \
             now() \
         FROM cmp \
         ON CONFLICT (customer_id, user_id) DO UPDATE SET \
             call_count = EXCLUDED.call_count, avg_openness = EXCLUDED.avg_openness, \
             avg_conscientiousness = EXCLUDED.avg_conscientiousness, \
             avg_extraversion = EXCLUDED.avg_extraversion, \
             avg_agreeableness = EXCLUDED.avg_agreeableness, \
             avg_neuroticism = EXCLUDED.avg_neuroticism, avg_formality = EXCLUDED.avg_formality, \
             avg_directness = EXCLUDED.avg_directness, \
             avg_detail_orientation = EXCLUDED.avg_detail_orientation, \
             avg_patience = EXCLUDED.avg_patience, \
             avg_technical_comfort = EXCLUDED.avg_technical_comfort, \
             recent_frustration = EXCLUDED.recent_frustration, \
             recent_satisfaction = EXCLUDED.recent_satisfaction, \
             recent_urgency = EXCLUDED.recent_urgency, \
             satisfaction_trend = EXCLUDED.satisfaction_trend, \
             frustration_trend = EXCLUDED.frustration_trend, updated_at = now()",
        &[&cid, &user.as_str()],
    )
    .await
    .map_err(mesh::db::DbError::from)?;
    Ok((summary, false))
}

/// What the enriched context reads.
pub struct ContextRows {
    /// Profile, if the caller is known.
    pub profile: Option<CallerProfile>,
    /// Averages, if any call was recorded.
    pub averages: Option<PersonalityAverages>,
    /// Newest summaries first.
    pub summaries: Vec<CallSummary>,
    /// Newest unexpired memories first.
    pub memories: Vec<Memory>,
}

/// The four reads of the enriched context, pipelined on one connection.
pub async fn context(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
    num_summaries: i64,
) -> Result<ContextRows> {
    let cid = customer.get();
    let u = user.as_str();
    let two: [P; 2] = [(&cid, Type::INT8), (&u, Type::TEXT)];
    let lim = wire::CONTEXT_MEMORIES;
    let three_s: [P; 3] = [
        (&cid, Type::INT8),
        (&u, Type::TEXT),
        (&num_summaries, Type::INT8),
    ];
    let three_m: [P; 3] = [(&cid, Type::INT8), (&u, Type::TEXT), (&lim, Type::INT8)];
    // Plain statements: each is prepared once per pooled connection (`mesh::db::Tx`), so they
    // need no PL/pgSQL wrapper for a cached plan (V3's `memory.ctx_*` functions, kept for
    // operators, run the same queries).
    let profile_sql = format!(
        "SELECT {PROFILE_COLS} FROM memory.caller_profiles WHERE customer_id = $1 AND user_id = $2"
    );
    let avg_sql = format!(
        "SELECT {AVG_COLS} FROM memory.personality_averages WHERE customer_id = $1 AND user_id = $2"
    );
    let sum_sql = format!(
        "SELECT {SUMMARY_COLS} FROM memory.call_summaries WHERE customer_id = $1 AND user_id = $2 \
         ORDER BY call_at DESC, call_sid DESC LIMIT $3"
    );
    let mem_sql = format!(
        "SELECT {MEM_COLS} FROM memory.memories \
         WHERE customer_id = $1 AND user_id = $2 AND expires_at > pg_catalog.now() \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    );
    let (p, a, s, m) = futures::try_join!(
        tx.query_typed(&profile_sql, &two),
        tx.query_typed(&avg_sql, &two),
        async {
            if num_summaries > 0 {
                tx.query_typed(&sum_sql, &three_s).await
            } else {
                Ok(Vec::new())
            }
        },
        tx.query_typed(&mem_sql, &three_m),
    )
    .map_err(mesh::db::DbError::from)?;
    Ok(ContextRows {
        profile: p.first().map(profile_from_row),
        averages: a.first().map(averages_from_row),
        summaries: s.iter().map(summary_from_row).collect(),
        memories: m.iter().map(memory_from_row).collect(),
    })
}

/// Full-text search over one caller's summaries, best match first.
pub async fn search_summaries(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
    query: &str,
    limit: i64,
) -> Result<Vec<CallSummary>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {SUMMARY_COLS} FROM memory.call_summaries, \
                     websearch_to_tsquery('english', $3) AS q \
                 WHERE customer_id = $1 AND user_id = $2 \
                   AND to_tsvector('english', summary) @@ q \
                 ORDER BY ts_rank(to_tsvector('english', summary), q) DESC, call_at DESC \
                 LIMIT $4"
            ),
            &[&customer.get(), &user.as_str(), &query, &limit],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(rows.iter().map(summary_from_row).collect())
}

/// Everything about one caller, in [`TABLES`] order.
pub struct Export {
    /// `memories` rows (expired ones too: they are still held until purged).
    pub memories: Vec<Memory>,
    /// `caller_profiles` row.
    pub profile: Option<CallerProfile>,
    /// `call_summaries` rows.
    pub summaries: Vec<CallSummary>,
    /// `personality_metrics` rows.
    pub metrics: Vec<PersonalityMetrics>,
    /// `personality_averages` row.
    pub averages: Option<PersonalityAverages>,
}

impl Export {
    /// Rows per table.
    pub fn counts(&self) -> Vec<TableCount> {
        let n = [
            self.memories.len(),
            usize::from(self.profile.is_some()),
            self.summaries.len(),
            self.metrics.len(),
            usize::from(self.averages.is_some()),
        ];
        TABLES
            .iter()
            .zip(n)
            .map(|(t, n)| TableCount {
                table: (*t).to_owned(),
                rows: n as i64,
            })
            .collect()
    }
}

/// Reads every row about one caller.
pub async fn export(tx: &Tx<'_>, customer: CustomerId, user: &CallerNumber) -> Result<Export> {
    let cid = customer.get();
    let u = user.as_str();
    let q = |cols: &str, table: &str, order: &str| {
        format!("SELECT {cols} FROM {table} WHERE customer_id = $1 AND user_id = $2 {order}")
    };
    let params: [&(dyn ToSql + Sync); 2] = [&cid, &u];
    let sql = [
        q(MEM_COLS, "memory.memories", "ORDER BY created_at, id"),
        q(PROFILE_COLS, "memory.caller_profiles", ""),
        q(
            SUMMARY_COLS,
            "memory.call_summaries",
            "ORDER BY call_at, call_sid",
        ),
        q(
            METRIC_COLS,
            "memory.personality_metrics",
            "ORDER BY measured_at, call_sid",
        ),
        q(AVG_COLS, "memory.personality_averages", ""),
    ];
    let (m, p, s, x, a) = futures::try_join!(
        tx.query(&sql[0], &params),
        tx.query(&sql[1], &params),
        tx.query(&sql[2], &params),
        tx.query(&sql[3], &params),
        tx.query(&sql[4], &params),
    )
    .map_err(mesh::db::DbError::from)?;
    Ok(Export {
        memories: m.iter().map(memory_from_row).collect(),
        profile: p.first().map(profile_from_row),
        summaries: s.iter().map(summary_from_row).collect(),
        metrics: x.iter().map(metrics_from_row).collect(),
        averages: a.first().map(averages_from_row),
    })
}

/// Deletes every row about one caller (`Some`) or about the whole tenant (`None`); counts per
/// table in [`TABLES`] order.
pub async fn erase(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: Option<&CallerNumber>,
) -> Result<Vec<TableCount>> {
    let cid = customer.get();
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let n = match user {
            Some(u) => {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE customer_id = $1 AND user_id = $2"),
                    &[&cid, &u.as_str()],
                )
                .await
            }
            None => {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE customer_id = $1"),
                    &[&cid],
                )
                .await
            }
        }
        .map_err(mesh::db::DbError::from)?;
        counts.push(TableCount {
            table: table.to_owned(),
            rows: n as i64,
        });
    }
    Ok(counts)
}

/// Appends an audit row; returns its creation time.
pub async fn audit(
    tx: &Tx<'_>,
    customer: CustomerId,
    action: &str,
    subject_hash: &str,
    actor: &str,
    counts: &[TableCount],
) -> Result<DateTime<Utc>> {
    let counts_json: Map<String, Json> = counts
        .iter()
        .map(|c| (c.table.clone(), Json::from(c.rows)))
        .collect();
    let row = tx
        .query_one(
            "INSERT INTO memory.audit_log (customer_id, id, action, subject_hash, actor, counts) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
            &[
                &customer.get(),
                &uuid::Uuid::new_v4(),
                &action,
                &subject_hash,
                &actor,
                &Json::Object(counts_json),
            ],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(row.get(0))
}

/// Runs one purge batch (every tenant); returns the rows deleted.
pub async fn purge_batch(tx: &Tx<'_>, batch: i32) -> Result<i64> {
    let row = tx
        .query_one("SELECT memory.purge_expired_memories($1)", &[&batch])
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(row.get(0))
}

/// The deployment's default audit hash key (migration V3).
pub async fn audit_hash_key(tx: &Tx<'_>) -> Result<Vec<u8>> {
    let row = tx
        .query_one("SELECT key FROM memory.audit_hash_key", &[])
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(row.get(0))
}
