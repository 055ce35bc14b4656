//! Twilio's numbers on the wire, as the client reads and writes them: the answers' records
//! (offered and incoming numbers, the pages and error bodies), prices in integer minor units
//! ([`parse_minor`], no floats), the kinds of number, our webhooks and the check of a number's
//! webhooks against them, and the redaction of phone numbers from Twilio's messages.

use serde::Deserialize;

/// A number Twilio offers.
#[derive(Debug, Clone, Deserialize)]
pub struct AvailableNumber {
    /// E.164.
    pub phone_number: String,
    /// Display form.
    #[serde(default)]
    pub friendly_name: String,
    /// City.
    #[serde(default)]
    pub locality: Option<String>,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// ISO country.
    #[serde(default)]
    pub iso_country: String,
}

/// An IncomingPhoneNumber on the account (what we use of it).
#[derive(Debug, Clone, Deserialize)]
pub struct IncomingNumber {
    /// `PN...`.
    pub sid: String,
    /// E.164.
    pub phone_number: String,
    /// Where calls go.
    #[serde(default)]
    pub voice_url: Option<String>,
    /// Method of `voice_url`.
    #[serde(default)]
    pub voice_method: Option<String>,
    /// Status callback.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// Method of `status_callback`.
    #[serde(default)]
    pub status_callback_method: Option<String>,
}

/// A monthly price in integer minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    /// ISO 4217.
    pub currency: [u8; 3],
    /// Minor units.
    pub minor: i64,
}

impl Money {
    /// The currency code.
    pub fn currency(&self) -> &str {
        std::str::from_utf8(&self.currency).unwrap_or("XXX")
    }
}

/// Digits after the point of a currency's minor unit (ISO 4217; the common ones without
/// cents, else 2).
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "UGX" | "PYG" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

/// A decimal string (`"1.15"`, `"1.150"`, `"2"`) as integer minor units of `currency`, rounded
/// half up; `None` for anything else (negative, exponent, garbage). No floats.
pub fn parse_minor(amount: &str, currency: &str) -> Option<i64> {
    let digits = minor_digits(currency);
    let (whole, frac) = amount.trim().split_once('.').unwrap_or((amount.trim(), ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 12
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut minor = whole.checked_mul(10_i64.pow(digits))?;
    let kept: String = frac.chars().take(digits as usize).collect();
    let kept = format!("{kept:0<width$}", width = digits as usize);
    if !kept.is_empty() {
        minor += kept.parse::<i64>().ok()?;
    }
    if frac
        .as_bytes()
        .get(digits as usize)
        .is_some_and(|d| *d >= b'5')
    {
        minor += 1;
    }
    Some(minor)
}

/// The kind of number, as Twilio's paths and pricing name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Local` / `local`.
    Local,
    /// `TollFree` / `toll free`.
    TollFree,
    /// `Mobile` / `mobile`.
    Mobile,
}

impl Kind {
    pub(super) fn path(self) -> &'static str {
        match self {
            Self::Local => "Local",
            Self::TollFree => "TollFree",
            Self::Mobile => "Mobile",
        }
    }

    pub(super) fn pricing(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::TollFree => "toll free",
            Self::Mobile => "mobile",
        }
    }
}

/// A search's filters (already validated).
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Digits.
    pub area_code: Option<String>,
    /// Digits and `*`.
    pub contains: Option<String>,
    /// A city.
    pub locality: Option<String>,
    /// 1-30.
    pub limit: u32,
}

#[derive(Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) code: Option<i64>,
    #[serde(default)]
    pub(super) message: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct AvailablePage {
    #[serde(default)]
    pub(super) available_phone_numbers: Vec<AvailableNumber>,
}

#[derive(Deserialize)]
pub(super) struct IncomingPage {
    #[serde(default)]
    pub(super) incoming_phone_numbers: Vec<IncomingNumber>,
    #[serde(default)]
    pub(super) next_page_uri: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PricePage {
    #[serde(default)]
    pub(super) phone_number_prices: Vec<NumberPrice>,
    #[serde(default)]
    pub(super) price_unit: String,
}

#[derive(Deserialize)]
pub(super) struct NumberPrice {
    pub(super) number_type: String,
    #[serde(default)]
    pub(super) current_price: Option<String>,
    #[serde(default)]
    pub(super) base_price: Option<String>,
}

/// Removes what looks like a phone number (7 or more digits, with `+`, spaces, dashes,
/// parentheses or dots between them) from a third party's message.
pub fn redact_numbers(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let chars: Vec<char> = message.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() || chars[i] == '+' || chars[i] == '(' {
            let mut j = i;
            let mut digits = 0;
            while j < chars.len() && (chars[j].is_ascii_digit() || "+()-. ".contains(chars[j])) {
                digits += usize::from(chars[j].is_ascii_digit());
                j += 1;
            }
            if digits >= 7 {
                out.push_str("[number]");
                if chars[j - 1] == ' ' {
                    out.push(' ');
                }
                i = j;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// This platform's webhooks for a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhooks {
    /// `<PUBLIC_BASE_URL>/twilio/voice`.
    pub voice_url: String,
    /// `<PUBLIC_BASE_URL>/twilio/status`.
    pub status_callback: String,
}

impl Webhooks {
    /// The webhooks under `public_base_url`.
    pub fn under(public_base_url: &str) -> Self {
        let base = public_base_url.trim_end_matches('/');
        Self {
            voice_url: format!("{base}/twilio/voice"),
            status_callback: format!("{base}/twilio/status"),
        }
    }

    pub(super) fn form(&self) -> Vec<(&'static str, String)> {
        vec![
            ("VoiceUrl", self.voice_url.clone()),
            ("VoiceMethod", "POST".to_owned()),
            ("StatusCallback", self.status_callback.clone()),
            ("StatusCallbackMethod", "POST".to_owned()),
        ]
    }

    /// What is wrong with a number's webhooks (empty: they are ours).
    pub fn problems(&self, n: &IncomingNumber) -> Vec<String> {
        let mut problems = Vec::new();
        if n.voice_url.as_deref() != Some(self.voice_url.as_str()) {
            problems.push("VoiceUrl points elsewhere".to_owned());
        }
        if !n
            .voice_method
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("POST"))
        {
            problems.push("VoiceMethod is not POST".to_owned());
        }
        if n.status_callback.as_deref() != Some(self.status_callback.as_str()) {
            problems.push("StatusCallback points elsewhere".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_as_integer_minor_units() {
        assert_eq!(parse_minor("1.15", "USD"), Some(115));
        assert_eq!(parse_minor("1.150", "USD"), Some(115));
        assert_eq!(parse_minor("1.155", "USD"), Some(116));
        assert_eq!(parse_minor("2", "USD"), Some(200));
        assert_eq!(parse_minor("0.5", "EUR"), Some(50));
        assert_eq!(parse_minor("150", "JPY"), Some(150));
        assert_eq!(parse_minor("-1.00", "USD"), None);
        assert_eq!(parse_minor("1e3", "USD"), None);
        assert_eq!(parse_minor("", "USD"), None);
    }

    #[test]
    fn numbers_are_taken_out_of_messages() {
        assert_eq!(
            redact_numbers("PhoneNumber +14155550100 requested is not available"),
            "PhoneNumber [number] requested is not available"
        );
        assert_eq!(redact_numbers("code 21422 here"), "code 21422 here");
        assert_eq!(redact_numbers("call (415) 555-0100."), "call [number]");
    }
}
