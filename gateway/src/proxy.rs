//! Where a request came from: the connecting address, or, when the connection comes from a
//! proxy the operator trusts (`GATEWAY_TRUSTED_PROXIES`), the address that proxy saw. Behind
//! the TLS proxy production needs, every client would otherwise share the proxy's address (and
//! its budgets); directly exposed, a client could otherwise name any address it liked in
//! `X-Forwarded-For`.
//!
//! The rule ([`TrustedProxies::client`]): from an untrusted peer, the peer's address, whatever
//! the headers say. From a trusted peer, `X-Forwarded-For` read from the right (each proxy
//! appends the address it saw): the first address that is not itself a trusted proxy. Entries
//! further left were written by the client and are never read. An entry the trusted chain wrote
//! that is not an address is refused ([`MalformedForwardedFor`]) rather than guessed at: falling
//! back to the proxy's address would put that request in the budget every client behind the
//! proxy shares. A trusted peer without the header is the proxy itself (its health checks).
//!
//! Limits key addresses by [`limit_key`]: an IPv4 address as it is, an IPv6 address by its /64
//! (one subscriber usually holds a whole /64, so per-address budgets would otherwise be
//! per-attempt), an IPv4-mapped IPv6 address as the IPv4 address it is.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed: a list of networks, empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// `X-Forwarded-For` from a trusted proxy holds an entry that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("X-Forwarded-For: {0:?} is not an IP address")]
pub struct MalformedForwardedFor(pub String);

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of CIDR networks (`10.0.0.0/8`, `2001:db8::/32`) or single
    /// addresses; empty means no proxy is trusted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is neither a CIDR network nor an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&nets.join(","))
    }
}

impl TrustedProxies {
    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that arrived from `peer` with `headers` (see the
    /// module's rule).
    pub fn client(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<IpAddr, MalformedForwardedFor> {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return Ok(peer);
        }
        let mut entries = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let value = value
                .to_str()
                .map_err(|_| MalformedForwardedFor("<not visible ASCII>".to_owned()))?;
            entries.extend(value.split(','));
        }
        let mut nearest = peer;
        for entry in entries.iter().rev() {
            let ip = parse_entry(entry)?;
            if !self.contains(ip) {
                return Ok(ip);
            }
            nearest = ip;
        }
        // Every hop was a trusted proxy: the request started at the first of them.
        Ok(nearest)
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:443`) or in brackets, as some proxies write them.
fn parse_entry(entry: &str) -> Result<IpAddr, MalformedForwardedFor> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .ok_or(())
                .and_then(|e| e.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| ()))
        })
        .map(|ip| ip.to_canonical())
        .map_err(|()| MalformedForwardedFor(entry.chars().take(64).collect()))
}

/// The key every per-address limit uses for `ip`: IPv4 as it is, IPv6 by its /64.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn proxies() -> TrustedProxies {
        "10.0.0.0/8, 2001:db8:ffff::/48, 192.0.2.7".parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let client = proxies().client(ip("203.0.113.5"), &xff(&["198.51.100.1"]));
        assert_eq!(client, Ok(ip("203.0.113.5")));
        let nobody = TrustedProxies::default();
        assert_eq!(
            nobody.client(ip("10.1.1.1"), &xff(&["198.51.100.1"])),
            Ok(ip("10.1.1.1"))
        );
    }

    #[test]
    fn a_trusted_peer_gives_the_rightmost_untrusted_address() {
        let p = proxies();
        // The client's own entries (left) are never read; trusted hops (right) are skipped.
        let headers = xff(&["1.1.1.1, garbage", "198.51.100.9, 10.2.3.4"]);
        assert_eq!(p.client(ip("10.0.0.1"), &headers), Ok(ip("198.51.100.9")));
        assert_eq!(
            p.client(ip("192.0.2.7"), &xff(&["[2001:db8:1::5]:443"])),
            Ok(ip("2001:db8:1::5"))
        );
        assert_eq!(
            p.client(ip("10.0.0.1"), &xff(&["198.51.100.9:5060"])),
            Ok(ip("198.51.100.9"))
        );
        // No header: the proxy itself; only trusted hops: the first of them.
        assert_eq!(
            p.client(ip("10.0.0.1"), &HeaderMap::new()),
            Ok(ip("10.0.0.1"))
        );
        assert_eq!(
            p.client(ip("10.0.0.1"), &xff(&["10.9.9.9, 10.0.0.2"])),
            Ok(ip("10.9.9.9"))
        );
        // An IPv4-mapped peer is the IPv4 address (dual-stack listeners report them so).
        assert_eq!(
            p.client(ip("::ffff:10.0.0.1"), &xff(&["198.51.100.9"])),
            Ok(ip("198.51.100.9"))
        );
    }

    #[test]
    fn a_malformed_entry_the_trusted_chain_wrote_is_refused() {
        let p = proxies();
        for bad in ["unknown", "198.51.100.9, ", "_hidden", "1.2.3"] {
            assert!(p.client(ip("10.0.0.1"), &xff(&[bad])).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_proxies_parse_networks_and_single_addresses_and_name_bad_entries() {
        let p: TrustedProxies = "10.1.2.3/8 , ::1".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.0.0/8,::1/128");
        assert!(
            p.contains(ip("10.200.0.1")) && p.contains(ip("::1")) && !p.contains(ip("11.0.0.1"))
        );
        assert_eq!("".parse::<TrustedProxies>(), Ok(TrustedProxies::default()));
        let err = "10.0.0.0/8,proxy.example"
            .parse::<TrustedProxies>()
            .unwrap_err();
        assert!(err.contains("proxy.example"), "{err}");
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn limit_keys_group_ipv6_by_64_and_unmap_ipv4() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_key(ip("198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(limit_key(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
    }
}
