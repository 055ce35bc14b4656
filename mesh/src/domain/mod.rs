//! Validated newtypes for identifiers that cross the wire. Parse at the boundary: handlers turn
//! protobuf strings and integers into these types first, and only these types reach SQL.

use std::fmt;

pub mod dial;
mod sql;

pub use dial::{DialPolicy, DialRefusal, RestrictedType};

/// Why a value was refused. The message names the rule; the caller adds the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DomainError(pub String);

/// A tenant's id: a positive 64-bit integer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct CustomerId(i64);

impl CustomerId {
    /// Accepts ids >= 1.
    pub fn new(id: i64) -> Result<Self, DomainError> {
        if id >= 1 {
            Ok(Self(id))
        } else {
            Err(DomainError(format!(
                "customer id must be a positive integer, got {id}"
            )))
        }
    }

    /// The raw id, for SQL parameters and the wire.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for CustomerId {
    type Error = DomainError;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<CustomerId> for i64 {
    fn from(v: CustomerId) -> i64 {
        v.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A number a tenant owns or dials (assigned Twilio numbers, transfer targets, outbound
/// destinations): a valid number per libphonenumber's metadata, normalised to E.164.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses an international number (`+` and country code required; spaces, dashes, dots and
    /// parentheses are tolerated and removed) and checks it is a valid number.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.trim();
        if !trimmed.starts_with('+') {
            return Err(DomainError(
                "must be an E.164 number starting with + and the country code".into(),
            ));
        }
        if trimmed.len() > 32 {
            return Err(DomainError("is too long for a phone number".into()));
        }
        let parsed = phonenumber::parse(None, trimmed)
            .map_err(|_| DomainError("is not a phone number".into()))?;
        if !phonenumber::is_valid(&parsed) {
            return Err(DomainError(
                "is not a valid (assignable) phone number".into(),
            ));
        }
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        Ok(Self(e164))
    }

    /// The E.164 form, e.g. `+15550100123`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country calling code, e.g. `1` or `351`.
    pub fn country_code(&self) -> u16 {
        phonenumber::parse(None, &self.0)
            .map(|p| p.code().value())
            .unwrap_or(0)
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A caller's number as the telephone network or an old client sends it: any syntactically
/// E.164 value (`+` then 8-15 digits, no leading zero), even in unassigned ranges such as the
/// 555 test numbers. Anonymous or `client:` caller ids are not `CallerNumber`s (see
/// [`CallerNumber::from_network`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallerNumber(String);

impl CallerNumber {
    /// Strict syntax check, for request fields such as a memory's `user_id`.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let s = input.trim();
        let digits = s
            .strip_prefix('+')
            .ok_or_else(|| DomainError("must be E.164: + followed by 8 to 15 digits".into()))?;
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(DomainError(
                "must be E.164: + followed by 8 to 15 digits".into(),
            ))
        }
    }

    /// Twilio's `From`: `None` for anonymous, blocked, `client:` or otherwise non-E.164 caller
    /// ids, which are still answered but get no caller memory.
    pub fn from_network(input: &str) -> Option<Self> {
        Self::parse(input).ok()
    }

    /// The E.164 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number for display where the full number must not show (listings, logs): the country
    /// code and the last four digits, the rest as dots in groups of three, e.g.
    /// `+1 ••• ••• 0123`.
    pub fn masked(&self) -> String {
        let digits = &self.0[1..];
        let country = phonenumber::parse(None, &self.0)
            .ok()
            .map(|p| p.code().value().to_string())
            .filter(|c| digits.starts_with(c.as_str()) && digits.len() > c.len() + 4)
            .unwrap_or_else(|| digits[..1].to_owned());
        let hidden = digits.len() - country.len() - 4;
        let dots: Vec<&str> = (0..hidden.div_ceil(3)).map(|_| "•••").collect();
        format!(
            "+{country} {} {}",
            dots.join(" "),
            &digits[digits.len() - 4..]
        )
    }
}

impl fmt::Display for CallerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn twilio_sid(prefix: &str, input: &str) -> Result<String, DomainError> {
    let ok = input.len() == 34
        && input.starts_with(prefix)
        && input[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b.to_ascii_lowercase()));
    if ok {
        Ok(input.to_owned())
    } else {
        Err(DomainError(format!(
            "must be `{prefix}` followed by 32 hexadecimal characters"
        )))
    }
}

macro_rules! sid_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The two-letter prefix of this kind of sid.
            pub const PREFIX: &'static str = $prefix;

            /// Accepts exactly the prefix followed by 32 hex characters.
            pub fn parse(input: &str) -> Result<Self, DomainError> {
                twilio_sid($prefix, input).map(Self)
            }

            /// The sid text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

sid_type!(
    /// A Twilio call sid: `CA` + 32 hex.
    CallSid,
    "CA"
);
sid_type!(
    /// A Twilio account sid: `AC` + 32 hex.
    AccountSid,
    "AC"
);
sid_type!(
    /// A Twilio media stream sid: `MZ` + 32 hex.
    StreamSid,
    "MZ"
);

/// A voice the realtime backend can speak with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Voice {
    /// `alloy`
    Alloy,
    /// `ash`
    Ash,
    /// `ballad`
    Ballad,
    /// `coral`
    Coral,
    /// `echo`
    Echo,
    /// `sage`
    Sage,
    /// `shimmer`
    Shimmer,
    /// `verse`
    Verse,
    /// `marin`
    Marin,
    /// `cedar`
    Cedar,
}

impl Voice {
    /// Every realtime voice.
    pub const ALL: [Voice; 10] = [
        Voice::Alloy,
        Voice::Ash,
        Voice::Ballad,
        Voice::Coral,
        Voice::Echo,
        Voice::Sage,
        Voice::Shimmer,
        Voice::Verse,
        Voice::Marin,
        Voice::Cedar,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Voice::Alloy => "alloy",
            Voice::Ash => "ash",
            Voice::Ballad => "ballad",
            Voice::Coral => "coral",
            Voice::Echo => "echo",
            Voice::Sage => "sage",
            Voice::Shimmer => "shimmer",
            Voice::Verse => "verse",
            Voice::Marin => "marin",
            Voice::Cedar => "cedar",
        }
    }

    /// Parses a voice name; text-to-speech-only voices get a message saying why they are refused.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let name = input.trim().to_ascii_lowercase();
        if let Some(v) = Self::ALL.iter().find(|v| v.as_str() == name) {
            return Ok(*v);
        }
        let choices = Self::ALL.map(Voice::as_str).join(", ");
        if matches!(name.as_str(), "fable" | "onyx" | "nova") {
            return Err(DomainError(format!(
                "`{name}` is a text-to-speech voice and does not work on realtime calls; choose one of {choices}"
            )));
        }
        Err(DomainError(format!(
            "unknown voice; choose one of {choices}"
        )))
    }
}

impl fmt::Display for Voice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The 30 personality slider names, in the product's order.
pub const SLIDER_NAMES: [&str; 30] = [
    "warmth",
    "formality",
    "humor",
    "directness",
    "empathy",
    "confidence",
    "curiosity",
    "patience",
    "creativity",
    "analytical",
    "storytelling",
    "detail",
    "assertiveness",
    "humility",
    "optimism",
    "sarcasm",
    "memory",
    "formalityShift",
    "inclusive",
    "risk",
    "selfReference",
    "topicFocus",
    "repetition",
    "intensity",
    "humorSensitivity",
    "consistency",
    "metaAwareness",
    "jargon",
    "polish",
    "caution",
];

/// One slider setting: a known name and a value 0-100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slider {
    name: &'static str,
    value: u8,
}

impl Slider {
    /// Accepts one of [`SLIDER_NAMES`] (exact spelling) and a value 0-100.
    pub fn new(name: &str, value: u32) -> Result<Self, DomainError> {
        let name = SLIDER_NAMES
            .iter()
            .find(|n| **n == name)
            .ok_or_else(|| DomainError(format!("unknown slider `{}`", name.escape_debug())))?;
        if value > 100 {
            return Err(DomainError(format!(
                "slider `{name}` must be between 0 and 100, got {value}"
            )));
        }
        Ok(Self {
            name,
            value: value as u8,
        })
    }

    /// The slider's name.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// The value, 0-100.
    pub fn value(self) -> u8 {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn customer_ids_are_positive() {
        assert!(CustomerId::new(0).is_err());
        assert!(CustomerId::new(-5).is_err());
        assert_eq!(CustomerId::new(42).unwrap().get(), 42);
        let parsed: Result<CustomerId, _> = serde_json::from_str("0");
        assert!(parsed.is_err());
    }

    #[test]
    fn masked_numbers_keep_the_country_code_and_last_four_digits_only() {
        let masked = |n: &str| CallerNumber::parse(n).unwrap().masked();
        assert_eq!(masked("+14155550123"), "+1 ••• ••• 0123");
        assert_eq!(masked("+447700900123"), "+44 ••• ••• 0123");
        assert_eq!(masked("+33612345678"), "+33 ••• ••• 5678");
        for n in ["+14155550123", "+447700900123", "+12345678"] {
            let m = masked(n);
            assert!(
                !m.contains(&n[n.len() - 7..]),
                "{m} shows more than four digits"
            );
        }
    }

    #[test]
    fn phone_numbers_are_validated_and_normalised() {
        assert_eq!(
            PhoneNumber::parse("+1 (415) 867-5309").unwrap().as_str(),
            "+14158675309"
        );
        assert_eq!(
            PhoneNumber::parse("+351 912 345 678")
                .unwrap()
                .country_code(),
            351
        );
        for bad in [
            "4158675309",
            "+1415",
            "",
            "+",
            "+1555abc1212",
            "+999123456789",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn caller_numbers_are_tolerant_but_syntactic() {
        assert!(CallerNumber::parse("+15551111111").is_ok());
        for bad in [
            "anonymous",
            "client:alice",
            "",
            "+1234567",
            "+1234567890123456",
            "+0123456789",
        ] {
            assert!(CallerNumber::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(CallerNumber::from_network("client:alice").is_none());
    }

    #[test]
    fn sids_need_prefix_and_32_hex() {
        assert!(CallSid::parse("CA1234567890abcdef1234567890ABCDEF").is_ok());
        assert!(CallSid::parse("AC1234567890abcdef1234567890abcdef").is_err());
        assert!(CallSid::parse("CA1234").is_err());
        assert!(CallSid::parse("CA1234567890abcdef1234567890abcdeg").is_err());
        assert!(AccountSid::parse("AC1234567890abcdef1234567890abcdef").is_ok());
        assert!(StreamSid::parse("MZ1234567890abcdef1234567890abcdef").is_ok());
    }

    #[test]
    fn tts_only_voices_are_refused_with_a_reason() {
        assert_eq!(Voice::parse("Marin").unwrap(), Voice::Marin);
        let err = Voice::parse("fable").unwrap_err().0;
        assert!(err.contains("text-to-speech"), "{err}");
        assert!(
            Voice::parse("robot")
                .unwrap_err()
                .0
                .contains("unknown voice")
        );
    }

    #[test]
    fn sliders_need_known_names_and_range() {
        assert_eq!(SLIDER_NAMES.len(), 30);
        assert!(Slider::new("warmth", 100).is_ok());
        assert!(Slider::new("warmth", 101).is_err());
        assert!(Slider::new("Warmth", 50).is_err());
        assert!(Slider::new("formalityShift", 0).is_ok());
    }

    proptest! {
        #[test]
        fn caller_number_accepts_exactly_e164_syntax(s in "\\PC{0,20}") {
            let ok = CallerNumber::parse(&s).is_ok();
            let t = s.trim();
            let expected = t.strip_prefix('+').is_some_and(|d| {
                (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
            });
            prop_assert_eq!(ok, expected);
        }

        #[test]
        fn valid_caller_numbers_round_trip(d in "[1-9][0-9]{7,14}") {
            let n = format!("+{d}");
            let parsed = CallerNumber::parse(&n).unwrap();
            prop_assert_eq!(parsed.as_str(), n.as_str());
        }

        #[test]
        fn phone_parse_never_panics_and_normalises(s in "\\PC{0,40}") {
            if let Ok(p) = PhoneNumber::parse(&s) {
                // Normalised output is itself valid, digits only after '+', and stable.
                prop_assert!(p.as_str().starts_with('+'));
                prop_assert!(p.as_str()[1..].bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(PhoneNumber::parse(p.as_str()).unwrap(), p);
            }
        }

        #[test]
        fn call_sid_accepts_exactly_ca_plus_32_hex(s in "(CA|AC|ca)?[0-9a-fA-Fg]{0,34}") {
            let expected = s.len() == 34 && s.starts_with("CA") && s[2..].chars().all(|c| c.is_ascii_hexdigit());
            prop_assert_eq!(CallSid::parse(&s).is_ok(), expected);
        }

        #[test]
        fn slider_values_in_range_are_accepted(i in 0usize..30, v in 0u32..200) {
            let r = Slider::new(SLIDER_NAMES[i], v);
            prop_assert_eq!(r.is_ok(), v <= 100);
        }

        #[test]
        fn customer_id_accepts_only_positive(v in any::<i64>()) {
            prop_assert_eq!(CustomerId::new(v).is_ok(), v >= 1);
        }
    }
}
