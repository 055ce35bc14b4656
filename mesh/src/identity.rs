//! A service's identity in the mesh: its own signing key (to mint the service tokens it sends,
//! and for tenant-svc the tenant tokens it issues) and the trust bundle of public keys it
//! accepts.
//!
//! In production both come from files (`MESH_SIGNING_KEY_FILE`, `MESH_SIGNING_KEY_ID`,
//! `MESH_TRUSTED_KEYS_FILE`), typically mounted from a secret store. For local runs and tests,
//! [`DevKeys`] generates one key per service and a bundle trusting all of them; `neurosphere up`
//! writes them under `.neurosphere/keys/` once and reuses them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::auth::{
    AuthError, Minter, SigningKey, StreamCredentials, TokenSource, TrustedKeys, Verifier,
};
use crate::settings::{Env, catalog};

/// Service names: the `iss` of a service's tokens and the `aud` of tokens addressed to it.
pub mod names {
    /// The customer, configuration and token service (the only tenant-token issuer).
    pub const TENANT_SVC: &str = "tenant-svc";
    /// The memory service.
    pub const MEMORY_SVC: &str = "memory-svc";
    /// The live-call service.
    pub const MEDIA_SVC: &str = "media-svc";
    /// The HTTP/WebSocket edge.
    pub const GATEWAY: &str = "gateway";
    /// Operators' command-line tool (service tokens for admin RPCs).
    pub const OPERATOR: &str = "neurosphere-cli";
    /// Every name that holds a key in a development trust bundle.
    pub const ALL: [&str; 5] = [TENANT_SVC, MEMORY_SVC, MEDIA_SVC, GATEWAY, OPERATOR];
}

/// A service's signing key and trusted keys.
#[derive(Clone)]
pub struct Identity {
    minter: Arc<Minter>,
    trusted: TrustedKeys,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("issuer", &self.minter.issuer())
            .field("kid", &self.minter.kid())
            .field("trusted_keys", &self.trusted.len())
            .finish()
    }
}

/// Where an identity is loaded from.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    /// PKCS#8 PEM private key.
    pub signing_key: PathBuf,
    /// Its `kid`.
    pub kid: String,
    /// Trust bundle JSON.
    pub trusted_keys: PathBuf,
}

impl IdentityFiles {
    /// Reads the three settings, recording problems in `env`.
    pub fn from_env(env: &mut Env) -> Option<Self> {
        let signing_key = env.get::<PathBuf>(&catalog::MESH_SIGNING_KEY_FILE);
        let kid = env.get::<String>(&catalog::MESH_SIGNING_KEY_ID);
        let trusted_keys = env.get::<PathBuf>(&catalog::MESH_TRUSTED_KEYS_FILE);
        Some(Self {
            signing_key: signing_key?,
            kid: kid?,
            trusted_keys: trusted_keys?,
        })
    }
}

/// Why an identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key or bundle is invalid.
    #[error("{what}: {source}")]
    Invalid {
        /// Which file or key.
        what: String,
        /// The cause.
        source: AuthError,
    },
    /// The signing key is not listed in the trust bundle, so peers could not verify it.
    #[error("signing key `{0}` is not listed in the trust bundle")]
    NotTrusted(String),
}

impl Identity {
    /// Builds an identity from a key and a bundle.
    pub fn new(key: SigningKey, trusted: TrustedKeys) -> Self {
        Self {
            minter: Arc::new(Minter::new(key)),
            trusted,
        }
    }

    /// Loads the key and bundle files for `issuer` (this service's name).
    pub fn load(issuer: &str, files: &IdentityFiles) -> Result<Self, IdentityError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| IdentityError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let pem = read(&files.signing_key)?;
        let key = SigningKey::from_pkcs8_pem(issuer, &files.kid, &pem).map_err(|source| {
            IdentityError::Invalid {
                what: files.signing_key.display().to_string(),
                source,
            }
        })?;
        let trusted = TrustedKeys::from_json(&read(&files.trusted_keys)?).map_err(|source| {
            IdentityError::Invalid {
                what: files.trusted_keys.display().to_string(),
                source,
            }
        })?;
        match trusted.get(key.kid()) {
            Some(pk) if *pk == key.public_key() => {}
            _ => return Err(IdentityError::NotTrusted(key.kid().to_owned())),
        }
        Ok(Self::new(key, trusted))
    }

    /// The minter holding this service's private key.
    pub fn minter(&self) -> &Arc<Minter> {
        &self.minter
    }

    /// The keys this service accepts.
    pub fn trusted(&self) -> &TrustedKeys {
        &self.trusted
    }

    /// A verifier for tokens addressed to `audience` (this service's name).
    pub fn verifier(&self, audience: &str) -> Verifier {
        Verifier::new(audience, self.trusted.clone())
    }

    /// This service's stream tickets and grants (media-svc's), signed with its key.
    pub fn stream_credentials(&self) -> StreamCredentials {
        StreamCredentials::new(self.minter.clone(), self.trusted.clone())
    }

    /// Service tokens from this service to `audience` with `scopes`, minted on demand.
    pub fn service_tokens(&self, audience: &str, scopes: &[&str]) -> TokenSource {
        TokenSource::service(self.minter.clone(), audience, scopes)
    }
}

/// Development keys: one per name in [`names::ALL`] and a bundle trusting them all.
pub struct DevKeys {
    keys: Vec<SigningKey>,
    trusted: TrustedKeys,
}

impl DevKeys {
    /// Fresh random keys.
    pub fn generate() -> Self {
        let keys: Vec<SigningKey> = names::ALL.iter().map(|n| SigningKey::generate(n)).collect();
        let mut trusted = TrustedKeys::new();
        for k in &keys {
            trusted.insert(k.public_key());
        }
        Self { keys, trusted }
    }

    /// The identity of `name` (one of [`names::ALL`]).
    pub fn identity(&self, name: &str) -> Identity {
        let key = self
            .keys
            .iter()
            .find(|k| k.issuer() == name)
            .unwrap_or_else(|| panic!("no development key for {name}"));
        let pem = key.to_pkcs8_pem();
        let copy = SigningKey::from_pkcs8_pem(name, key.kid(), pem.expose_secret())
            .expect("round trip of a generated key");
        Identity::new(copy, self.trusted.clone())
    }

    /// Writes `<dir>/<name>.pem` (mode 0600) for each key and `<dir>/trusted-keys.json`.
    /// Returns the files of each name.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<(String, IdentityFiles)>> {
        std::fs::create_dir_all(dir)?;
        let bundle = dir.join("trusted-keys.json");
        std::fs::write(&bundle, self.trusted.to_json())?;
        let mut out = Vec::new();
        for k in &self.keys {
            let path = dir.join(format!("{}.pem", k.issuer()));
            write_private(&path, k.to_pkcs8_pem().expose_secret())?;
            std::fs::write(dir.join(format!("{}.kid", k.issuer())), k.kid())?;
            out.push((
                k.issuer().to_owned(),
                IdentityFiles {
                    signing_key: path,
                    kid: k.kid().to_owned(),
                    trusted_keys: bundle.clone(),
                },
            ));
        }
        Ok(out)
    }

    /// Reads keys written by [`DevKeys::write`].
    pub fn read(dir: &Path) -> Result<Self, IdentityError> {
        let mut keys = Vec::new();
        let mut trusted = TrustedKeys::new();
        for name in names::ALL {
            let files = IdentityFiles {
                signing_key: dir.join(format!("{name}.pem")),
                kid: std::fs::read_to_string(dir.join(format!("{name}.kid")))
                    .map_err(|source| IdentityError::Read {
                        path: dir.join(format!("{name}.kid")),
                        source,
                    })?
                    .trim()
                    .to_owned(),
                trusted_keys: dir.join("trusted-keys.json"),
            };
            let id = Identity::load(name, &files)?;
            trusted = id.trusted.clone();
            let pem = std::fs::read_to_string(&files.signing_key).map_err(|source| {
                IdentityError::Read {
                    path: files.signing_key.clone(),
                    source,
                }
            })?;
            keys.push(
                SigningKey::from_pkcs8_pem(name, &files.kid, &pem).map_err(|source| {
                    IdentityError::Invalid {
                        what: files.signing_key.display().to_string(),
                        source,
                    }
                })?,
            );
        }
        Ok(Self { keys, trusted })
    }

    /// The shared trust bundle.
    pub fn trusted(&self) -> &TrustedKeys {
        &self.trusted
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())
}

/// Default lifetime of tokens the CLI mints for operators.
pub const OPERATOR_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_keys_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::generate();
        let files = keys.write(dir.path()).unwrap();
        assert_eq!(files.len(), names::ALL.len());
        let (_, tenant_files) = files.iter().find(|(n, _)| n == names::TENANT_SVC).unwrap();
        let id = Identity::load(names::TENANT_SVC, tenant_files).unwrap();
        let token = id
            .minter()
            .mint_service(
                names::MEMORY_SVC,
                &["memory:admin"],
                Duration::from_secs(60),
            )
            .unwrap();
        let reread = DevKeys::read(dir.path()).unwrap();
        let caller = reread
            .identity(names::MEMORY_SVC)
            .verifier(names::MEMORY_SVC)
            .verify(&token)
            .unwrap();
        assert!(matches!(caller, crate::auth::Caller::Service(_)));
        let dbg = format!("{id:?}");
        assert!(!dbg.contains("PRIVATE"), "{dbg}");
    }

    #[test]
    fn a_key_missing_from_the_bundle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::generate();
        let files = keys.write(dir.path()).unwrap();
        // Replace the bundle with one that lacks the gateway's key.
        let mut other = TrustedKeys::new();
        for k in keys.trusted().iter() {
            if k.issuer() != names::GATEWAY {
                other.insert(k.clone());
            }
        }
        std::fs::write(dir.path().join("trusted-keys.json"), other.to_json()).unwrap();
        let (_, gw) = files.iter().find(|(n, _)| n == names::GATEWAY).unwrap();
        let err = Identity::load(names::GATEWAY, gw).unwrap_err();
        assert!(matches!(err, IdentityError::NotTrusted(_)), "{err}");
    }
}

/// Every scope of the mesh. Which RPC needs which is declared in each service's `policy()`.
pub mod scope {
    /// tenant-svc admin RPCs (service tokens).
    pub const TENANT_ADMIN: &str = "tenant:admin";
    /// `EdgeService.ResolveNumber` (service tokens: the gateway).
    pub const TENANT_RESOLVE: &str = "tenant:resolve";
    /// `EdgeService.ExchangeLegacyToken` (service tokens: the gateway).
    pub const TENANT_EXCHANGE: &str = "tenant:exchange";
    /// `AccountService` (service tokens: the gateway, for the tenant portal): sign-in,
    /// invitations, password resets, and exchanging a portal session for a tenant token.
    pub const TENANT_PORTAL: &str = "tenant:portal";
    /// `TenantAdminService.NotifyOwners` only (service tokens: media-svc telling a tenant's
    /// owners that a caller left a message).
    pub const TENANT_NOTIFY_OWNERS: &str = "tenant:notify-owners";
    /// `OperatorService` (service tokens: the gateway's operator console): an operator's
    /// sign-in and every console action, each verifying the operator's session in tenant-svc
    /// first (the token alone opens nothing without a session).
    pub const TENANT_OPERATOR_CONSOLE: &str = "tenant:operator-console";
    /// Read the token's own customer and profile (tenant tokens).
    pub const TENANT_READ: &str = "tenant:read";
    /// Change the token's own configuration (tenant tokens).
    pub const TENANT_WRITE: &str = "tenant:write";
    /// Sign post-call webhook deliveries with the tenant's secret (tenant tokens held by
    /// media-svc's delivery worker).
    pub const TENANT_WEBHOOK: &str = "tenant:webhook";
    /// Manage the customer's portal users and invitations (tenant tokens: a portal owner).
    pub const TENANT_TEAM: &str = "tenant:team";
    /// Manage the customer's API keys (tenant tokens: a portal owner).
    pub const TENANT_KEYS: &str = "tenant:keys";
    /// Read the customer's audit log (tenant tokens: a portal owner).
    pub const TENANT_AUDIT: &str = "tenant:audit";
    /// Read caller memory (tenant tokens).
    pub const MEMORY_READ: &str = "memory:read";
    /// Write caller memory and record calls (tenant tokens).
    pub const MEMORY_WRITE: &str = "memory:write";
    /// Export a caller's memory (tenant tokens).
    pub const MEMORY_EXPORT: &str = "memory:export";
    /// Erase a caller's memory (tenant tokens).
    pub const MEMORY_ERASE: &str = "memory:erase";
    /// List the tenant's memory-svc audit entries (tenant tokens tenant-svc mints for itself
    /// while gathering the tenant's audit log).
    pub const MEMORY_AUDIT: &str = "memory:audit";
    /// memory-svc admin RPCs (service tokens: the operator).
    pub const MEMORY_ADMIN: &str = "memory:admin";
    /// memory-svc `EraseTenant` only (service tokens: tenant-svc fanning out a tenant
    /// erasure the operator asked for).
    pub const MEMORY_ERASE_TENANT: &str = "memory:erase-tenant";
    /// Register calls and apply status callbacks (tenant tokens).
    pub const MEDIA_CALLS: &str = "media:calls";
    /// Exchange a call's stream ticket for a stream grant (`OpenStream`; service tokens: the
    /// gateway).
    pub const MEDIA_STREAM_OPEN: &str = "media:stream-open";
    /// Stream a live call with a stream grant (`StreamCall`; service tokens: the gateway).
    pub const MEDIA_STREAM: &str = "media:stream";
    /// Read calls, transcripts, usage (tenant tokens).
    pub const MEDIA_READ: &str = "media:read";
    /// Export a caller's calls (tenant tokens).
    pub const MEDIA_EXPORT: &str = "media:export";
    /// Erase a caller's calls (tenant tokens).
    pub const MEDIA_ERASE: &str = "media:erase";
    /// Place outbound calls (tenant tokens).
    pub const MEDIA_OUTBOUND: &str = "media:outbound";
    /// The tenant's post-call webhook deliveries: list them, replay dead letters (tenant tokens:
    /// the portal's owners).
    pub const MEDIA_WEBHOOKS: &str = "media:webhooks";
    /// Render the agent's instructions as a call would send them, from the saved configuration
    /// or an unsaved draft (`RenderInstructions`; tenant tokens: the portal's owners).
    pub const MEDIA_PREVIEW: &str = "media:preview";
    /// List the tenant's media-svc audit rows (tenant tokens tenant-svc mints for itself while
    /// gathering the tenant's audit log).
    pub const MEDIA_AUDIT: &str = "media:audit";
    /// Listen to the tenant's call recordings (`ReadRecording`; tenant tokens: the portal's
    /// owners and staff, and tokens minted with `neurosphere token mint`). Deliberately not a
    /// developer scope: an API key never reaches the audio.
    pub const MEDIA_RECORDINGS: &str = "media:recordings";
    /// The tenant's callback tasks (messages callers left): list them, mark them done
    /// (tenant tokens: the portal's owners and staff).
    pub const MEDIA_MESSAGES: &str = "media:messages";
    /// media-svc admin RPCs (service tokens: the operator).
    pub const MEDIA_ADMIN: &str = "media:admin";
    /// media-svc `EraseTenant` only (service tokens: tenant-svc fanning out a tenant erasure).
    pub const MEDIA_ERASE_TENANT: &str = "media:erase-tenant";
    /// media-svc `CountDeadLetters` only (service tokens: tenant-svc, for the operator
    /// console's dead-letter page): counts per customer id, no event.
    pub const MEDIA_DEAD_LETTERS: &str = "media:dead-letters";
    /// media-svc `PreparePrompts` only (service tokens: tenant-svc, after a change to a
    /// tenant's prompt texts or agent voice commits).
    pub const MEDIA_PREPARE_PROMPTS: &str = "media:prepare-prompts";
    /// The tenant's own monthly bill and its CSV (`BillingService`; tenant tokens: the portal's
    /// owners).
    pub const MEDIA_BILLING: &str = "media:billing";
    /// media-svc `BillingAdminService` only: packages, rate cards, assignments and every
    /// tenant's bills (service tokens: tenant-svc acting for the operator console).
    pub const MEDIA_BILLING_ADMIN: &str = "media:billing-admin";

    /// The tenant's own phone numbers at Twilio: search with prices, buy, list, release
    /// (`NumberService`; tenant tokens: the portal's owners).
    pub const MEDIA_NUMBERS: &str = "media:numbers";
    /// `NumberAdminService` for tenant-svc acting for the operator console, porting and
    /// offboarding (service tokens issued by tenant-svc only).
    pub const MEDIA_NUMBERS_ADMIN: &str = "media:numbers-admin";
    /// `TenantAdminService.AssignPhoneNumber` / `ReleasePhoneNumber` only (service tokens issued
    /// by media-svc only: routing the numbers it buys, imports and releases).
    pub const TENANT_NUMBERS: &str = "tenant:numbers";

    /// Scopes a tenant token may carry.
    pub const TENANT_SCOPES: &[&str] = &[
        TENANT_READ,
        TENANT_WRITE,
        TENANT_WEBHOOK,
        TENANT_TEAM,
        TENANT_KEYS,
        TENANT_AUDIT,
        MEMORY_READ,
        MEMORY_WRITE,
        MEMORY_EXPORT,
        MEMORY_ERASE,
        MEMORY_AUDIT,
        MEDIA_CALLS,
        MEDIA_READ,
        MEDIA_EXPORT,
        MEDIA_ERASE,
        MEDIA_OUTBOUND,
        MEDIA_WEBHOOKS,
        MEDIA_PREVIEW,
        MEDIA_AUDIT,
        MEDIA_RECORDINGS,
        MEDIA_MESSAGES,
        MEDIA_NUMBERS,
        MEDIA_BILLING,
    ];

    /// Scopes of a portal owner's tenant token (`AccountService.ExchangeSession`): everything a
    /// business does for itself, except placing calls (the portal places none).
    pub const OWNER_SCOPES: &[&str] = &[
        TENANT_READ,
        TENANT_WRITE,
        TENANT_TEAM,
        TENANT_KEYS,
        TENANT_AUDIT,
        MEMORY_READ,
        MEMORY_WRITE,
        MEMORY_EXPORT,
        MEMORY_ERASE,
        MEDIA_READ,
        MEDIA_EXPORT,
        MEDIA_ERASE,
        MEDIA_WEBHOOKS,
        MEDIA_PREVIEW,
        MEDIA_RECORDINGS,
        MEDIA_MESSAGES,
        MEDIA_NUMBERS,
        MEDIA_BILLING,
    ];

    /// Scopes an API key may carry (`TeamService.CreateApiKey`): what a tenant's developer
    /// integrates with (reading the customer, caller memory, calls; writing memory; placing
    /// outbound calls). Never team, key, audit, settings, export or erasure powers.
    pub const DEVELOPER_SCOPES: &[&str] = &[
        TENANT_READ,
        MEMORY_READ,
        MEMORY_WRITE,
        MEDIA_READ,
        MEDIA_OUTBOUND,
    ];

    /// Scopes of a portal staff user's tenant token: calls, transcripts, recordings (to listen,
    /// not to download: the portal keeps downloads to owners) and callers' memory, to read; and
    /// the callback tasks, to work through (staff return the calls).
    pub const STAFF_SCOPES: &[&str] = &[
        TENANT_READ,
        MEMORY_READ,
        MEDIA_READ,
        MEDIA_RECORDINGS,
        MEDIA_MESSAGES,
    ];

    /// A tenant token a service other than the operator may ask `IssueTenantToken` for: the
    /// request's scopes and audiences must be among these, its lifetime at most `max_ttl`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct IssuableToken {
        /// Scopes it may carry.
        pub scopes: &'static [&'static str],
        /// Services it may be addressed to.
        pub audiences: &'static [&'static str],
        /// Longest lifetime.
        pub max_ttl: std::time::Duration,
    }

    /// media-svc's peer token: the agent profile and customer record, webhook signing, the
    /// caller's memory (`media-svc/src/peers.rs`), 15 minutes.
    pub const MEDIA_SVC_PEER_TOKEN: IssuableToken = IssuableToken {
        scopes: &[TENANT_READ, TENANT_WEBHOOK, MEMORY_READ, MEMORY_WRITE],
        audiences: &[super::names::TENANT_SVC, super::names::MEMORY_SVC],
        max_ttl: std::time::Duration::from_secs(15 * 60),
    };

    /// media-svc's half of a caller erasure: `memory:erase` at memory-svc, one minute.
    pub const MEDIA_SVC_ERASE_TOKEN: IssuableToken = IssuableToken {
        scopes: &[MEMORY_ERASE],
        audiences: &[super::names::MEMORY_SVC],
        max_ttl: std::time::Duration::from_secs(60),
    };

    /// Every tenant token media-svc may ask `IssueTenantToken` for; tenant-svc refuses anything
    /// that fits none of them.
    pub const MEDIA_SVC_ISSUABLE: &[IssuableToken] = &[MEDIA_SVC_PEER_TOKEN, MEDIA_SVC_ERASE_TOKEN];

    /// Scopes of the token `ResolveNumber` issues for one call: the gateway registers the call
    /// and applies its status callbacks with it, nothing else. (media-svc obtains its own
    /// tenant tokens for its peer calls; the stream is opened with media-svc's stream
    /// credentials, never with this token.)
    pub const CALL_SCOPES: &[&str] = &[MEDIA_CALLS];
}
