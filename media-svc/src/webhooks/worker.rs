//! The delivery worker's scheduling. [`run`] (the dispatcher) asks which tenants have due
//! events and runs one task per tenant (at most [`MAX_TENANTS_IN_FLIGHT`] at once), so a slow or
//! failing endpoint only ever holds its own tenant's task. A tenant task keeps up to
//! [`PER_TENANT_IN_FLIGHT`] attempts in flight, claiming due events as slots free up (a claim
//! pushes `next_attempt_at` out by a lease, so a crash retries after the lease and replicas never
//! send the same event at once), records each outcome, and stays alive while attempts are in
//! flight or a retry is due soon. One attempt, and what its outcome writes, is
//! [`super::delivery`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mesh::domain::CustomerId;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::delivery::{self, Outcome};
use crate::error::MediaError;
use crate::runtime::Runtime;
use crate::store::webhooks::{self as sql, ClaimedEvent};

/// Time between two scans for due tenants when nothing wakes the worker (an enqueue or a
/// redelivery wakes it at once; a tenant task waits for its own retries that are due sooner).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Tenants delivered to at the same time.
pub const MAX_TENANTS_IN_FLIGHT: usize = 64;
/// Events of one tenant in flight at the same time.
pub const PER_TENANT_IN_FLIGHT: i64 = 4;
/// Time the worker waits for in-flight attempts when the service stops (then they are
/// abandoned and retried after their lease).
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The tenant tasks the dispatcher runs, each with the signal that tells it new events are due.
#[derive(Default)]
struct Tenants {
    active: HashMap<CustomerId, Arc<Notify>>,
    tasks: JoinSet<()>,
    task_tenant: HashMap<tokio::task::Id, CustomerId>,
}

impl Tenants {
    /// Wakes the task of each due tenant, starting one where there is none and room for it.
    fn wake_or_start(&mut self, rt: &Runtime, due: Vec<CustomerId>, stop: &watch::Receiver<bool>) {
        for customer in due {
            if let Some(more) = self.active.get(&customer) {
                more.notify_one();
                continue;
            }
            if self.active.len() >= MAX_TENANTS_IN_FLIGHT {
                continue;
            }
            let more = Arc::new(Notify::new());
            self.active.insert(customer, more.clone());
            let handle = self
                .tasks
                .spawn(tenant_loop(rt.clone(), customer, more, stop.clone()));
            self.task_tenant.insert(handle.id(), customer);
        }
    }

    /// Forgets a tenant task that ended.
    fn ended(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match &done {
            Ok((id, ())) => *id,
            Err(e) => {
                tracing::error!(error = %e, "webhook tenant task failed");
                e.id()
            }
        };
        if let Some(customer) = self.task_tenant.remove(&id) {
            self.active.remove(&customer);
        }
    }
}

/// Runs until `stop` turns true.
pub async fn run(rt: Runtime, mut stop: watch::Receiver<bool>) {
    let mut tenants = Tenants::default();
    loop {
        if *stop.borrow() {
            break;
        }
        match due_tenants(&rt).await {
            Ok(due) => tenants.wake_or_start(&rt, due, &stop),
            Err(e) => tracing::warn!(error = %e, "webhook scan failed; retrying"),
        }
        tokio::select! {
            () = rt.webhooks.woken() => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            // A dropped sender means nobody can stop us any more: stop now.
            changed = stop.changed() => if changed.is_err() { break },
            Some(done) = tenants.tasks.join_next_with_id(), if !tenants.tasks.is_empty() => {
                tenants.ended(done);
            }
        }
    }
    // Tenant tasks record the attempts in flight and end; whatever is still in flight after the
    // grace period is abandoned and retried after its lease.
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while tenants.tasks.join_next().await.is_some() {}
    })
    .await;
    tenants.tasks.shutdown().await;
}

async fn due_tenants(rt: &Runtime) -> Result<Vec<CustomerId>, MediaError> {
    rt.db
        .service_tx(async |tx| sql::due_tenants(tx, MAX_TENANTS_IN_FLIGHT).await)
        .await
}

/// One tenant's deliveries: keeps up to [`PER_TENANT_IN_FLIGHT`] attempts in flight, claims
/// more as slots free up, when the dispatcher signals new due events (`more`) or when a retry
/// falls due, and ends when nothing is in flight and nothing is due within the scan interval.
/// A hanging endpoint therefore holds at most its own tenant's slots, and a new event of the
/// same tenant still goes out while older ones hang (as long as a slot is free).
async fn tenant_loop(
    rt: Runtime,
    customer: CustomerId,
    more: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut running: JoinSet<(ClaimedEvent, Outcome)> = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let free = PER_TENANT_IN_FLIGHT - running.len() as i64;
        if free > 0 {
            start_attempts(&rt, customer, free, &mut running).await;
        }
        let wait = soon_due(&rt, customer, running.len()).await;
        if running.is_empty() && wait.is_none() {
            return;
        }
        tokio::select! {
            Some(done) = running.join_next(), if !running.is_empty() => {
                finish(&rt, customer, done).await;
            }
            () = more.notified() => {}
            () = tokio::time::sleep(wait.unwrap_or(POLL_INTERVAL)) => {}
            changed = stop.changed() => if changed.is_err() { break },
        }
    }
    // Stopping: record what is in flight (the dispatcher bounds how long this may take).
    while let Some(done) = running.join_next().await {
        finish(&rt, customer, done).await;
    }
}

/// Claims up to `free` due events and starts an attempt for each.
async fn start_attempts(
    rt: &Runtime,
    customer: CustomerId,
    free: i64,
    running: &mut JoinSet<(ClaimedEvent, Outcome)>,
) {
    match claim(rt, customer, free).await {
        Ok(claimed) => {
            for event in claimed {
                let rt = rt.clone();
                running.spawn(async move {
                    let outcome = delivery::attempt(&rt, customer, &event).await;
                    (event, outcome)
                });
            }
        }
        Err(e) => {
            tracing::warn!(customer_id = customer.get(), error = %e, "claiming webhook events failed");
        }
    }
}

/// How long to wait for the tenant's next retry, when it falls within the scan interval. Waited
/// for here so that short backoffs are honoured without scanning all tenants more often; not
/// looked up while every slot is busy.
async fn soon_due(rt: &Runtime, customer: CustomerId, in_flight: usize) -> Option<Duration> {
    if in_flight as i64 >= PER_TENANT_IN_FLIGHT {
        return None;
    }
    let next_due = rt
        .db
        .tenant_tx(customer, async |tx| sql::next_due_in(tx).await)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(customer_id = customer.get(), error = %e, "webhook schedule lookup failed");
            None
        });
    next_due
        .filter(|d| *d <= POLL_INTERVAL)
        .map(|d| d.max(Duration::from_millis(10)))
}

async fn finish(
    rt: &Runtime,
    customer: CustomerId,
    done: Result<(ClaimedEvent, Outcome), tokio::task::JoinError>,
) {
    match done {
        Ok((event, outcome)) => {
            if let Err(e) = delivery::record(rt, customer, &event, outcome).await {
                tracing::warn!(customer_id = customer.get(), event_id = %event.event_id, error = %e, "recording a webhook attempt failed; retried after the lease");
            }
        }
        Err(e) => {
            tracing::error!(customer_id = customer.get(), error = %e, "webhook attempt task failed; retried after the lease");
        }
    }
}

/// Claims up to `limit` due events: attempts + 1 and `next_attempt_at` pushed out by a lease
/// longer than one attempt can take.
async fn claim(
    rt: &Runtime,
    customer: CustomerId,
    limit: i64,
) -> Result<Vec<ClaimedEvent>, MediaError> {
    let lease = rt.webhooks.config().timeout + rt.peers.timeout() + Duration::from_secs(30);
    rt.db
        .tenant_tx(customer, async |tx| sql::claim(tx, lease, limit).await)
        .await
}
