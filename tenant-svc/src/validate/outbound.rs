//! Outbound-call settings: allowed country codes, personas, the do-not-call list, the origins of
//! the public calls endpoint, and its hourly limit.

use mesh::domain::PhoneNumber;

use super::url::HttpUrl;
use super::{chars, dedup, no_control, too_many};
use crate::error::{Result, TenantError};

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
/// Highest per-tenant hourly limit of the public calls endpoint.
pub const MAX_PUBLIC_CALLS_PER_HOUR: u32 = 10_000;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
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
    fn public_calls_per_hour_is_bounded() {
        assert!(public_calls_per_hour("n", 0).is_ok());
        assert!(public_calls_per_hour("n", 10_000).is_ok());
        assert!(msg(public_calls_per_hour("n", 10_001)).contains("at most 10000"));
    }
}
