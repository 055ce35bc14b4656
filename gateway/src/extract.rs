//! Typed extractors, so a handler's arguments say what it was given and that it was checked:
//! [`ClientAddr`] (where the request came from, resolved by the [`resolve_client`] layer), [`TwilioForm`] (a form Twilio signed, parsed
//! into a typed webhook) and [`SignedUpgrade`] (a Media Streams upgrade Twilio signed). Each
//! refuses with the same status and text the handlers answered before they existed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::Edge;
use crate::twilio::{self, CallWebhook, InputError};

/// The address a request came from: the connecting address, or behind a trusted proxy the
/// address it saw ([`crate::proxy`]), resolved once per request by [`resolve_client`] so every
/// limit keyed by address gets the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The key of every per-address limit: the IPv4 address, or the IPv6 /64.
    pub fn limit_key(self) -> IpAddr {
        crate::proxy::limit_key(self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().copied().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "client address unknown\n",
        ))
    }
}

/// Layer in front of every route: resolves the request's [`ClientAddr`] from the connection
/// (`http::serve` records it) and, from a trusted proxy, `X-Forwarded-For`. An address the
/// trusted chain wrote that is not one is refused with 400 before anything else runs.
pub async fn resolve_client(
    State(edge): State<Arc<Edge>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "client address unknown\n",
        )
            .into_response();
    };
    match edge.trusted_proxies.client(peer.ip(), request.headers()) {
        Ok(ip) => {
            request.extensions_mut().insert(ClientAddr(ip));
            next.run(request).await
        }
        Err(e) => {
            metrics::counter!("gateway_malformed_forwarded_for_total").increment(1);
            tracing::warn!(proxy = %peer.ip(), "malformed X-Forwarded-For from a trusted proxy");
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
    }
}

/// A webhook type parsed from Twilio's form parameters.
pub trait FromTwilioParams: Sized {
    /// Picks and checks the parameters.
    fn from_params(params: &[(String, String)]) -> Result<Self, InputError>;
}

impl FromTwilioParams for CallWebhook {
    fn from_params(params: &[(String, String)]) -> Result<Self, InputError> {
        CallWebhook::from_params(params)
    }
}

/// A form body Twilio signed, parsed into `T`. The signature is checked against the configured
/// public base URL plus the request's path and query, over every parameter as received; only
/// then are the parameters typed.
#[derive(Debug, Clone)]
pub struct TwilioForm<T>(pub T);

/// A form a layer already verified, waiting in the request's extensions for the handler.
#[derive(Clone)]
struct Verified<T>(T);

impl<T: Clone + Send + Sync + 'static> TwilioForm<T> {
    /// The request rebuilt from `parts` for the next service, carrying this verified form (its
    /// body was read): the handler's extractor takes it from there instead of checking again.
    pub fn into_request(self, parts: Parts) -> Request {
        let mut request = Request::from_parts(parts, Body::empty());
        request.extensions_mut().insert(Verified(self.0));
        request
    }
}

/// Why a Twilio form was refused.
#[derive(Debug)]
pub enum TwilioRejection {
    /// The body could not be read (too large, or the connection failed).
    Body(BytesRejection),
    /// Not `application/x-www-form-urlencoded` UTF-8: 400.
    Malformed,
    /// Missing or wrong `X-Twilio-Signature`: 403.
    Signature,
    /// Signed, but a parameter is missing or invalid: 400 naming it.
    Invalid(InputError),
}

impl IntoResponse for TwilioRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Body(r) => r.into_response(),
            Self::Malformed => (StatusCode::BAD_REQUEST, "malformed form body\n").into_response(),
            Self::Signature => {
                metrics::counter!("gateway_signature_failures_total").increment(1);
                (StatusCode::FORBIDDEN, "invalid Twilio signature\n").into_response()
            }
            Self::Invalid(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        }
    }
}

impl<T> FromRequest<Arc<Edge>> for TwilioForm<T>
where
    T: FromTwilioParams + Clone + Send + Sync + 'static,
{
    type Rejection = TwilioRejection;

    async fn from_request(request: Request, edge: &Arc<Edge>) -> Result<Self, Self::Rejection> {
        if let Some(Verified(form)) = request.extensions().get::<Verified<T>>() {
            return Ok(Self(form.clone()));
        }
        let (parts, body) = request.into_parts();
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), edge)
            .await
            .map_err(TwilioRejection::Body)?;
        let params = twilio::parse_form(&body).map_err(|_| TwilioRejection::Malformed)?;
        if !edge.signature_ok(&parts.headers, &edge.signed_url(&parts.uri), &params) {
            tracing::warn!(path = parts.uri.path(), "webhook with an invalid signature");
            return Err(TwilioRejection::Signature);
        }
        T::from_params(&params)
            .map(Self)
            .map_err(TwilioRejection::Invalid)
    }
}

/// A Media Streams upgrade Twilio signed: against the `wss://` URL with no parameters.
#[derive(Debug, Clone, Copy)]
pub struct SignedUpgrade;

impl FromRequestParts<Arc<Edge>> for SignedUpgrade {
    type Rejection = TwilioRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        edge: &Arc<Edge>,
    ) -> Result<Self, Self::Rejection> {
        if edge.signature_ok(&parts.headers, &edge.media_ws_url, &[]) {
            Ok(Self)
        } else {
            tracing::warn!("Media Streams upgrade with an invalid signature");
            Err(TwilioRejection::Signature)
        }
    }
}
