//! The console's platform-wide and number actions: a customer's numbers assigned and released
//! through media-svc's `NumberAdminService` (tenant-svc's `media:numbers-admin` token; media-svc
//! routes them back through `AssignPhoneNumber`/`ReleasePhoneNumber`), each audited in the
//! customer's log once media-svc confirmed (the number as its last four digits only); and the
//! dead-letter counts across tenants (media-svc `CountDeadLetters`, ids and counts only).

use mesh::api::tenant::*;
use serde_json::json;

use super::sign_in::OperatorCaller;
use crate::error::{Result, TenantError};
use crate::peers::PeerError;
use crate::service::{TenantSvc, phone_number, target_customer};
use crate::store::{self, audit::actions};

/// The last four digits of a number: what an audit row may say of it.
fn last_four(number: &str) -> String {
    number
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// A refusal of media-svc as the console's answer: what the operator can fix keeps its code
/// and message; the rest is UNAVAILABLE naming media-svc.
fn from_media(e: PeerError) -> TenantError {
    match e {
        PeerError::Status(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            TenantError::FailedPrecondition(format!("media-svc: {}", s.message()))
        }
        PeerError::Status(s) if s.code() == tonic::Code::NotFound => {
            TenantError::NotFound("number on the platform's Twilio account")
        }
        PeerError::Status(s) if s.code() == tonic::Code::AlreadyExists => {
            TenantError::AlreadyExists("this number is already assigned")
        }
        other => TenantError::Unavailable(format!(
            "media-svc did not confirm the change ({other}); nothing was recorded"
        )),
    }
}

impl TenantSvc {
    /// Assigns (`assign`) or releases a number of a customer through media-svc, then records it
    /// in the customer's audit log.
    pub(super) async fn operator_number(
        &self,
        op: &OperatorCaller,
        customer_id: i64,
        number: &str,
        assign: bool,
    ) -> Result<CustomerSummary> {
        let id = target_customer("customer_id", customer_id)?;
        let number = phone_number("number", number)?;
        // NOT_FOUND for an unknown customer before media-svc is asked.
        self.customer(id).await?;
        let peers = &self.deps.peers;
        let done = if assign {
            peers.import_number(id, number.as_str()).await
        } else {
            peers.release_number(id, number.as_str()).await
        };
        done.map_err(from_media)?;
        let action = if assign {
            actions::OPERATOR_NUMBER_ASSIGNED
        } else {
            actions::OPERATOR_NUMBER_RELEASED
        };
        let c = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let detail = json!({ "number_last4": last_four(number.as_str()) });
                store::append_audit(tx, id, &op.actor(), action, &detail).await?;
                store::require_customer(tx, id).await
            })
            .await?;
        self.routing.invalidate_customer(id);
        tracing::info!(
            customer_id = id.get(),
            operator_id = op.operator_id,
            action,
            "operator changed a number"
        );
        self.summary(c).await
    }

    pub(super) async fn dead_letters(&self) -> Result<ListDeadLetterCountsResponse> {
        let counts = self
            .deps
            .peers
            .dead_letter_counts()
            .await
            .map_err(|e| TenantError::Unavailable(format!("media-svc did not answer ({e})")))?
            .into_iter()
            .map(|(customer_id, count)| DeadLetterCount { customer_id, count })
            .collect();
        Ok(ListDeadLetterCountsResponse { counts })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_last_four_digits_are_kept() {
        assert_eq!(super::last_four("+15550100123"), "0123");
        assert_eq!(super::last_four("12"), "12");
    }
}
