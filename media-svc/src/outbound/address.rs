//! The client address of a public `POST /v1/calls` as the per-address allowance keys it: the IP
//! the gateway saw (after its trusted-proxy rule), an IPv4 address whole and an IPv6 address by
//! its /64 (one subscriber usually holds a whole /64, so a finer key would give each of them
//! billions of allowances), stored only as a keyed hash bound to the tenant.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use mesh::domain::CustomerId;
use sha2::Sha256;

use crate::error::MediaError;

/// Domain prefix of the hash, so the caller-hash key it shares never yields the same value for
/// a caller number and an address.
const DOMAIN: &[u8] = b"neurosphere.outbound-client-address.v1\0";

/// The key part of a client address: IPv4 (IPv4-mapped IPv6 included) whole, IPv6 by /64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress(Vec<u8>);

impl ClientAddress {
    /// `PlaceOutboundCallRequest.client_address`: `None` when empty (a direct gRPC caller);
    /// INVALID_ARGUMENT naming the field when it is not an IP address.
    pub fn parse(text: &str) -> Result<Option<Self>, MediaError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let ip: IpAddr = text
            .parse()
            .map_err(|_| MediaError::invalid("client_address", "must be an IP address"))?;
        let key = match ip.to_canonical() {
            IpAddr::V4(v4) => [&[4u8][..], &v4.octets()].concat(),
            IpAddr::V6(v6) => [&[6u8][..], &v6.octets()[..8]].concat(),
        };
        Ok(Some(Self(key)))
    }

    /// HMAC-SHA256 under `key` of the address's key part, bound to `customer`: the same address
    /// gives unrelated values for two tenants.
    pub fn keyed_hash(&self, key: &[u8], customer: CustomerId) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(DOMAIN);
        mac.update(&customer.get().to_be_bytes());
        mac.update(&self.0);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> ClientAddress {
        ClientAddress::parse(text).unwrap().unwrap()
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_ipv4_whole() {
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
        assert_eq!(key("::ffff:203.0.113.7"), key("203.0.113.7"));
        assert_eq!(ClientAddress::parse(" ").unwrap(), None);
        let e = ClientAddress::parse("203.0.113.7:80")
            .unwrap_err()
            .to_string();
        assert!(e.contains("client_address"), "{e}");
    }

    #[test]
    fn the_hash_is_keyed_and_bound_to_the_tenant() {
        let a = key("203.0.113.7");
        let (one, two) = (CustomerId::new(1).unwrap(), CustomerId::new(2).unwrap());
        assert_eq!(a.keyed_hash(b"k1", one), a.keyed_hash(b"k1", one));
        assert_ne!(a.keyed_hash(b"k1", one), a.keyed_hash(b"k1", two));
        assert_ne!(a.keyed_hash(b"k1", one), a.keyed_hash(b"k2", one));
    }
}
