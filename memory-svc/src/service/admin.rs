//! `MemoryAdminService`: operator RPCs over every tenant (the purge) or a named one (the erase),
//! called with service tokens carrying `memory:admin`.

use mesh::api::common::TableCount;
use mesh::api::memory::*;
use mesh::auth::{operator_target, service_caller};
use tonic::{Request, Response, Status};

use super::MemorySvc;
use crate::error::MemoryError;
use crate::model::AuditAction;
use crate::store;

#[tonic::async_trait]
impl memory_admin_service_server::MemoryAdminService for MemorySvc {
    async fn purge_expired_memories(
        &self,
        request: Request<PurgeExpiredMemoriesRequest>,
    ) -> Result<Response<PurgeExpiredMemoriesResponse>, Status> {
        let issuer = service_caller(&request)?.issuer.clone();
        let deleted = self.purge_expired().await?;
        tracing::info!(deleted, requested_by = %issuer, "expired memories purged");
        Ok(Response::new(PurgeExpiredMemoriesResponse { deleted }))
    }

    async fn erase_tenant(
        &self,
        request: Request<EraseTenantRequest>,
    ) -> Result<Response<EraseTenantResponse>, Status> {
        let (issuer, customer) = operator_target(&request, |r| r.customer_id)?;
        let counts: Vec<TableCount> = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::erasures::lock_tenant(tx, customer).await?;
                let counts = store::erase(tx, customer, None).await?;
                // A post-call record still on its way for any caller of this tenant is dropped.
                store::mark_erased(tx, customer, store::erasures::TENANT).await?;
                let action = AuditAction::EraseTenant;
                store::audit(tx, customer, action, "", &issuer, &counts).await?;
                Ok::<_, MemoryError>(counts)
            })
            .await?;
        tracing::warn!(
            requested_by = %issuer,
            rows = counts.iter().map(|c| c.rows).sum::<i64>(),
            "tenant memory erased"
        );
        Ok(Response::new(EraseTenantResponse { counts }))
    }
}
