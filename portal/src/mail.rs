//! The portal's outgoing mail (password-reset links), through lettre: SMTP (`smtps://` with
//! TLS from the start, `smtp://` with STARTTLS required unless the server is on loopback), or
//! `.eml` files in an outbox folder (loopback deployments only, see [`crate::config`]). Mail is
//! sent in the background: the page's answer never waits for it, so its timing says nothing
//! about whether the address has an account.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
};
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::{Config, MailTransport};

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

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
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

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
    /// The SMTP URL was refused when building (already reported by the settings check).
    Broken,
}

/// Sends the portal's mail.
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Option<Mailbox>,
}

/// One password-reset mail.
#[derive(Debug, Clone)]
pub struct ResetMail {
    /// The user's address.
    pub to: String,
    /// The business the account belongs to.
    pub business: String,
    /// The one-time link.
    pub link: String,
    /// The customer, for the log line.
    pub customer_id: Option<i64>,
}

impl Mailer {
    /// The mailer the settings describe.
    pub fn new(config: &Config) -> Mailer {
        let transport = match &config.mail {
            MailTransport::Smtp(url) => {
                match AsyncSmtpTransport::<Tokio1Executor>::from_url(&effective_smtp_url(
                    url.expose_secret(),
                )) {
                    Ok(builder) => Transport::Smtp(builder.build()),
                    Err(_) => Transport::Broken,
                }
            }
            MailTransport::Outbox(dir) => Transport::Outbox(dir.clone()),
        };
        Mailer {
            transport,
            from: config.mail_from.parse().ok(),
        }
    }

    fn message(&self, mail: &ResetMail) -> Result<Message, String> {
        let from = self
            .from
            .clone()
            .ok_or("PORTAL_MAIL_FROM is not a mailbox")?;
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|_| "the recipient is not a mailbox")?;
        let body = format!(
            "Hello,\n\n\
             someone (hopefully you) asked to reset the password of your account at {business} \
             in the NeuroSphere portal.\n\n\
             Open this link within an hour to choose a new password:\n\n{link}\n\n\
             The link works once. If you did not ask for this, ignore this mail: your password \
             stays as it is.\n",
            business = mail.business,
            link = mail.link,
        );
        Message::builder()
            .from(from)
            .to(to)
            .subject(format!("Reset your password for {}", mail.business))
            .body(body)
            .map_err(|e| e.to_string())
    }

    /// Sends `mail` in the background; the outcome is logged (without the address).
    pub fn send_reset(&self, mail: ResetMail) {
        let mailer = self.clone();
        tokio::spawn(async move {
            let customer_id = mail.customer_id;
            match mailer.send_now(&mail).await {
                Ok(()) => tracing::info!(?customer_id, "password reset mail sent"),
                Err(e) => {
                    tracing::error!(?customer_id, error = %e, "password reset mail not sent");
                }
            }
        });
    }

    /// Sends `mail` and waits for the outcome.
    pub async fn send_now(&self, mail: &ResetMail) -> Result<(), String> {
        let message = self.message(mail)?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Transport::Outbox(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("outbox folder: {e}"))?;
                AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Transport::Broken => Err("the SMTP URL is not valid".into()),
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
    }
}
