//! portal: the tenant portal, where a business's owners and staff sign in, see their calls and
//! callers, and run their receptionist. Server-rendered HTML (askama templates compiled into the
//! binary, `templates/`), one stylesheet (`static/portal.css`), no JavaScript needed (the call
//! page's `static/player.js` only makes "play from here" seek in place).
//!
//! A library: the gateway builds a [`Portal`] from its settings and channels and merges
//! [`router`] beside its own routes, so everything lives under `/portal/`. The portal holds no
//! tenant data and no tenant-wide power: each request's [`Session`] is exchanged at tenant-svc
//! (`AccountService.ExchangeSession`, with the gateway's narrow `tenant:portal` service token)
//! for a tenant token of a few minutes with the scopes of the user's role, and the pages call
//! tenant-svc, memory-svc and media-svc with it like any other client.
//!
//! Parts: [`config`] (settings, cookie shape by base URL), [`security`] (headers, same-origin
//! rule, the sign-in forms' per-address allowance), [`csrf`] (form tokens and the extractors
//! that check them), [`session`] ([`Session`], [`Owner`]), [`layout`] (the shared layout, error
//! pages, gRPC codes as pages), [`account`] (sign-in, sign-out, invitation, password reset),
//! [`mail`] (reset mail), [`pages`] (the signed-in pages, registered in one place).
#![forbid(unsafe_code)]

pub mod account;
pub mod config;
pub mod cookies;
pub mod csrf;
pub mod layout;
pub mod mail;
pub mod pages;
pub mod secret;
pub mod security;
pub mod session;

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant::account_service_client::AccountServiceClient;
use mesh::api::tenant::signup_service_client::SignupServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::auth::{AttachToken, TokenSource};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use config::Config;
pub use csrf::{CsrfForm, PublicForm};
pub use layout::{Layout, NavItem, PageError, Role, render};
pub use session::{Owner, Session};

/// The client address of a request as the gateway resolved it (behind trusted proxies, the
/// one they saw), as the key of per-address limits (the IPv4 address or the IPv6 /64). The
/// gateway puts it in every portal request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The gRPC channels the portal calls the services over (the gateway's own, shared).
#[derive(Debug, Clone)]
pub struct Channels {
    /// tenant-svc.
    pub tenant: Channel,
    /// memory-svc.
    pub memory: Channel,
    /// media-svc.
    pub media: Channel,
}

/// `AccountService` client carrying the gateway's `tenant:portal` service token.
pub type AccountClient = AccountServiceClient<InterceptedService<Channel, AttachToken>>;

/// `SignupService` client carrying the gateway's `tenant:portal` service token.
pub type SignupClient = SignupServiceClient<InterceptedService<Channel, AttachToken>>;

/// Everything the portal's handlers share.
pub struct Portal {
    /// Settings.
    pub config: Config,
    channels: Channels,
    account: AccountClient,
    signup: SignupClient,
    /// Exchanged sessions, each for at most half its tenant token's lifetime.
    pub sessions: session::SessionCache,
    auth_limiter: security::AuthLimiter,
    mailer: mail::Mailer,
}

impl Portal {
    /// The portal over the gateway's channels; `portal_token` is the gateway's service token to
    /// tenant-svc with scope `tenant:portal` (and nothing else).
    pub fn new(config: Config, channels: Channels, portal_token: TokenSource) -> Portal {
        let account = AccountServiceClient::with_interceptor(
            channels.tenant.clone(),
            AttachToken(portal_token.clone()),
        );
        let signup = SignupServiceClient::with_interceptor(
            channels.tenant.clone(),
            AttachToken(portal_token),
        );
        if let config::MailTransport::Outbox(dir) = &config.mail {
            tracing::info!(outbox = %dir.display(), "portal mail is written to an outbox folder, not sent");
        }
        Portal {
            auth_limiter: security::AuthLimiter::new(config.auth_posts_per_minute),
            mailer: mail::Mailer::new(&config),
            config,
            channels,
            account,
            signup,
            sessions: session::SessionCache::default(),
        }
    }

    /// tenant-svc's `AccountService` with the gateway's `tenant:portal` token.
    pub fn account(&self) -> AccountClient {
        self.account.clone()
    }

    /// tenant-svc's `SignupService` with the gateway's `tenant:portal` token.
    pub fn signup(&self) -> SignupClient {
        self.signup.clone()
    }

    /// tenant-svc's `TenantService` (requests carry a session's tenant token: [`Session::grpc`]).
    pub fn tenant(&self) -> TenantServiceClient<Channel> {
        TenantServiceClient::new(self.channels.tenant.clone())
    }

    /// memory-svc's `MemoryService` (requests carry a session's tenant token).
    pub fn memory(&self) -> MemoryServiceClient<Channel> {
        MemoryServiceClient::new(self.channels.memory.clone())
    }

    /// media-svc's `CallService` (requests carry a session's tenant token).
    pub fn media(&self) -> CallServiceClient<Channel> {
        CallServiceClient::new(self.channels.media.clone())
    }

    /// The channels, for clients of other services of the same hosts (e.g. `TeamService`).
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// The mailer (password-reset links).
    pub fn mailer(&self) -> &mail::Mailer {
        &self.mailer
    }

    /// Periodic upkeep (the gateway calls it every minute): forget idle limiter keys.
    pub fn shrink(&self) {
        self.auth_limiter.shrink();
    }
}

/// The sign-in page's URL that returns to `next` afterwards.
pub fn signin_url(next: &str) -> String {
    if next == "/portal/" || !account::is_safe_next(next) {
        return "/portal/sign-in".to_owned();
    }
    let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("/portal/sign-in?next={encoded}")
}

/// The portal's stylesheet (the operator console serves it too).
pub const STYLESHEET: &str = include_str!("../static/portal.css");

/// The stylesheet, compiled in.
async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// The call page's player script (progressive: every link works without it), compiled in.
async fn player_script() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        include_str!("../static/player.js"),
    )
        .into_response()
}

/// Any other path under `/portal/`: the 404 page.
async fn not_found() -> PageError {
    PageError::NotFound
}

/// Everything under `/portal/`, behind the portal's own layers: security headers on every
/// answer, its own time budget and body limit, and the same-origin rule for every POST.
pub fn router<S: Clone + Send + Sync + 'static>(portal: Arc<Portal>) -> axum::Router<S> {
    use std::time::Duration;
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;
    let timeout = portal.config.request_timeout;
    axum::Router::new()
        .merge(pages::routes())
        .merge(account::routes(portal.clone()))
        .route("/portal/static/portal.css", get(stylesheet))
        .route("/portal/static/player.js", get(player_script))
        .route("/portal", get(|| async { Redirect::permanent("/portal/") }))
        .route("/portal/{*rest}", get(not_found).post(not_found))
        .layer(from_fn_with_state(portal.clone(), security::same_origin))
        .layer(RequestBodyLimitLayer::new(csrf::MAX_FORM))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout.max(Duration::from_secs(1)),
        ))
        .layer(from_fn_with_state(portal.clone(), security::headers))
        .with_state(portal)
}
