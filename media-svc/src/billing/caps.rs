//! Monthly caps of a tenant's package (today one: Twilio minutes).
//!
//! - [`reached`]: inside `RegisterCall`'s transaction, whether the tenant's calls this month
//!   have reached the cap, and what the package does then (new inbound calls to the message flow,
//!   or every new call refused with the busy answer).
//! - [`warn_if_due`]: after a call was counted (its final status callback, or the end of its
//!   stream), whether the month passed 80 % of the cap; the first time it does, one
//!   `media.cap_notices` row, one `usage.warning` webhook event (when the tenant has a webhook)
//!   and one owners' notice through the outbox (`NotifyOwners`, mailed by tenant-svc) are written
//!   in one transaction. The row makes it once per tenant, month and cap; a warning missed by a
//!   crash between the call's commit and this check is written after the tenant's next call.
//!   The event and the mail carry the month, the cap, the minutes used and the share in percent:
//!   no call, caller or amount.

use chrono::Utc;
use mesh::api::media::OverCapAction;
use mesh::api::tenant::{MessageReason, NotifyOwnersRequest, OwnerNotice};
use mesh::db::Tx;
use mesh::domain::{CallSid, CustomerId};
use prost::Message as _;
use uuid::Uuid;

use super::{Month, percent_used};
use crate::error::MediaError;
use crate::runtime::Runtime;
use crate::store::outbox::{self, OutboxKind};
use crate::store::webhooks::{self as events, EventType, NewEvent};
use crate::store::{billing as sql, usage};

/// The share of a cap at which the owners are warned.
pub const WARN_PERCENT: i32 = 80;

/// The cap's name in `media.cap_notices` and in the event.
const MINUTES: &str = "minutes";

/// A month's cap and use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapUse {
    /// The cap, in Twilio minutes.
    pub cap: i64,
    /// Minutes used.
    pub used: i64,
    /// What happens at the cap.
    pub over_cap: OverCapAction,
}

impl CapUse {
    /// The share used, whole percent rounded down.
    pub fn percent(&self) -> i32 {
        percent_used(self.used, self.cap)
    }
}

/// The current tenant's cap and use in a month; `None` without a package or a cap.
pub async fn cap_use(tx: &Tx<'_>, month: Month) -> Result<Option<CapUse>, MediaError> {
    let Some((package, _)) = sql::pricing(tx, month).await? else {
        return Ok(None);
    };
    let Some(cap) = package.cap_minutes else {
        return Ok(None);
    };
    let used = usage::usage(tx, month.first_day()).await?.minutes;
    let over_cap = match OverCapAction::try_from(i32::from(package.over_cap)) {
        Ok(OverCapAction::Refuse) => OverCapAction::Refuse,
        _ => OverCapAction::MessageFlow,
    };
    Ok(Some(CapUse {
        cap,
        used,
        over_cap,
    }))
}

/// What the package does with a new call this month, when its cap is reached.
pub async fn reached(tx: &Tx<'_>) -> Result<Option<OverCapAction>, MediaError> {
    Ok(cap_use(tx, Month::current())
        .await?
        .filter(|c| c.used >= c.cap)
        .map(|c| c.over_cap))
}

/// The `usage.warning` event's body.
fn event_body(
    event_id: Uuid,
    customer: CustomerId,
    month: Month,
    cap: &CapUse,
) -> Result<Vec<u8>, MediaError> {
    let body = serde_json::json!({
        "type": EventType::UsageWarning.as_str(),
        "event_id": event_id.to_string(),
        "created_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "customer_id": customer.get(),
        "usage": {
            "month": month.to_string(),
            "cap": MINUTES,
            "limit": cap.cap,
            "used": cap.used,
            "percent_used": cap.percent(),
            "over_cap": match cap.over_cap {
                OverCapAction::Refuse => "refuse",
                _ => "message_flow",
            },
        },
    });
    serde_json::to_vec(&body).map_err(|e| MediaError::Internal(format!("event JSON: {e}")))
}

/// Writes the warning once: the notice row, the event when `webhook`, the owners' notice.
/// Whether it was written now.
async fn write_warning(
    tx: &Tx<'_>,
    rt: &Runtime,
    customer: CustomerId,
    call_sid: &CallSid,
    month: Month,
    webhook: bool,
) -> Result<bool, MediaError> {
    let Some(cap) = cap_use(tx, month).await? else {
        return Ok(false);
    };
    if cap.percent() < WARN_PERCENT {
        return Ok(false);
    }
    let inserted = tx
        .query_opt(
            "INSERT INTO media.cap_notices (customer_id, month, cap, level) \
             VALUES (app.current_customer_id(), $1, $2, $3) \
             ON CONFLICT DO NOTHING RETURNING notice_id",
            &[&month.first_day(), &MINUTES, &80i16],
        )
        .await?;
    let Some(row) = inserted else {
        return Ok(false);
    };
    let notice_id: Uuid = row.get(0);
    if webhook {
        let event_id = Uuid::new_v4();
        let body = event_body(event_id, customer, month, &cap)?;
        events::insert_event(
            tx,
            &NewEvent {
                event_id,
                event_type: EventType::UsageWarning,
                call_sid: Some(call_sid),
                body: &body,
                retry_for: rt.webhooks.config().retry_for,
                created_at: Utc::now(),
            },
        )
        .await?;
    }
    let request = NotifyOwnersRequest {
        customer_id: customer.get(),
        kind: OwnerNotice::UsageWarning as i32,
        task_id: notice_id.to_string(),
        reason: MessageReason::Unspecified as i32,
        percent_used: cap.percent(),
        month: month.to_string(),
    };
    outbox::enqueue(
        tx,
        OutboxKind::NotifyOwnersUsage,
        call_sid,
        &request.encode_to_vec(),
    )
    .await?;
    tracing::info!(
        customer_id = customer.get(),
        percent = cap.percent(),
        month = %month,
        "monthly cap passed 80 %: usage warning queued"
    );
    Ok(true)
}

/// After `call_sid` was counted: the 80 % warning, once per tenant, month and cap. Failures are
/// logged (the next call of the tenant checks again), never returned: the call is finalised.
pub async fn warn_if_due(rt: &Runtime, customer: CustomerId, call_sid: &CallSid) {
    let month = Month::current();
    let due = rt
        .db
        .tenant_tx(customer, async |tx| {
            let sent = tx
                .query_opt(
                    "SELECT 1 FROM media.cap_notices WHERE month = $1 AND cap = $2 AND level = 80",
                    &[&month.first_day(), &MINUTES],
                )
                .await?
                .is_some();
            if sent {
                return Ok::<_, MediaError>(false);
            }
            Ok(cap_use(tx, month)
                .await?
                .is_some_and(|c| c.percent() >= WARN_PERCENT))
        })
        .await;
    match due {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(customer_id = customer.get(), error = %e, "cap not checked");
            return;
        }
    }
    // Asked before the transaction (a network call never holds one); when tenant-svc cannot
    // say, the event is queued anyway (its delivery asks again).
    let webhook = match tokio::time::timeout(
        rt.peers.timeout(),
        rt.peers.outbound_settings(customer),
    )
    .await
    {
        Ok(Ok(s)) => s.settings.is_some_and(|s| !s.webhook_url.is_empty()),
        _ => true,
    };
    let written = rt
        .db
        .tenant_tx(customer, async |tx| {
            write_warning(tx, rt, customer, call_sid, month, webhook).await
        })
        .await;
    match written {
        Ok(true) => {
            rt.outbox_wake.notify_one();
            if webhook {
                rt.webhooks.wake();
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(customer_id = customer.get(), error = %e, "usage warning not queued")
        }
    }
}
