//! Operators (issue 21): the people who run the platform, signing in to the operator console
//! with a password and a required second factor ([`totp`], RFC 6238), their TOTP secrets sealed
//! at rest ([`seal`]), and the lifetimes of their sessions ([`OperatorConfig`]). Operators are
//! platform data (`tenant.operators`, V28, no customer); what they do to a customer is written to
//! that customer's audit log with the actor [`operator_actor`]. The handlers are
//! `service::operator` (sign-in, sessions, accounts) and `service::operator_actions`; the SQL is
//! `store::operators`.

pub mod seal;
pub mod totp;

use std::time::Duration;

/// How long an operator session lives unused (shorter than a portal session: an operator's
/// powers cover every tenant).
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(15 * 60);
/// How long an operator session lives whatever happens.
pub const DEFAULT_SESSION_MAX: Duration = Duration::from_secs(8 * 60 * 60);
/// Failed sign-ins of one operator in the throttle window after which it is refused.
pub const MAX_ACCOUNT_FAILURES: i64 = 10;

/// The one answer to every failed operator sign-in (unknown address, wrong password, wrong or
/// reused code, disabled operator).
pub const SIGN_IN_FAILED: &str = "wrong e-mail address, password or code";
/// The one answer for an operator session that is unknown, ended or expired.
pub const SESSION_ENDED: &str = "the operator session has ended; sign in again";

/// Operator sessions' lifetimes.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in whatever happens.
    pub session_max: Duration,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            session_idle: DEFAULT_SESSION_IDLE,
            session_max: DEFAULT_SESSION_MAX,
        }
    }
}

/// Who an operator is in a tenant's audit log and in history: `operator:<id>`.
pub fn operator_actor(operator_id: i64) -> String {
    format!("operator:{operator_id}")
}
