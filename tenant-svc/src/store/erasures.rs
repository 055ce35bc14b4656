//! `tenant.erasures` (migration V15): the operator's erasure of a customer, one row per
//! customer. While `completed_at` is NULL the row is the state of a fan-out that has not finished
//! (which services confirmed, what they removed); afterwards it is the record of the erasure, kept
//! after the customer row is gone.

use mesh::api::common::TableCount;
use mesh::db::Tx;
use mesh::domain::CustomerId;
use serde_json::{Map, Value as Json};

use crate::error::{Result, TenantError};

/// A service that erases its part of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// media-svc: calls, transcripts, queued records, webhook events, usage.
    Media,
    /// memory-svc: memories, profiles, summaries, personality.
    Memory,
}

impl Part {
    fn column(self) -> &'static str {
        match self {
            Self::Media => "media_erased_at",
            Self::Memory => "memory_erased_at",
        }
    }
}

/// Where a customer's erasure stands.
#[derive(Debug, Default)]
pub struct Erasure {
    /// media-svc confirmed its part.
    pub media_done: bool,
    /// memory-svc confirmed its part.
    pub memory_done: bool,
    /// What the services removed so far, per table.
    pub counts: Vec<TableCount>,
}

/// Starts the customer's erasure, or finds the one already started: NOT_FOUND when the customer
/// does not exist (never existed, or its erasure completed).
pub async fn begin(tx: &Tx<'_>, id: CustomerId, requested_by: &str) -> Result<Erasure> {
    super::lock_customer(tx, id).await?;
    let requested_by: String = requested_by.chars().take(200).collect();
    tx.execute(
        "INSERT INTO tenant.erasures (customer_id, requested_by) VALUES ($1, $2) \
         ON CONFLICT (customer_id) DO NOTHING",
        &[&id, &requested_by],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT media_erased_at IS NOT NULL, memory_erased_at IS NOT NULL, counts \
             FROM tenant.erasures WHERE customer_id = $1",
            &[&id],
        )
        .await?;
    Ok(Erasure {
        media_done: row.get(0),
        memory_done: row.get(1),
        counts: counts_of(&row.get(2)),
    })
}

/// Whether the customer is being erased (an erasure started and not completed).
pub async fn pending(tx: &Tx<'_>, id: CustomerId) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM tenant.erasures WHERE customer_id = $1 AND completed_at IS NULL",
            &[&id],
        )
        .await?
        .is_some())
}

/// Records that `part` confirmed, with what it removed.
pub async fn confirm(tx: &Tx<'_>, id: CustomerId, part: Part, counts: &[TableCount]) -> Result<()> {
    let n = tx
        .execute(
            &format!(
                "UPDATE tenant.erasures SET {} = now(), counts = counts || $2 \
                 WHERE customer_id = $1 AND completed_at IS NULL",
                part.column()
            ),
            &[&id, &counts_json(counts)],
        )
        .await?;
    if n == 0 {
        return Err(TenantError::NotFound("customer"));
    }
    Ok(())
}

/// Deletes the customer (its numbers, settings, secrets and history go with it) and completes
/// the record, in one transaction; returns every count of the erasure.
pub async fn complete(tx: &Tx<'_>, id: CustomerId) -> Result<Vec<TableCount>> {
    super::lock_customer(tx, id).await?;
    let ready = tx
        .query_opt(
            "SELECT 1 FROM tenant.erasures WHERE customer_id = $1 AND completed_at IS NULL \
               AND media_erased_at IS NOT NULL AND memory_erased_at IS NOT NULL",
            &[&id],
        )
        .await?;
    if ready.is_none() {
        return Err(TenantError::FailedPrecondition(
            "the customer's erasure is not confirmed by every service".into(),
        ));
    }
    super::delete_customer(tx, id).await?;
    let own = [TableCount {
        table: "tenant.customers".into(),
        rows: 1,
    }];
    let row = tx
        .query_one(
            "UPDATE tenant.erasures SET completed_at = now(), counts = counts || $2 \
             WHERE customer_id = $1 RETURNING counts",
            &[&id, &counts_json(&own)],
        )
        .await?;
    Ok(counts_of(&row.get(0)))
}

fn counts_json(counts: &[TableCount]) -> Json {
    Json::Object(
        counts
            .iter()
            .map(|c| (c.table.clone(), Json::from(c.rows)))
            .collect::<Map<_, _>>(),
    )
}

/// Counts in the order media-svc's, memory-svc's, tenant-svc's tables.
fn counts_of(json: &Json) -> Vec<TableCount> {
    let mut out: Vec<TableCount> = json
        .as_object()
        .into_iter()
        .flatten()
        .map(|(table, rows)| TableCount {
            table: table.clone(),
            rows: rows.as_i64().unwrap_or(0),
        })
        .collect();
    let rank = |t: &str| match t.split('.').next() {
        Some("media") => 0,
        Some("memory") => 1,
        _ => 2,
    };
    out.sort_by(|a, b| (rank(&a.table), &a.table).cmp(&(rank(&b.table), &b.table)));
    out
}
