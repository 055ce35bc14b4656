//! The console's pages: sign-in (password and TOTP code), sign-out, the customers list, a
//! customer's page, and its actions (approve, suspend, reactivate) as CSRF-checked POSTs that
//! redirect back. Each signed-in page first asks tenant-svc who the session's operator is
//! (`GetOperatorSession`, which also verifies it); an ended session, or a cookie that is not an
//! operator's (a portal user's session is not), goes back to the sign-in page.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use mesh::api::tenant::*;
use serde::Deserialize;
use tonic::Code;

use super::csrf;
use super::{CSRF_COOKIE, Console, SESSION_COOKIE};

/// Who is signed in, for the page header.
pub struct Who {
    /// Their address.
    pub email: String,
    /// The sign-out form's CSRF token.
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    who: Option<Who>,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    title: &'static str,
    who: Option<Who>,
    csrf: String,
    email: String,
    error: Option<String>,
}

/// A customer as the pages show it.
struct Row {
    id: i64,
    business_name: String,
    status: &'static str,
    package_tier: String,
    numbers: String,
    calls: String,
    minutes: String,
    erase: Option<String>,
}

impl From<CustomerSummary> for Row {
    fn from(c: CustomerSummary) -> Row {
        let status = match CustomerStatus::try_from(c.status) {
            Ok(CustomerStatus::Active) => "active",
            Ok(CustomerStatus::Suspended) => "suspended",
            Ok(CustomerStatus::Pending) => "pending",
            _ => "unknown",
        };
        let figure =
            |v: Option<i64>| v.map_or_else(|| "not available".to_owned(), |v| v.to_string());
        Row {
            id: c.id,
            business_name: c.business_name,
            status,
            package_tier: c.package_tier,
            numbers: if c.numbers.is_empty() {
                "none".into()
            } else {
                c.numbers.join(", ")
            },
            calls: figure(c.calls_this_month),
            minutes: figure(c.minutes_this_month),
            erase: c.erase_time.and_then(|t| {
                chrono::DateTime::from_timestamp(t.seconds, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            }),
        }
    }
}

#[derive(Template)]
#[template(path = "console/customers.html")]
struct CustomersPage {
    title: &'static str,
    who: Option<Who>,
    customers: Vec<Row>,
    next_page: Option<String>,
}

#[derive(Template)]
#[template(path = "console/customer.html")]
struct CustomerPage {
    title: &'static str,
    who: Option<Who>,
    c: Row,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console template failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// An error page with `status`.
pub(super) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            title,
            who: None,
            message,
        },
    )
}

/// The sign-in page, clearing the session cookie.
fn to_sign_in() -> Response {
    let mut r = Redirect::to("/console/sign-in").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, csrf::clear(SESSION_COOKIE));
    r
}

/// A refusal of tenant-svc as a page: an ended session goes to sign-in; what the operator can
/// fix is shown with its message; the rest is a fixed message.
fn refused(s: &tonic::Status) -> Response {
    let (status, message) = match s.code() {
        Code::Unauthenticated => return to_sign_in(),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, s.message()),
        Code::NotFound => (StatusCode::NOT_FOUND, "No such customer."),
        Code::FailedPrecondition => (StatusCode::CONFLICT, s.message()),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "Not allowed."),
        _ => {
            tracing::warn!(code = ?s.code(), "console: tenant-svc refused or did not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "The platform could not be reached. Nothing was changed; try again.",
            )
        }
    };
    error_page(status, "Not done", message)
}

/// The signed-in operator of the request (its session secret and who they are), or the answer
/// to give instead.
async fn signed_in(console: &Console, headers: &HeaderMap) -> Result<(String, Who), Response> {
    let Some(secret) = csrf::get(headers, SESSION_COOKIE) else {
        return Err(to_sign_in());
    };
    let secret = secret.to_owned();
    let who = console
        .client()
        .get_operator_session(GetOperatorSessionRequest {
            session_secret: secret.clone(),
        })
        .await
        .map_err(|s| refused(&s))?
        .into_inner();
    let email = who.operator.map(|o| o.email).unwrap_or_default();
    Ok((
        secret.clone(),
        Who {
            email,
            csrf: csrf::session_token(&secret),
        },
    ))
}

fn form<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(body).ok()
}

fn unreadable() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Not done",
        "The form could not be read.",
    )
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp_code: String,
}

pub(super) async fn sign_in_page(headers: HeaderMap) -> Response {
    let (token, cookie) = csrf::public_token(&headers);
    let mut r = render(
        StatusCode::OK,
        &SignInPage {
            title: "Sign in",
            who: None,
            csrf: token,
            email: String::new(),
            error: None,
        },
    );
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

pub(super) async fn sign_in(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<SignInForm>(&body) else {
        return unreadable();
    };
    if !csrf::public_ok(&headers, &f.csrf) {
        tracing::warn!("console sign-in refused: missing or wrong CSRF token");
        return error_page(
            StatusCode::FORBIDDEN,
            "Not accepted",
            "This form has expired or was not sent from the console. Nothing was changed. Reload the page and try again.",
        );
    }
    let answer = console
        .client()
        .operator_sign_in(OperatorSignInRequest {
            email: f.email.clone(),
            password: f.password,
            totp_code: f.totp_code,
            client_address: peer.ip().to_string(),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        })
        .await;
    let again = |status: StatusCode, error: String| {
        let (token, _) = csrf::public_token(&headers);
        render(
            status,
            &SignInPage {
                title: "Sign in",
                who: None,
                csrf: token,
                email: f.email.clone(),
                error: Some(error),
            },
        )
    };
    match answer {
        Ok(ok) => {
            let secret = ok
                .into_inner()
                .session
                .map(|s| s.secret)
                .unwrap_or_default();
            let mut r = Redirect::to("/console/").into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, csrf::set(SESSION_COOKIE, &secret));
            r.headers_mut()
                .append(header::SET_COOKIE, csrf::clear(CSRF_COOKIE));
            r
        }
        Err(s) if s.code() == Code::Unauthenticated => again(
            StatusCode::UNAUTHORIZED,
            "Wrong e-mail address, password or code.".into(),
        ),
        Err(s) if s.code() == Code::InvalidArgument => {
            again(StatusCode::BAD_REQUEST, s.message().to_owned())
        }
        Err(s) if s.code() == Code::ResourceExhausted => {
            let wait = s
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("60")
                .to_owned();
            let mut r = again(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many attempts. Try again in {wait} seconds."),
            );
            if let Ok(v) = HeaderValue::from_str(&wait) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(s) => refused(&s),
    }
}

pub(super) async fn sign_out(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = csrf::get(&headers, SESSION_COOKIE).map(str::to_owned) else {
        return to_sign_in();
    };
    let Some(f) = form::<CsrfOnly>(&body) else {
        return unreadable();
    };
    if !csrf::session_ok(&secret, &f.csrf) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Not accepted",
            "This form has expired. Nothing was changed.",
        );
    }
    let _ = console
        .client()
        .operator_sign_out(OperatorSignOutRequest {
            session_secret: secret,
        })
        .await;
    to_sign_in()
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    page: String,
}

pub(super) async fn customers(
    State(console): State<Arc<Console>>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let (secret, who) = match signed_in(&console, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let answer = console
        .client()
        .operator_list_customers(OperatorListCustomersRequest {
            session_secret: secret,
            page_size: 50,
            page_token: q.page,
        })
        .await;
    match answer {
        Ok(list) => {
            let list = list.into_inner();
            render(
                StatusCode::OK,
                &CustomersPage {
                    title: "Customers",
                    who: Some(who),
                    customers: list.customers.into_iter().map(Row::from).collect(),
                    next_page: (!list.next_page_token.is_empty()).then_some(list.next_page_token),
                },
            )
        }
        Err(s) => refused(&s),
    }
}

#[derive(Deserialize)]
pub(super) struct DoneQuery {
    #[serde(default)]
    done: String,
}

pub(super) async fn customer(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    Query(q): Query<DoneQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such customer.");
    };
    let (secret, who) = match signed_in(&console, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let answer = console
        .client()
        .operator_get_customer(OperatorGetCustomerRequest {
            session_secret: secret,
            customer_id: id,
        })
        .await;
    let notice = match q.done.as_str() {
        "approve" => Some("Approved."),
        "suspend" => Some("Suspended."),
        "reactivate" => Some("Reactivated."),
        _ => None,
    };
    match answer {
        Ok(c) => match c.into_inner().customer {
            Some(c) => render(
                StatusCode::OK,
                &CustomerPage {
                    title: "Customer",
                    csrf: who.csrf.clone(),
                    who: Some(who),
                    c: Row::from(c),
                    notice,
                    error: None,
                },
            ),
            None => error_page(StatusCode::NOT_FOUND, "Not found", "No such customer."),
        },
        Err(s) => refused(&s),
    }
}

pub(super) async fn act(
    State(console): State<Arc<Console>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such customer.");
    };
    let Some(secret) = csrf::get(&headers, SESSION_COOKIE).map(str::to_owned) else {
        return to_sign_in();
    };
    let Some(f) = form::<CsrfOnly>(&body) else {
        return unreadable();
    };
    if !csrf::session_ok(&secret, &f.csrf) {
        tracing::warn!(
            customer_id = id,
            "console form refused: missing or wrong CSRF token"
        );
        return error_page(
            StatusCode::FORBIDDEN,
            "Not accepted",
            "This form has expired or was not sent from the console. Nothing was changed.",
        );
    }
    let mut c = console.client();
    let done = match action.as_str() {
        "approve" => c
            .approve_customer(ApproveCustomerRequest {
                session_secret: secret,
                customer_id: id,
            })
            .await
            .map(|_| ()),
        "suspend" => c
            .suspend_customer(SuspendCustomerRequest {
                session_secret: secret,
                customer_id: id,
            })
            .await
            .map(|_| ()),
        "reactivate" => c
            .reactivate_customer(ReactivateCustomerRequest {
                session_secret: secret,
                customer_id: id,
            })
            .await
            .map(|_| ()),
        _ => return error_page(StatusCode::NOT_FOUND, "Not found", "No such action."),
    };
    match done {
        Ok(()) => Redirect::to(&format!("/console/customers/{id}?done={action}")).into_response(),
        Err(s) => refused(&s),
    }
}
