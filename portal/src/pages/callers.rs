//! `/portal/callers` and `/portal/callers/{id}`: the people who called, by opaque id (memory-svc
//! `ListCallers`, `GetCaller`; numbers masked in the list, never in a URL), with their
//! profile, memories and call summaries. Owners also get the caller's export (a download of
//! every record memory-svc and media-svc hold, each service writing its audit row) and erasure
//! (a confirmation page, then a POST with the CSRF token; media-svc `EraseCaller` erases both
//! services' rows and audits). Staff see neither and get the 403 page on their URLs.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono_tz::Tz;
use mesh::api::media::{EraseCallerRequest, ExportCallerRequest as MediaExport};
use mesh::api::memory::{
    ExportCallerRequest as MemoryExport, GetCallerRequest, GetCallerResponse, ListCallersRequest,
};
use serde::Deserialize;

use super::data;
use crate::{CsrfForm, Layout, NavItem, Owner, PageError, Portal, Session, render};

/// Callers per page.
const PAGE: i32 = 50;

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/callers", get(list))
        .route("/portal/callers/{id}", get(caller))
        .route("/portal/callers/{id}/export", post(export))
        .route("/portal/callers/{id}/erase", get(confirm_erase).post(erase))
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: String,
    #[serde(default)]
    done: String,
}

/// A caller as the list shows it.
struct Row {
    id: String,
    name: String,
    number: String,
    calls: i32,
    last: String,
}

#[derive(Template)]
#[template(path = "callers.html")]
struct CallersPage {
    layout: Layout,
    q: String,
    erased: bool,
    callers: Vec<Row>,
    next: Option<String>,
}

async fn list(
    State(portal): State<Arc<Portal>>,
    session: Session,
    Query(lq): Query<ListQuery>,
) -> Result<Response, PageError> {
    let q = data::caller_search(&lq.q)?;
    let tz = data::time_zone(&portal, &session).await?;
    let page = portal
        .memory()
        .list_callers(session.grpc(ListCallersRequest {
            page_size: PAGE,
            page_token: lq.page,
            query: q.clone(),
        }))
        .await?
        .into_inner();
    let next = (!page.next_page_token.is_empty()).then(|| {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("q", q.as_str()), ("page", page.next_page_token.as_str())])
            .finish();
        format!("/portal/callers?{query}")
    });
    Ok(render(&CallersPage {
        layout: session.layout("Callers", NavItem::Callers),
        erased: lq.done == "erased",
        callers: page
            .callers
            .into_iter()
            .map(|c| Row {
                last: data::local(c.last_call_time.as_ref(), tz),
                id: c.caller_id,
                name: c.preferred_name,
                number: c.masked_number,
                calls: c.total_calls,
            })
            .collect(),
        q,
        next,
    }))
}

/// A memory as the caller page shows it.
struct MemoryRow {
    kind: String,
    key: String,
    value: String,
    when: String,
}

/// A call summary as the caller page shows it.
struct SummaryRow {
    sid: String,
    when: String,
    text: String,
    resolution: String,
}

#[derive(Template)]
#[template(path = "caller.html")]
struct CallerPage {
    layout: Layout,
    id: String,
    name: String,
    number: String,
    first: String,
    last: String,
    calls: i32,
    memories: Vec<MemoryRow>,
    summaries: Vec<SummaryRow>,
}

/// A `google.protobuf.Value` as plain text.
fn text_of(v: Option<&prost_types::Value>) -> String {
    use prost_types::value::Kind;
    match v.and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        Some(Kind::NumberValue(n)) => n.to_string(),
        Some(Kind::BoolValue(b)) => b.to_string(),
        Some(Kind::ListValue(l)) => l
            .values
            .iter()
            .map(|v| text_of(Some(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Some(Kind::StructValue(s)) => s
            .fields
            .iter()
            .map(|(k, v)| format!("{k}: {}", text_of(Some(v))))
            .collect::<Vec<_>>()
            .join("; "),
        Some(Kind::NullValue(_)) | None => String::new(),
    }
}

/// The caller with opaque id `id` (404 for a malformed, unknown or another tenant's id).
async fn fetch(
    portal: &Portal,
    session: &Session,
    id: &str,
) -> Result<GetCallerResponse, PageError> {
    uuid::Uuid::parse_str(id).map_err(|_| PageError::NotFound)?;
    Ok(portal
        .memory()
        .get_caller(session.grpc(GetCallerRequest {
            caller_id: id.to_owned(),
        }))
        .await?
        .into_inner())
}

fn memory_kind(t: i32) -> String {
    mesh::api::memory::MemoryType::try_from(t)
        .map(|t| {
            t.as_str_name()
                .trim_start_matches("MEMORY_TYPE_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

async fn caller(
    State(portal): State<Arc<Portal>>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let got = fetch(&portal, &session, &id).await?;
    let tz: Tz = data::time_zone(&portal, &session).await?;
    let profile = got.profile.unwrap_or_default();
    Ok(render(&CallerPage {
        layout: session.layout("Caller", NavItem::Callers),
        id,
        name: profile.preferred_name,
        number: got.masked_number,
        first: data::local(profile.first_call_time.as_ref(), tz),
        last: data::local(profile.last_call_time.as_ref(), tz),
        calls: profile.total_calls,
        memories: got
            .memories
            .iter()
            .map(|m| MemoryRow {
                kind: memory_kind(m.r#type),
                key: m.key.clone(),
                value: text_of(m.value.as_ref()),
                when: data::local(m.create_time.as_ref(), tz),
            })
            .collect(),
        summaries: got
            .summaries
            .iter()
            .map(|s| SummaryRow {
                sid: s.call_sid.clone(),
                when: data::local(s.call_time.as_ref(), tz),
                text: s.summary.clone(),
                resolution: s.resolution_status.replace('_', " "),
            })
            .collect(),
    }))
}

/// The form of the export and erase buttons: only its CSRF token.
#[derive(Debug, Deserialize)]
struct Confirmed {}

/// Every record about the caller, memory-svc's then media-svc's, one JSON line each (as
/// `neurosphere caller export` prints them); each service audits its export.
async fn export(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Confirmed>,
) -> Result<Response, PageError> {
    let got = fetch(&portal, &owner, &id).await?;
    let number = got.profile.unwrap_or_default().user_id;
    let mut out = String::new();
    let mut line = |service: &str, record: String| {
        out.push_str(&serde_json::json!({ "service": service, "record": record }).to_string());
        out.push('\n');
    };
    let mut memory = portal
        .memory()
        .export_caller(owner.grpc(MemoryExport {
            user_id: number.clone(),
        }))
        .await?
        .into_inner();
    while let Some(r) = memory.message().await? {
        line("memory-svc", format!("{:?}", r.record));
    }
    let mut media = portal
        .media()
        .export_caller(owner.grpc(MediaExport { caller: number }))
        .await?
        .into_inner();
    while let Some(r) = media.message().await? {
        line("media-svc", media_record(r.record));
    }
    tracing::info!(
        customer_id = owner.customer_id(),
        user_id = owner.user_id(),
        "caller exported from the portal"
    );
    let disposition = format!("attachment; filename=\"caller-{id}.jsonl\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|_| PageError::Internal)?,
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        out,
    )
        .into_response())
}

/// One media-svc export record as a line's text: a recording's audio piece as base64 (the WAV
/// bytes from `offset`), anything else as its debug form.
fn media_record(record: Option<mesh::api::media::export_caller_response::Record>) -> String {
    use base64::Engine as _;
    use mesh::api::media::export_caller_response::Record;
    match record {
        Some(Record::RecordingData(d)) => format!(
            "RecordingData {{ recording_id: {:?}, offset: {}, wav_base64: {:?} }}",
            d.recording_id,
            d.offset,
            base64::engine::general_purpose::STANDARD.encode(&d.data)
        ),
        other => format!("{other:?}"),
    }
}

#[derive(Template)]
#[template(path = "caller_erase.html")]
struct ErasePage {
    layout: Layout,
    id: String,
    csrf: String,
    name: String,
    number: String,
}

async fn confirm_erase(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let got = fetch(&portal, &owner, &id).await?;
    Ok(render(&ErasePage {
        layout: owner.layout("Erase a caller", NavItem::Callers),
        csrf: owner.csrf().to_owned(),
        name: got.profile.unwrap_or_default().preferred_name,
        number: got.masked_number,
        id,
    }))
}

/// Erases the caller in media-svc and memory-svc (media-svc's `EraseCaller` does both, each
/// service writing its audit row), then back to the callers list.
async fn erase(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Confirmed>,
) -> Result<Response, PageError> {
    let got = fetch(&portal, &owner, &id).await?;
    let number = got.profile.unwrap_or_default().user_id;
    portal
        .media()
        .erase_caller(owner.grpc(EraseCallerRequest { caller: number }))
        .await?;
    tracing::info!(
        customer_id = owner.customer_id(),
        user_id = owner.user_id(),
        "caller erased from the portal"
    );
    Ok(Redirect::to("/portal/callers?done=erased").into_response())
}
