//! Paging through a tenant's audit rows, shared by the services that keep them (memory-svc and
//! media-svc list theirs with `ListAuditEntries`) and by tenant-svc, which merges them with its
//! own into the tenant's one audit log.
//!
//! Every audit log is read newest first in the order (created_at, id), both descending. A page
//! starts below a cursor (time, id): the rows strictly older in that order. tenant-svc merges
//! three logs whose ids are of different kinds; it asks each service with an id that sorts
//! below or above every real one ([`Uuid::nil`] / [`Uuid::max`]) to get "strictly before this
//! time" or "at or before this time".

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Page size when a request asks for 0.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Largest page.
pub const MAX_PAGE_SIZE: i64 = 200;

/// A request field that is out of range: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    /// The field's name in the request.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl InvalidField {
    fn new(field: &'static str, message: impl Into<String>) -> InvalidField {
        InvalidField {
            field,
            message: message.into(),
        }
    }
}

/// One page of an audit log: how many rows, below which cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPage {
    /// Rows to return, 1 to [`MAX_PAGE_SIZE`].
    pub limit: i64,
    /// Only rows strictly older than this (created_at, id); `None` for the newest.
    pub before: Option<(DateTime<Utc>, Uuid)>,
}

impl AuditPage {
    /// The page a `ListAuditEntries` request asks for: `page_size` (0 for the default),
    /// `before_time` and `before_id` (both or neither).
    pub fn from_request(
        page_size: i32,
        before_time: Option<&prost_types::Timestamp>,
        before_id: &str,
    ) -> Result<AuditPage, InvalidField> {
        let limit = match i64::from(page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(InvalidField::new(
                    "page_size",
                    format!("must be from 0 to {MAX_PAGE_SIZE}"),
                ));
            }
        };
        let before = match (before_time, before_id.is_empty()) {
            (None, true) => None,
            (None, false) => {
                return Err(InvalidField::new(
                    "before_time",
                    "is required with before_id",
                ));
            }
            (Some(_), true) => {
                return Err(InvalidField::new(
                    "before_id",
                    "is required with before_time",
                ));
            }
            (Some(t), false) => {
                let time = u32::try_from(t.nanos)
                    .ok()
                    .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
                    .ok_or_else(|| InvalidField::new("before_time", "is not a valid time"))?;
                let id = Uuid::parse_str(before_id)
                    .map_err(|_| InvalidField::new("before_id", "must be a UUID"))?;
                Some((time, id))
            }
        };
        Ok(AuditPage { limit, before })
    }

    /// The cursor as the request fields `before_time` and `before_id`.
    pub fn to_request(&self) -> (Option<prost_types::Timestamp>, String) {
        match self.before {
            None => (None, String::new()),
            Some((t, id)) => (Some(crate::api::timestamp(t)), id.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }

    #[test]
    fn page_size_defaults_and_is_bounded() {
        assert_eq!(AuditPage::from_request(0, None, "").unwrap().limit, 50);
        assert_eq!(AuditPage::from_request(200, None, "").unwrap().limit, 200);
        for bad in [-1, 201] {
            let e = AuditPage::from_request(bad, None, "").unwrap_err();
            assert_eq!(e.field, "page_size");
        }
    }

    #[test]
    fn the_cursor_needs_both_fields_and_round_trips() {
        let id = Uuid::new_v4();
        assert_eq!(
            AuditPage::from_request(1, Some(&ts(1, 0)), "")
                .unwrap_err()
                .field,
            "before_id"
        );
        assert_eq!(
            AuditPage::from_request(1, None, &id.to_string())
                .unwrap_err()
                .field,
            "before_time"
        );
        assert_eq!(
            AuditPage::from_request(1, Some(&ts(1, 0)), "not-a-uuid")
                .unwrap_err()
                .field,
            "before_id"
        );
        assert_eq!(
            AuditPage::from_request(1, Some(&ts(1, -1)), &id.to_string())
                .unwrap_err()
                .field,
            "before_time"
        );
        let page =
            AuditPage::from_request(7, Some(&ts(1_700_000_000, 123_000)), &id.to_string()).unwrap();
        let (t, i) = page.to_request();
        assert_eq!(AuditPage::from_request(7, t.as_ref(), &i).unwrap(), page);
    }
}
