//! The gRPC handlers of tenant-svc: `TenantAdminService` (service tokens, scope `tenant:admin`),
//! `TenantService` (tenant tokens: the customer is always the token's) and `EdgeService` (the
//! gateway: number resolution and legacy token exchange). `TenantService` also keeps the
//! outbound-call and webhook settings and signs webhook deliveries with secrets that never leave
//! this service (shown once, when created).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::api::tenant::*;
use mesh::auth::{service_caller, tenant_caller};
use mesh::domain::{AccountSid, CallSid, CustomerId, PhoneNumber};
use mesh::identity::{names, scope};
use secrecy::ExposeSecret as _;
use std::sync::{Mutex, PoisonError};
use tonic::{Request, Response, Status};

use crate::Deps;
use crate::error::{Result, TenantError};
use crate::model::{Change, Defaults, Overrides, diff};
use crate::outbound::{self, Patch};
use crate::routing::{Resolved, RoutingCache};
use crate::store::{self, Customer, NewCustomer};
use crate::{validate, webhook};

/// Lifetime of the tenant token `ResolveNumber` issues for a call (the issue caps it at 1 h).
pub const CALL_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Longest lifetime of a token issued by `IssueTenantToken`.
pub const MAX_ISSUED_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest lifetime of a token from `ExchangeLegacyToken`.
pub const MAX_EXCHANGED_TTL: Duration = Duration::from_secs(15 * 60);
/// Do-not-call lists longer than this are validated on the blocking pool: parsing a number with
/// libphonenumber's metadata takes about 20 µs in a release build, so a full list of 10,000 would
/// hold a runtime thread for 0.2 s.
const BLOCKING_VALIDATION_ABOVE: usize = 500;
/// How long a replica may serve platform defaults from memory. The replica that changes them
/// drops its copy at once; the others when V11's notification reaches them (milliseconds), and
/// within this time when their listening connection is down.
pub const DEFAULTS_TTL: Duration = Duration::from_secs(2);

/// Implements `TenantAdminService`, `TenantService` and `EdgeService`.
#[derive(Clone)]
pub struct TenantSvc {
    deps: Deps,
    defaults: Arc<Mutex<DefaultsCache>>,
    /// `ResolveNumber` answered from memory while the change listener runs (see [`crate::routing`]).
    routing: Arc<RoutingCache>,
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

fn customer_id(field: &str, id: i64) -> Result<CustomerId> {
    CustomerId::new(id).map_err(|e| TenantError::invalid(field, e))
}

fn status_name(status: i32) -> Result<&'static str> {
    match CustomerStatus::try_from(status) {
        Ok(CustomerStatus::Active) => Ok("active"),
        Ok(CustomerStatus::Suspended) => Ok("suspended"),
        _ => Err(TenantError::invalid(
            "status",
            "must be ACTIVE or SUSPENDED",
        )),
    }
}

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

    /// The owner of `number` (for a webhook from `account_sid`) and its core row: from the
    /// routing cache when it holds them, else in one transaction (the number's owner through the
    /// SECURITY DEFINER lookup, then that customer under its own tenant context), remembered for
    /// the next call. NOT_FOUND for a number nobody owns (never cached).
    async fn resolve(&self, number: &str, account_sid: &str) -> Result<Resolved> {
        if let Some(hit) = self.routing.get(number, account_sid) {
            metrics::counter!("tenant_resolve_cache_total", "result" => "hit").increment(1);
            return Ok(hit);
        }
        metrics::counter!("tenant_resolve_cache_total", "result" => "miss").increment(1);
        let ticket = self.routing.ticket();
        let (id, customer) = self
            .deps
            .db
            .resolve_then_tenant_tx(
                async |tx| store::resolve_number(tx, number, account_sid).await,
                async |tx, id| store::require_customer_core(tx, id).await,
            )
            .await?
            .ok_or(TenantError::NotFound("phone number"))?;
        let resolved = Resolved {
            id,
            customer: Arc::new(customer),
        };
        self.routing
            .store(ticket, number, account_sid, resolved.clone());
        Ok(resolved)
    }

    async fn customer(&self, id: CustomerId) -> Result<Customer> {
        self.deps
            .db
            .tenant_tx(id, async |tx| store::require_customer(tx, id).await)
            .await
    }

    /// The customer without its numbers (call path, profiles).
    async fn customer_core(&self, id: CustomerId) -> Result<Customer> {
        self.deps
            .db
            .tenant_tx(id, async |tx| store::require_customer_core(tx, id).await)
            .await
    }

    async fn change_status(
        &self,
        id: CustomerId,
        status: &'static str,
        by: &str,
    ) -> Result<Customer> {
        let customer = self
            .deps
            .db
            .tenant_tx(id, async |tx| {
                let before = store::require_customer(tx, id).await?;
                if store::set_status(tx, id, status).await? {
                    let change = Change {
                        config_type: "status",
                        key: "status".into(),
                        old: Some(before.status.clone().into()),
                        new: Some(status.into()),
                    };
                    store::record_changes(tx, id, &[change], by).await?;
                }
                store::require_customer(tx, id).await
            })
            .await;
        // This replica stops routing to the old state at once; the others when V11's
        // notification reaches them.
        self.routing.invalidate_customer(id);
        customer
    }
}

#[tonic::async_trait]
impl tenant_admin_service_server::TenantAdminService for TenantSvc {
    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn create_customer(
        &self,
        request: Request<CreateCustomerRequest>,
    ) -> std::result::Result<Response<CreateCustomerResponse>, Status> {
        let by = format!("service:{}", service_caller(&request)?.issuer);
        let r = request.into_inner();
        let email = validate::email("email", &r.email)?;
        let business_name = validate::business_name("business_name", &r.business_name)?;
        let contact_name = validate::contact_name("contact_name", &r.contact_name)?;
        let contact_phone = validate::optional_phone("contact_phone", &r.contact_phone)?;
        let package_tier = validate::package_tier("package_tier", &r.package_tier)?;
        let overrides =
            Overrides::default().apply(&r.agent_config.unwrap_or_default(), &[], "agent_config")?;
        let db = &self.deps.db;
        let id = db
            .service_tx(async |tx| store::next_customer_id(tx).await)
            .await?;
        tracing::Span::current().record("customer_id", id.get());
        let new = NewCustomer {
            email: &email,
            business_name: &business_name,
            contact_name: &contact_name,
            contact_phone: &contact_phone,
            package_tier: &package_tier,
            overrides: &overrides,
        };
        let customer = db
            .tenant_tx(id, async |tx| {
                store::insert_customer(tx, id, &new).await?;
                store::record_changes(tx, id, &diff(&Overrides::default(), &overrides), &by)
                    .await?;
                store::require_customer(tx, id).await
            })
            .await
            .map_err(|e| {
                if e.is_unique_violation() {
                    TenantError::AlreadyExists("a customer with this email already exists")
                } else {
                    e
                }
            })?;
        tracing::info!(customer_id = id.get(), "customer created");
        Ok(Response::new(CreateCustomerResponse {
            customer: Some(customer.to_pb()),
        }))
    }

    async fn get_customer(
        &self,
        request: Request<GetCustomerRequest>,
    ) -> std::result::Result<Response<GetCustomerResponse>, Status> {
        let id = customer_id("customer_id", request.get_ref().customer_id)?;
        let customer = self.customer(id).await?;
        Ok(Response::new(GetCustomerResponse {
            customer: Some(customer.to_pb()),
        }))
    }

    async fn list_customers(
        &self,
        request: Request<ListCustomersRequest>,
    ) -> std::result::Result<Response<ListCustomersResponse>, Status> {
        let r = request.into_inner();
        let size = store::page_size(r.page_size)?;
        let after = store::parse_page_token(&r.page_token)?.unwrap_or(0);
        let mut ids = self
            .deps
            .db
            .service_tx(async |tx| store::list_customer_ids(tx, after, size as i32 + 1).await)
            .await?;
        let more = ids.len() as i64 > size;
        ids.truncate(size as usize);
        // Each customer is read under its own tenant context, like any other read.
        let reads = ids.iter().map(|id| async move {
            let id = customer_id("customer_id", *id)?;
            self.deps
                .db
                .tenant_tx(id, async |tx| store::get_customer(tx, id).await)
                .await
        });
        let customers: Vec<_> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .map(|c| c.to_pb())
            .collect();
        let next_page_token = match (more, ids.last()) {
            (true, Some(last)) => store::page_token(*last),
            _ => String::new(),
        };
        Ok(Response::new(ListCustomersResponse {
            customers,
            next_page_token,
        }))
    }

    async fn set_customer_status(
        &self,
        request: Request<SetCustomerStatusRequest>,
    ) -> std::result::Result<Response<SetCustomerStatusResponse>, Status> {
        let by = format!("service:{}", service_caller(&request)?.issuer);
        let r = request.into_inner();
        let id = customer_id("customer_id", r.customer_id)?;
        let status = status_name(r.status)?;
        let customer = self.change_status(id, status, &by).await?;
        tracing::info!(customer_id = id.get(), status, "customer status set");
        Ok(Response::new(SetCustomerStatusResponse {
            customer: Some(customer.to_pb()),
        }))
    }

    async fn assign_phone_number(
        &self,
        request: Request<AssignPhoneNumberRequest>,
    ) -> std::result::Result<Response<AssignPhoneNumberResponse>, Status> {
        let by = format!("service:{}", service_caller(&request)?.issuer);
        let r = request.into_inner();
        let id = customer_id("customer_id", r.customer_id)?;
        let number =
            PhoneNumber::parse(&r.number).map_err(|e| TenantError::invalid("number", e))?;
        let sid = if r.twilio_account_sid.is_empty() {
            None
        } else {
            Some(
                AccountSid::parse(&r.twilio_account_sid)
                    .map_err(|e| TenantError::invalid("twilio_account_sid", e))?
                    .as_str()
                    .to_owned(),
            )
        };
        let assigned = self
            .deps
            .db
            .tenant_tx(id, async |tx| {
                store::require_customer(tx, id).await?;
                let row = tx
                    .query_one(
                        "INSERT INTO tenant.phone_numbers (customer_id, number, twilio_account_sid) \
                         VALUES ($1, $2, $3) RETURNING assigned_at",
                        &[&id.get(), &number.as_str(), &sid],
                    )
                    .await
                    .map_err(mesh::db::DbError::from)?;
                let change = Change {
                    config_type: "phone_number",
                    key: "phone_numbers".into(),
                    old: None,
                    new: Some(serde_json::json!({ "assigned": number.as_str() })),
                };
                store::record_changes(tx, id, &[change], &by).await?;
                Ok::<_, TenantError>(row.get::<_, chrono::DateTime<chrono::Utc>>(0))
            })
            .await
            .map_err(|e| {
                // Whether this customer or another owns it, the answer is the same and names
                // nobody.
                if e.is_unique_violation() {
                    TenantError::AlreadyExists("this number is already assigned")
                } else {
                    e
                }
            })?;
        tracing::info!(customer_id = id.get(), "phone number assigned");
        Ok(Response::new(AssignPhoneNumberResponse {
            phone_number: Some(mesh::api::tenant::PhoneNumber {
                number: number.as_str().to_owned(),
                twilio_account_sid: sid,
                assigned_at: Some(store::timestamp(assigned)),
            }),
        }))
    }

    async fn release_phone_number(
        &self,
        request: Request<ReleasePhoneNumberRequest>,
    ) -> std::result::Result<Response<ReleasePhoneNumberResponse>, Status> {
        let by = format!("service:{}", service_caller(&request)?.issuer);
        let r = request.into_inner();
        let id = customer_id("customer_id", r.customer_id)?;
        let number =
            PhoneNumber::parse(&r.number).map_err(|e| TenantError::invalid("number", e))?;
        self.deps
            .db
            .tenant_tx(id, async |tx| {
                let n = tx
                    .execute(
                        "DELETE FROM tenant.phone_numbers WHERE customer_id = $1 AND number = $2",
                        &[&id.get(), &number.as_str()],
                    )
                    .await
                    .map_err(mesh::db::DbError::from)?;
                if n == 0 {
                    return Err(TenantError::NotFound("phone number"));
                }
                let change = Change {
                    config_type: "phone_number",
                    key: "phone_numbers".into(),
                    old: Some(serde_json::json!({ "assigned": number.as_str() })),
                    new: None,
                };
                store::record_changes(tx, id, &[change], &by).await
            })
            .await?;
        self.routing.invalidate_customer(id);
        tracing::info!(customer_id = id.get(), "phone number released");
        Ok(Response::new(ReleasePhoneNumberResponse {}))
    }

    async fn delete_customer(
        &self,
        request: Request<DeleteCustomerRequest>,
    ) -> std::result::Result<Response<DeleteCustomerResponse>, Status> {
        let id = customer_id("customer_id", request.get_ref().customer_id)?;
        self.deps
            .db
            .tenant_tx(id, async |tx| {
                let n = tx
                    .execute(
                        "DELETE FROM tenant.customers WHERE customer_id = $1",
                        &[&id.get()],
                    )
                    .await
                    .map_err(mesh::db::DbError::from)?;
                if n == 0 {
                    Err(TenantError::NotFound("customer"))
                } else {
                    Ok(())
                }
            })
            .await?;
        self.routing.invalidate_customer(id);
        tracing::info!(customer_id = id.get(), "customer deleted (offboarded)");
        Ok(Response::new(DeleteCustomerResponse {}))
    }

    async fn get_platform_defaults(
        &self,
        _request: Request<GetPlatformDefaultsRequest>,
    ) -> std::result::Result<Response<GetPlatformDefaultsResponse>, Status> {
        let d = self
            .deps
            .db
            .service_tx(async |tx| store::load_defaults(tx).await)
            .await?;
        Ok(Response::new(GetPlatformDefaultsResponse {
            defaults: Some(d.to_pb()),
        }))
    }

    async fn update_platform_defaults(
        &self,
        request: Request<UpdatePlatformDefaultsRequest>,
    ) -> std::result::Result<Response<UpdatePlatformDefaultsResponse>, Status> {
        let by = service_caller(&request)?.issuer.clone();
        let r = request.into_inner();
        let update = r.defaults.unwrap_or_default();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let saved = self
            .deps
            .db
            .service_tx(async |tx| {
                let current = store::load_defaults(tx).await?;
                let mut next = current.apply(&update, &mask)?;
                next.updated_at = store::save_defaults(tx, &next).await?;
                Ok::<_, TenantError>(next)
            })
            .await?;
        self.forget_defaults();
        self.routing.invalidate_all();
        tracing::info!(by = %by, paths = ?mask, "platform defaults updated");
        Ok(Response::new(UpdatePlatformDefaultsResponse {
            defaults: Some(saved.to_pb()),
        }))
    }

    async fn issue_tenant_token(
        &self,
        request: Request<IssueTenantTokenRequest>,
    ) -> std::result::Result<Response<IssueTenantTokenResponse>, Status> {
        let issuer = service_caller(&request)?.issuer.clone();
        let r = request.into_inner();
        let id = customer_id("customer_id", r.customer_id)?;
        if r.scopes.is_empty() {
            return Err(TenantError::invalid("scopes", "name at least one scope").into());
        }
        for s in &r.scopes {
            if !scope::TENANT_SCOPES.contains(&s.as_str()) {
                return Err(TenantError::invalid(
                    "scopes",
                    format!(
                        "`{}` is not a tenant scope; choose from {}",
                        s.escape_debug(),
                        scope::TENANT_SCOPES.join(", ")
                    ),
                )
                .into());
            }
        }
        let all = [names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC];
        for a in &r.audiences {
            if !all.contains(&a.as_str()) {
                return Err(TenantError::invalid(
                    "audiences",
                    "each audience must be tenant-svc, memory-svc or media-svc",
                )
                .into());
            }
        }
        let audiences: Vec<&str> = if r.audiences.is_empty() {
            all.to_vec()
        } else {
            r.audiences.iter().map(String::as_str).collect()
        };
        let ttl = ttl(
            "ttl",
            r.ttl.as_ref(),
            Duration::from_secs(3600),
            MAX_ISSUED_TTL,
        )?;
        let subject = if r.subject.is_empty() {
            format!("issued-by:{issuer}")
        } else {
            r.subject.clone()
        };
        if subject.len() > 128 || !subject.chars().all(|c| c.is_ascii_graphic()) {
            return Err(TenantError::invalid(
                "subject",
                "must be 1 to 128 printable ASCII characters without spaces",
            )
            .into());
        }
        let customer = self.customer(id).await?;
        if customer.status != "active" {
            return Err(
                TenantError::FailedPrecondition("this customer is suspended".into()).into(),
            );
        }
        let scopes: Vec<&str> = r.scopes.iter().map(String::as_str).collect();
        let token = self
            .deps
            .identity
            .minter()
            .mint_tenant(id, &subject, &audiences, &scopes, ttl)
            .map_err(TenantError::from)?;
        tracing::info!(customer_id = id.get(), by = %issuer, ttl_s = ttl.as_secs(), "tenant token issued");
        Ok(Response::new(IssueTenantTokenResponse {
            token,
            expire_time: Some(store::timestamp(chrono::Utc::now() + ttl)),
        }))
    }
}

#[tonic::async_trait]
impl tenant_service_server::TenantService for TenantSvc {
    async fn get_my_customer(
        &self,
        request: Request<GetMyCustomerRequest>,
    ) -> std::result::Result<Response<GetMyCustomerResponse>, Status> {
        let id = tenant_caller(&request)?.customer_id;
        let customer = self.customer(id).await?;
        Ok(Response::new(GetMyCustomerResponse {
            customer: Some(customer.to_pb()),
        }))
    }

    async fn update_agent_config(
        &self,
        request: Request<UpdateAgentConfigRequest>,
    ) -> std::result::Result<Response<UpdateAgentConfigResponse>, Status> {
        let caller = tenant_caller(&request)?;
        let (id, by) = (caller.customer_id, caller.subject.clone());
        let r = request.into_inner();
        let config = r.config.unwrap_or_default();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let (customer, changes) = self
            .deps
            .db
            .tenant_tx(id, async |tx| {
                let current = store::require_customer(tx, id).await?;
                let next = current.overrides.apply(&config, &mask, "config")?;
                let changes = diff(&current.overrides, &next);
                if changes.is_empty() {
                    return Ok((current, 0));
                }
                store::update_overrides(tx, id, &next).await?;
                store::record_changes(tx, id, &changes, &by).await?;
                Ok::<_, TenantError>((store::require_customer(tx, id).await?, changes.len()))
            })
            .await?;
        if changes > 0 {
            self.routing.invalidate_customer(id);
        }
        tracing::info!(
            customer_id = id.get(),
            changes,
            "agent configuration updated"
        );
        Ok(Response::new(UpdateAgentConfigResponse {
            customer: Some(customer.to_pb()),
            changes_recorded: changes as i32,
        }))
    }

    async fn list_config_history(
        &self,
        request: Request<ListConfigHistoryRequest>,
    ) -> std::result::Result<Response<ListConfigHistoryResponse>, Status> {
        let id = tenant_caller(&request)?.customer_id;
        let r = request.into_inner();
        let size = store::page_size(r.page_size)?;
        let before = store::parse_page_token(&r.page_token)?.unwrap_or(i64::MAX);
        let mut changes = self
            .deps
            .db
            .tenant_tx(id, async |tx| {
                store::list_history(tx, id, before, size + 1).await
            })
            .await?;
        let more = changes.len() as i64 > size;
        changes.truncate(size as usize);
        let next_page_token = match (more, changes.last()) {
            (true, Some(last)) => store::page_token(last.id),
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
    ) -> std::result::Result<Response<GetEffectiveProfileResponse>, Status> {
        let id = tenant_caller(&request)?.customer_id;
        let (customer, defaults) = tokio::try_join!(self.customer_core(id), self.defaults())?;
        Ok(Response::new(GetEffectiveProfileResponse {
            profile: Some(
                customer
                    .overrides
                    .effective(&defaults)
                    .to_profile(id.get(), &customer.business_name),
            ),
        }))
    }

    async fn get_outbound_settings(
        &self,
        request: Request<GetOutboundSettingsRequest>,
    ) -> std::result::Result<Response<GetOutboundSettingsResponse>, Status> {
        let id = tenant_caller(&request)?.customer_id;
        let (settings, has_webhook_secret) = self
            .deps
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
    ) -> std::result::Result<Response<UpdateOutboundSettingsResponse>, Status> {
        let caller = tenant_caller(&request)?;
        let (id, by) = (caller.customer_id, caller.subject.clone());
        let r = request.into_inner();
        let update = r.settings.unwrap_or_default();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let allow_insecure = self.deps.webhook_allow_insecure;
        // Everything is validated before the database is touched: a refused update stores nothing.
        let patch = if update.do_not_call.len() > BLOCKING_VALIDATION_ABOVE {
            tokio::task::spawn_blocking(move || Patch::parse(&update, &mask, allow_insecure))
                .await
                .map_err(|e| {
                    tracing::error!(customer_id = id.get(), error = %e, "validation task failed");
                    Status::internal("internal error")
                })??
        } else {
            Patch::parse(&update, &mask, allow_insecure)?
        };
        let (settings, changed) = self
            .deps
            .db
            .tenant_tx(id, async |tx| {
                store::lock_customer(tx, id).await?;
                let current = store::load_outbound(tx, id).await?;
                let next = patch.apply(&current);
                let changes = outbound::diff(&current, &next);
                if !changes.is_empty() {
                    store::save_outbound(tx, id, &next).await?;
                    store::record_changes(tx, id, &changes, &by).await?;
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

    async fn rotate_webhook_secret(
        &self,
        request: Request<RotateWebhookSecretRequest>,
    ) -> std::result::Result<Response<RotateWebhookSecretResponse>, Status> {
        let caller = tenant_caller(&request)?;
        let (id, by) = (caller.customer_id, caller.subject.clone());
        let overlap = webhook::overlap(request.get_ref().overlap.as_ref())?;
        let secret = webhook::generate();
        let previous_expires = self
            .deps
            .db
            .tenant_tx(id, async |tx| {
                store::lock_customer(tx, id).await?;
                let previous_expires =
                    store::rotate_webhook_secret(tx, id, &secret, overlap).await?;
                // History says that it happened, never what the secret is.
                let change = Change {
                    config_type: outbound::CONFIG_TYPE,
                    key: webhook::HISTORY_KEY.into(),
                    old: previous_expires.map(|_| webhook::ROTATED.into()),
                    new: Some(webhook::ROTATED.into()),
                };
                store::record_changes(tx, id, &[change], &by).await?;
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
            previous_expire_time: previous_expires.map(store::timestamp),
        }))
    }

    async fn sign_webhook_event(
        &self,
        request: Request<SignWebhookEventRequest>,
    ) -> std::result::Result<Response<SignWebhookEventResponse>, Status> {
        let id = tenant_caller(&request)?.customer_id;
        let r = request.into_inner();
        if r.timestamp <= 0 {
            return Err(TenantError::invalid("timestamp", "must be Unix time in seconds").into());
        }
        if r.body.len() > webhook::MAX_BODY {
            return Err(TenantError::invalid(
                "body",
                format!(
                    "must be at most {} bytes, got {}",
                    webhook::MAX_BODY,
                    r.body.len()
                ),
            )
            .into());
        }
        let keys = self
            .deps
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

#[tonic::async_trait]
impl edge_service_server::EdgeService for TenantSvc {
    async fn resolve_number(
        &self,
        request: Request<ResolveNumberRequest>,
    ) -> std::result::Result<Response<ResolveNumberResponse>, Status> {
        let r = request.into_inner();
        let number = PhoneNumber::parse(&r.called_number)
            .map_err(|e| TenantError::invalid("called_number", e))?;
        let account = AccountSid::parse(&r.account_sid)
            .map_err(|e| TenantError::invalid("account_sid", e))?;
        let call = CallSid::parse(&r.call_sid).map_err(|e| TenantError::invalid("call_sid", e))?;
        let (Resolved { id, customer }, defaults) = tokio::try_join!(
            self.resolve(number.as_str(), account.as_str()),
            self.defaults()
        )?;
        tracing::Span::current().record("customer_id", id.get());
        if customer.status != "active" {
            tracing::info!(customer_id = id.get(), call_sid = %call, "call to a suspended customer refused");
            return Err(
                TenantError::FailedPrecondition("this customer is suspended".into()).into(),
            );
        }
        let token = self
            .deps
            .identity
            .minter()
            .mint_tenant(
                id,
                call.as_str(),
                &[names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC],
                scope::CALL_SCOPES,
                CALL_TOKEN_TTL,
            )
            .map_err(TenantError::from)?;
        tracing::debug!(customer_id = id.get(), call_sid = %call, "number resolved");
        Ok(Response::new(ResolveNumberResponse {
            customer_id: id.get(),
            profile: Some(
                customer
                    .overrides
                    .effective(&defaults)
                    .to_profile(id.get(), &customer.business_name),
            ),
            tenant_token: token,
            token_expire_time: Some(store::timestamp(chrono::Utc::now() + CALL_TOKEN_TTL)),
        }))
    }

    async fn exchange_legacy_token(
        &self,
        request: Request<ExchangeLegacyTokenRequest>,
    ) -> std::result::Result<Response<ExchangeLegacyTokenResponse>, Status> {
        let Some(legacy) = &self.deps.legacy else {
            return Err(TenantError::FailedPrecondition(
                "legacy tokens are not enabled (JWT_SECRET_KEY is unset)".into(),
            )
            .into());
        };
        let claims = legacy
            .verify(&request.get_ref().legacy_token)
            .map_err(|_| TenantError::Unauthenticated("invalid or expired legacy token"))?;
        let id = claims.customer_id;
        let customer = self.customer(id).await.map_err(|e| match e {
            TenantError::NotFound(_) => {
                TenantError::Unauthenticated("invalid or expired legacy token")
            }
            other => other,
        })?;
        if customer.status != "active" {
            return Err(
                TenantError::FailedPrecondition("this customer is suspended".into()).into(),
            );
        }
        let remaining = claims.expires_at - chrono::Utc::now().timestamp();
        let ttl =
            Duration::from_secs(remaining.clamp(1, MAX_EXCHANGED_TTL.as_secs() as i64) as u64);
        let token = self
            .deps
            .identity
            .minter()
            .mint_tenant(
                id,
                "legacy-rest",
                &[names::MEMORY_SVC],
                &[scope::MEMORY_READ, scope::MEMORY_WRITE],
                ttl,
            )
            .map_err(TenantError::from)?;
        Ok(Response::new(ExchangeLegacyTokenResponse {
            customer_id: id.get(),
            tenant_token: token,
            token_expire_time: Some(store::timestamp(chrono::Utc::now() + ttl)),
        }))
    }
}
