//! All of tenant-svc's SQL, one module per table (or pair of tables that one operation reads
//! together). Every function takes a transaction opened by `Db::tenant_tx` (tenant data, isolated
//! by RLS) or `Db::service_tx` (platform defaults and the two id-only SECURITY DEFINER
//! functions); none takes a raw connection. Identifiers arrive as domain types (`CustomerId`,
//! `PhoneNumber`, `AccountSid`, `Voice`) and statuses as Rust enums, so only checked values reach
//! SQL; the id newtypes are bound and read as themselves (their `ToSql`/`FromSql` in
//! `mesh::domain`), never unwrapped at a call site. The handlers in `service` call these
//! functions and hold no SQL themselves.
//!
//! - [`customers`]: the customer row, its overrides and status, creation, deletion, listing;
//! - [`numbers`]: phone numbers and the call path's number-to-customer lookup;
//! - [`history`]: the configuration history;
//! - [`defaults`]: the platform defaults;
//! - [`outbound`]: outbound-call and webhook settings;
//! - [`call_handling`]: recording, retention, message and opening-hours settings;
//! - [`webhooks`]: webhook signing secrets;
//! - [`erasures`]: the operator's erasure of a customer, its progress and record;
//! - [`revocations`]: the second up to which a tenant's (or one subject's) tokens are refused
//!   everywhere;
//! - [`audit`]: the tenant's audit log (append and read);
//! - [`accounts`]: portal users, invitations, sessions, sign-in failures and password resets;
//! - [`offboardings`]: customers an operator offboarded, erased after a grace period (V28);
//! - [`operators`]: operator accounts, their sessions and sign-in failures (platform data, V28);
//! - [`api_keys`]: the tenant's API keys (hashed secrets, last use, revocation);
//! - [`audit_log`]: reading the tenant's audit log (pages below a cursor, actors' addresses);
//! - [`signups`]: sign-ups awaiting verification (platform-wide rows) and the once-only
//!   onboarding mail claims.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod audit_log;
pub mod call_handling;
pub mod customers;
pub mod defaults;
pub mod erasures;
pub mod history;
pub mod numbers;
pub mod offboardings;
pub mod operators;
pub mod outbound;
pub mod owner_notifications;
pub mod revocations;
pub mod signups;
pub mod webhooks;

pub use audit::append_audit;
pub use call_handling::{load_call_handling, save_call_handling};
pub use customers::{
    NewCustomer, delete_customer, get_customer, insert_customer, list_customer_ids, lock_customer,
    next_customer_id, require_customer, require_customer_core, set_status, update_overrides,
};
pub use defaults::{load_defaults, save_defaults};
pub use history::{config_change, list_history, record_changes};
pub use numbers::{assign_number, release_number, resolve_number};
pub use outbound::{get_outbound, load_outbound, save_outbound};
pub use revocations::{revoke_subject_tokens, revoke_tokens};
pub use webhooks::{SigningKeys, rotate_webhook_secret, signing_keys};
