//! `POST /v1/calls`: a tenant's website asks the platform to call a prospect now.
//!
//! The request carries a tenant token (scope `media:outbound`, audience media-svc) as a bearer
//! token and a small JSON body. The handler forwards it with the token, the browser's `Origin`
//! and the client's address ([`ClientAddr`], after the trusted-proxy rule) to media-svc's
//! `PlaceOutboundCall`, which verifies the token and owns every tenant-specific decision: the
//! tenant's CORS origins (a request without `Origin` is refused when the tenant lists any),
//! allowed regions and kinds of number, personas, do-not-call list, the per-address allowance
//! (default 3 a day per tenant and address, IPv6 by /64, kept in PostgreSQL so it holds across
//! gateway replicas and restarts, and charged only to requests whose token is valid), hourly and
//! concurrent limits. Keeping those in media-svc means one place decides, whichever way a call
//! is placed.
//!
//! CORS: the preflight (`OPTIONS`, which browsers send without credentials, so the tenant is
//! not yet known) allows the method and headers for any origin; the real request is then
//! refused with 403 and no `Access-Control-Allow-Origin` when the origin is not one of the
//! tenant's, before anything is dialled. Every other answer echoes the origin so the page can
//! read the error ([`cors`], a layer over the route).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mesh::api::media::{self as media_pb, PlaceOutboundCallRequest};
use mesh::auth::with_bearer;
use serde::Deserialize;

use crate::extract::ClientAddr;
use crate::state::Edge;

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

/// Marks an answer the page must not read: its origin is not one of the tenant's.
#[derive(Debug, Clone, Copy)]
struct OriginRefused;

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

/// Layer: every answer of `/v1/calls` (the preflight and the handler's)
/// echoes the request's origin, except one marked [`OriginRefused`].
pub async fn cors(request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let response = next.run(request).await;
    let refused = response.extensions().get::<OriginRefused>().is_some();
    with_cors(response, origin.as_ref().filter(|_| !refused))
}

/// A JSON error answer: `{"error": {"code", "message"}}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// `OPTIONS /v1/calls`: the CORS preflight.
pub async fn preflight() -> Response {
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
    response
}

/// `POST /v1/calls` (behind the CORS layer).
pub async fn place_call(
    State(edge): State<Arc<Edge>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(token) = mesh::auth::bearer::token(&headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing bearer token",
        );
    };
    let request: PlaceCallBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                &format!("body: {e}"),
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
            client_address: client.to_string(),
        },
        token,
    ));
    match tokio::time::timeout(PLACE_TIMEOUT, call).await {
        Ok(Ok(placed)) => placed_call(placed.into_inner()),
        Ok(Err(status)) => status_response(&status),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "unavailable",
            "the call could not be placed in time; it may still be placed",
        ),
    }
}

/// 201 with the call media-svc placed.
fn placed_call(placed: media_pb::PlaceOutboundCallResponse) -> Response {
    let Some(call) = placed.call else {
        return error(
            StatusCode::BAD_GATEWAY,
            "internal",
            "media-svc sent no call",
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
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// media-svc's refusal as an answer: the status from the mesh's one gRPC-to-HTTP table; client
/// errors keep media-svc's message (it names the field), server-side failures get a fixed text.
fn status_response(s: &tonic::Status) -> Response {
    use mesh::status::ServiceErrorCode as C;
    metrics::counter!("gateway_public_calls_refused_total", "code" => format!("{:?}", s.code()))
        .increment(1);
    let status = mesh::status::http_status_for(s.code());
    let (code, message) = match C::from_grpc(s.code()) {
        C::InvalidArgument => ("invalid_argument", s.message()),
        C::FailedPrecondition => ("failed_precondition", s.message()),
        C::Unauthenticated => ("unauthenticated", "invalid or expired token"),
        C::PermissionDenied => ("permission_denied", s.message()),
        C::ResourceExhausted => ("rate_limited", s.message()),
        C::NotFound => ("not_found", s.message()),
        C::AlreadyExists => ("already_exists", s.message()),
        C::Unavailable | C::DeadlineExceeded | C::Cancelled => {
            tracing::warn!(code = ?s.code(), "media-svc could not place a public call");
            (
                "unavailable",
                "calls cannot be placed right now; try again later",
            )
        }
        C::Unimplemented | C::Internal => {
            tracing::warn!(code = ?s.code(), "unexpected answer to a public call request");
            ("internal", "the call could not be placed")
        }
    };
    let mut response = error(status, code, message);
    match s.code() {
        // An origin the tenant has not configured (or a token without `media:outbound`): the
        // page gets no CORS header, so it cannot read the answer either.
        tonic::Code::PermissionDenied => {
            response.extensions_mut().insert(OriginRefused);
        }
        tonic::Code::ResourceExhausted => {
            let retry = s
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(60);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry.max(1)));
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(s: tonic::Status) -> (StatusCode, bool, Option<String>) {
        let r = status_response(&s);
        let cors = r.extensions().get::<OriginRefused>().is_none();
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
