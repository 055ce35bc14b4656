//! Outbound calls: `PlaceOutboundCall`'s checks and limits ([`place`]), and the per-tenant limit
//! on calls in progress that inbound registrations share ([`register`]).
//!
//! [`place`] fetches the tenant's customer record and outbound settings from tenant-svc
//! (concurrently, fresh on every call: a do-not-call entry or a lowered limit applies at once),
//! then checks in this order, stopping at the first refusal: the browser origin, the destination
//! (E.164, allowed region and kind of number, do-not-call), the persona, the context (markup
//! stripped, length), the caller id, the limits (calls from the client's address for this tenant
//! when the request came through the public endpoint, calls placed in the rolling hour, calls in
//! progress), and finally asks Twilio, with the tenant's longest call as `TimeLimit`. Nothing is
//! dialled and nothing is stored on any refusal.
//!
//! Race-free limits without holding anything across Twilio's request: the count runs under a
//! per-tenant advisory lock ([`store::lock_call_limits`]) in a transaction that also inserts a
//! *reservation* and commits at once; Twilio is asked outside any transaction; the reservation
//! is then swapped for the call row (or deleted when Twilio refuses) in one transaction. Holding
//! the lock across the request instead would be simpler, but it would keep a pooled connection
//! and the tenant's lock for up to Twilio's 10 s timeout: a slow Twilio could drain the pool for
//! every tenant, and the tenant's inbound `RegisterCall`s would queue behind the lock (and hit
//! the statement timeout) while their callers wait for an answer. A reservation counts for a
//! minute at most, so a crash between the steps blocks nothing for long. The Twilio request and
//! the swap run in a spawned task, so a client that goes away mid-request cannot leave a placed
//! call unrecorded.
//!
//! Parts: [`checks`] (the request against the tenant's settings), [`limits`] (the limits, the
//! tier cache, the reservation, and `RegisterCall`'s limit), and here the order of it all and
//! the Twilio request.

pub mod address;
pub mod checks;
pub mod limits;

use mesh::api::media::PlaceOutboundCallRequest;
use mesh::domain::CustomerId;
use mesh::telemetry::redact_phone;

use self::address::ClientAddress;
use crate::error::MediaError;
use crate::peers::PeerError;
use crate::runtime::Runtime;
use crate::store::limits::{ReservationId, release_reservation};
use crate::store::{self, CallRow, NewOutboundCall};
use crate::twilio::{self, CreateCallError};

pub use checks::{MAX_CONTEXT_CHARS, strip_markup};
pub use limits::{
    CONCURRENCY_RETRY_AFTER_SECS, LIMIT_ADDRESS, LIMIT_CONCURRENCY, LIMIT_RATE, Limits, Outbound,
    TIER_CACHE_TTL, TIER_FALLBACK_TTL, register,
};

fn peer_unavailable(customer: CustomerId, what: &str, e: &PeerError) -> MediaError {
    if let PeerError::Status(s) = e
        && s.code() == tonic::Code::NotFound
    {
        return MediaError::FailedPrecondition("this customer does not exist".into());
    }
    metrics::counter!("media_outbound_calls_total", "result" => "tenant-svc").increment(1);
    tracing::warn!(customer_id = customer.get(), error = %e.short(), "{what} unavailable; outbound call refused");
    MediaError::Unavailable(format!(
        "the customer's {what} are unavailable, retry later"
    ))
}

pub(crate) fn refused(reason: &'static str, e: MediaError) -> MediaError {
    metrics::counter!("media_outbound_calls_total", "result" => reason).increment(1);
    e
}

/// `PlaceOutboundCall`: checks, limits, Twilio, record (see the module documentation).
pub async fn place(
    rt: &Runtime,
    customer: CustomerId,
    r: &PlaceOutboundCallRequest,
) -> Result<CallRow, MediaError> {
    let (record, settings) = tokio::join!(
        rt.peers.customer(customer),
        rt.peers.outbound_settings(customer)
    );
    let record = record.map_err(|e| peer_unavailable(customer, "customer record", &e))?;
    let settings = settings
        .map_err(|e| peer_unavailable(customer, "outbound settings", &e))?
        .settings
        .unwrap_or_default();
    rt.outbound
        .remember_tier(customer, &record.package_tier, TIER_CACHE_TTL);
    // 1-5: the request against the tenant's settings.
    let address = ClientAddress::parse(&r.client_address)?;
    checks::origin(r, &record, &settings)?;
    let to = checks::destination(&r.to, &settings)?;
    let persona = checks::persona(&r.persona, &settings)?;
    let context = checks::context(&r.context)?;
    let (from, account) = checks::caller_id(customer, &r.from, &record, &rt.twilio)?;
    // 6. The limits, counted and reserved under the tenant's lock.
    let per_hour = match settings.public_calls_per_hour {
        0 => rt.outbound.limits.outbound_per_hour,
        n => n,
    };
    let reservation = limits::reserve(
        rt,
        customer,
        per_hour,
        &record.package_tier,
        address.as_ref(),
    )
    .await
    .map_err(|e| match e {
        e @ MediaError::LimitReached { limit, .. } => {
            tracing::info!(
                customer_id = customer.get(),
                limit,
                "outbound call refused by a limit"
            );
            refused(limit, e)
        }
        e => e,
    })?;
    // 7 and 8 in their own task: once Twilio is asked, the answer is recorded even if the
    // client is gone.
    let request = twilio::CreateCall {
        account,
        to,
        from,
        url: format!("{}/twilio/voice", rt.outbound.public_base_url),
        status_callback: format!("{}/twilio/status", rt.outbound.public_base_url),
        time_limit_secs: secs(rt.outbound.limits.max_call_for(settings.max_call_minutes)),
    };
    let placing = Placing {
        customer,
        reservation,
        request,
        persona,
        context,
    };
    tokio::spawn(placing.dial(rt.clone()))
        .await
        .map_err(|e| MediaError::Internal(format!("outbound call task failed: {e}")))?
}

/// A duration in whole seconds for Twilio (at least 1).
pub fn secs(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1)
}

/// A call whose slot is reserved, on its way to Twilio.
struct Placing {
    customer: CustomerId,
    reservation: ReservationId,
    request: twilio::CreateCall,
    persona: String,
    context: String,
}

impl Placing {
    /// Asks Twilio to place the call, then swaps the reservation for the call row (or releases
    /// it when Twilio refuses).
    async fn dial(self, rt: Runtime) -> Result<CallRow, MediaError> {
        let Placing {
            customer,
            reservation,
            request,
            persona,
            context,
        } = self;
        let created = match twilio::create_call(&rt.twilio, &request).await {
            Ok(created) => created,
            Err(e) => {
                let released = rt
                    .db
                    .tenant_tx(customer, async |tx| {
                        release_reservation(tx, customer, reservation).await
                    })
                    .await;
                if let Err(r) = released {
                    tracing::warn!(customer_id = customer.get(), error = %r, "reservation not released; it expires by itself");
                }
                return Err(twilio_refusal(customer, e));
            }
        };
        let call = NewOutboundCall {
            call_sid: created.sid.clone(),
            account_sid: request.account.clone(),
            callee: request.to.clone(),
            from: request.from.clone(),
            persona,
            context,
        };
        let row = rt
            .db
            .tenant_tx(customer, async |tx| {
                store::calls::store_outbound_call(tx, customer, reservation, &call).await
            })
            .await
            .inspect_err(|e| {
                tracing::error!(customer_id = customer.get(), call_sid = %created.sid, error = %e, "outbound call placed but not recorded; the gateway records it when the callee answers");
            })?;
        metrics::counter!("media_outbound_calls_total", "result" => "placed").increment(1);
        tracing::info!(
            customer_id = customer.get(),
            call_sid = %created.sid,
            to = %redact_phone(request.to.as_str()),
            twilio_status = %created.status.escape_debug(),
            persona = %call.persona.escape_debug(),
            "outbound call placed"
        );
        Ok(row)
    }
}

fn twilio_refusal(customer: CustomerId, e: CreateCallError) -> MediaError {
    match e {
        CreateCallError::Refused {
            status,
            code,
            message,
        } => {
            metrics::counter!("media_outbound_calls_total", "result" => "twilio-refused")
                .increment(1);
            tracing::warn!(
                customer_id = customer.get(),
                status,
                ?code,
                "Twilio refused an outbound call"
            );
            MediaError::FailedPrecondition(format!("Twilio refused the call: {message}"))
        }
        CreateCallError::Unavailable(m) => {
            metrics::counter!("media_outbound_calls_total", "result" => "twilio-unavailable")
                .increment(1);
            tracing::warn!(customer_id = customer.get(), error = %m, "Twilio unavailable; outbound call not placed");
            MediaError::Unavailable("Twilio is unavailable, retry later".into())
        }
        CreateCallError::BadAnswer(m) => {
            metrics::counter!("media_outbound_calls_total", "result" => "twilio-bad-answer")
                .increment(1);
            MediaError::Internal(format!("Twilio's answer to an outbound call: {m}"))
        }
    }
}
