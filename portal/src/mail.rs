//! The portal's outgoing mail (password-reset links), rendered here and sent through the mesh's
//! one mail implementation ([`mesh::mail`]: SMTP with TLS rules, or an `.eml` outbox folder on
//! loopback deployments, see [`crate::config`]). Mail is sent in the background: the page's
//! answer never waits for it, so its timing says nothing about whether the address has an
//! account.

use crate::config::Config;

/// Sends the portal's mail.
#[derive(Clone)]
pub struct Mailer {
    inner: mesh::mail::Mailer,
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
        Mailer {
            inner: mesh::mail::Mailer::new(&config.mail, &config.mail_from),
        }
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
        let subject = format!("Reset your password for {}", mail.business);
        self.inner
            .send(&mail.to, &subject, body)
            .await
            .map_err(|e| e.to_string())
    }
}
