//! `TenantAdminService`: what an operator (a service token with scope `tenant:admin`) does to
//! customers, their numbers, the platform defaults, and the tenant tokens it issues.

use std::time::Duration;

use mesh::api::tenant::*;
use mesh::auth::service_caller;
use mesh::domain::CustomerId;
use mesh::identity::{names, scope};
use tonic::{Request, Response};

use super::{
    MAX_ISSUED_TTL, RpcResult, TenantSvc, account_sid, changed_by_service, phone_number, taken,
    target_customer, ttl,
};
use crate::customer::{CustomerStatus, PENDING_APPROVAL};
use crate::error::{Result, TenantError};
use crate::history::{Change, ConfigType};
use crate::model::{Overrides, diff};
use crate::page::{page_size, page_token, parse_page_token};
use crate::store::append_audit;
use crate::store::audit::actions;
use crate::store::{self, NewCustomer};
use crate::{validate, wire};
use serde_json::json;

/// What `IssueTenantToken` mints, once every field of the request passed.
struct TokenGrant<'a> {
    id: CustomerId,
    subject: String,
    audiences: Vec<&'a str>,
    scopes: Vec<&'a str>,
    ttl: Duration,
}

impl<'a> TokenGrant<'a> {
    /// Checks an `IssueTenantToken` request (scopes are tenant scopes, audiences are services
    /// that take tenant tokens, the lifetime is bounded, the subject printable).
    fn parse(r: &'a IssueTenantTokenRequest, issuer: &str) -> Result<Self> {
        let id = target_customer("customer_id", r.customer_id)?;
        if r.scopes.is_empty() {
            return Err(TenantError::invalid("scopes", "name at least one scope"));
        }
        if let Some(s) = r
            .scopes
            .iter()
            .find(|s| !scope::TENANT_SCOPES.contains(&s.as_str()))
        {
            return Err(TenantError::invalid(
                "scopes",
                format!(
                    "`{}` is not a tenant scope; choose from {}",
                    s.escape_debug(),
                    scope::TENANT_SCOPES.join(", ")
                ),
            ));
        }
        let all = [names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC];
        if r.audiences.iter().any(|a| !all.contains(&a.as_str())) {
            return Err(TenantError::invalid(
                "audiences",
                "each audience must be tenant-svc, memory-svc or media-svc",
            ));
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
            ));
        }
        let scopes = r.scopes.iter().map(String::as_str).collect();
        let grant = Self {
            id,
            subject,
            audiences,
            scopes,
            ttl,
        };
        grant.within_issuer_limits(issuer)?;
        Ok(grant)
    }

    /// The operator may ask for any tenant token; media-svc only for the tokens its own work
    /// needs (`scope::MEDIA_SVC_ISSUABLE`), so its key cannot mint itself `media:outbound` or a
    /// token for the edge's methods. Any other issuer never gets here (the policy names these
    /// two), and is refused again should the policy change.
    fn within_issuer_limits(&self, issuer: &str) -> Result<()> {
        match issuer {
            names::OPERATOR => Ok(()),
            names::MEDIA_SVC => self.fits(issuer, scope::MEDIA_SVC_ISSUABLE),
            other => Err(TenantError::PermissionDenied(format!(
                "{other} may not issue tenant tokens"
            ))),
        }
    }

    /// Whether this grant fits one of `allowed` (scopes, then audiences, then lifetime); the
    /// refusal names the first of them that does not.
    fn fits(&self, issuer: &str, allowed: &[scope::IssuableToken]) -> Result<()> {
        let scopes = outside(&self.scopes, |s| {
            allowed.iter().any(|t| t.scopes.contains(&s))
        });
        if !scopes.is_empty() {
            return Err(refused(issuer, "scopes", &scopes, ""));
        }
        let fitting: Vec<&scope::IssuableToken> = (allowed.iter())
            .filter(|t| self.scopes.iter().all(|s| t.scopes.contains(s)))
            .collect();
        if fitting.is_empty() {
            return Err(refused(issuer, "scopes", &self.scopes, " in one token"));
        }
        let audiences = outside(&self.audiences, |a| {
            fitting.iter().any(|t| t.audiences.contains(&a))
        });
        if !audiences.is_empty() {
            return Err(refused(issuer, "audiences", &audiences, ""));
        }
        let max_ttl = (fitting.iter())
            .filter(|t| self.audiences.iter().all(|a| t.audiences.contains(a)))
            .map(|t| t.max_ttl)
            .max()
            .unwrap_or_default();
        if self.ttl > max_ttl {
            return Err(TenantError::PermissionDenied(format!(
                "ttl: {issuer} may ask for at most {} s for this token",
                max_ttl.as_secs()
            )));
        }
        Ok(())
    }
}

/// The values of `wanted` that `allowed` refuses.
fn outside<'v>(wanted: &[&'v str], allowed: impl Fn(&str) -> bool) -> Vec<&'v str> {
    wanted.iter().copied().filter(|w| !allowed(w)).collect()
}

/// PERMISSION_DENIED naming the field and the values `issuer` may not ask for.
fn refused(issuer: &str, field: &str, values: &[&str], how: &str) -> TenantError {
    let values: Vec<String> = values
        .iter()
        .map(|v| v.escape_debug().to_string())
        .collect();
    TenantError::PermissionDenied(format!(
        "{field}: {issuer} may not ask for {}{how}",
        values.join(", ")
    ))
}

/// The history entry of a number assigned (`assigned`) or released.
fn number_change(number: &str, assigned: bool) -> Change {
    let value = Some(serde_json::json!({ "assigned": number }));
    Change {
        config_type: ConfigType::PhoneNumber,
        key: "phone_numbers".into(),
        old: if assigned { None } else { value.clone() },
        new: if assigned { value } else { None },
    }
}

#[tonic::async_trait]
impl tenant_admin_service_server::TenantAdminService for TenantSvc {
    async fn create_customer(
        &self,
        request: Request<CreateCustomerRequest>,
    ) -> RpcResult<CreateCustomerResponse> {
        let by = changed_by_service(&request)?;
        let r = request.into_inner();
        let email = validate::email("email", &r.email)?;
        let business_name = validate::business_name("business_name", &r.business_name)?;
        let contact_name = validate::contact_name("contact_name", &r.contact_name)?;
        let contact_phone = validate::optional_phone("contact_phone", &r.contact_phone)?;
        let package_tier = validate::package_tier("package_tier", &r.package_tier)?;
        let overrides =
            Overrides::default().apply(&r.agent_config.unwrap_or_default(), &[], "agent_config")?;
        let db = &self.deps.core.db;
        let id = db
            .service_tx(async |tx| store::next_customer_id(tx).await)
            .await?;
        // An operator's token names no tenant: the rpc span learns the new one here.
        mesh::telemetry::record_customer(id);
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
            .map_err(taken("a customer with this email already exists"))?;
        tracing::info!(customer_id = id.get(), "customer created");
        Ok(Response::new(CreateCustomerResponse {
            customer: Some(customer.to_pb()),
        }))
    }

    async fn get_customer(
        &self,
        request: Request<GetCustomerRequest>,
    ) -> RpcResult<GetCustomerResponse> {
        let id = target_customer("customer_id", request.get_ref().customer_id)?;
        let customer = self.customer(id).await?;
        Ok(Response::new(GetCustomerResponse {
            customer: Some(customer.to_pb()),
        }))
    }

    async fn list_customers(
        &self,
        request: Request<ListCustomersRequest>,
    ) -> RpcResult<ListCustomersResponse> {
        let r = request.into_inner();
        let size = page_size(r.page_size)?;
        let after = parse_page_token(&r.page_token)?.unwrap_or(0);
        let mut ids = self
            .deps
            .core
            .db
            .service_tx(async |tx| store::list_customer_ids(tx, after, size as i32 + 1).await)
            .await?;
        let more = ids.len() as i64 > size;
        ids.truncate(size as usize);
        // Each customer is read under its own tenant context, like any other read.
        let reads = ids.iter().map(|&id| {
            self.deps
                .core
                .db
                .tenant_tx(id, async move |tx| store::get_customer(tx, id).await)
        });
        let customers: Vec<_> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .map(|c| c.to_pb())
            .collect();
        let next_page_token = match (more, ids.last()) {
            (true, Some(last)) => page_token(last.get()),
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
    ) -> RpcResult<SetCustomerStatusResponse> {
        let by = changed_by_service(&request)?;
        let r = request.into_inner();
        let id = target_customer("customer_id", r.customer_id)?;
        let status = CustomerStatus::from_pb("status", r.status)?;
        let customer = self.change_status(id, status, &by, None).await?;
        tracing::info!(
            customer_id = id.get(),
            status = status.as_str(),
            "customer status set"
        );
        Ok(Response::new(SetCustomerStatusResponse {
            customer: Some(customer.to_pb()),
        }))
    }

    async fn assign_phone_number(
        &self,
        request: Request<AssignPhoneNumberRequest>,
    ) -> RpcResult<AssignPhoneNumberResponse> {
        let by = changed_by_service(&request)?;
        let r = request.into_inner();
        let id = target_customer("customer_id", r.customer_id)?;
        let number = phone_number("number", &r.number)?;
        let account = if r.twilio_account_sid.is_empty() {
            None
        } else {
            Some(account_sid("twilio_account_sid", &r.twilio_account_sid)?)
        };
        let (assigned, welcome) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let customer = store::require_customer(tx, id).await?;
                // Nothing billable before approval: a pending customer gets no number.
                if customer.status == CustomerStatus::Pending {
                    return Err(TenantError::FailedPrecondition(PENDING_APPROVAL.into()));
                }
                let at = store::assign_number(tx, id, &number, account.as_ref()).await?;
                let change = number_change(number.as_str(), true);
                store::record_changes(tx, id, &[change], &by).await?;
                // The first routed number is welcomed once per customer.
                let welcome = store::signups::claim_welcome_mail(tx, id).await?;
                if welcome {
                    append_audit(tx, id, &by, actions::WELCOME_MAILED, &json!({})).await?;
                }
                Ok::<_, TenantError>((at, welcome))
            })
            .await
            // Whether this customer or another owns it, the answer is the same and names nobody.
            .map_err(taken("this number is already assigned"))?;
        tracing::info!(customer_id = id.get(), welcome, "phone number assigned");
        if welcome {
            self.welcome(id, number.as_str()).await;
        }
        Ok(Response::new(AssignPhoneNumberResponse {
            phone_number: Some(mesh::api::tenant::PhoneNumber {
                number: number.as_str().to_owned(),
                twilio_account_sid: account.map(|a| a.as_str().to_owned()),
                assigned_at: Some(wire::timestamp(assigned)),
            }),
        }))
    }

    async fn release_phone_number(
        &self,
        request: Request<ReleasePhoneNumberRequest>,
    ) -> RpcResult<ReleasePhoneNumberResponse> {
        let by = changed_by_service(&request)?;
        let r = request.into_inner();
        let id = target_customer("customer_id", r.customer_id)?;
        let number = phone_number("number", &r.number)?;
        self.deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                store::release_number(tx, id, &number).await?;
                let change = number_change(number.as_str(), false);
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
    ) -> RpcResult<DeleteCustomerResponse> {
        let by = changed_by_service(&request)?;
        let id = target_customer("customer_id", request.get_ref().customer_id)?;
        Ok(Response::new(self.erase_customer(id, &by).await?))
    }

    async fn get_platform_defaults(
        &self,
        _request: Request<GetPlatformDefaultsRequest>,
    ) -> RpcResult<GetPlatformDefaultsResponse> {
        let d = self
            .deps
            .core
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
    ) -> RpcResult<UpdatePlatformDefaultsResponse> {
        let by = service_caller(&request)?.issuer.clone();
        let r = request.into_inner();
        let update = r.defaults.unwrap_or_default();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let saved = self
            .deps
            .core
            .db
            .service_tx(async |tx| {
                let current = store::load_defaults(tx).await?;
                let mut next = current.apply(&update, &mask)?;
                next.updated_at = store::save_defaults(tx, &next).await?;
                let new_voice = next.voice != current.voice;
                Ok::<_, TenantError>((next, new_voice))
            })
            .await?;
        let (saved, new_voice) = saved;
        self.forget_defaults();
        self.routing.invalidate_all();
        if new_voice {
            self.prepare_every_tenants_prompts_soon();
        }
        tracing::info!(by = %by, paths = ?mask, "platform defaults updated");
        Ok(Response::new(UpdatePlatformDefaultsResponse {
            defaults: Some(saved.to_pb()),
        }))
    }

    async fn issue_tenant_token(
        &self,
        request: Request<IssueTenantTokenRequest>,
    ) -> RpcResult<IssueTenantTokenResponse> {
        let issuer = service_caller(&request)?.issuer.clone();
        let r = request.into_inner();
        let grant = TokenGrant::parse(&r, &issuer)?;
        let id = grant.id;
        self.customer(id).await?.require_active()?;
        let (token, expire_time) = self.mint(
            id,
            &grant.subject,
            &grant.audiences,
            &grant.scopes,
            grant.ttl,
        )?;
        tracing::info!(customer_id = id.get(), by = %issuer, ttl_s = grant.ttl.as_secs(), "tenant token issued");
        Ok(Response::new(IssueTenantTokenResponse {
            token,
            expire_time: Some(expire_time),
        }))
    }

    async fn notify_owners(
        &self,
        request: Request<NotifyOwnersRequest>,
    ) -> RpcResult<NotifyOwnersResponse> {
        Ok(Response::new(
            self.notify_owners_now(request.get_ref()).await?,
        ))
    }
}
