//! A customer's call-handling settings (`neurosphere.tenant.v1.CallHandling`, issue 20) as every
//! service reads them: the defaults (tenant-svc answers them for a customer that never set any;
//! media-svc falls back to them, with recording OFF, when it cannot read the settings) and the
//! opening-hours rule ([`in_opening_hours`]).

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use crate::api::tenant::{CallHandling, OpenPeriod, OpeningHours, RecordingPolicy};

/// Spoken before the agent greets when recording is on.
pub const DEFAULT_RECORDING_ANNOUNCEMENT: &str = "This call is recorded.";
/// Asks the caller under "on with consent".
pub const DEFAULT_CONSENT_PROMPT: &str = "To allow the recording of this call, press 1 or say yes.";
/// Played by the message flow.
pub const DEFAULT_MESSAGE_PROMPT: &str = "Sorry, we cannot take your call right now. Please leave \
     a message after the tone and we will call you back.";
/// Days recordings and transcripts are kept.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Longest message, in seconds.
pub const DEFAULT_MESSAGE_MAX_SECONDS: u32 = 120;

/// Bounds tenant-svc enforces (and V22's CHECKs mirror).
pub mod limits {
    /// Longest spoken text (announcement, consent prompt, message prompt), in characters.
    pub const MAX_TEXT: usize = 500;
    /// Retention in days.
    pub const RETENTION_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;
    /// Longest message in seconds.
    pub const MESSAGE_MAX_SECONDS: std::ops::RangeInclusive<u32> = 10..=300;
    /// Most opening periods per weekday.
    pub const MAX_PERIODS_PER_DAY: usize = 6;
    /// Minutes in a day (a period's `close_minute` may be this: the end of the day).
    pub const DAY_MINUTES: u32 = 1440;
}

/// The settings of a customer that never set any: recording off, the default texts, 90 days,
/// 120-second messages, always open, no messages after hours.
pub fn defaults() -> CallHandling {
    CallHandling {
        recording_policy: RecordingPolicy::Off as i32,
        recording_announcement: DEFAULT_RECORDING_ANNOUNCEMENT.into(),
        consent_prompt: DEFAULT_CONSENT_PROMPT.into(),
        retention_days: DEFAULT_RETENTION_DAYS,
        message_prompt: DEFAULT_MESSAGE_PROMPT.into(),
        message_max_seconds: DEFAULT_MESSAGE_MAX_SECONDS,
        opening_hours: Some(OpeningHours::default()),
        messages_after_hours: false,
    }
}

/// The recording policy, UNSPECIFIED and unknown values read as OFF (record nothing).
pub fn recording_policy(settings: &CallHandling) -> RecordingPolicy {
    match RecordingPolicy::try_from(settings.recording_policy) {
        Ok(RecordingPolicy::Unspecified) | Err(_) => RecordingPolicy::Off,
        Ok(p) => p,
    }
}

/// The weekdays' periods, Monday first.
pub fn weekdays(hours: &OpeningHours) -> [&[OpenPeriod]; 7] {
    [
        &hours.monday,
        &hours.tuesday,
        &hours.wednesday,
        &hours.thursday,
        &hours.friday,
        &hours.saturday,
        &hours.sunday,
    ]
}

/// The weekdays' field names, Monday first (as `weekdays` orders them).
pub const WEEKDAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Whether `hours` has no period at all (then the customer is always open).
pub fn always_open(hours: Option<&OpeningHours>) -> bool {
    hours.is_none_or(|h| weekdays(h).iter().all(|d| d.is_empty()))
}

/// Whether `now` falls in the customer's opening hours, read on the wall clock of `tz` (so a DST
/// change moves the hours with local time). No opening hours: always open. A period whose
/// `close_minute` is not after its `open_minute` runs overnight into the next day.
pub fn in_opening_hours(settings: &CallHandling, tz: Tz, now: DateTime<Utc>) -> bool {
    let Some(hours) = settings.opening_hours.as_ref() else {
        return true;
    };
    if always_open(Some(hours)) {
        return true;
    }
    let local = now.with_timezone(&tz);
    let minute = local.hour() * 60 + local.minute();
    let today = local.weekday().num_days_from_monday() as usize;
    let yesterday = (today + 6) % 7;
    let days = weekdays(hours);
    let open_today = days[today].iter().any(|p| {
        if p.close_minute > p.open_minute {
            (p.open_minute..p.close_minute).contains(&minute)
        } else {
            minute >= p.open_minute
        }
    });
    let from_yesterday = days[yesterday]
        .iter()
        .any(|p| p.close_minute <= p.open_minute && minute < p.close_minute);
    open_today || from_yesterday
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn p(open: u32, close: u32) -> OpenPeriod {
        OpenPeriod {
            open_minute: open,
            close_minute: close,
        }
    }

    fn with(hours: OpeningHours) -> CallHandling {
        CallHandling {
            opening_hours: Some(hours),
            ..defaults()
        }
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn no_hours_is_always_open() {
        let lisbon: Tz = "Europe/Lisbon".parse().unwrap();
        for s in [
            defaults(),
            CallHandling {
                opening_hours: None,
                ..defaults()
            },
        ] {
            for h in 0..24 {
                assert!(in_opening_hours(&s, lisbon, utc(2026, 12, 6, h, 30)));
            }
        }
    }

    #[test]
    fn weekday_periods_in_local_time() {
        // Monday to Friday 09:00-12:00 and 13:00-17:30 in Lisbon (UTC+0 in winter).
        let day = vec![p(540, 720), p(780, 1050)];
        let s = with(OpeningHours {
            monday: day.clone(),
            tuesday: day.clone(),
            wednesday: day.clone(),
            thursday: day.clone(),
            friday: day,
            ..Default::default()
        });
        let tz: Tz = "Europe/Lisbon".parse().unwrap();
        // 2026-12-07 is a Monday.
        assert!(!in_opening_hours(&s, tz, utc(2026, 12, 7, 8, 59)));
        assert!(in_opening_hours(&s, tz, utc(2026, 12, 7, 9, 0)));
        assert!(!in_opening_hours(&s, tz, utc(2026, 12, 7, 12, 0)), "lunch");
        assert!(in_opening_hours(&s, tz, utc(2026, 12, 7, 17, 29)));
        assert!(
            !in_opening_hours(&s, tz, utc(2026, 12, 7, 17, 30)),
            "closes"
        );
        assert!(
            !in_opening_hours(&s, tz, utc(2026, 12, 12, 10, 0)),
            "Saturday"
        );
    }

    #[test]
    fn dst_moves_the_hours_with_the_wall_clock() {
        // 09:00-17:00 every day in New York: 14:00 UTC is 09:00 EDT in summer (open) and
        // 09:00 EST in winter is 14:00 UTC too, but 13:30 UTC is open in summer only.
        let all: Vec<_> = (0..7).map(|_| vec![p(540, 1020)]).collect();
        let s = with(OpeningHours {
            monday: all[0].clone(),
            tuesday: all[1].clone(),
            wednesday: all[2].clone(),
            thursday: all[3].clone(),
            friday: all[4].clone(),
            saturday: all[5].clone(),
            sunday: all[6].clone(),
        });
        let ny: Tz = "America/New_York".parse().unwrap();
        assert!(
            in_opening_hours(&s, ny, utc(2026, 7, 1, 13, 30)),
            "09:30 EDT"
        );
        assert!(
            !in_opening_hours(&s, ny, utc(2026, 12, 1, 13, 30)),
            "08:30 EST"
        );
        // The change itself: 2026-03-08 02:00 EST becomes 03:00 EDT. 13:00 UTC is 09:00 EDT
        // that day and was 08:00 EST the day before.
        assert!(in_opening_hours(&s, ny, utc(2026, 3, 8, 13, 0)));
        assert!(!in_opening_hours(&s, ny, utc(2026, 3, 7, 13, 0)));
        // Fall back, 2026-11-01: 21:59 UTC is 16:59 EST (open), 22:00 UTC 17:00 (closed).
        assert!(in_opening_hours(&s, ny, utc(2026, 11, 1, 21, 59)));
        assert!(!in_opening_hours(&s, ny, utc(2026, 11, 1, 22, 0)));
    }

    #[test]
    fn overnight_periods_run_into_the_next_day() {
        // Friday 22:00-02:00, nothing else, in UTC.
        let s = with(OpeningHours {
            friday: vec![p(1320, 120)],
            ..Default::default()
        });
        let tz = Tz::UTC;
        // 2026-12-11 is a Friday.
        assert!(!in_opening_hours(&s, tz, utc(2026, 12, 11, 21, 59)));
        assert!(in_opening_hours(&s, tz, utc(2026, 12, 11, 23, 0)));
        assert!(
            in_opening_hours(&s, tz, utc(2026, 12, 12, 1, 59)),
            "Saturday night"
        );
        assert!(!in_opening_hours(&s, tz, utc(2026, 12, 12, 2, 0)));
        assert!(
            !in_opening_hours(&s, tz, utc(2026, 12, 4, 1, 0)),
            "not Friday morning"
        );
        // Sunday's overnight period reaches Monday (the week wraps).
        let s = with(OpeningHours {
            sunday: vec![p(1200, 60)],
            ..Default::default()
        });
        assert!(
            in_opening_hours(&s, tz, utc(2026, 12, 7, 0, 30)),
            "Monday 00:30"
        );
        // A period closing at 1440 ends at midnight.
        let s = with(OpeningHours {
            monday: vec![p(0, 1440)],
            ..Default::default()
        });
        assert!(in_opening_hours(&s, tz, utc(2026, 12, 7, 23, 59)));
        assert!(!in_opening_hours(&s, tz, utc(2026, 12, 8, 0, 0)));
    }

    #[test]
    fn unknown_policies_read_as_off() {
        for raw in [0, 99, -1] {
            let s = CallHandling {
                recording_policy: raw,
                ..defaults()
            };
            assert_eq!(recording_policy(&s), RecordingPolicy::Off);
        }
    }
}
