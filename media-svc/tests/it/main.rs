//! media-svc's integration tests, one binary (one link) with a module per area. Each test starts
//! media-svc on port 0 against its own fresh database (see [`common`]), with tenant-svc and
//! memory-svc in-process where the test needs them and fakes of the third parties ([`fakes`]:
//! the OpenAI Realtime API, Twilio REST).

mod common;
mod fakes;

mod admin_issuers;
mod billing;
mod billing_admin;
mod billing_caps;
mod billing_usage;
mod binary;
mod calls;
mod capture;
mod erase;
mod listing;
mod messages;
mod messages_busy;
mod messages_paths;
mod moto;
mod numbers;
mod numbers_common;
mod numbers_reconcile;
mod openai_realtime;
mod outbound;
mod outbox_memory;
mod owner_mail;
mod playback;
mod preview;
mod recording_erasure;
mod recordings;
mod recordings_bench;
mod recordings_keys;
mod recordings_s3;
mod retention;
mod stream_credentials;
mod stream_local;
mod suspension;
mod toll_fraud;
mod webhooks;
