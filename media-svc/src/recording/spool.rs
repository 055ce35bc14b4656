//! The spool: a local folder (one per process) holding `<customer>-<id>.part` while a call is
//! recorded and `<customer>-<id>.rec` once sealed, until the uploader has stored it. Its size is
//! capped (`MEDIA_RECORDING_SPOOL_MAX_BYTES`): when full, new calls are not recorded (`start`
//! answers `None`, counted and logged) and recordings in progress stop growing (kept, marked
//! truncated). The store being down fills it at 16,016 bytes per recorded call-second.
//!
//! Each recording has a writer task ([`run`]): it receives plain segments from the
//! [`RecordingWriter`], holds back the newest one (only at the end is it known to be the last),
//! seals the others and appends them to the `.part` file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mesh::domain::{CallSid, CustomerId};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::crypto::{DataKey, SecretKey, TAG_LEN, data_key_aad};
use super::format::{HEADER_LEN, SEGMENT_FRAMES, header};
use super::writer::{CHANNEL_SEGMENTS, Msg};
use super::{RecordingId, RecordingKind, RecordingWriter, Vault, keys};
use crate::error::MediaError;
use crate::store::recordings::{self as rows, NewRecording};

/// Room a new recording needs in the spool to start: one minute of audio.
const START_RESERVE: u64 = 60 * (2 * 8000 + TAG_LEN as u64);

/// The spool folder and its accounting.
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
}

/// A spool file's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ext {
    /// Being recorded (or left by a crash).
    Part,
    /// Sealed, waiting for upload.
    Rec,
}

impl Spool {
    /// Creates the folder when missing and counts the bytes already in it.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut used = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if parse_name(&entry.file_name().to_string_lossy()).is_some() {
                used += entry.metadata()?.len();
            }
        }
        let spool = Self {
            dir: dir.to_owned(),
            max_bytes,
            used: AtomicU64::new(0),
        };
        spool.add(used);
        Ok(spool)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path(&self, customer: CustomerId, id: Uuid, ext: Ext) -> PathBuf {
        let ext = match ext {
            Ext::Part => "part",
            Ext::Rec => "rec",
        };
        self.dir.join(format!("{}-{id}.{ext}", customer.get()))
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: u64) {
        let now = self.used.fetch_add(n, Ordering::Relaxed) + n;
        metrics::gauge!("media_recording_spool_bytes").set(now as f64);
    }

    pub(crate) fn sub(&self, n: u64) {
        let now = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            })
            .unwrap_or(0)
            .saturating_sub(n);
        metrics::gauge!("media_recording_spool_bytes").set(now as f64);
    }

    /// Counts `n` more bytes if they fit under the cap.
    fn reserve(&self, n: u64) -> bool {
        let ok = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                (u + n <= self.max_bytes).then_some(u + n)
            })
            .is_ok();
        if ok {
            metrics::gauge!("media_recording_spool_bytes").set(self.used() as f64);
        }
        ok
    }

    fn has_room_to_start(&self) -> bool {
        self.used() + START_RESERVE <= self.max_bytes
    }
}

/// `<customer>-<uuid>.part|rec` -> its parts.
pub(crate) fn parse_name(name: &str) -> Option<(CustomerId, Uuid, Ext)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let ext = match ext {
        "part" => Ext::Part,
        "rec" => Ext::Rec,
        _ => return None,
    };
    let (customer, id) = stem.split_once('-')?;
    let customer = CustomerId::new(customer.parse().ok()?).ok()?;
    Some((customer, Uuid::parse_str(id).ok()?, ext))
}

/// [`super::Recordings::start`].
pub(crate) async fn start(
    vault: &Arc<Vault>,
    customer: CustomerId,
    call_sid: &CallSid,
    kind: RecordingKind,
) -> Result<Option<RecordingWriter>, MediaError> {
    let Some(platform) = &vault.keys else {
        return Ok(None);
    };
    if !vault.spool.has_room_to_start() {
        metrics::counter!("media_recordings_refused_total", "reason" => "spool_full").increment(1);
        tracing::warn!(
            customer_id = customer.get(),
            spool_bytes = vault.spool.used(),
            "recording spool is full: call not recorded"
        );
        return Ok(None);
    }
    let id = Uuid::new_v4();
    let data_key = SecretKey::generate();
    vault
        .db
        .tenant_tx(customer, async |tx| {
            let (version, tenant_key) = keys::current_or_new(tx, platform, customer).await?;
            let wrapped = tenant_key.wrap(&data_key, &data_key_aad(customer.get(), id, version));
            rows::insert(
                tx,
                &NewRecording {
                    id,
                    call_sid,
                    kind,
                    key_version: version,
                    wrapped_key: &wrapped,
                    segment_frames: SEGMENT_FRAMES,
                },
            )
            .await
        })
        .await?;
    let path = vault.spool.path(customer, id, Ext::Part);
    let file = match create(&path, id).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(customer_id = customer.get(), error = %e, "cannot create a recording spool file");
            let _ = vault
                .db
                .tenant_tx(customer, async |tx| rows::delete(tx, id).await)
                .await;
            return Err(MediaError::Internal(format!("recording spool: {e}")));
        }
    };
    vault.spool.add(HEADER_LEN);
    let (tx, rx) = mpsc::channel(CHANNEL_SEGMENTS);
    let task = Task {
        vault: vault.clone(),
        customer,
        id,
        key: DataKey::new(&data_key, id),
        file,
        bytes: HEADER_LEN,
        frames: 0,
        index: 0,
        truncated: false,
    };
    tokio::spawn(task.run(rx));
    metrics::counter!("media_recordings_started_total").increment(1);
    Ok(Some(RecordingWriter::new(
        RecordingId(id),
        customer.get(),
        tx,
    )))
}

async fn create(path: &Path, id: Uuid) -> std::io::Result<tokio::fs::File> {
    let mut file = tokio::fs::File::create_new(path).await?;
    file.write_all(&header(SEGMENT_FRAMES, id)).await?;
    Ok(file)
}

/// One recording's writer task.
struct Task {
    vault: Arc<Vault>,
    customer: CustomerId,
    id: Uuid,
    key: DataKey,
    file: tokio::fs::File,
    /// Bytes in the file.
    bytes: u64,
    /// Frames in the sealed segments written.
    frames: u64,
    /// Index of the next segment.
    index: u64,
    truncated: bool,
}

enum End {
    Finish(
        bool,
        Option<tokio::sync::oneshot::Sender<Result<(), MediaError>>>,
    ),
    Discard(tokio::sync::oneshot::Sender<Result<(), MediaError>>),
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut held: Option<Vec<u8>> = None;
        let end = loop {
            match rx.recv().await {
                Some(Msg::Segment(segment)) => {
                    if self.truncated {
                        continue;
                    }
                    if let Some(previous) = held.take()
                        && let Err(previous) = self.write(previous, false).await
                    {
                        held = Some(previous);
                        continue;
                    }
                    held = Some(segment);
                }
                Some(Msg::Finish { truncated, reply }) => {
                    break End::Finish(truncated, Some(reply));
                }
                Some(Msg::Discard { reply }) => break End::Discard(reply),
                // The writer was dropped without `finish`: keep what was recorded.
                None => break End::Finish(false, None),
            }
        };
        match end {
            End::Finish(truncated, reply) => {
                self.truncated |= truncated;
                let result = self.finish(held.unwrap_or_default()).await;
                if let Err(e) = &result {
                    tracing::error!(customer_id = self.customer.get(), recording = %self.id, error = %e, "recording not finished");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            End::Discard(reply) => {
                drop(self.file);
                let path = self.vault.spool.path(self.customer, self.id, Ext::Part);
                if tokio::fs::remove_file(&path).await.is_ok() {
                    self.vault.spool.sub(self.bytes);
                }
                let id = self.id;
                let result = self
                    .vault
                    .db
                    .tenant_tx(self.customer, async |tx| rows::delete(tx, id).await)
                    .await
                    .map(|_| ());
                metrics::counter!("media_recordings_discarded_total").increment(1);
                let _ = reply.send(result);
            }
        }
    }

    /// Seals and appends one segment. Gives the segment back when it was not written (the
    /// spool is full, or the disk failed): the recording stops growing there.
    async fn write(&mut self, mut segment: Vec<u8>, last: bool) -> Result<(), Vec<u8>> {
        let len = (segment.len() + TAG_LEN) as u64;
        // The final segment is written even over the cap (at most one segment more), so the
        // recording ends with a sealed last segment.
        if !last && !self.vault.spool.reserve(len) {
            self.stop("the recording spool is full");
            return Err(segment);
        }
        if last {
            self.vault.spool.add(len);
        }
        let frames = (segment.len() / 2) as u64;
        self.key.seal(self.index, last, &mut segment);
        if let Err(e) = self.file.write_all(&segment).await {
            tracing::error!(customer_id = self.customer.get(), error = %e, "recording spool write failed");
            self.vault.spool.sub(len);
            // Cut a partly written segment off, so the file stays whole segments.
            let _ = self.file.set_len(self.bytes).await;
            self.stop("the recording spool cannot be written");
            segment.truncate(segment.len() - TAG_LEN);
            return Err(segment);
        }
        self.bytes += len;
        self.frames += frames;
        self.index += 1;
        Ok(())
    }

    fn stop(&mut self, why: &'static str) {
        if !self.truncated {
            self.truncated = true;
            metrics::counter!("media_recordings_truncated_total").increment(1);
            tracing::warn!(customer_id = self.customer.get(), recording = %self.id, "{why}: recording truncated");
        }
    }

    /// Seals `last` as the last segment, fsyncs, renames to `.rec`, fills in the row.
    async fn finish(&mut self, last: Vec<u8>) -> Result<(), MediaError> {
        let io = |e: std::io::Error| MediaError::Internal(format!("recording spool: {e}"));
        // The last segment is always shorter than a full one: a full one goes before it.
        let last = if last.len() == 2 * SEGMENT_FRAMES as usize {
            let _ = self.write(last, false).await;
            Vec::new()
        } else {
            last
        };
        if self.write(last, true).await.is_err() {
            // The disk failed on the last segment: end with an empty one instead.
            self.write(Vec::new(), true)
                .await
                .map_err(|_| MediaError::Internal("recording spool: cannot seal".into()))?;
        }
        self.file.sync_all().await.map_err(io)?;
        let (part, rec) = (
            self.vault.spool.path(self.customer, self.id, Ext::Part),
            self.vault.spool.path(self.customer, self.id, Ext::Rec),
        );
        tokio::fs::rename(&part, &rec).await.map_err(io)?;
        if let Ok(dir) = tokio::fs::File::open(self.vault.spool.dir()).await {
            let _ = dir.sync_all().await;
        }
        let (id, frames, bytes, truncated) = (self.id, self.frames, self.bytes, self.truncated);
        // When this fails (the database is down) the uploader fills the row in from the file.
        let row = self
            .vault
            .db
            .tenant_tx(self.customer, async |tx| {
                rows::mark_spooled(tx, id, frames, bytes, truncated).await
            })
            .await;
        if let Ok(false) = row {
            // The call was erased while it was recorded.
            if tokio::fs::remove_file(&rec).await.is_ok() {
                self.vault.spool.sub(bytes);
            }
        }
        if let Err(e) = row {
            tracing::warn!(customer_id = self.customer.get(), error = %e, "recording row not updated; the uploader will");
        }
        self.vault.wake.notify_one();
        metrics::counter!("media_recordings_finished_total").increment(1);
        Ok(())
    }
}
