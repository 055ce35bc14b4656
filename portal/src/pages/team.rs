//! `/portal/team` (owners only): the business's portal users (e-mail, role, last sign-in, the
//! signed-in owner marked "you"), the open invitations (e-mail, role, expiry) with a revoke
//! button, an invite form whose answer shows the one-time invitation link once, and per user a
//! role change and a removal behind a confirmation tick. Every action is tenant-svc's
//! `TeamService` with the session's tenant token (scope `tenant:team`); tenant-svc refuses
//! removing or demoting yourself and the last owner (FAILED_PRECONDITION, shown as a message).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mesh::api::tenant::team_service_client::TeamServiceClient;
use mesh::api::tenant::{
    ChangeUserRoleRequest, CreateInvitationRequest, ListInvitationsRequest, ListUsersRequest,
    RemoveUserRequest, RevokeInvitationRequest, UserRole,
};
use serde::Deserialize;
use tonic::transport::Channel;

use super::security::when;
use super::shown_once::{Done, ShownOnce, View};
use crate::layout::render_with;
use crate::{CsrfForm, Layout, NavItem, Owner, PageError, Portal};

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/team", get(page).post(invite))
        .route("/portal/team/users/{id}/role", post(change_role))
        .route("/portal/team/users/{id}/remove", post(remove))
        .route("/portal/team/invitations/{id}/revoke", post(revoke))
}

/// A role's name as the page shows it.
fn role_name(role: i32) -> &'static str {
    match UserRole::try_from(role) {
        Ok(UserRole::Owner) => "Owner",
        Ok(UserRole::Staff) => "Staff",
        _ => "—",
    }
}

/// A role from a form field (`owner` or `staff`).
fn role_of(field: &str) -> Result<UserRole, PageError> {
    match field {
        "owner" => Ok(UserRole::Owner),
        "staff" => Ok(UserRole::Staff),
        _ => Err(PageError::BadRequest(
            "role: choose owner or staff.".to_owned(),
        )),
    }
}

/// An id from the URL; anything else names nothing of this business.
fn id_of(id: &str) -> Result<i64, PageError> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(PageError::NotFound)
}

/// One user as the table shows them.
pub struct UserRow {
    /// Their id.
    pub id: i64,
    /// Their e-mail address.
    pub email: String,
    /// "Owner" or "Staff".
    pub role: &'static str,
    /// Whether they are an owner.
    pub owner: bool,
    /// Their last sign-in ("Never" when none).
    pub last_sign_in: String,
    /// Whether it is the signed-in user.
    pub you: bool,
}

/// One open invitation as the table shows it.
pub struct InvitationRow {
    /// Its id.
    pub id: i64,
    /// The invited address.
    pub email: String,
    /// "Owner" or "Staff".
    pub role: &'static str,
    /// When the link stops working.
    pub expires: String,
}

#[derive(Template)]
#[template(path = "team.html")]
struct TeamPage {
    layout: Layout,
    csrf: String,
    view: View,
    email: String,
    staff_selected: bool,
    users: Vec<UserRow>,
    invitations: Vec<InvitationRow>,
}

fn team(portal: &Portal) -> TeamServiceClient<Channel> {
    TeamServiceClient::new(portal.channels().tenant.clone())
}

/// What the invite form held (to show it again after a refusal).
#[derive(Debug, Default, Deserialize)]
struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

async fn render_page(
    portal: &Portal,
    owner: &Owner,
    form: &InviteForm,
    view: View,
    status: StatusCode,
) -> Result<Response, PageError> {
    let users = team(portal)
        .list_users(owner.grpc(ListUsersRequest {}))
        .await?
        .into_inner()
        .users
        .into_iter()
        .map(|u| UserRow {
            you: u.id == owner.user_id(),
            owner: u.role == UserRole::Owner as i32,
            role: role_name(u.role),
            last_sign_in: u
                .last_sign_in_time
                .as_ref()
                .map_or_else(|| "Never".to_owned(), |t| when(Some(t))),
            id: u.id,
            email: u.email,
        })
        .collect();
    let invitations = team(portal)
        .list_invitations(owner.grpc(ListInvitationsRequest {}))
        .await?
        .into_inner()
        .invitations
        .into_iter()
        .map(|i| InvitationRow {
            role: role_name(i.role),
            expires: when(i.expire_time.as_ref()),
            id: i.id,
            email: i.email,
        })
        .collect();
    let page = TeamPage {
        layout: owner.layout("Team", NavItem::Team),
        csrf: owner.csrf().to_owned(),
        view,
        email: form.email.clone(),
        staff_selected: form.role != "owner",
        users,
        invitations,
    };
    // A link in `view` is shown this once (`shown_once`).
    Ok(render_with(status, &page))
}

async fn page(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let view = View::after(
        &done,
        &[
            (
                "revoked",
                "The invitation was withdrawn. Its link no longer works.",
            ),
            ("role", "The role was changed. It applies at once."),
            ("removed", "The user was removed and signed out everywhere."),
        ],
    );
    render_page(
        &portal,
        &owner,
        &InviteForm::default(),
        view,
        StatusCode::OK,
    )
    .await
}

/// A refusal tenant-svc explains (invalid field, existing user, last owner, yourself) shown on
/// the page itself with its status; anything else becomes an error page.
async fn refused(
    portal: &Portal,
    owner: &Owner,
    form: &InviteForm,
    e: tonic::Status,
) -> Result<Response, PageError> {
    let (status, error) = match e.code() {
        tonic::Code::InvalidArgument => (StatusCode::BAD_REQUEST, e.message().to_owned()),
        tonic::Code::AlreadyExists => (
            StatusCode::CONFLICT,
            "This address already belongs to a user of your team.".to_owned(),
        ),
        tonic::Code::FailedPrecondition => {
            (StatusCode::CONFLICT, format!("Not done: {}.", e.message()))
        }
        _ => return Err(e.into()),
    };
    render_page(portal, owner, form, View::error(error), status).await
}

async fn invite(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    CsrfForm(form): CsrfForm<InviteForm>,
) -> Result<Response, PageError> {
    let role = match role_of(&form.role) {
        Ok(role) => role,
        Err(PageError::BadRequest(m)) => {
            let view = View::error(m);
            return render_page(&portal, &owner, &form, view, StatusCode::BAD_REQUEST).await;
        }
        Err(e) => return Err(e),
    };
    let request = CreateInvitationRequest {
        email: form.email.clone(),
        role: role as i32,
    };
    match team(&portal).create_invitation(owner.grpc(request)).await {
        Ok(r) => {
            let r = r.into_inner();
            let email = r.invitation.map(|i| i.email).unwrap_or_default();
            tracing::info!(
                customer_id = owner.customer_id(),
                user_id = owner.user_id(),
                "invitation created in the portal"
            );
            let link = format!("{}/portal/invite/{}", portal.config.base_url, r.token);
            let view = View::created(ShownOnce {
                heading: format!("Invitation for {email}"),
                heading_id: "link-heading",
                advice: "Send this link to them now: this is the only time it is shown. It \
                         works once, for 72 hours. If it is lost, revoke the invitation and \
                         invite them again.",
                secret: link,
                secret_id: "invitation-link",
            });
            render_page(
                &portal,
                &owner,
                &InviteForm::default(),
                view,
                StatusCode::OK,
            )
            .await
        }
        Err(e) => refused(&portal, &owner, &form, e).await,
    }
}

#[derive(Debug, Deserialize)]
struct RoleForm {
    #[serde(default)]
    role: String,
}

async fn change_role(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<RoleForm>,
) -> Result<Response, PageError> {
    let user_id = id_of(&id)?;
    let role = role_of(&form.role)?;
    let request = ChangeUserRoleRequest {
        user_id,
        role: role as i32,
    };
    let answer = team(&portal).change_user_role(owner.grpc(request)).await;
    user_changed(&portal, &owner, user_id, answer, "role").await
}

/// The end of a change to one user (`done`: `role` or `removed`): a refusal shown on the page;
/// else their cached sessions (and tenant tokens) in this portal are forgotten at once (tenant-svc
/// ended a removed user's sessions; a new role applies at their next page) and the page again
/// with its notice.
async fn user_changed<T>(
    portal: &Portal,
    owner: &Owner,
    user_id: i64,
    answer: Result<T, tonic::Status>,
    done: &str,
) -> Result<Response, PageError> {
    if let Err(e) = answer {
        return refused(portal, owner, &InviteForm::default(), e).await;
    }
    portal.sessions.forget_user(owner.customer_id(), user_id);
    let what = match done {
        "role" => "user role changed in the portal",
        _ => "user removed in the portal",
    };
    tracing::info!(
        customer_id = owner.customer_id(),
        user_id = owner.user_id(),
        target_user_id = user_id,
        "{what}"
    );
    Ok(Redirect::to(&format!("/portal/team?done={done}")).into_response())
}

#[derive(Debug, Deserialize)]
struct RemoveForm {
    confirm: Option<String>,
}

async fn remove(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<RemoveForm>,
) -> Result<Response, PageError> {
    let user_id = id_of(&id)?;
    if form.confirm.as_deref() != Some("yes") {
        return Err(PageError::BadRequest(
            "confirm: tick the box to confirm the removal.".to_owned(),
        ));
    }
    let request = RemoveUserRequest { user_id };
    let answer = team(&portal).remove_user(owner.grpc(request)).await;
    user_changed(&portal, &owner, user_id, answer, "removed").await
}

#[derive(Debug, Deserialize)]
struct Empty {}

async fn revoke(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Path(id): Path<String>,
    CsrfForm(Empty {}): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let invitation_id = id_of(&id)?;
    let request = RevokeInvitationRequest { invitation_id };
    team(&portal).revoke_invitation(owner.grpc(request)).await?;
    tracing::info!(
        customer_id = owner.customer_id(),
        user_id = owner.user_id(),
        invitation_id,
        "invitation revoked in the portal"
    );
    Ok(Redirect::to("/portal/team?done=revoked").into_response())
}
