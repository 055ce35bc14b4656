//! The operator console (issue 21): pages for the platform's operators, served on their own
//! listener (`OPERATOR_CONSOLE_ADDR`, loopback by default; a non-private address needs
//! `OPERATOR_CONSOLE_EXPOSED`), never on the public port. The gateway holds no admin power for
//! it: every page calls tenant-svc's `OperatorService` with the gateway's own service token
//! (`tenant:operator-console`, nothing else) and the operator's session secret from the cookie,
//! and tenant-svc verifies the session (password and TOTP at sign-in) before doing anything.
//!
//! Layers, as the portal's: security headers on every answer ([`headers`]: the portal's CSP, no
//! referrer, no framing, no caching), the same-origin rule on every POST ([`same_origin`]), and
//! a CSRF token in every form (derived from the session secret, or before sign-in from a random
//! cookie: [`csrf`]). No JavaScript; the portal's stylesheet. Pages are in [`pages`].

mod csrf;
mod pages;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mesh::api::tenant::operator_service_client::OperatorServiceClient;
use mesh::auth::AttachToken;
use mesh::identity::{Identity, names, scope};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The console's session cookie (the operator's session secret; `HttpOnly; SameSite=Strict`).
pub const SESSION_COOKIE: &str = "ns_operator";
/// The console's pre-sign-in CSRF cookie.
pub const CSRF_COOKIE: &str = "ns_operator_csrf";

/// `OperatorService` with the gateway's `tenant:operator-console` token.
pub type OperatorClient = OperatorServiceClient<InterceptedService<Channel, AttachToken>>;

/// What the console's handlers share.
pub struct Console {
    client: OperatorClient,
}

impl Console {
    /// The console over the gateway's channel to tenant-svc, with the gateway's service tokens
    /// of scope `tenant:operator-console` only.
    pub fn new(tenant: Channel, identity: &Identity) -> Console {
        let tokens = identity.service_tokens(names::TENANT_SVC, &[scope::TENANT_OPERATOR_CONSOLE]);
        Console {
            client: OperatorServiceClient::with_interceptor(tenant, AttachToken(tokens)),
        }
    }

    /// tenant-svc's `OperatorService`.
    pub fn client(&self) -> OperatorClient {
        self.client.clone()
    }
}

/// Whether the console may listen on `ip` without `OPERATOR_CONSOLE_EXPOSED`: loopback, an
/// RFC 1918 IPv4 network, or an IPv6 unique local address. The unspecified address (every
/// interface) is not private.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private())
                || (v6.segments()[0] & 0xfe00) == 0xfc00
        }
    }
}

/// The console's routes (all under `/console/`) and its layers.
pub fn router(console: Arc<Console>) -> axum::Router {
    axum::Router::new()
        .route("/console/", get(pages::customers))
        .route(
            "/console/sign-in",
            get(pages::sign_in_page).post(pages::sign_in),
        )
        .route("/console/sign-out", post(pages::sign_out))
        .route("/console/customers/{id}", get(pages::customer))
        .route("/console/customers/{id}/{action}", post(pages::act))
        .route("/console/static/portal.css", get(stylesheet))
        // Forms only from the console's own pages, before any body is read.
        .layer(from_fn(same_origin))
        // Headers on every answer, errors included.
        .layer(from_fn(headers))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            crate::MAX_BODY,
        ))
        .with_state(console)
}

/// Serves the console on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    console: Arc<Console>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(service = crate::NAME, console_addr = %addr, "operator console serving");
    axum::serve(
        listener,
        router(console).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

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
        portal::STYLESHEET,
    )
        .into_response()
}

/// The portal's security headers on every console answer, and `no-store` on every page.
async fn headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/console/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(portal::security::CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Refuses (403) a POST whose `Origin` is not this console's own (`http(s)://<Host>`), or
/// `null` with `Sec-Fetch-Site: same-origin` (what a browser sends under `no-referrer`).
async fn same_origin(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let ok = ["http", "https"].iter().any(|scheme| {
        portal::security::origin_allowed(
            request.method(),
            request.headers(),
            &format!("{scheme}://{host}"),
        )
    });
    if ok && !host.is_empty() {
        return next.run(request).await;
    }
    tracing::warn!(
        path = request.uri().path(),
        "console form refused: it did not come from the console's own origin"
    );
    pages::error_page(
        axum::http::StatusCode::FORBIDDEN,
        "Not accepted",
        "This form was not sent from the console, so it was not accepted. Nothing was changed.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_private_addresses_are_private() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "172.16.5.5",
            "::1",
            "fd00::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "::",
            "203.0.113.4",
            "8.8.8.8",
            "2001:db8::1",
            "fe80::1",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
