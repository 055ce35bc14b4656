//! A new platform default voice changes the voice of every tenant without one of its own, so
//! their spoken prompts are rendered again: every tenant is asked for, one after another, in the
//! background (`PreparePrompts`; media-svc finds a tenant with its own voice already rendered
//! and only checks). One attempt per tenant: a tenant media-svc could not prepare renders its
//! prompts at its first call, as before.

use std::time::Duration;

use super::TenantSvc;
use crate::store;

/// Customer ids read per page while asking for every tenant.
const PAGE: i32 = 200;
/// A pause between two tenants, so a large platform does not crowd media-svc's renderings.
const BETWEEN: Duration = Duration::from_millis(20);

impl TenantSvc {
    /// Asks media-svc to prepare every tenant's prompts, in the background.
    pub(super) fn prepare_every_tenants_prompts_soon(&self) {
        let (db, peers) = (self.deps.core.db.clone(), self.deps.peers.clone());
        tokio::spawn(async move {
            let (mut after, mut asked, mut failed) = (0i64, 0u32, 0u32);
            loop {
                let page = db
                    .service_tx(async |tx| store::list_customer_ids(tx, after, PAGE).await)
                    .await;
                let ids = match page {
                    Ok(ids) => ids,
                    Err(e) => {
                        tracing::warn!(error = %e, "tenants unreadable; prompts left to calls");
                        return;
                    }
                };
                let Some(last) = ids.last() else { break };
                after = last.get();
                for id in ids {
                    asked += 1;
                    if let Err(e) = peers.prepare_prompts(id).await {
                        failed += 1;
                        tracing::warn!(
                            customer_id = id.get(),
                            error = %e,
                            "media-svc did not prepare the prompts; a call renders them on a miss"
                        );
                    }
                    tokio::time::sleep(BETWEEN).await;
                }
            }
            tracing::info!(asked, failed, "prompts prepared for the new default voice");
        });
    }
}
