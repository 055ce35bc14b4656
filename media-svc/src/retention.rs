//! The retention task (issue 20): deletes each tenant's recordings and transcript turns older
//! than the tenant's `retention_days` (tenant-svc `GetCallHandling`, default 90).
//!
//! A round runs every [`RetentionConfig::interval`] on every replica, but only the replica that
//! takes the advisory lock (`pg_try_advisory_xact_lock`, held by the round's service
//! transaction) does the work, so one replica runs it at a time; the others skip the round.
//! Under the lock, `media.retention_tenants` (V22, SECURITY DEFINER, ids only) names the tenants
//! with calls older than one day (the shortest retention); for each, the tenant's settings are
//! read through tenant-svc with the peer timeout. When they cannot be read the tenant is
//! skipped this round (logged, counted): nothing is ever deleted on a default. Deletion then runs
//! inside the tenant's own transactions, in batches (so one large tenant neither holds a long
//! transaction nor starves the others; what is left goes next round).
//!
//! What goes: transcript turns of calls created before the cutoff (`now - retention_days`), and
//! callback tasks created before it.
//! The call rows themselves stay (duration, status, usage; the caller's number goes with a
//! caller erasure or the tenant's). Recordings of those calls go through `Recordings::delete`
//! (object, spool and row together); when the store is unavailable the tenant's round stops
//! there and the rest is deleted next round.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh::call_handling::limits::RETENTION_DAYS;
use mesh::domain::CustomerId;
use tokio::sync::watch;

use crate::error::MediaError;
use crate::recording::RecordingId;
use crate::runtime::Runtime;
use crate::store::retention as sql;

/// Pacing of the retention task.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Time between two rounds (the first runs at start-up).
    pub interval: Duration,
    /// Most tenants one round looks at (the rest come next round).
    pub max_tenants: i32,
    /// Rows deleted per statement.
    pub batch: i64,
    /// Most batches per tenant and round.
    pub max_batches: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            max_tenants: 10_000,
            batch: 1000,
            max_batches: 50,
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Whether this replica held the lock (false: another replica ran the round).
    pub ran: bool,
    /// Tenants whose expired data was looked for.
    pub tenants: usize,
    /// Tenants skipped because their settings could not be read.
    pub skipped: usize,
    /// Transcript turns deleted.
    pub turns: u64,
    /// Recordings deleted.
    pub recordings: u64,
}

/// Runs until `stop` turns true.
pub async fn run(rt: Runtime, config: RetentionConfig, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        match round(&rt, &config, Utc::now()).await {
            Ok(r) if r.ran => tracing::info!(
                tenants = r.tenants,
                skipped = r.skipped,
                turns = r.turns,
                recordings = r.recordings,
                "retention round done"
            ),
            Ok(_) => tracing::debug!("retention round run by another replica"),
            Err(e) => tracing::warn!(error = %e, "retention round failed; retrying next round"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One round at `now`, under the advisory lock (see the module docs).
pub async fn round(
    rt: &Runtime,
    config: &RetentionConfig,
    now: DateTime<Utc>,
) -> Result<RoundReport, MediaError> {
    let shortest = now - chrono::Duration::days(i64::from(*RETENTION_DAYS.start()));
    rt.db
        .service_tx(async |tx| {
            if !sql::try_lock(tx).await? {
                return Ok(RoundReport::default());
            }
            let mut report = RoundReport {
                ran: true,
                ..RoundReport::default()
            };
            for customer in sql::tenants(tx, shortest, config.max_tenants).await? {
                report.tenants += 1;
                match tenant(rt, config, customer, now).await {
                    Ok((turns, recordings)) => {
                        report.turns += turns;
                        report.recordings += recordings;
                    }
                    Err(e) => {
                        report.skipped += 1;
                        metrics::counter!("media_retention_skipped_total").increment(1);
                        tracing::warn!(
                            customer_id = customer.get(),
                            error = %e,
                            "retention skipped this tenant this round"
                        );
                    }
                }
                sql::keep_alive(tx).await?;
            }
            Ok(report)
        })
        .await
}

/// Deletes one tenant's expired data; (turns, recordings) deleted. An error when its retention
/// cannot be read (nothing deleted) or a deletion failed.
async fn tenant(
    rt: &Runtime,
    config: &RetentionConfig,
    customer: CustomerId,
    now: DateTime<Utc>,
) -> Result<(u64, u64), MediaError> {
    let settings = rt
        .peers
        .call_handling(customer)
        .await
        .map_err(|e| MediaError::Unavailable(format!("call handling: {}", e.short())))?;
    let days = settings.settings.retention_days;
    if !RETENTION_DAYS.contains(&days) {
        return Err(MediaError::Unavailable(format!(
            "retention_days {days} out of range"
        )));
    }
    let cutoff = now - chrono::Duration::days(i64::from(days));
    let mut turns = 0;
    for _ in 0..config.max_batches {
        let n = rt
            .db
            .tenant_tx(customer, async |tx| {
                sql::delete_expired_turns(tx, cutoff, config.batch).await
            })
            .await?;
        turns += n;
        if n < config.batch as u64 {
            break;
        }
    }
    // Callback tasks (a few per call at most) go with the same cutoff.
    let tasks = rt
        .db
        .tenant_tx(customer, async |tx| {
            crate::store::callback_tasks::delete_older_than(tx, cutoff).await
        })
        .await?;
    let mut recordings = 0;
    for _ in 0..config.max_batches {
        let ids = rt
            .db
            .tenant_tx(customer, async |tx| {
                sql::expired_recordings(tx, cutoff, config.batch).await
            })
            .await?;
        for id in &ids {
            // An unavailable store stops this tenant for the round; the rest goes next round.
            if rt.recordings.delete(customer, RecordingId(*id)).await? {
                recordings += 1;
            }
        }
        if (ids.len() as i64) < config.batch {
            break;
        }
    }
    if turns > 0 || recordings > 0 || tasks > 0 {
        tracing::info!(
            customer_id = customer.get(),
            retention_days = days,
            turns,
            recordings,
            tasks,
            "expired data deleted"
        );
    }
    Ok((turns, recordings))
}
