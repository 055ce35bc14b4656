//! memory-svc's settings: the typed environment, read once at start-up with every problem
//! reported together (`mesh::settings`), secrets never printed.

use std::time::Duration;

use mesh::server::ServiceSettings;
use mesh::settings::{Env, SettingsError, catalog};
use secrecy::{ExposeSecret, SecretSlice};

use crate::server::NAME;
use crate::summarizer;

/// memory-svc's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Ports, database, identity, drain deadline.
    pub common: ServiceSettings,
    /// The OpenAI summarizer, when `OPENAI_API_KEY` is set; the heuristic one otherwise.
    pub openai: Option<summarizer::OpenAiConfig>,
    /// How often the background task purges expired memories (0: never).
    pub purge_interval: Duration,
    /// Key of the audit log's caller hash (`MEMORY_AUDIT_HASH_KEY`); the database's when unset.
    pub audit_hash_key: Option<SecretSlice<u8>>,
}

/// Shortest accepted `MEMORY_AUDIT_HASH_KEY`, in bytes.
pub const MIN_AUDIT_KEY_LEN: usize = 32;

impl Settings {
    /// Reads the environment, reporting every problem together.
    pub fn from_env(mut env: Env) -> Result<Self, SettingsError> {
        let common = ServiceSettings::from_env(
            &mut env,
            NAME,
            &catalog::MEMORY_SVC_PORT,
            &catalog::MEMORY_SVC_ADMIN_PORT,
        );
        let api_key = env.optional_secret(&catalog::OPENAI_API_KEY);
        let base_url: Option<String> = env.get(&catalog::OPENAI_API_BASE_URL);
        let model: Option<String> = env.get(&catalog::OPENAI_SUMMARY_MODEL);
        if let Some(url) = &base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            env.problem(
                &catalog::OPENAI_API_BASE_URL,
                "must start with http:// or https://",
            );
        }
        let purge_interval = env.seconds(&catalog::MEMORY_PURGE_INTERVAL_SECONDS);
        let audit_hash_key = env.optional_secret(&catalog::MEMORY_AUDIT_HASH_KEY);
        if let Some(k) = &audit_hash_key
            && k.expose_secret().len() < MIN_AUDIT_KEY_LEN
        {
            env.problem(
                &catalog::MEMORY_AUDIT_HASH_KEY,
                format!("must be at least {MIN_AUDIT_KEY_LEN} bytes"),
            );
        }
        env.finish()?;
        let openai = api_key.map(|api_key| summarizer::OpenAiConfig {
            base_url: base_url.clone().unwrap_or_default(),
            model: model.clone().unwrap_or_default(),
            api_key,
            timeout: Duration::from_secs(30),
        });
        Ok(Self {
            common: common.expect("present when finish() succeeded"),
            openai,
            purge_interval: purge_interval.expect("present when finish() succeeded"),
            audit_hash_key: audit_hash_key
                .map(|k| SecretSlice::from(k.expose_secret().as_bytes().to_vec())),
        })
    }
}
