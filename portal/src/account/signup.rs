//! Self sign-up (`/portal/signup`): the form (business name, contact name, e-mail address,
//! password twice), the "check your mail" answer (the same whatever the address), and the
//! verification link's page (`/portal/signup/verify?token=...`), whose button (a POST, so a
//! mail scanner following the link creates nothing) creates the business and signs its owner
//! in. All of it is tenant-svc's `SignupService`, called with the gateway's `tenant:portal`
//! token and the client address the gateway resolved; the forms carry the pre-sign-in CSRF
//! token ([`PublicForm`]) and pass the per-address allowance of the auth forms.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mesh::api::tenant::{SignUpRequest, VerifySignupRequest};
use serde::Deserialize;

use super::{
    client_address, password_problem, retry_after, signed_in, user_agent, with_csrf_cookie,
};
use crate::csrf::PublicCsrf;
use crate::layout::{PageError, render_with};
use crate::{ClientAddress, Layout, Portal, PublicForm, secret};

/// The sign-up's routes (behind the auth forms' per-address allowance).
pub(super) fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/signup", get(signup_page).post(sign_up))
        .route("/portal/signup/verify", get(verify_page).post(verify))
}

/// What the sign-up form holds (also when shown again with an error).
#[derive(Debug, Default, Deserialize)]
struct SignupForm {
    #[serde(default)]
    business_name: String,
    #[serde(default)]
    contact_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    layout: Layout,
    csrf: String,
    business_name: String,
    contact_name: String,
    email: String,
    /// The field the error is about (`business_name`, `contact_name`, `email`, `password`).
    field: &'static str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "signup_sent.html")]
struct SentPage {
    layout: Layout,
}

#[derive(Template)]
#[template(path = "signup_verify.html")]
struct VerifyPage {
    layout: Layout,
    csrf: String,
    token: String,
}

/// The form, with `error` about `field` when shown again.
fn form_page(
    portal: &Portal,
    headers: &HeaderMap,
    form: &SignupForm,
    field: &'static str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let csrf = PublicCsrf::for_request(headers, portal);
    let page = SignupPage {
        layout: Layout::public("Sign up"),
        csrf: csrf.token.clone(),
        business_name: form.business_name.clone(),
        contact_name: form.contact_name.clone(),
        email: form.email.clone(),
        field,
        error,
    };
    with_csrf_cookie(render_with(status, &page), &csrf)
}

async fn signup_page(State(portal): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    form_page(
        &portal,
        &headers,
        &SignupForm::default(),
        "",
        None,
        StatusCode::OK,
    )
}

/// The field a tenant-svc INVALID_ARGUMENT names (its message starts with it).
fn named_field(message: &str) -> &'static str {
    ["business_name", "contact_name", "email", "password"]
        .into_iter()
        .find(|f| message.starts_with(f))
        .unwrap_or("")
}

/// What the form says about tenant-svc's refusal of `field`.
fn field_problem(field: &str, message: &str) -> String {
    match field {
        "business_name" => {
            "Business name: enter the name of your business (at most 200 characters).".into()
        }
        "contact_name" => {
            "Your name: enter the name of the person we may contact (at most 200 characters)."
                .into()
        }
        "email" => "E-mail address: enter a valid e-mail address.".into(),
        "password" => format!("Password: {}", password_problem(message)),
        _ => message.to_owned(),
    }
}

async fn sign_up(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    address: Option<axum::Extension<ClientAddress>>,
    PublicForm(form): PublicForm<SignupForm>,
) -> Result<Response, PageError> {
    let client_address = client_address(address)?;
    if form.password != form.confirm {
        return Ok(form_page(
            &portal,
            &headers,
            &form,
            "password",
            Some("Password: the two passwords are not the same.".into()),
            StatusCode::BAD_REQUEST,
        ));
    }
    let answer = portal
        .signup()
        .sign_up(SignUpRequest {
            business_name: form.business_name.clone(),
            contact_name: form.contact_name.clone(),
            email: form.email.clone(),
            password: form.password.clone(),
            client_address,
        })
        .await;
    match answer {
        Ok(_) => {
            tracing::info!("portal sign-up accepted");
            let page = SentPage {
                layout: Layout::public("Check your mail"),
            };
            Ok(render_with(StatusCode::OK, &page))
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let field = named_field(status.message());
            let error = field_problem(field, status.message());
            Ok(form_page(
                &portal,
                &headers,
                &form,
                field,
                Some(error),
                StatusCode::BAD_REQUEST,
            ))
        }
        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
            tracing::warn!("portal sign-up refused: address over its daily limit");
            Ok(PageError::TooMany(retry_after(&status)).into_response())
        }
        Err(status) => Err(status.into()),
    }
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

async fn verify_page(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Result<Response, PageError> {
    if !secret::looks_like_secret(&q.token) {
        return Err(PageError::NotFound);
    }
    let csrf = PublicCsrf::for_request(&headers, &portal);
    let page = VerifyPage {
        layout: Layout::public("Confirm your e-mail address"),
        csrf: csrf.token.clone(),
        token: q.token,
    };
    Ok(with_csrf_cookie(render_with(StatusCode::OK, &page), &csrf))
}

async fn verify(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    PublicForm(form): PublicForm<TokenQuery>,
) -> Result<Response, PageError> {
    if !secret::looks_like_secret(&form.token) {
        return Err(PageError::NotFound);
    }
    let response = portal
        .signup()
        .verify_signup(VerifySignupRequest {
            token: form.token,
            user_agent: user_agent(&headers),
        })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::AlreadyExists => PageError::BadRequest(
                "An account with this e-mail address already exists: sign in, or reset the password.".into(),
            ),
            _ => PageError::from(status),
        })?
        .into_inner();
    let (Some(user), Some(session)) = (response.user, response.session) else {
        tracing::error!("VerifySignup answered without a user or session");
        return Err(PageError::Internal);
    };
    tracing::info!(
        customer_id = user.customer_id,
        user_id = user.id,
        "portal sign-up verified"
    );
    Ok(signed_in(&portal, &session, "/portal/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_field() {
        assert_eq!(named_field("email: not an e-mail address"), "email");
        assert_eq!(
            named_field("business_name: must not be empty"),
            "business_name"
        );
        assert_eq!(named_field("something else"), "");
        assert!(field_problem("password", "password: too common").starts_with("Password:"));
    }
}
