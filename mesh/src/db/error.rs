//! [`DbError`]: what database access reports, without row values, and how the status policy
//! reads it.

use std::fmt;

use deadpool_postgres::{HookError, PoolError};
use tokio_postgres::error::SqlState;

/// Database access failed, or the start-up self-check refused the connected role.
///
/// `Display`/`Debug` never contain row values (see the module docs).
#[derive(thiserror::Error)]
pub enum DbError {
    /// The configuration cannot be used (bad URL, pool size 0, ...).
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// The pool could not hand out a connection (timeout, closed).
    #[error("database pool: {0}")]
    Pool(String),
    /// PostgreSQL or the connection reported an error; see [`DbError::code`].
    #[error("{}", describe_postgres(.0))]
    Postgres(tokio_postgres::Error),
    /// Self-check: the service is connected as a superuser, which bypasses row-level security.
    #[error(
        "refusing to serve: database role `{role}` is a superuser and would bypass row-level security; connect as the service's own role"
    )]
    Superuser {
        /// The connected role.
        role: String,
    },
    /// Self-check: the role has BYPASSRLS.
    #[error(
        "refusing to serve: database role `{role}` has BYPASSRLS and would bypass row-level security; ALTER ROLE {role} NOBYPASSRLS"
    )]
    BypassRls {
        /// The connected role.
        role: String,
    },
    /// Self-check: the role is a member of a superuser or BYPASSRLS role.
    #[error(
        "refusing to serve: database role `{role}` is a member of privileged role(s) {granted:?} (superuser or BYPASSRLS); revoke the membership"
    )]
    PrivilegedMembership {
        /// The connected role.
        role: String,
        /// The superuser/BYPASSRLS roles it can act as.
        granted: Vec<String>,
    },
    /// Self-check: the role (or a role it is a member of) owns relations, so row-level security
    /// does not bind it on those tables unless they are FORCEd; ownership belongs to
    /// `neurosphere_owner`.
    #[error(
        "refusing to serve: database role `{role}` owns (directly or through role membership) {count} table(s)/view(s), e.g. {examples:?}; table owners bypass row-level security: objects must be owned by neurosphere_owner and the service must not be a member of it"
    )]
    OwnsTables {
        /// The connected role.
        role: String,
        /// How many relations it owns.
        count: i64,
        /// Up to 10 of them, `schema.name`.
        examples: Vec<String>,
    },
}

impl fmt::Debug for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same text as Display: the derived Debug of tokio_postgres::Error would include DETAIL.
        write!(f, "DbError({self})")
    }
}

impl DbError {
    /// The SQLSTATE of a PostgreSQL error (e.g. [`SqlState::UNIQUE_VIOLATION`]), if this is one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Self::Postgres(e) => e.code(),
            _ => None,
        }
    }

    /// Whether this is the error raised by `app.current_customer_id()` (or any other
    /// insufficient-privilege error): a query ran without tenant context or lacked a grant.
    pub fn is_insufficient_privilege(&self) -> bool {
        self.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
    }

    /// Whether the database is unreachable or going away (pool timeout, refused or lost
    /// connection, server shutting down or starting up, too many connections), as opposed to a
    /// query that failed: callers answer UNAVAILABLE, which clients may retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Pool(_) => true,
            Self::Postgres(e) => {
                if let Some(code) = e.code() {
                    let c = code.code();
                    return c.starts_with("08")
                        || matches!(c, "57P01" | "57P02" | "57P03" | "53300");
                }
                let mut source = std::error::Error::source(e);
                let mut io = false;
                while let Some(s) = source {
                    io |= s.is::<std::io::Error>();
                    source = s.source();
                }
                e.is_closed() || io
            }
            _ => false,
        }
    }

    /// The underlying tokio-postgres error. Careful: its own `Display` includes PostgreSQL's
    /// DETAIL, which may contain row values; do not log it.
    pub fn as_postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Self::Postgres(e) => Some(e),
            _ => None,
        }
    }
}

/// The status policy's view of a database failure: a statement timeout (`QUERY_CANCELED`, also
/// what `statement_timeout` raises) is DEADLINE_EXCEEDED, an unreachable database
/// ([`DbError::is_unavailable`]) UNAVAILABLE, anything else INTERNAL. Services whose error enum
/// wraps a `DbError` delegate to this, so a timeout reads the same from every service.
impl crate::status::ServiceError for DbError {
    fn error_code(&self) -> crate::status::ServiceErrorCode {
        use crate::status::ServiceErrorCode;
        if self.code() == Some(&SqlState::QUERY_CANCELED) {
            ServiceErrorCode::DeadlineExceeded
        } else if self.is_unavailable() {
            ServiceErrorCode::Unavailable
        } else {
            ServiceErrorCode::Internal
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

impl From<PoolError> for DbError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => Self::Postgres(e),
            PoolError::PostCreateHook(HookError::Backend(e)) => Self::Postgres(e),
            PoolError::Timeout(kind) => Self::Pool(format!("timed out ({kind:?})")),
            other => Self::Pool(other.to_string()),
        }
    }
}

/// Text for a tokio-postgres error without DETAIL and, for data exceptions (class 22) and
/// integrity violations (class 23), without the primary message, which can quote values.
fn describe_postgres(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        let text = e.to_string();
        // Conversion errors may quote the value (e.g. serde_json's messages): keep the column or
        // parameter index only. Connection and protocol errors carry no row values.
        if text.starts_with("error deserializing") || text.starts_with("error serializing") {
            let head = text.split(": ").next().unwrap_or_default();
            return format!("database: {head}");
        }
        return format!("database: {text}");
    };
    let code = db.code().code();
    if code.starts_with("22") || code.starts_with("23") {
        let mut text = format!("database error {code}");
        if let Some(constraint) = db.constraint() {
            text.push_str(&format!(" (constraint {constraint}"));
            if let Some(table) = db.table() {
                text.push_str(&format!(" on {table}"));
            }
            text.push(')');
        }
        text
    } else {
        format!("database error {code}: {}", db.message())
    }
}
