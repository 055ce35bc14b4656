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

/// A checked `NotifyOwners` request.
struct Request {
    id: mesh::domain::CustomerId,
    task: Uuid,
    reason: MessageReason,
}

impl Request {
    fn parse(r: &NotifyOwnersRequest) -> Result<Self> {
        let id = target_customer("customer_id", r.customer_id)?;
        if OwnerNotice::try_from(r.kind) != Ok(OwnerNotice::MessageTaken) {
            return Err(TenantError::invalid(
                "kind",
                "must be OWNER_NOTICE_MESSAGE_TAKEN",
            ));
        }
        let task = Uuid::parse_str(&r.task_id)
            .map_err(|_| TenantError::invalid("task_id", "must be a UUID"))?;
        let reason = match MessageReason::try_from(r.reason) {
            Ok(MessageReason::Unspecified) | Err(_) => {
                return Err(TenantError::invalid(
                    "reason",
                    "name why the message was taken",
                ));
            }
            Ok(reason) => reason,
        };
        Ok(Self { id, task, reason })
    }
}

impl TenantSvc {
    pub(super) async fn notify_owners_now(
        &self,
        r: &NotifyOwnersRequest,
    ) -> Result<NotifyOwnersResponse> {
        let Request { id, task, reason } = Request::parse(r)?;
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
        let notice = notice::message_taken(&customer.business_name, &mail.base_url, reason);
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
        tracing::info!(customer_id = id.get(), %task, sent, already_sent, "owners mailed about a message");
        Ok(NotifyOwnersResponse {
            mail_configured: true,
            sent,
            already_sent,
        })
    }
}
