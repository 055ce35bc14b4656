//! `EdgeService`: what the gateway asks on every incoming call (which customer owns the called
//! number, with its effective profile and a call-scoped tenant token for media-svc's
//! `RegisterCall` and `UpdateCallStatus` only) and for the legacy REST API
//! (a legacy HS256 token exchanged for a short-lived tenant token).

use std::time::Duration;

use mesh::api::tenant::*;
use mesh::domain::CallSid;
use mesh::identity::{names, scope};
use tonic::{Request, Response};

use super::{CALL_TOKEN_TTL, MAX_EXCHANGED_TTL, RpcResult, TenantSvc, account_sid, phone_number};
use crate::error::TenantError;
use crate::routing::Resolved;

#[tonic::async_trait]
impl edge_service_server::EdgeService for TenantSvc {
    async fn resolve_number(
        &self,
        request: Request<ResolveNumberRequest>,
    ) -> RpcResult<ResolveNumberResponse> {
        let r = request.into_inner();
        let number = phone_number("called_number", &r.called_number)?;
        let account = account_sid("account_sid", &r.account_sid)?;
        let call = CallSid::parse(&r.call_sid).map_err(|e| TenantError::invalid("call_sid", e))?;
        let (Resolved { id, customer }, defaults) =
            tokio::try_join!(self.resolve(&number, &account), self.defaults())?;
        // The gateway's token names no tenant: the rpc span learns it here.
        mesh::telemetry::record_customer(id);
        if let Err(e) = customer.require_active() {
            tracing::info!(customer_id = id.get(), call_sid = %call, "call to a suspended customer refused");
            return Err(e.into());
        }
        let (token, expire_time) = self.mint(
            id,
            call.as_str(),
            // media-svc only, `media:calls` only: the token never leaves the mesh (the TwiML
            // carries media-svc's stream ticket) and opens nothing but the call's registration
            // and status updates.
            &[names::MEDIA_SVC],
            scope::CALL_SCOPES,
            CALL_TOKEN_TTL,
        )?;
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
            token_expire_time: Some(expire_time),
        }))
    }

    async fn exchange_legacy_token(
        &self,
        request: Request<ExchangeLegacyTokenRequest>,
    ) -> RpcResult<ExchangeLegacyTokenResponse> {
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
        customer.require_active()?;
        let scopes = mesh::auth::legacy_scopes(&claims.scope);
        if scopes.is_empty() {
            // The old API's contract for unusable credentials is 401.
            return Err(TenantError::Unauthenticated(
                "legacy token's scope grants neither memory:read nor memory:write",
            )
            .into());
        }
        let remaining = claims.expires_at - chrono::Utc::now().timestamp();
        let ttl =
            Duration::from_secs(remaining.clamp(1, MAX_EXCHANGED_TTL.as_secs() as i64) as u64);
        let (token, expire_time) =
            self.mint(id, "legacy-rest", &[names::MEMORY_SVC], &scopes, ttl)?;
        Ok(Response::new(ExchangeLegacyTokenResponse {
            customer_id: id.get(),
            tenant_token: token,
            token_expire_time: Some(expire_time),
        }))
    }
}
