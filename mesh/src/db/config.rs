//! A pool's connection settings, and their `Debug` output with the password hidden.

use std::fmt;
use std::time::Duration;

/// Connection settings for one service's pool.
#[derive(Clone)]
pub struct DbConfig {
    /// `postgres://user[:password]@host:port/dbname` (or a key=value connection string). The user
    /// is the service's own login role (e.g. `tenant_svc`), never an owner or superuser.
    pub url: String,
    /// Pool size (>= 1).
    pub max_connections: usize,
    /// Server-side `statement_timeout` for every statement; `None` keeps the server default.
    pub statement_timeout: Option<Duration>,
    /// Server-side `idle_in_transaction_session_timeout`: the server ends a session whose
    /// transaction sits idle this long. `None` keeps the server default.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Time allowed to establish a new connection (TCP connect and startup).
    pub connect_timeout: Option<Duration>,
    /// Time a request waits for a free pooled connection before failing.
    pub checkout_timeout: Option<Duration>,
    /// `application_name` shown in `pg_stat_activity`, unless the URL sets one.
    pub application_name: Option<String>,
}

impl DbConfig {
    /// Defaults: 10 connections, 30 s statement timeout, 60 s idle-in-transaction timeout, 5 s
    /// connect timeout, 5 s checkout timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            statement_timeout: Some(Duration::from_secs(30)),
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Some(Duration::from_secs(5)),
            checkout_timeout: Some(Duration::from_secs(5)),
            application_name: None,
        }
    }
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("statement_timeout", &self.statement_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// Replaces the password of a URL-form connection string; key=value strings are hidden entirely
/// when they mention a password.
fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        if !rest.contains("password=") {
            return url.to_owned();
        }
    } else if !url.contains("password") {
        return url.to_owned();
    }
    "<connection string with password, redacted>".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://svc:s3cret@db:5432/app"),
            "postgres://svc:***@db:5432/app"
        );
        assert_eq!(
            redact_url("postgres://svc@db:5432/app"),
            "postgres://svc@db:5432/app"
        );
        assert!(!redact_url("host=db user=svc password=s3cret").contains("s3cret"));
        assert!(!format!("{:?}", DbConfig::new("postgres://a:pw@h/d")).contains("pw@"));
    }
}
