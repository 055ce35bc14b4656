//! CSRF tokens on every state-changing form. A signed-in form carries the session's token (a
//! hash of the session secret, [`Session::csrf`]) and is read with [`CsrfForm`]; the forms
//! before sign-in (sign-in, invitation, reset) carry a token derived from a random pre-sign-in
//! cookie ([`PublicCsrf`]) and are read with [`PublicForm`]. Either way the field is `csrf`,
//! the comparison is constant-time, and a missing or wrong token is the 403 page with nothing
//! changed. (The `Origin` check of [`crate::security::same_origin`] runs before both.)

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;

use crate::{PageError, Portal, Session, cookies, secret};

/// Largest form body the portal reads (its forms are small).
pub const MAX_FORM: usize = 64 * 1024;

/// The purpose label of the pre-sign-in token.
const PUBLIC_PURPOSE: &str = "public-csrf";

/// What a refused form shows.
pub(crate) const EXPIRED: &str = "This form has expired or was not sent from this site, so it was not accepted. Nothing was changed. Reload the page and try again.";

/// The value of the `csrf` field of a form body, if any.
fn csrf_field(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
}

async fn read_body(request: Request) -> Result<Bytes, PageError> {
    axum::body::to_bytes(request.into_body(), MAX_FORM)
        .await
        .map_err(|_| PageError::BadRequest("the form could not be read (too large?)".into()))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, PageError> {
    serde_urlencoded::from_bytes(body).map_err(|e| PageError::BadRequest(format!("form: {e}")))
}

/// A signed-in form (`application/x-www-form-urlencoded`) whose `csrf` field is the session's
/// token, parsed into `T` (which ignores the `csrf` field). Use after the `Session`/`Owner`
/// extractor: `async fn save(owner: Owner, CsrfForm(form): CsrfForm<AgentForm>)`.
#[derive(Debug)]
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Portal>> for CsrfForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, portal: &Arc<Portal>) -> Result<Self, PageError> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, portal).await?;
        let body = read_body(Request::from_parts(parts, body)).await?;
        let token = csrf_field(&body).unwrap_or_default();
        if !session.csrf_ok(&token) {
            tracing::warn!(
                customer_id = session.customer_id(),
                user_id = session.user_id(),
                "portal form refused: missing or wrong CSRF token"
            );
            return Err(PageError::Refused(EXPIRED));
        }
        Ok(CsrfForm(parse(&body)?))
    }
}

/// The CSRF token of a form shown before sign-in, and the cookie to set when the browser had
/// none yet.
#[derive(Debug)]
pub struct PublicCsrf {
    /// The form's `csrf` field.
    pub token: String,
    /// `Set-Cookie` of a fresh pre-sign-in cookie, when one was made.
    pub set_cookie: Option<HeaderValue>,
}

impl PublicCsrf {
    /// The token for the browser's pre-sign-in cookie, making the cookie if it has none.
    pub fn for_request(headers: &HeaderMap, portal: &Portal) -> PublicCsrf {
        let mode = portal.config.cookie;
        let name = cookies::csrf_name(mode);
        match cookies::get(headers, name) {
            Some(cookie) => PublicCsrf {
                token: secret::derive(PUBLIC_PURPOSE, cookie),
                set_cookie: None,
            },
            None => {
                let cookie = secret::generate();
                PublicCsrf {
                    token: secret::derive(PUBLIC_PURPOSE, &cookie),
                    set_cookie: Some(cookies::set(mode, name, &cookie, None)),
                }
            }
        }
    }
}

/// A form shown before sign-in whose `csrf` field matches the browser's pre-sign-in cookie,
/// parsed into `T`.
#[derive(Debug)]
pub struct PublicForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Portal>> for PublicForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, portal: &Arc<Portal>) -> Result<Self, PageError> {
        let name = cookies::csrf_name(portal.config.cookie);
        let expected = cookies::get(request.headers(), name)
            .map(|cookie| secret::derive(PUBLIC_PURPOSE, cookie));
        let body = read_body(request).await?;
        let token = csrf_field(&body).unwrap_or_default();
        if !expected.is_some_and(|expected| secret::same(&token, &expected)) {
            tracing::warn!("portal sign-in form refused: missing or wrong CSRF token");
            return Err(PageError::Refused(EXPIRED));
        }
        Ok(PublicForm(parse(&body)?))
    }
}
