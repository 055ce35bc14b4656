//! `TenantService`: a tenant's own view, with a tenant token whose customer is the only one any
//! of these handlers touches: its record, agent configuration and history, effective profile,
//! outbound-call and webhook settings, webhook secret rotation and delivery signatures.

use mesh::api::tenant::*;
use mesh::auth::tenant_caller;
use mesh::db::Tx;
use mesh::domain::{CustomerId, PhoneNumber};
use secrecy::ExposeSecret as _;
use serde_json::json;
use tonic::{Request, Response, Status};

use super::{RpcResult, TenantSvc};
use crate::error::TenantError;
use crate::history::{Change, ConfigType};
use crate::model::diff;
use crate::outbound::{self, Patch};
use crate::page::{page_size, page_token, parse_page_token};
use crate::store::audit::actions;
use crate::{store, validate, webhook, wire};

/// Do-not-call lists longer than this are validated on the blocking pool: parsing a number with
/// libphonenumber's metadata takes about 20 µs in a release build, so a full list of 10,000 would
/// hold a runtime thread for 0.2 s.
const BLOCKING_VALIDATION_ABOVE: usize = 500;

/// The caller's customer and who it is (the token's subject, as history records it).
fn caller<T>(request: &Request<T>) -> std::result::Result<(CustomerId, String), Status> {
    let caller = tenant_caller(request)?;
    Ok((caller.customer_id, caller.subject.clone()))
}

/// Validates an outbound settings update, on the blocking pool when its do-not-call list is long.
async fn parse_patch(
    id: CustomerId,
    update: OutboundSettings,
    mask: Vec<String>,
    allow_insecure: bool,
) -> std::result::Result<Patch, Status> {
    if update.do_not_call.len() <= BLOCKING_VALIDATION_ABOVE {
        return Ok(Patch::parse(&update, &mask, allow_insecure)?);
    }
    tokio::task::spawn_blocking(move || Patch::parse(&update, &mask, allow_insecure))
        .await
        .map_err(|e| {
            tracing::error!(customer_id = id.get(), error = %e, "validation task failed");
            Status::internal("internal error")
        })?
        .map_err(Status::from)
}

/// The customer's new transfer rules against its transfer policy (toll fraud: a rule cannot
/// send callers to a region or kind of number the customer has not allowed).
async fn check_transfer_targets(
    tx: &Tx<'_>,
    customer: &crate::customer::Customer,
    rules: &[validate::TransferRule],
) -> Result<(), TenantError> {
    let settings = store::load_outbound(tx, customer.id).await?;
    let own: Vec<PhoneNumber> = customer
        .numbers
        .iter()
        .filter_map(|n| PhoneNumber::parse(&n.number).ok())
        .collect();
    validate::transfer_targets(
        "config.transfer_rules",
        rules,
        &settings.transfer_policy(&own),
    )
}

/// Checks a `SignWebhookEvent` request's timestamp and body size.
fn check_event(r: &SignWebhookEventRequest) -> Result<(), TenantError> {
    if r.timestamp <= 0 {
        return Err(TenantError::invalid(
            "timestamp",
            "must be Unix time in seconds",
        ));
    }
    if r.body.len() > webhook::MAX_BODY {
        return Err(TenantError::invalid(
            "body",
            format!(
                "must be at most {} bytes, got {}",
                webhook::MAX_BODY,
                r.body.len()
            ),
        ));
    }
    Ok(())
}

/// A change to the agent configuration: an update, or the revert of one history entry.
enum ConfigEdit {
    /// `UpdateAgentConfig`.
    Update {
        config: Box<AgentConfig>,
        mask: Vec<String>,
    },
    /// `RevertConfigChange` of this history id.
    Revert(i64),
}

impl TenantSvc {
    /// Applies `edit` in one transaction: validated (transfer targets against the customer's
    /// policy), one history row per changed field, nothing stored when refused. Returns the
    /// customer afterwards and how many fields changed.
    async fn edit_config(
        &self,
        id: CustomerId,
        by: &str,
        edit: ConfigEdit,
    ) -> Result<(crate::customer::Customer, usize), Status> {
        let reverting = matches!(edit, ConfigEdit::Revert(_));
        let (customer, changes) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let current = store::require_customer(tx, id).await?;
                let (config, mask, field) = match &edit {
                    ConfigEdit::Update { config, mask } => {
                        ((**config).clone(), mask.clone(), "config")
                    }
                    ConfigEdit::Revert(change) => {
                        let (kind, key, old) = store::config_change(tx, id, *change)
                            .await?
                            .ok_or(TenantError::NotFound("configuration change"))?;
                        let (config, mask) = crate::model::revert_update(&kind, &key, old)?;
                        (config, mask, "revert")
                    }
                };
                let next = current.overrides.apply(&config, &mask, field)?;
                let changes = diff(&current.overrides, &next);
                if changes.is_empty() {
                    return Ok((current, 0));
                }
                if let Some(rules) = &next.transfer_rules
                    && next.transfer_rules != current.overrides.transfer_rules
                {
                    check_transfer_targets(tx, &current, rules).await?;
                }
                store::update_overrides(tx, id, &next).await?;
                store::record_changes(tx, id, &changes, by).await?;
                // The audit log names the fields, never their values.
                let fields: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                let (action, detail) = match &edit {
                    ConfigEdit::Update { .. } => {
                        (actions::AGENT_UPDATED, json!({ "fields": fields }))
                    }
                    ConfigEdit::Revert(change) => (
                        actions::AGENT_REVERTED,
                        json!({ "change_id": change, "fields": fields }),
                    ),
                };
                store::append_audit(tx, id, by, action, &detail).await?;
                Ok::<_, TenantError>((store::require_customer(tx, id).await?, changes.len()))
            })
            .await?;
        if changes > 0 {
            self.routing.invalidate_customer(id);
            self.deps.peers.prepare_prompts_soon(id);
        }
        tracing::info!(
            customer_id = id.get(),
            changes,
            reverting,
            "agent configuration updated"
        );
        Ok((customer, changes))
    }
}

#[tonic::async_trait]
impl tenant_service_server::TenantService for TenantSvc {
    async fn get_my_customer(
        &self,
        request: Request<GetMyCustomerRequest>,
    ) -> RpcResult<GetMyCustomerResponse> {
        let id = tenant_caller(&request)?.customer_id;
        let customer = self.customer(id).await?;
        Ok(Response::new(GetMyCustomerResponse {
            customer: Some(customer.to_pb()),
        }))
    }

    async fn update_agent_config(
        &self,
        request: Request<UpdateAgentConfigRequest>,
    ) -> RpcResult<UpdateAgentConfigResponse> {
        let (id, by) = caller(&request)?;
        let r = request.into_inner();
        let edit = ConfigEdit::Update {
            config: Box::new(r.config.unwrap_or_default()),
            mask: r.update_mask.map(|m| m.paths).unwrap_or_default(),
        };
        let (customer, changes) = self.edit_config(id, &by, edit).await?;
        Ok(Response::new(UpdateAgentConfigResponse {
            customer: Some(customer.to_pb()),
            changes_recorded: changes as i32,
        }))
    }

    async fn revert_config_change(
        &self,
        request: Request<RevertConfigChangeRequest>,
    ) -> RpcResult<RevertConfigChangeResponse> {
        let (id, by) = caller(&request)?;
        let edit = ConfigEdit::Revert(request.get_ref().change_id);
        let (customer, changes) = self.edit_config(id, &by, edit).await?;
        Ok(Response::new(RevertConfigChangeResponse {
            customer: Some(customer.to_pb()),
            changes_recorded: changes as i32,
        }))
    }

    async fn list_config_history(
        &self,
        request: Request<ListConfigHistoryRequest>,
    ) -> RpcResult<ListConfigHistoryResponse> {
        let id = tenant_caller(&request)?.customer_id;
        let r = request.into_inner();
        let size = page_size(r.page_size)?;
        let before = parse_page_token(&r.page_token)?.unwrap_or(i64::MAX);
        let mut changes = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                store::list_history(tx, id, before, size + 1).await
            })
            .await?;
        let more = changes.len() as i64 > size;
        changes.truncate(size as usize);
        let next_page_token = match (more, changes.last()) {
            (true, Some(last)) => page_token(last.id),
            _ => String::new(),
        };
        Ok(Response::new(ListConfigHistoryResponse {
            changes,
            next_page_token,
        }))
    }

    async fn get_effective_profile(
        &self,
        request: Request<GetEffectiveProfileRequest>,
    ) -> RpcResult<GetEffectiveProfileResponse> {
        let id = tenant_caller(&request)?.customer_id;
        let r = request.into_inner();
        let (customer, defaults) = tokio::try_join!(self.customer_core(id), self.defaults())?;
        // A draft is validated exactly as an update would be, and stored nowhere.
        let overrides = match &r.draft {
            Some(draft) => {
                let mask = r.draft_mask.map(|m| m.paths).unwrap_or_default();
                let next = customer.overrides.apply(draft, &mask, "draft")?;
                // New transfer rules against the customer's transfer policy, as a save checks.
                if let Some(rules) = &next.transfer_rules
                    && next.transfer_rules != customer.overrides.transfer_rules
                {
                    self.deps
                        .core
                        .db
                        .tenant_tx(id, async |tx| {
                            let full = store::require_customer(tx, id).await?;
                            check_transfer_targets(tx, &full, rules).await
                        })
                        .await?;
                }
                next
            }
            None => customer.overrides.clone(),
        };
        Ok(Response::new(GetEffectiveProfileResponse {
            profile: Some(
                overrides
                    .effective(&defaults)
                    .to_profile(id.get(), &customer.business_name),
            ),
            defaults: Some(defaults.to_pb()),
        }))
    }

    async fn get_outbound_settings(
        &self,
        request: Request<GetOutboundSettingsRequest>,
    ) -> RpcResult<GetOutboundSettingsResponse> {
        let id = tenant_caller(&request)?.customer_id;
        let (settings, has_webhook_secret) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| store::get_outbound(tx, id).await)
            .await?;
        Ok(Response::new(GetOutboundSettingsResponse {
            settings: Some(settings.to_pb()),
            has_webhook_secret,
        }))
    }

    async fn update_outbound_settings(
        &self,
        request: Request<UpdateOutboundSettingsRequest>,
    ) -> RpcResult<UpdateOutboundSettingsResponse> {
        let (id, by) = caller(&request)?;
        let r = request.into_inner();
        let update = r.settings.unwrap_or_default();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        // Everything is validated before the database is touched: a refused update stores nothing.
        let patch = parse_patch(id, update, mask, self.deps.webhook_allow_insecure).await?;
        let (settings, changed) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                store::lock_customer(tx, id).await?;
                let current = store::load_outbound(tx, id).await?;
                let next = patch.apply(&current);
                let changes = outbound::diff(&current, &next);
                if !changes.is_empty() {
                    store::save_outbound(tx, id, &next).await?;
                    store::record_changes(tx, id, &changes, &by).await?;
                    let fields: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                    let detail = json!({ "fields": fields });
                    store::append_audit(tx, id, &by, actions::OUTBOUND_UPDATED, &detail).await?;
                }
                let changed: Vec<String> = changes.into_iter().map(|c| c.key).collect();
                Ok::<_, TenantError>((next, changed))
            })
            .await?;
        // Field names only: the values (URL, numbers) stay out of logs.
        tracing::info!(customer_id = id.get(), fields = ?changed, "outbound settings updated");
        Ok(Response::new(UpdateOutboundSettingsResponse {
            settings: Some(settings.to_pb()),
        }))
    }

    async fn get_call_handling(
        &self,
        request: Request<GetCallHandlingRequest>,
    ) -> RpcResult<GetCallHandlingResponse> {
        self.get_call_handling_impl(request).await
    }

    async fn update_call_handling(
        &self,
        request: Request<UpdateCallHandlingRequest>,
    ) -> RpcResult<UpdateCallHandlingResponse> {
        self.update_call_handling_impl(request).await
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<RotateWebhookSecretRequest>,
    ) -> RpcResult<RotateWebhookSecretResponse> {
        let (id, by) = caller(&request)?;
        let overlap = webhook::overlap(request.get_ref().overlap.as_ref())?;
        let secret = webhook::generate();
        let previous_expires = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                store::lock_customer(tx, id).await?;
                let previous_expires =
                    store::rotate_webhook_secret(tx, id, &secret, overlap).await?;
                // History says that it happened, never what the secret is.
                let change = Change {
                    config_type: ConfigType::Outbound,
                    key: webhook::HISTORY_KEY.into(),
                    old: previous_expires.map(|_| webhook::ROTATED.into()),
                    new: Some(webhook::ROTATED.into()),
                };
                store::record_changes(tx, id, &[change], &by).await?;
                let detail = json!({ "first": previous_expires.is_none() });
                store::append_audit(tx, id, &by, actions::WEBHOOK_SECRET_ROTATED, &detail).await?;
                Ok::<_, TenantError>(previous_expires)
            })
            .await?;
        tracing::info!(
            customer_id = id.get(),
            overlap_s = overlap.as_secs(),
            first = previous_expires.is_none(),
            "webhook secret rotated"
        );
        Ok(Response::new(RotateWebhookSecretResponse {
            secret: secret.expose_secret().to_owned(),
            previous_expire_time: previous_expires.map(wire::timestamp),
        }))
    }

    async fn sign_webhook_event(
        &self,
        request: Request<SignWebhookEventRequest>,
    ) -> RpcResult<SignWebhookEventResponse> {
        let id = tenant_caller(&request)?.customer_id;
        let r = request.into_inner();
        check_event(&r)?;
        let keys = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| store::signing_keys(tx, id).await)
            .await?;
        if keys.webhook_url.is_empty() {
            return Err(TenantError::FailedPrecondition(
                "this customer has no webhook URL (UpdateOutboundSettings `webhook_url`)".into(),
            )
            .into());
        }
        let Some(current) = &keys.current else {
            return Err(TenantError::FailedPrecondition(
                "this customer has no webhook secret (RotateWebhookSecret creates one)".into(),
            )
            .into());
        };
        let signatures: Vec<String> = std::iter::once(current)
            .chain(keys.previous.as_ref())
            .map(|secret| webhook::sign(secret, r.timestamp, &r.body))
            .collect();
        tracing::debug!(
            customer_id = id.get(),
            body_bytes = r.body.len(),
            signatures = signatures.len(),
            "webhook event signed"
        );
        Ok(Response::new(SignWebhookEventResponse {
            webhook_url: keys.webhook_url,
            signatures,
        }))
    }
}
