//! Pagination of the listing RPCs: opaque page tokens over a position (a customer id, a history
//! id) and the page size rule, shared by `ListCustomers` and `ListConfigHistory`.

use base64::Engine as _;

use crate::error::{Result, TenantError};

/// An opaque page token for a position.
pub fn page_token(position: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("p{position}"))
}

/// Decodes a page token (`None` for the first page).
pub fn parse_page_token(token: &str) -> Result<Option<i64>> {
    if token.is_empty() {
        return Ok(None);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix('p').and_then(|n| n.parse().ok()))
        .map(Some)
        .ok_or_else(|| TenantError::invalid("page_token", "is not a token from a previous page"))
}

/// Page size: 1-500, 50 when 0.
pub fn page_size(size: i32) -> Result<i64> {
    match size {
        0 => Ok(50),
        1..=500 => Ok(i64::from(size)),
        _ => Err(TenantError::invalid(
            "page_size",
            "must be between 1 and 500",
        )),
    }
}
