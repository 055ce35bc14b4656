//! Parsing of whole requests into what the store takes, for the handlers whose requests are more
//! than a field or two: every refusal is INVALID_ARGUMENT naming the field, and happens before
//! anything is read or stored. Single fields go through [`crate::wire`].

use base64::Engine as _;
use chrono::{DateTime, Utc};
use mesh::api::common::{Speaker, TranscriptTurn};
use mesh::api::memory::{
    CallerProfile, ListMemoriesRequest, Memory, RecordCallRequest, StoreMemoryRequest,
    UpdateCallerProfileRequest,
};
use mesh::domain::{CallSid, CallerNumber};

use crate::error::{MemoryError, Result};
use crate::store::{Cursor, MemoryQuery, NewMemory, ProfileUpdate};
use crate::summarizer::{CallInput, Turn};
use crate::wire;

/// A StoreMemory request, parsed.
pub fn new_memory(req: &StoreMemoryRequest) -> Result<NewMemory> {
    // Fields in request order, so the first bad one is the one reported.
    Ok(NewMemory {
        user_id: wire::caller("user_id", &req.user_id)?,
        kind: wire::memory_type("type", req.r#type)?,
        key: wire::text("key", &req.key, wire::MAX_KEY_CHARS, true)?,
        value: memory_value(req.value.as_ref())?,
        scope: wire::scope("scope", req.scope)?,
        source: wire::text("source", &req.source, wire::MAX_SOURCE_CHARS, false)?,
        ttl_days: wire::ttl_days("ttl_days", req.ttl_days)?,
    })
}

fn memory_value(value: Option<&prost_types::Value>) -> Result<serde_json::Value> {
    let value = value.ok_or_else(|| MemoryError::invalid("value", "is required"))?;
    let json = wire::value_to_json("value", value, 0)?;
    wire::check_json("value", &json)?;
    Ok(json)
}

/// A ListMemories request, parsed.
pub fn memory_query(req: &ListMemoriesRequest) -> Result<MemoryQuery> {
    let user = wire::caller("user_id", &req.user_id)?;
    let kinds = req
        .types
        .iter()
        .map(|t| wire::memory_type("types", *t))
        .collect::<Result<Vec<_>>>()?;
    let thread_id = wire::text(
        "thread_id",
        &req.thread_id,
        wire::MAX_THREAD_ID_CHARS,
        false,
    )?;
    let page_size = wire::bounded(
        "page_size",
        req.page_size,
        wire::DEFAULT_PAGE_SIZE,
        wire::MAX_PAGE_SIZE,
    )?;
    Ok(MemoryQuery {
        user,
        kinds,
        thread_id,
        after: parse_page_token(&req.page_token)?,
        limit: i64::from(page_size),
    })
}

/// The token of the page after `m`: its keyset position, opaque to clients.
pub fn page_token(m: &Memory) -> Option<String> {
    let t = m.create_time.as_ref()?;
    let micros = t.seconds * 1_000_000 + i64::from(t.nanos / 1000);
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{micros}/{}", m.id)))
}

fn parse_page_token(raw: &str) -> Result<Option<Cursor>> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || MemoryError::invalid("page_token", "is not a token from a previous response");
    if raw.len() > 200 {
        return Err(bad());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (micros, id) = text.split_once('/').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    let at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(Some((at, id)))
}

/// A RecordCall request, parsed.
pub struct CallToRecord {
    /// The call.
    pub call_sid: CallSid,
    /// Caller.
    pub user: CallerNumber,
    /// When it happened (now when the request does not say).
    pub at: DateTime<Utc>,
    /// What the summarizer reads.
    pub input: CallInput,
}

/// A RecordCall request, parsed.
pub fn call_to_record(req: &RecordCallRequest) -> Result<CallToRecord> {
    let call_sid =
        CallSid::parse(&req.call_sid).map_err(|e| MemoryError::invalid("call_sid", e.0))?;
    let user = wire::caller("user_id", &req.user_id)?;
    let at = match &req.call_time {
        Some(t) => wire::from_ts("call_time", t)?,
        None => chrono::Utc::now(),
    };
    if !(0..=wire::MAX_DURATION_SECONDS).contains(&req.duration_seconds) {
        return Err(MemoryError::invalid(
            "duration_seconds",
            format!(
                "must be between 0 and {}, got {}",
                wire::MAX_DURATION_SECONDS,
                req.duration_seconds
            ),
        ));
    }
    let input = CallInput {
        duration_seconds: req.duration_seconds,
        transferred: req.transferred,
        turns: parse_turns(&req.turns)?,
    };
    Ok(CallToRecord {
        call_sid,
        user,
        at,
        input,
    })
}

fn parse_turns(turns: &[TranscriptTurn]) -> Result<Vec<Turn>> {
    if turns.len() > wire::MAX_TURNS {
        return Err(MemoryError::invalid(
            "turns",
            format!("has {} turns, at most {}", turns.len(), wire::MAX_TURNS),
        ));
    }
    turns
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let speaker = Speaker::try_from(t.speaker).map_err(|_| {
                MemoryError::invalid("turns", format!("turn {i}: unknown speaker {}", t.speaker))
            })?;
            let n = t.text.chars().count();
            if n > wire::MAX_TURN_CHARS {
                return Err(MemoryError::invalid(
                    "turns",
                    format!(
                        "turn {i}: text is too long: {n} characters, at most {}",
                        wire::MAX_TURN_CHARS
                    ),
                ));
            }
            if t.text.contains('\0') {
                return Err(MemoryError::invalid(
                    "turns",
                    format!("turn {i}: text must not contain NUL characters"),
                ));
            }
            Ok(Turn {
                speaker,
                text: t.text.clone(),
                offset_ms: t.offset_ms,
            })
        })
        .collect()
}

/// `num_summaries` of GetEnrichedContext: unset means the default, 0 is allowed.
pub fn num_summaries(raw: Option<i32>) -> Result<i64> {
    let num = raw.unwrap_or(wire::DEFAULT_NUM_SUMMARIES);
    if !(0..=wire::MAX_NUM_SUMMARIES).contains(&num) {
        return Err(MemoryError::invalid(
            "num_summaries",
            format!(
                "must be between 0 and {}, got {num}",
                wire::MAX_NUM_SUMMARIES
            ),
        ));
    }
    Ok(i64::from(num))
}

/// An UpdateCallerProfile request, parsed: the fields its mask names (or, without a mask, the
/// updatable fields it carries, as AIP-134 says).
pub fn profile_update(req: &UpdateCallerProfileRequest) -> Result<ProfileUpdate> {
    let empty = CallerProfile::default();
    let profile = req.profile.as_ref().unwrap_or(&empty);
    let paths: Vec<String> = match &req.update_mask {
        Some(mask) if !mask.paths.is_empty() => mask.paths.clone(),
        _ => present_fields(profile),
    };
    if paths.is_empty() {
        return Err(MemoryError::invalid(
            "update_mask",
            "names no field to update (preferred_name, preferences, context)",
        ));
    }
    let mut out = ProfileUpdate::default();
    for path in &paths {
        match path.as_str() {
            "preferred_name" => {
                out.preferred_name = Some(wire::text(
                    "profile.preferred_name",
                    profile.preferred_name.trim(),
                    wire::MAX_NAME_CHARS,
                    false,
                )?);
            }
            "preferences" => {
                out.preferences = Some(json_object("profile.preferences", &profile.preferences)?);
            }
            "context" => {
                out.context = Some(json_object("profile.context", &profile.context)?);
            }
            other => {
                return Err(MemoryError::invalid(
                    "update_mask",
                    format!(
                        "cannot update `{}`: only preferred_name, preferences and context \
                         (counters and call times are maintained by RecordCall)",
                        other.escape_debug()
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// The updatable fields a profile carries.
fn present_fields(profile: &CallerProfile) -> Vec<String> {
    let mut p = Vec::new();
    if !profile.preferred_name.is_empty() {
        p.push("preferred_name".to_owned());
    }
    if profile.preferences.is_some() {
        p.push("preferences".to_owned());
    }
    if profile.context.is_some() {
        p.push("context".to_owned());
    }
    p
}

/// A profile's `Struct` field as a checked JSON object (absent: an empty object).
fn json_object(field: &'static str, s: &Option<prost_types::Struct>) -> Result<serde_json::Value> {
    let map = match s {
        Some(s) => wire::struct_to_map(field, s, 1)?,
        None => serde_json::Map::new(),
    };
    let v = serde_json::Value::Object(map);
    wire::check_json(field, &v)?;
    Ok(v)
}
