//! The gateway's integration tests, one binary (link time dominates CI): the binary itself
//! ([`binary`]), the rate limits in front of the handlers ([`limits`]), the client address
//! behind proxies ([`client_addr`]), connections that never speak ([`connections`]) and the one
//! "our number" rule of the Twilio webhooks ([`our_number`]), against stub peers ([`common`])
//! that record what reaches them. The whole mesh behind the gateway is exercised by the
//! workspace's `tests/` crate.

mod binary;
mod client_addr;
mod common;
mod connections;
mod limits;
mod our_number;
