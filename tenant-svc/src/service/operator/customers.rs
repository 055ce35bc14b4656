//! The console's customer actions: list and read customers (status, numbers, this month's usage
//! from media-svc, a scheduled offboarding), approve, suspend and reactivate. Every change is
//! made as the operator (`operator:<id>`), recorded in the customer's history and audit log in
//! the change's transaction.

use chrono::Datelike as _;
use mesh::api::tenant::*;
use mesh::domain::CustomerId;

use super::sign_in::OperatorCaller;
use crate::customer::{Customer, CustomerStatus};
use crate::error::{Result, TenantError};
use crate::page::{page_size, page_token, parse_page_token};
use crate::service::{StatusAudit, TenantSvc, target_customer};
use crate::store::{self, audit::actions};
use crate::wire::timestamp;

impl TenantSvc {
    /// `c` as the console shows it: with its scheduled erasure and, when media-svc answers in
    /// time, this month's calls and minutes.
    pub(super) async fn summary(&self, c: Customer) -> Result<CustomerSummary> {
        let id = c.id;
        let erase = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| store::offboardings::get(tx, id).await)
            .await?;
        let now = chrono::Utc::now();
        let usage = match self
            .deps
            .peers
            .usage(id, now.year(), now.month() as i32)
            .await
        {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::debug!(customer_id = id.get(), error = %e, "usage not read for the console");
                None
            }
        };
        Ok(CustomerSummary {
            id: id.get(),
            business_name: c.business_name,
            status: c.status.to_pb() as i32,
            numbers: c.numbers.into_iter().map(|n| n.number).collect(),
            calls_this_month: usage.as_ref().map(|u| u.total_calls),
            minutes_this_month: usage.as_ref().map(|u| u.total_minutes),
            erase_time: erase.map(|o| timestamp(o.erase_at)),
            package_tier: c.package_tier,
            create_time: Some(timestamp(c.created_at)),
        })
    }

    pub(super) async fn operator_list_customers(
        &self,
        _op: &OperatorCaller,
        r: OperatorListCustomersRequest,
    ) -> Result<OperatorListCustomersResponse> {
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
        let reads = ids.iter().map(|&id| async move {
            let c = self
                .deps
                .core
                .db
                .tenant_tx(id, async move |tx| store::get_customer(tx, id).await)
                .await?;
            match c {
                Some(c) => Ok::<_, TenantError>(Some(self.summary(c).await?)),
                None => Ok(None),
            }
        });
        let customers = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let next_page_token = match (more, ids.last()) {
            (true, Some(last)) => page_token(last.get()),
            _ => String::new(),
        };
        Ok(OperatorListCustomersResponse {
            customers,
            next_page_token,
        })
    }

    pub(super) async fn operator_customer(&self, id: CustomerId) -> Result<CustomerSummary> {
        let c = self.customer(id).await?;
        self.summary(c).await
    }

    /// Changes `customer_id`'s status to `status` as the operator, from one of `from`.
    pub(super) async fn operator_status(
        &self,
        op: &OperatorCaller,
        customer_id: i64,
        status: CustomerStatus,
        action: &str,
        from: &[&str],
    ) -> Result<CustomerSummary> {
        let id = target_customer("customer_id", customer_id)?;
        let audit = StatusAudit { action, from };
        let c = self
            .change_status(id, status, &op.actor(), Some(audit))
            .await?;
        tracing::info!(
            customer_id = id.get(),
            operator_id = op.operator_id,
            action,
            "operator changed the customer's status"
        );
        self.summary(c).await
    }

    pub(super) async fn approve(&self, op: &OperatorCaller, id: i64) -> Result<CustomerSummary> {
        self.operator_status(
            op,
            id,
            CustomerStatus::Active,
            actions::OPERATOR_APPROVED,
            &["pending"],
        )
        .await
    }

    pub(super) async fn suspend(&self, op: &OperatorCaller, id: i64) -> Result<CustomerSummary> {
        self.operator_status(
            op,
            id,
            CustomerStatus::Suspended,
            actions::OPERATOR_SUSPENDED,
            &[],
        )
        .await
    }

    pub(super) async fn reactivate(&self, op: &OperatorCaller, id: i64) -> Result<CustomerSummary> {
        self.operator_status(
            op,
            id,
            CustomerStatus::Active,
            actions::OPERATOR_REACTIVATED,
            &["suspended"],
        )
        .await
    }
}
