//! The numbers' flows, shared by the tenant's and the operator's RPCs and by reconcile:
//! search with prices, the purchase (intent row committed before the POST, lookup after a lost
//! answer, never a second POST for one intent), import, release and the routing calls to
//! tenant-svc. Logs carry `customer_id`, never a number.

use mesh::api::media::{self as pb, NumberOrigin, NumberState, NumberType};
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::{AssignPhoneNumberRequest, ReleasePhoneNumberRequest};
use mesh::auth::AttachToken;
use mesh::domain::{CustomerId, PhoneNumber};
use mesh::identity::{names, scope};
use uuid::Uuid;

use super::client::{IncomingNumber, Kind, Money, RestClient, RestError, Search};
use super::store::{self, NewNumber, NumberRow};
use super::{Numbers, NumbersError};

/// What clients are told when Twilio cannot answer.
pub const TWILIO_UNAVAILABLE: &str = "Twilio is unavailable, retry later";

/// A number in E.164 (INVALID_ARGUMENT naming `field` otherwise).
pub fn parse_number(field: &'static str, v: &str) -> Result<PhoneNumber, NumbersError> {
    PhoneNumber::parse(v).map_err(|e| NumbersError::invalid(field, e))
}

/// A search request, validated: (country, kind, filters).
pub fn parse_search(
    r: &pb::SearchAvailableNumbersRequest,
) -> Result<(String, Kind, Search), NumbersError> {
    let country = r.country.trim().to_ascii_uppercase();
    if !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err(NumbersError::invalid(
            "country",
            "must be an ISO 3166-1 alpha-2 code, e.g. US",
        ));
    }
    let kind = match NumberType::try_from(r.number_type) {
        Ok(NumberType::Unspecified | NumberType::Local) => Kind::Local,
        Ok(NumberType::TollFree) => Kind::TollFree,
        Ok(NumberType::Mobile) => Kind::Mobile,
        Err(_) => return Err(NumbersError::invalid("number_type", "unknown number type")),
    };
    let area = r.area_code.trim();
    let area_ok = area.is_empty() || area.len() <= 6 && area.bytes().all(|b| b.is_ascii_digit());
    if !area_ok {
        return Err(NumbersError::invalid(
            "area_code",
            "must be digits only, e.g. 415",
        ));
    }
    let contains = r.contains.trim();
    let contains_ok = contains.is_empty()
        || contains.len() <= 16
            && contains
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'*');
    if !contains_ok {
        return Err(NumbersError::invalid(
            "contains",
            "must be at most 16 digits, letters or `*`",
        ));
    }
    let locality = r.locality.trim();
    if locality.chars().count() > 64 || locality.chars().any(char::is_control) {
        return Err(NumbersError::invalid(
            "locality",
            "must be a city name of at most 64 characters",
        ));
    }
    let limit = match r.limit {
        0 => 20,
        n @ 1..=30 => n as u32,
        _ => return Err(NumbersError::invalid("limit", "must be 1-30 (or 0)")),
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok((
        country,
        kind,
        Search {
            area_code: some(area),
            contains: some(contains),
            locality: some(locality),
            limit,
        },
    ))
}

/// Twilio's refusal of a search, in the API's terms.
fn search_refusal(e: RestError) -> NumbersError {
    match e {
        RestError::Refused {
            code: Some(21451), ..
        } => NumbersError::invalid("area_code", "Twilio does not know this area code"),
        e if e.code() == Some(20404) || e.is_not_found() => {
            NumbersError::invalid("country", "Twilio offers no numbers in this country")
        }
        RestError::Refused { message, .. } => {
            NumbersError::FailedPrecondition(format!("Twilio refused the search: {message}"))
        }
        RestError::Unavailable(why) => {
            tracing::warn!(reason = %why, "number search failed");
            NumbersError::Unavailable(TWILIO_UNAVAILABLE.into())
        }
    }
}

/// Numbers on offer, each with the monthly price of its kind (absent when the Pricing API
/// cannot be read).
pub async fn search(
    n: &Numbers,
    r: &pb::SearchAvailableNumbersRequest,
) -> Result<Vec<pb::AvailableNumber>, NumbersError> {
    let (country, kind, filters) = parse_search(r)?;
    let rest = n.rest()?;
    let found = rest
        .search(&country, kind, &filters)
        .await
        .map_err(search_refusal)?;
    let price = if found.is_empty() {
        None
    } else {
        match rest.monthly_price(&country, kind).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "number prices unavailable");
                None
            }
        }
    };
    Ok(found
        .into_iter()
        .map(|a| pb::AvailableNumber {
            phone_number: a.phone_number,
            friendly_name: a.friendly_name,
            locality: a.locality.unwrap_or_default(),
            region: a.region.unwrap_or_default(),
            country: if a.iso_country.is_empty() {
                country.clone()
            } else {
                a.iso_country
            },
            monthly_price: price.map(|p| pb::Price {
                currency: p.currency().to_owned(),
                amount_minor: p.minor,
            }),
        })
        .collect())
}

/// The tenant-svc admin client with media-svc's own `tenant:numbers` token.
fn tenant_admin(
    n: &Numbers,
) -> TenantAdminServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AttachToken>,
> {
    let source = n
        .identity
        .service_tokens(names::TENANT_SVC, &[scope::TENANT_NUMBERS]);
    TenantAdminServiceClient::with_interceptor(n.peers.tenant_channel(), AttachToken(source))
}

/// Routes `number` to `customer` at tenant-svc. `Ok(true)` when routed (also when it already
/// was); `Ok(false)` when tenant-svc routes it to someone else; `Err` when tenant-svc could not
/// answer (drift for reconcile).
pub async fn route(n: &Numbers, customer: CustomerId, number: &str) -> Result<bool, tonic::Status> {
    let account = n
        .rest
        .as_ref()
        .map(|r| r.account().as_str().to_owned())
        .unwrap_or_default();
    let answer = tokio::time::timeout(
        n.peers.timeout() * 4,
        tenant_admin(n).assign_phone_number(AssignPhoneNumberRequest {
            customer_id: customer.get(),
            number: number.to_owned(),
            twilio_account_sid: account,
        }),
    )
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("tenant-svc did not answer"))?;
    match answer {
        Ok(_) => Ok(true),
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            Ok(routed_here(n, customer, number).await?)
        }
        Err(s) => Err(s),
    }
}

/// Whether tenant-svc routes `number` to `customer` (its customer record lists it).
pub async fn routed_here(
    n: &Numbers,
    customer: CustomerId,
    number: &str,
) -> Result<bool, tonic::Status> {
    let record = n.peers.customer(customer).await.map_err(|e| match e {
        crate::peers::PeerError::Status(s) => s,
        other => tonic::Status::unavailable(other.to_string()),
    })?;
    Ok(record.phone_numbers.iter().any(|p| p.number == number))
}

/// Stops routing `number` to `customer` (NOT_FOUND at tenant-svc counts as done).
pub async fn unroute(n: &Numbers, customer: CustomerId, number: &str) -> Result<(), tonic::Status> {
    let answer = tokio::time::timeout(
        n.peers.timeout() * 4,
        tenant_admin(n).release_phone_number(ReleasePhoneNumberRequest {
            customer_id: customer.get(),
            number: number.to_owned(),
        }),
    )
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("tenant-svc did not answer"))?;
    match answer {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        Err(s) => Err(s),
    }
}

/// Routes, logging (without the number) when it could not.
async fn route_or_log(n: &Numbers, customer: CustomerId, number: &str) {
    match route(n, customer, number).await {
        Ok(true) => {}
        Ok(false) => tracing::error!(
            customer_id = customer.get(),
            "number held here is routed to another customer at tenant-svc"
        ),
        Err(s) => tracing::warn!(
            customer_id = customer.get(),
            code = ?s.code(),
            "number not routed yet (reconcile will)"
        ),
    }
}

/// Buys `number` for `customer` once per `request_id` (see the module docs).
pub async fn purchase(
    n: &Numbers,
    customer: CustomerId,
    number: &str,
    request_id: &str,
) -> Result<NumberRow, NumbersError> {
    let number = parse_number("phone_number", number)?;
    let request_id = Uuid::parse_str(request_id.trim())
        .map_err(|_| NumbersError::invalid("request_id", "must be a UUID"))?;
    let rest = n.rest()?;
    require_customer(n, customer).await?;
    let price = monthly_price(rest, number.as_str()).await;
    let (row, fresh) = record_intent(n, customer, &number, request_id, price).await?;
    match row.state {
        NumberState::Purchasing if fresh => {}
        // The same request again: the answer of the first, or its lost answer resolved by a
        // lookup, never a second POST.
        NumberState::Purchasing => return resolve_pending(n, customer, &row).await,
        NumberState::Failed => {
            return Err(NumbersError::FailedPrecondition(
                "this purchase did not happen; buy again with a new request_id".into(),
            ));
        }
        _ => return Ok(row),
    }
    tracing::info!(customer_id = customer.get(), "buying a number");
    match rest.purchase(number.as_str(), &n.hooks).await {
        Ok(bought) => activate(n, customer, &row, &bought).await,
        Err(RestError::Refused {
            status,
            code,
            message,
        }) => {
            n.db.tenant_tx(customer, async |tx| {
                store::delete_intent(tx, customer, row.number_id).await
            })
            .await?;
            tracing::info!(
                customer_id = customer.get(),
                status,
                ?code,
                "Twilio refused the purchase"
            );
            Err(match code {
                Some(21421 | 21422) => not_available(),
                _ => NumbersError::FailedPrecondition(format!(
                    "Twilio refused the purchase: {message}"
                )),
            })
        }
        Err(RestError::Unavailable(why)) => {
            tracing::warn!(customer_id = customer.get(), reason = %why, "purchase answer lost; looking the number up");
            resolve_pending(n, customer, &row).await
        }
    }
}

/// The purchase's intent (PURCHASING), committed before Twilio is asked, under the tenant's
/// lock with the limit checked; or the row this request already has (`fresh` false).
async fn record_intent(
    n: &Numbers,
    customer: CustomerId,
    number: &PhoneNumber,
    request_id: Uuid,
    price: Option<Money>,
) -> Result<(NumberRow, bool), NumbersError> {
    let limit = i64::from(n.per_tenant);
    n.db.tenant_tx(customer, async |tx| {
        store::lock_tenant(tx, customer).await?;
        if let Some(row) = store::by_request(tx, customer, request_id).await? {
            if row.phone_number != number.as_str() {
                return Err(NumbersError::invalid(
                    "request_id",
                    "was already used for another number",
                ));
            }
            return Ok((row, false));
        }
        let held = store::count_held(tx, customer).await?;
        if held >= limit {
            return Err(NumbersError::FailedPrecondition(format!(
                "this customer holds {held} numbers, the most allowed"
            )));
        }
        let intent = NewNumber {
            phone_number: number.as_str(),
            request_id: Some(request_id),
            twilio_sid: None,
            state: NumberState::Purchasing,
            origin: NumberOrigin::Purchased,
            price,
            webhooks_ok: false,
        };
        match store::insert(tx, customer, &intent).await {
            Ok(row) => Ok((row, true)),
            Err(e) if store::is_unique_violation(&e) => Err(not_available()),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// The monthly price of `number`'s kind in its country (Twilio's Pricing API), best effort:
/// `None` when the country or the price cannot be told.
async fn monthly_price(rest: &RestClient, number: &str) -> Option<Money> {
    let parsed = phonenumber::parse(None, number).ok()?;
    let country = parsed.country().id()?;
    let kind = match parsed.number_type(&phonenumber::metadata::DATABASE) {
        phonenumber::Type::TollFree => Kind::TollFree,
        phonenumber::Type::Mobile => Kind::Mobile,
        _ => Kind::Local,
    };
    match rest.monthly_price(country.as_ref(), kind).await {
        Ok(price) => price,
        Err(e) => {
            tracing::warn!(error = %e, "number price unavailable");
            None
        }
    }
}

fn not_available() -> NumbersError {
    NumbersError::FailedPrecondition("number not available".into())
}

/// A purchase whose answer is unknown: looked up at Twilio; found -> ACTIVE and routed.
pub async fn resolve_pending(
    n: &Numbers,
    customer: CustomerId,
    row: &NumberRow,
) -> Result<NumberRow, NumbersError> {
    let rest = n.rest()?;
    match rest.lookup(&row.phone_number).await {
        Ok(Some(found)) => activate(n, customer, row, &found).await,
        Ok(None) => Err(NumbersError::Unavailable(
            "Twilio did not confirm the purchase yet; retry with the same request_id".into(),
        )),
        Err(e) => {
            tracing::warn!(customer_id = customer.get(), error = %e, "number lookup failed");
            Err(NumbersError::Unavailable(TWILIO_UNAVAILABLE.into()))
        }
    }
}

/// Records the bought number ACTIVE and routes it.
async fn activate(
    n: &Numbers,
    customer: CustomerId,
    row: &NumberRow,
    bought: &IncomingNumber,
) -> Result<NumberRow, NumbersError> {
    let ok = n.hooks.problems(bought).is_empty();
    let sid = bought.sid.clone();
    let row =
        n.db.tenant_tx(customer, async |tx| {
            store::activate(tx, customer, row.number_id, &sid, ok).await
        })
        .await?;
    tracing::info!(customer_id = customer.get(), "number bought");
    route_or_log(n, customer, &row.phone_number).await;
    Ok(row)
}

/// Gives `number` of `customer` up: RELEASING, routing stopped, released at Twilio,
/// RELEASED. Answers RELEASING when Twilio could not be reached (reconcile finishes it).
pub async fn release(
    n: &Numbers,
    customer: CustomerId,
    number: &str,
) -> Result<NumberRow, NumbersError> {
    let number = parse_number("phone_number", number)?;
    let rest = n.rest()?;
    let row =
        n.db.tenant_tx(customer, async |tx| {
            let Some(row) = store::held(tx, customer, number.as_str()).await? else {
                return Err(NumbersError::NotFound);
            };
            if row.state == NumberState::Purchasing {
                return Err(NumbersError::FailedPrecondition(
                    "the number's purchase is not finished yet".into(),
                ));
            }
            Ok(store::set_state(tx, customer, row.number_id, NumberState::Releasing).await?)
        })
        .await?;
    finish_release(n, rest, customer, &row).await
}

/// Stops routing and releases at Twilio a RELEASING row.
pub async fn finish_release(
    n: &Numbers,
    rest: &super::client::RestClient,
    customer: CustomerId,
    row: &NumberRow,
) -> Result<NumberRow, NumbersError> {
    if let Err(s) = unroute(n, customer, &row.phone_number).await {
        tracing::warn!(customer_id = customer.get(), code = ?s.code(), "routing not stopped");
        return Err(NumbersError::Unavailable(
            "tenant-svc is unavailable, retry later".into(),
        ));
    }
    if let Some(sid) = &row.twilio_sid
        && let Err(e) = rest.release(sid).await
    {
        tracing::warn!(customer_id = customer.get(), error = %e, "release at Twilio pending");
        return Ok(row.clone());
    }
    let row =
        n.db.tenant_tx(customer, async |tx| {
            store::set_state(tx, customer, row.number_id, NumberState::Released).await
        })
        .await?;
    tracing::info!(customer_id = customer.get(), "number released");
    Ok(row)
}

/// What an import found and did.
pub struct Imported {
    /// The row.
    pub row: NumberRow,
    /// What was wrong with its webhooks.
    pub problems: Vec<String>,
    /// Whether they were corrected.
    pub fixed: bool,
}

/// The customer exists and is active (tenant-svc issues it a token), before anything is asked
/// of Twilio or stored: INVALID_ARGUMENT naming `customer_id` for an unknown one,
/// FAILED_PRECONDITION for a pending or suspended one (nothing billable before approval).
async fn require_customer(n: &Numbers, customer: CustomerId) -> Result<(), NumbersError> {
    match n.peers.customer(customer).await {
        Ok(_) => Ok(()),
        Err(crate::peers::PeerError::Status(s)) if s.code() == tonic::Code::NotFound => Err(
            NumbersError::invalid("customer_id", "no customer has this id"),
        ),
        Err(crate::peers::PeerError::Status(s)) if s.code() == tonic::Code::FailedPrecondition => {
            Err(NumbersError::FailedPrecondition(
                "the customer is not active (pending approval or suspended)".into(),
            ))
        }
        Err(e) => {
            tracing::warn!(customer_id = customer.get(), error = %e.short(), "customer not checked");
            Err(NumbersError::Unavailable(
                "tenant-svc is unavailable, retry later".into(),
            ))
        }
    }
}

/// Takes a number already on the account into the platform for `customer`.
pub async fn import(
    n: &Numbers,
    customer: CustomerId,
    number: &str,
    fix: bool,
    origin: NumberOrigin,
) -> Result<Imported, NumbersError> {
    let number = parse_number("phone_number", number)?;
    let origin = match origin {
        NumberOrigin::Unspecified | NumberOrigin::Imported => NumberOrigin::Imported,
        NumberOrigin::Ported => NumberOrigin::Ported,
        NumberOrigin::Purchased => {
            return Err(NumbersError::invalid(
                "origin",
                "must be IMPORTED or PORTED",
            ));
        }
    };
    let rest = n.rest()?;
    require_customer(n, customer).await?;
    let Some(mut found) = rest.lookup(number.as_str()).await.map_err(|e| {
        tracing::warn!(customer_id = customer.get(), error = %e, "number lookup failed");
        NumbersError::Unavailable(TWILIO_UNAVAILABLE.into())
    })?
    else {
        return Err(NumbersError::NotFound);
    };
    let problems = n.hooks.problems(&found);
    let mut fixed = false;
    if fix && !problems.is_empty() {
        found = rest.set_webhooks(&found.sid, &n.hooks).await.map_err(|e| {
            tracing::warn!(customer_id = customer.get(), error = %e, "webhook update failed");
            NumbersError::Unavailable(TWILIO_UNAVAILABLE.into())
        })?;
        fixed = true;
    }
    let ok = n.hooks.problems(&found).is_empty();
    let sid = found.sid.clone();
    let row =
        n.db.tenant_tx(customer, async |tx| {
            store::lock_tenant(tx, customer).await?;
            if let Some(row) = store::held(tx, customer, number.as_str()).await? {
                store::set_webhooks_ok(tx, customer, row.number_id, ok).await?;
                return Ok(row);
            }
            let new = NewNumber {
                phone_number: number.as_str(),
                request_id: None,
                twilio_sid: Some(&sid),
                state: NumberState::Active,
                origin,
                price: None,
                webhooks_ok: ok,
            };
            match store::insert(tx, customer, &new).await {
                Ok(row) => Ok(row),
                Err(e) if store::is_unique_violation(&e) => Err(NumbersError::AlreadyExists(
                    "another customer holds this number".into(),
                )),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
    tracing::info!(customer_id = customer.get(), fixed, "number imported");
    route_or_log(n, customer, &row.phone_number).await;
    Ok(Imported {
        row,
        problems,
        fixed,
    })
}
