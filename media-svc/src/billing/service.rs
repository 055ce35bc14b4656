//! `BillingService` (a tenant's own bill, tenant tokens with `media:billing`) and
//! `BillingAdminService` (the operator's CLI with `media:admin`, tenant-svc for the console with
//! `media:billing-admin`). A bill is computed when asked, in the tenant's own transaction, from
//! its month's usage (`media.usage_monthly`), the package of that month and the rate card in
//! effect on the month's first day; nothing priced is stored, and because rate cards and
//! assignments only take effect from the current month on, a closed month always prices the
//! same.

use mesh::api::media::billing_admin_service_server::BillingAdminService;
use mesh::api::media::billing_service_server::BillingService;
use mesh::api::media::*;
use mesh::auth::{operator_target, service_caller, tenant_caller};
use mesh::db::{Db, Tx};
use mesh::domain::CustomerId;
use tonic::{Request, Response, Status};

use super::{
    Currency, Month, Quantities, Rates, csv, parse_package_name, percent_used, price, total,
};
use crate::error::MediaError;
use crate::store::billing::{self as sql, PackageRow, RateCardRow};
use crate::store::usage;

/// The billing handlers.
#[derive(Clone)]
pub struct BillingSvc {
    db: Db,
}

impl BillingSvc {
    /// Handlers over the pool.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn month_field(field: &'static str, s: &str) -> Result<Month, MediaError> {
    Month::parse_or_current(s).map_err(|e| MediaError::invalid(field, e))
}

/// A month something takes effect from: the current one or later (a closed month is never
/// repriced).
fn effective_month(field: &'static str, s: &str) -> Result<Month, MediaError> {
    let m = month_field(field, s)?;
    if m.closed() {
        return Err(MediaError::invalid(
            field,
            format!(
                "{m} has closed; prices and packages take effect from the current month ({}) on",
                Month::current()
            ),
        ));
    }
    Ok(m)
}

fn package_name(s: &str) -> Result<String, MediaError> {
    parse_package_name(s).map_err(|e| MediaError::invalid("package", e))
}

fn missing_package() -> MediaError {
    MediaError::Missing("package not found".into())
}

/// The current tenant's bill of a month (inside its transaction).
pub async fn monthly_bill(
    tx: &Tx<'_>,
    customer: CustomerId,
    month: Month,
) -> Result<MonthlyBill, MediaError> {
    let used = usage::usage(tx, month.first_day()).await?;
    let pricing = sql::pricing(tx, month).await?;
    let (package, card) = match &pricing {
        Some((p, c)) => (Some(p), c.as_ref()),
        None => (None, None),
    };
    let q = Quantities::new(used.minutes, used.recorded_minutes, &used.tokens);
    let lines = price(&q, &card.map_or(Rates::default(), |c| c.rates));
    let cap = package.and_then(|p| p.cap_minutes).unwrap_or(0);
    Ok(MonthlyBill {
        customer_id: customer.get(),
        month: month.to_string(),
        package: package.map(|p| p.name.clone()).unwrap_or_default(),
        rate_card_version: card.map_or(0, |c| c.version),
        currency: package.map(|p| p.currency.clone()).unwrap_or_default(),
        total: total(&lines),
        lines: lines
            .iter()
            .map(|l| BillLine {
                unit: l.unit as i32,
                quantity: l.quantity,
                unit_price: l.unit_price,
                amount_micros: i64::try_from(l.amount_micros).unwrap_or(i64::MAX),
                amount: l.amount,
            })
            .collect(),
        calls: used.calls,
        cap_minutes: cap,
        minutes_used: used.minutes,
        cap_percent_used: percent_used(used.minutes, cap),
        over_cap: package.map_or(0, |p| i32::from(p.over_cap)),
        closed: month.closed(),
    })
}

async fn bill_of(db: &Db, customer: CustomerId, month: Month) -> Result<MonthlyBill, MediaError> {
    db.tenant_tx(customer, async |tx| monthly_bill(tx, customer, month).await)
        .await
}

fn wire_card(c: &RateCardRow) -> RateCard {
    let r = &c.rates.0;
    RateCard {
        version: c.version,
        effective_month: c.effective_month.to_string(),
        per_twilio_minute: r[0],
        per_recorded_minute: r[1],
        per_million_input_text_tokens: r[2],
        per_million_input_audio_tokens: r[3],
        per_million_cached_text_tokens: r[4],
        per_million_cached_audio_tokens: r[5],
        per_million_output_text_tokens: r[6],
        per_million_output_audio_tokens: r[7],
    }
}

fn wire_package(p: &PackageRow, cards: &[RateCardRow]) -> BillingPackage {
    BillingPackage {
        name: p.name.clone(),
        currency: p.currency.clone(),
        cap_minutes: p.cap_minutes.unwrap_or(0),
        over_cap: i32::from(p.over_cap),
        rate_cards: cards.iter().map(wire_card).collect(),
    }
}

/// A rate card's prices, each named when negative.
fn rates_of(c: &RateCard) -> Result<Rates, MediaError> {
    let fields: [(&'static str, i64); 8] = [
        ("rate_card.per_twilio_minute", c.per_twilio_minute),
        ("rate_card.per_recorded_minute", c.per_recorded_minute),
        (
            "rate_card.per_million_input_text_tokens",
            c.per_million_input_text_tokens,
        ),
        (
            "rate_card.per_million_input_audio_tokens",
            c.per_million_input_audio_tokens,
        ),
        (
            "rate_card.per_million_cached_text_tokens",
            c.per_million_cached_text_tokens,
        ),
        (
            "rate_card.per_million_cached_audio_tokens",
            c.per_million_cached_audio_tokens,
        ),
        (
            "rate_card.per_million_output_text_tokens",
            c.per_million_output_text_tokens,
        ),
        (
            "rate_card.per_million_output_audio_tokens",
            c.per_million_output_audio_tokens,
        ),
    ];
    let mut rates = [0i64; 8];
    for (i, (field, v)) in fields.into_iter().enumerate() {
        // A price over 10^12 minor units per unit is a typo, and keeps every product in range.
        if !(0..=1_000_000_000_000).contains(&v) {
            return Err(MediaError::invalid(
                field,
                "must be 0 to 1000000000000 minor units",
            ));
        }
        rates[i] = v;
    }
    Ok(Rates(rates))
}

fn csv_answer(month: Month, bills: &[MonthlyBill], prefix: &str) -> (String, String) {
    (format!("{prefix}-{month}.csv"), csv::bills(bills))
}

#[tonic::async_trait]
impl BillingService for BillingSvc {
    async fn get_monthly_bill(
        &self,
        request: Request<GetMonthlyBillRequest>,
    ) -> Result<Response<GetMonthlyBillResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        let month = month_field("month", &request.get_ref().month)?;
        let bill = bill_of(&self.db, customer, month).await?;
        Ok(Response::new(GetMonthlyBillResponse { bill: Some(bill) }))
    }

    async fn export_monthly_bill(
        &self,
        request: Request<ExportMonthlyBillRequest>,
    ) -> Result<Response<ExportMonthlyBillResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        let month = month_field("month", &request.get_ref().month)?;
        let bill = bill_of(&self.db, customer, month).await?;
        let (filename, csv) = csv_answer(month, &[bill], "usage");
        Ok(Response::new(ExportMonthlyBillResponse { filename, csv }))
    }
}

/// Most bills on one page of `ListMonthlyBills`, and per round of the CSV export.
const MAX_PAGE: i32 = 100;

impl BillingSvc {
    /// A page of every tenant's bills of a month.
    async fn page(
        &self,
        month: Month,
        after: i64,
        limit: i32,
    ) -> Result<Vec<MonthlyBill>, MediaError> {
        let ids = self
            .db
            .service_tx(async |tx| sql::usage_tenants(tx, month, after, limit).await)
            .await?;
        let mut bills = Vec::with_capacity(ids.len());
        for id in ids {
            bills.push(bill_of(&self.db, id, month).await?);
        }
        Ok(bills)
    }
}

#[tonic::async_trait]
impl BillingAdminService for BillingSvc {
    async fn create_package(
        &self,
        request: Request<CreatePackageRequest>,
    ) -> Result<Response<CreatePackageResponse>, Status> {
        service_caller(&request)?;
        let p = request.into_inner().package.unwrap_or_default();
        let name = package_name(&p.name)?;
        let currency =
            Currency::parse(&p.currency).map_err(|e| MediaError::invalid("package.currency", e))?;
        if p.cap_minutes < 0 {
            return Err(
                MediaError::invalid("package.cap_minutes", "must be 0 (no cap) or more").into(),
            );
        }
        let over_cap = match OverCapAction::try_from(p.over_cap) {
            Ok(OverCapAction::MessageFlow | OverCapAction::Refuse) => p.over_cap,
            Ok(OverCapAction::Unspecified) if p.cap_minutes == 0 => {
                OverCapAction::MessageFlow as i32
            }
            _ => {
                return Err(MediaError::invalid(
                    "package.over_cap",
                    "must be MESSAGE_FLOW or REFUSE when there is a cap",
                )
                .into());
            }
        };
        let cap = (p.cap_minutes > 0).then_some(p.cap_minutes);
        let over_cap = i16::try_from(over_cap)
            .map_err(|_| MediaError::invalid("package.over_cap", "unknown"))?;
        let created = self
            .db
            .service_tx(async |tx| {
                sql::create_package(tx, &name, currency.as_str(), cap, over_cap).await
            })
            .await?
            .ok_or_else(|| MediaError::AlreadyExists("a package of that name exists".into()))?;
        tracing::info!(package = %created.name, "billing package created");
        Ok(Response::new(CreatePackageResponse {
            package: Some(wire_package(&created, &[])),
        }))
    }

    async fn list_packages(
        &self,
        request: Request<ListPackagesRequest>,
    ) -> Result<Response<ListPackagesResponse>, Status> {
        service_caller(&request)?;
        let packages = self
            .db
            .service_tx(async |tx| {
                let mut out = Vec::new();
                for p in sql::packages(tx).await? {
                    let cards = sql::rate_cards(tx, p.id).await?;
                    out.push(wire_package(&p, &cards));
                }
                Ok::<_, MediaError>(out)
            })
            .await?;
        Ok(Response::new(ListPackagesResponse { packages }))
    }

    async fn publish_rate_card(
        &self,
        request: Request<PublishRateCardRequest>,
    ) -> Result<Response<PublishRateCardResponse>, Status> {
        service_caller(&request)?;
        let r = request.into_inner();
        let name = package_name(&r.package)?;
        let card = r
            .rate_card
            .ok_or_else(|| MediaError::invalid("rate_card", "is required"))?;
        let from = effective_month("rate_card.effective_month", &card.effective_month)?;
        let rates = rates_of(&card)?;
        let published = self
            .db
            .service_tx(async |tx| {
                let p = sql::package_named(tx, &name)
                    .await?
                    .ok_or_else(missing_package)?;
                sql::publish_rate_card(tx, p.id, from, &rates).await
            })
            .await?;
        tracing::info!(package = %name, version = published.version, from = %from, "rate card published");
        Ok(Response::new(PublishRateCardResponse {
            rate_card: Some(wire_card(&published)),
        }))
    }

    async fn assign_package(
        &self,
        request: Request<AssignPackageRequest>,
    ) -> Result<Response<AssignPackageResponse>, Status> {
        let (_, customer) = operator_target(&request, |r| r.customer_id)?;
        let r = request.into_inner();
        let name = package_name(&r.package)?;
        let from = effective_month("effective_month", &r.effective_month)?;
        self.db
            .tenant_tx(customer, async |tx| {
                let p = sql::package_named(tx, &name)
                    .await?
                    .ok_or_else(missing_package)?;
                sql::assign(tx, customer, from, p.id).await
            })
            .await?;
        tracing::info!(package = %name, from = %from, "package assigned");
        Ok(Response::new(AssignPackageResponse {}))
    }

    async fn set_default_package(
        &self,
        request: Request<SetDefaultPackageRequest>,
    ) -> Result<Response<SetDefaultPackageResponse>, Status> {
        service_caller(&request)?;
        let r = request.into_inner();
        let name = package_name(&r.package)?;
        let from = effective_month("effective_month", &r.effective_month)?;
        self.db
            .service_tx(async |tx| {
                let p = sql::package_named(tx, &name)
                    .await?
                    .ok_or_else(missing_package)?;
                sql::set_default(tx, from, p.id).await
            })
            .await?;
        tracing::info!(package = %name, from = %from, "default package set");
        Ok(Response::new(SetDefaultPackageResponse {}))
    }

    async fn get_customer_bill(
        &self,
        request: Request<GetCustomerBillRequest>,
    ) -> Result<Response<GetCustomerBillResponse>, Status> {
        let (_, customer) = operator_target(&request, |r| r.customer_id)?;
        let month = month_field("month", &request.get_ref().month)?;
        let bill = bill_of(&self.db, customer, month).await?;
        Ok(Response::new(GetCustomerBillResponse { bill: Some(bill) }))
    }

    async fn list_monthly_bills(
        &self,
        request: Request<ListMonthlyBillsRequest>,
    ) -> Result<Response<ListMonthlyBillsResponse>, Status> {
        service_caller(&request)?;
        let r = request.into_inner();
        let month = month_field("month", &r.month)?;
        let limit = match r.page_size {
            0 => 50,
            n @ 1..=MAX_PAGE => n,
            _ => return Err(MediaError::invalid("page_size", "must be 1-100 (or 0)").into()),
        };
        if r.after_customer_id < 0 {
            return Err(MediaError::invalid("after_customer_id", "must be 0 or more").into());
        }
        let bills = self.page(month, r.after_customer_id, limit).await?;
        let next = if bills.len() == limit as usize {
            bills.last().map_or(0, |b| b.customer_id)
        } else {
            0
        };
        Ok(Response::new(ListMonthlyBillsResponse {
            bills,
            next_after_customer_id: next,
        }))
    }

    async fn export_monthly_bills(
        &self,
        request: Request<ExportMonthlyBillsRequest>,
    ) -> Result<Response<ExportMonthlyBillsResponse>, Status> {
        service_caller(&request)?;
        let month = month_field("month", &request.get_ref().month)?;
        let mut bills = Vec::new();
        let mut after = 0;
        loop {
            let page = self.page(month, after, MAX_PAGE).await?;
            let done = page.len() < MAX_PAGE as usize;
            after = page.last().map_or(after, |b| b.customer_id);
            bills.extend(page);
            if done {
                break;
            }
        }
        let (filename, csv) = csv_answer(month, &bills, "usage-all");
        Ok(Response::new(ExportMonthlyBillsResponse { filename, csv }))
    }
}
