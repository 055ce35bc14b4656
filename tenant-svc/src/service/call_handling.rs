//! `GetCallHandling` / `UpdateCallHandling` (issue 20): the bodies of the two `TenantService`
//! handlers, kept apart from `tenant.rs` (which delegates here).

use mesh::api::tenant::{
    GetCallHandlingRequest, GetCallHandlingResponse, UpdateCallHandlingRequest,
    UpdateCallHandlingResponse,
};
use mesh::auth::tenant_caller;
use serde_json::json;
use tonic::{Request, Response};

use super::{RpcResult, TenantSvc};
use crate::call_handling;
use crate::error::TenantError;
use crate::store;
use crate::store::audit::actions;

impl TenantSvc {
    /// The settings (defaults when never set) and the time zone the opening hours are read in.
    pub(super) async fn get_call_handling_impl(
        &self,
        request: Request<GetCallHandlingRequest>,
    ) -> RpcResult<GetCallHandlingResponse> {
        let id = tenant_caller(&request)?.customer_id;
        let (customer, settings) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let customer = store::require_customer_core(tx, id).await?;
                let settings = store::load_call_handling(tx, id).await?;
                Ok::<_, TenantError>((customer, settings))
            })
            .await?;
        let defaults = self.defaults().await?;
        let time_zone = customer
            .overrides
            .time_zone
            .clone()
            .unwrap_or_else(|| defaults.time_zone.clone());
        Ok(Response::new(GetCallHandlingResponse {
            settings: Some(settings),
            time_zone,
        }))
    }

    /// Validates the whole message first (nothing stored when refused), then, under the
    /// customer's lock, stores it with one history entry per changed field and one audit entry.
    pub(super) async fn update_call_handling_impl(
        &self,
        request: Request<UpdateCallHandlingRequest>,
    ) -> RpcResult<UpdateCallHandlingResponse> {
        let caller = tenant_caller(&request)?;
        let (id, by) = (caller.customer_id, caller.subject.clone());
        let next = call_handling::parse(request.get_ref().settings.as_ref())?;
        let (settings, changed) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                store::lock_customer(tx, id).await?;
                let current = store::load_call_handling(tx, id).await?;
                let changes = call_handling::diff(&current, &next);
                if !changes.is_empty() {
                    store::save_call_handling(tx, id, &next).await?;
                    store::record_changes(tx, id, &changes, &by).await?;
                    let fields: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                    let detail = json!({ "fields": fields });
                    store::append_audit(tx, id, &by, actions::CALL_HANDLING_UPDATED, &detail)
                        .await?;
                }
                let changed: Vec<String> = changes.into_iter().map(|c| c.key).collect();
                Ok::<_, TenantError>((if changed.is_empty() { current } else { next }, changed))
            })
            .await?;
        // Field names only: the texts stay out of logs.
        tracing::info!(customer_id = id.get(), fields = ?changed, "call handling updated");
        if !changed.is_empty() {
            self.deps.peers.prepare_prompts_soon(id);
        }
        Ok(Response::new(UpdateCallHandlingResponse {
            settings: Some(settings),
            changes_recorded: changed.len() as i32,
        }))
    }
}
