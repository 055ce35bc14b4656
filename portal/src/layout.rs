//! What every page shares: the [`Layout`] its template extends (`base.html`: header with the
//! business name, navigation by role, the sign-out form), [`render`] (a template into an HTML
//! response) and [`PageError`] (the 403/404/429/500/503 pages, and gRPC codes mapped to them).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

/// A signed-in user's role in their business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, settings and team included.
    Owner,
    /// Calls, transcripts and callers' memory, to read; their own password and sessions.
    Staff,
}

impl Role {
    /// The role's name as tenant-svc spells it (`owner`, `staff`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Staff => "staff",
        }
    }
}

/// The pages of the navigation, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NavItem {
    /// `/portal/`
    Dashboard,
    /// `/portal/calls`
    Calls,
    /// `/portal/messages` (callback tasks)
    Messages,
    /// `/portal/callers`
    Callers,
    /// `/portal/agent` (owners)
    Agent,
    /// `/portal/webhooks` (owners)
    Webhooks,
    /// `/portal/outbound` (owners)
    Outbound,
    /// `/portal/call-handling` (owners)
    CallHandling,
    /// `/portal/tokens` (owners)
    Tokens,
    /// `/portal/team` (owners)
    Team,
    /// `/portal/usage` (owners)
    Usage,
    /// `/portal/numbers` (owners)
    Numbers,
    /// `/portal/security`
    Security,
}

impl NavItem {
    /// Every item, in navigation order.
    pub const ALL: [NavItem; 13] = [
        NavItem::Dashboard,
        NavItem::Calls,
        NavItem::Messages,
        NavItem::Callers,
        NavItem::Agent,
        NavItem::Webhooks,
        NavItem::Outbound,
        NavItem::CallHandling,
        NavItem::Tokens,
        NavItem::Team,
        NavItem::Usage,
        NavItem::Numbers,
        NavItem::Security,
    ];

    /// Its link.
    pub fn href(self) -> &'static str {
        match self {
            NavItem::Dashboard => "/portal/",
            NavItem::Calls => "/portal/calls",
            NavItem::Messages => "/portal/messages",
            NavItem::Callers => "/portal/callers",
            NavItem::Agent => "/portal/agent",
            NavItem::Webhooks => "/portal/webhooks",
            NavItem::Outbound => "/portal/outbound",
            NavItem::CallHandling => "/portal/call-handling",
            NavItem::Tokens => "/portal/tokens",
            NavItem::Team => "/portal/team",
            NavItem::Usage => "/portal/usage",
            NavItem::Numbers => "/portal/numbers",
            NavItem::Security => "/portal/security",
        }
    }

    /// Its label.
    pub fn label(self) -> &'static str {
        match self {
            NavItem::Dashboard => "Dashboard",
            NavItem::Calls => "Calls",
            NavItem::Messages => "Messages",
            NavItem::Callers => "Callers",
            NavItem::Agent => "Agent",
            NavItem::Webhooks => "Webhooks",
            NavItem::Outbound => "Outbound",
            NavItem::CallHandling => "Call handling",
            NavItem::Tokens => "API keys",
            NavItem::Team => "Team",
            NavItem::Usage => "Usage",
            NavItem::Numbers => "Numbers",
            NavItem::Security => "Security",
        }
    }

    /// Whether a user of `role` may open it (and so sees its link).
    pub fn allowed(self, role: Role) -> bool {
        role == Role::Owner
            || matches!(
                self,
                NavItem::Dashboard
                    | NavItem::Calls
                    | NavItem::Messages
                    | NavItem::Callers
                    | NavItem::Security
            )
    }
}

/// One link of the navigation, as the template shows it.
#[derive(Debug, Clone)]
pub struct NavLink {
    /// Target.
    pub href: &'static str,
    /// Text.
    pub label: &'static str,
    /// Whether it is the page shown (`aria-current="page"`).
    pub current: bool,
}

/// The signed-in user as the header shows them.
#[derive(Debug, Clone)]
pub struct UserBar {
    /// The business's name.
    pub business: String,
    /// The user's e-mail address (their own).
    pub email: String,
    /// Their role.
    pub role: Role,
    /// The session's CSRF token, for the sign-out form in the header.
    pub csrf: String,
}

/// What `base.html` needs from every page: each page template's struct has a `layout: Layout`
/// field (`Session::layout` makes one).
#[derive(Debug, Clone)]
pub struct Layout {
    /// The page's title (the `<title>` gets " · NeuroSphere" after it).
    pub title: String,
    /// The navigation item to mark as current.
    pub current: Option<NavItem>,
    /// The signed-in user, or `None` on the sign-in pages and error pages before sign-in.
    pub user: Option<UserBar>,
}

impl Layout {
    /// A page shown to someone not signed in (sign-in, invitation, reset).
    pub fn public(title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            current: None,
            user: None,
        }
    }

    /// The links the user may follow: staff see only Dashboard, Calls, Messages, Callers and
    /// Security.
    pub fn nav(&self) -> Vec<NavLink> {
        let Some(user) = &self.user else {
            return Vec::new();
        };
        NavItem::ALL
            .into_iter()
            .filter(|item| item.allowed(user.role))
            .map(|item| NavLink {
                href: item.href(),
                label: item.label(),
                current: self.current == Some(item),
            })
            .collect()
    }

    /// Whether the signed-in user is an owner (templates hide owner-only buttons otherwise).
    pub fn is_owner(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == Role::Owner)
    }
}

/// A template rendered as an HTML page (status 200); a template that fails to render (a bug)
/// is logged and becomes the 500 page.
pub fn render<T: Template>(page: &T) -> Response {
    render_with(StatusCode::OK, page)
}

/// [`render`] with another status (e.g. 422 for a form shown again with its errors).
pub fn render_with<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a portal template failed to render");
            PageError::Internal.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "pending.html")]
struct PendingPage {
    layout: Layout,
    business: String,
    email: String,
    csrf: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    heading: &'static str,
    message: String,
}

/// A request that ends on an error page (in the layout, without the user's navigation).
#[derive(Debug)]
pub enum PageError {
    /// 400: the request cannot be understood; the message names the field.
    BadRequest(String),
    /// 403: the user may not do this (a staff user on an owner page, a forged form).
    Forbidden,
    /// 403 with a reason the user can act on (e.g. "the form has expired").
    Refused(&'static str),
    /// 404: nothing of this business by that name (another tenant's id looks exactly the same).
    NotFound,
    /// 429: too many attempts; try again in this many seconds.
    TooMany(u64),
    /// Not signed in (or the session ended): to the sign-in page, then back to `next`.
    SignIn {
        /// Where to return after signing in (a path under `/portal/`).
        next: String,
    },
    /// The customer signed up and awaits approval: the waiting page (200), with a sign-out
    /// form, whatever page was asked for.
    Pending {
        /// The business's name.
        business: String,
        /// The owner's own address.
        email: String,
        /// The session's CSRF token, for the sign-out form.
        csrf: String,
    },
    /// 503: a service behind the portal does not answer.
    Unavailable,
    /// 500: a bug or an unexpected answer; details are in the log only.
    Internal,
}

impl PageError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m.clone()),
            PageError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your role does not allow this page. Ask an owner of your business if you need it."
                    .into(),
            ),
            PageError::Refused(why) => (StatusCode::FORBIDDEN, "Not allowed", (*why).into()),
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here. It may have been removed, or the link is wrong.".into(),
            ),
            PageError::TooMany(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!("Too many attempts. Please try again in {secs} seconds."),
            ),
            PageError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "This page cannot be shown right now. Please try again in a minute.".into(),
            ),
            PageError::Internal | PageError::SignIn { .. } | PageError::Pending { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Something went wrong on our side. Please try again.".into(),
            ),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let PageError::SignIn { next } = &self {
            return Redirect::to(&crate::signin_url(next)).into_response();
        }
        if let PageError::Pending {
            business,
            email,
            csrf,
        } = self
        {
            let page = PendingPage {
                layout: Layout::public("Waiting for approval"),
                business,
                email,
                csrf,
            };
            return render(&page);
        }
        let (status, heading, message) = self.parts();
        let page = ErrorPage {
            layout: Layout::public(heading),
            heading,
            message,
        };
        let mut response = match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, heading).into_response(),
        };
        if let PageError::TooMany(secs) = self
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<tonic::Status> for PageError {
    /// A service's refusal as a page: NOT_FOUND -> 404, PERMISSION_DENIED -> 403,
    /// UNAUTHENTICATED (the tenant token or session ended) -> sign in again, INVALID_ARGUMENT ->
    /// 400 with the service's message (it names the field), RESOURCE_EXHAUSTED -> 429,
    /// UNAVAILABLE/DEADLINE_EXCEEDED -> 503, anything else -> 500 (logged).
    fn from(status: tonic::Status) -> PageError {
        use tonic::Code;
        match status.code() {
            Code::NotFound => PageError::NotFound,
            Code::PermissionDenied => PageError::Forbidden,
            Code::Unauthenticated => PageError::SignIn {
                next: "/portal/".into(),
            },
            Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => {
                PageError::BadRequest(status.message().to_owned())
            }
            Code::ResourceExhausted => PageError::TooMany(60),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                tracing::warn!(code = ?status.code(), "a service behind the portal did not answer");
                PageError::Unavailable
            }
            code => {
                tracing::error!(?code, "a service refused the portal unexpectedly");
                PageError::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(role: Role) -> Layout {
        Layout {
            title: "t".into(),
            current: Some(NavItem::Calls),
            user: Some(UserBar {
                business: "b".into(),
                email: "e".into(),
                role,
                csrf: "c".into(),
            }),
        }
    }

    #[test]
    fn staff_see_only_the_pages_they_may_open() {
        let labels = |role| -> Vec<&str> { layout(role).nav().iter().map(|l| l.label).collect() };
        assert_eq!(
            labels(Role::Staff),
            ["Dashboard", "Calls", "Messages", "Callers", "Security"]
        );
        assert_eq!(labels(Role::Owner).len(), NavItem::ALL.len());
        let current: Vec<_> = layout(Role::Staff)
            .nav()
            .into_iter()
            .filter(|l| l.current)
            .map(|l| l.href)
            .collect();
        assert_eq!(current, ["/portal/calls"]);
        assert!(Layout::public("x").nav().is_empty());
    }
}
