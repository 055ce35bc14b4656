//! The gateway's integration tests, one binary (link time dominates CI): the binary itself
//! ([`binary`]), the rate limits in front of the handlers ([`limits`]) and the one "our number"
//! rule of the Twilio webhooks ([`our_number`]), the last two against stub peers ([`common`])
//! that record what reaches them. The whole mesh behind the gateway is exercised by the
//! workspace's `tests/` crate.

mod binary;
mod common;
mod limits;
mod our_number;
