//! `/portal/calls` and `/portal/calls/{CallSid}`. The list filters by day range (in the tenant's
//! time zone), caller, status and direction, newest first, a page at a time (media-svc
//! `ListCalls`). The caller filter never puts a number in the URL: it is the caller's opaque id
//! (resolved by memory-svc `GetCaller`), and the search box takes a name or at most the last
//! four digits (memory-svc `ListCallers`). The call page shows duration, status, outcome,
//! transfer, the summary (memory-svc `GetCallSummary`), the transcript turn by turn and, when the
//! call was recorded, a player per recording (`<audio>` on [`super::recording`]'s endpoint,
//! labelled Call or Message: a call that switched to taking a message has both) with a "play
//! from here" link on each turn, seeking the Call recording (a media fragment `#t=<seconds>`; `static/player.js` makes it seek the
//! page's player instead of opening the file) and, for owners, a download link.
//! Another tenant's CallSid or caller id is the same 404 as an unknown one.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use chrono::NaiveDate;
use chrono_tz::Tz;
use mesh::api::common::Speaker;
use mesh::api::media::{Call, GetCallRequest, ListCallsRequest, Recording, RecordingState};
use mesh::api::memory::{GetCallSummaryRequest, GetCallerRequest, ListCallersRequest};
use mesh::domain::CallSid;
use serde::Deserialize;

use super::data;
use crate::{Layout, NavItem, PageError, Portal, Session, render};

/// Calls per page.
const PAGE: i32 = 25;

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/calls", get(list))
        .route("/portal/calls/{call_sid}", get(call))
}

/// One call as a table row shows it.
pub struct CallRow {
    /// CallSid (the link).
    pub sid: String,
    /// When, local.
    pub when: String,
    /// The caller, masked.
    pub caller: String,
    /// Direction.
    pub direction: &'static str,
    /// Status.
    pub status: &'static str,
    /// Duration.
    pub duration: String,
    /// Outcome.
    pub outcome: String,
    /// Whether it has a recording (the list says so in words).
    pub recorded: bool,
    /// Whether the caller left a message (a callback task).
    pub message: bool,
}

impl CallRow {
    /// The row of `call`, times in `tz`.
    pub fn new(call: &Call, tz: Tz) -> CallRow {
        CallRow {
            sid: call.call_sid.clone(),
            when: data::local(call.create_time.as_ref(), tz),
            caller: data::masked(&call.caller),
            direction: data::direction_label(call.direction),
            status: data::status_label(call.status),
            duration: data::duration(call.duration_seconds),
            outcome: data::outcome_label(&call.end_reason),
            recorded: call.recording.is_some() || !call.recordings.is_empty(),
            message: call.has_message,
        }
    }
}

/// The filters, as the form sends them (all optional).
#[derive(Debug, Default, Deserialize)]
struct Filters {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// A caller's opaque id.
    #[serde(default)]
    caller: String,
    /// A caller search (name or last digits).
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    direction: String,
    /// Page token of the next page.
    #[serde(default)]
    page: String,
}

/// A caller the search found, as a link that filters by it.
struct Match {
    id: String,
    name: String,
    number: String,
}

#[derive(Template)]
#[template(path = "calls.html")]
struct CallsPage {
    layout: Layout,
    time_zone: String,
    from: String,
    to: String,
    q: String,
    status: String,
    direction: String,
    statuses: [(&'static str, &'static str); 7],
    directions: [(&'static str, &'static str); 3],
    /// The caller filtered by: (opaque id, masked number and name).
    caller: Option<(String, String)>,
    matches: Vec<Match>,
    calls: Vec<CallRow>,
    /// The next page's URL.
    next: Option<String>,
}

fn day(field: &str, value: &str) -> Result<Option<NaiveDate>, PageError> {
    if value.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| PageError::BadRequest(format!("{field}: a date as YYYY-MM-DD")))
}

/// `url` with the query `pairs` whose values are not empty.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(_, v)| !v.is_empty()))
        .finish();
    if query.is_empty() {
        url.to_owned()
    } else {
        format!("{url}?{query}")
    }
}

/// The caller filtered by: by opaque id, or the one caller a search finds; when a search finds
/// several (or none), they are offered as links instead. Answers (opaque id, label, number,
/// matches).
async fn resolve_caller(
    portal: &Portal,
    session: &Session,
    id: &str,
    q: &str,
) -> Result<(String, Option<(String, String)>, String, Vec<Match>), PageError> {
    let mut matches = Vec::new();
    let mut caller_id = id.trim().to_owned();
    if caller_id.is_empty() && !q.is_empty() {
        let found = portal
            .memory()
            .list_callers(session.grpc(ListCallersRequest {
                page_size: 20,
                query: q.to_owned(),
                ..Default::default()
            }))
            .await?
            .into_inner()
            .callers;
        if let [only] = found.as_slice() {
            caller_id = only.caller_id.clone();
        } else {
            matches = found
                .into_iter()
                .map(|c| Match {
                    id: c.caller_id,
                    name: c.preferred_name,
                    number: c.masked_number,
                })
                .collect();
        }
    }
    if caller_id.is_empty() {
        return Ok((caller_id, None, String::new(), matches));
    }
    uuid::Uuid::parse_str(&caller_id).map_err(|_| PageError::NotFound)?;
    let got = portal
        .memory()
        .get_caller(session.grpc(GetCallerRequest {
            caller_id: caller_id.clone(),
        }))
        .await?
        .into_inner();
    let profile = got.profile.unwrap_or_default();
    let label = if profile.preferred_name.is_empty() {
        got.masked_number
    } else {
        format!("{} ({})", profile.preferred_name, got.masked_number)
    };
    Ok((
        caller_id.clone(),
        Some((caller_id, label)),
        profile.user_id,
        matches,
    ))
}

async fn list(
    State(portal): State<Arc<Portal>>,
    session: Session,
    Query(f): Query<Filters>,
) -> Result<Response, PageError> {
    let tz = data::time_zone(&portal, &session).await?;
    let from = day("from", &f.from)?;
    let to = day("to", &f.to)?;
    let q = data::caller_search(&f.q)?;
    let status = match f.status.as_str() {
        "" => None,
        s => Some(data::status_of(s).ok_or_else(|| PageError::BadRequest("status".into()))?),
    };
    let direction = match f.direction.as_str() {
        "" => None,
        d => Some(data::direction_of(d).ok_or_else(|| PageError::BadRequest("direction".into()))?),
    };
    let (caller_id, caller, number, matches) =
        resolve_caller(&portal, &session, &f.caller, &q).await?;
    let searching = !q.is_empty() && caller.is_none();
    let (calls, next_token) = if searching {
        // Several callers (or none) match the search: pick one first.
        (Vec::new(), String::new())
    } else {
        let page = portal
            .media()
            .list_calls(session.grpc(ListCallsRequest {
                page_size: PAGE,
                page_token: f.page.clone(),
                start_time: from.map(|d| data::midnight(d, tz)),
                end_time: to.and_then(|d| d.succ_opt()).map(|d| data::midnight(d, tz)),
                caller: number,
                status: status.map_or(0, |s| s as i32),
                direction: direction.map_or(0, |d| d as i32),
            }))
            .await?
            .into_inner();
        (page.calls, page.next_page_token)
    };
    let next = (!next_token.is_empty()).then(|| {
        with_query(
            "/portal/calls",
            &[
                ("from", &f.from),
                ("to", &f.to),
                ("caller", &caller_id),
                ("status", &f.status),
                ("direction", &f.direction),
                ("page", &next_token),
            ],
        )
    });
    Ok(render(&CallsPage {
        layout: session.layout("Calls", NavItem::Calls),
        time_zone: tz.name().to_owned(),
        from: f.from,
        to: f.to,
        q,
        status: f.status,
        direction: f.direction,
        statuses: data::STATUSES,
        directions: data::DIRECTIONS,
        caller,
        matches,
        calls: calls.iter().map(|c| CallRow::new(c, tz)).collect(),
        next,
    }))
}

/// One transcript turn as the call page shows it.
struct Turn {
    at: String,
    /// Where it is in the recording, in seconds (`12.345`), where "play from here" starts;
    /// `None` when it was said before the recording began (e.g. during the announcement).
    seconds: Option<String>,
    speaker: &'static str,
    class: &'static str,
    text: String,
}

/// The call's summary, when memory-svc has recorded it.
struct Summary {
    text: String,
    topics: String,
    sentiment: String,
    resolution: String,
}

#[derive(Template)]
#[template(path = "call.html")]
struct CallPage {
    layout: Layout,
    row: CallRow,
    answered: String,
    ended: String,
    transferred: bool,
    caller_id: String,
    summary: Option<Summary>,
    turns: Vec<Turn>,
    /// The players, the call's first recording first.
    players: Vec<Player>,
    /// The conversation's player (the one "Play from" seeks), when the call has one.
    recording: Option<Player>,
}

/// One of the call page's players.
#[derive(Clone)]
struct Player {
    /// The element's id: `recording` for the conversation (what "Play from" seeks),
    /// `recording-<n>` for the others.
    id: String,
    /// "Call" or "Message".
    label: &'static str,
    /// The recording's address (the portal's endpoint: it needs the session).
    src: String,
    /// Its length.
    duration: String,
    /// Complete (playable) rather than still being recorded.
    ready: bool,
    /// Owners: the download address.
    download: Option<String>,
}

/// A transcript turn's place in the recording, in seconds with milliseconds (`12.345`): the
/// turn's media time less where the recording began (`Call.recording_offset_ms`, the same time
/// base); `None` before it began.
fn recording_time(turn_ms: u32, recording_offset_ms: i64) -> Option<String> {
    let at = i64::from(turn_ms).checked_sub(recording_offset_ms.max(0))?;
    (at >= 0).then(|| format!("{}.{:03}", at / 1000, at % 1000))
}

async fn call(
    State(portal): State<Arc<Portal>>,
    session: Session,
    Path(call_sid): Path<String>,
) -> Result<Response, PageError> {
    // A malformed id is as unknown as another tenant's.
    let sid = CallSid::parse(&call_sid).map_err(|_| PageError::NotFound)?;
    let tz = data::time_zone(&portal, &session).await?;
    let got = portal
        .media()
        .get_call(session.grpc(GetCallRequest {
            call_sid: sid.as_str().to_owned(),
        }))
        .await?
        .into_inner();
    let call = got.call.ok_or(PageError::NotFound)?;
    let summary = match portal
        .memory()
        .get_call_summary(session.grpc(GetCallSummaryRequest {
            call_sid: sid.as_str().to_owned(),
        }))
        .await
    {
        Ok(r) => Some(r.into_inner()),
        Err(s) if s.code() == tonic::Code::NotFound => None,
        Err(s) => return Err(s.into()),
    };
    let caller_id = summary
        .as_ref()
        .map(|s| s.caller_id.clone())
        .unwrap_or_default();
    let summary = summary.and_then(|s| s.summary).map(|s| Summary {
        text: s.summary,
        topics: s.key_topics.join(", "),
        sentiment: s.sentiment,
        resolution: s.resolution_status.replace('_', " "),
    });
    let transferred = call.end_reason == "transfer"
        || summary
            .as_ref()
            .is_some_and(|s| s.resolution == "transferred");
    let turns = got
        .turns
        .iter()
        .map(|t| {
            let (speaker, class) = match Speaker::try_from(t.speaker) {
                Ok(Speaker::Caller) => ("Caller", "caller"),
                Ok(Speaker::Agent) => ("Agent", "agent"),
                _ => ("System", "system"),
            };
            Turn {
                at: data::offset(t.offset_ms),
                seconds: recording_time(t.offset_ms, call.recording_offset_ms),
                speaker,
                class,
                text: t.text.clone(),
            }
        })
        .collect();
    let players = players(&call, sid.as_str(), session.is_owner());
    let recording = players.iter().find(|p| p.id == "recording").cloned();
    Ok(render(&CallPage {
        layout: session.layout("Call", NavItem::Calls),
        answered: data::local(call.answer_time.as_ref(), tz),
        ended: data::local(call.end_time.as_ref(), tz),
        row: CallRow::new(&call, tz),
        transferred,
        caller_id,
        summary,
        turns,
        players,
        recording,
    }))
}

/// A player per recording of `call`, the first one first. The first keeps the address
/// `/portal/calls/{CallSid}/recording`; the others are read by id. The conversation (kind
/// "call") is the player "Play from" seeks (id `recording`).
fn players(call: &Call, sid: &str, owner: bool) -> Vec<Player> {
    let recordings: Vec<&Recording> = if call.recordings.is_empty() {
        call.recording.iter().collect()
    } else {
        call.recordings.iter().collect()
    };
    let mut conversation = false;
    recordings
        .into_iter()
        .enumerate()
        .map(|(n, r)| {
            let message = r.kind == "message";
            let src = if n == 0 {
                format!("/portal/calls/{sid}/recording")
            } else {
                super::recording::address(sid, &r.recording_id)
            };
            let id = if !message && !conversation {
                conversation = true;
                "recording".to_owned()
            } else {
                format!("recording-{n}")
            };
            Player {
                id,
                label: if message { "Message" } else { "Call" },
                download: owner.then(|| format!("{src}?download=1")),
                src,
                duration: data::offset(u32::try_from(r.duration_ms).unwrap_or(u32::MAX)),
                ready: r.state != RecordingState::Recording as i32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Call, Recording, RecordingState, players, recording_time};

    fn rec(id: &str, kind: &str) -> Recording {
        Recording {
            recording_id: id.into(),
            duration_ms: 2_000,
            state: RecordingState::Stored as i32,
            kind: kind.into(),
        }
    }

    #[test]
    fn each_recording_has_a_player_and_play_from_seeks_the_call_one() {
        let sid = "CA0123";
        let call = Call {
            recordings: vec![rec("r1", "call"), rec("r2", "message")],
            ..Default::default()
        };
        let got: Vec<(String, &str, String)> = players(&call, sid, false)
            .into_iter()
            .map(|p| (p.id, p.label, p.src))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "recording".into(),
                    "Call",
                    "/portal/calls/CA0123/recording".into()
                ),
                (
                    "recording-1".into(),
                    "Message",
                    "/portal/calls/CA0123/recordings/r2".into()
                ),
            ]
        );
        // Only a message (the call went to the message flow at once): no player to seek.
        let only = Call {
            recordings: vec![rec("r9", "message")],
            ..Default::default()
        };
        let p = players(&only, sid, true);
        assert_eq!((p[0].id.as_str(), p[0].label), ("recording-0", "Message"));
        assert_eq!(
            p[0].download.as_deref(),
            Some("/portal/calls/CA0123/recording?download=1")
        );
        // An older answer with only `recording`: one Call player.
        let old = Call {
            recording: Some(rec("r1", "")),
            ..Default::default()
        };
        let p = players(&old, sid, false);
        assert_eq!(
            (p.len(), p[0].id.as_str(), p[0].label),
            (1, "recording", "Call")
        );
        assert!(players(&Call::default(), sid, true).is_empty());
    }

    #[test]
    fn a_turn_plays_at_its_time_less_where_the_recording_began() {
        assert_eq!(recording_time(12_345, 0).as_deref(), Some("12.345"));
        assert_eq!(recording_time(12_345, 4_000).as_deref(), Some("8.345"));
        assert_eq!(recording_time(4_000, 4_000).as_deref(), Some("0.000"));
        assert_eq!(recording_time(3_999, 4_000), None);
        assert_eq!(recording_time(7, -5).as_deref(), Some("0.007"));
    }
}
