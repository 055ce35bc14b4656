//! Where a delivery may go. Unless insecure destinations are allowed (development and tests),
//! only `https://` URLs whose addresses are public are contacted: a literal address is checked
//! before connecting ([`check_destination`]), a name is resolved by [`PublicOnly`], which hands
//! the HTTP client only the addresses it checked (so a second lookup cannot swap in another).
//! What "public" means is the mesh's one address filter, [`mesh::net::is_public_ip`].

use std::net::{IpAddr, SocketAddr};

use mesh::net::is_public_ip;

/// The attempt was refused before connecting: the destination is loopback, private,
/// link-local or otherwise not a public address.
#[derive(Debug, Clone, Copy)]
pub struct NotAllowed;

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("destination address not allowed")
    }
}

impl std::error::Error for NotAllowed {}

/// A resolver that returns only public addresses (an error when none is left). The client
/// connects to exactly the addresses returned here, so the check cannot be raced by a second
/// lookup (DNS rebinding).
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                all.into_iter().filter(|a| is_public_ip(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(NotAllowed) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks the URL tenant-svc returned before any connection: scheme (`https`, or `http` when
/// insecure destinations are allowed), no credentials, and a literal address must be public.
/// Names are checked by [`PublicOnly`] at connect time.
pub(super) fn check_destination(url: &str, allow_insecure: bool) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(url).map_err(|_| "webhook URL is not a URL".to_owned())?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        _ => return Err("webhook URL scheme not allowed".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("webhook URL carries credentials".into());
    }
    // The parser normalises literal addresses (`127.1` -> `127.0.0.1`, IPv6 in brackets).
    let host = url
        .host_str()
        .ok_or_else(|| "webhook URL has no host".to_owned())?;
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if let Some(ip) = literal
        && !allow_insecure
        && !is_public_ip(ip)
    {
        return Err(NotAllowed.to_string());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_only() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public_ip(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public_ip(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn destination_checks() {
        assert!(check_destination("https://example.com/hook", false).is_ok());
        assert_eq!(
            check_destination("http://example.com/hook", false).unwrap_err(),
            "webhook URL scheme not allowed"
        );
        assert!(check_destination("http://127.0.0.1:9/hook", true).is_ok());
        assert_eq!(
            check_destination("https://127.0.0.1/hook", false).unwrap_err(),
            "destination address not allowed"
        );
        assert_eq!(
            check_destination("https://[::1]/hook", false).unwrap_err(),
            "destination address not allowed"
        );
        assert!(check_destination("https://u:p@example.com/", false).is_err());
    }
}
