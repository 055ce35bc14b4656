//! What the data pages (dashboard, calls, callers, usage) share: the tenant's time zone, times
//! and durations as the pages show them, call status and direction labels, masked numbers, and
//! the server-rendered SVG bar chart with its text alternative.

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use chrono_tz::Tz;
use mesh::api::media::{CallDirection, CallStatus};
use mesh::api::tenant::GetEffectiveProfileRequest;
use mesh::domain::CallerNumber;

use crate::{PageError, Portal, Session};

/// The tenant's time zone (its agent profile's), UTC when it names none the portal knows.
pub async fn time_zone(portal: &Portal, session: &Session) -> Result<Tz, PageError> {
    let profile = portal
        .tenant()
        .get_effective_profile(session.grpc(GetEffectiveProfileRequest::default()))
        .await?
        .into_inner()
        .profile
        .unwrap_or_default();
    Ok(profile.time_zone.parse().unwrap_or(Tz::UTC))
}

/// A timestamp in `tz`, to the minute ("—" when unset).
pub fn local(t: Option<&prost_types::Timestamp>, tz: Tz) -> String {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, 0))
        .map_or_else(
            || "—".to_owned(),
            |t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(),
        )
}

/// Local midnight of `day` in `tz`, as a protobuf timestamp.
pub fn midnight(day: NaiveDate, tz: Tz) -> prost_types::Timestamp {
    let at = tz
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map_or_else(
            || day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
            |t| t.with_timezone(&Utc),
        );
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    }
}

/// A duration as "m:ss" (or "h:mm:ss").
pub fn duration(seconds: i32) -> String {
    let s = seconds.max(0);
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// An offset into a call (milliseconds) as "m:ss".
pub fn offset(ms: u32) -> String {
    duration(i32::try_from(ms / 1000).unwrap_or(i32::MAX))
}

/// The statuses a calls filter offers: (form value, label).
pub const STATUSES: [(&str, &str); 7] = [
    ("ringing", "Ringing"),
    ("in-progress", "In progress"),
    ("completed", "Completed"),
    ("busy", "Busy"),
    ("failed", "Failed"),
    ("no-answer", "No answer"),
    ("canceled", "Canceled"),
];

/// The directions a calls filter offers: (form value, label).
pub const DIRECTIONS: [(&str, &str); 3] = [
    ("inbound", "Inbound"),
    ("outbound-api", "Outbound"),
    ("outbound-dial", "Forwarded leg"),
];

/// A status form value as the enum.
pub fn status_of(value: &str) -> Option<CallStatus> {
    Some(match value {
        "ringing" => CallStatus::Ringing,
        "in-progress" => CallStatus::InProgress,
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "failed" => CallStatus::Failed,
        "no-answer" => CallStatus::NoAnswer,
        "canceled" => CallStatus::Canceled,
        _ => return None,
    })
}

/// A direction form value as the enum.
pub fn direction_of(value: &str) -> Option<CallDirection> {
    Some(match value {
        "inbound" => CallDirection::Inbound,
        "outbound-api" => CallDirection::OutboundApi,
        "outbound-dial" => CallDirection::OutboundDial,
        _ => return None,
    })
}

/// A call status as the pages show it.
pub fn status_label(status: i32) -> &'static str {
    match CallStatus::try_from(status) {
        Ok(CallStatus::Initiated) => "Initiated",
        Ok(CallStatus::Queued) => "Queued",
        Ok(CallStatus::Ringing) => "Ringing",
        Ok(CallStatus::InProgress) => "In progress",
        Ok(CallStatus::Completed) => "Completed",
        Ok(CallStatus::Busy) => "Busy",
        Ok(CallStatus::Failed) => "Failed",
        Ok(CallStatus::NoAnswer) => "No answer",
        Ok(CallStatus::Canceled) => "Canceled",
        _ => "Unknown",
    }
}

/// A call direction as the pages show it.
pub fn direction_label(direction: i32) -> &'static str {
    match CallDirection::try_from(direction) {
        Ok(CallDirection::Inbound) => "Inbound",
        Ok(CallDirection::OutboundApi) => "Outbound",
        Ok(CallDirection::OutboundDial) => "Forwarded leg",
        _ => "Unknown",
    }
}

/// A call's end reason as the pages show it.
pub fn outcome_label(end_reason: &str) -> String {
    match end_reason {
        "" => "—".to_owned(),
        "caller-hangup" => "Caller hung up".to_owned(),
        "transfer" => "Transferred".to_owned(),
        "backend-error" => "Ended by an error".to_owned(),
        "stream-closed" => "Line closed".to_owned(),
        "shutdown" => "Ended by maintenance".to_owned(),
        "max-duration" => "Maximum duration reached".to_owned(),
        "completed" => "Completed".to_owned(),
        "call-limit" => "Refused: call limit".to_owned(),
        other => other.replace('-', " "),
    }
}

/// A stored caller number, masked ("+1 ••• ••• 0123"); anonymous callers have none.
pub fn masked(caller: &str) -> String {
    if caller.is_empty() {
        return "Anonymous".to_owned();
    }
    CallerNumber::parse(caller).map_or_else(|_| "Unknown number".to_owned(), |n| n.masked())
}

/// The most digits a caller search may hold: the end of a number, never a whole one (the
/// search travels in the page's URL).
pub const SEARCH_DIGITS: usize = 4;

/// A caller search as typed: a name part, or 2 to [`SEARCH_DIGITS`] last digits.
pub fn caller_search(q: &str) -> Result<String, PageError> {
    let q = q.trim();
    let digits = q.chars().filter(char::is_ascii_digit).count();
    if digits > SEARCH_DIGITS {
        return Err(PageError::BadRequest(format!(
            "Search by name or by the last {SEARCH_DIGITS} digits of the number at most."
        )));
    }
    if q.chars().count() > 100 {
        return Err(PageError::BadRequest(
            "The search is too long (100 characters at most).".into(),
        ));
    }
    Ok(q.to_owned())
}

/// One bar of a chart.
pub struct Bar {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// What it counts (a day, a month).
    pub label: String,
    /// The value.
    pub value: i64,
}

/// A bar chart drawn in the page as SVG (no script), with a table as its text alternative.
pub struct Chart {
    /// Accessible name of the figure.
    pub title: String,
    /// Drawing width.
    pub width: u32,
    /// Drawing height.
    pub height: u32,
    /// The bars, left to right.
    pub bars: Vec<Bar>,
    /// The largest value (the top of the scale).
    pub max: i64,
    /// First and last labels, under the axis.
    pub first: String,
    /// The last label.
    pub last: String,
}

impl Chart {
    /// Height of the drawing area above the axis labels.
    const PLOT: u32 = 120;

    /// A chart of `points` (label, value), left to right.
    pub fn new(title: impl Into<String>, points: Vec<(String, i64)>) -> Chart {
        let slot = 20;
        let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
        let bars = points
            .into_iter()
            .enumerate()
            .map(|(i, (label, value))| {
                let height = u32::try_from(value.max(0) * i64::from(Self::PLOT) / max)
                    .unwrap_or(Self::PLOT)
                    .max(u32::from(value > 0));
                Bar {
                    x: u32::try_from(i).unwrap_or(0) * slot + 2,
                    y: Self::PLOT - height,
                    width: slot - 4,
                    height,
                    label,
                    value,
                }
            })
            .collect::<Vec<_>>();
        Chart {
            title: title.into(),
            width: (u32::try_from(bars.len()).unwrap_or(0) * slot).max(slot),
            height: Self::PLOT + 20,
            first: bars.first().map(|b| b.label.clone()).unwrap_or_default(),
            last: bars.last().map(|b| b.label.clone()).unwrap_or_default(),
            bars,
            max,
        }
    }

    /// The y of the axis labels.
    pub fn label_y(&self) -> u32 {
        Self::PLOT + 15
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_offsets_and_masks_read_as_people_expect() {
        assert_eq!(duration(65), "1:05");
        assert_eq!(duration(3725), "1:02:05");
        assert_eq!(offset(61_500), "1:01");
        assert_eq!(masked("+14155550123"), "+1 ••• ••• 0123");
        assert_eq!(masked(""), "Anonymous");
    }

    #[test]
    fn a_caller_search_never_holds_more_than_four_digits() {
        assert_eq!(caller_search(" Ann ").unwrap(), "Ann");
        assert_eq!(caller_search("0123").unwrap(), "0123");
        assert!(caller_search("55550123").is_err());
        assert!(caller_search("+1 415 555 0123").is_err());
    }

    #[test]
    fn bars_scale_to_the_largest_value_and_a_nonzero_value_shows() {
        let c = Chart::new(
            "t",
            vec![("a".into(), 0), ("b".into(), 1), ("c".into(), 1000)],
        );
        assert_eq!(c.bars[0].height, 0);
        assert_eq!(c.bars[1].height, 1);
        assert_eq!(c.bars[2].height, 120);
        assert_eq!(c.bars[2].y, 0);
        assert_eq!((c.first.as_str(), c.last.as_str()), ("a", "c"));
    }
}
