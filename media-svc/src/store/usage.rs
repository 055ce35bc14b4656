//! Monthly usage (`media.usage_monthly`): calls, seconds and billed minutes per tenant and month,
//! each call counted once (`media.calls.usage_counted`) whichever path ends it first; the
//! realtime model's tokens of a call, stored with the call and added to its month once
//! ([`count_model_usage`], V29).

use chrono::{Datelike as _, NaiveDate, Utc};
use mesh::db::Tx;
use mesh::domain::CustomerId;

use super::CallRow;
use crate::backend::ModelUsage;
use crate::error::MediaError;

/// The first day of the month (UTC) of an instant.
pub fn month_of(at: chrono::DateTime<Utc>) -> NaiveDate {
    NaiveDate::from_ymd_opt(at.year(), at.month(), 1).expect("valid month")
}

/// Usage of one month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Calls that ended in the month.
    pub calls: i64,
    /// Billed minutes (each call rounded up).
    pub minutes: i64,
    /// Seconds.
    pub seconds: i64,
    /// Recorded seconds (V21).
    pub recorded_seconds: i64,
    /// Recorded minutes (each call's recording rounded up).
    pub recorded_minutes: i64,
    /// The realtime model's tokens (V29).
    pub tokens: Tokens,
}

/// Token counts as stored (`input_*` include the cached part).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input text tokens, cached included.
    pub input_text: i64,
    /// Input audio tokens, cached included.
    pub input_audio: i64,
    /// Cached input text tokens.
    pub cached_text: i64,
    /// Cached input audio tokens.
    pub cached_audio: i64,
    /// Output text tokens.
    pub output_text: i64,
    /// Output audio tokens.
    pub output_audio: i64,
}

impl From<&ModelUsage> for Tokens {
    fn from(u: &ModelUsage) -> Self {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Tokens {
            input_text: n(u.input_text),
            input_audio: n(u.input_audio),
            cached_text: n(u.cached_text.min(u.input_text)),
            cached_audio: n(u.cached_audio.min(u.input_audio)),
            output_text: n(u.output_text),
            output_audio: n(u.output_audio),
        }
    }
}

/// Stores the realtime model's usage with a call that ended after its stream, and adds it to the
/// month of the call's end, once: a call finalised again (a retry, shutdown) finds its counts
/// already set and changes nothing. A backend that reported nothing stores zeros.
pub async fn count_model_usage(
    tx: &Tx<'_>,
    customer: CustomerId,
    call: &CallRow,
    usage: &ModelUsage,
) -> Result<(), MediaError> {
    let t = Tokens::from(usage);
    let set = tx
        .execute(
            "UPDATE media.calls SET model_input_text_tokens = $2, model_input_audio_tokens = $3, \
               model_cached_text_tokens = $4, model_cached_audio_tokens = $5, \
               model_output_text_tokens = $6, model_output_audio_tokens = $7 \
             WHERE call_sid = $1 AND model_input_text_tokens IS NULL",
            &[
                &call.call_sid,
                &t.input_text,
                &t.input_audio,
                &t.cached_text,
                &t.cached_audio,
                &t.output_text,
                &t.output_audio,
            ],
        )
        .await?;
    if set == 0 || t == Tokens::default() {
        return Ok(());
    }
    let month = month_of(call.ended_at.unwrap_or_else(Utc::now));
    tx.execute(
        "INSERT INTO media.usage_monthly (customer_id, month, input_text_tokens, input_audio_tokens, \
           cached_text_tokens, cached_audio_tokens, output_text_tokens, output_audio_tokens) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (customer_id, month) DO UPDATE SET \
           input_text_tokens = media.usage_monthly.input_text_tokens + EXCLUDED.input_text_tokens, \
           input_audio_tokens = media.usage_monthly.input_audio_tokens + EXCLUDED.input_audio_tokens, \
           cached_text_tokens = media.usage_monthly.cached_text_tokens + EXCLUDED.cached_text_tokens, \
           cached_audio_tokens = media.usage_monthly.cached_audio_tokens + EXCLUDED.cached_audio_tokens, \
           output_text_tokens = media.usage_monthly.output_text_tokens + EXCLUDED.output_text_tokens, \
           output_audio_tokens = media.usage_monthly.output_audio_tokens + EXCLUDED.output_audio_tokens",
        &[
            &customer,
            &month,
            &t.input_text,
            &t.input_audio,
            &t.cached_text,
            &t.cached_audio,
            &t.output_text,
            &t.output_audio,
        ],
    )
    .await?;
    Ok(())
}

/// The model's tokens stored with one call (`None`: not set, the call never finished a stream).
pub async fn call_tokens(
    tx: &Tx<'_>,
    call_sid: &mesh::domain::CallSid,
) -> Result<Option<Tokens>, MediaError> {
    let row = tx
        .query_opt(
            "SELECT model_input_text_tokens, model_input_audio_tokens, model_cached_text_tokens, \
               model_cached_audio_tokens, model_output_text_tokens, model_output_audio_tokens \
             FROM media.calls WHERE call_sid = $1 AND model_input_text_tokens IS NOT NULL",
            &[call_sid],
        )
        .await?;
    Ok(row.map(|r| Tokens {
        input_text: r.get(0),
        input_audio: r.get(1),
        cached_text: r.get(2),
        cached_audio: r.get(3),
        output_text: r.get(4),
        output_audio: r.get(5),
    }))
}

/// Adds an ended call to its month's usage, once.
pub(super) async fn count_usage(
    tx: &Tx<'_>,
    customer: CustomerId,
    call: &mut CallRow,
) -> Result<(), MediaError> {
    if call.usage_counted {
        return Ok(());
    }
    let month = month_of(call.ended_at.unwrap_or_else(Utc::now));
    let seconds = i64::from(call.duration_seconds.max(0));
    let minutes = (seconds + 59) / 60;
    tx.execute(
        "INSERT INTO media.usage_monthly (customer_id, month, total_calls, total_seconds, total_minutes) \
         VALUES ($1, $2, 1, $3, $4) \
         ON CONFLICT (customer_id, month) DO UPDATE SET \
           total_calls = media.usage_monthly.total_calls + 1, \
           total_seconds = media.usage_monthly.total_seconds + EXCLUDED.total_seconds, \
           total_minutes = media.usage_monthly.total_minutes + EXCLUDED.total_minutes",
        &[&customer, &month, &seconds, &minutes],
    )
    .await?;
    tx.execute(
        "UPDATE media.calls SET usage_counted = true WHERE call_sid = $1",
        &[&call.call_sid],
    )
    .await?;
    call.usage_counted = true;
    Ok(())
}

/// Usage of one month (zero when nothing was counted).
pub async fn usage(tx: &Tx<'_>, month: NaiveDate) -> Result<Usage, MediaError> {
    let row = tx
        .query_opt(
            "SELECT total_calls, total_minutes, total_seconds, recorded_seconds, recorded_minutes, \
               input_text_tokens, input_audio_tokens, cached_text_tokens, cached_audio_tokens, \
               output_text_tokens, output_audio_tokens \
             FROM media.usage_monthly WHERE month = $1",
            &[&month],
        )
        .await?;
    Ok(row.map_or(Usage::default(), |r| Usage {
        calls: r.get(0),
        minutes: r.get(1),
        seconds: r.get(2),
        recorded_seconds: r.get(3),
        recorded_minutes: r.get(4),
        tokens: Tokens {
            input_text: r.get(5),
            input_audio: r.get(6),
            cached_text: r.get(7),
            cached_audio: r.get(8),
            output_text: r.get(9),
            output_audio: r.get(10),
        },
    }))
}
