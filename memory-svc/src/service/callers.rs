//! The portal's view of a tenant's callers: `ListCallers`, `GetCaller` (by the opaque caller id
//! of V18, never the number) and `GetCallSummary`. The trait methods in `memory.rs` delegate
//! here; parsing refuses bad input with INVALID_ARGUMENT naming the field before any read.

use base64::Engine as _;
use mesh::api::memory::{
    GetCallSummaryRequest, GetCallSummaryResponse, GetCallerRequest, GetCallerResponse,
    ListCallersRequest, ListCallersResponse,
};
use mesh::domain::{CallSid, CustomerId};

use super::MemorySvc;
use crate::error::{MemoryError, Result};
use crate::store::{self, CallerCursor, CallerQuery};
use crate::wire;

/// Largest page of `ListCallers`.
const MAX_CALLERS_PAGE: i32 = 200;
/// Longest `ListCallers.query`.
const MAX_CALLER_QUERY_CHARS: usize = 100;
/// Summaries `GetCaller` returns at most.
const CALLER_SUMMARIES: i64 = 50;

fn encode_cursor((at, id): CallerCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}/{id}", at.timestamp_micros()))
}

fn decode_cursor(raw: &str) -> Result<Option<CallerCursor>> {
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
    let at = chrono::DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?)
        .ok_or_else(bad)?;
    Ok(Some((at, uuid::Uuid::parse_str(id).map_err(|_| bad())?)))
}

/// A ListCallers request, parsed: a query of 2-15 digits searches the end of the number,
/// anything else the preferred name.
fn caller_query(req: &ListCallersRequest) -> Result<CallerQuery> {
    let page_size = wire::bounded(
        "page_size",
        req.page_size,
        wire::DEFAULT_PAGE_SIZE,
        MAX_CALLERS_PAGE,
    )?;
    let text = wire::text("query", &req.query, MAX_CALLER_QUERY_CHARS, false)?;
    let text = text.trim();
    let digits = text.bytes().all(|b| b.is_ascii_digit());
    if digits && !text.is_empty() && !(2..=15).contains(&text.len()) {
        return Err(MemoryError::invalid(
            "query",
            "digits must be 2 to 15 of the number's last digits",
        ));
    }
    Ok(CallerQuery {
        name: (!text.is_empty() && !digits).then(|| text.to_owned()),
        last_digits: (!text.is_empty() && digits).then(|| text.to_owned()),
        after: decode_cursor(&req.page_token)?,
        limit: i64::from(page_size),
    })
}

/// An opaque caller id, parsed.
fn caller_ref(raw: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(raw.trim())
        .map_err(|_| MemoryError::invalid("caller_id", "must be a caller id (UUID)"))
}

impl MemorySvc {
    pub(super) async fn callers_page(
        &self,
        customer: CustomerId,
        req: &ListCallersRequest,
    ) -> Result<ListCallersResponse> {
        let query = caller_query(req)?;
        let mut rows = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::list_callers(tx, customer, &query).await
            })
            .await?;
        let more = rows.len() as i64 > query.limit;
        rows.truncate(query.limit as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some((_, cursor))) => encode_cursor(*cursor),
            _ => String::new(),
        };
        Ok(ListCallersResponse {
            callers: rows.into_iter().map(|(listing, _)| listing).collect(),
            next_page_token,
        })
    }

    pub(super) async fn caller(
        &self,
        customer: CustomerId,
        req: &GetCallerRequest,
    ) -> Result<GetCallerResponse> {
        let id = caller_ref(&req.caller_id)?;
        let not_found = || MemoryError::NotFound("no caller with this id".into());
        let (number, rows) = self
            .db()
            .tenant_tx(customer, async |tx| {
                let Some(number) = store::caller_by_ref(tx, customer, id).await? else {
                    return Ok(None);
                };
                let rows = store::context(tx, customer, &number, CALLER_SUMMARIES).await?;
                Ok::<_, MemoryError>(Some((number, rows)))
            })
            .await?
            .ok_or_else(not_found)?;
        Ok(GetCallerResponse {
            profile: Some(rows.profile.ok_or_else(not_found)?),
            masked_number: number.masked(),
            memories: rows.memories,
            summaries: rows.summaries,
        })
    }

    pub(super) async fn call_summary(
        &self,
        customer: CustomerId,
        req: &GetCallSummaryRequest,
    ) -> Result<GetCallSummaryResponse> {
        let call_sid =
            CallSid::parse(&req.call_sid).map_err(|e| MemoryError::invalid("call_sid", e.0))?;
        let (summary, caller_ref) = self
            .db()
            .tenant_tx(customer, async |tx| {
                let Some(summary) = store::get_summary(tx, customer, &call_sid).await? else {
                    return Ok(None);
                };
                let user = wire::caller("user_id", &summary.user_id)?;
                let caller_ref = store::ref_of_caller(tx, customer, &user).await?;
                Ok::<_, MemoryError>(Some((summary, caller_ref)))
            })
            .await?
            .ok_or_else(|| MemoryError::NotFound("no summary for this call".into()))?;
        Ok(GetCallSummaryResponse {
            summary: Some(summary),
            caller_id: caller_ref.map(|r| r.to_string()).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> Result<CallerQuery> {
        caller_query(&ListCallersRequest {
            query: q.into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_query_of_digits_searches_the_end_of_the_number_and_text_the_name() {
        let q = query(" 0123 ").unwrap();
        assert_eq!(q.last_digits.as_deref(), Some("0123"));
        assert_eq!(q.name, None);
        let q = query("Ann").unwrap();
        assert_eq!((q.name.as_deref(), q.last_digits), (Some("Ann"), None));
        let q = query("").unwrap();
        assert_eq!((q.name, q.last_digits, q.limit), (None, None, 50));
        for bad in ["7", "1234567890123456"] {
            let e = query(bad).unwrap_err().to_string();
            assert!(e.starts_with("query:"), "{e}");
        }
    }

    #[test]
    fn cursors_read_back_and_forged_ones_are_refused() {
        let at = chrono::DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let id = uuid::Uuid::new_v4();
        assert_eq!(
            decode_cursor(&encode_cursor((at, id))).unwrap(),
            Some((at, id))
        );
        for bad in ["x", "bm90LWEtdG9rZW4", &"A".repeat(300)] {
            let e = decode_cursor(bad).unwrap_err().to_string();
            assert!(e.starts_with("page_token:"), "{e}");
        }
        assert_eq!(
            caller_ref("nope").unwrap_err().to_string(),
            "caller_id: must be a caller id (UUID)"
        );
    }
}
