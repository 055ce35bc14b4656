//! The portal's settings: what it derives from the gateway's public base URL (the origin every
//! form must come from, the session cookie's shape) and its own `PORTAL_*` variables (mail, the
//! per-address allowance of the sign-in forms), read through `mesh::settings`.

use std::path::PathBuf;
use std::time::Duration;

use mesh::settings::{Env, catalog};

/// How the session cookie is set, decided by the public base URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieMode {
    /// `https://`: `__Host-ns_session`, `Secure; Path=/`. Responses carry HSTS.
    Secure,
    /// `http://` on a loopback host (as `neurosphere up` serves): `ns_session`, `Path=/portal`,
    /// no `Secure` (the browser would not send it back over plain http).
    LoopbackHttp,
}

pub use mesh::mail::MailTransport;

/// The portal's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public base URL, no trailing slash (links in mail: `<base>/portal/reset/<token>`).
    pub base_url: String,
    /// `scheme://host[:port]` of the base URL: the only `Origin` a form may be posted from.
    pub origin: String,
    /// The session cookie's shape.
    pub cookie: CookieMode,
    /// Where mail goes.
    pub mail: MailTransport,
    /// The `From:` mailbox.
    pub mail_from: String,
    /// Sign-in, invitation and reset form posts allowed per client address per minute.
    pub auth_posts_per_minute: u32,
    /// Time budget of one portal request (its gRPC calls included).
    pub request_timeout: Duration,
}

/// Why a base URL cannot serve the portal.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BaseUrlError {
    /// Neither http nor https.
    #[error("must start with https:// or http://")]
    Scheme,
    /// No host, or a path/query after it.
    #[error("must be scheme://host[:port] with nothing after it")]
    Shape,
    /// Plain http to a host that is not loopback: the session cookie would cross the network
    /// in the clear.
    #[error(
        "plain http:// is allowed only for a loopback host (127.0.0.1, ::1, localhost): the portal's session cookie needs https"
    )]
    InsecureHost,
}

/// The origin and cookie mode a public base URL implies.
pub fn parse_base_url(base: &str) -> Result<(String, CookieMode), BaseUrlError> {
    let base = base.trim_end_matches('/');
    let (scheme, rest) = if let Some(rest) = base.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = base.strip_prefix("http://") {
        ("http", rest)
    } else {
        return Err(BaseUrlError::Scheme);
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(BaseUrlError::Shape);
    }
    let origin = format!("{scheme}://{}", rest.to_ascii_lowercase());
    if scheme == "https" {
        return Ok((origin, CookieMode::Secure));
    }
    if is_loopback_authority(rest) {
        Ok((origin, CookieMode::LoopbackHttp))
    } else {
        Err(BaseUrlError::InsecureHost)
    }
}

/// Whether `host[:port]` names this machine.
fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    mesh::mail::is_loopback_host(host)
}

/// The outbox of a loopback mesh that names none.
pub fn default_outbox() -> PathBuf {
    std::env::temp_dir().join("neurosphere-portal-outbox")
}

impl Config {
    /// Reads the `PORTAL_*` settings; `public_base_url` is the gateway's (already read). Every
    /// problem is recorded in `env`.
    pub fn from_env(env: &mut Env, public_base_url: Option<&str>) -> Option<Config> {
        let mail_from: Option<String> = env.get(&catalog::PORTAL_MAIL_FROM);
        if let Some(from) = &mail_from
            && let Err(e) = mesh::mail::check_mailbox(from)
        {
            env.problem(&catalog::PORTAL_MAIL_FROM, e);
        }
        let per_minute: Option<u32> = env.get(&catalog::PORTAL_AUTH_POSTS_PER_MINUTE);
        if per_minute == Some(0) {
            env.problem(&catalog::PORTAL_AUTH_POSTS_PER_MINUTE, "must be at least 1");
        }
        let (origin, cookie) = match parse_base_url(public_base_url?) {
            Ok(parsed) => parsed,
            Err(e) => {
                env.problem(&catalog::PUBLIC_BASE_URL, e);
                return None;
            }
        };
        let loopback = cookie == CookieMode::LoopbackHttp;
        let mail = match mesh::mail::transport_from_env(env, loopback) {
            Ok(Some(transport)) => transport,
            // A loopback mesh without either (a developer's, a test's): the system's temporary
            // folder, named in the gateway's startup log. `neurosphere up` names its own.
            Ok(None) if loopback => MailTransport::Outbox(default_outbox()),
            Ok(None) => {
                env.problem(
                    &catalog::PORTAL_SMTP_URL,
                    "required: the portal mails password-reset links (on a loopback PUBLIC_BASE_URL, PORTAL_OUTBOX_DIR may be set instead)",
                );
                return None;
            }
            Err(()) => return None,
        };
        Some(Config {
            base_url: public_base_url?.trim_end_matches('/').to_owned(),
            origin,
            cookie,
            mail,
            mail_from: mail_from?,
            auth_posts_per_minute: per_minute.filter(|n| *n > 0)?,
            request_timeout: Duration::from_secs(10),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_secure_and_plain_http_only_on_loopback() {
        assert_eq!(
            parse_base_url("https://Edge.Example.com/"),
            Ok(("https://edge.example.com".into(), CookieMode::Secure))
        );
        for loopback in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
            "http://127.9.9.9",
        ] {
            assert_eq!(
                parse_base_url(loopback).map(|(_, mode)| mode),
                Ok(CookieMode::LoopbackHttp),
                "{loopback}"
            );
        }
        for insecure in [
            "http://edge.example.com",
            "http://10.0.0.1:8080",
            "http://localhost.evil.example",
            "http://[::2]:80",
        ] {
            assert_eq!(
                parse_base_url(insecure),
                Err(BaseUrlError::InsecureHost),
                "{insecure}"
            );
        }
        assert_eq!(parse_base_url("ftp://x"), Err(BaseUrlError::Scheme));
        assert_eq!(
            parse_base_url("https://x.example/app"),
            Err(BaseUrlError::Shape)
        );
        assert_eq!(
            parse_base_url("https://u@x.example"),
            Err(BaseUrlError::Shape)
        );
    }

    fn read(pairs: &[(&str, &str)], base: &str) -> Result<Config, String> {
        let mut env = Env::from_pairs(pairs.iter().copied());
        let config = Config::from_env(&mut env, Some(base));
        env.finish().map_err(|e| e.to_string())?;
        Ok(config.expect("no problem recorded"))
    }

    #[test]
    fn mail_needs_smtp_except_on_loopback_with_an_outbox() {
        let e = read(&[], "https://edge.example.com").unwrap_err();
        assert!(e.contains("PORTAL_SMTP_URL: required"), "{e}");
        let e = read(
            &[("PORTAL_OUTBOX_DIR", "/tmp/out")],
            "https://edge.example.com",
        )
        .unwrap_err();
        assert!(e.contains("PORTAL_OUTBOX_DIR: allowed only"), "{e}");
        let config = read(
            &[("PORTAL_OUTBOX_DIR", "/tmp/out")],
            "http://127.0.0.1:8080",
        )
        .unwrap();
        assert!(
            matches!(config.mail, MailTransport::Outbox(ref d) if d == &PathBuf::from("/tmp/out"))
        );
        let config = read(
            &[("PORTAL_SMTP_URL", "smtps://u:p@mail.example.com")],
            "https://edge.example.com",
        )
        .unwrap();
        assert!(matches!(config.mail, MailTransport::Smtp(_)));
        assert_eq!(config.origin, "https://edge.example.com");
        let config = read(&[], "http://127.0.0.1:8080").unwrap();
        assert!(matches!(config.mail, MailTransport::Outbox(ref d) if d == &default_outbox()));
        let e = read(&[("PORTAL_OUTBOX_DIR", "/tmp/out")], "http://10.1.2.3").unwrap_err();
        assert!(e.contains("PUBLIC_BASE_URL: plain http://"), "{e}");
    }
}
