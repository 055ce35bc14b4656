//! memory-svc's integration tests, one binary (linking one test binary per file dominated CI):
//! each module was a test file of its own and keeps its test names.
//!
//! - [`behaviour`]: idempotent RecordCall, TTL and purge, export/erase with audit, validation with
//!   nothing stored, paging, search, enriched context.
//! - [`personality`]: the personality trends GetEnrichedContext reports (improving, declining,
//!   stable).
//! - [`isolation`]: tenant isolation over gRPC and row-level security.
//! - [`callers`]: the portal's caller RPCs (opaque ids, masked numbers, search, pages, another
//!   tenant's id NOT_FOUND).
//! - [`openai_summarizer`]: the OpenAI summarizer against a fake chat-completions server, and its
//!   visible fallback.
//! - [`erasure`]: post-call records dropped after their caller's or tenant's erasure, and every
//!   table of the schema erased or kept on purpose.
//! - [`admin_issuers`]: who may use the admin powers (issuers named per rule).
//! - [`binary`]: the `memory-svc` binary's start-up contract.
//! - [`common`]: the harness (memory-svc on port 0 against a fresh database, clients, tokens,
//!   row counts).

mod admin_issuers;
mod behaviour;
mod binary;
mod callers;
mod common;
mod erasure;
mod isolation;
mod openai_summarizer;
mod personality;
