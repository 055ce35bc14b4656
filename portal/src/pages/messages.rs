//! `/portal/messages`: the inbox of callback tasks, the messages callers left when the agent
//! could not answer (the AI service down, the line at its call limit, after opening hours) and
//! the ones the agent took itself, newest first, a page at a time (media-svc
//! `ListCallbackTasks`, scope `media:messages`: owners and staff, never an API key). The list
//! shows the open ones by default, or the done ones, or all. Each shows when (the tenant's time
//! zone), why in words, the caller masked as the calls list shows them, the agent's note and
//! the transcript when there is one, a player for the message's recording (the endpoint of
//! [`super::recording`], by id, checked against the call and the tenant) and a link to the call.
//!
//! "Mark done" / "Mark not done" is a POST with the session's CSRF token to
//! `/portal/messages/{task_id}` (media-svc `SetCallbackTaskDone`), answered with a redirect back
//! to the list it came from (post/redirect/get). Another tenant's task id is the same 404 as an
//! unknown or malformed one, and nothing changes.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono_tz::Tz;
use mesh::api::media::{
    CallbackReason, CallbackTask, CallbackTaskFilter, ListCallbackTasksRequest,
    SetCallbackTaskDoneRequest,
};
use serde::Deserialize;

use super::data;
use crate::{CsrfForm, Layout, NavItem, PageError, Portal, Session, render};

/// Messages per page.
const PAGE: i32 = 20;

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/messages", get(list))
        .route("/portal/messages/{task_id}", post(mark))
}

/// The list's filter: `open` (the default), `done` or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    Open,
    Done,
    All,
}

impl Show {
    const ALL: [Show; 3] = [Show::Open, Show::Done, Show::All];

    fn parse(value: &str) -> Result<Show, PageError> {
        match value {
            "" | "open" => Ok(Show::Open),
            "done" => Ok(Show::Done),
            "all" => Ok(Show::All),
            _ => Err(PageError::BadRequest("show: open, done or all".into())),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Show::Open => "open",
            Show::Done => "done",
            Show::All => "all",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Show::Open => "Open",
            Show::Done => "Done",
            Show::All => "All",
        }
    }

    fn filter(self) -> CallbackTaskFilter {
        match self {
            Show::Open => CallbackTaskFilter::Open,
            Show::Done => CallbackTaskFilter::Done,
            Show::All => CallbackTaskFilter::Unspecified,
        }
    }

    /// The list's address.
    fn href(self) -> String {
        format!("/portal/messages?show={}", self.as_str())
    }
}

/// A task's reason in words.
fn reason_label(reason: i32) -> &'static str {
    match CallbackReason::try_from(reason) {
        Ok(CallbackReason::BackendDown) => "The agent was unavailable (AI service down)",
        Ok(CallbackReason::Busy) => "The line was busy (call limit reached)",
        Ok(CallbackReason::AfterHours) => "After opening hours",
        Ok(CallbackReason::Agent) => "Taken by the agent",
        _ => "Message",
    }
}

#[derive(Debug, Default, Deserialize)]
struct Filters {
    #[serde(default)]
    show: String,
    /// Page token of the next page.
    #[serde(default)]
    page: String,
}

/// One message as the inbox shows it.
struct Message {
    id: String,
    call_sid: String,
    when: String,
    reason: &'static str,
    caller: String,
    note: String,
    transcript: String,
    /// The message's recording (the player's address), when one was kept.
    recording: Option<String>,
    /// When it was marked done; `None` while open.
    done: Option<String>,
}

impl Message {
    fn new(task: &CallbackTask, tz: Tz) -> Message {
        Message {
            id: task.task_id.clone(),
            call_sid: task.call_sid.clone(),
            when: data::local(task.create_time.as_ref(), tz),
            reason: reason_label(task.reason),
            caller: data::masked(&task.caller),
            note: task.note.clone(),
            transcript: task.transcript.clone(),
            recording: (!task.recording_id.is_empty())
                .then(|| super::recording::address(&task.call_sid, &task.recording_id)),
            done: task.done_time.as_ref().map(|t| data::local(Some(t), tz)),
        }
    }
}

#[derive(Template)]
#[template(path = "messages.html")]
struct MessagesPage {
    layout: Layout,
    csrf: String,
    time_zone: String,
    show: &'static str,
    tabs: Vec<(String, &'static str, bool)>,
    /// Open messages, over all pages.
    open: i64,
    messages: Vec<Message>,
    /// The next page's URL.
    next: Option<String>,
}

async fn list(
    State(portal): State<Arc<Portal>>,
    session: Session,
    Query(f): Query<Filters>,
) -> Result<Response, PageError> {
    let show = Show::parse(&f.show)?;
    let tz = data::time_zone(&portal, &session).await?;
    let page = portal
        .media()
        .list_callback_tasks(session.grpc(ListCallbackTasksRequest {
            page_size: PAGE,
            page_token: f.page,
            filter: show.filter() as i32,
        }))
        .await?
        .into_inner();
    let next = (!page.next_page_token.is_empty()).then(|| {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("show", show.as_str())
            .append_pair("page", &page.next_page_token)
            .finish();
        format!("/portal/messages?{query}")
    });
    Ok(render(&MessagesPage {
        layout: session.layout("Messages", NavItem::Messages),
        csrf: session.csrf().to_owned(),
        time_zone: tz.name().to_owned(),
        show: show.as_str(),
        tabs: Show::ALL
            .iter()
            .map(|s| (s.href(), s.label(), *s == show))
            .collect(),
        messages: page.tasks.iter().map(|t| Message::new(t, tz)).collect(),
        open: page.open_count,
        next,
    }))
}

/// `POST /portal/messages/{task_id}`: `done=1` marks the task done, `done=0` open again; back
/// to the list (`show`) it came from.
async fn mark(
    State(portal): State<Arc<Portal>>,
    session: Session,
    Path(task_id): Path<String>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Result<Response, PageError> {
    // A malformed id is as unknown as another tenant's.
    uuid::Uuid::parse_str(&task_id).map_err(|_| PageError::NotFound)?;
    let done = match form.get("done").map(String::as_str) {
        Some("1") => true,
        Some("0") => false,
        _ => return Err(PageError::BadRequest("done: 1 or 0".into())),
    };
    let back = Show::parse(form.get("show").map_or("", String::as_str))?;
    portal
        .media()
        .set_callback_task_done(session.grpc(SetCallbackTaskDoneRequest {
            task_id: task_id.clone(),
            done,
        }))
        .await?;
    tracing::info!(
        customer_id = session.customer_id(),
        user_id = session.user_id(),
        %task_id,
        done,
        "callback task marked from the portal"
    );
    Ok(Redirect::to(&back.href()).into_response())
}

/// The dashboard's count of open messages (media-svc counts them; no task is read).
pub async fn open_count(portal: &Portal, session: &Session) -> Result<i64, PageError> {
    Ok(portal
        .media()
        .list_callback_tasks(session.grpc(ListCallbackTasksRequest {
            page_size: 1,
            page_token: String::new(),
            filter: CallbackTaskFilter::Open as i32,
        }))
        .await?
        .into_inner()
        .open_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_is_open_by_default_and_anything_else_is_refused() {
        assert_eq!(Show::parse("").unwrap(), Show::Open);
        assert_eq!(Show::parse("done").unwrap(), Show::Done);
        assert_eq!(Show::parse("all").unwrap(), Show::All);
        assert!(Show::parse("DONE").is_err());
        assert_eq!(Show::Done.href(), "/portal/messages?show=done");
    }

    #[test]
    fn every_reason_has_words() {
        for r in [
            CallbackReason::BackendDown,
            CallbackReason::Busy,
            CallbackReason::AfterHours,
            CallbackReason::Agent,
        ] {
            assert_ne!(reason_label(r as i32), "Message");
        }
    }
}
