//! The per-tenant call limits: calls in progress at once by package tier (shared by inbound
//! `RegisterCall` and outbound placements) and outbound calls per rolling hour. The tenant's tier
//! is cached ([`Outbound::tier`]); counting and adding a call happen under the tenant's advisory
//! lock, and a placement holds its slot with a reservation while Twilio is asked
//! ([`reserve`]; see [`super`] for why).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mesh::api::media::{CallDirection, OverCapAction};
use mesh::domain::CustomerId;

use secrecy::ExposeSecret as _;

use super::address::ClientAddress;
use crate::error::MediaError;
use crate::peers::Peers;
use crate::runtime::Runtime;
use crate::store::callback_tasks::Reason;
use crate::store::limits::{self as sql, ReservationId};
use crate::store::message_calls as messages;
use crate::store::{self, CallRow, NewCall};

/// How long a tenant's package tier is trusted for `RegisterCall` before tenant-svc is asked
/// again.
pub const TIER_CACHE_TTL: Duration = Duration::from_secs(60);

/// How long the fallback (first tier) is used after tenant-svc could not say, before asking
/// again: a tenant-svc outage then costs one lookup per tenant every few seconds, not one per
/// call.
pub const TIER_FALLBACK_TTL: Duration = Duration::from_secs(5);

/// `retry-after` of a refusal by the concurrent-call limit: calls end at their own pace.
pub const CONCURRENCY_RETRY_AFTER_SECS: u64 = 30;

/// `x-neurosphere-limit` of a refusal by the rolling-hour limit.
pub const LIMIT_RATE: &str = "rate";

/// `x-neurosphere-limit` of a refusal by the concurrent-call limit.
pub const LIMIT_CONCURRENCY: &str = "concurrency";

/// `x-neurosphere-limit` of a refusal at the monthly cap of the tenant's package.
pub const LIMIT_MONTHLY_CAP: &str = "monthly-cap";

/// `x-neurosphere-limit` of a refusal by the per-address allowance.
pub const LIMIT_ADDRESS: &str = "address";

/// Limits on how many calls a tenant may have and place.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Calls in progress at once per package tier, in the order configured; a tier that is not
    /// listed gets the first entry's limit.
    pub concurrent_by_tier: Vec<(String, u32)>,
    /// Outbound calls per rolling hour when the tenant's own `public_calls_per_hour` is 0.
    pub outbound_per_hour: u32,
    /// Calls one client address may place through a tenant's public endpoint, per window.
    pub per_address: (u32, Duration),
    /// The longest call when the tenant's `max_call_minutes` is 0.
    pub max_call: Duration,
}

impl Limits {
    /// Parses `MEDIA_CONCURRENT_CALLS_BY_TIER` (`tier=n,tier=n`).
    pub fn parse_tiers(s: &str) -> Result<Vec<(String, u32)>, String> {
        let mut tiers = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (tier, n) = part
                .split_once('=')
                .ok_or_else(|| format!("expected `tier=n`, got {part:?}"))?;
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| format!("limit of tier {:?} is not a number", tier.trim()))?;
            if n == 0 {
                return Err(format!(
                    "limit of tier {:?} must be at least 1",
                    tier.trim()
                ));
            }
            tiers.push((tier.trim().to_owned(), n));
        }
        if tiers.is_empty() {
            return Err("at least one `tier=n` is needed".into());
        }
        Ok(tiers)
    }

    /// The longest call of a tenant whose `max_call_minutes` is `minutes` (0: [`Self::max_call`]).
    pub fn max_call_for(&self, minutes: u32) -> Duration {
        match minutes {
            0 => self.max_call,
            m => Duration::from_secs(u64::from(m) * 60),
        }
    }

    /// The concurrent-call limit of `tier`.
    pub fn concurrent_for(&self, tier: &str) -> u32 {
        self.concurrent_by_tier
            .iter()
            .find(|(t, _)| t == tier)
            .or(self.concurrent_by_tier.first())
            .map_or(1, |(_, n)| *n)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrent_by_tier: vec![
                ("starter".into(), 5),
                ("professional".into(), 20),
                ("enterprise".into(), 100),
            ],
            outbound_per_hour: 20,
            per_address: (3, Duration::from_secs(24 * 3600)),
            max_call: Duration::from_secs(3600),
        }
    }
}

/// Outbound-call settings of the service and the per-tenant tier cache.
#[derive(Clone)]
pub struct Outbound {
    /// Concurrent and hourly limits.
    pub limits: Limits,
    /// The gateway's public base URL, without a trailing slash.
    pub public_base_url: String,
    tiers: Arc<Mutex<HashMap<CustomerId, (String, Instant)>>>,
}

impl Outbound {
    /// Settings from the call configuration.
    pub fn new(limits: Limits, public_base_url: &str) -> Self {
        Self {
            limits,
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            tiers: Arc::default(),
        }
    }

    pub(super) fn remember_tier(&self, customer: CustomerId, tier: &str, ttl: Duration) {
        self.tiers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(customer, (tier.to_owned(), Instant::now() + ttl));
    }

    /// The tenant's package tier: cached for [`TIER_CACHE_TTL`]; when tenant-svc cannot say in
    /// time, the first configured tier (logged), for [`TIER_FALLBACK_TTL`].
    pub async fn tier(&self, peers: &Peers, customer: CustomerId) -> String {
        {
            let cache = self.tiers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((tier, until)) = cache.get(&customer)
                && Instant::now() < *until
            {
                return tier.clone();
            }
        }
        match tokio::time::timeout(peers.timeout(), peers.customer(customer)).await {
            Ok(Ok(c)) => {
                self.remember_tier(customer, &c.package_tier, TIER_CACHE_TTL);
                c.package_tier
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.short(),
                    _ => "timed out".to_owned(),
                };
                let first = self
                    .limits
                    .concurrent_by_tier
                    .first()
                    .map(|(t, _)| t.clone())
                    .unwrap_or_default();
                metrics::counter!("media_tier_fallback_total").increment(1);
                tracing::warn!(customer_id = customer.get(), %error, tier = %first, "package tier unavailable; using the first tier's call limit");
                self.remember_tier(customer, &first, TIER_FALLBACK_TTL);
                first
            }
        }
    }
}

/// "1 call", "2 calls".
fn calls(n: i64) -> String {
    if n == 1 {
        "1 call".into()
    } else {
        format!("{n} calls")
    }
}

/// "1 outbound call", "2 outbound calls".
fn outbound_calls(n: i64) -> String {
    if n == 1 {
        "1 outbound call".into()
    } else {
        format!("{n} outbound calls")
    }
}

/// The refusal by the concurrent-call limit of `tier`.
fn concurrency_refusal(in_progress: i64, tier: &str) -> MediaError {
    MediaError::LimitReached {
        message: format!(
            "customer has {} in progress, the limit of package tier `{tier}`",
            calls(in_progress)
        ),
        retry_after_secs: CONCURRENCY_RETRY_AFTER_SECS,
        limit: LIMIT_CONCURRENCY,
    }
}

/// Counts, under the tenant's lock, the calls placed from the client's address (when the
/// request came through the public endpoint: `address` is its keyed hash) in the allowance's
/// window, the tenant's outbound calls of the last hour and its calls in progress; when all are
/// under their limits (the per-address allowance, `per_hour`, the concurrent limit of `tier`),
/// charges the address and reserves a slot for the call being placed. Commits at once: Twilio
/// is asked outside it. A charge stays when Twilio then refuses: it counts attempts.
pub(super) async fn reserve(
    rt: &Runtime,
    customer: CustomerId,
    per_hour: u32,
    tier: &str,
    address: Option<&ClientAddress>,
) -> Result<ReservationId, MediaError> {
    let concurrent = i64::from(rt.outbound.limits.concurrent_for(tier));
    let (per_address, window) = rt.outbound.limits.per_address;
    rt.db
        .tenant_tx(customer, async |tx| {
            sql::lock_call_limits(tx, customer).await?;
            let hash = match address {
                Some(a) => {
                    let key = rt.webhooks.hash_key(tx).await?;
                    let hash = a.keyed_hash(key.expose_secret(), customer);
                    address_allowance(tx, customer, &hash, per_address, window).await?;
                    Some(hash)
                }
                None => None,
            };
            let (placed, retry) =
                sql::outbound_last_hour(tx, customer, i64::from(per_hour)).await?;
            if let Some(retry_after_secs) = retry {
                return Err(MediaError::LimitReached {
                    message: format!(
                        "customer has placed {} in the last hour, the limit is {per_hour}",
                        outbound_calls(placed)
                    ),
                    retry_after_secs,
                    limit: LIMIT_RATE,
                });
            }
            let in_progress = sql::calls_in_progress(tx, customer, true).await?;
            if in_progress >= concurrent {
                return Err(concurrency_refusal(in_progress, tier));
            }
            if let Some(hash) = &hash {
                sql::charge_address(tx, customer, hash, window).await?;
            }
            sql::reserve_outbound(tx, customer).await
        })
        .await
}

/// The per-address allowance: refused when the address has placed `limit` calls for this
/// tenant within `window`.
async fn address_allowance(
    tx: &mesh::db::Tx<'_>,
    customer: CustomerId,
    hash: &[u8; 32],
    limit: u32,
    window: Duration,
) -> Result<(), MediaError> {
    let (used, retry) = sql::address_charges(tx, customer, hash, window, i64::from(limit)).await?;
    match retry {
        None => Ok(()),
        Some(retry_after_secs) => Err(MediaError::LimitReached {
            message: format!(
                "this address has placed {} for this customer in the last {} s, the limit is {limit}",
                outbound_calls(used),
                window.as_secs()
            ),
            retry_after_secs,
            limit: LIMIT_ADDRESS,
        }),
    }
}

/// What one registration found, under the tenant's limit lock.
enum Registration {
    /// The call's row, and whether this registration created it.
    Row(Box<CallRow>, bool),
    /// At the concurrent-call limit, answered for the message flow (stored live, marked
    /// `busy`): the row and the calls in progress.
    Busy(Box<CallRow>, i64),
    /// Refused at the concurrent-call limit: now (with the count, and the message-taking calls
    /// of the tenant and the platform when an inbound call found them at their caps), or
    /// before (a repeat).
    Refused(Option<(i64, Option<(i64, i64)>)>),
    /// At the monthly cap of the tenant's package, answered for the message flow (as `Busy`).
    CapMessage(Box<CallRow>),
    /// Refused at the monthly cap (stored as refused, like a call at the concurrent limit).
    CapRefused,
}

/// A new call refused at the monthly cap: counted, logged, and the busy answer's status.
fn cap_refused(customer: CustomerId) -> MediaError {
    metrics::counter!("media_calls_refused_total", "reason" => "monthly_cap").increment(1);
    tracing::info!(
        customer_id = customer.get(),
        "new call refused at the monthly cap"
    );
    MediaError::LimitReached {
        message: "the customer's monthly minutes are used up".into(),
        retry_after_secs: 3600,
        limit: LIMIT_MONTHLY_CAP,
    }
}

/// At the monthly cap of the tenant's package (minutes used this month): a new inbound call
/// goes to the message flow when the package says so and a message place is free (the caps on
/// message-taking calls hold, as for a busy call); every other new call is refused and stored as
/// refused. `None` below the cap (or without one).
async fn at_cap(
    tx: &mesh::db::Tx<'_>,
    customer: CustomerId,
    call: &NewCall,
    caps: messages::Caps,
) -> Result<Option<Registration>, MediaError> {
    let Some(action) = crate::billing::caps::reached(tx).await? else {
        return Ok(None);
    };
    if call.direction == CallDirection::Inbound && action == OverCapAction::MessageFlow {
        // The tenant's lock is held; the message-call lock is always taken after it.
        messages::lock(tx).await?;
        let (mine, all) = messages::in_progress(tx, customer).await?;
        if messages::fits(caps, mine, all) {
            let (mut row, _) = store::calls::register_call(tx, customer, call).await?;
            messages::mark(tx, &call.call_sid, Reason::Busy).await?;
            row.message_flow = Some(Reason::Busy.as_str().to_owned());
            return Ok(Some(Registration::CapMessage(Box::new(row))));
        }
    }
    store::calls::register_refused(tx, customer, call).await?;
    Ok(Some(Registration::CapRefused))
}

/// `RegisterCall`: a repeat of a known CallSid returns the stored call (stamped as answered
/// with a stream if it is live and was not yet, see `answer_with_stream`); a new call is stored
/// as live only while the tenant has fewer calls in progress than its tier allows (counted under
/// the same lock as outbound placements; calls taking a message are not counted).
///
/// At the limit, an INBOUND call is answered for the message flow while the message-taking
/// calls are under both caps (the tenant's and the platform's, counted in PostgreSQL under the
/// message-call lock, [`store::message_calls`]): it is stored live, marked `busy`, and gets the
/// normal stream ticket; its call driver plays the message prompt and opens no agent session.
/// Beyond a cap, or for an outbound call, the call is refused (RESOURCE_EXHAUSTED) and the
/// refusal recorded (a final row, `call-limit`), so a repeat of that CallSid is refused the same
/// way even once a slot is free. A repeat of a busy call gets its stored answer (the same
/// ticket). An OUTBOUND_API registration does not count reservations: the one it would find is,
/// in practice, this very call, whose Twilio answer is being stored.
pub async fn register(
    rt: &Runtime,
    customer: CustomerId,
    call: &NewCall,
) -> Result<(CallRow, bool), MediaError> {
    let tier = rt.outbound.tier(&rt.peers, customer).await;
    let limit = i64::from(rt.outbound.limits.concurrent_for(&tier));
    let with_reservations = call.direction != CallDirection::OutboundApi;
    let caps = rt.messages.caps();
    let registration = rt
        .db
        .tenant_tx(customer, async |tx| {
            // Serialised per tenant by the lock; the lookup and the count are sent with it in
            // one round trip and run once it is held, so a registration of the same CallSid
            // that committed while we waited is seen, and so are calls counted by it.
            let ((), existing, in_progress) = tokio::try_join!(
                sql::lock_call_limits(tx, customer),
                store::calls::get_call(tx, &call.call_sid, false),
                sql::calls_in_progress(tx, customer, with_reservations),
            )?;
            if let Some(existing) = existing {
                if existing.was_refused() {
                    return Ok(Registration::Refused(None));
                }
                let row = store::calls::answer_with_stream(tx, existing).await?;
                return Ok(Registration::Row(Box::new(row), false));
            }
            if let Some(capped) = at_cap(tx, customer, call, caps).await? {
                return Ok(capped);
            }
            if in_progress < limit {
                let (row, created) = store::calls::register_call(tx, customer, call).await?;
                return Ok(Registration::Row(Box::new(row), created));
            }
            let mut full = None;
            if call.direction == CallDirection::Inbound {
                // The tenant's lock is held; the message-call lock is always taken after it.
                messages::lock(tx).await?;
                let (mine, all) = messages::in_progress(tx, customer).await?;
                if messages::fits(caps, mine, all) {
                    let (mut row, _) = store::calls::register_call(tx, customer, call).await?;
                    messages::mark(tx, &call.call_sid, Reason::Busy).await?;
                    row.message_flow = Some(Reason::Busy.as_str().to_owned());
                    return Ok(Registration::Busy(Box::new(row), in_progress));
                }
                full = Some((mine, all));
            }
            store::calls::register_refused(tx, customer, call).await?;
            Ok::<_, MediaError>(Registration::Refused(Some((in_progress, full))))
        })
        .await?;
    match registration {
        Registration::Row(row, created) => Ok((*row, created)),
        Registration::Busy(row, in_progress) => {
            metrics::counter!("media_calls_busy_to_messages_total").increment(1);
            tracing::info!(customer_id = customer.get(), in_progress, %tier, "new call at the concurrent-call limit answered for the message flow");
            Ok((*row, true))
        }
        Registration::Refused(Some((in_progress, full))) => {
            metrics::counter!("media_calls_refused_total", "reason" => "concurrency").increment(1);
            if let Some((tenant_messages, platform_messages)) = full {
                metrics::counter!("media_message_flows_refused_total", "reason" => "busy")
                    .increment(1);
                tracing::warn!(customer_id = customer.get(), in_progress, %tier, tenant_messages, platform_messages, "new call refused at the concurrent-call limit: message-taking calls at their cap");
            } else {
                tracing::info!(customer_id = customer.get(), in_progress, %tier, "new call refused at the concurrent-call limit");
            }
            Err(concurrency_refusal(in_progress, &tier))
        }
        Registration::CapMessage(row) => {
            metrics::counter!("media_calls_capped_to_messages_total").increment(1);
            tracing::info!(
                customer_id = customer.get(),
                "new call at the monthly cap answered for the message flow"
            );
            Ok((*row, true))
        }
        Registration::CapRefused => Err(cap_refused(customer)),
        Registration::Refused(None) => Err(MediaError::LimitReached {
            message: "this call was refused at the customer's concurrent-call limit".into(),
            retry_after_secs: CONCURRENCY_RETRY_AFTER_SECS,
            limit: LIMIT_CONCURRENCY,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse_and_unknown_tiers_get_the_first_limit() {
        let limits = Limits {
            concurrent_by_tier: Limits::parse_tiers(" starter=2, professional = 7 ").unwrap(),
            outbound_per_hour: 1,
            per_address: (1, Duration::from_secs(1)),
            max_call: Duration::from_secs(1),
        };
        assert_eq!(limits.concurrent_for("professional"), 7);
        assert_eq!(limits.concurrent_for("starter"), 2);
        assert_eq!(limits.concurrent_for("gold"), 2);
        assert!(Limits::parse_tiers("starter").is_err());
        assert!(Limits::parse_tiers("starter=0").is_err());
        assert!(Limits::parse_tiers("starter=x").is_err());
        assert!(Limits::parse_tiers("").is_err());
    }
}
