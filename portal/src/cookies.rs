//! The portal's cookies: the session cookie and the pre-sign-in CSRF cookie, shaped by the
//! public base URL ([`CookieMode`]): on https `__Host-` prefixed with `Secure; Path=/`, on a
//! plain-http loopback URL unprefixed with `Path=/portal`. Both `HttpOnly; SameSite=Lax`.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::config::CookieMode;

/// The session cookie's name.
pub fn session_name(mode: CookieMode) -> &'static str {
    match mode {
        CookieMode::Secure => "__Host-ns_session",
        CookieMode::LoopbackHttp => "ns_session",
    }
}

/// The pre-sign-in CSRF cookie's name (sign-in, invitation and reset forms).
pub fn csrf_name(mode: CookieMode) -> &'static str {
    match mode {
        CookieMode::Secure => "__Host-ns_csrf",
        CookieMode::LoopbackHttp => "ns_csrf",
    }
}

fn attributes(mode: CookieMode) -> &'static str {
    match mode {
        CookieMode::Secure => "Path=/; Secure; HttpOnly; SameSite=Lax",
        CookieMode::LoopbackHttp => "Path=/portal; HttpOnly; SameSite=Lax",
    }
}

/// `Set-Cookie` for `name=value`, kept `max_age_secs` (a session cookie when `None`).
pub fn set(mode: CookieMode, name: &str, value: &str, max_age_secs: Option<i64>) -> HeaderValue {
    let age = max_age_secs.map_or(String::new(), |s| format!("; Max-Age={}", s.max(0)));
    HeaderValue::from_str(&format!("{name}={value}; {}{age}", attributes(mode)))
        .expect("cookie values are base64url")
}

/// `Set-Cookie` that removes the cookie `name`.
pub fn clear(mode: CookieMode, name: &str) -> HeaderValue {
    set(mode, name, "", Some(0))
}

/// The value of cookie `name` in the request, when present and shaped like one of our
/// secrets (base64url, 43 characters); anything else counts as absent.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| crate::secret::looks_like_secret(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_cookie_shapes() {
        assert_eq!(
            set(CookieMode::Secure, "__Host-ns_session", "abc", Some(60)),
            "__Host-ns_session=abc; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert_eq!(
            set(CookieMode::LoopbackHttp, "ns_session", "abc", None),
            "ns_session=abc; Path=/portal; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            clear(CookieMode::LoopbackHttp, "ns_session"),
            "ns_session=; Path=/portal; HttpOnly; SameSite=Lax; Max-Age=0"
        );
    }

    #[test]
    fn reads_only_well_formed_values_of_the_named_cookie() {
        let good = "A".repeat(43);
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; ns_session={good}")).unwrap(),
        );
        assert_eq!(get(&h, "ns_session"), Some(good.as_str()));
        assert_eq!(get(&h, "ns_csrf"), None);
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("ns_session=short"));
        assert_eq!(get(&h, "ns_session"), None);
    }
}
