//! Outbound calls: `PlaceOutboundCall`'s checks and limits ([`place`]), and the per-tenant limit
//! on calls in progress that inbound registrations share ([`register`]).
//!
//! [`place`] fetches the tenant's customer record and outbound settings from tenant-svc
//! (concurrently, fresh on every call: a do-not-call entry or a lowered limit applies at once),
//! then checks in this order, stopping at the first refusal: the browser origin, the destination
//! (E.164, allowed country, do-not-call), the persona, the context (markup stripped, length), the
//! caller id, the limits (calls placed in the rolling hour, calls in progress), and finally asks
//! Twilio. Nothing is dialled and nothing is stored on any refusal.
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mesh::api::media::{CallDirection, PlaceOutboundCallRequest};
use mesh::api::tenant::CustomerStatus;
use mesh::domain::{AccountSid, CustomerId, PhoneNumber};
use mesh::telemetry::redact_phone;

use crate::Runtime;
use crate::error::MediaError;
use crate::peers::{PeerError, Peers};
use crate::store::{self, CallRow, NewCall, NewOutboundCall};
use crate::twilio::{self, CreateCallError};

/// Longest context, in characters, after markup is stripped.
pub const MAX_CONTEXT_CHARS: usize = 2000;

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

/// Limits on how many calls a tenant may have and place.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Calls in progress at once per package tier, in the order configured; a tier that is not
    /// listed gets the first entry's limit.
    pub concurrent_by_tier: Vec<(String, u32)>,
    /// Outbound calls per rolling hour when the tenant's own `public_calls_per_hour` is 0.
    pub outbound_per_hour: u32,
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

    fn remember_tier(&self, customer: CustomerId, tier: &str, ttl: Duration) {
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

/// Strips markup from free text: tags (`<` followed by a letter, `/`, `!` or `?`, up to the next
/// `>`, or to the end when none follows) are removed, control characters other than newline are
/// removed, and surrounding whitespace is trimmed. A `<` that does not open a tag (`a < b`) stays.
pub fn strip_markup(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '<'
            && chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'))
        {
            for t in chars.by_ref() {
                if t == '>' {
                    break;
                }
            }
            continue;
        }
        if c.is_control() && c != '\n' {
            continue;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

/// At most `max` characters of client text for an error message, quoted and escaped.
fn quoted(text: &str, max: usize) -> String {
    let cut: String = text.chars().take(max).collect();
    format!("{cut:?}")
}

fn calls(n: i64) -> String {
    if n == 1 {
        "1 call".into()
    } else {
        format!("{n} calls")
    }
}

fn outbound_calls(n: i64) -> String {
    if n == 1 {
        "1 outbound call".into()
    } else {
        format!("{n} outbound calls")
    }
}

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

fn refused(reason: &'static str, e: MediaError) -> MediaError {
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

    // 1. The browser's origin, when the request came through the public endpoint.
    let origin = r.origin.trim();
    if !origin.is_empty()
        && !settings
            .cors_origins
            .iter()
            .any(|o| o.trim().eq_ignore_ascii_case(origin))
    {
        return Err(refused(
            "origin",
            MediaError::PermissionDenied(format!(
                "origin {} is not allowed for this customer",
                quoted(origin, 200)
            )),
        ));
    }
    if record.status == CustomerStatus::Suspended as i32 {
        return Err(refused(
            "suspended",
            MediaError::FailedPrecondition(
                "this customer is suspended: outbound calls are refused".into(),
            ),
        ));
    }

    // 2. The destination.
    let to = PhoneNumber::parse(&r.to).map_err(|e| refused("to", MediaError::invalid("to", e)))?;
    let country = to.country_code().to_string();
    if !settings
        .allowed_country_codes
        .iter()
        .any(|c| c.trim().trim_start_matches('+') == country)
    {
        let why = if settings.allowed_country_codes.is_empty() {
            " (outbound calls are not enabled: no destination country is allowed)"
        } else {
            ""
        };
        return Err(refused(
            "country",
            MediaError::FailedPrecondition(format!(
                "`to`: destination country +{country} is not allowed for this customer{why}"
            )),
        ));
    }
    // tenant-svc stores do-not-call entries normalised to E.164, like `to`.
    if settings.do_not_call.iter().any(|n| n.trim() == to.as_str()) {
        return Err(refused(
            "do-not-call",
            MediaError::FailedPrecondition(
                "`to`: the number is on this customer's do-not-call list".into(),
            ),
        ));
    }

    // 3. The persona: one of the tenant's, stored as the tenant spelled it.
    let requested = r.persona.trim();
    let persona = if requested.is_empty() {
        String::new()
    } else {
        settings
            .allowed_personas
            .iter()
            .map(|p| p.trim())
            .find(|p| p.eq_ignore_ascii_case(requested))
            .map(str::to_owned)
            .ok_or_else(|| {
                refused(
                    "persona",
                    MediaError::invalid(
                        "persona",
                        format!(
                            "{} is not one of this customer's allowed personas",
                            quoted(requested, 60)
                        ),
                    ),
                )
            })?
    };

    // 4. The context.
    let context = strip_markup(&r.context);
    if context.chars().count() > MAX_CONTEXT_CHARS {
        return Err(refused(
            "context",
            MediaError::invalid(
                "context",
                "is longer than 2,000 characters (after markup is removed)",
            ),
        ));
    }

    // 5. The caller id: one of the tenant's own numbers, and the account to place it from.
    let number = if r.from.trim().is_empty() {
        record.phone_numbers.first().ok_or_else(|| {
            refused(
                "from",
                MediaError::FailedPrecondition(
                    "`from`: this customer has no phone number to call from".into(),
                ),
            )
        })?
    } else {
        let wanted = PhoneNumber::parse(&r.from)
            .map_err(|e| refused("from", MediaError::invalid("from", e)))?;
        record
            .phone_numbers
            .iter()
            .find(|n| n.number == wanted.as_str())
            .ok_or_else(|| {
                refused(
                    "from",
                    MediaError::invalid("from", "is not one of this customer's numbers"),
                )
            })?
    };
    let from = PhoneNumber::parse(&number.number)
        .map_err(|_| MediaError::Internal("tenant-svc sent an invalid number".into()))?;
    let account = match number
        .twilio_account_sid
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        Some(sid) => AccountSid::parse(sid)
            .map_err(|_| MediaError::Internal("tenant-svc sent an invalid account sid".into()))?,
        None => rt.twilio.account_sid.clone().ok_or_else(|| {
            tracing::error!(
                customer_id = customer.get(),
                "TWILIO_ACCOUNT_SID is not set and the number has no subaccount; outbound call refused"
            );
            refused(
                "not-configured",
                MediaError::FailedPrecondition(
                    "outbound calls are not configured for this number".into(),
                ),
            )
        })?,
    };
    if rt.twilio.auth_token.is_none() {
        tracing::error!(
            customer_id = customer.get(),
            "TWILIO_AUTH_TOKEN is not set; outbound call refused"
        );
        return Err(refused(
            "not-configured",
            MediaError::FailedPrecondition(
                "outbound calls are not configured for this number".into(),
            ),
        ));
    }

    // 6. The limits, counted and reserved under the tenant's lock.
    let limits = &rt.outbound.limits;
    let tier = record.package_tier.clone();
    let concurrent = i64::from(limits.concurrent_for(&tier));
    let per_hour = match settings.public_calls_per_hour {
        0 => limits.outbound_per_hour,
        n => n,
    };
    let reservation = rt
        .db
        .tenant_tx(customer, async |tx| {
            store::lock_call_limits(tx, customer).await?;
            let (placed, retry) =
                store::outbound_last_hour(tx, customer, i64::from(per_hour)).await?;
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
            let in_progress = store::calls_in_progress(tx, customer, true).await?;
            if in_progress >= concurrent {
                return Err(MediaError::LimitReached {
                    message: format!(
                        "customer has {} in progress, the limit of package tier `{tier}`",
                        calls(in_progress)
                    ),
                    retry_after_secs: CONCURRENCY_RETRY_AFTER_SECS,
                    limit: LIMIT_CONCURRENCY,
                });
            }
            store::reserve_outbound(tx, customer).await
        })
        .await
        .map_err(|e| match e {
            e @ MediaError::LimitReached { limit, .. } => {
                tracing::info!(
                    customer_id = customer.get(),
                    limit,
                    "outbound call refused by a limit"
                );
                refused(
                    if limit == LIMIT_RATE {
                        "rate"
                    } else {
                        "concurrency"
                    },
                    e,
                )
            }
            e => e,
        })?;

    // 7 and 8 in their own task: once Twilio is asked, the answer is recorded even if the
    // client is gone.
    let request = twilio::CreateCall {
        account: account.clone(),
        to: to.clone(),
        from: from.clone(),
        url: format!("{}/twilio/voice", rt.outbound.public_base_url),
        status_callback: format!("{}/twilio/status", rt.outbound.public_base_url),
    };
    let rt = rt.clone();
    let task = tokio::spawn(async move {
        let created = match twilio::create_call(&rt.twilio, &request).await {
            Ok(created) => created,
            Err(e) => {
                let released = rt
                    .db
                    .tenant_tx(customer, async |tx| {
                        store::release_reservation(tx, customer, reservation).await
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
                store::store_outbound_call(tx, customer, reservation, &call).await
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
    });
    task.await
        .map_err(|e| MediaError::Internal(format!("outbound call task failed: {e}")))?
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

/// `RegisterCall`: a repeat of a known CallSid returns the stored call; a new call is stored
/// only while the tenant has fewer calls in progress than its tier allows (counted under the
/// same lock as outbound placements). An OUTBOUND_API registration does not count reservations:
/// the one it would find is, in practice, this very call, whose Twilio answer is being stored.
pub async fn register(
    rt: &Runtime,
    customer: CustomerId,
    call: &NewCall,
) -> Result<(CallRow, bool), MediaError> {
    let tier = rt.outbound.tier(&rt.peers, customer).await;
    let limit = i64::from(rt.outbound.limits.concurrent_for(&tier));
    let with_reservations = call.direction != CallDirection::OutboundApi;
    rt.db
        .tenant_tx(customer, async |tx| {
            // Serialised per tenant by the lock; the lookup and the count are sent with it in
            // one round trip and run once it is held, so a registration of the same CallSid
            // that committed while we waited is seen, and so are calls counted by it.
            let ((), existing, in_progress) = tokio::try_join!(
                store::lock_call_limits(tx, customer),
                store::get_call(tx, &call.call_sid, false),
                store::calls_in_progress(tx, customer, with_reservations),
            )?;
            if let Some(existing) = existing {
                return Ok((existing, false));
            }
            if in_progress >= limit {
                metrics::counter!("media_calls_refused_total", "reason" => "concurrency")
                    .increment(1);
                tracing::info!(customer_id = customer.get(), in_progress, %tier, "new call refused at the concurrent-call limit");
                return Err(MediaError::LimitReached {
                    message: format!(
                        "customer has {} in progress, the limit of package tier `{tier}`",
                        calls(in_progress)
                    ),
                    retry_after_secs: CONCURRENCY_RETRY_AFTER_SECS,
                    limit: LIMIT_CONCURRENCY,
                });
            }
            store::register_call(tx, customer, call).await
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse_and_unknown_tiers_get_the_first_limit() {
        let limits = Limits {
            concurrent_by_tier: Limits::parse_tiers(" starter=2, professional = 7 ").unwrap(),
            outbound_per_hour: 1,
        };
        assert_eq!(limits.concurrent_for("professional"), 7);
        assert_eq!(limits.concurrent_for("starter"), 2);
        assert_eq!(limits.concurrent_for("gold"), 2);
        assert!(Limits::parse_tiers("starter").is_err());
        assert!(Limits::parse_tiers("starter=0").is_err());
        assert!(Limits::parse_tiers("starter=x").is_err());
        assert!(Limits::parse_tiers("").is_err());
    }

    #[test]
    fn markup_is_stripped_before_the_length_is_counted() {
        assert_eq!(
            strip_markup("  <b>Asked</b> about <i>home</i> insurance  "),
            "Asked about home insurance"
        );
        assert_eq!(
            strip_markup("<script>alert(1)</script>hi<!-- c --><?php x ?>"),
            "alert(1)hi"
        );
        // A `<` that opens no tag is text; an unclosed tag runs to the end.
        assert_eq!(strip_markup("price < 5 and > 3"), "price < 5 and > 3");
        assert_eq!(strip_markup("call me <img src=x onerror"), "call me");
        // Control characters go, newlines stay.
        assert_eq!(
            strip_markup("line one\r\n\tline\u{0}two\u{1b}[31m"),
            "line one\nlinetwo[31m"
        );
        assert_eq!(strip_markup(" \n\t "), "");
        // 2,000 characters of text survive inside any amount of markup.
        let wrapped = format!("<p>{}</p>", "é".repeat(MAX_CONTEXT_CHARS));
        assert_eq!(strip_markup(&wrapped).chars().count(), MAX_CONTEXT_CHARS);
    }

    #[test]
    fn messages_quote_client_text_safely() {
        assert_eq!(
            quoted("https://evil.example\n", 200),
            "\"https://evil.example\\n\""
        );
        assert_eq!(quoted(&"a".repeat(300), 5), "\"aaaaa\"");
    }
}
