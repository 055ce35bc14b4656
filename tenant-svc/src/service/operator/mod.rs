//! `OperatorService` (the gateway's operator console, scope `tenant:operator-console`) and
//! `OperatorAdminService` (the operator's CLI, `tenant:admin`). Every console method but
//! `OperatorSignIn` verifies the operator's session first ([`TenantSvc::operator_session`]):
//! the gateway's token alone opens nothing. `sign_in` holds sign-in, sessions and accounts;
//! `customers` the customer actions.

mod customers;
mod platform;
mod sign_in;

use mesh::api::tenant::*;
use tonic::{Request, Response, Status};

use super::{RpcResult, TenantSvc, changed_by_service};

/// A console method that is not served yet (its part of the console lands later).
fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not available in this version"))
}

#[tonic::async_trait]
impl operator_service_server::OperatorService for TenantSvc {
    async fn operator_sign_in(
        &self,
        request: Request<OperatorSignInRequest>,
    ) -> RpcResult<OperatorSignInResponse> {
        Ok(Response::new(
            self.operator_sign_in(request.into_inner()).await?,
        ))
    }

    async fn operator_sign_out(
        &self,
        request: Request<OperatorSignOutRequest>,
    ) -> RpcResult<OperatorSignOutResponse> {
        self.operator_sign_out(request.into_inner()).await?;
        Ok(Response::new(OperatorSignOutResponse {}))
    }

    async fn get_operator_session(
        &self,
        request: Request<GetOperatorSessionRequest>,
    ) -> RpcResult<GetOperatorSessionResponse> {
        Ok(Response::new(
            self.get_operator_session(request.into_inner()).await?,
        ))
    }

    async fn operator_list_customers(
        &self,
        request: Request<OperatorListCustomersRequest>,
    ) -> RpcResult<OperatorListCustomersResponse> {
        let r = request.into_inner();
        let op = self.operator_session(&r.session_secret).await?;
        Ok(Response::new(self.operator_list_customers(&op, r).await?))
    }

    async fn operator_get_customer(
        &self,
        request: Request<OperatorGetCustomerRequest>,
    ) -> RpcResult<OperatorGetCustomerResponse> {
        let r = request.into_inner();
        self.operator_session(&r.session_secret).await?;
        let id = super::target_customer("customer_id", r.customer_id)?;
        Ok(Response::new(OperatorGetCustomerResponse {
            customer: Some(self.operator_customer(id).await?),
        }))
    }

    async fn approve_customer(
        &self,
        request: Request<ApproveCustomerRequest>,
    ) -> RpcResult<ApproveCustomerResponse> {
        let r = request.into_inner();
        let op = self.operator_session(&r.session_secret).await?;
        Ok(Response::new(ApproveCustomerResponse {
            customer: Some(self.approve(&op, r.customer_id).await?),
        }))
    }

    async fn suspend_customer(
        &self,
        request: Request<SuspendCustomerRequest>,
    ) -> RpcResult<SuspendCustomerResponse> {
        let r = request.into_inner();
        let op = self.operator_session(&r.session_secret).await?;
        Ok(Response::new(SuspendCustomerResponse {
            customer: Some(self.suspend(&op, r.customer_id).await?),
        }))
    }

    async fn reactivate_customer(
        &self,
        request: Request<ReactivateCustomerRequest>,
    ) -> RpcResult<ReactivateCustomerResponse> {
        let r = request.into_inner();
        let op = self.operator_session(&r.session_secret).await?;
        Ok(Response::new(ReactivateCustomerResponse {
            customer: Some(self.reactivate(&op, r.customer_id).await?),
        }))
    }

    async fn operator_assign_number(
        &self,
        request: Request<OperatorAssignNumberRequest>,
    ) -> RpcResult<OperatorAssignNumberResponse> {
        let r = request.into_inner();
        let op = self.operator_session(&r.session_secret).await?;
        Ok(Response::new(OperatorAssignNumberResponse {
            customer: Some(
                self.operator_number(&op, r.customer_id, &r.number, true)
                    .await?,
            ),
        }))
    }

    async fn operator_release_number(
        &self,
        request: Request<OperatorReleaseNumberRequest>,
    ) -> RpcResult<OperatorReleaseNumberResponse> {
        let r = request.into_inner();
        let op = self.operator_session(&r.session_secret).await?;
        Ok(Response::new(OperatorReleaseNumberResponse {
            customer: Some(
                self.operator_number(&op, r.customer_id, &r.number, false)
                    .await?,
            ),
        }))
    }

    async fn operator_get_defaults(
        &self,
        request: Request<OperatorGetDefaultsRequest>,
    ) -> RpcResult<OperatorGetDefaultsResponse> {
        self.operator_session(&request.get_ref().session_secret)
            .await?;
        Err(not_yet("the platform defaults page"))
    }

    async fn operator_update_defaults(
        &self,
        request: Request<OperatorUpdateDefaultsRequest>,
    ) -> RpcResult<OperatorUpdateDefaultsResponse> {
        self.operator_session(&request.get_ref().session_secret)
            .await?;
        Err(not_yet("changing the platform defaults from the console"))
    }

    async fn list_dead_letter_counts(
        &self,
        request: Request<ListDeadLetterCountsRequest>,
    ) -> RpcResult<ListDeadLetterCountsResponse> {
        self.operator_session(&request.get_ref().session_secret)
            .await?;
        Ok(Response::new(self.dead_letters().await?))
    }

    async fn offboard_customer(
        &self,
        request: Request<OffboardCustomerRequest>,
    ) -> RpcResult<OffboardCustomerResponse> {
        self.operator_session(&request.get_ref().session_secret)
            .await?;
        Err(not_yet("offboarding"))
    }

    async fn cancel_offboarding(
        &self,
        request: Request<CancelOffboardingRequest>,
    ) -> RpcResult<CancelOffboardingResponse> {
        self.operator_session(&request.get_ref().session_secret)
            .await?;
        Err(not_yet("offboarding"))
    }
}

#[tonic::async_trait]
impl operator_admin_service_server::OperatorAdminService for TenantSvc {
    async fn add_operator(
        &self,
        request: Request<AddOperatorRequest>,
    ) -> RpcResult<AddOperatorResponse> {
        let by = changed_by_service(&request)?;
        Ok(Response::new(
            self.add_operator(&by, request.into_inner()).await?,
        ))
    }

    async fn disable_operator(
        &self,
        request: Request<DisableOperatorRequest>,
    ) -> RpcResult<DisableOperatorResponse> {
        let by = changed_by_service(&request)?;
        Ok(Response::new(
            self.disable_operator(&by, request.into_inner()).await?,
        ))
    }
}
