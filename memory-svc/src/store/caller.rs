//! Everything about one caller across the five caller tables ([`super::TABLES`]): the export
//! (read in table order) and the erase of one caller or of a whole tenant.

use mesh::api::common::TableCount;
use mesh::api::memory::{
    CallSummary, CallerProfile, Memory, PersonalityAverages, PersonalityMetrics,
};
use mesh::db::Tx;
use mesh::domain::{CallerNumber, CustomerId};
use tokio_postgres::types::ToSql;

use super::TABLES;
use super::rows::{self, AVG_COLS, MEM_COLS, METRIC_COLS, PROFILE_COLS, SUMMARY_COLS};
use crate::error::Result;

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
    let q = |cols: &str, table: &str, order: &str| {
        format!("SELECT {cols} FROM {table} WHERE customer_id = $1 AND user_id = $2 {order}")
    };
    let params: [&(dyn ToSql + Sync); 2] = [&customer, user];
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
    )?;
    Ok(Export {
        memories: m.iter().map(rows::memory).collect(),
        profile: p.first().map(rows::profile),
        summaries: s.iter().map(rows::summary).collect(),
        metrics: x.iter().map(rows::metrics).collect(),
        averages: a.first().map(rows::averages),
    })
}

/// Deletes every row about one caller (`Some`) or about the whole tenant (`None`); counts per
/// table in [`TABLES`] order.
pub async fn erase(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: Option<&CallerNumber>,
) -> Result<Vec<TableCount>> {
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let n = match user {
            Some(u) => {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE customer_id = $1 AND user_id = $2"),
                    &[&customer, u],
                )
                .await
            }
            None => {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE customer_id = $1"),
                    &[&customer],
                )
                .await
            }
        }?;
        counts.push(TableCount {
            table: table.to_owned(),
            rows: n as i64,
        });
    }
    Ok(counts)
}
