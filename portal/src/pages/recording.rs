//! `/portal/calls/{CallSid}/recording` (the call's first recording) and
//! `/portal/calls/{CallSid}/recordings/{id}` (one of its recordings by id: a call that switched
//! to taking a message has the conversation and the message): a call's recording for the call
//! page's and the inbox's players, streamed from media-svc `ReadRecording` with the session's
//! tenant token (checked against the user's tenant like every other read: another tenant's
//! call, an unknown one, a call without a recording, and an id that is not one of this call's
//! recordings in this tenant are the same 404). Never a public URL: the address works only with the session
//! cookie, and every answer is `Cache-Control: no-store`.
//!
//! HTTP ranges as a browser's media element uses them: `Accept-Ranges: bytes`, one range
//! (`a-b`, `a-`, `-n`) answered 206 with `Content-Range`, a range starting past the end 416
//! (`Content-Range: bytes */<size>`); several ranges, a malformed header or an `If-Range`
//! (the portal gives no validator it could match) get the whole file (RFC 9110 14.2 lets a
//! server ignore them). HEAD answers the headers only. `?download=1` (owners only: staff get
//! the 403 page, they may listen but not keep a copy) adds `Content-Disposition: attachment`.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt as _;
use mesh::api::media::{ReadRecordingRequest, ReadRecordingResponse};
use mesh::domain::CallSid;
use serde::Deserialize;

use crate::{PageError, Portal, Session};

/// This endpoint's route (GET, and HEAD through it).
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/calls/{call_sid}/recording", get(first))
        .route(
            "/portal/calls/{call_sid}/recordings/{recording_id}",
            get(by_id),
        )
}

/// The address of recording `recording_id` of call `call_sid` (what the players read).
pub fn address(call_sid: &str, recording_id: &str) -> String {
    format!("/portal/calls/{call_sid}/recordings/{recording_id}")
}

/// What a `Range` header asks for, before the file's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// The whole file (no `Range`, or one this endpoint ignores).
    Whole,
    /// `bytes=first-` or `bytes=first-last` (`last` inclusive).
    From {
        /// First byte.
        first: u64,
        /// Last byte, inclusive; `None`: to the end.
        last: Option<u64>,
    },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl Ask {
    /// Reads the request's `Range` header: one byte range, else the whole file (several ranges,
    /// another unit, a malformed value, or an `If-Range` condition).
    pub fn of(headers: &HeaderMap) -> Ask {
        if headers.contains_key(header::IF_RANGE) {
            return Ask::Whole;
        }
        let mut values = headers.get_all(header::RANGE).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Ask::Whole;
        };
        value
            .to_str()
            .ok()
            .and_then(Ask::parse)
            .unwrap_or(Ask::Whole)
    }

    fn parse(value: &str) -> Option<Ask> {
        let (unit, spec) = value.trim().split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
            return None;
        }
        let (first, last) = spec.trim().split_once('-')?;
        let number = |s: &str| -> Option<u64> {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (true, false) => Some(Ask::Suffix(number(last)?)),
            (false, true) => Some(Ask::From {
                first: number(first)?,
                last: None,
            }),
            (false, false) => {
                let (first, last) = (number(first)?, number(last)?);
                (last >= first).then_some(Ask::From {
                    first,
                    last: Some(last),
                })
            }
            (true, true) => None,
        }
    }

    /// The bytes to send of a file of `total` bytes.
    pub fn resolve(self, total: u64) -> Part {
        match self {
            Ask::Whole => Part::Whole,
            Ask::From { first, .. } if first >= total => Part::Unsatisfiable,
            Ask::From { first, last } => {
                let end = last.map_or(total, |l| l.saturating_add(1).min(total));
                Part::Range(first..end)
            }
            Ask::Suffix(0) => Part::Unsatisfiable,
            Ask::Suffix(_) if total == 0 => Part::Unsatisfiable,
            Ask::Suffix(n) => Part::Range(total.saturating_sub(n)..total),
        }
    }
}

/// What is sent of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// All of it (200).
    Whole,
    /// These bytes (206).
    Range(Range<u64>),
    /// Nothing: the range starts past the end (416).
    Unsatisfiable,
}

#[derive(Debug, Default, Deserialize)]
struct Options {
    #[serde(default)]
    download: String,
}

/// The header values every answer of this endpoint carries.
fn base_headers(headers: &mut HeaderMap, which: &Which, download: bool) {
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if download {
        // The CallSid is `CA` + 32 hex and the id a UUID: nothing to escape.
        let name = match which.id {
            None => format!("recording-{}.wav", which.sid.as_str()),
            Some(id) => format!("recording-{}-{id}.wav", which.sid.as_str()),
        };
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
    }
}

/// Which recording: of this call, the one with this id (`None`: the call's first).
struct Which {
    sid: CallSid,
    id: Option<uuid::Uuid>,
}

/// The first message of a ReadRecording stream, and the stream.
async fn open(
    portal: &Portal,
    session: &Session,
    which: &Which,
    offset: u64,
    length: Option<u64>,
) -> Result<
    (
        ReadRecordingResponse,
        tonic::Streaming<ReadRecordingResponse>,
    ),
    tonic::Status,
> {
    let mut stream = portal
        .media()
        .read_recording(session.grpc(ReadRecordingRequest {
            call_sid: which.sid.as_str().to_owned(),
            offset,
            length,
            recording_id: which.id.map(|id| id.to_string()).unwrap_or_default(),
        }))
        .await?
        .into_inner();
    let first = stream
        .message()
        .await?
        .ok_or_else(|| tonic::Status::internal("ReadRecording ended without a message"))?;
    Ok((first, stream))
}

/// `GET`/`HEAD /portal/calls/{CallSid}/recording`: the call's first recording.
async fn first(
    State(portal): State<Arc<Portal>>,
    session: Session,
    method: Method,
    Path(call_sid): Path<String>,
    Query(options): Query<Options>,
    request_headers: HeaderMap,
) -> Result<Response, PageError> {
    // A malformed id is as unknown as another tenant's.
    let sid = CallSid::parse(&call_sid).map_err(|_| PageError::NotFound)?;
    let which = Which { sid, id: None };
    serve(&portal, &session, method, which, options, &request_headers).await
}

/// `GET`/`HEAD /portal/calls/{CallSid}/recordings/{id}`: one recording of the call, by id.
async fn by_id(
    State(portal): State<Arc<Portal>>,
    session: Session,
    method: Method,
    Path((call_sid, recording_id)): Path<(String, String)>,
    Query(options): Query<Options>,
    request_headers: HeaderMap,
) -> Result<Response, PageError> {
    // Malformed ids are as unknown as another tenant's.
    let sid = CallSid::parse(&call_sid).map_err(|_| PageError::NotFound)?;
    let id = uuid::Uuid::parse_str(&recording_id).map_err(|_| PageError::NotFound)?;
    let which = Which { sid, id: Some(id) };
    serve(&portal, &session, method, which, options, &request_headers).await
}

async fn serve(
    portal: &Portal,
    session: &Session,
    method: Method,
    which: Which,
    options: Options,
    request_headers: &HeaderMap,
) -> Result<Response, PageError> {
    let download = !options.download.is_empty() && options.download != "0";
    if download && !session.is_owner() {
        tracing::info!(
            customer_id = session.customer_id(),
            user_id = session.user_id(),
            "staff user refused a recording download"
        );
        return Err(PageError::Forbidden);
    }
    let ask = Ask::of(request_headers);
    // The size first when the range depends on it or nothing but the size is wanted.
    let total = if ask != Ask::Whole || method == Method::HEAD {
        let (first, _) = open(portal, session, &which, 0, Some(0)).await?;
        Some(first.total_bytes)
    } else {
        None
    };
    let range = match total.map(|t| ask.resolve(t)) {
        Some(Part::Unsatisfiable) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            base_headers(response.headers_mut(), &which, download);
            let total = total.unwrap_or_default();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
        Some(Part::Range(range)) => Some(range),
        Some(Part::Whole) | None => None,
    };
    let (offset, length) = range
        .as_ref()
        .map_or((0, None), |r| (r.start, Some(r.end - r.start)));
    let (first, rest, total) = if method == Method::HEAD {
        (None, None, total.unwrap_or_default())
    } else {
        let (first, rest) = open(portal, session, &which, offset, length).await?;
        let total = first.total_bytes;
        (Some(first), Some(rest), total)
    };
    let sent = range.clone().unwrap_or(0..total);
    let mut response = match (first, rest) {
        (Some(first), Some(rest)) => {
            let body = futures::stream::once(async move { Ok(first) })
                .chain(rest)
                .map(|m| m.map(|m| m.data));
            Response::new(Body::from_stream(body))
        }
        _ => Response::new(Body::empty()),
    };
    let headers = response.headers_mut();
    base_headers(headers, &which, download);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(sent.end - sent.start),
    );
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let value = format!(
            "bytes {}-{}/{total}",
            sent.start,
            sent.end.saturating_sub(1)
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    tracing::debug!(
        customer_id = session.customer_id(),
        bytes = sent.end - sent.start,
        "recording served"
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(v: &str) -> Ask {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        Ask::of(&h)
    }

    #[test]
    fn one_byte_range_is_read_and_anything_else_is_the_whole_file() {
        assert_eq!(
            ask("bytes=0-"),
            Ask::From {
                first: 0,
                last: None
            }
        );
        assert_eq!(
            ask("bytes=10-19"),
            Ask::From {
                first: 10,
                last: Some(19)
            }
        );
        assert_eq!(ask("bytes=-500"), Ask::Suffix(500));
        for whole in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-2",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes",
        ] {
            assert_eq!(ask(whole), Ask::Whole, "{whole}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        h.insert(header::IF_RANGE, HeaderValue::from_static("\"x\""));
        assert_eq!(Ask::of(&h), Ask::Whole);
        assert_eq!(Ask::of(&HeaderMap::new()), Ask::Whole);
    }

    #[test]
    fn ranges_are_cut_to_the_file_and_past_the_end_is_unsatisfiable() {
        let from = |first, last| Ask::From { first, last };
        assert_eq!(Ask::Whole.resolve(100), Part::Whole);
        assert_eq!(from(0, None).resolve(100), Part::Range(0..100));
        assert_eq!(from(10, Some(19)).resolve(100), Part::Range(10..20));
        assert_eq!(from(90, Some(500)).resolve(100), Part::Range(90..100));
        assert_eq!(from(99, Some(u64::MAX)).resolve(100), Part::Range(99..100));
        assert_eq!(from(100, None).resolve(100), Part::Unsatisfiable);
        assert_eq!(Ask::Suffix(10).resolve(100), Part::Range(90..100));
        assert_eq!(Ask::Suffix(1000).resolve(100), Part::Range(0..100));
        assert_eq!(Ask::Suffix(0).resolve(100), Part::Unsatisfiable);
        assert_eq!(from(0, None).resolve(0), Part::Unsatisfiable);
    }
}
