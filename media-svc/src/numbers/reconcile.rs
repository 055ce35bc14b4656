//! Reconcile: Twilio's numbers against the platform's, one runner at a time across replicas
//! (a transaction-scoped advisory lock held, and kept alive, for the whole run; a replica that
//! cannot take it answers ABORTED or, as the background task, skips the round).
//!
//! Drift, and what `fix` does:
//! - WEBHOOKS: VoiceUrl / VoiceMethod / StatusCallback not ours -> set to ours;
//! - MISSING_AT_TWILIO: held active but Twilio no longer lists it -> routing released, RELEASED;
//! - UNKNOWN_AT_PLATFORM: Twilio lists a number nobody holds -> reported only, never released;
//! - ROUTING: held but not routed by tenant-svc -> routed; a release left half done -> finished;
//! - PURCHASE_PENDING: a purchase whose answer was lost -> found at Twilio: ACTIVE and routed;
//!   not found after [`PENDING_GIVE_UP`]: FAILED (Twilio never made it).
//!
//! Logs carry counts and customer ids, never numbers.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mesh::api::media::{Drift, DriftKind, NumberState, ReconcileResponse};
use mesh::domain::CustomerId;

use super::client::{IncomingNumber, RestClient};
use super::store::{self, NumberRow};
use super::{Numbers, NumbersError, ops};

/// A purchase still unconfirmed after this long, and not on the account, never happened.
pub const PENDING_GIVE_UP: Duration = Duration::from_secs(10 * 60);

/// How often the lock's transaction is touched while the run lasts (the server ends sessions
/// idle in a transaction after a minute).
const KEEPALIVE: Duration = Duration::from_secs(20);

/// One run: compares, and with `fix` fixes. ABORTED when another run holds the lock.
pub async fn run_once(n: &Numbers, fix: bool) -> Result<ReconcileResponse, NumbersError> {
    let rest = n.rest()?;
    n.db.service_tx(async |lock| {
        if !store::try_reconcile_lock(lock).await? {
            return Err(NumbersError::Aborted(
                "another reconcile is running; try again when it is done".into(),
            ));
        }
        let keepalive = async {
            loop {
                tokio::time::sleep(KEEPALIVE).await;
                if lock.query_one("SELECT 1", &[]).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            report = compare(n, rest, fix) => report,
            () = keepalive => unreachable!("the keepalive never ends"),
        }
    })
    .await
}

fn drift(number: &str, kind: DriftKind, detail: &str, customer: i64, fixed: bool) -> Drift {
    Drift {
        phone_number: number.to_owned(),
        kind: kind as i32,
        detail: detail.to_owned(),
        customer_id: customer,
        fixed,
    }
}

async fn compare(
    n: &Numbers,
    rest: &RestClient,
    fix: bool,
) -> Result<ReconcileResponse, NumbersError> {
    let listed: HashMap<String, IncomingNumber> = rest
        .list_all()
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "reconcile could not list Twilio's numbers");
            NumbersError::Unavailable(ops::TWILIO_UNAVAILABLE.into())
        })?
        .into_iter()
        .map(|i| (i.phone_number.clone(), i))
        .collect();
    let customers =
        n.db.service_tx(async |tx| store::number_tenants(tx).await)
            .await?;
    let mut report = ReconcileResponse {
        drift: Vec::new(),
        twilio_numbers: i32::try_from(listed.len()).unwrap_or(i32::MAX),
        platform_numbers: 0,
    };
    let mut held: HashSet<String> = HashSet::new();
    for customer in customers {
        let rows =
            n.db.tenant_tx(customer, async |tx| store::list(tx, customer, true).await)
                .await?;
        for row in rows {
            held.insert(row.phone_number.clone());
            if row.state == NumberState::Active {
                report.platform_numbers += 1;
            }
            let found = listed.get(&row.phone_number);
            check_row(n, rest, customer, &row, found, fix, &mut report.drift).await?;
        }
    }
    for number in listed.keys().filter(|k| !held.contains(*k)) {
        report.drift.push(drift(
            number,
            DriftKind::UnknownAtPlatform,
            "on the Twilio account but held by no customer (never released automatically)",
            0,
            false,
        ));
    }
    report
        .drift
        .sort_by(|a, b| a.phone_number.cmp(&b.phone_number));
    let fixed = report.drift.iter().filter(|d| d.fixed).count();
    tracing::info!(
        twilio = report.twilio_numbers,
        platform = report.platform_numbers,
        drift = report.drift.len(),
        fixed,
        "numbers reconciled"
    );
    Ok(report)
}

async fn check_row(
    n: &Numbers,
    rest: &RestClient,
    customer: CustomerId,
    row: &NumberRow,
    found: Option<&IncomingNumber>,
    fix: bool,
    out: &mut Vec<Drift>,
) -> Result<(), NumbersError> {
    let c = customer.get();
    let number = row.phone_number.as_str();
    match row.state {
        NumberState::Purchasing => check_purchasing(n, customer, row, found, fix, out).await,
        NumberState::Releasing => {
            let fixed = fix
                && ops::finish_release(n, rest, customer, row)
                    .await
                    .is_ok_and(|r| r.state == NumberState::Released);
            out.push(drift(
                number,
                DriftKind::Routing,
                "release left unfinished",
                c,
                fixed,
            ));
        }
        NumberState::Active => {
            return check_active(n, rest, customer, row, found, fix, out).await;
        }
        _ => {}
    }
    Ok(())
}

/// A purchase whose answer was lost.
async fn check_purchasing(
    n: &Numbers,
    customer: CustomerId,
    row: &NumberRow,
    found: Option<&IncomingNumber>,
    fix: bool,
    out: &mut Vec<Drift>,
) {
    let c = customer.get();
    let number = row.phone_number.as_str();
    let old = chrono::Utc::now() - row.created_at
        > chrono::Duration::from_std(PENDING_GIVE_UP).unwrap_or_default();
    match found {
        Some(_) => {
            let fixed = fix && ops::resolve_pending(n, customer, row).await.is_ok();
            out.push(drift(
                number,
                DriftKind::PurchasePending,
                "purchase answer was lost; Twilio holds the number",
                c,
                fixed,
            ));
        }
        None if old => {
            let fixed = fix
                && n.db
                    .tenant_tx(customer, async |tx| {
                        store::set_state(tx, customer, row.number_id, NumberState::Failed).await
                    })
                    .await
                    .is_ok();
            out.push(drift(
                number,
                DriftKind::PurchasePending,
                "purchase never confirmed and not on the Twilio account",
                c,
                fixed,
            ));
        }
        None => out.push(drift(
            number,
            DriftKind::PurchasePending,
            "purchase in progress",
            c,
            false,
        )),
    }
}

/// An active number: on the account, with our webhooks, routed.
async fn check_active(
    n: &Numbers,
    rest: &RestClient,
    customer: CustomerId,
    row: &NumberRow,
    found: Option<&IncomingNumber>,
    fix: bool,
    out: &mut Vec<Drift>,
) -> Result<(), NumbersError> {
    let c = customer.get();
    let number = row.phone_number.as_str();
    let Some(found) = found else {
        let fixed = fix && {
            ops::unroute(n, customer, number).await.is_ok()
                && n.db
                    .tenant_tx(customer, async |tx| {
                        store::set_state(tx, customer, row.number_id, NumberState::Released).await
                    })
                    .await
                    .is_ok()
        };
        out.push(drift(
            number,
            DriftKind::MissingAtTwilio,
            "held here but no longer on the Twilio account",
            c,
            fixed,
        ));
        return Ok(());
    };
    let problems = n.hooks.problems(found);
    if !problems.is_empty() {
        let fixed = fix && rest.set_webhooks(&found.sid, &n.hooks).await.is_ok();
        n.db.tenant_tx(customer, async |tx| {
            store::set_webhooks_ok(tx, customer, row.number_id, fixed).await
        })
        .await?;
        out.push(drift(
            number,
            DriftKind::Webhooks,
            &problems.join("; "),
            c,
            fixed,
        ));
    } else if !row.webhooks_ok {
        n.db.tenant_tx(customer, async |tx| {
            store::set_webhooks_ok(tx, customer, row.number_id, true).await
        })
        .await?;
    }
    match ops::routed_here(n, customer, number).await {
        Ok(true) => {}
        Ok(false) => {
            let fixed = fix && matches!(ops::route(n, customer, number).await, Ok(true));
            out.push(drift(
                number,
                DriftKind::Routing,
                "held here but not routed by tenant-svc",
                c,
                fixed,
            ));
        }
        Err(s) => {
            tracing::warn!(customer_id = c, code = ?s.code(), "routing not checked");
            out.push(drift(
                number,
                DriftKind::Routing,
                "tenant-svc could not be asked whether it routes the number",
                c,
                false,
            ));
        }
    }
    Ok(())
}

/// The background task: a run with `fix` every `reconcile_every`, until `stop`; never when
/// the interval is zero or Twilio is not configured. A round another replica holds is skipped.
pub async fn run(n: Numbers, mut stop: tokio::sync::watch::Receiver<bool>) {
    if n.reconcile_every.is_zero() || n.rest.is_err() {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(n.reconcile_every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match run_once(&n, true).await {
            Ok(_) => {}
            Err(NumbersError::Aborted(_)) => {
                tracing::debug!("numbers reconcile running elsewhere; skipped");
            }
            Err(e) => tracing::warn!(error = %e, "numbers reconcile failed"),
        }
    }
}
