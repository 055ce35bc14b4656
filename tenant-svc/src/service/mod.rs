//! The gRPC handlers of tenant-svc, one module per service:
//! - `admin`: `TenantAdminService` (service tokens, scope `tenant:admin`): customers, numbers,
//!   platform defaults, issuing tenant tokens;
//! - `tenant`: `TenantService` (tenant tokens: the customer is always the token's): the
//!   customer's own record, agent configuration and history, outbound-call and webhook settings,
//!   and signing webhook deliveries with secrets that never leave this service (shown once, when
//!   created);
//! - `edge`: `EdgeService` (the gateway): number resolution and legacy token exchange;
//! - `erasure`: `DeleteCustomer`'s erasure of a customer in every service;
//! - `account`: `AccountService` (the gateway, for the tenant portal: invitations, sign-in,
//!   sessions, password resets, session exchange) and `AccountAdminService` (operators'
//!   invitations);
//! - `signup`: `SignupService` (the gateway, for the portal's self sign-up) and onboarding's
//!   mails (approved, welcome);
//!
//! Handlers turn requests into checked values (`validate`, `model`, `outbound`), run the
//! `store` functions in one transaction, and answer; they hold no SQL. What they share lives
//! here: [`TenantSvc`] with its two caches (the platform defaults, and the routing cache of
//! [`crate::routing`]) and the reads every group needs.

mod account;
mod admin;
mod audit_log;
mod call_handling;
mod edge;
mod erasure;
mod keys;
mod notice;
mod operator;
mod prompts;
mod signup;
mod team;
mod tenant;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mesh::auth::service_caller;
use mesh::domain::{AccountSid, CustomerId, PhoneNumber};
use tonic::{Request, Response, Status};

use crate::Deps;
use crate::customer::{Customer, CustomerStatus};
use crate::error::{Result, TenantError};
use crate::history::{Change, ConfigType};
use crate::model::Defaults;
use crate::routing::{Resolved, RoutingCache};
use crate::{store, wire};

/// Lifetime of the tenant token `ResolveNumber` issues for a call: the gateway uses it at once
/// (RegisterCall, or a status callback's UpdateCallStatus) and resolves again for the next one.
pub const CALL_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// Longest lifetime of a token issued by `IssueTenantToken`.
pub const MAX_ISSUED_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest lifetime of a token from `ExchangeLegacyToken`.
pub const MAX_EXCHANGED_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a replica may serve platform defaults from memory. The replica that changes them
/// drops its copy at once; the others when V11's notification reaches them (milliseconds), and
/// within this time when their listening connection is down.
pub const DEFAULTS_TTL: Duration = Duration::from_secs(2);

/// What every handler returns.
type RpcResult<T> = std::result::Result<Response<T>, Status>;

/// Implements `TenantAdminService`, `TenantService`, `EdgeService`, `AccountService` and
/// `AccountAdminService`.
#[derive(Clone)]
pub struct TenantSvc {
    deps: Deps,
    defaults: Arc<Mutex<DefaultsCache>>,
    /// `ResolveNumber` answered from memory while the change listener runs (see [`crate::routing`]).
    routing: Arc<RoutingCache>,
    /// The account hash key read from the database (when not configured), once per replica.
    account_key: Arc<tokio::sync::OnceCell<Arc<Vec<u8>>>>,
}

/// This replica's copy of the platform defaults.
#[derive(Default)]
struct DefaultsCache {
    /// Bumped whenever the defaults may have changed; a read that began before a bump is not
    /// kept (it may have seen the old values).
    generation: u64,
    /// The defaults and when they were read.
    value: Option<(Instant, Arc<Defaults>)>,
}

/// An operator's status change as the console makes it: recorded in the tenant's audit log
/// (`action`, in the change's transaction) and allowed only from the statuses in `from` (their
/// column text; any when empty). A reactivation is refused while an offboarding is scheduled.
pub(crate) struct StatusAudit<'a> {
    /// The audit log's action.
    pub action: &'a str,
    /// The statuses the change may start from.
    pub from: &'a [&'a str],
}

impl StatusAudit<'_> {
    async fn check(
        &self,
        tx: &mesh::db::Tx<'_>,
        id: CustomerId,
        before: &Customer,
        status: CustomerStatus,
    ) -> Result<()> {
        let was = before.status.as_str();
        if !self.from.is_empty() && !self.from.contains(&was) {
            return Err(TenantError::FailedPrecondition(format!(
                "the customer is {was}, not {}",
                self.from.join(" or ")
            )));
        }
        if status == CustomerStatus::Active && store::offboardings::get(tx, id).await?.is_some() {
            return Err(TenantError::FailedPrecondition(
                "the customer is being offboarded; cancel the offboarding first".into(),
            ));
        }
        Ok(())
    }
}

/// The customer an operator's request acts on, from a request field. The rpc span carries it
/// from here on (an operator's token names no tenant, so the auth layer could not record it), so
/// that every line logged about the request, errors included, names the tenant.
fn target_customer(field: &str, id: i64) -> Result<CustomerId> {
    let id = CustomerId::new(id).map_err(|e| TenantError::invalid(field, e))?;
    mesh::telemetry::record_customer(id);
    Ok(id)
}

/// A phone number from a request field.
fn phone_number(field: &str, number: &str) -> Result<PhoneNumber> {
    PhoneNumber::parse(number).map_err(|e| TenantError::invalid(field, e))
}

/// A Twilio AccountSid from a request field.
fn account_sid(field: &str, sid: &str) -> Result<AccountSid> {
    AccountSid::parse(sid).map_err(|e| TenantError::invalid(field, e))
}

/// Who made an operator's change, as history records it: `service:<issuer>`.
fn changed_by_service<T>(request: &Request<T>) -> std::result::Result<String, Status> {
    Ok(format!("service:{}", service_caller(request)?.issuer))
}

/// A unique violation as ALREADY_EXISTS with `message` (which names nobody); other errors as
/// they are.
fn taken(message: &'static str) -> impl FnOnce(TenantError) -> TenantError {
    move |e| {
        if e.is_unique_violation() {
            TenantError::AlreadyExists(message)
        } else {
            e
        }
    }
}

/// A token lifetime from a request: `default` when unset, else whole seconds from 1 to `max`.
fn ttl(
    field: &str,
    d: Option<&prost_types::Duration>,
    default: Duration,
    max: Duration,
) -> Result<Duration> {
    let Some(d) = d else {
        return Ok(default);
    };
    if d.seconds < 1 || d.nanos != 0 || d.seconds as u64 > max.as_secs() {
        return Err(TenantError::invalid(
            field,
            format!(
                "must be a whole number of seconds from 1 to {}",
                max.as_secs()
            ),
        ));
    }
    Ok(Duration::from_secs(d.seconds as u64))
}

impl TenantSvc {
    /// Handlers over the given dependencies.
    pub fn new(deps: Deps) -> Self {
        Self {
            deps,
            defaults: Arc::default(),
            routing: Arc::new(RoutingCache::default()),
            account_key: Arc::default(),
        }
    }

    /// The routing cache (its listener is started by [`crate::serve`]).
    pub fn routing(&self) -> &Arc<RoutingCache> {
        &self.routing
    }

    /// Drops this replica's cached platform defaults (they are read again on next use).
    pub fn forget_defaults(&self) {
        let mut cache = self.defaults.lock().unwrap_or_else(PoisonError::into_inner);
        cache.generation += 1;
        cache.value = None;
    }

    async fn defaults(&self) -> Result<Arc<Defaults>> {
        let generation = {
            let cache = self.defaults.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, d)) = &cache.value
                && at.elapsed() < DEFAULTS_TTL
            {
                return Ok(d.clone());
            }
            cache.generation
        };
        let d = Arc::new(
            self.deps
                .core
                .db
                .service_tx(async |tx| store::load_defaults(tx).await)
                .await?,
        );
        let mut cache = self.defaults.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.generation == generation {
            cache.value = Some((Instant::now(), d.clone()));
        }
        Ok(d)
    }

    /// The owner of `number` (for a webhook from `account`) and its core row: from the
    /// routing cache when it holds them, else in one transaction (the number's owner through the
    /// SECURITY DEFINER lookup, then that customer under its own tenant context), remembered for
    /// the next call. NOT_FOUND for a number nobody owns (never cached).
    async fn resolve(&self, number: &PhoneNumber, account: &AccountSid) -> Result<Resolved> {
        if let Some(hit) = self.routing.get(number.as_str(), account.as_str()) {
            metrics::counter!("tenant_resolve_cache_total", "result" => "hit").increment(1);
            return Ok(hit);
        }
        metrics::counter!("tenant_resolve_cache_total", "result" => "miss").increment(1);
        let ticket = self.routing.ticket();
        let (id, customer) = self
            .deps
            .core
            .db
            .resolve_then_tenant_tx(
                async |tx| store::resolve_number(tx, number, account).await,
                async |tx, id| store::require_customer_core(tx, id).await,
            )
            .await?
            .ok_or(TenantError::NotFound("phone number"))?;
        let resolved = Resolved {
            id,
            customer: Arc::new(customer),
        };
        self.routing
            .store(ticket, number.as_str(), account.as_str(), resolved.clone());
        Ok(resolved)
    }

    /// A tenant token of `id` for `subject` and when it expires (the identity holds tenant-svc's
    /// key, the only one that mints tenant tokens).
    fn mint(
        &self,
        id: CustomerId,
        subject: &str,
        audiences: &[&str],
        scopes: &[&str],
        ttl: Duration,
    ) -> Result<(String, prost_types::Timestamp)> {
        let token = self
            .deps
            .core
            .identity
            .minter()
            .mint_tenant(id, subject, audiences, scopes, ttl)?;
        Ok((token, wire::timestamp(chrono::Utc::now() + ttl)))
    }

    async fn customer(&self, id: CustomerId) -> Result<Customer> {
        self.deps
            .core
            .db
            .tenant_tx(id, async |tx| store::require_customer(tx, id).await)
            .await
    }

    /// The customer without its numbers (call path, profiles).
    async fn customer_core(&self, id: CustomerId) -> Result<Customer> {
        self.deps
            .core
            .db
            .tenant_tx(id, async |tx| store::require_customer_core(tx, id).await)
            .await
    }

    async fn change_status(
        &self,
        id: CustomerId,
        status: CustomerStatus,
        by: &str,
        audit: Option<StatusAudit<'_>>,
    ) -> Result<Customer> {
        let mut was = None;
        let customer = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let before = store::require_customer(tx, id).await?;
                was = Some(before.status);
                if status == CustomerStatus::Active && store::erasures::pending(tx, id).await? {
                    return Err(TenantError::FailedPrecondition(
                        "the customer is being erased; DeleteCustomer resumes the erasure".into(),
                    ));
                }
                if let Some(a) = &audit {
                    a.check(tx, id, &before, status).await?;
                    store::append_audit(
                        tx,
                        id,
                        by,
                        a.action,
                        &serde_json::json!({
                            "from": before.status.as_str(),
                            "to": status.as_str(),
                        }),
                    )
                    .await?;
                }
                if store::set_status(tx, id, status).await? {
                    let change = Change {
                        config_type: ConfigType::Status,
                        key: "status".into(),
                        old: Some(before.status.as_str().into()),
                        new: Some(status.as_str().into()),
                    };
                    store::record_changes(tx, id, &[change], by).await?;
                }
                // Every token of a suspended tenant stops working on every service (within
                // `mesh::auth::revocation::REFRESH_INTERVAL`); none is issued while suspended.
                if status == CustomerStatus::Suspended {
                    store::revoke_tokens(tx, id).await?;
                }
                store::require_customer(tx, id).await
            })
            .await;
        // This replica stops routing to the old state at once; the others when V11's
        // notification reaches them.
        self.routing.invalidate_customer(id);
        let customer = customer?;
        // Approval: audited (by the operator's own action when it came from the console), and
        // the owners told once to choose their number.
        if was == Some(CustomerStatus::Pending) && customer.status == CustomerStatus::Active {
            self.approved(id, by, audit.is_none()).await?;
        }
        Ok(customer)
    }
}
