//! The pages before sign-in and the session's edges: sign-in (`/portal/sign-in`), sign-out
//! (`POST /portal/sign-out`), invitation (`/portal/invite/{token}`: set a password, become a
//! user, signed in) and password reset (`/portal/reset` to ask for a link by mail,
//! `/portal/reset/{token}` to choose a new password) and self sign-up (`/portal/signup`, its
//! verification link `/portal/signup/verify`). All of it is tenant-svc's
//! `AccountService`, called with the gateway's `tenant:portal` token; the portal only sets and
//! clears the cookie. The forms carry the pre-sign-in CSRF token ([`PublicForm`]) and their POSTs
//! pass the per-address allowance ([`security::auth_posts`]) before their body is read.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mesh::api::tenant::{NewSession, SignInRequest, SignOutRequest};
use serde::Deserialize;

mod invite;
mod reset;
mod signup;

use crate::csrf::PublicCsrf;
use crate::layout::{PageError, render_with};
use crate::{ClientAddress, Layout, Portal, PublicForm, cookies, secret, security};

/// The routes of this module.
pub fn routes(portal: Arc<Portal>) -> axum::Router<Arc<Portal>> {
    let guarded = axum::Router::new()
        .route("/portal/sign-in", get(sign_in_page).post(sign_in))
        .merge(invite::routes())
        .merge(reset::routes())
        .merge(signup::routes())
        // Before the body is read: a flood of guesses costs no password hash at tenant-svc.
        .route_layer(from_fn_with_state(portal, security::auth_posts));
    axum::Router::new()
        .merge(guarded)
        .route("/portal/sign-out", post(sign_out))
}

/// Whether `next` is a path of the portal that sign-in may send the browser back to (never
/// another site: `//evil.example`, `/portal/../x` or a backslash are refused).
pub fn is_safe_next(next: &str) -> bool {
    next.starts_with("/portal/")
        && !next.starts_with("//")
        && !next.contains(['\\', '\r', '\n', '\t'])
        && !next.contains("/..")
        && !next.starts_with("/portal/sign-out")
}

/// The `User-Agent` header (tenant-svc summarises and bounds it).
fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(512)
        .collect()
}

/// The client address as tenant-svc's throttle keys it (the gateway put it in the request).
fn client_address(address: Option<axum::Extension<ClientAddress>>) -> Result<String, PageError> {
    match address {
        Some(axum::Extension(ClientAddress(ip))) => Ok(ip.to_string()),
        None => {
            tracing::error!("portal request without a client address (the gateway sets it)");
            Err(PageError::Internal)
        }
    }
}

/// `Retry-After` seconds of a RESOURCE_EXHAUSTED answer (tenant-svc sends `retry-after`).
fn retry_after(status: &tonic::Status) -> u64 {
    status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(60, |s| s.clamp(1, 3600))
}

/// The answer that signs the browser in with `session`: the session cookie (kept until the
/// session's absolute expiry), the pre-sign-in CSRF cookie removed, and a redirect to `to`.
pub fn signed_in(portal: &Portal, session: &NewSession, to: &str) -> Response {
    let mode = portal.config.cookie;
    let max_age = session
        .expire_time
        .as_ref()
        .map(|t| t.seconds - chrono::Utc::now().timestamp());
    let mut response = Redirect::to(to).into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        cookies::set(mode, cookies::session_name(mode), &session.secret, max_age),
    );
    h.append(
        header::SET_COOKIE,
        cookies::clear(mode, cookies::csrf_name(mode)),
    );
    response
}

/// Adds the pre-sign-in cookie to a form page when the browser had none.
fn with_csrf_cookie(mut response: Response, csrf: &PublicCsrf) -> Response {
    if let Some(cookie) = &csrf.set_cookie {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    response
}

// --- sign-in ---------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    layout: Layout,
    csrf: String,
    next: String,
    email: String,
    error: Option<String>,
    totp: bool,
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| is_safe_next(n))
        .unwrap_or("/portal/")
        .to_owned()
}

async fn sign_in_page(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let csrf = PublicCsrf::for_request(&headers, &portal);
    let page = SignInPage {
        layout: Layout::public("Sign in"),
        csrf: csrf.token.clone(),
        next: safe_next(query.next.as_deref()),
        email: String::new(),
        error: None,
        totp: false,
    };
    with_csrf_cookie(render_with(StatusCode::OK, &page), &csrf)
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp_code: String,
    next: Option<String>,
}

async fn sign_in(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    address: Option<axum::Extension<ClientAddress>>,
    PublicForm(form): PublicForm<SignInForm>,
) -> Result<Response, PageError> {
    let client_address = client_address(address)?;
    let next = safe_next(form.next.as_deref());
    let again = |error: &str, totp: bool, status: StatusCode| {
        let csrf = PublicCsrf::for_request(&headers, &portal);
        let page = SignInPage {
            layout: Layout::public("Sign in"),
            csrf: csrf.token.clone(),
            next: next.clone(),
            email: form.email.clone(),
            error: Some(error.to_owned()),
            totp,
        };
        with_csrf_cookie(render_with(status, &page), &csrf)
    };
    let answer = portal
        .account()
        .sign_in(SignInRequest {
            email: form.email.clone(),
            password: form.password.clone(),
            totp_code: form.totp_code.trim().to_owned(),
            client_address,
            user_agent: user_agent(&headers),
        })
        .await;
    let response = match answer {
        Ok(response) => response.into_inner(),
        Err(status) => {
            return Ok(match status.code() {
                tonic::Code::Unauthenticated => {
                    tracing::info!("portal sign-in refused");
                    again(
                        "The e-mail address or the password is not right.",
                        !form.totp_code.is_empty(),
                        StatusCode::UNAUTHORIZED,
                    )
                }
                tonic::Code::FailedPrecondition if status.message().contains("totp_code") => again(
                    "Enter the code of your authenticator app.",
                    true,
                    StatusCode::UNAUTHORIZED,
                ),
                tonic::Code::ResourceExhausted => {
                    tracing::warn!("portal sign-in throttled");
                    PageError::TooMany(retry_after(&status)).into_response()
                }
                tonic::Code::InvalidArgument => {
                    again(status.message(), false, StatusCode::UNPROCESSABLE_ENTITY)
                }
                _ => PageError::from(status).into_response(),
            });
        }
    };
    let (Some(user), Some(session)) = (response.user, response.session) else {
        tracing::error!("SignIn answered without a user or session");
        return Err(PageError::Internal);
    };
    // The session a browser had before is ended: signing in always starts a new one.
    let mode = portal.config.cookie;
    if let Some(old) = cookies::get(&headers, cookies::session_name(mode)) {
        portal.sessions.forget(old);
        let _ = portal
            .account()
            .sign_out(SignOutRequest {
                session_secret: old.to_owned(),
            })
            .await;
    }
    tracing::info!(
        customer_id = user.customer_id,
        user_id = user.id,
        "portal user signed in"
    );
    Ok(signed_in(&portal, &session, &next))
}

// --- sign-out --------------------------------------------------------------------------------

async fn sign_out(
    State(portal): State<Arc<Portal>>,
    SessionForm(secret): SessionForm,
) -> Result<Response, PageError> {
    // Checked against the cookie's own session, not an exchange: a pending customer's owner
    // (who gets no token) signs out too. Ending an ended session succeeds.
    portal
        .account()
        .sign_out(SignOutRequest {
            session_secret: secret.clone(),
        })
        .await
        .map_err(PageError::from)?;
    portal.sessions.forget(&secret);
    tracing::info!("portal user signed out");
    Ok(signed_out(portal.config.cookie, "/portal/sign-in"))
}

/// A form posted with the session cookie whose `csrf` field is that session's token (as
/// [`CsrfForm`] checks it, without exchanging the session): the session secret. No cookie is
/// the sign-in page; a missing or wrong token the 403 page.
struct SessionForm(String);

impl axum::extract::FromRequest<Arc<Portal>> for SessionForm {
    type Rejection = PageError;

    async fn from_request(
        request: axum::extract::Request,
        portal: &Arc<Portal>,
    ) -> Result<Self, PageError> {
        let name = cookies::session_name(portal.config.cookie);
        let Some(secret) = cookies::get(request.headers(), name).map(str::to_owned) else {
            return Err(PageError::SignIn {
                next: "/portal/".into(),
            });
        };
        let body = axum::body::to_bytes(request.into_body(), crate::csrf::MAX_FORM)
            .await
            .map_err(|_| PageError::BadRequest("the form could not be read".into()))?;
        let token = form_urlencoded::parse(&body)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !secret::same(&token, &crate::session::csrf_of(&secret)) {
            tracing::warn!("portal sign-out refused: missing or wrong CSRF token");
            return Err(PageError::Refused(crate::csrf::EXPIRED));
        }
        Ok(SessionForm(secret))
    }
}

/// A redirect to `to` that removes the session cookie.
pub fn signed_out(mode: crate::config::CookieMode, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::clear(mode, cookies::session_name(mode)),
    );
    response
}

// --- shared by the invitation and the reset -----------------------------------------------

/// A new password, typed twice.
#[derive(Debug, Deserialize)]
struct PasswordTwice {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

impl PasswordTwice {
    /// The checks before tenant-svc is asked (for the token `token` in the URL): a token that
    /// cannot be one names nothing (404); two different passwords are the message the form
    /// shows again.
    fn problem(&self, token: &str) -> Result<Option<String>, PageError> {
        if !secret::looks_like_secret(token) {
            return Err(PageError::NotFound);
        }
        Ok((self.password != self.confirm).then(|| "The two passwords are not the same.".into()))
    }
}

/// tenant-svc's INVALID_ARGUMENT about a password, for the person typing it.
pub(crate) fn password_problem(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("common") {
        "That password is among the most common ones. Choose another.".into()
    } else if lower.contains("at most") || lower.contains("long") {
        "Choose a password of at most 128 characters.".into()
    } else if lower.contains("at least") || lower.contains("short") {
        "Choose a password of at least 12 characters.".into()
    } else {
        format!("The password was not accepted: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_portal_paths() {
        for ok in ["/portal/", "/portal/calls?page=2", "/portal/calls/CA123"] {
            assert!(is_safe_next(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/portal/../admin",
            "/portal/\\evil",
            "/other",
            "/portal/sign-out",
            "portal/",
        ] {
            assert!(!is_safe_next(bad), "{bad}");
        }
    }
}
