//! The one parser of `authorization: Bearer <token>` headers, shared by the gRPC auth layer and
//! the gateway's HTTP endpoints, so every entry point accepts and refuses the same credentials
//! (there were three parsers, and they disagreed on the scheme's case).

use http::header::AUTHORIZATION;

use super::AuthError;

/// The token of the single `authorization: Bearer <token>` header. The scheme is
/// case-insensitive (RFC 7235 §2.1) and spaces around the token are ignored.
///
/// Errors: no header or another scheme is [`AuthError::MissingToken`]; two headers, a non-ASCII
/// value, or an empty or space-separated credential is [`AuthError::Malformed`].
pub fn token(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthError::Malformed("more than one authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("non-ASCII authorization"))?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(AuthError::Malformed("bad bearer credential"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(token(&headers(&["Bearer a.b.c"])), Ok("a.b.c"));
        assert_eq!(token(&headers(&["bearer a.b.c"])), Ok("a.b.c"));
        assert_eq!(token(&headers(&["BEARER  a.b.c "])), Ok("a.b.c"));
    }

    #[test]
    fn other_credentials_are_refused() {
        assert_eq!(token(&headers(&[])), Err(AuthError::MissingToken));
        assert_eq!(
            token(&headers(&["Basic dXNlcjpwdw=="])),
            Err(AuthError::MissingToken)
        );
        assert_eq!(token(&headers(&["Bearer"])), Err(AuthError::MissingToken));
        assert!(token(&headers(&["Bearer "])).is_err());
        assert!(token(&headers(&["Bearer a b"])).is_err());
        assert!(token(&headers(&["Bearer a.b.c", "Bearer d.e.f"])).is_err());
    }

    #[test]
    fn non_ascii_values_are_malformed() {
        let mut h = http::HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Bearer \xffabc").unwrap(),
        );
        assert!(matches!(token(&h), Err(AuthError::Malformed(_))));
    }
}
