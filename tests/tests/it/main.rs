//! The whole-mesh tests that share the machine well, in one binary (linking a binary per file
//! dominated CI time): each module was a file of its own and keeps its tests' names. Every test
//! still boots its own mesh on a fresh database. The fault, soak and flood suites stay separate
//! binaries (`tests/tests/{faults,soak,flood}.rs`): their timing must not share the two cores
//! with these.

mod api_keys;
mod boot;
mod call;
mod console;
mod context;
mod gateway;
mod grpcurl;
mod isolation;
mod logs;
mod media_frames;
mod outbound;
mod portal;
mod prompts;
mod stream_ticket;
mod suspension;
