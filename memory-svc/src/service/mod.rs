//! The gRPC handlers of memory-svc.
//!
//! Each handler: takes the tenant from the verified token only (`tenant_caller`), parses every
//! wire field into a domain value (`requests.rs`: INVALID_ARGUMENT naming the field, before
//! anything is stored), runs its SQL in one `Db::tenant_tx` (row-level security confines it to
//! that tenant), and maps errors once through [`MemoryError`]. Handlers open no span of their
//! own: the mesh server's `rpc` span already carries the method, the request id and (recorded by
//! the auth layer) the tenant's `customer_id`, so every log line below names them.
//!
//! Parts: this module holds [`MemorySvc`] and what handlers share (the audit subject hash, the
//! purge loop's batches, the summarizer with its visible fallback); `memory.rs` implements
//! `MemoryService` (tenant tokens) with `callers.rs` behind its portal RPCs (the callers
//! listing and the opaque caller id), `admin.rs` implements `MemoryAdminService` (operator
//! service tokens).

mod admin;
mod callers;
mod memory;
mod requests;

use std::sync::Arc;

use hmac::{Hmac, Mac};
use mesh::domain::CallerNumber;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use tokio::sync::OnceCell;

use crate::error::{MemoryError, Result};
use crate::store;
use crate::summarizer::{CallAnalysis, CallInput, HEURISTIC_NAME, HeuristicSummarizer, Summarizer};
use crate::{Deps, Options};

/// Implements the memory-svc gRPC services. Cheap to clone.
#[derive(Clone)]
pub struct MemorySvc {
    inner: Arc<Inner>,
}

struct Inner {
    deps: Deps,
    summarizer: Arc<dyn Summarizer>,
    /// Key of the audit subject hash: configured, or loaded once from the database.
    audit_key: OnceCell<SecretSlice<u8>>,
    purge_batch: i32,
}

/// Rows deleted per purge statement, so one purge never holds a huge transaction.
pub const PURGE_BATCH: i32 = 10_000;

impl MemorySvc {
    /// Handlers over the given dependencies, with the heuristic summarizer.
    pub fn new(deps: Deps) -> Self {
        Self::with_options(deps, Options::default())
    }

    /// Handlers with explicit options.
    pub fn with_options(deps: Deps, options: Options) -> Self {
        let audit_key = OnceCell::new();
        if let Some(k) = options.audit_hash_key {
            let _ = audit_key.set(k);
        }
        Self {
            inner: Arc::new(Inner {
                deps,
                summarizer: options.summarizer,
                audit_key,
                purge_batch: PURGE_BATCH,
            }),
        }
    }

    fn db(&self) -> &mesh::db::Db {
        &self.inner.deps.db
    }

    /// Keyed hash of a caller number for the audit log: HMAC-SHA256, hex.
    async fn subject_hash(&self, user: &CallerNumber) -> Result<String> {
        let key = self
            .inner
            .audit_key
            .get_or_try_init(|| async {
                let k = self
                    .db()
                    .service_tx(async |tx| store::audit_hash_key(tx).await)
                    .await?;
                Ok::<_, MemoryError>(SecretSlice::from(k))
            })
            .await?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret())
            .map_err(|_| MemoryError::Internal("audit hash key rejected".into()))?;
        mac.update(b"caller:");
        mac.update(user.as_str().as_bytes());
        let out = mac.finalize().into_bytes();
        Ok(out.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Deletes expired memories of every tenant; returns how many.
    pub async fn purge_expired(&self) -> Result<i64> {
        let mut total = 0;
        loop {
            let batch = self.inner.purge_batch;
            let n = self
                .db()
                .service_tx(async |tx| store::purge_batch(tx, batch).await)
                .await?;
            total += n;
            if n < i64::from(batch) {
                break;
            }
        }
        Ok(total)
    }

    /// The configured summarizer's analysis, or the heuristic one when it fails.
    async fn analyse(&self, call: &CallInput) -> CallAnalysis {
        match self.inner.summarizer.summarize(call).await {
            Ok(a) => a,
            Err(e) => {
                // Visible fallback: logged, counted, and recorded in the summary's `summarizer`.
                tracing::warn!(
                    summarizer = %self.inner.summarizer.name(),
                    error = %e,
                    "summarizer failed; using the heuristic summarizer for this call"
                );
                metrics::counter!("memory_summarizer_fallbacks_total").increment(1);
                let mut a = HeuristicSummarizer.analyse(call);
                a.summarizer = format!(
                    "{HEURISTIC_NAME} (fallback: {} failed)",
                    self.inner.summarizer.name()
                );
                a
            }
        }
    }
}
