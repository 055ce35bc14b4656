//! `DeleteCustomer`: the one operator action that erases a customer across the mesh.
//!
//! 1. One transaction marks the erasure (`tenant.erasures`, who asked, when) or finds the one
//!    already started; then the customer is suspended (its numbers stop resolving, so no new call
//!    starts), through the same path as `SetCustomerStatus`, which refuses to reactivate a
//!    customer being erased.
//! 2. media-svc `EraseTenant` (calls, transcripts, queued post-call records, webhook events,
//!    usage), then memory-svc `EraseTenant` (memories, profiles, summaries, personality; a marker
//!    drops any post-call record still on its way), each with tenant-svc's own service token of
//!    the narrow scope `media:erase-tenant` / `memory:erase-tenant`; each confirmation is stored
//!    with what that service removed. media-svc first: once it confirmed, no post-call record of
//!    the tenant is left to deliver. Both write their own audit row.
//! 3. One transaction deletes the customer row (numbers, settings, secrets and history cascade)
//!    and completes the record, which stays.
//!
//! A service that does not confirm stops the erasure with UNAVAILABLE naming it; the customer
//! stays suspended and marked, and DeleteCustomer again resumes at the first unconfirmed step
//! (both `EraseTenant`s are idempotent). Nothing is left behind silently: the marked row says
//! what is missing, and a resumed erasure reports every service's counts.

use mesh::api::common::TableCount;
use mesh::api::tenant::DeleteCustomerResponse;
use mesh::domain::CustomerId;

use super::TenantSvc;
use crate::customer::CustomerStatus;
use crate::error::{Result, TenantError};
use crate::peers::PeerError;
use crate::store::{self, erasures::Part};

impl TenantSvc {
    /// Erases `id` everywhere (see the module docs); `by` is who asked (`service:<issuer>`).
    pub(super) async fn erase_customer(
        &self,
        id: CustomerId,
        by: &str,
    ) -> Result<DeleteCustomerResponse> {
        let db = &self.deps.core.db;
        let state = db
            .tenant_tx(id, async |tx| store::erasures::begin(tx, id, by).await)
            .await?;
        tracing::warn!(customer_id = id.get(), requested_by = %by, "customer erasure started");
        self.change_status(id, CustomerStatus::Suspended, by, None)
            .await?;
        let peers = &self.deps.peers;
        if !state.media_done {
            let counts = peers
                .erase_media(id)
                .await
                .map_err(unconfirmed(id, "media-svc"))?;
            self.confirm(id, Part::Media, &counts).await?;
        }
        if !state.memory_done {
            let counts = peers
                .erase_memory(id)
                .await
                .map_err(unconfirmed(id, "memory-svc"))?;
            self.confirm(id, Part::Memory, &counts).await?;
        }
        let counts = db
            .tenant_tx(id, async |tx| store::erasures::complete(tx, id).await)
            .await?;
        self.routing.invalidate_customer(id);
        tracing::warn!(
            customer_id = id.get(),
            rows = counts.iter().map(|c| c.rows).sum::<i64>(),
            "customer erased in every service (offboarded)"
        );
        Ok(DeleteCustomerResponse { counts })
    }

    async fn confirm(&self, id: CustomerId, part: Part, counts: &[TableCount]) -> Result<()> {
        self.deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                store::erasures::confirm(tx, id, part, counts).await
            })
            .await?;
        tracing::info!(
            customer_id = id.get(),
            ?part,
            "service confirmed its part of the erasure"
        );
        Ok(())
    }
}

/// A service did not confirm its part: logged and counted, answered as UNAVAILABLE saying how
/// to resume.
fn unconfirmed(id: CustomerId, service: &'static str) -> impl FnOnce(PeerError) -> TenantError {
    move |e| {
        tracing::warn!(customer_id = id.get(), service, error = %e, "customer erasure stopped: a service did not confirm");
        metrics::counter!("tenant_erasures_incomplete_total", "service" => service).increment(1);
        TenantError::Unavailable(format!(
            "the erasure of customer {id} started (the customer is suspended) but {service} did \
             not confirm erasing its data ({e}); call DeleteCustomer again to resume it",
            id = id.get()
        ))
    }
}
