//! API keys (`TeamService.CreateApiKey` / `ListApiKeys` / `RevokeApiKey`, scope `tenant:keys`)
//! and their exchange for tenant tokens (`ApiKeyExchangeService.ExchangeApiKey`, the gateway's
//! `POST /v1/tokens`).
//!
//! A secret is `nsk_` + 32 random bytes as base64url (43 characters). It is returned once; the
//! database keeps its SHA-256 (a secret of 256 random bits needs no slow hash: nothing can be
//! guessed from it) and `hint`, `nsk_` + its last 4 characters. Scopes come from
//! [`scope::DEVELOPER_SCOPES`] only.
//!
//! Revocation: the key stops exchanging at once, and every token already minted from it
//! (subject `api-key:<id>`) is refused by every service within
//! `mesh::auth::revocation::REFRESH_INTERVAL` through the subject revocations of V17. An exchange
//! mints while holding the key's row (`FOR KEY SHARE`); a revocation takes the row `FOR UPDATE`
//! and writes its not-before with the statement's clock after that, so no token minted from a
//! key escapes its revocation.

use std::time::Duration;

use base64::Engine as _;
use mesh::api::tenant::*;
use mesh::auth::TenantCaller;
use mesh::domain::CustomerId;
use mesh::identity::{names, scope};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tonic::{Request, Response};
use uuid::Uuid;

use super::{RpcResult, TenantSvc};
use crate::error::{Result, TenantError};
use crate::store::api_keys::{self, ApiKeyRow, Lock, NewApiKey};
use crate::{store, wire};

/// What every secret starts with (so scanners and people recognise one).
pub const SECRET_PREFIX: &str = "nsk_";
/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;
/// base64url characters of those bytes, unpadded.
const SECRET_CHARS: usize = 43;
/// Token lifetime when a key names none.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Shortest token lifetime of a key.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Longest token lifetime of a key.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Longest key name, in characters.
const MAX_NAME_CHARS: usize = 60;
/// The one answer to any key that does not exchange (malformed, unknown, revoked, suspended).
const REFUSED: &str = "invalid or revoked API key";

/// Audit actions of this module.
pub mod actions {
    /// An API key was created.
    pub const CREATED: &str = "keys.created";
    /// An API key was revoked.
    pub const REVOKED: &str = "keys.revoked";
}

/// The subject of tokens minted from key `id`.
pub fn subject(id: Uuid) -> String {
    format!("api-key:{id}")
}

/// A new secret.
fn generate_secret() -> SecretString {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Whether `s` has the shape of a secret (before any lookup).
fn well_formed(s: &str) -> bool {
    s.strip_prefix(SECRET_PREFIX).is_some_and(|rest| {
        rest.len() == SECRET_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// SHA-256 of the secret's text.
fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// `nsk_` and the secret's last 4 characters.
fn hint(secret: &str) -> String {
    format!("{SECRET_PREFIX}{}", &secret[secret.len() - 4..])
}

/// A key name: trimmed, 1 to 60 characters, no control characters.
fn name(raw: &str) -> Result<String> {
    let name = raw.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(TenantError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

/// The requested scopes, each from the developer set, without repeats, in the set's order.
/// INVALID_ARGUMENT naming `scopes` otherwise (never listing what the caller might hold).
fn scopes(requested: &[String]) -> Result<Vec<String>> {
    if requested.is_empty() {
        return Err(TenantError::invalid(
            "scopes",
            "at least one scope is required",
        ));
    }
    if let Some(bad) = requested
        .iter()
        .find(|s| !scope::DEVELOPER_SCOPES.contains(&s.as_str()))
    {
        return Err(TenantError::invalid(
            "scopes",
            format!(
                "`{}` cannot be given to an API key; allowed: {}",
                bad.chars().take(64).collect::<String>(),
                scope::DEVELOPER_SCOPES.join(", ")
            ),
        ));
    }
    Ok(scope::DEVELOPER_SCOPES
        .iter()
        .filter(|s| requested.iter().any(|r| r == *s))
        .map(|s| (*s).to_owned())
        .collect())
}

/// The key's token lifetime: 15 minutes when unset, else whole seconds from 60 to 3600.
fn token_ttl(d: Option<&prost_types::Duration>) -> Result<Duration> {
    let Some(d) = d else {
        return Ok(DEFAULT_TOKEN_TTL);
    };
    let (min, max) = (MIN_TOKEN_TTL.as_secs(), MAX_TOKEN_TTL.as_secs());
    if d.nanos != 0 || d.seconds < min as i64 || d.seconds > max as i64 {
        return Err(TenantError::invalid(
            "max_token_ttl",
            format!("must be a whole number of seconds from {min} to {max}"),
        ));
    }
    Ok(Duration::from_secs(d.seconds as u64))
}

/// The services a token with `scopes` is addressed to (each scope's prefix names one).
fn audiences(scopes: &[String]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (prefix, service) in [
        ("tenant:", names::TENANT_SVC),
        ("memory:", names::MEMORY_SVC),
        ("media:", names::MEDIA_SVC),
    ] {
        if scopes.iter().any(|s| s.starts_with(prefix)) {
            out.push(service);
        }
    }
    out
}

/// A key id from a request: a UUID (INVALID_ARGUMENT otherwise).
fn key_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| TenantError::invalid("key_id", "must be a key id (a UUID)"))
}

/// The wire form of a key.
pub fn to_pb(k: &ApiKeyRow) -> ApiKey {
    ApiKey {
        id: k.id.to_string(),
        name: k.name.clone(),
        hint: k.hint.clone(),
        scopes: k.scopes.clone(),
        max_token_ttl: Some(prost_types::Duration {
            seconds: i64::from(k.max_token_ttl_seconds),
            nanos: 0,
        }),
        create_time: Some(wire::timestamp(k.created_at)),
        created_by: k.created_by.clone(),
        last_use_time: k.last_used_at.map(wire::timestamp),
        revoke_time: k.revoked_at.map(wire::timestamp),
    }
}

impl TenantSvc {
    /// `TeamService.CreateApiKey`: validates, then stores the key (hashed) and its audit row in
    /// one transaction; the secret is in the answer only.
    pub(super) async fn create_api_key(
        &self,
        caller: &TenantCaller,
        r: CreateApiKeyRequest,
    ) -> Result<CreateApiKeyResponse> {
        let id = caller.customer_id;
        let name = name(&r.name)?;
        let scopes = scopes(&r.scopes)?;
        let ttl = token_ttl(r.max_token_ttl.as_ref())?;
        let secret = generate_secret();
        let hash = secret_hash(secret.expose_secret());
        let hint = hint(secret.expose_secret());
        let key_id = Uuid::new_v4();
        let new = NewApiKey {
            id: key_id,
            name: &name,
            hint: &hint,
            secret_hash: &hash,
            scopes: &scopes,
            max_token_ttl_seconds: ttl.as_secs() as i32,
            created_by: &caller.subject,
        };
        let row = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                store::lock_customer(tx, id).await?;
                let row = api_keys::insert_api_key(tx, id, &new)
                    .await
                    .map_err(super::taken(
                        "an active API key of this tenant has this name",
                    ))?;
                let detail = serde_json::json!({
                    "key_id": key_id.to_string(),
                    "scopes": scopes.join(" "),
                    "max_token_ttl_seconds": ttl.as_secs(),
                });
                store::append_audit(tx, id, &caller.subject, actions::CREATED, &detail).await?;
                Ok::<_, TenantError>(row)
            })
            .await?;
        tracing::info!(customer_id = id.get(), key_id = %key_id, "API key created");
        Ok(CreateApiKeyResponse {
            key: Some(to_pb(&row)),
            secret: secret.expose_secret().to_owned(),
        })
    }

    /// `TeamService.ListApiKeys`.
    pub(super) async fn list_api_keys(&self, caller: &TenantCaller) -> Result<ListApiKeysResponse> {
        let id = caller.customer_id;
        let keys = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| api_keys::list_api_keys(tx, id).await)
            .await?;
        Ok(ListApiKeysResponse {
            keys: keys.iter().map(to_pb).collect(),
        })
    }

    /// `TeamService.RevokeApiKey`: marks the key revoked and revokes its subject's tokens (both
    /// with the audit row, in one transaction). Revoking a revoked key changes nothing.
    pub(super) async fn revoke_api_key(
        &self,
        caller: &TenantCaller,
        r: RevokeApiKeyRequest,
    ) -> Result<RevokeApiKeyResponse> {
        let id = caller.customer_id;
        let key = key_id(&r.key_id)?;
        let (row, changed) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let Some(before) = api_keys::get_api_key(tx, id, key, Lock::Revoke).await? else {
                    return Err(TenantError::NotFound("API key"));
                };
                if before.revoked_at.is_some() {
                    return Ok((before, false));
                }
                let after = api_keys::revoke_api_key(tx, id, key)
                    .await?
                    .ok_or(TenantError::NotFound("API key"))?;
                store::revoke_subject_tokens(tx, id, &subject(key)).await?;
                let detail = serde_json::json!({ "key_id": key.to_string() });
                store::append_audit(tx, id, &caller.subject, actions::REVOKED, &detail).await?;
                Ok::<_, TenantError>((after, true))
            })
            .await?;
        if changed {
            tracing::info!(customer_id = id.get(), key_id = %key, "API key revoked");
        }
        Ok(RevokeApiKeyResponse {
            key: Some(to_pb(&row)),
        })
    }

    /// `ApiKeyExchangeService.ExchangeApiKey`: the key's tenant through the definer lookup, then,
    /// in that tenant's transaction holding the key's row, the checks, the last use and the
    /// token. One UNAUTHENTICATED answer for every refusal.
    async fn exchange_api_key(&self, secret: &str) -> Result<ExchangeApiKeyResponse> {
        if !well_formed(secret) {
            return Err(TenantError::Unauthenticated(REFUSED));
        }
        let hash = secret_hash(secret);
        let db = &self.deps.core.db;
        let (id, key): (CustomerId, Uuid) = db
            .service_tx(async |tx| api_keys::api_key_by_secret_hash(tx, &hash).await)
            .await?
            .ok_or(TenantError::Unauthenticated(REFUSED))?;
        // The key names its tenant: the rpc span learns it here.
        mesh::telemetry::record_customer(id);
        let (token, expire_time, touched) = db
            .tenant_tx(id, async |tx| {
                let row = api_keys::get_api_key(tx, id, key, Lock::Exchange)
                    .await?
                    .filter(|k| k.revoked_at.is_none())
                    .ok_or(TenantError::Unauthenticated(REFUSED))?;
                let customer = store::require_customer_core(tx, id).await?;
                if customer.require_active().is_err() {
                    return Err(TenantError::Unauthenticated(REFUSED));
                }
                let touched = api_keys::touch_api_key(tx, id, key).await?;
                let scopes: Vec<&str> = row.scopes.iter().map(String::as_str).collect();
                let ttl = Duration::from_secs(row.max_token_ttl_seconds.clamp(60, 3600) as u64);
                let (token, expire_time) =
                    self.mint(id, &subject(key), &audiences(&row.scopes), &scopes, ttl)?;
                Ok::<_, TenantError>((token, expire_time, touched))
            })
            .await
            .map_err(|e| match e {
                TenantError::NotFound(_) => TenantError::Unauthenticated(REFUSED),
                other => other,
            })?;
        tracing::info!(customer_id = id.get(), key_id = %key, last_use_written = touched, "API key exchanged");
        Ok(ExchangeApiKeyResponse {
            customer_id: id.get(),
            tenant_token: token,
            token_expire_time: Some(expire_time),
        })
    }
}

#[tonic::async_trait]
impl api_key_exchange_service_server::ApiKeyExchangeService for TenantSvc {
    async fn exchange_api_key(
        &self,
        request: Request<ExchangeApiKeyRequest>,
    ) -> RpcResult<ExchangeApiKeyResponse> {
        let r = request.into_inner();
        Ok(Response::new(
            TenantSvc::exchange_api_key(self, &r.api_key).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_documented_shape_and_hint() {
        let s = generate_secret();
        let s = s.expose_secret();
        assert!(well_formed(s), "{}", s.len());
        assert_eq!(s.len(), 4 + 43);
        assert_eq!(hint(s), format!("nsk_{}", &s[s.len() - 4..]));
        assert_ne!(generate_secret().expose_secret(), s);
        for bad in [
            "",
            "nsk_",
            "nsk_short",
            &s[1..],
            &format!("{s}A"),
            &s.replace("nsk_", "nsx_"),
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn only_developer_scopes_are_accepted_and_they_are_normalised() {
        let got = scopes(&[
            "media:read".into(),
            "tenant:read".into(),
            "media:read".into(),
        ])
        .unwrap();
        assert_eq!(got, vec!["tenant:read", "media:read"]);
        for bad in [
            "tenant:keys",
            "tenant:team",
            "tenant:audit",
            "tenant:write",
            "memory:erase",
            "x",
        ] {
            let e = scopes(&["tenant:read".into(), bad.into()]).unwrap_err();
            assert!(e.to_string().starts_with("scopes: "), "{e}");
        }
        assert!(scopes(&[]).is_err());
    }

    #[test]
    fn lifetimes_and_audiences() {
        assert_eq!(token_ttl(None).unwrap(), DEFAULT_TOKEN_TTL);
        let d = |seconds| prost_types::Duration { seconds, nanos: 0 };
        assert_eq!(token_ttl(Some(&d(60))).unwrap().as_secs(), 60);
        assert_eq!(token_ttl(Some(&d(3600))).unwrap().as_secs(), 3600);
        for bad in [0, 59, 3601] {
            assert!(token_ttl(Some(&d(bad))).is_err());
        }
        assert_eq!(
            audiences(&["tenant:read".into(), "media:outbound".into()]),
            vec![names::TENANT_SVC, names::MEDIA_SVC]
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  CRM sync ").unwrap(), "CRM sync");
        assert!(name("").is_err());
        assert!(name(&"x".repeat(61)).is_err());
        assert!(name("a\nb").is_err());
    }
}
