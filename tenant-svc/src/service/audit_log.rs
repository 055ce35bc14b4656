//! `TeamService.ListAuditEvents` (scope `tenant:audit`): the tenant's one audit log, merged from
//! three sources, newest first, paged with an opaque cursor.
//!
//! Sources: tenant-svc's own `tenant.audit_log` (sign-ins, team, key and setting changes) and the
//! export and erasure rows of memory-svc and media-svc, read with their `ListAuditEntries` and a
//! tenant token of this customer that tenant-svc mints for itself (`memory:audit` /
//! `media:audit`, one minute). A source that cannot be read fails the whole request
//! (UNAVAILABLE naming it): a partial log is never presented as whole.
//!
//! Order: time descending; at the same time tenant-svc, then memory-svc, then media-svc; within
//! one source by id, descending (each source's own order). The cursor is the last event listed
//! (time, source, id). Each source is asked for the rows after the cursor in that order:
//! - the cursor's own source: its rows strictly below (time, id);
//! - a source ranked before it: rows strictly older than the time;
//! - a source ranked after it: rows at the time or older.
//!
//! memory-svc and media-svc take the cursor as (time, UUID): "strictly older" is asked with the
//! nil UUID (no id sorts below it), "at or older" with the max UUID. Each source is asked for one
//! more row than the page holds (at most 200), so the page knows whether another follows.

use std::cmp::Ordering;
use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use mesh::api::tenant::{AuditEvent, ListAuditEventsRequest, ListAuditEventsResponse};
use mesh::audit::{AuditPage, MAX_PAGE_SIZE};
use mesh::auth::TenantCaller;
use mesh::domain::CustomerId;
use mesh::identity::names;
use serde_json::Value as Json;
use uuid::Uuid;

use super::TenantSvc;
use crate::error::{Result, TenantError};
use crate::peers::PeerError;
use crate::store::audit_log::{self, AuditRow};
use crate::wire;

/// The sources, in their rank at equal times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Tenant = 0,
    Memory = 1,
    Media = 2,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Tenant => names::TENANT_SVC,
            Source::Memory => names::MEMORY_SVC,
            Source::Media => names::MEDIA_SVC,
        }
    }

    fn from_rank(n: u8) -> Option<Source> {
        match n {
            0 => Some(Source::Tenant),
            1 => Some(Source::Memory),
            2 => Some(Source::Media),
            _ => None,
        }
    }
}

/// An event's id within its source: tenant-svc's are numbers, the others' UUIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EventId {
    Number(i64),
    Uuid(Uuid),
}

impl EventId {
    fn to_text(self) -> String {
        match self {
            EventId::Number(n) => n.to_string(),
            EventId::Uuid(u) => u.to_string(),
        }
    }
}

/// Where a page starts: after the event at (time, source, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    time: DateTime<Utc>,
    source: Source,
    id: EventId,
}

impl Cursor {
    fn token(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "a1|{}|{}|{}",
            self.time.timestamp_micros(),
            self.source as u8,
            self.id.to_text()
        ))
    }

    fn parse(token: &str) -> Result<Option<Cursor>> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = || TenantError::invalid("page_token", "is not a token from a previous page");
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        let mut parts = text.split('|');
        if parts.next() != Some("a1") {
            return Err(bad());
        }
        let time = parts
            .next()
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(bad)?;
        let source = parts
            .next()
            .and_then(|s| s.parse::<u8>().ok())
            .and_then(Source::from_rank)
            .ok_or_else(bad)?;
        let id = parts.next().ok_or_else(bad)?;
        let id = match source {
            Source::Tenant => EventId::Number(id.parse().map_err(|_| bad())?),
            _ => EventId::Uuid(Uuid::parse_str(id).map_err(|_| bad())?),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Some(Cursor { time, source, id }))
    }

    /// tenant-svc's rows after the cursor: (time, id) strictly below.
    fn tenant_before(&self) -> (DateTime<Utc>, i64) {
        match (self.source, self.id) {
            (Source::Tenant, EventId::Number(id)) => (self.time, id),
            // Ranked before every other source: strictly older (ids are positive).
            _ => (self.time, 0),
        }
    }

    /// A peer's rows after the cursor, as (time, UUID) strictly below.
    fn peer_before(&self, source: Source) -> (DateTime<Utc>, Uuid) {
        match source.cmp(&self.source) {
            Ordering::Equal => match self.id {
                EventId::Uuid(id) => (self.time, id),
                EventId::Number(_) => (self.time, Uuid::nil()),
            },
            Ordering::Less => (self.time, Uuid::nil()),
            Ordering::Greater => (self.time, Uuid::max()),
        }
    }
}

/// One event with its sort key.
struct Merged {
    time: DateTime<Utc>,
    source: Source,
    id: EventId,
    /// The actor's user id when the actor is `user:<id>`.
    user: Option<i64>,
    event: AuditEvent,
}

impl Merged {
    /// The log's order: newest first, then source rank, then id descending.
    fn order(&self, other: &Merged) -> Ordering {
        other
            .time
            .cmp(&self.time)
            .then(self.source.cmp(&other.source))
            .then(other.id.cmp(&self.id))
    }

    fn cursor(&self) -> Cursor {
        Cursor {
            time: self.time,
            source: self.source,
            id: self.id,
        }
    }
}

/// `user:<id>` as the id.
fn user_id(actor: &str) -> Option<i64> {
    actor.strip_prefix("user:")?.parse().ok()
}

/// A JSON detail value as text (strings as they are).
fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// memory-svc's and media-svc's action column as the log's dotted name.
fn peer_action(action: &str) -> String {
    match action {
        "export_caller" => "caller.exported".into(),
        "erase_caller" => "caller.erased".into(),
        "erase_tenant" => "tenant.erased".into(),
        other => format!(
            "caller.{}",
            other.replace(|c: char| !c.is_ascii_lowercase(), "_")
        ),
    }
}

fn time_of(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

fn from_tenant(row: AuditRow) -> Merged {
    let details = match &row.detail {
        Json::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        _ => HashMap::new(),
    };
    Merged {
        time: row.at,
        source: Source::Tenant,
        id: EventId::Number(row.id),
        user: user_id(&row.actor),
        event: AuditEvent {
            service: names::TENANT_SVC.into(),
            id: row.id.to_string(),
            create_time: Some(wire::timestamp(row.at)),
            actor: row.actor,
            actor_email: String::new(),
            action: row.action,
            details,
        },
    }
}

/// A peer's row (id, action, subject hash, actor, counts, time) as an event; `None` when the
/// peer sent an id or time that cannot be ordered (never expected: logged by the caller).
fn from_peer(
    source: Source,
    id: &str,
    action: &str,
    subject_hash: &str,
    actor: &str,
    counts: &[mesh::api::common::TableCount],
    time: Option<&prost_types::Timestamp>,
) -> Option<Merged> {
    let uuid = Uuid::parse_str(id).ok()?;
    let at = time_of(time)?;
    let mut details: HashMap<String, String> = counts
        .iter()
        .map(|c| (c.table.clone(), c.rows.to_string()))
        .collect();
    if !subject_hash.is_empty() {
        details.insert("subject_hash".into(), subject_hash.to_owned());
    }
    Some(Merged {
        time: at,
        source,
        id: EventId::Uuid(uuid),
        user: user_id(actor),
        event: AuditEvent {
            service: source.name().into(),
            id: uuid.to_string(),
            create_time: time.cloned(),
            actor: actor.to_owned(),
            actor_email: String::new(),
            action: peer_action(action),
            details,
        },
    })
}

/// A peer that could not be read, as the one answer: UNAVAILABLE naming it.
fn unavailable(id: CustomerId, source: Source, e: PeerError) -> TenantError {
    tracing::warn!(customer_id = id.get(), peer = source.name(), error = %e, "cannot read a peer's audit rows");
    TenantError::Unavailable(format!(
        "{} cannot be reached; the audit log is not shown incomplete, try again",
        source.name()
    ))
}

/// The three sources' rows (each at most `fetch`, newest first) as one page of `limit` events
/// in the log's order, and the token of the next page ("" when none follows).
fn merge(
    own: Vec<AuditRow>,
    memory: &[mesh::api::memory::AuditEntry],
    media: &[mesh::api::media::ErasureAudit],
    limit: i64,
    fetch: i64,
) -> (Vec<Merged>, String) {
    let full = [own.len(), memory.len(), media.len()]
        .iter()
        .any(|n| *n as i64 >= fetch);
    let mut events: Vec<Merged> = own.into_iter().map(from_tenant).collect();
    events.extend(memory.iter().filter_map(|e| {
        from_peer(
            Source::Memory,
            &e.id,
            &e.action,
            &e.subject_hash,
            &e.actor,
            &e.counts,
            e.create_time.as_ref(),
        )
    }));
    events.extend(media.iter().filter_map(|e| {
        from_peer(
            Source::Media,
            &e.id,
            &e.action,
            &e.subject_hash,
            &e.actor,
            &e.counts,
            e.create_time.as_ref(),
        )
    }));
    events.sort_by(Merged::order);
    let more = events.len() as i64 > limit || full;
    events.truncate(limit as usize);
    let next_page_token = match events.last() {
        Some(last) if more => last.cursor().token(),
        _ => String::new(),
    };
    (events, next_page_token)
}

impl TenantSvc {
    /// `TeamService.ListAuditEvents`.
    pub(super) async fn list_audit_events(
        &self,
        caller: &TenantCaller,
        r: ListAuditEventsRequest,
    ) -> Result<ListAuditEventsResponse> {
        let id = caller.customer_id;
        let limit = AuditPage::from_request(r.page_size, None, "")
            .map_err(|e| TenantError::invalid(e.field, e.message))?
            .limit;
        let cursor = Cursor::parse(&r.page_token)?;
        let fetch = (limit + 1).min(MAX_PAGE_SIZE);
        let page = |source: Source| AuditPage {
            limit: fetch,
            before: cursor.map(|c| c.peer_before(source)),
        };
        let (memory_page, media_page) = (page(Source::Memory), page(Source::Media));
        let db = &self.deps.core.db;
        let own = db.tenant_tx(id, async |tx| {
            audit_log::list_audit_log(tx, id, cursor.map(|c| c.tenant_before()), fetch).await
        });
        let memory = async {
            self.deps
                .peers
                .memory_audit(id, &memory_page)
                .await
                .map_err(|e| unavailable(id, Source::Memory, e))
        };
        let media = async {
            self.deps
                .peers
                .media_audit(id, &media_page)
                .await
                .map_err(|e| unavailable(id, Source::Media, e))
        };
        let (own, memory, media) = tokio::try_join!(own, memory, media)?;
        let (events, next_page_token) = merge(own, &memory, &media, limit, fetch);
        let mut users: Vec<i64> = events.iter().filter_map(|e| e.user).collect();
        users.sort_unstable();
        users.dedup();
        let emails: HashMap<i64, String> = if users.is_empty() {
            HashMap::new()
        } else {
            db.tenant_tx(id, async |tx| audit_log::user_emails(tx, id, &users).await)
                .await?
                .into_iter()
                .collect()
        };
        let events = events
            .into_iter()
            .map(|m| {
                let mut event = m.event;
                if let Some(email) = m.user.and_then(|u| emails.get(&u)) {
                    event.actor_email = email.clone();
                }
                event
            })
            .collect();
        Ok(ListAuditEventsResponse {
            events,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_invalid_argument() {
        let time = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        for c in [
            Cursor {
                time,
                source: Source::Tenant,
                id: EventId::Number(42),
            },
            Cursor {
                time,
                source: Source::Media,
                id: EventId::Uuid(Uuid::new_v4()),
            },
        ] {
            assert_eq!(Cursor::parse(&c.token()).unwrap(), Some(c));
        }
        assert_eq!(Cursor::parse("").unwrap(), None);
        for bad in ["x", "YTF8MXwx", "a1|1|9|1"] {
            let e = Cursor::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("page_token: "), "{e}");
        }
    }

    #[test]
    fn each_source_is_asked_for_what_follows_the_cursor() {
        let time = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let id = Uuid::new_v4();
        let at_memory = Cursor {
            time,
            source: Source::Memory,
            id: EventId::Uuid(id),
        };
        assert_eq!(at_memory.tenant_before(), (time, 0));
        assert_eq!(at_memory.peer_before(Source::Memory), (time, id));
        assert_eq!(at_memory.peer_before(Source::Media), (time, Uuid::max()));
        let at_tenant = Cursor {
            time,
            source: Source::Tenant,
            id: EventId::Number(7),
        };
        assert_eq!(at_tenant.tenant_before(), (time, 7));
        assert_eq!(at_tenant.peer_before(Source::Memory), (time, Uuid::max()));
        let at_media = Cursor {
            time,
            source: Source::Media,
            id: EventId::Uuid(id),
        };
        assert_eq!(at_media.peer_before(Source::Memory), (time, Uuid::nil()));
    }
}
