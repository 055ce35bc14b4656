//! The uploader: one background task per process (started next to the outbox worker) moving
//! sealed `.rec` files from the spool to the object store, then marking the row `stored` and
//! deleting the file. When the store is down it keeps the files and retries forever, backing
//! off up to `upload_max_backoff`; calls never wait for it. At start it rewraps tenant keys
//! left under an older platform key, and seals the `.part` files a previous run left behind
//! (a crash mid-call: the whole segments written are kept, the recording marked truncated).
//!
//! Metrics: `media_recording_uploads_total{result="ok"|"failed"}`,
//! `media_recording_pending_uploads` (`.rec` files waiting), `media_recording_spool_bytes`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mesh::domain::CustomerId;
use object_store::ObjectStoreExt as _;
use object_store::buffered::BufWriter;
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use uuid::Uuid;

use super::format::{HEADER_LEN, Layout};
use super::spool::{Ext, parse_name};
use super::store::object_path;
use super::{Recordings, Vault, keys};
use crate::error::MediaError;
use crate::store::recordings::{self as rows, RecordingState};

/// Pause between passes when nothing woke the uploader.
const IDLE: Duration = Duration::from_secs(30);
/// Multipart part size (files above it are uploaded in parts).
const PART_BYTES: usize = 8 << 20;

/// Runs until `stop` turns true.
pub async fn run(recordings: Recordings, mut stop: watch::Receiver<bool>) {
    let v = recordings.vault.clone();
    match recordings.rewrap_tenant_keys().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(keys = n, "tenant recording keys rewrapped"),
        Err(e) => tracing::error!(error = %e, "rewrapping tenant recording keys failed"),
    }
    recover_parts(&v).await;
    let first = Duration::from_secs(1);
    let mut backoff = first;
    loop {
        let ok = pass(&v).await;
        let pause = if ok {
            backoff = first;
            IDLE
        } else {
            let p = backoff;
            backoff = (backoff * 2).min(v.upload_max_backoff.max(first));
            p
        };
        tokio::select! {
            // A finished recording wakes the uploader, unless the store is down (backoff).
            () = v.wake.notified(), if ok => {}
            () = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn spool_files(v: &Vault, want: Ext) -> Vec<(CustomerId, Uuid, PathBuf)> {
    let mut out = Vec::new();
    let Ok(mut dir) = tokio::fs::read_dir(v.spool.dir()).await else {
        return out;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        if let Some((customer, id, ext)) = parse_name(&entry.file_name().to_string_lossy())
            && ext == want
        {
            out.push((customer, id, entry.path()));
        }
    }
    out
}

/// Uploads every `.rec` file; `false` when one failed (the rest wait for the next pass).
async fn pass(v: &Arc<Vault>) -> bool {
    let files = spool_files(v, Ext::Rec).await;
    let mut pending = files.len();
    metrics::gauge!("media_recording_pending_uploads").set(pending as f64);
    for (customer, id, path) in files {
        // Its own task: even a panic in the store client fails one attempt, not the uploader.
        let attempt = tokio::spawn({
            let v = v.clone();
            async move { upload_one(&v, customer, id, &path).await }
        })
        .await
        .unwrap_or_else(|e| Err(MediaError::Internal(format!("upload task: {e}"))));
        match attempt {
            Ok(()) => {
                pending -= 1;
                metrics::gauge!("media_recording_pending_uploads").set(pending as f64);
            }
            Err(e) => {
                metrics::counter!("media_recording_uploads_total", "result" => "failed")
                    .increment(1);
                tracing::warn!(customer_id = customer.get(), error = %e, "recording upload failed; kept in the spool, will retry");
                return false;
            }
        }
    }
    true
}

async fn remove(v: &Vault, path: &Path, len: u64) {
    if tokio::fs::remove_file(path).await.is_ok() {
        v.spool.sub(len);
    }
}

/// The row of a spool file and the file's length; `None` (and the file removed) when the row is
/// gone: the recording was deleted (erased) while its file waited.
async fn spooled_row(
    v: &Arc<Vault>,
    customer: CustomerId,
    id: Uuid,
    path: &Path,
) -> Result<Option<(rows::RecordingRow, u64)>, MediaError> {
    let len = tokio::fs::metadata(path)
        .await
        .map_err(|e| MediaError::Internal(format!("recording spool: {e}")))?
        .len();
    let row =
        v.db.tenant_tx(customer, async |tx| rows::get(tx, id).await)
            .await?;
    if row.is_none() {
        remove(v, path, len).await;
    }
    Ok(row.map(|row| (row, len)))
}

async fn upload_one(
    v: &Arc<Vault>,
    customer: CustomerId,
    id: Uuid,
    path: &Path,
) -> Result<(), MediaError> {
    let io = |e: std::io::Error| MediaError::Internal(format!("recording spool: {e}"));
    let Some((row, len)) = spooled_row(v, customer, id, path).await? else {
        return Ok(());
    };
    match row.state {
        RecordingState::Stored => {
            remove(v, path, len).await;
            return Ok(());
        }
        RecordingState::Recording => {
            // The writer could not fill the row in (the database was down): do it from the file.
            let layout = Layout::from_object_len(row.segment_frames, len)
                .ok_or_else(|| MediaError::Internal("spool file has a bad length".into()))?;
            v.db.tenant_tx(customer, async |tx| {
                rows::mark_spooled(tx, id, layout.frames, len, row.truncated).await
            })
            .await?;
        }
        RecordingState::Spooled => {}
    }
    let object = object_path(customer, id);
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut w = BufWriter::with_capacity(v.store.clone(), object.clone(), PART_BYTES);
    let unavailable = |e: std::io::Error| MediaError::Unavailable(format!("recording store: {e}"));
    if let Err(e) = tokio::io::copy(&mut file, &mut w).await {
        // Drops the parts of a multipart upload already sent. (After a failed `shutdown` the
        // writer cannot abort; the bucket's lifecycle rule for incomplete uploads cleans up.)
        let _ = w.abort().await;
        return Err(unavailable(e));
    }
    w.shutdown().await.map_err(unavailable)?;
    let stored =
        v.db.tenant_tx(customer, async |tx| rows::mark_stored(tx, id).await)
            .await?;
    if !stored {
        // Deleted while it was uploaded: the object must go too.
        let _ = v.store.delete(&object).await;
    }
    remove(v, path, len).await;
    metrics::counter!("media_recording_uploads_total", "result" => "ok").increment(1);
    Ok(())
}

/// Seals the `.part` files older than this process (a previous run's calls cut by a crash).
async fn recover_parts(v: &Arc<Vault>) {
    for (customer, id, path) in spool_files(v, Ext::Part).await {
        let old = tokio::fs::metadata(&path)
            .await
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < v.started);
        if !old {
            continue;
        }
        match recover_part(v, customer, id, &path).await {
            Ok(()) => {
                tracing::info!(customer_id = customer.get(), recording = %id, "recording left by a previous run sealed (truncated)")
            }
            Err(e) => {
                tracing::warn!(customer_id = customer.get(), error = %e, "recording left by a previous run not recovered")
            }
        }
    }
}

async fn recover_part(
    v: &Arc<Vault>,
    customer: CustomerId,
    id: Uuid,
    path: &Path,
) -> Result<(), MediaError> {
    let io = |e: std::io::Error| MediaError::Internal(format!("recording spool: {e}"));
    let Some((row, len)) = spooled_row(v, customer, id, path).await? else {
        return Ok(());
    };
    let key = keys::data_key(v, customer, &row).await?;
    if let Some(layout) = Layout::from_object_len(row.segment_frames, len)
        && last_segment_opens(&key, &layout, path).await
    {
        // Sealed completely; the crash came before the rename.
        let rec = v.spool.path(customer, id, Ext::Rec);
        tokio::fs::rename(path, rec).await.map_err(io)?;
        v.db.tenant_tx(customer, async |tx| {
            rows::mark_spooled(tx, id, layout.frames, len, row.truncated).await
        })
        .await?;
        return Ok(());
    }
    let full = 2 * u64::from(row.segment_frames) + super::crypto::TAG_LEN as u64;
    let segments = len.saturating_sub(HEADER_LEN) / full;
    let keep = HEADER_LEN + segments * full;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .await
        .map_err(io)?;
    file.set_len(keep).await.map_err(io)?;
    file.seek(std::io::SeekFrom::End(0)).await.map_err(io)?;
    // An empty last segment closes the file (never sealed before at this index: the writer
    // only writes a last segment at its end, and that case was handled above).
    let mut last = Vec::new();
    key.seal(segments, true, &mut last);
    file.write_all(&last).await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    let new_len = keep + last.len() as u64;
    tokio::fs::rename(path, v.spool.path(customer, id, Ext::Rec))
        .await
        .map_err(io)?;
    v.spool.sub(len);
    v.spool.add(new_len);
    let frames = segments * u64::from(row.segment_frames);
    v.db.tenant_tx(customer, async |tx| {
        rows::mark_spooled(tx, id, frames, new_len, true).await
    })
    .await?;
    Ok(())
}

/// Whether the file's last segment (per `layout`) opens as the last one.
async fn last_segment_opens(key: &super::crypto::DataKey, layout: &Layout, path: &Path) -> bool {
    use tokio::io::AsyncReadExt as _;
    let index = layout.segments() - 1;
    let range = layout.segment(index).0;
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return false;
    };
    if file
        .seek(std::io::SeekFrom::Start(range.start))
        .await
        .is_err()
    {
        return false;
    }
    let mut sealed = vec![0u8; (range.end - range.start) as usize];
    file.read_exact(&mut sealed).await.is_ok() && key.open(index, true, &mut sealed).is_ok()
}
