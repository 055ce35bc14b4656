//! `/portal/security`: the signed-in user's own account: change the password (the other
//! sessions end), the open sessions with revoke, sign out everywhere; and, for owners, the
//! tenant's audit log (`templates/security_audit.html`). Every action is tenant-svc's
//! `AccountService`, bound to the session's secret.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mesh::api::tenant::{
    ChangePasswordRequest, ListSessionsRequest, RevokeSessionRequest, SignOutEverywhereRequest,
};
use serde::Deserialize;

use crate::account::{signed_in, signed_out};
use crate::layout::render_with;
use crate::{CsrfForm, Layout, NavItem, PageError, Portal, Session};

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/security", get(page))
        .route("/portal/security/password", post(change_password))
        .route("/portal/security/sessions/{id}/revoke", post(revoke))
        .route("/portal/security/sign-out-everywhere", post(everywhere))
}

/// One open session as the table shows it.
pub struct SessionRow {
    /// Its id (not its secret).
    pub id: i64,
    /// The browser it was created from.
    pub browser: String,
    /// When it was created.
    pub created: String,
    /// When it was last used.
    pub last_seen: String,
    /// Whether it is this browser's.
    pub current: bool,
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage {
    layout: Layout,
    csrf: String,
    email: String,
    notice: Option<&'static str>,
    error: Option<String>,
    sessions: Vec<SessionRow>,
    /// The tenant's audit log (owners only; empty for staff).
    audit: super::audit::AuditSection,
}

/// A timestamp as the page shows it (UTC, to the minute).
pub fn when(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map_or_else(
            || "—".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

#[derive(Debug, Deserialize)]
struct Done {
    done: Option<String>,
    /// The audit log's page (its token).
    audit: Option<String>,
}

async fn render_page(
    portal: &Portal,
    session: &Session,
    notice: Option<&'static str>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    render_page_at(portal, session, notice, error, status, None).await
}

async fn render_page_at(
    portal: &Portal,
    session: &Session,
    notice: Option<&'static str>,
    error: Option<String>,
    status: StatusCode,
    audit_page: Option<String>,
) -> Result<Response, PageError> {
    let audit = super::audit::section(portal, session, audit_page).await?;
    let sessions = portal
        .account()
        .list_sessions(ListSessionsRequest {
            session_secret: session.secret().to_owned(),
        })
        .await?
        .into_inner()
        .sessions
        .into_iter()
        .map(|s| SessionRow {
            id: s.id,
            browser: if s.user_agent.is_empty() {
                "Unknown browser".to_owned()
            } else {
                s.user_agent
            },
            created: when(s.create_time.as_ref()),
            last_seen: when(s.last_seen_time.as_ref()),
            current: s.current,
        })
        .collect();
    Ok(render_with(
        status,
        &SecurityPage {
            layout: session.layout("Security", NavItem::Security),
            csrf: session.csrf().to_owned(),
            email: session.email().to_owned(),
            notice,
            error,
            sessions,
            audit,
        },
    ))
}

async fn page(
    State(portal): State<Arc<Portal>>,
    session: Session,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let notice = match done.done.as_deref() {
        Some("password") => Some("Your password was changed. Your other sessions were signed out."),
        Some("revoked") => Some("The session was signed out."),
        _ => None,
    };
    render_page_at(&portal, &session, notice, None, StatusCode::OK, done.audit).await
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm: String,
}

async fn change_password(
    State(portal): State<Arc<Portal>>,
    session: Session,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> Result<Response, PageError> {
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    if form.new_password != form.confirm {
        let error = "The two new passwords are not the same.".to_owned();
        return render_page(&portal, &session, None, Some(error), status).await;
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(512)
        .collect();
    let answer = portal
        .account()
        .change_password(ChangePasswordRequest {
            session_secret: session.secret().to_owned(),
            current_password: form.current_password,
            new_password: form.new_password,
            user_agent,
        })
        .await;
    match answer {
        Ok(response) => {
            let Some(new) = response.into_inner().session else {
                tracing::error!("ChangePassword answered without a session");
                return Err(PageError::Internal);
            };
            portal
                .sessions
                .forget_user(session.customer_id(), session.user_id());
            tracing::info!(
                customer_id = session.customer_id(),
                user_id = session.user_id(),
                "portal password changed"
            );
            Ok(signed_in(&portal, &new, "/portal/security?done=password"))
        }
        Err(e) if e.code() == tonic::Code::InvalidArgument => {
            let error = if e.message().contains("current_password") {
                "The current password is not right.".to_owned()
            } else {
                crate::account::password_problem(e.message())
            };
            render_page(&portal, &session, None, Some(error), status).await
        }
        Err(e) if e.code() == tonic::Code::ResourceExhausted => Err(PageError::TooMany(60)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
struct Empty {}

async fn revoke(
    State(portal): State<Arc<Portal>>,
    session: Session,
    Path(id): Path<i64>,
    CsrfForm(Empty {}): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    portal
        .account()
        .revoke_session(RevokeSessionRequest {
            session_secret: session.secret().to_owned(),
            session_id: id,
        })
        .await?;
    portal.sessions.forget_session(session.customer_id(), id);
    tracing::info!(
        customer_id = session.customer_id(),
        user_id = session.user_id(),
        "portal session revoked"
    );
    if id == session.session_id() {
        return Ok(signed_out(portal.config.cookie, "/portal/sign-in"));
    }
    Ok(Redirect::to("/portal/security?done=revoked").into_response())
}

async fn everywhere(
    State(portal): State<Arc<Portal>>,
    session: Session,
    CsrfForm(Empty {}): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    portal
        .account()
        .sign_out_everywhere(SignOutEverywhereRequest {
            session_secret: session.secret().to_owned(),
        })
        .await?;
    portal
        .sessions
        .forget_user(session.customer_id(), session.user_id());
    tracing::info!(
        customer_id = session.customer_id(),
        user_id = session.user_id(),
        "portal user signed out everywhere"
    );
    Ok(signed_out(portal.config.cookie, "/portal/sign-in"))
}
