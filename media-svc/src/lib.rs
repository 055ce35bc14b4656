//! media-svc: live calls bridged to the realtime AI backend, call records, transcripts, usage,
//! outbound calls and post-call webhooks.
//!
//! Parts, in the order a call meets them:
//! - [`server`]: the auth [`policy`] of each RPC (enforced by the mesh auth layer), [`run`] and
//!   [`serve`] (pool logged in as `media_svc` and self-checked, the outbox and webhook workers,
//!   the mesh server, the ordered shutdown); [`settings`] the typed environment; [`runtime`]
//!   what handlers, call drivers and workers share.
//! - [`service::MediaSvc`] implements `CallService` and `MediaAdminService`; every statement it
//!   runs is in [`store`] (one tenant per transaction, domain types in, enums out).
//! - [`answer`]: what the edge answers Twilio for a call (decided once, from its row: the stream
//!   ticket, busy, or hang up) and the exchange of the ticket for the grant of its one stream.
//! - [`call`] drives one live call: it fetches the profile and caller context through [`peers`],
//!   builds the [`instructions`], bridges the caller's audio to an [`backend::AiBackend`]
//!   (offline `local`, or `openai-realtime`) with the barge-in state of [`call::barge_in`],
//!   writes transcript turns as they happen, transfers through [`twilio`], and at the end
//!   finalises the call and queues `RecordCall` in the durable outbox that [`outbox`] delivers to
//!   memory-svc.
//! - [`outbound`] places calls for a tenant's website and holds the per-tenant call limits;
//!   [`webhooks`] delivers the post-call events the outbox queues; [`audio`] is the local
//!   backend's sound; [`prompts`] renders the prompts media-svc speaks itself (espeak-ng, cached),
//!   ahead of calls when tenant-svc asks after a change ([`prepare`], `PreparePrompts`).
//! - [`erasure`]: a caller's export and erasure (across media-svc and memory-svc) and a tenant's,
//!   each audited; [`retention`] deletes each tenant's recordings and transcripts past its
//!   retention.
//! - [`playback`]: a call's recording read back (`ReadRecording`, `Call.recording`).
//! - [`recording`]: call recordings (writer fed by the call driver, encrypted spool, uploader
//!   to the object store, WAV reader).
//! - [`inbox`]: the callback tasks callers left through the message flow
//!   ([`call::message`]) or the agent took, listed and marked done for the portal's inbox.
//! - [`numbers`]: the platform's phone numbers at Twilio (search with prices, purchases safe
//!   against lost answers, import, release, reconcile) behind `NumberService` and
//!   `NumberAdminService`; routing stays tenant-svc's.
//! - [`preview`]: the instructions a call would send, rendered for the tenant portal's agent page
//!   by the same [`instructions::for_call`] calls use.
//! - [`billing`]: usage that can be billed: packages, versioned rate cards, a tenant's monthly
//!   bill and its CSV (`BillingService`, `BillingAdminService`), priced from the quantities each
//!   finalised call added to its month ([`store::usage`]).
#![forbid(unsafe_code)]

pub mod answer;
pub mod audio;
pub mod backend;
pub mod billing;
pub mod call;
pub mod erasure;
pub mod error;
pub mod inbox;
pub mod instructions;
pub mod numbers;
pub mod outbound;
pub mod outbox;
pub mod page;
pub mod peers;
pub mod playback;
pub mod prepare;
pub mod preview;
pub mod prompts;
pub mod recording;
pub mod retention;
pub mod runtime;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
pub mod twilio;
pub mod webhooks;

pub use runtime::{Deps, Runtime};
pub use server::{FINALISE_GRACE, NAME, policy, run, serve};
pub use settings::{BackendChoice, CallConfig, SESSION_MAX, Settings};
