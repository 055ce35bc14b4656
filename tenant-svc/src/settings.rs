//! tenant-svc's settings: the typed environment, read once at start-up with every problem
//! reported together (`mesh::settings`), secrets never printed.

use mesh::server::ServiceSettings;
use mesh::settings::{Env, SettingsError, catalog};
use secrecy::{ExposeSecret as _, SecretSlice, SecretString};

use crate::account::AccountConfig;
use crate::notice::OwnerMail;

use crate::server::NAME;

/// tenant-svc's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Ports, database, identity, drain deadline.
    pub common: ServiceSettings,
    /// Key of legacy HS256 tokens (`JWT_SECRET_KEY`); legacy exchange is refused when unset.
    pub legacy_secret: Option<SecretString>,
    /// Longest legacy token accepted (`JWT_MAX_LIFETIME_SECONDS`).
    pub legacy_max_lifetime: std::time::Duration,
    /// `WEBHOOK_ALLOW_INSECURE`: accept `http://` webhook URLs and CORS origins, and webhook
    /// hosts that are localhost or internal addresses (development and tests only).
    pub webhook_allow_insecure: bool,
    /// memory-svc's URL (`MEMORY_SVC_URL`; replicas comma-separated), for tenant erasure.
    pub memory_url: String,
    /// media-svc's URL (`MEDIA_SVC_URL`; replicas comma-separated), for tenant erasure.
    pub media_url: String,
    /// Portal sessions' lifetimes (`PORTAL_SESSION_IDLE_SECONDS`, `PORTAL_SESSION_MAX_SECONDS`),
    /// the account hash key (`TENANT_ACCOUNT_HASH_KEY`) and the owners' mail (`PORTAL_SMTP_URL`
    /// or `PORTAL_OUTBOX_DIR`, `PORTAL_MAIL_FROM`, `PUBLIC_BASE_URL`).
    pub accounts: AccountConfig,
}

/// The mail to owners (`NotifyOwners`): the shared mail settings (`PORTAL_SMTP_URL` or, on a
/// loopback `PUBLIC_BASE_URL`, `PORTAL_OUTBOX_DIR`; `PORTAL_MAIL_FROM`) and the base URL its
/// link starts with. `Some(None)` when neither transport is set (mail not configured), `None`
/// after a problem was recorded. Runs inside the binary's Tokio runtime (the SMTP pool's task).
fn owner_mail(env: &mut Env) -> Option<Option<OwnerMail>> {
    let base = env.get::<String>(&catalog::PUBLIC_BASE_URL)?;
    let base = base.trim_end_matches('/').to_owned();
    let from = env.get::<String>(&catalog::PORTAL_MAIL_FROM)?;
    let loopback = mesh::mail::is_loopback_http(&base);
    let transport = mesh::mail::transport_from_env(env, loopback).ok()?;
    if transport.is_some()
        && let Err(e) = mesh::mail::check_mailbox(&from)
    {
        env.problem(&catalog::PORTAL_MAIL_FROM, e);
        return None;
    }
    if transport.is_some() && !loopback && !base.starts_with("https://") {
        env.problem(
            &catalog::PUBLIC_BASE_URL,
            "must be https:// (or plain http:// to a loopback host): owners' mail links to it",
        );
        return None;
    }
    Some(transport.map(|t| OwnerMail {
        mailer: mesh::mail::Mailer::new(&t, &from),
        base_url: base,
    }))
}

/// Shortest accepted `TENANT_ACCOUNT_HASH_KEY`, in bytes.
const MIN_ACCOUNT_KEY_LEN: usize = 32;

impl Settings {
    /// Reads the environment, reporting every problem together.
    pub fn from_env(mut env: Env) -> Result<Self, SettingsError> {
        let common = ServiceSettings::from_env(
            &mut env,
            NAME,
            &catalog::TENANT_SVC_PORT,
            &catalog::TENANT_SVC_ADMIN_PORT,
        );
        let legacy_secret = env.optional_secret(&catalog::JWT_SECRET_KEY);
        if let Some(secret) = &legacy_secret
            && let Err(e) = mesh::auth::LegacyVerifier::new(secret)
        {
            env.problem(&catalog::JWT_SECRET_KEY, e);
        }
        let legacy_max_lifetime = env.seconds(&catalog::JWT_MAX_LIFETIME_SECONDS);
        let webhook_allow_insecure = env.get::<bool>(&catalog::WEBHOOK_ALLOW_INSECURE);
        let memory_url = env.get::<String>(&catalog::MEMORY_SVC_URL);
        let media_url = env.get::<String>(&catalog::MEDIA_SVC_URL);
        let account_key = env.optional_secret(&catalog::TENANT_ACCOUNT_HASH_KEY);
        if let Some(k) = &account_key
            && k.expose_secret().len() < MIN_ACCOUNT_KEY_LEN
        {
            env.problem(
                &catalog::TENANT_ACCOUNT_HASH_KEY,
                format!("must be at least {MIN_ACCOUNT_KEY_LEN} bytes"),
            );
        }
        let session_idle = env.seconds(&catalog::PORTAL_SESSION_IDLE_SECONDS);
        let session_max = env.seconds(&catalog::PORTAL_SESSION_MAX_SECONDS);
        if let (Some(idle), Some(max)) = (session_idle, session_max)
            && (idle.is_zero() || max < idle)
        {
            env.problem(
                &catalog::PORTAL_SESSION_IDLE_SECONDS,
                "must be at least 1 and at most PORTAL_SESSION_MAX_SECONDS",
            );
        }
        let owner_mail = owner_mail(&mut env);
        let auto_approve = env.get::<bool>(&catalog::TENANT_SIGNUP_AUTO_APPROVE);
        let per_address = env.get::<i64>(&catalog::TENANT_SIGNUPS_PER_ADDRESS_PER_DAY);
        if per_address.is_some_and(|n| n < 0) {
            env.problem(
                &catalog::TENANT_SIGNUPS_PER_ADDRESS_PER_DAY,
                "must be 0 or more",
            );
        }
        for line in env.describe() {
            tracing::debug!(setting = %line, "setting");
        }
        env.finish()?;
        Ok(Self {
            common: common.expect("present when finish() succeeded"),
            legacy_secret,
            legacy_max_lifetime: legacy_max_lifetime.expect("present when finish() succeeded"),
            webhook_allow_insecure: webhook_allow_insecure
                .expect("present when finish() succeeded"),
            memory_url: memory_url.expect("present when finish() succeeded"),
            media_url: media_url.expect("present when finish() succeeded"),
            accounts: AccountConfig {
                session_idle: session_idle.expect("present when finish() succeeded"),
                session_max: session_max.expect("present when finish() succeeded"),
                hash_key: account_key
                    .map(|k| SecretSlice::from(k.expose_secret().as_bytes().to_vec())),
                owner_mail: owner_mail.flatten(),
                operators: crate::operator::OperatorConfig::default(),
                signup: crate::account::SignupConfig {
                    auto_approve: auto_approve.expect("present when finish() succeeded"),
                    per_address_per_day: per_address.expect("present when finish() succeeded"),
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(pairs: &[(&str, &str)]) -> String {
        let mut env = Env::from_pairs(pairs.iter().copied());
        let mail = owner_mail(&mut env);
        match env.finish() {
            Ok(()) => format!("ok: {}", mail.flatten().is_some()),
            Err(e) => e.to_string(),
        }
    }

    // In a runtime, as the binary reads its settings: an SMTP mailer's pool runs a task.
    #[tokio::test]
    async fn owners_mail_is_off_without_a_transport_and_checked_with_one() {
        assert_eq!(problems(&[]), "ok: false");
        assert_eq!(problems(&[("PORTAL_OUTBOX_DIR", "/tmp/out")]), "ok: true");
        let bad_from = problems(&[
            ("PORTAL_OUTBOX_DIR", "/tmp/out"),
            ("PORTAL_MAIL_FROM", "NeuroSphere"),
        ]);
        assert!(bad_from.contains("PORTAL_MAIL_FROM"), "{bad_from}");
        let remote = problems(&[
            ("PUBLIC_BASE_URL", "https://edge.example.com"),
            ("PORTAL_OUTBOX_DIR", "/tmp/out"),
        ]);
        assert!(remote.contains("PORTAL_OUTBOX_DIR"), "{remote}");
        let plain = problems(&[
            ("PUBLIC_BASE_URL", "http://edge.example.com"),
            ("PORTAL_SMTP_URL", "smtps://u:p@mail.example.com"),
        ]);
        assert!(plain.contains("PUBLIC_BASE_URL"), "{plain}");
        assert_eq!(
            problems(&[
                ("PUBLIC_BASE_URL", "https://edge.example.com"),
                ("PORTAL_SMTP_URL", "smtps://u:p@mail.example.com"),
            ]),
            "ok: true"
        );
    }
}
