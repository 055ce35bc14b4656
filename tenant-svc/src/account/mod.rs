//! Portal accounts (issue 19): what a user of the tenant portal is (a [`Role`] within one
//! customer), how their password is checked and stored ([`password`]: Argon2id, a length rule and
//! a common-password list), and the secrets and keyed hashes of sign-in ([`secrets`]: session,
//! invitation and reset secrets stored as SHA-256; e-mail and client addresses as HMAC-SHA256
//! under the account hash key). [`AccountConfig`] holds the lifetimes; the handlers are
//! `service::account` and the SQL `store::accounts`.

pub mod password;
pub mod secrets;

use std::time::Duration;

use mesh::api::tenant::UserRole;
use mesh::identity::scope;
use secrecy::SecretSlice;

use crate::error::{Result, TenantError};

/// How long a session lives unused (each `ExchangeSession` moves it on).
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// How long a session lives whatever happens.
pub const DEFAULT_SESSION_MAX: Duration = Duration::from_secs(12 * 60 * 60);
/// Lifetime of the tenant token `ExchangeSession` mints (the portal caches it for at most half).
pub const PORTAL_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// Lifetime of an invitation.
pub const INVITATION_TTL: Duration = Duration::from_secs(72 * 60 * 60);
/// Lifetime of a password reset token.
pub const RESET_TTL: Duration = Duration::from_secs(60 * 60);
/// At most one new reset per user in this time.
pub const RESET_INTERVAL: Duration = Duration::from_secs(60);
/// The throttles' window.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(60);
/// Failed sign-ins of one account in [`THROTTLE_WINDOW`] after which it is refused.
pub const MAX_ACCOUNT_FAILURES: i64 = 10;
/// Failed sign-ins from one client address in [`THROTTLE_WINDOW`] after which it is refused.
pub const MAX_ADDRESS_FAILURES: i64 = 30;

/// The one answer to every failed sign-in (unknown address, wrong password, disabled user).
pub const SIGN_IN_FAILED: &str = "wrong e-mail address or password";
/// The one answer for a session that is unknown, ended or expired.
pub const SESSION_ENDED: &str = "the session has ended; sign in again";

/// Sessions' lifetimes and the account hash key.
#[derive(Clone)]
pub struct AccountConfig {
    /// A session unused this long ends (`PORTAL_SESSION_IDLE_SECONDS`).
    pub session_idle: Duration,
    /// A session ends this long after sign-in whatever happens (`PORTAL_SESSION_MAX_SECONDS`).
    pub session_max: Duration,
    /// `TENANT_ACCOUNT_HASH_KEY`: the key of the e-mail and client address hashes; when `None`,
    /// the random per-database key of `tenant.account_hash_key` (V16).
    pub hash_key: Option<SecretSlice<u8>>,
    /// Where owners' notices go (`NotifyOwners`); `None` when mail is not configured (nothing
    /// is sent and the RPC answers OK).
    pub owner_mail: Option<crate::notice::OwnerMail>,
    /// Operators' sessions (the operator console).
    pub operators: crate::operator::OperatorConfig,
    /// Self sign-up's approval and per-address limit.
    pub signup: SignupConfig,
}

/// The sign-up settings (`TENANT_SIGNUP_AUTO_APPROVE`, `TENANT_SIGNUPS_PER_ADDRESS_PER_DAY`).
#[derive(Debug, Clone, Copy)]
pub struct SignupConfig {
    /// A verified sign-up is ACTIVE at once (else PENDING until an operator approves it).
    pub auto_approve: bool,
    /// Sign-ups one client address (IPv6: one /64) may make in 24 hours.
    pub per_address_per_day: i64,
}

impl Default for SignupConfig {
    fn default() -> Self {
        Self {
            auto_approve: false,
            per_address_per_day: 5,
        }
    }
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            session_idle: DEFAULT_SESSION_IDLE,
            session_max: DEFAULT_SESSION_MAX,
            hash_key: None,
            owner_mail: None,
            operators: crate::operator::OperatorConfig::default(),
            signup: SignupConfig::default(),
        }
    }
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConfig")
            .field("session_idle", &self.session_idle)
            .field("session_max", &self.session_max)
            .field("hash_key", &self.hash_key.as_ref().map(|_| "[configured]"))
            .field("owner_mail", &self.owner_mail)
            .field("operators", &self.operators)
            .field("signup", &self.signup)
            .finish()
    }
}

/// What a portal user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything the business does for itself.
    Owner,
    /// Calls, transcripts and callers' memory, to read.
    Staff,
}

impl Role {
    /// As stored (`tenant.users.role`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Staff => "staff",
        }
    }

    /// From the stored text (the table's CHECK allows only these two).
    pub fn from_db(s: &str) -> Role {
        if s == "owner" {
            Role::Owner
        } else {
            Role::Staff
        }
    }

    /// From a request's enum field; INVALID_ARGUMENT naming `field` when unset or unknown.
    pub fn from_wire(field: &str, v: i32) -> Result<Role> {
        match UserRole::try_from(v) {
            Ok(UserRole::Owner) => Ok(Role::Owner),
            Ok(UserRole::Staff) => Ok(Role::Staff),
            _ => Err(TenantError::invalid(
                field,
                "must be USER_ROLE_OWNER or USER_ROLE_STAFF",
            )),
        }
    }

    /// As the proto names it.
    pub fn to_wire(self) -> UserRole {
        match self {
            Role::Owner => UserRole::Owner,
            Role::Staff => UserRole::Staff,
        }
    }

    /// The scopes of the role's portal token.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Role::Owner => scope::OWNER_SCOPES,
            Role::Staff => scope::STAFF_SCOPES,
        }
    }
}

/// An e-mail address as typed, normalised for lookups and storage (trimmed, lower-cased), and
/// checked; INVALID_ARGUMENT naming `field`.
pub fn normalise_email(field: &str, s: &str) -> Result<String> {
    let s = crate::validate::email(field, s)?;
    Ok(s.to_lowercase())
}

/// The subject of a user's tokens and their actor in the audit log.
pub fn user_actor(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// A short summary of a User-Agent header ("Firefox on Linux"): the browser family and the
/// operating system, never the full header (it is a fingerprint and can be arbitrarily long).
pub fn summarise_user_agent(ua: &str) -> String {
    let has = |s: &str| ua.contains(s);
    let browser = if has("Edg/") || has("Edge/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("Firefox/") || has("FxiOS/") {
        "Firefox"
    } else if has("Chromium/") {
        "Chromium"
    } else if has("Chrome/") || has("CriOS/") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else if has("curl/") {
        "curl"
    } else if ua.trim().is_empty() {
        return "Unknown browser".into();
    } else {
        "Other browser"
    };
    let os = if has("Android") {
        "Android"
    } else if has("iPhone") || has("iPad") || has("iOS") {
        "iOS"
    } else if has("Windows") {
        "Windows"
    } else if has("Mac OS") || has("Macintosh") {
        "macOS"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Linux") || has("X11") {
        "Linux"
    } else {
        return browser.into();
    };
    format!("{browser} on {os}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_summarised() {
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(summarise_user_agent(ff), "Firefox on Linux");
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
        assert_eq!(summarise_user_agent(chrome), "Chrome on Windows");
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(summarise_user_agent(safari), "Safari on iOS");
        assert_eq!(summarise_user_agent(""), "Unknown browser");
        assert!(summarise_user_agent(&"x".repeat(5000)).len() <= 100);
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalise_email("email", "  Owner@Example.COM ").unwrap(),
            "owner@example.com"
        );
        assert!(normalise_email("email", "nope").is_err());
    }
}
