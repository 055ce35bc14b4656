//! `tenant.audit_log` (V16): the tenant's security events as tenant-svc records them (sign-ins,
//! failed sign-ins, password changes, invitations; team, API key and setting changes), shown on
//! the portal's security page with the export and erasure events of memory-svc and media-svc.
//! Append-only: tenant-svc may insert and read rows, never change or delete them (rows go only
//! with their customer).
//!
//! A row names who acted (`actor`: `user:<id>`, `operator:<id>`, `api-key:<id>`,
//! `service:<name>`),
//! what happened (`action`, dotted, see [`actions`]) and a `detail` object. The detail never holds
//! a secret, a raw phone number or an e-mail address: ids, roles, field names.

use mesh::db::Tx;
use mesh::domain::CustomerId;
use serde_json::Value as Json;

use crate::error::Result;

/// The actions tenant-svc records. Others are added here, next to these, when a part starts
/// recording them.
pub mod actions {
    /// A user signed in (a new session).
    pub const SIGN_IN: &str = "auth.sign_in";
    /// A sign-in with a known user's address failed (wrong password or second factor, or the
    /// user is disabled). Failures for unknown addresses belong to no tenant and are not recorded.
    pub const SIGN_IN_FAILED: &str = "auth.sign_in_failed";
    /// A user changed their password (their other sessions ended).
    pub const PASSWORD_CHANGED: &str = "auth.password_changed";
    /// A user set a new password with a reset link (all their sessions ended).
    pub const PASSWORD_RESET: &str = "auth.password_reset";
    /// A user signed out (ended their session).
    pub const SIGNED_OUT: &str = "auth.signed_out";
    /// A password reset was asked for a user (a reset mail is to be sent).
    pub const PASSWORD_RESET_REQUESTED: &str = "auth.password_reset_requested";
    /// A user signed out everywhere.
    pub const SIGNED_OUT_EVERYWHERE: &str = "auth.signed_out_everywhere";
    /// A user ended one of their other sessions.
    pub const SESSION_REVOKED: &str = "auth.session_revoked";
    /// An invitation was created.
    pub const INVITED: &str = "team.invited";
    /// An invitation was accepted (a user was created).
    pub const INVITATION_ACCEPTED: &str = "team.invitation_accepted";
    /// A pending invitation was withdrawn.
    pub const INVITATION_REVOKED: &str = "team.invitation_revoked";
    /// A user's role was changed.
    pub const ROLE_CHANGED: &str = "team.role_changed";
    /// A user was removed from the team (their sessions ended).
    pub const USER_REMOVED: &str = "team.user_removed";
    /// The agent configuration changed (`UpdateAgentConfig`; detail: the changed fields' names).
    pub const AGENT_UPDATED: &str = "agent.updated";
    /// A configuration change was reverted (`RevertConfigChange`; detail: the history entry's
    /// id and the field's name).
    pub const AGENT_REVERTED: &str = "agent.reverted";
    /// Outbound-call or webhook settings changed (detail: the changed fields' names).
    pub const OUTBOUND_UPDATED: &str = "outbound.updated";
    /// The webhook signing secret was rotated (never the secret).
    pub const WEBHOOK_SECRET_ROTATED: &str = "webhooks.secret_rotated";
    /// Call-handling settings changed (`UpdateCallHandling`; detail: the changed fields' names).
    pub const CALL_HANDLING_UPDATED: &str = "call_handling.updated";
    /// An operator approved the customer (pending to active; detail: from, to).
    pub const OPERATOR_APPROVED: &str = "operator.approved";
    /// An operator suspended the customer (detail: from, to).
    pub const OPERATOR_SUSPENDED: &str = "operator.suspended";
    /// An operator reactivated the suspended customer (detail: from, to).
    pub const OPERATOR_REACTIVATED: &str = "operator.reactivated";
    /// An operator assigned a number to the customer (detail: the number's last four digits).
    pub const OPERATOR_NUMBER_ASSIGNED: &str = "operator.number_assigned";
    /// An operator released one of the customer's numbers (detail: its last four digits).
    pub const OPERATOR_NUMBER_RELEASED: &str = "operator.number_released";
    /// An operator offboarded the customer (suspended; detail: the erase time).
    pub const OPERATOR_OFFBOARDED: &str = "operator.offboarded";
    /// An operator cancelled the customer's offboarding.
    pub const OPERATOR_OFFBOARDING_CANCELLED: &str = "operator.offboarding_cancelled";
    /// A business signed up and verified its address: the customer and its owner were created
    /// (detail: the status it starts in).
    pub const SIGNED_UP: &str = "customer.signed_up";
    /// An operator approved the customer (PENDING -> ACTIVE).
    pub const CUSTOMER_APPROVED: &str = "customer.approved";
    /// The owners were sent the welcome mail with the customer's first number (never the
    /// number).
    pub const WELCOME_MAILED: &str = "customer.welcome_mailed";
}

/// Appends one event to the current tenant's audit log, inside the caller's tenant transaction
/// (so the event is recorded exactly when the change it describes commits).
pub async fn append_audit(
    tx: &Tx<'_>,
    id: CustomerId,
    actor: &str,
    action: &str,
    detail: &Json,
) -> Result<()> {
    tx.execute(
        "INSERT INTO tenant.audit_log (customer_id, actor, action, detail) VALUES ($1, $2, $3, $4)",
        &[&id, &actor, &action, detail],
    )
    .await?;
    Ok(())
}
