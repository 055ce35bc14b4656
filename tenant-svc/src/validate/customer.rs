//! A customer's own fields: contact email, business and contact names, contact phone, package
//! tier.

use mesh::domain::PhoneNumber;

use super::bounded_text;
use crate::error::{Result, TenantError};

/// Package tiers.
pub const TIERS: [&str; 3] = ["starter", "professional", "enterprise"];

/// Contact email: RFC 5322 addr-spec, at most 254 characters; stored as given (trimmed).
pub fn email(field: &str, s: &str) -> Result<String> {
    let s = s.trim();
    if s.len() > 254 || !email_address::EmailAddress::is_valid(s) || !s.contains('.') {
        return Err(TenantError::invalid(
            field,
            "must be an email address like name@example.com",
        ));
    }
    Ok(s.to_owned())
}

/// Business name: 1-200 characters.
pub fn business_name(field: &str, s: &str) -> Result<String> {
    if s.trim().is_empty() {
        return Err(TenantError::invalid(field, "must not be empty"));
    }
    bounded_text(field, s.trim(), 1, 200, false)
}

/// Contact name: at most 200 characters.
pub fn contact_name(field: &str, s: &str) -> Result<String> {
    bounded_text(field, s.trim(), 0, 200, false)
}

/// Optional contact phone: empty, or a valid E.164 number.
pub fn optional_phone(field: &str, s: &str) -> Result<String> {
    if s.trim().is_empty() {
        return Ok(String::new());
    }
    PhoneNumber::parse(s)
        .map(|p| p.as_str().to_owned())
        .map_err(|e| TenantError::invalid(field, e))
}

/// Package tier; `starter` when empty.
pub fn package_tier(field: &str, s: &str) -> Result<String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok("starter".into());
    }
    if TIERS.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(TenantError::invalid(
            field,
            format!("must be one of {}", TIERS.join(", ")),
        ))
    }
}
