//! A call's recording policy and the caller's consent (`V21__recording_consent.sql`), and the
//! recorded seconds counted in the month's usage once.

use chrono::{Datelike as _, NaiveDate, Utc};
use mesh::api::media::{CallRecordingPolicy, RecordingConsent};
use mesh::db::Tx;
use mesh::domain::{CallSid, CustomerId};

use crate::error::MediaError;

/// The recording policy a call runs under (the text of `media.calls.recording_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Nothing recorded (also when the setting could not be read).
    Off,
    /// Announced, then recorded.
    On,
    /// Announced and asked; recorded from the caller's agreement on.
    OnWithConsent,
}

impl Policy {
    /// The column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Off => "off",
            Policy::On => "on",
            Policy::OnWithConsent => "on_with_consent",
        }
    }

    fn from_column(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Policy::Off),
            "on" => Some(Policy::On),
            "on_with_consent" => Some(Policy::OnWithConsent),
            _ => None,
        }
    }

    /// The wire form of a stored policy ('' = unknown).
    pub fn proto_of(column: &str) -> CallRecordingPolicy {
        match Self::from_column(column) {
            Some(Policy::Off) => CallRecordingPolicy::Off,
            Some(Policy::On) => CallRecordingPolicy::On,
            Some(Policy::OnWithConsent) => CallRecordingPolicy::OnWithConsent,
            None => CallRecordingPolicy::Unspecified,
        }
    }
}

/// The caller's answer to the consent question (the text of `media.calls.recording_consent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Pressed 1, or said yes and the agent confirmed it.
    Agreed,
    /// Said no (the agent confirmed it).
    Declined,
    /// The call ended without an answer.
    NoAnswer,
}

impl Consent {
    /// The column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Agreed => "agreed",
            Consent::Declined => "declined",
            Consent::NoAnswer => "no_answer",
        }
    }

    /// The wire form of a stored answer ('' = not asked).
    pub fn proto_of(column: &str) -> RecordingConsent {
        match column {
            "agreed" => RecordingConsent::Agreed,
            "declined" => RecordingConsent::Declined,
            "no_answer" => RecordingConsent::NoAnswer,
            _ => RecordingConsent::Unspecified,
        }
    }
}

/// Notes the policy the call runs under (at its start).
pub async fn set_policy(tx: &Tx<'_>, call_sid: &CallSid, policy: Policy) -> Result<(), MediaError> {
    tx.execute(
        "UPDATE media.calls SET recording_policy = $2 WHERE call_sid = $1",
        &[call_sid, &policy.as_str()],
    )
    .await?;
    Ok(())
}

/// Keeps the caller's answer and its time (now). The first answer stands: returns false when
/// one was already kept.
pub async fn set_consent(
    tx: &Tx<'_>,
    call_sid: &CallSid,
    consent: Consent,
) -> Result<bool, MediaError> {
    let n = tx
        .execute(
            "UPDATE media.calls SET recording_consent = $2, recording_consent_at = now() \
             WHERE call_sid = $1 AND recording_consent = ''",
            &[call_sid, &consent.as_str()],
        )
        .await?;
    Ok(n == 1)
}

/// Notes the seconds recorded on the call, and where in the call the recording begins
/// (`offset_ms`, `None`: nothing recorded), and adds the seconds to the month's usage, once (a
/// retried finish adds nothing).
pub async fn count_recorded(
    tx: &Tx<'_>,
    customer: CustomerId,
    call_sid: &CallSid,
    seconds: u32,
    offset_ms: Option<u32>,
) -> Result<(), MediaError> {
    let seconds = i32::try_from(seconds).unwrap_or(i32::MAX);
    let offset_ms = offset_ms.map(i64::from);
    let set = tx
        .execute(
            "UPDATE media.calls SET recorded_seconds = $2, recording_offset_ms = $3 \
             WHERE call_sid = $1 AND recorded_seconds IS NULL",
            &[call_sid, &seconds, &offset_ms],
        )
        .await?;
    if set == 0 || seconds == 0 {
        return Ok(());
    }
    let now = Utc::now();
    let month = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).expect("valid month");
    let seconds = i64::from(seconds);
    let minutes = (seconds + 59) / 60;
    tx.execute(
        "INSERT INTO media.usage_monthly (customer_id, month, recorded_seconds, recorded_minutes) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (customer_id, month) DO UPDATE SET \
           recorded_seconds = media.usage_monthly.recorded_seconds + EXCLUDED.recorded_seconds, \
           recorded_minutes = media.usage_monthly.recorded_minutes + EXCLUDED.recorded_minutes",
        &[&customer, &month, &seconds, &minutes],
    )
    .await?;
    Ok(())
}
