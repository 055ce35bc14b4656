//! The console's cookies and CSRF tokens. A signed-in form carries a token derived from the
//! session secret; the sign-in form one derived from a random pre-sign-in cookie. Either way the
//! field is `csrf`, compared in constant time (`portal::secret`); the cookies are
//! `HttpOnly; SameSite=Strict; Path=/console`, with `Secure` when the request came over https
//! (a TLS proxy in front of the console says so in `X-Forwarded-Proto` only when trusted, so the
//! console sets `Secure` only when asked: see [`set`]).

use axum::http::{HeaderMap, HeaderValue};

/// The purpose label of a signed-in form's token.
const SESSION_PURPOSE: &str = "operator-session-csrf";
/// The purpose label of the sign-in form's token.
const PUBLIC_PURPOSE: &str = "operator-public-csrf";

/// `Set-Cookie` for `name=value`.
pub fn set(name: &str, value: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict"
    ))
    .expect("cookie values are base64url")
}

/// `Set-Cookie` that removes `name`.
pub fn clear(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
    .expect("a fixed cookie")
}

/// The cookie `name`, when shaped like one of our secrets.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    portal::cookies::get(headers, name)
}

/// The CSRF token of a signed-in form.
pub fn session_token(secret: &str) -> String {
    portal::secret::derive(SESSION_PURPOSE, secret)
}

/// The sign-in form's token for the browser's pre-sign-in cookie, and the cookie to set when it
/// had none.
pub fn public_token(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match get(headers, super::CSRF_COOKIE) {
        Some(c) => (portal::secret::derive(PUBLIC_PURPOSE, c), None),
        None => {
            let c = portal::secret::generate();
            (
                portal::secret::derive(PUBLIC_PURPOSE, &c),
                Some(set(super::CSRF_COOKIE, &c)),
            )
        }
    }
}

/// Whether `token` is the sign-in form's token for the browser's pre-sign-in cookie.
pub fn public_ok(headers: &HeaderMap, token: &str) -> bool {
    get(headers, super::CSRF_COOKIE)
        .is_some_and(|c| portal::secret::same(token, &portal::secret::derive(PUBLIC_PURPOSE, c)))
}

/// Whether `token` is the signed-in form's token of `secret`.
pub fn session_ok(secret: &str, token: &str) -> bool {
    portal::secret::same(token, &session_token(secret))
}
