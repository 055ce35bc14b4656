//! Password reset: `/portal/reset` asks for a link by mail (the same answer whether or not the
//! address is known), `/portal/reset/{token}` chooses a new password and signs the user in.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use mesh::api::tenant::{RequestPasswordResetRequest, ResetPasswordRequest};
use serde::Deserialize;

use super::{PasswordTwice, client_address, password_problem, retry_after, with_csrf_cookie};
use crate::csrf::PublicCsrf;
use crate::layout::{PageError, render_with};
use crate::{ClientAddress, Layout, Portal, PublicForm, cookies, secret};

/// The reset's routes.
pub(super) fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/reset", get(reset_request_page).post(request_reset))
        .route("/portal/reset/{token}", get(reset_page).post(reset))
}

#[derive(Template)]
#[template(path = "reset_request.html")]
struct ResetRequestPage {
    layout: Layout,
    csrf: String,
    sent: bool,
}

async fn reset_request_page(State(portal): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let csrf = PublicCsrf::for_request(&headers, &portal);
    let page = ResetRequestPage {
        layout: Layout::public("Reset your password"),
        csrf: csrf.token.clone(),
        sent: false,
    };
    with_csrf_cookie(render_with(StatusCode::OK, &page), &csrf)
}

#[derive(Debug, Deserialize)]
struct ResetRequestForm {
    #[serde(default)]
    email: String,
}

/// Mails a link to every account of the address, and shows the same page whatever it is (the
/// mail is sent in the background, so the timing does not tell either).
async fn request_reset(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    address: Option<axum::Extension<ClientAddress>>,
    PublicForm(form): PublicForm<ResetRequestForm>,
) -> Result<Response, PageError> {
    let client_address = client_address(address)?;
    let answer = portal
        .account()
        .request_password_reset(RequestPasswordResetRequest {
            email: form.email,
            client_address,
        })
        .await;
    match answer {
        Ok(response) => {
            for mail in response.into_inner().mails {
                portal.mailer().send_reset(crate::mail::ResetMail {
                    link: format!("{}/portal/reset/{}", portal.config.base_url, mail.token),
                    to: mail.email,
                    business: mail.business_name,
                    customer_id: None,
                });
            }
        }
        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
            return Err(PageError::TooMany(retry_after(&status)));
        }
        Err(status) => return Err(status.into()),
    }
    let csrf = PublicCsrf::for_request(&headers, &portal);
    let page = ResetRequestPage {
        layout: Layout::public("Check your mail"),
        csrf: csrf.token.clone(),
        sent: true,
    };
    Ok(with_csrf_cookie(render_with(StatusCode::OK, &page), &csrf))
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage {
    layout: Layout,
    csrf: String,
    token: String,
    error: Option<String>,
    done: bool,
}

fn reset_form(
    portal: &Portal,
    headers: &HeaderMap,
    token: String,
    error: Option<String>,
    done: bool,
    status: StatusCode,
) -> Response {
    let csrf = PublicCsrf::for_request(headers, portal);
    let page = ResetPage {
        layout: Layout::public(if done {
            "Password changed"
        } else {
            "Choose a new password"
        }),
        csrf: csrf.token.clone(),
        token,
        error,
        done,
    };
    with_csrf_cookie(render_with(status, &page), &csrf)
}

async fn reset_page(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    if !secret::looks_like_secret(&token) {
        return Err(PageError::NotFound);
    }
    Ok(reset_form(
        &portal,
        &headers,
        token,
        None,
        false,
        StatusCode::OK,
    ))
}

async fn reset(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(token): Path<String>,
    PublicForm(form): PublicForm<PasswordTwice>,
) -> Result<Response, PageError> {
    if let Some(error) = form.problem(&token)? {
        return Ok(reset_form(
            &portal,
            &headers,
            token,
            Some(error),
            false,
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    match portal
        .account()
        .reset_password(ResetPasswordRequest {
            token: token.clone(),
            new_password: form.password,
        })
        .await
    {
        Ok(_) => {
            tracing::info!("portal password reset");
            // Every session of the user ended at tenant-svc; cached exchanges end within
            // half a token's lifetime, and this browser's own cookie goes now.
            let mut response =
                reset_form(&portal, &headers, String::new(), None, true, StatusCode::OK);
            let mode = portal.config.cookie;
            response.headers_mut().append(
                header::SET_COOKIE,
                cookies::clear(mode, cookies::session_name(mode)),
            );
            Ok(response)
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let error = password_problem(status.message());
            Ok(reset_form(
                &portal,
                &headers,
                token,
                Some(error),
                false,
                StatusCode::UNPROCESSABLE_ENTITY,
            ))
        }
        Err(status) => Err(status.into()),
    }
}
