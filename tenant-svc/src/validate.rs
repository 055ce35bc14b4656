//! Validation of everything a client can set, turning protobuf strings into checked values.
//! Each function names the field in its error, so the client sees exactly what to fix; nothing is
//! stored unless every field of the request passed.

use mesh::domain::{PhoneNumber, Slider, Voice};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TenantError};

/// Longest agent name.
pub const MAX_AGENT_NAME: usize = 60;
/// Longest greeting.
pub const MAX_GREETING: usize = 500;
/// Most prompt blocks / transfer rules.
pub const MAX_LIST: usize = 20;
/// Longest prompt block text.
pub const MAX_PROMPT_TEXT: usize = 4000;
/// Placeholders a greeting may use.
pub const PLACEHOLDERS: [&str; 3] = ["agent_name", "user_name", "time_greeting"];
/// Package tiers.
pub const TIERS: [&str; 3] = ["starter", "professional", "enterprise"];

/// A prompt block as stored (JSON) and used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptBlock {
    /// Identifier.
    pub name: String,
    /// Instruction text.
    pub text: String,
}

/// A transfer rule as stored (JSON) and used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRule {
    /// What the caller asks for.
    pub keyword: String,
    /// E.164 target.
    pub number: String,
    /// What the target handles.
    pub description: String,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn no_control(field: &str, s: &str, allow_newlines: bool) -> Result<()> {
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() && !(allow_newlines && (*c == '\n' || *c == '\t')))
    {
        return Err(TenantError::invalid(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(())
}

fn bounded_text(field: &str, s: &str, min: usize, max: usize, newlines: bool) -> Result<String> {
    let n = chars(s);
    if n < min || n > max {
        return Err(TenantError::invalid(
            field,
            if min > 0 {
                format!("must be {min} to {max} characters, got {n}")
            } else {
                format!("must be at most {max} characters, got {n}")
            },
        ));
    }
    no_control(field, s, newlines)?;
    Ok(s.to_owned())
}

/// Agent name: 1-60 characters, no control characters.
pub fn agent_name(field: &str, s: &str) -> Result<String> {
    if s.trim().is_empty() {
        return Err(TenantError::invalid(field, "must not be empty"));
    }
    bounded_text(field, s, 1, MAX_AGENT_NAME, false)
}

/// Greeting template: at most 500 characters, no control characters, only the placeholders
/// `{agent_name}`, `{user_name}`, `{time_greeting}`, braces only as part of a placeholder.
pub fn greeting(field: &str, s: &str) -> Result<String> {
    bounded_text(field, s, 1, MAX_GREETING, false)?;
    let mut rest = s;
    while let Some(i) = rest.find(['{', '}']) {
        if rest[i..].starts_with('}') {
            return Err(TenantError::invalid(
                field,
                "has a `}` without a matching `{`; braces are only for placeholders",
            ));
        }
        let after = &rest[i + 1..];
        let Some(end) = after.find('}') else {
            return Err(TenantError::invalid(
                field,
                "has a `{` that is never closed",
            ));
        };
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(TenantError::invalid(
                field,
                format!(
                    "unknown placeholder `{{{}}}`; allowed: {{agent_name}}, {{user_name}}, {{time_greeting}}",
                    name.chars().take(40).collect::<String>()
                ),
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(s.to_owned())
}

/// A realtime voice.
pub fn voice(field: &str, s: &str) -> Result<Voice> {
    Voice::parse(s).map_err(|e| TenantError::invalid(field, e))
}

/// One slider.
pub fn slider(field: &str, name: &str, value: u32) -> Result<Slider> {
    Slider::new(name, value).map_err(|e| TenantError::invalid(field, e))
}

/// An IANA time zone name.
pub fn time_zone(field: &str, s: &str) -> Result<chrono_tz::Tz> {
    s.parse::<chrono_tz::Tz>().map_err(|_| {
        TenantError::invalid(
            field,
            "must be an IANA time zone name such as America/New_York or Europe/Lisbon",
        )
    })
}

/// Prompt blocks: at most 20; names 1-60 of letters, digits, `_`, `-`; texts 1-4,000 characters.
pub fn prompt_blocks(
    field: &str,
    blocks: &[mesh::api::tenant::PromptBlock],
) -> Result<Vec<PromptBlock>> {
    if blocks.len() > MAX_LIST {
        return Err(TenantError::invalid(
            field,
            format!("at most {MAX_LIST} blocks, got {}", blocks.len()),
        ));
    }
    blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let f = format!("{field}[{i}]");
            if b.name.is_empty()
                || chars(&b.name) > 60
                || !b
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(TenantError::invalid(
                    format!("{f}.name"),
                    "must be 1 to 60 letters, digits, `_` or `-`",
                ));
            }
            Ok(PromptBlock {
                name: b.name.clone(),
                text: bounded_text(&format!("{f}.text"), &b.text, 1, MAX_PROMPT_TEXT, true)?,
            })
        })
        .collect()
}

/// Transfer rules: at most 20; keyword 1-60; a valid E.164 number; description at most 200.
pub fn transfer_rules(
    field: &str,
    rules: &[mesh::api::tenant::TransferRule],
) -> Result<Vec<TransferRule>> {
    if rules.len() > MAX_LIST {
        return Err(TenantError::invalid(
            field,
            format!("at most {MAX_LIST} rules, got {}", rules.len()),
        ));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f = format!("{field}[{i}]");
            if r.keyword.trim().is_empty() {
                return Err(TenantError::invalid(
                    format!("{f}.keyword"),
                    "must not be empty",
                ));
            }
            let keyword = bounded_text(&format!("{f}.keyword"), &r.keyword, 1, 60, false)?;
            let number = PhoneNumber::parse(&r.number)
                .map_err(|e| TenantError::invalid(format!("{f}.number"), e))?;
            let description =
                bounded_text(&format!("{f}.description"), &r.description, 0, 200, false)?;
            Ok(TransferRule {
                keyword,
                number: number.as_str().to_owned(),
                description,
            })
        })
        .collect()
}

/// Contact email: RFC 5322 addr-spec, at most 254 characters; stored as given (trimmed).
pub fn email(field: &str, s: &str) -> Result<String> {
    let s = s.trim();
    if s.len() > 254 || !email_address::EmailAddress::is_valid(s) || !s.contains('.') {
        return Err(TenantError::invalid(
            field,
            "must be an email address like name@example.com",
        ));
    }
    Ok(s.to_owned())
}

/// Business name: 1-200 characters.
pub fn business_name(field: &str, s: &str) -> Result<String> {
    if s.trim().is_empty() {
        return Err(TenantError::invalid(field, "must not be empty"));
    }
    bounded_text(field, s.trim(), 1, 200, false)
}

/// Contact name: at most 200 characters.
pub fn contact_name(field: &str, s: &str) -> Result<String> {
    bounded_text(field, s.trim(), 0, 200, false)
}

/// Optional contact phone: empty, or a valid E.164 number.
pub fn optional_phone(field: &str, s: &str) -> Result<String> {
    if s.trim().is_empty() {
        return Ok(String::new());
    }
    PhoneNumber::parse(s)
        .map(|p| p.as_str().to_owned())
        .map_err(|e| TenantError::invalid(field, e))
}

/// Package tier; `starter` when empty.
pub fn package_tier(field: &str, s: &str) -> Result<String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok("starter".into());
    }
    if TIERS.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(TenantError::invalid(
            field,
            format!("must be one of {}", TIERS.join(", ")),
        ))
    }
}

/// Most allowed country calling codes.
pub const MAX_COUNTRY_CODES: usize = 50;
/// Most allowed personas.
pub const MAX_PERSONAS: usize = 20;
/// Longest persona name.
pub const MAX_PERSONA: usize = 60;
/// Most numbers on the do-not-call list.
pub const MAX_DO_NOT_CALL: usize = 10_000;
/// Most CORS origins.
pub const MAX_ORIGINS: usize = 20;
/// Longest webhook URL.
pub const MAX_WEBHOOK_URL: usize = 2_000;
/// Highest per-tenant hourly limit of the public calls endpoint.
pub const MAX_PUBLIC_CALLS_PER_HOUR: u32 = 10_000;

fn too_many(field: &str, max: usize, what: &str, got: usize) -> Result<()> {
    if got > max {
        return Err(TenantError::invalid(
            field,
            format!("at most {max} {what}, got {got}"),
        ));
    }
    Ok(())
}

/// Keeps the first occurrence of each value (lists whose entries are normalised, so that
/// `+351 912 345 678` and `+351912345678` are one entry).
fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    values
        .into_iter()
        .filter(|v| seen.insert(v.clone()))
        .collect()
}

/// Allowed country calling codes: at most 50 codes of 1-3 digits (a leading `+` is accepted and
/// dropped) that exist in libphonenumber's metadata; stored as digits, duplicates removed.
pub fn country_codes(field: &str, codes: &[String]) -> Result<Vec<String>> {
    too_many(field, MAX_COUNTRY_CODES, "country codes", codes.len())?;
    let parsed = codes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = format!("{field}[{i}]");
            let digits = c.trim().strip_prefix('+').unwrap_or(c.trim());
            let code = (1..=3)
                .contains(&digits.len())
                .then_some(digits)
                .filter(|d| d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0'))
                .and_then(|d| d.parse::<u16>().ok())
                .ok_or_else(|| {
                    TenantError::invalid(
                        &f,
                        "must be a country calling code of 1 to 3 digits, e.g. 351 or 1",
                    )
                })?;
            if phonenumber::metadata::DATABASE.by_code(&code).is_none() {
                return Err(TenantError::invalid(
                    &f,
                    format!("+{code} is not an assigned country calling code"),
                ));
            }
            Ok(code.to_string())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(dedup(parsed))
}

/// Persona names: at most 20, each 1-60 letters, digits, spaces or `-'.` (trimmed), unique
/// ignoring case (a website asks for one by name; two that differ only in case would be a trap).
pub fn personas(field: &str, personas: &[String]) -> Result<Vec<String>> {
    too_many(field, MAX_PERSONAS, "personas", personas.len())?;
    let mut out: Vec<String> = Vec::with_capacity(personas.len());
    for (i, p) in personas.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let p = p.trim();
        no_control(&f, p, false)?;
        let n = chars(p);
        if n == 0 || n > MAX_PERSONA {
            return Err(TenantError::invalid(
                &f,
                format!("must be 1 to {MAX_PERSONA} characters, got {n}"),
            ));
        }
        if let Some(c) = p
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '-' | '\'' | '.')))
        {
            return Err(TenantError::invalid(
                &f,
                format!(
                    "may contain only letters, digits, spaces and - ' . (found `{}`)",
                    c.escape_debug()
                ),
            ));
        }
        if let Some(j) = out
            .iter()
            .position(|o| o.to_lowercase() == p.to_lowercase())
        {
            return Err(TenantError::invalid(
                &f,
                format!("duplicates {field}[{j}]; persona names must be unique"),
            ));
        }
        out.push(p.to_owned());
    }
    Ok(out)
}

/// The do-not-call list: at most 10,000 valid numbers, normalised to E.164, duplicates removed.
pub fn do_not_call(field: &str, numbers: &[String]) -> Result<Vec<String>> {
    too_many(field, MAX_DO_NOT_CALL, "numbers", numbers.len())?;
    let parsed = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| {
            PhoneNumber::parse(n)
                .map(|p| p.as_str().to_owned())
                .map_err(|e| TenantError::invalid(format!("{field}[{i}]"), e))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(dedup(parsed))
}

/// Origins allowed to call the public calls endpoint: at most 20 exact origins
/// `scheme://host[:port]` as browsers send them in `Origin` (no path, no trailing slash, no
/// wildcard), `https` unless `allow_insecure`; stored lower-case without a default port,
/// duplicates removed.
pub fn cors_origins(field: &str, origins: &[String], allow_insecure: bool) -> Result<Vec<String>> {
    too_many(field, MAX_ORIGINS, "origins", origins.len())?;
    let parsed = origins
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let f = format!("{field}[{i}]");
            if o.contains('*') {
                return Err(TenantError::invalid(
                    &f,
                    "wildcards are not allowed; list each origin, e.g. https://www.example.com",
                ));
            }
            let url = HttpUrl::parse(o, allow_insecure).map_err(|e| TenantError::invalid(&f, e))?;
            if !url.rest.is_empty() {
                return Err(TenantError::invalid(
                    &f,
                    format!(
                        "must be an origin without path or trailing slash, e.g. {}",
                        url.origin()
                    ),
                ));
            }
            Ok(url.origin())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(dedup(parsed))
}

/// The webhook URL: empty (webhooks off) or an absolute `https://` URL (`http://` too when
/// `allow_insecure`) of at most 2,000 characters, without credentials or fragment. Unless
/// `allow_insecure`, a host that is `localhost` or a loopback, private, link-local or unspecified
/// IP literal is refused here already (media-svc also checks the resolved addresses of names at
/// delivery time). Scheme and host are stored lower-case.
pub fn webhook_url(field: &str, s: &str, allow_insecure: bool) -> Result<String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    let n = chars(s);
    if n > MAX_WEBHOOK_URL {
        return Err(TenantError::invalid(
            field,
            format!("must be at most {MAX_WEBHOOK_URL} characters, got {n}"),
        ));
    }
    let url = HttpUrl::parse(s, allow_insecure).map_err(|e| TenantError::invalid(field, e))?;
    if !allow_insecure && url.host.is_internal() {
        return Err(TenantError::invalid(
            field,
            "must not point at localhost or a loopback, private or link-local address",
        ));
    }
    Ok(url.to_string())
}

/// Requests per tenant per hour on the public calls endpoint: 0 (the platform default) to 10,000.
pub fn public_calls_per_hour(field: &str, n: u32) -> Result<u32> {
    if n > MAX_PUBLIC_CALLS_PER_HOUR {
        return Err(TenantError::invalid(
            field,
            format!("must be at most {MAX_PUBLIC_CALLS_PER_HOUR} (0 = platform default), got {n}"),
        ));
    }
    Ok(n)
}

/// The host of an [`HttpUrl`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// A DNS name, lower-case.
    Name(String),
    /// An IPv4 literal.
    V4(std::net::Ipv4Addr),
    /// An IPv6 literal (written in brackets).
    V6(std::net::Ipv6Addr),
}

impl Host {
    /// A DNS name of letters, digits and hyphens in dot-separated labels of 1-63 characters, or a
    /// canonical IP literal. Deliberately stricter than URL parsers, which read `2130706433` or
    /// `0x7f.1` as 127.0.0.1: a last label starting with a digit must be a dotted-quad IPv4.
    fn parse(s: &str) -> std::result::Result<Self, String> {
        const BAD: &str = "has an invalid host; use a DNS name or an IP address";
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(BAD)?;
            return inner
                .parse::<std::net::Ipv6Addr>()
                .map(Host::V6)
                .map_err(|_| BAD.to_owned());
        }
        let name = s.to_ascii_lowercase();
        if name.is_empty() || name.len() > 253 {
            return Err(BAD.to_owned());
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels
            .last()
            .is_some_and(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        {
            return name
                .parse::<std::net::Ipv4Addr>()
                .map(Host::V4)
                .map_err(|_| BAD.to_owned());
        }
        let label_ok = |l: &&str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !labels.iter().all(label_ok) {
            return Err(BAD.to_owned());
        }
        Ok(Host::Name(name))
    }

    /// `localhost` names and loopback, private, shared (CGNAT), link-local, unspecified or
    /// broadcast IP literals.
    fn is_internal(&self) -> bool {
        fn v4(ip: &std::net::Ipv4Addr) -> bool {
            let [a, b, ..] = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
        }
        match self {
            Host::Name(n) => n == "localhost" || n.ends_with(".localhost"),
            Host::V4(ip) => v4(ip),
            Host::V6(ip) => {
                let first = ip.segments()[0];
                ip.is_loopback()
                    || ip.is_unspecified()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
                    || ip.to_ipv4_mapped().is_some_and(|m| v4(&m))
            }
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(ip) => write!(f, "{ip}"),
            Host::V6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// A strictly parsed absolute `http(s)` URL: a subset of RFC 3986 that every URL parser reads
/// the same way (no whitespace, no credentials, no fragment, percent-escapes well formed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpUrl {
    /// `https` or `http`.
    scheme: &'static str,
    host: Host,
    /// Explicit non-default port.
    port: Option<u16>,
    /// Path and query, from the `/` or `?` on; possibly empty.
    rest: String,
}

impl HttpUrl {
    fn parse(s: &str, allow_insecure: bool) -> std::result::Result<Self, String> {
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "must not contain spaces or control characters (found U+{:04X})",
                c as u32
            ));
        }
        let (scheme, after) = s
            .split_once("://")
            .ok_or("must be an absolute URL such as https://hooks.example.com/calls")?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => "https",
            "http" if allow_insecure => "http",
            "http" => return Err("must use https://".to_owned()),
            _ => return Err("must be an https:// URL".to_owned()),
        };
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        if authority.contains('@') {
            return Err("must not contain credentials (user:password@)".to_owned());
        }
        if rest.contains('#') {
            return Err("must not have a fragment (#...)".to_owned());
        }
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                (&authority[..i], Some(&authority[i + 1..]))
            }
            _ => (authority, None),
        };
        let host = Host::parse(host)?;
        let port = match port {
            None => None,
            Some(p) => {
                let n = p
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| p.parse::<u16>().ok())
                    .flatten()
                    .filter(|n| *n > 0)
                    .ok_or("has an invalid port; use 1 to 65535")?;
                let default = if scheme == "https" { 443 } else { 80 };
                (n != default).then_some(n)
            }
        };
        let bytes = rest.as_bytes();
        for (i, c) in rest.char_indices() {
            let allowed = c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?%".contains(c);
            if !allowed {
                return Err(format!(
                    "has a character that must be percent-encoded: `{}`",
                    c.escape_debug()
                ));
            }
            if c == '%'
                && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return Err("has a `%` that is not followed by two hex digits".to_owned());
            }
        }
        Ok(Self {
            scheme,
            host,
            port,
            rest: rest.to_owned(),
        })
    }

    /// `scheme://host[:port]`.
    fn origin(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.origin(), self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn greetings_allow_only_known_placeholders() {
        assert!(greeting("g", "Hi {user_name}, {agent_name} here. {time_greeting}!").is_ok());
        assert!(msg(greeting("g", "Hi {caller}")).contains("unknown placeholder `{caller}`"));
        assert!(msg(greeting("g", "Hi {agent_name")).contains("never closed"));
        assert!(msg(greeting("g", "Hi } there")).contains("without a matching"));
        assert!(msg(greeting("g", "Hi\u{7}")).contains("control"));
        assert!(msg(greeting("g", &"a".repeat(501))).contains("1 to 500"));
        assert!(greeting("g", &"é".repeat(500)).is_ok());
        assert!(
            msg(greeting("config.greeting_new_caller", "{x}"))
                .starts_with("config.greeting_new_caller:")
        );
    }

    #[test]
    fn agent_names_are_bounded() {
        assert!(agent_name("a", &"x".repeat(60)).is_ok());
        assert!(msg(agent_name("a", &"x".repeat(61))).contains("1 to 60"));
        assert!(agent_name("a", "  ").is_err());
        assert!(agent_name("a", "Ann\nMarie").is_err());
    }

    #[test]
    fn voices_sliders_zones_emails() {
        assert!(msg(voice("v", "nova")).contains("text-to-speech"));
        assert!(voice("v", "cedar").is_ok());
        assert!(slider("s", "warmth", 101).is_err());
        assert!(slider("s", "warmthx", 1).is_err());
        assert!(time_zone("tz", "Europe/Lisbon").is_ok());
        assert!(time_zone("tz", "Mars/Olympus").is_err());
        assert!(email("e", "ops@peterson.example").is_ok());
        for bad in ["", "no-at", "a@b", "a@@b.com", "a b@c.com"] {
            assert!(email("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn transfer_rules_need_valid_numbers() {
        let rule = |n: &str| mesh::api::tenant::TransferRule {
            keyword: "claims".into(),
            number: n.into(),
            description: "Claims desk".into(),
        };
        let ok = transfer_rules("r", &[rule("+1 415 867 5309")]).unwrap();
        assert_eq!(ok[0].number, "+14158675309");
        assert!(msg(transfer_rules("r", &[rule("555-0100")])).starts_with("r[0].number"));
        let many: Vec<_> = (0..21).map(|_| rule("+14158675309")).collect();
        assert!(transfer_rules("r", &many).is_err());
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn country_codes_exist_and_are_normalised() {
        let ok = country_codes("c", &strings(&["351", "+44", "1", "351", "800"])).unwrap();
        assert_eq!(ok, ["351", "44", "1", "800"]);
        for bad in ["", "0", "044", "1234", "+", "3a", " ", "+-1"] {
            let e = msg(country_codes("c", &strings(&["1", bad])));
            assert!(e.starts_with("c[1]:"), "{bad}: {e}");
        }
        // Three digits, but not assigned to any country.
        assert!(msg(country_codes("c", &strings(&["999"]))).contains("+999 is not an assigned"));
        let many: Vec<String> = (0..51).map(|_| "1".to_owned()).collect();
        assert!(msg(country_codes("c", &many)).contains("at most 50"));
    }

    #[test]
    fn personas_are_named_plainly_and_unique() {
        let ok = personas("p", &strings(&["Sofia", " Dr. O'Neil-Smith 2 ", "Zoë"])).unwrap();
        assert_eq!(ok, ["Sofia", "Dr. O'Neil-Smith 2", "Zoë"]);
        for bad in ["", "   ", "Sofia!", "<b>x</b>", "a\u{7}b", "a\tb"] {
            assert!(
                msg(personas("p", &strings(&[bad]))).starts_with("p[0]:"),
                "{bad:?}"
            );
        }
        assert!(personas("p", &strings(&[&"x".repeat(60)])).is_ok());
        assert!(msg(personas("p", &strings(&[&"x".repeat(61)]))).contains("1 to 60"));
        assert!(msg(personas("p", &strings(&["Sofia", "sofia"]))).contains("duplicates p[0]"));
        let many: Vec<String> = (0..21).map(|i| format!("P{i}")).collect();
        assert!(msg(personas("p", &many)).contains("at most 20"));
    }

    #[test]
    fn do_not_call_numbers_are_e164_and_deduplicated() {
        let ok = do_not_call("d", &strings(&["+351 912 345 678", "+351912345678"])).unwrap();
        assert_eq!(ok, ["+351912345678"]);
        assert!(
            msg(do_not_call("d", &strings(&["+351912345678", "912345678"]))).starts_with("d[1]:")
        );
    }

    #[test]
    fn cors_origins_are_exact_origins() {
        let ok = cors_origins(
            "o",
            &strings(&[
                "https://WWW.Example.com",
                "https://www.example.com:443",
                "https://shop.example.com:8443",
                "https://[2001:db8::1]",
            ]),
            false,
        )
        .unwrap();
        assert_eq!(
            ok,
            [
                "https://www.example.com",
                "https://shop.example.com:8443",
                "https://[2001:db8::1]"
            ]
        );
        for (bad, why) in [
            ("https://example.com/", "without path or trailing slash"),
            ("https://example.com/shop", "without path"),
            ("https://*.example.com", "wildcards"),
            ("*", "wildcards"),
            ("example.com", "absolute URL"),
            ("http://example.com", "https"),
            ("null", "absolute URL"),
            ("https://user@example.com", "credentials"),
            ("https://example.com:0", "port"),
            ("https://example.com:99999", "port"),
            ("https://exa mple.com", "spaces"),
        ] {
            let e = msg(cors_origins("o", &strings(&[bad]), false));
            assert!(e.starts_with("o[0]:") && e.contains(why), "{bad}: {e}");
        }
        assert_eq!(
            cors_origins("o", &strings(&["http://localhost:3000"]), true).unwrap(),
            ["http://localhost:3000"]
        );
    }

    #[test]
    fn webhook_urls_are_https_public_and_without_credentials() {
        assert_eq!(webhook_url("w", "", false).unwrap(), "");
        assert_eq!(
            webhook_url(
                "w",
                "HTTPS://Hooks.Example.com:443/calls?v=1&t=a%2Fb",
                false
            )
            .unwrap(),
            "https://hooks.example.com/calls?v=1&t=a%2Fb"
        );
        assert!(webhook_url("w", "https://hooks.example.com", false).is_ok());
        for (bad, why) in [
            ("http://hooks.example.com/x", "https"),
            ("ftp://hooks.example.com/x", "https"),
            ("hooks.example.com/x", "absolute"),
            ("https://user:pw@hooks.example.com/x", "credentials"),
            ("https://hooks.example.com/x#frag", "fragment"),
            ("https://hooks.example.com/a b", "spaces"),
            ("https://hooks.example.com/<x>", "percent-encoded"),
            ("https://hooks.example.com/%zz", "two hex digits"),
            ("https://hooks.example.com/é", "percent-encoded"),
            ("https://-bad-.example.com/", "host"),
            ("https:///x", "host"),
            ("https://2130706433/", "host"),
            ("https://0x7f.1/", "host"),
            ("https://127.1/", "host"),
            ("https://localhost/x", "loopback"),
            ("https://127.0.0.1/x", "loopback"),
            ("https://10.1.2.3/x", "private"),
            ("https://192.168.0.10/x", "private"),
            ("https://169.254.169.254/latest", "link-local"),
            ("https://100.64.0.1/", "private"),
            ("https://[::1]/", "loopback"),
            ("https://[fd00::1]/", "private"),
            ("https://[::ffff:127.0.0.1]/", "loopback"),
            ("https://0.0.0.0/", "loopback"),
        ] {
            let e = msg(webhook_url("w", bad, false));
            assert!(e.starts_with("w:") && e.contains(why), "{bad}: {e}");
        }
        assert!(
            msg(webhook_url(
                "w",
                &format!("https://a.example/{}", "x".repeat(2000)),
                false
            ))
            .contains("at most 2000")
        );
        // WEBHOOK_ALLOW_INSECURE: http and internal hosts (local receivers in tests).
        assert_eq!(
            webhook_url("w", "http://127.0.0.1:8080/hook", true).unwrap(),
            "http://127.0.0.1:8080/hook"
        );
        assert!(webhook_url("w", "http://localhost/hook", true).is_ok());
        assert!(webhook_url("w", "http://u:p@localhost/hook", true).is_err());
    }

    #[test]
    fn public_calls_per_hour_is_bounded() {
        assert!(public_calls_per_hour("n", 0).is_ok());
        assert!(public_calls_per_hour("n", 10_000).is_ok());
        assert!(msg(public_calls_per_hour("n", 10_001)).contains("at most 10000"));
    }

    proptest! {
        #[test]
        fn greeting_validation_never_panics(s in "\\PC{0,80}") {
            let _ = greeting("g", &s);
        }

        #[test]
        fn url_validation_never_panics_and_accepted_urls_are_stable(s in "\\PC{0,120}") {
            if let Ok(u) = webhook_url("w", &s, true) {
                // What was stored validates again to itself.
                prop_assert_eq!(webhook_url("w", &u, true).unwrap(), u.clone());
            }
            let _ = cors_origins("o", &[s], false);
        }

        #[test]
        fn plain_https_urls_are_accepted_unchanged(
            host in "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z][a-z0-9]{0,5}){1,3}",
            path in "(/[A-Za-z0-9._~-]{0,8}){0,4}",
        ) {
            let s = format!("https://{host}{path}");
            prop_assert_eq!(webhook_url("w", &s, false).unwrap(), s);
        }

        #[test]
        fn text_without_braces_or_controls_is_a_valid_greeting(s in "[a-zA-Z0-9 ,.!?'-]{1,200}") {
            prop_assert!(greeting("g", &s).is_ok());
        }
    }
}
