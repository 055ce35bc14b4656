//! Call recordings: written to a local spool while the call runs, encrypted in fixed-size
//! segments, uploaded to an object store in the background, read back as a WAV.
//!
//! The map:
//! - [`crypto`]: the key hierarchy (platform key from `MEDIA_RECORDING_KEYS` -> tenant key in
//!   `media.recording_keys` -> one data key per recording -> AES-256-GCM segments);
//! - [`format`]: the object layout (plain header, sealed one-second segments of interleaved
//!   stereo mu-law) and the WAV readers get;
//! - [`keys`]: the tenant keys in the database (created on first use, rewrapped on rotation,
//!   destroyed on tenant erasure);
//! - [`writer`]: [`RecordingWriter`], fed synchronously by the call driver (caller frames, and
//!   the agent audio the caller heard), aligning the two channels in a short reorder window;
//! - [`spool`]: the spool folder, its size cap, and the per-recording task that seals segments
//!   and writes them to `<spool>/<customer>-<id>.part`, renamed `.rec` when finished;
//! - [`store`]: the object store (a local folder, or S3-compatible);
//! - [`upload`]: the uploader task (spool -> store, retried forever with backoff; picks up what
//!   a previous run left);
//! - [`reader`]: [`WavSource`], a recording as a WAV, any byte range, decrypted on the fly from
//!   the store or the spool; and deletion.
//!
//! [`Recordings`] (also named [`Recorder`]) is the one cheap, cloneable handle: the call
//! drivers start recordings with it, the RPCs read and delete them.

pub mod crypto;
pub mod format;
pub mod keys;
pub mod reader;
pub mod spool;
pub mod store;
pub mod upload;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh::db::Db;
use mesh::domain::{CallSid, CustomerId};
use object_store::ObjectStore;
use uuid::Uuid;

pub use crate::store::recordings::{RecordingKind, RecordingRow, RecordingState};
pub use crypto::PlatformKeys;
pub use reader::WavSource;
pub use store::{S3Config, StoreConfig};
pub use writer::RecordingWriter;

use crate::error::MediaError;

/// Default spool cap: 2 GiB, about 37 hours of recorded calls (16,016 bytes per second).
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 2 << 30;

/// A recording's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordingId(pub Uuid);

impl std::fmt::Display for RecordingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where recordings go and with which keys.
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// The platform keys; `None`: this process records nothing (`start` answers `None`).
    pub keys: Option<PlatformKeys>,
    /// The object store.
    pub store: StoreConfig,
    /// The local spool folder (one per process).
    pub spool_dir: PathBuf,
    /// The spool's cap in bytes (sealed files waiting for upload plus recordings in progress).
    pub spool_max_bytes: u64,
    /// Longest pause between upload attempts while the store is down.
    pub upload_max_backoff: Duration,
}

impl RecordingConfig {
    /// Offline: a fresh platform key, the store and the spool in `folder` (`store/`, `spool/`).
    pub fn local(folder: impl Into<PathBuf>) -> Self {
        let folder = folder.into();
        Self {
            keys: Some(PlatformKeys::generate()),
            store: StoreConfig::Local(folder.join("store")),
            spool_dir: folder.join("spool"),
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            upload_max_backoff: Duration::from_secs(60),
        }
    }

    /// [`RecordingConfig::local`] in a new folder under the system's temporary directory.
    pub fn temporary() -> Self {
        Self::local(std::env::temp_dir().join(format!("neurosphere-recordings-{}", Uuid::new_v4())))
    }
}

/// What every handle shares.
pub(crate) struct Vault {
    pub(crate) db: Db,
    pub(crate) keys: Option<PlatformKeys>,
    pub(crate) spool: spool::Spool,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) upload_max_backoff: Duration,
    /// `.part` files older than this were left by a previous run.
    pub(crate) started: SystemTime,
}

/// The recordings of this process: start them (call drivers), read and delete them (RPCs).
/// Cheap to clone.
#[derive(Clone)]
pub struct Recordings {
    pub(crate) vault: Arc<Vault>,
}

/// The name the call drivers use for [`Recordings`].
pub type Recorder = Recordings;

impl std::fmt::Debug for Recordings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recordings")
            .field("enabled", &self.vault.keys.is_some())
            .field("spool", &self.vault.spool.dir())
            .finish()
    }
}

impl Recordings {
    /// Creates the spool and store folders as needed and counts what the spool holds.
    pub fn new(db: Db, config: &RecordingConfig) -> anyhow::Result<Self> {
        let store = store::build(&config.store)?;
        let spool = spool::Spool::open(&config.spool_dir, config.spool_max_bytes)?;
        if config.keys.is_none() {
            tracing::warn!("MEDIA_RECORDING_KEYS is not set: calls are not recorded");
        }
        Ok(Self {
            vault: Arc::new(Vault {
                db,
                keys: config.keys.clone(),
                spool,
                store,
                wake: tokio::sync::Notify::new(),
                upload_max_backoff: config.upload_max_backoff,
                started: SystemTime::now(),
            }),
        })
    }

    /// Whether this process records at all (platform keys configured).
    pub fn enabled(&self) -> bool {
        self.vault.keys.is_some()
    }

    /// Starts recording a call. `Ok(None)` when recording is off for this process or the spool
    /// is full (counted in `media_recordings_refused_total`, logged with the customer id): the
    /// call goes on unrecorded. An error (the database, the spool folder) likewise means
    /// "not recorded"; the call must go on.
    pub async fn start(
        &self,
        customer: CustomerId,
        call_sid: &CallSid,
        kind: RecordingKind,
    ) -> Result<Option<RecordingWriter>, MediaError> {
        spool::start(&self.vault, customer, call_sid, kind).await
    }

    /// The recordings of one call, oldest first (empty when another tenant's or none).
    pub async fn for_call(
        &self,
        customer: CustomerId,
        call_sid: &CallSid,
    ) -> Result<Vec<RecordingRow>, MediaError> {
        self.vault
            .db
            .tenant_tx(customer, async |tx| {
                crate::store::recordings::for_call(tx, call_sid).await
            })
            .await
    }

    /// One recording's row (`None` when this tenant has no such recording).
    pub async fn row(
        &self,
        customer: CustomerId,
        id: RecordingId,
    ) -> Result<Option<RecordingRow>, MediaError> {
        self.vault
            .db
            .tenant_tx(customer, async |tx| {
                crate::store::recordings::get(tx, id.0).await
            })
            .await
    }

    /// Wakes the uploader (tests; a finished recording does it itself).
    pub fn wake_uploader(&self) {
        self.vault.wake.notify_one();
    }

    /// Bytes the spool holds now.
    pub fn spool_bytes(&self) -> u64 {
        self.vault.spool.used()
    }
}
