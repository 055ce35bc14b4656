//! What Twilio sends us, parsed into typed values at the edge: form-encoded webhooks (strict
//! percent-decoding; every parameter kept for the signature) typed as [`CallWebhook`] (with the
//! one [`Direction`], [`CallStatus`] and "our number" rule, [`CallWebhook::parties`]); Media
//! Streams JSON messages are [`media`]'s. The webhooks' handlers are the submodules: [`voice`]
//! (what to do with a call) and [`status`] (its progress).

pub mod media;
pub mod status;
pub mod voice;

use mesh::api::media as media_pb;
use mesh::domain::{AccountSid, CallSid, CallerNumber, PhoneNumber};

/// Why a request from the Twilio side was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// The body is not valid `application/x-www-form-urlencoded` UTF-8.
    #[error("malformed form body: {0}")]
    Form(&'static str),
    /// A required parameter is missing.
    #[error("missing parameter {0}")]
    Missing(&'static str),
    /// A parameter has an invalid value.
    #[error("invalid parameter {0}: {1}")]
    Invalid(&'static str, String),
}

/// Decodes a form body strictly: `+` is a space, `%XX` must be valid hex, the result must be
/// UTF-8. Parameter order and repeats are kept (the signature covers all of them).
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, InputError> {
    let text = std::str::from_utf8(body).map_err(|_| InputError::Form("not UTF-8"))?;
    let mut out = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, InputError> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
        if c == b'%' && !(hex(i + 1) && hex(i + 2)) {
            return Err(InputError::Form("bad percent-escape"));
        }
    }
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| InputError::Form("percent-escapes are not UTF-8"))
}

/// Twilio's `Direction`: who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `inbound`: someone called one of the tenants' numbers. Also every value Twilio may add
    /// later: an unknown direction is taken as a call to our number, as it always was.
    Inbound,
    /// `outbound-api`: the platform placed the call through the REST API.
    OutboundApi,
    /// `outbound-dial`: a leg created by `<Dial>` (a transfer).
    OutboundDial,
}

impl Direction {
    /// Parses Twilio's string; a missing or unknown value is [`Direction::Inbound`].
    pub fn parse(s: &str) -> Self {
        match s {
            "outbound-api" => Self::OutboundApi,
            "outbound-dial" => Self::OutboundDial,
            _ => Self::Inbound,
        }
    }

    /// Twilio's name of the direction.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::OutboundApi => "outbound-api",
            Self::OutboundDial => "outbound-dial",
        }
    }

    /// The direction on the wire to media-svc.
    pub fn to_proto(self) -> media_pb::CallDirection {
        match self {
            Self::Inbound => media_pb::CallDirection::Inbound,
            Self::OutboundApi => media_pb::CallDirection::OutboundApi,
            Self::OutboundDial => media_pb::CallDirection::OutboundDial,
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Twilio's `CallStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    /// `queued`.
    Queued,
    /// `initiated`.
    Initiated,
    /// `ringing`.
    Ringing,
    /// `in-progress`.
    InProgress,
    /// `completed`.
    Completed,
    /// `busy`.
    Busy,
    /// `failed`.
    Failed,
    /// `no-answer`.
    NoAnswer,
    /// `canceled`.
    Canceled,
}

impl CallStatus {
    /// Every status with Twilio's name for it.
    const NAMES: [(&'static str, Self); 9] = [
        ("queued", Self::Queued),
        ("initiated", Self::Initiated),
        ("ringing", Self::Ringing),
        ("in-progress", Self::InProgress),
        ("completed", Self::Completed),
        ("busy", Self::Busy),
        ("failed", Self::Failed),
        ("no-answer", Self::NoAnswer),
        ("canceled", Self::Canceled),
    ];

    /// Parses Twilio's string; `None` for a value Twilio does not send.
    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    /// The status on the wire to media-svc.
    pub fn to_proto(self) -> media_pb::CallStatus {
        use media_pb::CallStatus as S;
        match self {
            Self::Queued => S::Queued,
            Self::Initiated => S::Initiated,
            Self::Ringing => S::Ringing,
            Self::InProgress => S::InProgress,
            Self::Completed => S::Completed,
            Self::Busy => S::Busy,
            Self::Failed => S::Failed,
            Self::NoAnswer => S::NoAnswer,
            Self::Canceled => S::Canceled,
        }
    }
}

/// The parameters of a voice or status webhook we act on.
#[derive(Debug, Clone)]
pub struct CallWebhook {
    /// `CallSid`.
    pub call_sid: CallSid,
    /// `AccountSid`.
    pub account_sid: AccountSid,
    /// `From` as received (E.164, `client:…`, `anonymous`, …).
    pub from_raw: String,
    /// `From` when it is an E.164 number (callers without one get no memory).
    pub from: Option<CallerNumber>,
    /// `To` as received.
    pub to: String,
    /// `CallStatus`; `None` when absent or empty (voice webhooks may omit it).
    pub call_status: Option<CallStatus>,
    /// `Direction` (`inbound` when absent).
    pub direction: Direction,
    /// `CallDuration` (status callbacks), seconds.
    pub duration: Option<i32>,
    /// `SequenceNumber` (status callbacks).
    pub sequence: Option<u32>,
}

/// The two parties of a call as the platform sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parties<'a> {
    /// The tenant's own number: what `ResolveNumber` looks up. `None` when that side is not a
    /// valid number at all (tenant-svc would refuse it: no tenant can own it).
    pub ours: Option<PhoneNumber>,
    /// The other party, as received (it may be `anonymous` or a client name).
    pub remote: &'a str,
}

impl CallWebhook {
    /// The one "our number" rule, for voice webhooks and status callbacks alike. Twilio's
    /// `Direction` says who placed the call: on `inbound` someone called the tenant's number, so
    /// it is `To`; on every outbound kind Twilio dialled on the platform's behalf and the
    /// tenant's number is the caller id, `From` (`outbound-api` is how media-svc places calls;
    /// an `outbound-dial` leg's `To` is a transfer target, never one of ours). The voice handler
    /// used to take `To` for `outbound-dial` and the status handler `From` for directions it did
    /// not know; now an unknown direction is inbound everywhere, as `RegisterCall` records it.
    pub fn parties(&self) -> Parties<'_> {
        let (ours, remote) = match self.direction {
            Direction::Inbound => (&self.to, &self.from_raw),
            Direction::OutboundApi | Direction::OutboundDial => (&self.from_raw, &self.to),
        };
        Parties {
            ours: PhoneNumber::parse(ours).ok(),
            remote,
        }
    }

    /// Picks and checks the parameters (the first value of each name).
    pub fn from_params(params: &[(String, String)]) -> Result<Self, InputError> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let req = |name: &'static str| get(name).ok_or(InputError::Missing(name));
        let call_sid = CallSid::parse(req("CallSid")?)
            .map_err(|e| InputError::Invalid("CallSid", e.to_string()))?;
        let account_sid = AccountSid::parse(req("AccountSid")?)
            .map_err(|e| InputError::Invalid("AccountSid", e.to_string()))?;
        let from_raw = get("From").unwrap_or_default().to_owned();
        let to = req("To")?.to_owned();
        let call_status = match get("CallStatus").unwrap_or_default() {
            "" => None,
            s => Some(
                CallStatus::parse(s)
                    .ok_or_else(|| InputError::Invalid("CallStatus", "unknown status".into()))?,
            ),
        };
        Ok(Self {
            call_sid,
            account_sid,
            from: CallerNumber::from_network(&from_raw),
            from_raw,
            to,
            call_status,
            direction: Direction::parse(get("Direction").unwrap_or_default()),
            duration: numeric("CallDuration", get("CallDuration"))?,
            sequence: numeric("SequenceNumber", get("SequenceNumber"))?,
        })
    }
}

/// An optional numeric parameter.
fn numeric<T: std::str::FromStr>(
    name: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, InputError> {
    value
        .map(|d| {
            d.parse()
                .map_err(|_| InputError::Invalid(name, "not a number".into()))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms_decode_strictly() {
        let p = parse_form(b"CallSid=CA1&From=%2B14155550100&Caller=a+b&Empty=&Flag").unwrap();
        assert_eq!(p[1], ("From".into(), "+14155550100".into()));
        assert_eq!(p[2].1, "a b");
        assert_eq!(p[3].1, "");
        assert_eq!(p[4], ("Flag".into(), String::new()));
        assert!(parse_form(b"a=%zz").is_err());
        assert!(parse_form(b"a=%4").is_err());
        assert!(parse_form(b"a=%ff").is_err());
        assert!(parse_form(&[0xff, 0xfe]).is_err());
    }

    fn webhook(pairs: &[(&str, &str)]) -> Result<CallWebhook, InputError> {
        let p: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CallWebhook::from_params(&p)
    }

    #[test]
    fn webhooks_are_typed() {
        let ok = webhook(&[
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("From", "anonymous"),
            ("To", "+14155550101"),
            ("CallStatus", "ringing"),
        ])
        .unwrap();
        assert!(ok.from.is_none());
        assert_eq!(ok.direction.as_str(), "inbound");
        let bad = webhook(&[
            ("CallSid", "XX0123456789abcdef0123456789abcdef"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("To", "+14155550101"),
        ]);
        assert!(matches!(bad, Err(InputError::Invalid("CallSid", _))));
        assert_eq!(
            webhook(&[("CallSid", "CA0123456789abcdef0123456789abcdef")]).unwrap_err(),
            InputError::Missing("AccountSid")
        );
    }

    #[test]
    fn directions_and_statuses_parse_from_twilios_strings() {
        for d in ["inbound", "outbound-api", "outbound-dial"] {
            assert_eq!(Direction::parse(d).as_str(), d);
        }
        // Missing or unknown: a call to our number, as media-svc records it.
        assert_eq!(Direction::parse(""), Direction::Inbound);
        assert_eq!(Direction::parse("trunking-originating"), Direction::Inbound);
        assert_eq!(CallStatus::parse("no-answer"), Some(CallStatus::NoAnswer));
        assert_eq!(CallStatus::parse("answered"), None);
        let unknown = webhook(&[
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("To", "+14155550101"),
            ("CallStatus", "answered"),
        ]);
        assert!(matches!(unknown, Err(InputError::Invalid("CallStatus", _))));
    }

    #[test]
    fn our_number_is_to_on_inbound_calls_and_from_on_calls_twilio_placed() {
        let hook = |direction: &str| {
            webhook(&[
                ("CallSid", "CA0123456789abcdef0123456789abcdef"),
                ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
                ("From", "+14155550101"),
                ("To", "+351912345678"),
                ("Direction", direction),
            ])
            .unwrap()
        };
        let to = PhoneNumber::parse("+351912345678").unwrap();
        let from = PhoneNumber::parse("+14155550101").unwrap();
        for (direction, ours, remote) in [
            ("inbound", &to, "+14155550101"),
            ("weird", &to, "+14155550101"),
            ("outbound-api", &from, "+351912345678"),
            ("outbound-dial", &from, "+351912345678"),
        ] {
            let h = hook(direction);
            let parties = h.parties();
            assert_eq!(parties.ours.as_ref(), Some(ours), "{direction}");
            assert_eq!(parties.remote, remote, "{direction}");
        }
        // A side that is no number at all is nobody's.
        let mut anonymous = hook("outbound-api");
        anonymous.from_raw = "anonymous".into();
        assert_eq!(anonymous.parties().ours, None);
    }

    proptest! {
        #[test]
        fn form_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_form(&body);
        }

        #[test]
        fn form_round_trips(pairs in proptest::collection::vec(("[A-Za-z]{1,8}", "\\PC{0,12}"), 0..6)) {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .finish();
            let parsed = parse_form(body.as_bytes()).unwrap();
            prop_assert_eq!(parsed, pairs);
        }

        #[test]
        fn webhook_params_of_any_shape_never_panic(pairs in proptest::collection::vec(
            (prop_oneof![Just("CallSid".to_owned()), Just("AccountSid".to_owned()), Just("From".to_owned()),
                         Just("To".to_owned()), Just("Direction".to_owned()), Just("CallStatus".to_owned()),
                         "\\PC{0,8}"], "\\PC{0,40}"), 0..10)) {
            let _ = CallWebhook::from_params(&pairs);
        }
    }
}
