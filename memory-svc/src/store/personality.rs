//! `memory.personality_metrics` (one row of 13 scores per recorded call) and
//! `memory.personality_averages` (one row per caller, recomputed from every metrics row after
//! each new call).
//!
//! The averages row carries the caller's trends, [`Trend`](crate::model::Trend) values that
//! GetEnrichedContext shows the agent: satisfaction and frustration of the last 3 calls against
//! the 3 before them (or, with fewer than 4 calls, the latest call against the earlier ones).
//! A difference of less than 5 points, or a single call, is `stable`; satisfaction going up and
//! frustration going down are `improving`.

use mesh::db::Tx;
use mesh::domain::{CallerNumber, CustomerId};
use tokio_postgres::types::ToSql;

use super::calls::CallRecord;
use crate::error::Result;

/// Inserts the call's 13 scores, measured at the call's time.
pub async fn insert_metrics(tx: &Tx<'_>, customer: CustomerId, rec: &CallRecord<'_>) -> Result<()> {
    let scores = rec.analysis.scores.to_array();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&customer, rec.call, rec.user, &rec.at];
    params.extend(scores.iter().map(|s| s as &(dyn ToSql + Sync)));
    tx.execute(
        "INSERT INTO memory.personality_metrics (customer_id, call_sid, user_id, measured_at, \
             openness, conscientiousness, extraversion, agreeableness, neuroticism, formality, \
             directness, detail_orientation, patience, technical_comfort, frustration_level, \
             satisfaction_level, urgency_level) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        &params,
    )
    .await?;
    Ok(())
}

/// Recomputes the caller's averages and trends from all their metrics rows (see the module
/// docs for the trend rule).
pub async fn refresh_averages(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
) -> Result<()> {
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
        &[&customer, user],
    )
    .await?;
    Ok(())
}
