//! The gateway's integration tests, one binary (link time dominates CI): the binary itself
//! ([`binary`]). The whole mesh behind the gateway is exercised by the workspace's `tests/`
//! crate.

mod binary;
