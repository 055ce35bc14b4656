//! Strict `http(s)` URLs: the parser behind the webhook URL and the public endpoint's origins
//! (a subset of RFC 3986 that every URL parser reads the same way), and the webhook host check,
//! which refuses `localhost` and every IP literal that `mesh::net::is_public_ip` (the mesh's one
//! address filter, which media-svc applies again to resolved addresses at delivery) does not
//! call public.

use super::chars;
use crate::error::{Result, TenantError};

/// Longest webhook URL.
pub const MAX_WEBHOOK_URL: usize = 2_000;

/// The webhook URL: empty (webhooks off) or an absolute `https://` URL (`http://` too when
/// `allow_insecure`) of at most 2,000 characters, without credentials or fragment. Unless
/// `allow_insecure`, a host that is `localhost` or an IP literal that is not a public address
/// (`mesh::net::is_public_ip`) is refused here already (media-svc also checks the resolved
/// addresses of names at delivery time). Scheme and host are stored lower-case.
pub fn webhook_url(field: &str, s: &str, allow_insecure: bool) -> Result<String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    let n = chars(s);
    if n > MAX_WEBHOOK_URL {
        return Err(TenantError::invalid(
            field,
            format!("must be at most {MAX_WEBHOOK_URL} characters, got {n}"),
        ));
    }
    let url = HttpUrl::parse(s, allow_insecure).map_err(|e| TenantError::invalid(field, e))?;
    if !allow_insecure && url.host.is_internal() {
        return Err(TenantError::invalid(
            field,
            "must not point at localhost or a loopback, private, link-local or other non-public address",
        ));
    }
    Ok(url.to_string())
}

/// The host of an [`HttpUrl`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// A DNS name, lower-case.
    Name(String),
    /// An IPv4 literal.
    V4(std::net::Ipv4Addr),
    /// An IPv6 literal (written in brackets).
    V6(std::net::Ipv6Addr),
}

impl Host {
    /// A DNS name of letters, digits and hyphens in dot-separated labels of 1-63 characters, or a
    /// canonical IP literal. Deliberately stricter than URL parsers, which read `2130706433` or
    /// `0x7f.1` as 127.0.0.1: a last label starting with a digit must be a dotted-quad IPv4.
    fn parse(s: &str) -> std::result::Result<Self, String> {
        const BAD: &str = "has an invalid host; use a DNS name or an IP address";
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(BAD)?;
            return inner
                .parse::<std::net::Ipv6Addr>()
                .map(Host::V6)
                .map_err(|_| BAD.to_owned());
        }
        let name = s.to_ascii_lowercase();
        if name.is_empty() || name.len() > 253 {
            return Err(BAD.to_owned());
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels
            .last()
            .is_some_and(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        {
            return name
                .parse::<std::net::Ipv4Addr>()
                .map(Host::V4)
                .map_err(|_| BAD.to_owned());
        }
        let label_ok = |l: &&str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !labels.iter().all(label_ok) {
            return Err(BAD.to_owned());
        }
        Ok(Host::Name(name))
    }

    /// `localhost` names, and IP literals that are not public addresses by the mesh's one
    /// address filter (loopback, private, shared, link-local, unspecified, broadcast,
    /// documentation, multicast, benchmarking, IPv6 unique-local and site-local, and the
    /// IPv4-mapped, -compatible and NAT64 forms of those).
    fn is_internal(&self) -> bool {
        match self {
            Host::Name(n) => n == "localhost" || n.ends_with(".localhost"),
            Host::V4(ip) => !mesh::net::is_public_ip((*ip).into()),
            Host::V6(ip) => !mesh::net::is_public_ip((*ip).into()),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(ip) => write!(f, "{ip}"),
            Host::V6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// A strictly parsed absolute `http(s)` URL: a subset of RFC 3986 that every URL parser reads
/// the same way (no whitespace, no credentials, no fragment, percent-escapes well formed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HttpUrl {
    /// `https` or `http`.
    scheme: &'static str,
    host: Host,
    /// Explicit non-default port.
    port: Option<u16>,
    /// Path and query, from the `/` or `?` on; possibly empty.
    pub(super) rest: String,
}

impl HttpUrl {
    pub(super) fn parse(s: &str, allow_insecure: bool) -> std::result::Result<Self, String> {
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "must not contain spaces or control characters (found U+{:04X})",
                c as u32
            ));
        }
        let (scheme, after) = s
            .split_once("://")
            .ok_or("must be an absolute URL such as https://hooks.example.com/calls")?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => "https",
            "http" if allow_insecure => "http",
            "http" => return Err("must use https://".to_owned()),
            _ => return Err("must be an https:// URL".to_owned()),
        };
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        if authority.contains('@') {
            return Err("must not contain credentials (user:password@)".to_owned());
        }
        if rest.contains('#') {
            return Err("must not have a fragment (#...)".to_owned());
        }
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                (&authority[..i], Some(&authority[i + 1..]))
            }
            _ => (authority, None),
        };
        let host = Host::parse(host)?;
        let port = match port {
            None => None,
            Some(p) => {
                let n = p
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| p.parse::<u16>().ok())
                    .flatten()
                    .filter(|n| *n > 0)
                    .ok_or("has an invalid port; use 1 to 65535")?;
                let default = if scheme == "https" { 443 } else { 80 };
                (n != default).then_some(n)
            }
        };
        let bytes = rest.as_bytes();
        for (i, c) in rest.char_indices() {
            let allowed = c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?%".contains(c);
            if !allowed {
                return Err(format!(
                    "has a character that must be percent-encoded: `{}`",
                    c.escape_debug()
                ));
            }
            if c == '%'
                && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return Err("has a `%` that is not followed by two hex digits".to_owned());
            }
        }
        Ok(Self {
            scheme,
            host,
            port,
            rest: rest.to_owned(),
        })
    }

    /// `scheme://host[:port]`.
    pub(super) fn origin(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.origin(), self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::cors_origins;
    use proptest::prelude::*;

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn webhook_urls_are_https_public_and_without_credentials() {
        assert_eq!(webhook_url("w", "", false).unwrap(), "");
        assert_eq!(
            webhook_url(
                "w",
                "HTTPS://Hooks.Example.com:443/calls?v=1&t=a%2Fb",
                false
            )
            .unwrap(),
            "https://hooks.example.com/calls?v=1&t=a%2Fb"
        );
        assert!(webhook_url("w", "https://hooks.example.com", false).is_ok());
        for (bad, why) in [
            ("http://hooks.example.com/x", "https"),
            ("ftp://hooks.example.com/x", "https"),
            ("hooks.example.com/x", "absolute"),
            ("https://user:pw@hooks.example.com/x", "credentials"),
            ("https://hooks.example.com/x#frag", "fragment"),
            ("https://hooks.example.com/a b", "spaces"),
            ("https://hooks.example.com/<x>", "percent-encoded"),
            ("https://hooks.example.com/%zz", "two hex digits"),
            ("https://hooks.example.com/é", "percent-encoded"),
            ("https://-bad-.example.com/", "host"),
            ("https:///x", "host"),
            ("https://2130706433/", "host"),
            ("https://0x7f.1/", "host"),
            ("https://127.1/", "host"),
            ("https://localhost/x", "loopback"),
            ("https://127.0.0.1/x", "loopback"),
            ("https://10.1.2.3/x", "private"),
            ("https://192.168.0.10/x", "private"),
            ("https://169.254.169.254/latest", "link-local"),
            ("https://100.64.0.1/", "private"),
            ("https://[::1]/", "loopback"),
            ("https://[fd00::1]/", "private"),
            ("https://[::ffff:127.0.0.1]/", "loopback"),
            ("https://0.0.0.0/", "loopback"),
        ] {
            let e = msg(webhook_url("w", bad, false));
            assert!(e.starts_with("w:") && e.contains(why), "{bad}: {e}");
        }
        assert!(
            msg(webhook_url(
                "w",
                &format!("https://a.example/{}", "x".repeat(2000)),
                false
            ))
            .contains("at most 2000")
        );
        // WEBHOOK_ALLOW_INSECURE: http and internal hosts (local receivers in tests).
        assert_eq!(
            webhook_url("w", "http://127.0.0.1:8080/hook", true).unwrap(),
            "http://127.0.0.1:8080/hook"
        );
        assert!(webhook_url("w", "http://localhost/hook", true).is_ok());
        assert!(webhook_url("w", "http://u:p@localhost/hook", true).is_err());
    }

    /// The host check is `mesh::net::is_public_ip`: ranges the old local check let through
    /// (documentation, multicast, benchmarking, reserved, NAT64) are refused too.
    #[test]
    fn webhook_hosts_use_the_mesh_address_filter() {
        for bad in [
            "https://192.0.2.10/x",
            "https://224.0.0.1/x",
            "https://198.18.0.1/x",
            "https://240.0.0.1/x",
            "https://[2001:db8::1]/x",
            "https://[ff02::1]/x",
            "https://[64:ff9b::7f00:1]/x",
            "https://[fec0::1]/x",
        ] {
            let e = msg(webhook_url("w", bad, false));
            assert!(e.contains("non-public"), "{bad}: {e}");
        }
        for good in ["https://8.8.8.8/x", "https://[2606:4700::1111]/x"] {
            assert_eq!(webhook_url("w", good, false).unwrap(), good);
        }
    }

    proptest! {
        #[test]
        fn url_validation_never_panics_and_accepted_urls_are_stable(s in "\\PC{0,120}") {
            if let Ok(u) = webhook_url("w", &s, true) {
                // What was stored validates again to itself.
                prop_assert_eq!(webhook_url("w", &u, true).unwrap(), u.clone());
            }
            let _ = cors_origins("o", &[s], false);
        }

        #[test]
        fn plain_https_urls_are_accepted_unchanged(
            host in "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z][a-z0-9]{0,5}){1,3}",
            path in "(/[A-Za-z0-9._~-]{0,8}){0,4}",
        ) {
            let s = format!("https://{host}{path}");
            prop_assert_eq!(webhook_url("w", &s, false).unwrap(), s);
        }

    }
}
