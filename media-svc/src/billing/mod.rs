//! Usage that can be billed: a tenant's month priced by its package's rate card.
//!
//! - [`Month`]: a UTC calendar month, `YYYY-MM` on the wire; a month before the current one is
//!   closed, and nothing may take effect in it (rate cards, assignments, the default package).
//! - [`Currency`]: an ISO 4217 code and its minor-unit exponent (for display only: every amount
//!   is an integer of minor units).
//! - [`Rates`] and [`Quantities`] make the bill's [`Line`]s ([`price`]): each line's amount is
//!   computed exactly in millionths of the minor unit and rounded half-up to the minor unit once
//!   per line per month; the total is the sum of the rounded lines.
//! - [`csv`]: the bill as RFC 4180 CSV.
//! - [`caps`]: the monthly cap of a finalised call (80 %: a `usage.warning` event and the
//!   owners' e-mail, once) and of `RegisterCall` (100 %: the message flow or a refusal).
//! - [`service`]: `BillingService` (a tenant's own bill) and `BillingAdminService` (packages,
//!   rate cards, assignments, every tenant's bills), over [`crate::store::billing`].

pub mod caps;
pub mod csv;
pub mod service;

use std::fmt;

use chrono::{Datelike as _, Months, NaiveDate, Utc};
use mesh::api::media::BillingUnit;

use crate::store::usage::Tokens;

/// A calendar month (UTC), held as its first day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month(NaiveDate);

impl Month {
    /// The current month (UTC).
    pub fn current() -> Month {
        Month::of(Utc::now().date_naive())
    }

    /// The month of a day.
    pub fn of(day: NaiveDate) -> Month {
        Month(NaiveDate::from_ymd_opt(day.year(), day.month(), 1).expect("valid month"))
    }

    /// Parses `YYYY-MM` (years 2000-9999).
    pub fn parse(s: &str) -> Result<Month, String> {
        let bad = || format!("must be a month as YYYY-MM, got {:?}", truncate(s));
        let b = s.as_bytes();
        if b.len() != 7
            || b[4] != b'-'
            || !b
                .iter()
                .enumerate()
                .all(|(i, c)| i == 4 || c.is_ascii_digit())
        {
            return Err(bad());
        }
        let year: i32 = s[..4].parse().map_err(|_| bad())?;
        let month: u32 = s[5..].parse().map_err(|_| bad())?;
        if !(2000..=9999).contains(&year) {
            return Err(bad());
        }
        NaiveDate::from_ymd_opt(year, month, 1)
            .map(Month)
            .ok_or_else(bad)
    }

    /// Parses a request's month: empty is the current month.
    pub fn parse_or_current(s: &str) -> Result<Month, String> {
        if s.is_empty() {
            Ok(Month::current())
        } else {
            Month::parse(s)
        }
    }

    /// Its first day (the SQL `date` of the month).
    pub fn first_day(self) -> NaiveDate {
        self.0
    }

    /// The month after it.
    pub fn next(self) -> Month {
        Month(self.0 + Months::new(1))
    }

    /// Whether it has ended (UTC): its bill no longer changes with prices.
    pub fn closed(self) -> bool {
        self < Month::current()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.0.year(), self.0.month())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(16).collect()
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency(String);

/// Currencies without minor units (exponent 0).
const EXPONENT_0: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
/// Currencies with three decimals.
const EXPONENT_3: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
/// Currencies with four decimals.
const EXPONENT_4: &[&str] = &["CLF", "UYW"];

impl Currency {
    /// Three capital letters (the ISO 4217 form).
    pub fn parse(s: &str) -> Result<Currency, String> {
        if s.len() == 3 && s.bytes().all(|c| c.is_ascii_uppercase()) {
            Ok(Currency(s.to_owned()))
        } else {
            Err(format!(
                "must be an ISO 4217 code of three capital letters, got {:?}",
                truncate(s)
            ))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point (ISO 4217's minor unit; 2 for most).
    pub fn exponent(&self) -> u32 {
        let c = self.0.as_str();
        if EXPONENT_0.contains(&c) {
            0
        } else if EXPONENT_3.contains(&c) {
            3
        } else if EXPONENT_4.contains(&c) {
            4
        } else {
            2
        }
    }

    /// An amount of minor units written in major units (`1234` USD: `12.34`).
    pub fn format(&self, minor: i64) -> String {
        let e = self.exponent();
        if e == 0 {
            return minor.to_string();
        }
        let scale = 10i64.pow(e);
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        let scale = scale.unsigned_abs();
        format!(
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = e as usize
        )
    }
}

/// A package name: lower-case letters, digits, `-` and `_`, 1-63 characters, starting with a
/// letter or digit (so a CSV cell never starts with a formula character).
pub fn parse_package_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "must be 1-63 lower-case letters, digits, '-' or '_', got {:?}",
            truncate(s)
        ))
    }
}

/// The units of a bill, in the order its lines are listed.
pub const UNITS: [BillingUnit; 8] = [
    BillingUnit::TwilioMinutes,
    BillingUnit::RecordedMinutes,
    BillingUnit::InputTextTokens,
    BillingUnit::InputAudioTokens,
    BillingUnit::CachedTextTokens,
    BillingUnit::CachedAudioTokens,
    BillingUnit::OutputTextTokens,
    BillingUnit::OutputAudioTokens,
];

/// A unit's name in CSV and pages.
pub fn unit_label(unit: BillingUnit) -> &'static str {
    match unit {
        BillingUnit::TwilioMinutes => "twilio_minutes",
        BillingUnit::RecordedMinutes => "recorded_minutes",
        BillingUnit::InputTextTokens => "input_text_tokens",
        BillingUnit::InputAudioTokens => "input_audio_tokens",
        BillingUnit::CachedTextTokens => "cached_text_tokens",
        BillingUnit::CachedAudioTokens => "cached_audio_tokens",
        BillingUnit::OutputTextTokens => "output_text_tokens",
        BillingUnit::OutputAudioTokens => "output_audio_tokens",
        BillingUnit::Unspecified => "unspecified",
    }
}

/// Whether a unit is priced per million (tokens) rather than per one (minutes).
pub fn per_million(unit: BillingUnit) -> bool {
    !matches!(
        unit,
        BillingUnit::TwilioMinutes | BillingUnit::RecordedMinutes
    )
}

/// A rate card's prices, integer minor units per unit (per minute; per million tokens), in
/// [`UNITS`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates(pub [i64; 8]);

/// A month's billable quantities, in [`UNITS`] order (uncached input: input minus cached).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quantities(pub [i64; 8]);

impl Quantities {
    /// From the month's stored usage.
    pub fn new(twilio_minutes: i64, recorded_minutes: i64, t: &Tokens) -> Quantities {
        Quantities([
            twilio_minutes,
            recorded_minutes,
            (t.input_text - t.cached_text).max(0),
            (t.input_audio - t.cached_audio).max(0),
            t.cached_text,
            t.cached_audio,
            t.output_text,
            t.output_audio,
        ])
    }
}

/// One priced line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// What it counts.
    pub unit: BillingUnit,
    /// Minutes or tokens.
    pub quantity: i64,
    /// Minor units per minute, or per million tokens.
    pub unit_price: i64,
    /// quantity x unit price, exactly, in millionths of the minor unit.
    pub amount_micros: i128,
    /// Rounded half-up to the minor unit.
    pub amount: i64,
}

/// Millionths of a minor unit in a minor unit.
const MICROS: i128 = 1_000_000;

/// Prices a month: one line per unit, each amount exact in millionths of the minor unit, then
/// rounded half-up once. Quantities and prices are never negative (the database checks both).
pub fn price(q: &Quantities, r: &Rates) -> Vec<Line> {
    UNITS
        .iter()
        .enumerate()
        .map(|(i, &unit)| {
            let quantity = q.0[i].max(0);
            let unit_price = r.0[i].max(0);
            let exact = i128::from(quantity) * i128::from(unit_price);
            let amount_micros = if per_million(unit) {
                exact
            } else {
                exact * MICROS
            };
            let rounded = (amount_micros + MICROS / 2) / MICROS;
            Line {
                unit,
                quantity,
                unit_price,
                amount_micros,
                amount: i64::try_from(rounded).unwrap_or(i64::MAX),
            }
        })
        .collect()
}

/// The sum of the rounded lines.
pub fn total(lines: &[Line]) -> i64 {
    lines
        .iter()
        .fold(0i64, |sum, l| sum.saturating_add(l.amount))
}

/// A cap's share used, in whole percent rounded down (0 without a cap).
pub fn percent_used(used: i64, cap: i64) -> i32 {
    if cap <= 0 {
        return 0;
    }
    let p = i128::from(used.max(0)) * 100 / i128::from(cap);
    i32::try_from(p).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_strictly_and_print_back() {
        let m = Month::parse("2026-02").unwrap();
        assert_eq!(m.to_string(), "2026-02");
        assert_eq!(m.next().to_string(), "2026-03");
        assert_eq!(
            Month::parse("2026-12").unwrap().next().to_string(),
            "2027-01"
        );
        for bad in [
            "",
            "2026-13",
            "2026-00",
            "2026-2",
            "26-02",
            "2026/02",
            "1999-12",
            "２０２６-02",
            "2026-02-01",
            " 2026-02",
        ] {
            let e = Month::parse(bad).unwrap_err();
            assert!(e.contains("YYYY-MM"), "{bad}: {e}");
        }
        assert!(Month::parse("2020-01").unwrap().closed());
        assert!(!Month::current().closed());
        assert!(!Month::current().next().closed());
        assert_eq!(Month::parse_or_current("").unwrap(), Month::current());
    }

    #[test]
    fn currencies_and_their_minor_units() {
        assert_eq!(Currency::parse("USD").unwrap().format(1234), "12.34");
        assert_eq!(Currency::parse("USD").unwrap().format(5), "0.05");
        assert_eq!(Currency::parse("USD").unwrap().format(-5), "-0.05");
        assert_eq!(Currency::parse("JPY").unwrap().format(1234), "1234");
        assert_eq!(Currency::parse("KWD").unwrap().format(1234), "1.234");
        for bad in ["usd", "US", "USDX", "U$D", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn package_names() {
        assert!(parse_package_name("starter-2026_a").is_ok());
        for bad in ["", "Starter", "-x", "_x", "a b", "=cmd", &"a".repeat(64)] {
            assert!(parse_package_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_line_is_exact_then_rounded_half_up_once() {
        // 61 minutes at 2 cents; 3 recorded at 1; 1,234,567 uncached audio tokens at 3200 per
        // million = 3950.6144 -> 3951; 500,000 output audio tokens at 1 per million = 0.5 -> 1
        // (half up); 499,999 cached text at 1 = 0.499999 -> 0.
        let tokens = Tokens {
            input_text: 499_999 + 10,
            input_audio: 1_234_567,
            cached_text: 499_999,
            cached_audio: 0,
            output_text: 0,
            output_audio: 500_000,
        };
        let q = Quantities::new(61, 3, &tokens);
        let r = Rates([2, 1, 400, 3200, 1, 0, 1600, 1]);
        let lines = price(&q, &r);
        let amounts: Vec<i64> = lines.iter().map(|l| l.amount).collect();
        assert_eq!(amounts, vec![122, 3, 0, 3951, 0, 0, 0, 1]);
        assert_eq!(lines[0].amount_micros, 122_000_000);
        assert_eq!(lines[2].quantity, 10, "uncached text = input - cached");
        assert_eq!(lines[2].amount_micros, 4000, "10 tokens x 400 per million");
        assert_eq!(lines[3].amount_micros, 3_950_614_400);
        assert_eq!(lines[4].amount_micros, 499_999);
        assert_eq!(lines[7].amount_micros, 500_000);
        assert_eq!(total(&lines), 122 + 3 + 3951 + 1);
        // Rounded once per line, never per call: two calls of 250,000 tokens each at 2 per
        // million are 0.5 + 0.5 = 1 minor unit, not 1 + 1.
        let q = Quantities([0, 0, 0, 0, 0, 0, 0, 500_000]);
        let r = Rates([0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(total(&price(&q, &r)), 1);
    }

    #[test]
    fn cap_share_is_whole_percent_rounded_down() {
        assert_eq!(percent_used(79, 100), 79);
        assert_eq!(percent_used(8, 10), 80);
        assert_eq!(percent_used(7, 9), 77);
        assert_eq!(percent_used(250, 100), 250);
        assert_eq!(percent_used(5, 0), 0);
    }
}
