//! The four reads of GetEnrichedContext (profile, averages, newest summaries, newest unexpired
//! memories), pipelined on one connection: it runs at every call start, so it is one of the two
//! hot paths the benchmark (`memory-bench`) measures.

use mesh::api::memory::{CallSummary, CallerProfile, Memory, PersonalityAverages};
use mesh::db::Tx;
use mesh::domain::{CallerNumber, CustomerId};
use tokio_postgres::types::Type;

use super::P;
use super::rows::{self, AVG_COLS, MEM_COLS, PROFILE_COLS, SUMMARY_COLS};
use crate::error::Result;
use crate::wire;

/// The four reads, pipelined.
pub async fn context(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
    num_summaries: i64,
) -> Result<ContextRows> {
    let two: [P; 2] = [(&customer, Type::INT8), (user, Type::TEXT)];
    let lim = wire::CONTEXT_MEMORIES;
    let three_s: [P; 3] = [
        (&customer, Type::INT8),
        (user, Type::TEXT),
        (&num_summaries, Type::INT8),
    ];
    let three_m: [P; 3] = [
        (&customer, Type::INT8),
        (user, Type::TEXT),
        (&lim, Type::INT8),
    ];
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
    )?;
    Ok(ContextRows {
        profile: p.first().map(rows::profile),
        averages: a.first().map(rows::averages),
        summaries: s.iter().map(rows::summary).collect(),
        memories: m.iter().map(rows::memory).collect(),
    })
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
