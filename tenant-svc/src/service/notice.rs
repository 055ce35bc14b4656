//! `TenantAdminService.NotifyOwners`: media-svc (its outbox, with a service token whose scope
//! opens this RPC only) asks tenant-svc to mail a customer's active owners that a caller left a
//! message. Each owner is mailed once per task: the owners already recorded for the task
//! (`tenant.owner_notifications`, V25) are skipped, and each owner is recorded right after their
//! mail was accepted, so a retry after a failure mails only those it missed. The mail is sent
//! outside any transaction (a network call never holds one); the one window for a repeat is a
//! database failure between an accepted mail and its record.

use mesh::api::tenant::{MessageReason, NotifyOwnersRequest, NotifyOwnersResponse, OwnerNotice};
use mesh::mail::MailError;
use uuid::Uuid;

use super::{TenantSvc, target_customer};
use crate::error::{Result, TenantError};
use crate::notice;
use crate::store::owner_notifications as sql;

/// What a checked `NotifyOwners` request tells the owners.
enum Kind {
    /// A caller left a message.
    Message(MessageReason),
    /// A monthly cap is this much used (percent), in this month (`YYYY-MM`).
    UsageWarning(i32, String),
}

/// A checked `NotifyOwners` request.
struct Request {
    id: mesh::domain::CustomerId,
    task: Uuid,
    kind: Kind,
}

/// `YYYY-MM`.
fn is_month(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
        && matches!(s[5..].parse::<u32>(), Ok(1..=12))
}

impl Request {
    fn parse(r: &NotifyOwnersRequest) -> Result<Self> {
        let id = target_customer("customer_id", r.customer_id)?;
        let task = Uuid::parse_str(&r.task_id)
            .map_err(|_| TenantError::invalid("task_id", "must be a UUID"))?;
        match OwnerNotice::try_from(r.kind) {
            Ok(OwnerNotice::MessageTaken) => {}
            Ok(OwnerNotice::UsageWarning) => {
                if !(1..=1000).contains(&r.percent_used) {
                    return Err(TenantError::invalid("percent_used", "must be 1-1000"));
                }
                if !is_month(&r.month) {
                    return Err(TenantError::invalid("month", "must be YYYY-MM"));
                }
                let kind = Kind::UsageWarning(r.percent_used, r.month.clone());
                return Ok(Self { id, task, kind });
            }
            _ => {
                return Err(TenantError::invalid(
                    "kind",
                    "must be OWNER_NOTICE_MESSAGE_TAKEN or OWNER_NOTICE_USAGE_WARNING",
                ));
            }
        }
        let reason = match MessageReason::try_from(r.reason) {
            Ok(MessageReason::Unspecified) | Err(_) => {
                return Err(TenantError::invalid(
                    "reason",
                    "name why the message was taken",
                ));
            }
            Ok(reason) => reason,
        };
        Ok(Self {
            id,
            task,
            kind: Kind::Message(reason),
        })
    }
}

impl TenantSvc {
    pub(super) async fn notify_owners_now(
        &self,
        r: &NotifyOwnersRequest,
    ) -> Result<NotifyOwnersResponse> {
        let Request { id, task, kind } = Request::parse(r)?;
        let customer = self.customer_core(id).await?;
        let Some(mail) = &self.deps.accounts.owner_mail else {
            tracing::info!(customer_id = id.get(), %task, "owners not mailed: mail is not configured");
            return Ok(NotifyOwnersResponse {
                mail_configured: false,
                sent: 0,
                already_sent: 0,
            });
        };
        let (todo, already_sent) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| sql::recipients(tx, id, task).await)
            .await?;
        let notice = match &kind {
            Kind::Message(reason) => {
                notice::message_taken(&customer.business_name, &mail.base_url, *reason)
            }
            Kind::UsageWarning(percent, month) => {
                notice::usage_warning(&customer.business_name, &mail.base_url, *percent, month)
            }
        };
        let mut sent = 0;
        for owner in todo {
            match mail
                .mailer
                .send(&owner.email, &notice.subject, notice.body.clone())
                .await
            {
                Ok(()) => {}
                Err(MailError::Unsendable(why)) => {
                    // Another try cannot help (an address or sender that is not a mailbox):
                    // logged and skipped, so the others are still told.
                    metrics::counter!("tenant_owner_mail_failures_total", "permanent" => "true")
                        .increment(1);
                    tracing::warn!(customer_id = id.get(), %task, user_id = owner.user_id, why, "owner not mailed");
                    continue;
                }
                Err(MailError::Transport(e)) => {
                    metrics::counter!("tenant_owner_mail_failures_total", "permanent" => "false")
                        .increment(1);
                    tracing::warn!(customer_id = id.get(), %task, sent, error = %e, "mail server failed; owners' notice to be retried");
                    return Err(TenantError::Unavailable(
                        "the mail server did not accept the notice; try again later".into(),
                    ));
                }
            }
            self.deps
                .core
                .db
                .tenant_tx(id, async |tx| {
                    sql::record(tx, id, task, owner.user_id).await
                })
                .await?;
            sent += 1;
        }
        metrics::counter!("tenant_owner_mails_sent_total").increment(u64::from(sent));
        tracing::info!(customer_id = id.get(), %task, sent, already_sent, "owners mailed");
        Ok(NotifyOwnersResponse {
            mail_configured: true,
            sent,
            already_sent,
        })
    }
}
