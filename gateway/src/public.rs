//! `POST /v1/calls`: a tenant's website asks the platform to call a prospect now.
//!
//! The request carries a tenant token (scope `media:outbound`, audience media-svc) as a bearer
//! token and a small JSON body. The gateway applies the per-IP allowance (default 3 requests a
//! day), then forwards the request with the token and the browser's `Origin` to media-svc's
//! `PlaceOutboundCall`, which verifies the token and owns every tenant-specific decision: the
//! tenant's CORS origins, allowed countries, personas, do-not-call list, hourly and concurrent
//! limits. Keeping those in media-svc means one place decides, whichever way a call is placed.
//!
//! CORS: the preflight (`OPTIONS`, which browsers send without credentials, so the tenant is
//! not yet known) allows the method and headers for any origin; the real request is then
//! refused with 403 and no `Access-Control-Allow-Origin` when the origin is not one of the
//! tenant's, before anything is dialled. Every other answer echoes the origin so the page can
//! read the error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mesh::api::media::{self as media_pb, PlaceOutboundCallRequest};
use mesh::auth::with_bearer;
use serde::Deserialize;

use crate::edge::Edge;

/// Time media-svc has to check, dial through Twilio and record the call.
const PLACE_TIMEOUT: Duration = Duration::from_secs(15);

/// The JSON body of `POST /v1/calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceCallBody {
    /// Destination, E.164.
    pub to: String,
    /// Persona from the tenant's allow-list.
    #[serde(default)]
    pub persona: String,
    /// Free-text context for the agent.
    #[serde(default)]
    pub context: String,
    /// One of the tenant's numbers; the first when absent.
    #[serde(default)]
    pub from: String,
}

fn origin(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers.get(header::ORIGIN)
}

/// Adds `Access-Control-Allow-Origin` for `origin` (and `Vary: Origin`, since the answer
/// depends on it).
fn with_cors(mut response: Response, origin: Option<&HeaderValue>) -> Response {
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// `OPTIONS /v1/calls`: the CORS preflight.
pub async fn preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    with_cors(response, origin(&headers))
}

/// `POST /v1/calls`.
pub async fn place_call(
    State(edge): State<Arc<Edge>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let origin = origin(&headers);
    let (response, allow_origin) = place(&edge, peer, &headers, &body).await;
    with_cors(response, origin.filter(|_| allow_origin))
}

/// The answer, and whether the page may read it (false when its origin was refused).
async fn place(
    edge: &Edge,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> (Response, bool) {
    if let Some(refused) = edge.limits.check_public_calls(peer.ip()) {
        let retry = refused.headers().get(header::RETRY_AFTER).cloned();
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many call requests from this address; see Retry-After",
        );
        if let Some(v) = retry {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return (r, true);
    }
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .filter(|t| !t.trim().is_empty())
    else {
        return (
            error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing bearer token",
            ),
            true,
        );
    };
    let request: PlaceCallBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            return (
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_argument",
                    &format!("body: {e}"),
                ),
                true,
            );
        }
    };
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut media = edge.media.clone();
    let call = media.place_outbound_call(with_bearer(
        PlaceOutboundCallRequest {
            to: request.to,
            persona: request.persona,
            context: request.context,
            from: request.from,
            origin,
        },
        token.trim(),
    ));
    match tokio::time::timeout(PLACE_TIMEOUT, call).await {
        Ok(Ok(placed)) => {
            let Some(call) = placed.into_inner().call else {
                return (
                    error(
                        StatusCode::BAD_GATEWAY,
                        "internal",
                        "media-svc sent no call",
                    ),
                    true,
                );
            };
            metrics::counter!("gateway_public_calls_placed_total").increment(1);
            let body = serde_json::json!({
                "call_sid": call.call_sid,
                "status": media_pb::CallStatus::try_from(call.status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("CALL_STATUS_UNSPECIFIED"),
                "direction": "outbound-api",
                "persona": call.persona,
            });
            (
                (StatusCode::CREATED, axum::Json(body)).into_response(),
                true,
            )
        }
        Ok(Err(status)) => status_response(&status),
        Err(_) => (
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "unavailable",
                "the call could not be placed in time; it may still be placed",
            ),
            true,
        ),
    }
}

/// Maps media-svc's answer to HTTP. Messages of client errors are media-svc's own (they name
/// the field); server-side failures get a fixed text.
fn status_response(s: &tonic::Status) -> (Response, bool) {
    use tonic::Code;
    metrics::counter!("gateway_public_calls_refused_total", "code" => format!("{:?}", s.code()))
        .increment(1);
    match s.code() {
        Code::InvalidArgument | Code::OutOfRange => (
            error(StatusCode::BAD_REQUEST, "invalid_argument", s.message()),
            true,
        ),
        Code::FailedPrecondition => (
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "failed_precondition",
                s.message(),
            ),
            true,
        ),
        Code::Unauthenticated => (
            error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "invalid or expired token",
            ),
            true,
        ),
        // An origin the tenant has not configured (or a token without `media:outbound`): the
        // page gets no CORS header, so it cannot read the answer either.
        Code::PermissionDenied => (
            error(StatusCode::FORBIDDEN, "permission_denied", s.message()),
            false,
        ),
        Code::ResourceExhausted => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", s.message());
            let retry = s
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(60);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry.max(1)));
            (r, true)
        }
        Code::NotFound => (error(StatusCode::NOT_FOUND, "not_found", s.message()), true),
        Code::Unavailable | Code::DeadlineExceeded => {
            tracing::warn!(code = ?s.code(), "media-svc could not place a public call");
            (
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "calls cannot be placed right now; try again later",
                ),
                true,
            )
        }
        code => {
            tracing::warn!(?code, "unexpected answer to a public call request");
            (
                error(
                    StatusCode::BAD_GATEWAY,
                    "internal",
                    "the call could not be placed",
                ),
                true,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(s: tonic::Status) -> (StatusCode, bool, Option<String>) {
        let (r, cors) = status_response(&s);
        let retry = r
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status(), cors, retry)
    }

    #[test]
    fn media_svc_answers_map_to_http() {
        assert_eq!(
            status_of(tonic::Status::invalid_argument("to: not E.164")).0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(tonic::Status::failed_precondition("to: do-not-call")).0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let (code, cors, _) = status_of(tonic::Status::permission_denied("origin"));
        assert_eq!((code, cors), (StatusCode::FORBIDDEN, false));
        let mut limited = tonic::Status::resource_exhausted("limit");
        limited
            .metadata_mut()
            .insert("retry-after", "120".parse().unwrap());
        assert_eq!(
            status_of(limited),
            (StatusCode::TOO_MANY_REQUESTS, true, Some("120".into()))
        );
        assert_eq!(
            status_of(tonic::Status::resource_exhausted("limit")).2,
            Some("60".into())
        );
        assert_eq!(
            status_of(tonic::Status::unavailable("down")).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(tonic::Status::unauthenticated("x")).0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn bodies_with_unknown_or_mistyped_fields_are_refused_by_name() {
        let e = serde_json::from_slice::<PlaceCallBody>(br#"{"to":"+351912345678","x":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `x`"), "{e}");
        let e = serde_json::from_slice::<PlaceCallBody>(br#"{"to":5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid type"), "{e}");
        let e = serde_json::from_slice::<PlaceCallBody>(br#"{}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `to`"), "{e}");
        let ok: PlaceCallBody = serde_json::from_slice(br#"{"to":"+351912345678"}"#).unwrap();
        assert!(ok.persona.is_empty() && ok.from.is_empty());
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn public_call_bodies_of_arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = serde_json::from_slice::<PlaceCallBody>(&body);
        }

        #[test]
        fn any_string_fields_parse_verbatim(to in "\\PC{0,40}", persona in "\\PC{0,40}", context in "\\PC{0,200}") {
            let body = serde_json::json!({"to": to, "persona": persona, "context": context});
            let parsed: PlaceCallBody = serde_json::from_value(body).unwrap();
            prop_assert_eq!((parsed.to, parsed.persona, parsed.context), (to, persona, context));
        }
    }
}
