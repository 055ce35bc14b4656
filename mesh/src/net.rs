//! The one address filter: whether an IP address is a public unicast address that a tenant's
//! endpoint (a webhook URL, a resolved webhook host) may have. tenant-svc checks the literals in
//! URLs it accepts and media-svc every address it connects to; they had one check each, covering
//! different ranges, so an address one refused the other could accept.
//!
//! Refused: unspecified, loopback, private (RFC 1918), link-local, shared/CGNAT (100.64/10),
//! "this network" (0/8), IETF protocol assignments (192.0.0/24), documentation, benchmarking
//! (198.18/15), multicast, broadcast and the reserved 240/4; for IPv6 also unique-local (fc00::/7),
//! link-local (fe80::/10), the deprecated site-local (fec0::/10), documentation (2001:db8::/32,
//! 3fff::/20) and benchmarking (2001:2::/48). An IPv4-mapped address (`::ffff:a.b.c.d`) is judged
//! by its IPv4 address; the IPv4-compatible (`::/96`) and NAT64 (`64:ff9b::/96`) ranges, which
//! embed an IPv4 address a relay would reach, are refused whole.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a public unicast address (see the module docs for what is refused).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        // Shared address space (carrier-grade NAT) 100.64.0.0/10.
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        // IETF protocol assignments 192.0.0.0/24, benchmarking 198.18.0.0/15, reserved 240/4.
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || o[0] >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // Site-local fec0::/10 (deprecated, still routed inside some networks).
        || (s[0] & 0xffc0) == 0xfec0
        // IPv4-compatible ::/96 (deprecated) and NAT64 64:ff9b::/96 embed an IPv4 address.
        || s[0..6] == [0; 6]
        || s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        // Documentation 2001:db8::/32 and 3fff::/20, benchmarking 2001:2::/48.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x3fff && s[1] < 0x1000)
        || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn public(s: &str) -> bool {
        is_public_ip(s.parse().unwrap())
    }

    /// One address at each end of every refused IPv4 range.
    const INTERNAL_V4: &[&str] = &[
        "0.0.0.0",
        "0.255.255.255",
        "10.0.0.0",
        "10.255.255.255",
        "100.64.0.0",
        "100.127.255.255",
        "127.0.0.1",
        "127.255.255.255",
        "169.254.0.0",
        "169.254.169.254",
        "172.16.0.0",
        "172.31.255.255",
        "192.0.0.0",
        "192.0.0.255",
        "192.0.2.1",
        "192.168.0.0",
        "192.168.255.255",
        "198.18.0.0",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.255",
        "240.0.0.1",
        "255.255.255.255",
    ];

    /// The public addresses just outside those ranges.
    const PUBLIC_V4: &[&str] = &[
        "1.1.1.1",
        "8.8.8.8",
        "9.255.255.255",
        "11.0.0.0",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "169.253.255.255",
        "169.255.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.0",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
    ];

    #[test]
    fn internal_ipv4_ranges_are_refused_at_both_ends() {
        for ip in INTERNAL_V4 {
            assert!(!public(ip), "{ip}");
        }
    }

    #[test]
    fn public_ipv4_next_to_the_ranges_is_allowed() {
        for ip in PUBLIC_V4 {
            assert!(public(ip), "{ip}");
        }
    }

    #[test]
    fn internal_ipv6_ranges_are_refused() {
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            "ff0e::1",
            "2001:db8::1",
            "2001:db8:ffff::1",
            "3fff::1",
            "3fff:fff::1",
            "2001:2::1",
            "::8.8.8.8",
            "64:ff9b::808:808",
            "64:ff9b::a00:1",
        ] {
            assert!(!public(ip), "{ip}");
        }
    }

    #[test]
    fn public_ipv6_is_allowed() {
        for ip in [
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450::1",
            "2001:db9::1",
            "2001:2:1::1",
            "fbff::1",
            "3ffe::1",
            "3fff:1000::1",
        ] {
            assert!(public(ip), "{ip}");
        }
    }

    #[test]
    fn ipv4_mapped_addresses_are_judged_by_their_ipv4() {
        for ip in INTERNAL_V4 {
            assert!(!public(&format!("::ffff:{ip}")), "::ffff:{ip}");
        }
        for ip in PUBLIC_V4 {
            assert!(public(&format!("::ffff:{ip}")), "::ffff:{ip}");
        }
    }

    /// `a.b.c.d` inside the prefix of `len` bits of `base`.
    fn in_v4(base: [u8; 4], len: u32, host: u32) -> IpAddr {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let addr = (u32::from_be_bytes(base) & mask) | (host & !mask);
        IpAddr::V4(Ipv4Addr::from(addr))
    }

    proptest! {
        #[test]
        fn every_address_of_a_refused_ipv4_range_is_refused(host in any::<u32>()) {
            for (base, len) in [
                ([0, 0, 0, 0], 8),
                ([10, 0, 0, 0], 8),
                ([100, 64, 0, 0], 10),
                ([127, 0, 0, 0], 8),
                ([169, 254, 0, 0], 16),
                ([172, 16, 0, 0], 12),
                ([192, 0, 0, 0], 24),
                ([192, 0, 2, 0], 24),
                ([192, 168, 0, 0], 16),
                ([198, 18, 0, 0], 15),
                ([198, 51, 100, 0], 24),
                ([203, 0, 113, 0], 24),
                ([224, 0, 0, 0], 4),
                ([240, 0, 0, 0], 4),
            ] {
                let ip = in_v4(base, len, host);
                prop_assert!(!is_public_ip(ip), "{}", ip);
                if let IpAddr::V4(v4) = ip {
                    prop_assert!(!is_public_ip(IpAddr::V6(v4.to_ipv6_mapped())), "{}", ip);
                    prop_assert!(!is_public_ip(IpAddr::V6(v4.to_ipv6_compatible())), "{}", ip);
                }
            }
        }

        #[test]
        fn every_address_of_a_refused_ipv6_range_is_refused(host in any::<u128>()) {
            for (base, len) in [
                (0xfc00_u128 << 112, 7),
                (0xfe80_u128 << 112, 10),
                (0xfec0_u128 << 112, 10),
                (0xff00_u128 << 112, 8),
                (0x2001_0db8_u128 << 96, 32),
                (0x3fff_u128 << 112, 20),
                (0x2001_0002_u128 << 96, 48),
                (0, 96),
                (0x0064_ff9b_u128 << 96, 96),
            ] {
                let mask = u128::MAX << (128 - len);
                let ip = IpAddr::V6(Ipv6Addr::from((base & mask) | (host & !mask)));
                prop_assert!(!is_public_ip(ip), "{}", ip);
            }
        }
    }
}
