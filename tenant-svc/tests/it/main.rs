//! tenant-svc's integration tests, one binary (linking one test binary per file dominated CI):
//! each former file is a module.
//! - [`tenant`]: the service over real gRPC against a real PostgreSQL: the acceptance
//!   list (isolation, history, validation, tokens, listing, RLS, platform defaults);
//! - [`outbound_settings`]: outbound-call and webhook settings, webhook secrets and signatures;
//! - [`call_handling`]: call-handling settings (recording, retention, messages, opening hours);
//! - [`erasure`]: DeleteCustomer erasing a customer in every service (real memory-svc and
//!   media-svc), resumed after a service did not confirm;
//! - [`routing`]: the call-routing cache across two replicas;
//! - [`admin_issuers`]: who may use the admin powers and the edge (issuers named per rule);
//! - [`legacy`]: legacy HS256 tokens' lifetime and scope mapping at the exchange;
//! - [`toll_fraud`]: transfer rules against the transfer regions, and migration V14;
//! - [`binary`]: the `tenant-svc` binary's start-up contract;
//! - [`accounts`]: the tenant portal's accounts (issue 19): invitations, sign-in and its
//!   throttles, sessions, password changes and resets, the session exchange, RLS on V16;
//! - [`team`]: TeamService's team part (users, invitations, roles, removals) with a portal
//!   owner's token;
//! - [`keys`]: API keys, their exchange, last use and revocation reaching every service;
//! - [`audit_log`]: the tenant's audit log merged from every service, paged;
//! - [`owner_mail`]: `NotifyOwners`, the mail to a customer's owners when a caller leaves a
//!   message (outbox folder and a real SMTP server);
//! - [`operator`]: operators (issue 21): sign-in with a required second factor, throttles,
//!   sessions, who may call the console's API, customer actions audited per tenant;
//! - [`signup`]: self sign-up and its verification link, limits and answers;
//! - [`onboarding`]: pending customers refused, approval and welcome mails, automatic approval;
//! - [`common`]: what they share (a replica on port 0, tokens, bearer metadata).

mod accounts;
mod admin_issuers;
mod audit_log;
mod binary;
mod call_handling;
mod common;
mod erasure;
mod keys;
mod legacy;
mod onboarding;
mod operator;
mod outbound_settings;
mod owner_mail;
mod prompts;
mod routing;
mod signup;
mod team;
mod tenant;
mod toll_fraud;
