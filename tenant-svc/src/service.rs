//! The gRPC handlers of tenant-svc. Every RPC answers UNIMPLEMENTED until the tenant-svc issue
//! lands; the contract (messages, auth rules) is already fixed in `proto/` and [`crate::policy`].

use mesh::api::tenant::*;
use mesh::server::not_yet;
use tonic::{Request, Response, Status};

use crate::Deps;

/// Implements `TenantAdminService`, `TenantService` and `EdgeService`.
#[derive(Clone)]
pub struct TenantSvc {
    #[allow(dead_code)] // used by the handlers of the tenant-svc issue
    deps: Deps,
}

impl TenantSvc {
    /// Handlers over the given dependencies.
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }
}

#[tonic::async_trait]
impl tenant_admin_service_server::TenantAdminService for TenantSvc {
    async fn create_customer(
        &self,
        _request: Request<CreateCustomerRequest>,
    ) -> Result<Response<CreateCustomerResponse>, Status> {
        Err(not_yet("TenantAdminService.CreateCustomer"))
    }

    async fn get_customer(
        &self,
        _request: Request<GetCustomerRequest>,
    ) -> Result<Response<GetCustomerResponse>, Status> {
        Err(not_yet("TenantAdminService.GetCustomer"))
    }

    async fn list_customers(
        &self,
        _request: Request<ListCustomersRequest>,
    ) -> Result<Response<ListCustomersResponse>, Status> {
        Err(not_yet("TenantAdminService.ListCustomers"))
    }

    async fn set_customer_status(
        &self,
        _request: Request<SetCustomerStatusRequest>,
    ) -> Result<Response<SetCustomerStatusResponse>, Status> {
        Err(not_yet("TenantAdminService.SetCustomerStatus"))
    }

    async fn assign_phone_number(
        &self,
        _request: Request<AssignPhoneNumberRequest>,
    ) -> Result<Response<AssignPhoneNumberResponse>, Status> {
        Err(not_yet("TenantAdminService.AssignPhoneNumber"))
    }

    async fn release_phone_number(
        &self,
        _request: Request<ReleasePhoneNumberRequest>,
    ) -> Result<Response<ReleasePhoneNumberResponse>, Status> {
        Err(not_yet("TenantAdminService.ReleasePhoneNumber"))
    }

    async fn delete_customer(
        &self,
        _request: Request<DeleteCustomerRequest>,
    ) -> Result<Response<DeleteCustomerResponse>, Status> {
        Err(not_yet("TenantAdminService.DeleteCustomer"))
    }

    async fn get_platform_defaults(
        &self,
        _request: Request<GetPlatformDefaultsRequest>,
    ) -> Result<Response<GetPlatformDefaultsResponse>, Status> {
        Err(not_yet("TenantAdminService.GetPlatformDefaults"))
    }

    async fn update_platform_defaults(
        &self,
        _request: Request<UpdatePlatformDefaultsRequest>,
    ) -> Result<Response<UpdatePlatformDefaultsResponse>, Status> {
        Err(not_yet("TenantAdminService.UpdatePlatformDefaults"))
    }

    async fn issue_tenant_token(
        &self,
        _request: Request<IssueTenantTokenRequest>,
    ) -> Result<Response<IssueTenantTokenResponse>, Status> {
        Err(not_yet("TenantAdminService.IssueTenantToken"))
    }
}

#[tonic::async_trait]
impl tenant_service_server::TenantService for TenantSvc {
    async fn get_my_customer(
        &self,
        _request: Request<GetMyCustomerRequest>,
    ) -> Result<Response<GetMyCustomerResponse>, Status> {
        Err(not_yet("TenantService.GetMyCustomer"))
    }

    async fn update_agent_config(
        &self,
        _request: Request<UpdateAgentConfigRequest>,
    ) -> Result<Response<UpdateAgentConfigResponse>, Status> {
        Err(not_yet("TenantService.UpdateAgentConfig"))
    }

    async fn list_config_history(
        &self,
        _request: Request<ListConfigHistoryRequest>,
    ) -> Result<Response<ListConfigHistoryResponse>, Status> {
        Err(not_yet("TenantService.ListConfigHistory"))
    }

    async fn get_effective_profile(
        &self,
        _request: Request<GetEffectiveProfileRequest>,
    ) -> Result<Response<GetEffectiveProfileResponse>, Status> {
        Err(not_yet("TenantService.GetEffectiveProfile"))
    }

    async fn get_outbound_settings(
        &self,
        _request: Request<GetOutboundSettingsRequest>,
    ) -> Result<Response<GetOutboundSettingsResponse>, Status> {
        Err(not_yet("TenantService.GetOutboundSettings"))
    }

    async fn update_outbound_settings(
        &self,
        _request: Request<UpdateOutboundSettingsRequest>,
    ) -> Result<Response<UpdateOutboundSettingsResponse>, Status> {
        Err(not_yet("TenantService.UpdateOutboundSettings"))
    }

    async fn rotate_webhook_secret(
        &self,
        _request: Request<RotateWebhookSecretRequest>,
    ) -> Result<Response<RotateWebhookSecretResponse>, Status> {
        Err(not_yet("TenantService.RotateWebhookSecret"))
    }
}

#[tonic::async_trait]
impl edge_service_server::EdgeService for TenantSvc {
    async fn resolve_number(
        &self,
        _request: Request<ResolveNumberRequest>,
    ) -> Result<Response<ResolveNumberResponse>, Status> {
        Err(not_yet("EdgeService.ResolveNumber"))
    }

    async fn exchange_legacy_token(
        &self,
        _request: Request<ExchangeLegacyTokenRequest>,
    ) -> Result<Response<ExchangeLegacyTokenResponse>, Status> {
        Err(not_yet("EdgeService.ExchangeLegacyToken"))
    }
}
