//! Outgoing mail, one implementation for every process that sends some (the portal's
//! password-reset links in the gateway, tenant-svc's notices to a tenant's owners), through
//! lettre: SMTP (`smtps://` with TLS from the start, `smtp://` with STARTTLS required unless the
//! server is on loopback), or `.eml` files in an outbox folder (loopback deployments only).
//!
//! [`transport_from_env`] reads and checks the shared settings (`PORTAL_SMTP_URL`,
//! `PORTAL_OUTBOX_DIR`); [`Mailer`] renders nothing itself: each sender writes its own subject
//! and body and hands them to [`Mailer::send`]. An SMTP conversation is cut after
//! [`SMTP_TIMEOUT`], so a hung server fails a send instead of holding it.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
};
use secrecy::{ExposeSecret as _, SecretString};

use crate::settings::{Env, catalog};

/// Longest SMTP conversation step before a send fails.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// An SMTP server (`smtp://` with STARTTLS or `smtps://`), credentials in the URL.
    Smtp(SecretString),
    /// A local folder, one `.eml` file per message (loopback deployments only).
    Outbox(PathBuf),
}

/// Host part of an `smtp(s)://[user:password@]host[:port][/...][?...]` URL.
fn smtp_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("smtps://")
        .or_else(|| url.strip_prefix("smtp://"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then_some(host)
}

/// Whether `host` (a name or an address, IPv6 without brackets) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Whether a public base URL is plain `http://` to a loopback host (a developer's or a test's
/// mesh): the only deployments where mail may go to an outbox folder.
pub fn is_loopback_http(base_url: &str) -> bool {
    let Some(rest) = base_url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    is_loopback_host(host)
}

/// The URL lettre is given: an `smtp://` URL to a host off this machine gets `tls=required`
/// (STARTTLS or fail) unless it says otherwise, so credentials never cross a network in clear.
fn effective_smtp_url(url: &str) -> String {
    let plain_remote = url.starts_with("smtp://")
        && smtp_host(url).is_some_and(|h| !is_loopback_host(h))
        && !url.contains("tls=");
    if !plain_remote {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}tls=required")
}

/// Checks an SMTP URL setting (without printing it: it holds a password).
pub fn check_smtp_url(url: &SecretString) -> Result<(), &'static str> {
    let url = url.expose_secret();
    if !(url.starts_with("smtps://") || url.starts_with("smtp://")) {
        return Err("must start with smtp:// or smtps://");
    }
    if smtp_host(url).is_none() {
        return Err("names no host");
    }
    if url.contains("tls=none") && smtp_host(url).is_some_and(|h| !is_loopback_host(h)) {
        return Err("tls=none is allowed only to a loopback host");
    }
    AsyncSmtpTransport::<Tokio1Executor>::from_url(&effective_smtp_url(url))
        .map(|_| ())
        .map_err(|_| "is not a valid SMTP URL (smtp[s]://user:password@host[:port])")
}

/// Checks a sender setting (`PORTAL_MAIL_FROM`): a mailbox such as `Acme <no-reply@acme.example>`.
/// Checked at start-up, because a sender that does not parse fails every send.
pub fn check_mailbox(from: &str) -> Result<(), &'static str> {
    from.parse::<Mailbox>()
        .map(|_| ())
        .map_err(|_| "is not a mailbox such as `Acme <no-reply@acme.example>`")
}

/// Reads `PORTAL_SMTP_URL` and `PORTAL_OUTBOX_DIR`: `Ok(None)` when neither is set (each caller
/// decides what that means), `Err(())` after recording the problem in `env` (both set, a bad
/// URL, an outbox on a deployment that is not loopback, as `loopback` says).
#[allow(clippy::result_unit_err)]
pub fn transport_from_env(env: &mut Env, loopback: bool) -> Result<Option<MailTransport>, ()> {
    let smtp = env.optional_secret(&catalog::PORTAL_SMTP_URL);
    let outbox: Option<PathBuf> = env.optional(&catalog::PORTAL_OUTBOX_DIR);
    match (smtp, outbox) {
        (Some(_), Some(_)) => {
            env.problem(
                &catalog::PORTAL_OUTBOX_DIR,
                "set together with PORTAL_SMTP_URL: choose one (the outbox is for loopback development only)",
            );
            Err(())
        }
        (Some(url), None) => match check_smtp_url(&url) {
            Ok(()) => Ok(Some(MailTransport::Smtp(url))),
            Err(e) => {
                env.problem(&catalog::PORTAL_SMTP_URL, e);
                Err(())
            }
        },
        (None, Some(dir)) if loopback => Ok(Some(MailTransport::Outbox(dir))),
        (None, Some(_)) => {
            env.problem(
                &catalog::PORTAL_OUTBOX_DIR,
                "allowed only when PUBLIC_BASE_URL is a loopback address; set PORTAL_SMTP_URL",
            );
            Err(())
        }
        (None, None) => Ok(None),
    }
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
    /// The SMTP URL was refused when building (already reported by the settings check).
    Broken,
}

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The mail itself cannot be built (the sender or the recipient is not a mailbox): sending
    /// it again cannot help.
    #[error("{0}")]
    Unsendable(&'static str),
    /// The server (or the outbox folder) refused or did not answer: worth another try.
    #[error("{0}")]
    Transport(String),
}

/// Sends plain-text mail from one sender.
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Option<Mailbox>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.transport {
            Transport::Smtp(_) => "smtp",
            Transport::Outbox(_) => "outbox",
            Transport::Broken => "broken",
        };
        f.debug_struct("Mailer").field("transport", &kind).finish()
    }
}

impl Mailer {
    /// A mailer sending through `transport` as `from` (a mailbox such as
    /// `Acme <no-reply@acme.example>`; one that does not parse fails every send, so settings
    /// check it with [`check_mailbox`]). Call it inside a Tokio runtime: lettre's SMTP
    /// connection pool starts a task.
    pub fn new(transport: &MailTransport, from: &str) -> Mailer {
        let transport = match transport {
            MailTransport::Smtp(url) => {
                match AsyncSmtpTransport::<Tokio1Executor>::from_url(&effective_smtp_url(
                    url.expose_secret(),
                )) {
                    Ok(builder) => Transport::Smtp(builder.timeout(Some(SMTP_TIMEOUT)).build()),
                    Err(_) => Transport::Broken,
                }
            }
            MailTransport::Outbox(dir) => Transport::Outbox(dir.clone()),
        };
        Mailer {
            transport,
            from: from.parse().ok(),
        }
    }

    /// Sends one mail to `to` and waits for the outcome.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let from = self
            .from
            .clone()
            .ok_or(MailError::Unsendable("the sender is not a mailbox"))?;
        let to: Mailbox = to
            .parse()
            .map_err(|_| MailError::Unsendable("the recipient is not a mailbox"))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .body(body)
            .map_err(|_| MailError::Unsendable("the mail cannot be built"))?;
        let transport = |e: &dyn std::fmt::Display| MailError::Transport(e.to_string());
        match &self.transport {
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| transport(&e)),
            Transport::Outbox(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| MailError::Transport(format!("outbox folder: {e}")))?;
                AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| transport(&e))
            }
            Transport::Broken => Err(MailError::Unsendable("the SMTP URL is not valid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_plain_smtp_requires_starttls() {
        assert_eq!(
            effective_smtp_url("smtp://u:p@mail.example.com:587"),
            "smtp://u:p@mail.example.com:587?tls=required"
        );
        assert_eq!(
            effective_smtp_url("smtp://127.0.0.1:2525"),
            "smtp://127.0.0.1:2525"
        );
        assert_eq!(
            effective_smtp_url("smtps://u:p@mail.example.com"),
            "smtps://u:p@mail.example.com"
        );
        let check = |u: &str| check_smtp_url(&SecretString::from(u.to_owned()));
        assert!(check("smtps://u:p@mail.example.com").is_ok());
        assert!(check("smtp://127.0.0.1:2525").is_ok());
        assert!(check("http://mail.example.com").is_err());
        assert!(check("smtp://u:p@mail.example.com?tls=none").is_err());
        assert!(check("smtp://").is_err());
        assert!(check_mailbox("NeuroSphere <no-reply@localhost>").is_ok());
        assert!(check_mailbox("no-reply@acme.example").is_ok());
        assert!(check_mailbox("NeuroSphere").is_err());
    }

    #[test]
    fn only_plain_http_to_this_machine_is_loopback() {
        for yes in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:80/",
        ] {
            assert!(is_loopback_http(yes), "{yes}");
        }
        for no in [
            "https://127.0.0.1",
            "http://10.0.0.1",
            "http://edge.example.com",
            "",
        ] {
            assert!(!is_loopback_http(no), "{no}");
        }
    }
}
