//! The legacy memory REST endpoints of the old memory service's clients: `POST /memory/store`,
//! `/memory/retrieve` and `/v2/context/enriched`, translated into memory-svc calls. A legacy
//! bearer token, or a tenant's API key (`nsk_...`, issue 19), is exchanged at tenant-svc for a
//! tenant token ([`LegacyTenant`], which the per-tenant limit in front of these handlers
//! extracts first); the JSON body is an object with a `user_id` ([`LegacyBody`]). Answers keep
//! the old shape: `{"success": true, ..., "customer_id"}` or `{"success": false, "error"}`.
//!
//! `POST /v1/tokens` ([`tokens`]) is the exchange on its own: an API key (or a legacy token) as
//! the bearer, a short-lived tenant token in the answer, for the mesh's other public APIs
//! (`POST /v1/calls`) and gRPC.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use mesh::api::memory as memory_pb;
use mesh::api::tenant::api_key_exchange_service_client::ApiKeyExchangeServiceClient;
use mesh::api::tenant::{ExchangeApiKeyRequest, ExchangeLegacyTokenRequest};
use mesh::auth::with_bearer as bearer;
use mesh::domain::CustomerId;
use secrecy::ExposeSecret;

use crate::state::Edge;

/// A JSON error answer of the legacy endpoints: `{"success": false, "error": ...}`.
pub struct JsonError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "success": false, "error": self.message })),
        )
            .into_response()
    }
}

fn json_error(status: StatusCode, message: impl Into<String>) -> JsonError {
    JsonError {
        status,
        message: message.into(),
    }
}

fn unauthorized(message: &str) -> JsonError {
    json_error(StatusCode::UNAUTHORIZED, message)
}

/// memory-svc's refusal as a legacy answer: the status from the mesh's one gRPC-to-HTTP table;
/// client errors keep memory-svc's message, token problems and failures get fixed ones.
fn grpc_error(s: &tonic::Status) -> JsonError {
    use mesh::status::ServiceErrorCode as C;
    let status = mesh::status::http_status_for(s.code());
    let code = C::from_grpc(s.code());
    match code {
        C::Unauthenticated | C::PermissionDenied => json_error(status, "invalid token"),
        C::ResourceExhausted => json_error(status, "rate limited"),
        C::Unimplemented | C::Cancelled => json_error(status, "memory service unavailable"),
        _ if code.is_server_side() => json_error(status, "memory service unavailable"),
        _ => json_error(status, s.message()),
    }
}

/// The tenant a legacy request acts for: its bearer token exchanged at tenant-svc (which
/// verifies it) for a tenant token. Kept in the request's extensions once exchanged, so the
/// per-tenant limit and the handler share one exchange.
#[derive(Debug, Clone)]
pub struct LegacyTenant {
    /// The token's tenant.
    pub customer_id: CustomerId,
    /// The tenant token for memory-svc.
    pub token: String,
}

impl FromRequestParts<Arc<Edge>> for LegacyTenant {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, edge: &Arc<Edge>) -> Result<Self, Response> {
        if let Some(tenant) = parts.extensions.get::<Self>() {
            return Ok(tenant.clone());
        }
        let tenant = exchange(edge, &parts.headers)
            .await
            .map_err(IntoResponse::into_response)?;
        parts.extensions.insert(tenant.clone());
        Ok(tenant)
    }
}

/// What every API key starts with (tenant-svc's `nsk_` secrets): such a bearer is exchanged as
/// an API key, any other as a legacy token.
pub const API_KEY_PREFIX: &str = "nsk_";

/// A bearer exchanged at tenant-svc: its tenant, the tenant token and when it expires.
struct Exchanged {
    customer_id: CustomerId,
    token: String,
    expire_time: Option<prost_types::Timestamp>,
}

/// Exchanges a bearer at tenant-svc: an API key with `ExchangeApiKey`, anything else with
/// `ExchangeLegacyToken` (the old behaviour). A credential tenant-svc refuses (unknown, expired,
/// revoked, or its tenant suspended) is 401, whatever the reason: the old API's contract for bad
/// credentials.
async fn exchange_bearer(
    edge: &Edge,
    headers: &axum::http::HeaderMap,
) -> Result<Exchanged, JsonError> {
    let token = match mesh::auth::bearer::token(headers) {
        Ok(token) => token,
        Err(mesh::auth::AuthError::MissingToken) => {
            return Err(unauthorized("missing bearer token"));
        }
        Err(_) => return Err(unauthorized("malformed bearer token")),
    };
    let unavailable = || json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let service = edge.tenant_token.token().map_err(|_| unavailable())?;
    let is_key = token.starts_with(API_KEY_PREFIX);
    let exchanged = if is_key {
        let mut keys = ApiKeyExchangeServiceClient::new(edge.tenant_channel());
        tokio::time::timeout(
            edge.budget,
            keys.exchange_api_key(bearer(
                ExchangeApiKeyRequest {
                    api_key: token.to_owned(),
                },
                service.expose_secret(),
            )),
        )
        .await
        .map(|r| {
            r.map(|r| {
                let r = r.into_inner();
                (r.customer_id, r.tenant_token, r.token_expire_time)
            })
        })
    } else {
        tokio::time::timeout(
            edge.budget,
            edge.tenant.clone().exchange_legacy_token(bearer(
                ExchangeLegacyTokenRequest {
                    legacy_token: token.to_owned(),
                },
                service.expose_secret(),
            )),
        )
        .await
        .map(|r| {
            r.map(|r| {
                let r = r.into_inner();
                (r.customer_id, r.tenant_token, r.token_expire_time)
            })
        })
    }
    .map_err(|_| unavailable())?;
    match exchanged {
        Ok((customer_id, token, expire_time)) => {
            let customer_id = CustomerId::new(customer_id).map_err(|_| unavailable())?;
            Ok(Exchanged {
                customer_id,
                token,
                expire_time,
            })
        }
        Err(s) if s.code() == tonic::Code::Unauthenticated => Err(unauthorized(if is_key {
            "invalid or revoked API key"
        } else {
            "invalid or expired token"
        })),
        Err(s) if s.code() == tonic::Code::FailedPrecondition => Err(unauthorized(s.message())),
        Err(s) => {
            tracing::warn!(code = ?s.code(), api_key = is_key, "token exchange failed");
            Err(unavailable())
        }
    }
}

/// Exchanges the bearer of a legacy endpoint (a legacy token or an API key).
async fn exchange(edge: &Edge, headers: &axum::http::HeaderMap) -> Result<LegacyTenant, JsonError> {
    let e = exchange_bearer(edge, headers).await?;
    Ok(LegacyTenant {
        customer_id: e.customer_id,
        token: e.token,
    })
}

/// `POST /v1/tokens` with `Authorization: Bearer <API key or legacy token>` (no body) ->
/// `{"access_token", "token_type": "Bearer", "expires_in", "expires_at", "customer_id"}`, the
/// tenant token tenant-svc minted (an API key's scopes and lifetime). Never cached by clients or
/// proxies. 401 `{"error"}` for any credential tenant-svc refuses, 503 when it cannot be asked.
pub async fn tokens(State(edge): State<Arc<Edge>>, headers: axum::http::HeaderMap) -> Response {
    let exchanged = match exchange_bearer(&edge, &headers).await {
        Ok(e) => e,
        Err(e) => {
            return (
                e.status,
                [(axum::http::header::CACHE_CONTROL, "no-store")],
                axum::Json(serde_json::json!({ "error": e.message })),
            )
                .into_response();
        }
    };
    let expires_at = exchanged
        .expire_time
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0));
    let expires_in = expires_at.map_or(0, |t| (t - chrono::Utc::now()).num_seconds().max(0));
    tracing::info!(
        customer_id = exchanged.customer_id.get(),
        "token exchanged at /v1/tokens"
    );
    (
        StatusCode::OK,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({
            "access_token": exchanged.token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "expires_at": expires_at.map(|t| t.to_rfc3339()),
            "customer_id": exchanged.customer_id.get(),
        })),
    )
        .into_response()
}

/// A legacy JSON body: an object with a string `user_id`.
pub struct LegacyBody {
    /// The whole object.
    pub body: serde_json::Value,
    /// Its `user_id`.
    pub user_id: String,
}

impl<S: Send + Sync> FromRequest<S> for LegacyBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let body = parse_json(&bytes).map_err(IntoResponse::into_response)?;
        let user_id = str_field(&body, "user_id").map_err(IntoResponse::into_response)?;
        Ok(Self { body, user_id })
    }
}

fn parse_json(body: &Bytes) -> Result<serde_json::Value, JsonError> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| json_error(StatusCode::BAD_REQUEST, "body must be a JSON object"))
}

fn str_field(v: &serde_json::Value, name: &str) -> Result<String, JsonError> {
    v.get(name)
        .and_then(|x| x.as_str())
        .map(str::to_owned)
        .ok_or_else(|| json_error(StatusCode::BAD_REQUEST, format!("{name}: required string")))
}

/// memory-svc's answer as a legacy one: `fields` of the success, plus `success` and the tenant.
fn reply<T>(
    tenant: &LegacyTenant,
    answer: Result<tonic::Response<T>, tonic::Status>,
    fields: impl FnOnce(T) -> serde_json::Value,
) -> Response {
    match answer {
        Ok(r) => {
            let mut body = fields(r.into_inner());
            body["success"] = true.into();
            body["customer_id"] = tenant.customer_id.get().into();
            axum::Json(body).into_response()
        }
        Err(s) => grpc_error(&s).into_response(),
    }
}

fn to_prost_value(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(to_prost_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o
                .iter()
                .map(|(k, v)| (k.clone(), to_prost_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn from_prost_value(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => (*b).into(),
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, Into::into)
        }
        Some(Kind::StringValue(s)) => s.clone().into(),
        Some(Kind::ListValue(l)) => l.values.iter().map(from_prost_value).collect(),
        Some(Kind::StructValue(s)) => s
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), from_prost_value(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// `POST /memory/store` `{user_id, role, content, metadata}` -> `{success, id, memory_id, customer_id}`.
pub async fn store(
    State(edge): State<Arc<Edge>>,
    tenant: LegacyTenant,
    LegacyBody { body: v, user_id }: LegacyBody,
) -> Response {
    let content = match str_field(&v, "content") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let role = v
        .get("role")
        .and_then(|r| r.as_str())
        .unwrap_or("user")
        .to_owned();
    let metadata = v
        .get("metadata")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let mut value = serde_json::json!({ "role": role, "content": content, "metadata": metadata });
    if let Some(thread) = metadata.get("thread_id").and_then(|t| t.as_str()) {
        value["thread_id"] = thread.into();
    }
    let request = memory_pb::StoreMemoryRequest {
        user_id,
        r#type: memory_pb::MemoryType::Conversation as i32,
        key: role.chars().take(200).collect(),
        value: Some(to_prost_value(&value)),
        scope: memory_pb::MemoryScope::User as i32,
        source: "legacy-rest".into(),
        ttl_days: 0,
    };
    let answer = edge
        .memory
        .clone()
        .store_memory(bearer(request, &tenant.token))
        .await;
    reply(&tenant, answer, |r| {
        let id = r.memory.map(|m| m.id).unwrap_or_default();
        serde_json::json!({ "id": id, "memory_id": id })
    })
}

/// One stored memory as the legacy API shows it.
fn legacy_memory(m: &memory_pb::Memory) -> serde_json::Value {
    let value = m.value.as_ref().map(from_prost_value).unwrap_or_default();
    let kind = memory_pb::MemoryType::try_from(m.r#type)
        .map(|t| {
            t.as_str_name()
                .trim_start_matches("MEMORY_TYPE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let created_at = m
        .create_time
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
        .map(|t| t.to_rfc3339());
    serde_json::json!({
        "id": m.id,
        "user_id": m.user_id,
        "type": kind,
        "key": m.key,
        "value": value,
        "created_at": created_at,
    })
}

/// `POST /memory/retrieve` `{user_id, limit, thread_id}` -> `{success, memories, count, customer_id}`.
pub async fn retrieve(
    State(edge): State<Arc<Edge>>,
    tenant: LegacyTenant,
    LegacyBody { body: v, user_id }: LegacyBody,
) -> Response {
    let limit = v.get("limit").and_then(|l| l.as_i64()).unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return json_error(StatusCode::BAD_REQUEST, "limit: must be between 1 and 500")
            .into_response();
    }
    let thread_id = v
        .get("thread_id")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_owned();
    let request = memory_pb::ListMemoriesRequest {
        user_id,
        types: vec![],
        thread_id,
        page_size: limit as i32,
        page_token: String::new(),
    };
    let answer = edge
        .memory
        .clone()
        .list_memories(bearer(request, &tenant.token))
        .await;
    reply(&tenant, answer, |r| {
        let memories: Vec<serde_json::Value> = r.memories.iter().map(legacy_memory).collect();
        serde_json::json!({ "count": memories.len(), "memories": memories })
    })
}

/// `POST /v2/context/enriched` `{user_id, num_summaries}` -> `{success, context, summary_count,
/// has_personality_data, customer_id}`.
pub async fn enriched(
    State(edge): State<Arc<Edge>>,
    tenant: LegacyTenant,
    LegacyBody { body: v, user_id }: LegacyBody,
) -> Response {
    let num_summaries = match v.get("num_summaries") {
        None | Some(serde_json::Value::Null) => None,
        Some(n) => match n.as_i64() {
            Some(n) if (0..=20).contains(&n) => Some(n as i32),
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "num_summaries: must be between 0 and 20",
                )
                .into_response();
            }
        },
    };
    let request = memory_pb::GetEnrichedContextRequest {
        user_id,
        num_summaries,
    };
    let answer = edge
        .memory
        .clone()
        .get_enriched_context(bearer(request, &tenant.token))
        .await;
    reply(&tenant, answer, |r| {
        serde_json::json!({
            "context": r.rendered_text,
            "summary_count": r.summary_count,
            "has_personality_data": r.has_personality_data,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary JSON values up to a few levels deep.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i32>().prop_map(Into::into),
            "\\PC{0,16}".prop_map(Into::into),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Into::into),
                proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                    .prop_map(|m| { serde_json::Value::Object(m.into_iter().collect()) }),
            ]
        })
    }

    #[test]
    fn nesting_beyond_the_parser_limit_is_a_clean_400() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = Bytes::from(format!(r#"{{"user_id":"+15551111111","metadata":{deep}}}"#));
        let err = parse_json(&body).expect_err("refused");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    proptest! {
        #[test]
        fn legacy_bodies_of_arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            match parse_json(&Bytes::from(body)) {
                Ok(v) => prop_assert!(v.is_object()),
                Err(e) => prop_assert_eq!(e.status, StatusCode::BAD_REQUEST),
            }
        }

        #[test]
        fn legacy_json_survives_the_trip_through_protobuf(v in json()) {
            // Integers become doubles on the way (protobuf's Value has one number type), so
            // compare after the same normalisation.
            let back = from_prost_value(&to_prost_value(&v));
            let normalised: serde_json::Value =
                serde_json::from_str(&serde_json::to_string(&back).unwrap()).unwrap();
            let expected = from_prost_value(&to_prost_value(&normalised));
            prop_assert_eq!(back, expected);
            if let serde_json::Value::Object(o) = &v {
                let body = Bytes::from(serde_json::to_vec(&v).unwrap());
                let Ok(parsed) = parse_json(&body) else { panic!("an object parses") };
                prop_assert_eq!(parsed.as_object().map(|m| m.len()), Some(o.len()));
                for name in ["user_id", "content"] {
                    match o.get(name).and_then(|x| x.as_str()) {
                        Some(s) => prop_assert_eq!(str_field(&parsed, name).ok(), Some(s.to_owned())),
                        None => prop_assert!(str_field(&parsed, name).is_err()),
                    }
                }
            }
        }

    }
}
