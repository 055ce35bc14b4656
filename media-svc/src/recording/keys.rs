//! Tenant recording keys in `media.recording_keys`: created on a tenant's first recording,
//! unwrapped with the platform key of their version, rewrapped under the newest platform key
//! by [`Recordings::rewrap_tenant_keys`] (a rotation), destroyed by
//! [`Recordings::destroy_tenant_keys`] (a tenant erasure: every recording of the tenant, in the
//! store and in every backup of it, becomes unreadable).

use mesh::db::Tx;
use mesh::domain::CustomerId;

use super::crypto::{DataKey, PlatformKeys, SecretKey, data_key_aad, tenant_key_aad};
use super::{Recordings, Vault};
use crate::error::MediaError;
use crate::store::recordings::{self as rows, RecordingRow, TenantKeyRow};

/// Tenants rewrapped per scan of the rewrap pass.
const REWRAP_BATCH: i32 = 100;

fn unwrap_tenant_key(
    keys: &PlatformKeys,
    customer: CustomerId,
    row: &TenantKeyRow,
) -> Result<SecretKey, MediaError> {
    let version = u32::try_from(row.platform_version).unwrap_or(0);
    let platform = keys.get(version).ok_or_else(|| {
        MediaError::Internal(format!(
            "platform recording key version {version} is not in MEDIA_RECORDING_KEYS"
        ))
    })?;
    platform
        .unwrap_key(
            &row.wrapped,
            &tenant_key_aad(customer.get(), row.version, version),
        )
        .map_err(|e| MediaError::Internal(format!("tenant key {}: {e}", row.version)))
}

fn wrap_tenant_key(
    keys: &PlatformKeys,
    customer: CustomerId,
    version: i32,
    key: &SecretKey,
) -> TenantKeyRow {
    let (platform_version, platform) = keys.current();
    TenantKeyRow {
        version,
        platform_version: i32::try_from(platform_version).unwrap_or(i32::MAX),
        wrapped: platform.wrap(
            key,
            &tenant_key_aad(customer.get(), version, platform_version),
        ),
    }
}

/// The tenant's newest key (created at version 1 on the tenant's first recording), in `tx`.
pub(crate) async fn current_or_new(
    tx: &Tx<'_>,
    keys: &PlatformKeys,
    customer: CustomerId,
) -> Result<(i32, SecretKey), MediaError> {
    if let Some(row) = rows::current_tenant_key(tx).await? {
        return Ok((row.version, unwrap_tenant_key(keys, customer, &row)?));
    }
    let key = SecretKey::generate();
    if rows::insert_tenant_key(tx, &wrap_tenant_key(keys, customer, 1, &key)).await? {
        return Ok((1, key));
    }
    // A concurrent first recording created it: use theirs.
    let row = rows::current_tenant_key(tx)
        .await?
        .ok_or_else(|| MediaError::Internal("tenant recording key vanished".into()))?;
    Ok((row.version, unwrap_tenant_key(keys, customer, &row)?))
}

/// The tenant's key of `version`, in `tx`.
pub(crate) async fn by_version(
    tx: &Tx<'_>,
    keys: &PlatformKeys,
    customer: CustomerId,
    version: i32,
) -> Result<SecretKey, MediaError> {
    let row = rows::tenant_key(tx, version).await?.ok_or_else(|| {
        MediaError::FailedPrecondition("the recording's key was destroyed".into())
    })?;
    unwrap_tenant_key(keys, customer, &row)
}

impl Recordings {
    /// Deletes the tenant's recording keys (tenant erasure): its recordings, wherever copies of
    /// them are, can no longer be decrypted. Returns the keys deleted.
    pub async fn destroy_tenant_keys(&self, customer: CustomerId) -> Result<u64, MediaError> {
        let n = self
            .vault
            .db
            .tenant_tx(customer, async |tx| rows::destroy_tenant_keys(tx).await)
            .await?;
        tracing::info!(
            customer_id = customer.get(),
            keys = n,
            "recording keys destroyed"
        );
        Ok(n)
    }

    /// Rewraps every tenant key wrapped by an older platform key version under the newest one
    /// (after a version was added to `MEDIA_RECORDING_KEYS`). Returns the keys rewrapped. Runs
    /// at start-up in the uploader; once it has, the old version can be removed from the setting.
    pub async fn rewrap_tenant_keys(&self) -> Result<u64, MediaError> {
        let Some(keys) = &self.vault.keys else {
            return Ok(0);
        };
        let current = keys.current().0;
        let mut done = 0;
        loop {
            let due = self
                .vault
                .db
                .service_tx(async |tx| rows::rewrap_due_tenants(tx, current, REWRAP_BATCH).await)
                .await?;
            if due.is_empty() {
                return Ok(done);
            }
            for customer in due {
                done += self
                    .vault
                    .db
                    .tenant_tx(customer, async |tx| {
                        let mut n = 0;
                        for row in rows::tenant_keys_for_update(tx).await? {
                            if u32::try_from(row.platform_version).unwrap_or(0) >= current {
                                continue;
                            }
                            let key = unwrap_tenant_key(keys, customer, &row)?;
                            rows::rewrap_tenant_key(
                                tx,
                                &wrap_tenant_key(keys, customer, row.version, &key),
                            )
                            .await?;
                            n += 1;
                        }
                        Ok::<_, MediaError>(n)
                    })
                    .await?;
                tracing::info!(customer_id = customer.get(), "recording keys rewrapped");
            }
        }
    }
}

/// The data key of a recording (its tenant key unwrapped, then its own).
pub(crate) async fn data_key(
    v: &Vault,
    customer: CustomerId,
    row: &RecordingRow,
) -> Result<DataKey, MediaError> {
    let keys = v.keys.as_ref().ok_or_else(|| {
        MediaError::FailedPrecondition(
            "recordings are not configured (MEDIA_RECORDING_KEYS)".into(),
        )
    })?;
    let version = row.key_version;
    let tenant =
        v.db.tenant_tx(customer, async |tx| {
            by_version(tx, keys, customer, version).await
        })
        .await?;
    let key = tenant
        .unwrap_key(
            &row.wrapped_key,
            &data_key_aad(customer.get(), row.id, version),
        )
        .map_err(|e| MediaError::Internal(format!("recording data key: {e}")))?;
    Ok(DataKey::new(&key, row.id))
}
