//! Twilio request signatures (`X-Twilio-Signature`), validated the way Twilio's SDKs do.
//!
//! The signed string is the full URL Twilio requested (taken from the configured public base
//! URL plus the original path and query, never from `Host` or `X-Forwarded-*`), followed by every
//! POST parameter as `name + value`, sorted by name (byte order) and, for repeated names, by
//! value. HMAC-SHA1 with the Auth Token, base64. Two URL variants are accepted, as the SDKs do:
//! with the scheme's default port added when none is present, and with any port removed.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The signature Twilio computes for `url` and form `params`.
pub fn compute(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| {
        a.0.as_bytes()
            .cmp(b.0.as_bytes())
            .then(a.1.as_bytes().cmp(b.1.as_bytes()))
    });
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `url` with the default port added (when it has none) and with any port removed.
pub fn url_variants(url: &str) -> [String; 2] {
    let (scheme, rest) = match url.split_once("://") {
        Some(p) => p,
        None => return [url.to_owned(), url.to_owned()],
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    // An IPv6 literal keeps its colons inside brackets.
    let port_colon = match hostport.rfind(']') {
        Some(b) => hostport[b..].find(':').map(|i| b + i),
        None => hostport.rfind(':'),
    };
    let host = port_colon.map_or(hostport, |i| &hostport[..i]);
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => "443",
        _ => "80",
    };
    let with_port = if port_colon.is_some() {
        url.to_owned()
    } else {
        format!("{scheme}://{userinfo}{host}:{default_port}{tail}")
    };
    let without_port = format!("{scheme}://{userinfo}{host}{tail}");
    [with_port, without_port]
}

/// Whether `signature` is valid for `url` and `params` (either port variant), compared in
/// constant time.
pub fn validate(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let given = signature.trim().as_bytes();
    if given.is_empty() || given.len() > 128 {
        return false;
    }
    let mut ok = false;
    for candidate in url_variants(url) {
        let expected = compute(auth_token, &candidate, params);
        ok |= bool::from(expected.as_bytes().ct_eq(given));
    }
    ok
}

/// Validates a JSON-body webhook: the URL carries `bodySHA256`, the signature covers the URL
/// alone, and the body must hash to that value.
pub fn validate_json_body(auth_token: &[u8], url: &str, body: &[u8], signature: &str) -> bool {
    use sha2::Digest;
    let Some(query) = url.split_once('?').map(|(_, q)| q) else {
        return false;
    };
    let claimed = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned());
    let Some(claimed) = claimed else {
        return false;
    };
    let actual = hex::encode(sha2::Sha256::digest(body));
    bool::from(actual.as_bytes().ct_eq(claimed.as_bytes()))
        && validate(auth_token, url, &[], signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: &[u8] = b"12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn published_vector() {
        assert_eq!(
            compute(TOKEN, URL, &params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(validate(
            TOKEN,
            URL,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn port_vectors() {
        assert_eq!(
            compute(
                TOKEN,
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &params()
            ),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        assert_eq!(
            compute(
                TOKEN,
                "http://mycompany.com:80/myapp.php?foo=1&bar=2",
                &params()
            ),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        );
        assert_eq!(
            compute(
                TOKEN,
                "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
                &params()
            ),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        );
        // Twilio signed with :443; we are configured without a port, and the reverse.
        assert!(validate(
            TOKEN,
            URL,
            &params(),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        assert!(validate(
            TOKEN,
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // A non-default port validates against the port-stripped signature.
        assert!(validate(
            TOKEN,
            "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn repeated_parameters_vector() {
        let p: Vec<(String, String)> = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(compute(TOKEN, URL, &p), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    }

    #[test]
    fn json_body_vector() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        assert!(validate_json_body(
            TOKEN,
            url,
            body,
            "a9nBmqA0ju/hNViExpshrM61xv4="
        ));
        assert!(!validate_json_body(
            TOKEN,
            url,
            b"{}",
            "a9nBmqA0ju/hNViExpshrM61xv4="
        ));
    }

    #[test]
    fn any_change_breaks_it() {
        let sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        let mut p = params();
        p[2].1 = "1235".into();
        assert!(!validate(TOKEN, URL, &p, sig));
        let mut p = params();
        p.push(("Extra".into(), String::new()));
        assert!(!validate(TOKEN, URL, &p, sig));
        assert!(!validate(
            TOKEN,
            "https://evil.com/myapp.php?foo=1&bar=2",
            &params(),
            sig
        ));
        assert!(!validate(TOKEN, URL, &params(), ""));
        assert!(!validate(b"54321", URL, &params(), sig));
    }

    proptest! {
        #[test]
        fn validation_never_panics(url in "\\PC{0,60}", k in "\\PC{0,10}", v in "\\PC{0,10}", sig in "\\PC{0,40}") {
            let _ = validate(TOKEN, &url, &[(k, v)], &sig);
            let _ = url_variants(&url);
        }

        #[test]
        fn a_computed_signature_always_validates(path in "[a-z/]{0,20}", k in "[A-Za-z]{1,8}", v in "\\PC{0,16}") {
            let url = format!("https://example.com/{path}");
            let p = vec![(k, v)];
            let sig = compute(TOKEN, &url, &p);
            prop_assert!(validate(TOKEN, &url, &p, &sig));
        }
    }
}
