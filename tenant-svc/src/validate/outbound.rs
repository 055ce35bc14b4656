//! Outbound-call settings: allowed regions and restricted kinds of number, transfer regions, the
//! longest call, personas, the do-not-call list, the origins of
//! the public calls endpoint, and its hourly limit.

use mesh::domain::{PhoneNumber, RestrictedType, dial};

use super::url::HttpUrl;
use super::{chars, dedup, no_control, too_many};
use crate::error::{Result, TenantError};

/// Most allowed regions (outbound calls or transfers).
pub const MAX_REGIONS: usize = 50;
/// Longest call a customer may set, in minutes.
pub const MAX_CALL_MINUTES: u32 = 240;
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

/// Allowed regions: at most 50 ISO 3166 alpha-2 codes that have telephone numbers (any case,
/// stored upper case), duplicates removed. A calling code (`1`, `+351`) is refused with a hint:
/// one code can span many regions (`+1` reaches the Caribbean's premium lines too).
pub fn regions(field: &str, regions: &[String]) -> Result<Vec<String>> {
    too_many(field, MAX_REGIONS, "regions", regions.len())?;
    let parsed = regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f = format!("{field}[{i}]");
            dial::parse_region(r).map_err(|e| {
                let digits = r.trim().trim_start_matches('+');
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    TenantError::invalid(
                        &f,
                        format!(
                            "{e}; calling codes are no longer accepted (+{digits} is {})",
                            code_hint(digits)
                        ),
                    )
                } else {
                    TenantError::invalid(&f, e)
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(dedup(parsed))
}

/// "US, CA, AG, ..." for a calling code, or "not assigned".
fn code_hint(digits: &str) -> String {
    let regions = digits
        .parse::<u16>()
        .map(dial::regions_of_calling_code)
        .unwrap_or_default();
    if regions.is_empty() {
        "not an assigned calling code".into()
    } else {
        format!("regions {}", regions.join(", "))
    }
}

/// Restricted kinds of number allowed anyway: names of [`RestrictedType`], duplicates removed.
pub fn number_types(field: &str, types: &[String]) -> Result<Vec<String>> {
    too_many(field, RestrictedType::ALL.len(), "types", types.len())?;
    let parsed = types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            RestrictedType::parse(t)
                .map(|t| t.as_str().to_owned())
                .map_err(|e| TenantError::invalid(format!("{field}[{i}]"), e))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(dedup(parsed))
}

/// The longest call: 0 (the platform's 60 minutes) to [`MAX_CALL_MINUTES`].
pub fn max_call_minutes(field: &str, n: u32) -> Result<u32> {
    if n > MAX_CALL_MINUTES {
        return Err(TenantError::invalid(
            field,
            format!("must be at most {MAX_CALL_MINUTES} minutes (0 = the platform's 60), got {n}"),
        ));
    }
    Ok(n)
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
    fn regions_exist_and_are_normalised() {
        let ok = regions("r", &strings(&["pt", " US ", "PT", "jm"])).unwrap();
        assert_eq!(ok, ["PT", "US", "JM"]);
        for bad in ["", "P", "PRT", "XX", "001", "U$"] {
            let e = msg(regions("r", &strings(&["US", bad])));
            assert!(
                e.starts_with("r[1]:") && e.contains("ISO 3166"),
                "{bad}: {e}"
            );
        }
        let e = msg(regions("r", &strings(&["+1"])));
        assert!(
            e.contains("calling codes are no longer accepted") && e.contains("US, CA"),
            "{e}"
        );
        assert!(msg(regions("r", &strings(&["999"]))).contains("not an assigned"));
        let many: Vec<String> = (0..51).map(|_| "US".to_owned()).collect();
        assert!(msg(regions("r", &many)).contains("at most 50"));
    }

    #[test]
    fn number_types_and_call_minutes_are_bounded() {
        assert_eq!(
            number_types(
                "t",
                &strings(&["premium_rate", "non_geographic", "premium_rate"])
            )
            .unwrap(),
            ["premium_rate", "non_geographic"]
        );
        let e = msg(number_types("t", &strings(&["uan", "voip"])));
        assert!(e.starts_with("t[1]:") && e.contains("premium_rate"), "{e}");
        assert_eq!(max_call_minutes("m", 0).unwrap(), 0);
        assert_eq!(max_call_minutes("m", 240).unwrap(), 240);
        assert!(msg(max_call_minutes("m", 241)).contains("at most 240"));
    }

    /// V14 migrates stored calling codes by a table of `(code, regions)`; it must give `1` as US
    /// and CA, every other assigned geographic code its main region, and nothing else.
    #[test]
    fn the_v14_table_maps_each_calling_code_to_its_main_region() {
        let sql = include_str!("../../../migrations/V14__toll_fraud.sql");
        let table = &sql[sql.find("VALUES").unwrap()..sql.find("),\nmigrated").unwrap()];
        let mut seen = std::collections::BTreeMap::new();
        for entry in table.split("('").skip(1) {
            let (code, rest) = entry.split_once("', ARRAY[").unwrap();
            let regions: Vec<String> = rest[..rest.find(']').unwrap()]
                .split(", ")
                .map(|r| r.trim_matches('\'').to_owned())
                .collect();
            seen.insert(code.parse::<u16>().unwrap(), regions);
        }
        assert_eq!(seen[&1], ["US", "CA"]);
        for code in 1..=999u16 {
            let regions = dial::regions_of_calling_code(code);
            let geographic = regions.first().is_some_and(|r| r != "001");
            match seen.get(&code) {
                Some(_) if code == 1 => {}
                Some(mapped) => assert_eq!(mapped, &regions[..1], "+{code}"),
                None => assert!(!geographic, "+{code} ({regions:?}) is missing from V14"),
            }
        }
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
