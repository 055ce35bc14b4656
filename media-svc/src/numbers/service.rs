//! `NumberService` (tenant tokens, `media:numbers`: the customer is always the token's) and
//! `NumberAdminService` (service tokens: the operator's `media:admin`, tenant-svc's
//! `media:numbers-admin`; the customer is the request's `customer_id`).

use mesh::api::media::number_admin_service_server::NumberAdminService;
use mesh::api::media::number_service_server::NumberService;
use mesh::api::media::*;
use mesh::auth::{operator_target, tenant_caller};
use mesh::domain::CustomerId;
use tonic::{Request, Response, Status};

use super::store::{self, NumberRow};
use super::{Numbers, NumbersError, ops, reconcile};

type RpcResult<T> = Result<Response<T>, Status>;

fn tenant<T>(request: &Request<T>) -> Result<CustomerId, Status> {
    Ok(tenant_caller(request)?.customer_id)
}

impl Numbers {
    async fn rows(
        &self,
        customer: CustomerId,
        held_only: bool,
    ) -> Result<Vec<NumberRow>, NumbersError> {
        Ok(self
            .db
            .tenant_tx(customer, async |tx| {
                store::list(tx, customer, held_only).await
            })
            .await?)
    }

    /// Every held number of `customer` released (offboarding); how many.
    async fn release_all(&self, customer: CustomerId) -> Result<i32, NumbersError> {
        let mut released = 0;
        for row in self.rows(customer, true).await? {
            if row.state == NumberState::Purchasing {
                continue;
            }
            let done = ops::release(self, customer, &row.phone_number).await?;
            if done.state == NumberState::Released {
                released += 1;
            }
        }
        Ok(released)
    }
}

#[tonic::async_trait]
impl NumberService for Numbers {
    async fn search_available_numbers(
        &self,
        request: Request<SearchAvailableNumbersRequest>,
    ) -> RpcResult<SearchAvailableNumbersResponse> {
        tenant(&request)?;
        let numbers = ops::search(self, request.get_ref()).await?;
        Ok(Response::new(SearchAvailableNumbersResponse { numbers }))
    }

    async fn purchase_number(
        &self,
        request: Request<PurchaseNumberRequest>,
    ) -> RpcResult<PurchaseNumberResponse> {
        let customer = tenant(&request)?;
        let r = request.into_inner();
        let row = ops::purchase(self, customer, &r.phone_number, &r.request_id).await?;
        Ok(Response::new(PurchaseNumberResponse {
            number: Some(row.to_pb(0)),
        }))
    }

    async fn list_numbers(
        &self,
        request: Request<ListNumbersRequest>,
    ) -> RpcResult<ListNumbersResponse> {
        let customer = tenant(&request)?;
        let numbers = self.rows(customer, false).await?;
        Ok(Response::new(ListNumbersResponse {
            numbers: numbers.iter().map(|r| r.to_pb(0)).collect(),
        }))
    }

    async fn release_number(
        &self,
        request: Request<ReleaseNumberRequest>,
    ) -> RpcResult<ReleaseNumberResponse> {
        let customer = tenant(&request)?;
        let row = ops::release(self, customer, &request.get_ref().phone_number).await?;
        Ok(Response::new(ReleaseNumberResponse {
            number: Some(row.to_pb(0)),
        }))
    }
}

#[tonic::async_trait]
impl NumberAdminService for Numbers {
    async fn import_number(
        &self,
        request: Request<ImportNumberRequest>,
    ) -> RpcResult<ImportNumberResponse> {
        let (by, customer) = operator_target(&request, |r| r.customer_id)?;
        let r = request.into_inner();
        let origin = NumberOrigin::try_from(r.origin)
            .map_err(|_| NumbersError::invalid("origin", "unknown origin"))?;
        let done = ops::import(self, customer, &r.phone_number, r.fix_webhooks, origin).await?;
        tracing::info!(customer_id = customer.get(), by = %by, "number import requested");
        Ok(Response::new(ImportNumberResponse {
            number: Some(done.row.to_pb(customer.get())),
            webhook_problems: done.problems,
            webhooks_fixed: done.fixed,
        }))
    }

    async fn release_customer_number(
        &self,
        request: Request<ReleaseCustomerNumberRequest>,
    ) -> RpcResult<ReleaseCustomerNumberResponse> {
        let (_, customer) = operator_target(&request, |r| r.customer_id)?;
        let row = ops::release(self, customer, &request.get_ref().phone_number).await?;
        Ok(Response::new(ReleaseCustomerNumberResponse {
            number: Some(row.to_pb(customer.get())),
        }))
    }

    async fn release_all_numbers(
        &self,
        request: Request<ReleaseAllNumbersRequest>,
    ) -> RpcResult<ReleaseAllNumbersResponse> {
        let (_, customer) = operator_target(&request, |r| r.customer_id)?;
        let released = self.release_all(customer).await?;
        Ok(Response::new(ReleaseAllNumbersResponse { released }))
    }

    async fn list_all_numbers(
        &self,
        request: Request<ListAllNumbersRequest>,
    ) -> RpcResult<ListAllNumbersResponse> {
        let customers = match request.get_ref().customer_id {
            0 => self
                .db
                .service_tx(async |tx| store::number_tenants(tx).await)
                .await
                .map_err(NumbersError::from)?,
            _ => vec![operator_target(&request, |r| r.customer_id)?.1],
        };
        let mut numbers = Vec::new();
        for customer in customers {
            let held_only = request.get_ref().customer_id == 0;
            numbers.extend(
                self.rows(customer, held_only)
                    .await?
                    .iter()
                    .map(|r| r.to_pb(customer.get())),
            );
        }
        Ok(Response::new(ListAllNumbersResponse { numbers }))
    }

    async fn reconcile(&self, request: Request<ReconcileRequest>) -> RpcResult<ReconcileResponse> {
        let report = reconcile::run_once(self, request.get_ref().fix).await?;
        Ok(Response::new(report))
    }
}
