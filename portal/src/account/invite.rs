//! The invitation (`/portal/invite/{token}`): the page naming the business, the address and the
//! role, and the form that sets a password, makes the invited person a user and signs them in.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use mesh::api::tenant::{AcceptInvitationRequest, GetInvitationRequest, UserRole};

use super::{PasswordTwice, password_problem, signed_in, user_agent, with_csrf_cookie};
use crate::csrf::PublicCsrf;
use crate::layout::{PageError, render_with};
use crate::{Layout, Portal, PublicForm, secret};

/// The invitation's routes.
pub(super) fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new().route(
        "/portal/invite/{token}",
        get(invite_page).post(accept_invite),
    )
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    layout: Layout,
    csrf: String,
    token: String,
    business: String,
    email: String,
    role: &'static str,
    error: Option<String>,
}

fn role_name(role: i32) -> &'static str {
    match UserRole::try_from(role) {
        Ok(UserRole::Owner) => "owner",
        Ok(UserRole::Staff) => "staff",
        _ => "user",
    }
}

/// The invitation's page, with `error` above the form.
async fn invitation(
    portal: &Portal,
    headers: &HeaderMap,
    token: &str,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    if !secret::looks_like_secret(token) {
        return Err(PageError::NotFound);
    }
    let invitation = portal
        .account()
        .get_invitation(GetInvitationRequest {
            token: token.to_owned(),
        })
        .await
        .map_err(PageError::from)?
        .into_inner();
    let csrf = PublicCsrf::for_request(headers, portal);
    let page = InvitePage {
        layout: Layout::public("Accept your invitation"),
        csrf: csrf.token.clone(),
        token: token.to_owned(),
        business: invitation.business_name,
        email: invitation.email,
        role: role_name(invitation.role),
        error,
    };
    Ok(with_csrf_cookie(render_with(status, &page), &csrf))
}

async fn invite_page(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    invitation(&portal, &headers, &token, None, StatusCode::OK).await
}

async fn accept_invite(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(token): Path<String>,
    PublicForm(form): PublicForm<PasswordTwice>,
) -> Result<Response, PageError> {
    if let Some(error) = form.problem(&token)? {
        return invitation(
            &portal,
            &headers,
            &token,
            Some(error),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let answer = portal
        .account()
        .accept_invitation(AcceptInvitationRequest {
            token: token.clone(),
            password: form.password,
            user_agent: user_agent(&headers),
        })
        .await;
    let response = match answer {
        Ok(r) => r.into_inner(),
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let error = password_problem(status.message());
            return invitation(
                &portal,
                &headers,
                &token,
                Some(error),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            return Err(PageError::BadRequest(
                "This business already has a user with that e-mail address: sign in, or reset the password.".into(),
            ));
        }
        Err(status) => return Err(status.into()),
    };
    let (Some(user), Some(session)) = (response.user, response.session) else {
        tracing::error!("AcceptInvitation answered without a user or session");
        return Err(PageError::Internal);
    };
    tracing::info!(
        customer_id = user.customer_id,
        user_id = user.id,
        "portal invitation accepted"
    );
    Ok(signed_in(&portal, &session, "/portal/"))
}
