//! Reading recordings back: [`Recordings::wav`] gives a [`WavSource`] (16-bit PCM, 2 channels:
//! left the caller, right what the caller heard of the agent; 8,000 Hz; a 44-byte header with
//! the exact length), any byte range of which is read, decrypted and decoded on the fly: only
//! the segments the range covers, from the object store once uploaded, else from the spool.
//! [`Recordings::delete`] removes the object, the spool file and the row together.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use mesh::domain::CustomerId;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::crypto::DataKey;
use super::format::{Layout, WAV_HEADER_LEN, decode_frames, wav_header};
use super::spool::Ext;
use super::store::object_path;
use super::{RecordingId, Recordings, keys};
use crate::error::MediaError;
use crate::store::recordings::{self as rows, RecordingState};

/// Segments fetched per read of the store (16 s of audio, 256 KB).
const BATCH_SEGMENTS: u64 = 16;

/// Where the encrypted bytes are.
enum Bytesource {
    Spool(Arc<std::fs::File>),
    Store(Arc<dyn ObjectStore>, Path),
}

struct Source {
    layout: Layout,
    key: DataKey,
    from: Bytesource,
    customer: i64,
}

/// A recording as a WAV. Cheap to clone.
#[derive(Clone)]
pub struct WavSource {
    src: Arc<Source>,
}

impl std::fmt::Debug for WavSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource")
            .field("len", &self.len())
            .finish()
    }
}

impl WavSource {
    /// Bytes of the WAV (header included).
    pub fn len(&self) -> u64 {
        self.src.layout.wav_len()
    }

    /// Never: even an empty recording has its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The recording's duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.src.layout.frames / 8
    }

    /// The bytes `range` of the WAV (clamped to its length), in chunks.
    pub fn read(
        &self,
        range: Range<u64>,
    ) -> impl Stream<Item = Result<Bytes, MediaError>> + Send + 'static + use<> {
        let len = self.len();
        let (start, end) = (range.start.min(len), range.end.min(len));
        let header = (start < WAV_HEADER_LEN && start < end).then(|| {
            let h = wav_header(self.src.layout.frames);
            Ok(Bytes::copy_from_slice(
                &h[start as usize..end.min(WAV_HEADER_LEN) as usize],
            ))
        });
        // The PCM bytes wanted, counted from the start of the data chunk.
        let (d0, d1) = (
            start.max(WAV_HEADER_LEN) - WAV_HEADER_LEN,
            end.max(WAV_HEADER_LEN) - WAV_HEADER_LEN,
        );
        let seg_pcm = 4 * u64::from(self.src.layout.segment_frames);
        let first = d0 / seg_pcm;
        let stop = if start < end && end == len {
            // A read to the end opens the last segment too (even when it holds no audio), so
            // a recording cut at a segment boundary is noticed.
            self.src.layout.segments()
        } else if d1 > d0 {
            d1.div_ceil(seg_pcm)
        } else {
            first
        };
        let src = self.src.clone();
        let data = futures::stream::try_unfold(first, move |s| {
            let src = src.clone();
            async move {
                if s >= stop {
                    return Ok(None);
                }
                let next = (s + BATCH_SEGMENTS).min(stop);
                let pcm = src.pcm(s..next).await?;
                let base = s * seg_pcm;
                let from = (d0.max(base) - base) as usize;
                let to = (d1.min(base + pcm.len() as u64) - base) as usize;
                Ok(Some((Bytes::from(pcm).slice(from..to), next)))
            }
        });
        futures::stream::iter(header).chain(data)
    }
}

impl Source {
    /// Decrypted, decoded PCM of `segments`.
    async fn pcm(&self, segments: Range<u64>) -> Result<Vec<u8>, MediaError> {
        let first = self.layout.segment(segments.start).0.start;
        let last = self.layout.segment(segments.end - 1).0.end;
        let sealed = self.fetch(first..last).await?;
        let mut out = Vec::new();
        for index in segments {
            let (range, is_last) = self.layout.segment(index);
            let mut seg =
                sealed[(range.start - first) as usize..(range.end - first) as usize].to_vec();
            let plain = self.key.open(index, is_last, &mut seg).map_err(|e| {
                tracing::error!(customer_id = self.customer, error = %e, "recording segment does not open");
                MediaError::Internal(format!("recording: {e}"))
            })?;
            decode_frames(plain, &mut out);
        }
        Ok(out)
    }

    async fn fetch(&self, range: Range<u64>) -> Result<Bytes, MediaError> {
        match &self.from {
            Bytesource::Spool(file) => {
                let file = file.clone();
                let read = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt as _;
                    let mut buf = vec![0u8; (range.end - range.start) as usize];
                    file.read_exact_at(&mut buf, range.start).map(|()| buf)
                })
                .await
                .map_err(|e| MediaError::Internal(format!("recording read: {e}")))?;
                read.map(Bytes::from)
                    .map_err(|e| MediaError::Internal(format!("recording spool read: {e}")))
            }
            Bytesource::Store(store, path) => store.get_range(path, range).await.map_err(|e| {
                tracing::warn!(customer_id = self.customer, error = %e, "recording store read failed");
                MediaError::Unavailable("the recording store is unavailable, retry later".into())
            }),
        }
    }
}

impl Recordings {
    /// The recording as a WAV. `NotFound` when this tenant has no such recording (another
    /// tenant's is not found either); `FailedPrecondition` while it is still being recorded or
    /// when its key was destroyed.
    pub async fn wav(
        &self,
        customer: CustomerId,
        id: RecordingId,
    ) -> Result<WavSource, MediaError> {
        let v = &self.vault;
        let row = self.row(customer, id).await?.ok_or(MediaError::NotFound)?;
        if row.state == RecordingState::Recording {
            return Err(MediaError::FailedPrecondition(
                "the recording is still in progress".into(),
            ));
        }
        let key = keys::data_key(v, customer, &row).await?;
        let layout = Layout {
            segment_frames: row.segment_frames,
            frames: row.frames,
        };
        let from = if row.state == RecordingState::Stored {
            Bytesource::Store(v.store.clone(), object_path(customer, row.id))
        } else {
            let path = v.spool.path(customer, row.id, Ext::Rec);
            match std::fs::File::open(&path) {
                Ok(f) => Bytesource::Spool(Arc::new(f)),
                // Uploaded (and the spool file removed) since the row was read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Bytesource::Store(v.store.clone(), object_path(customer, row.id))
                }
                Err(e) => return Err(MediaError::Internal(format!("recording spool: {e}"))),
            }
        };
        Ok(WavSource {
            src: Arc::new(Source {
                layout,
                key,
                from,
                customer: customer.get(),
            }),
        })
    }

    /// Deletes a recording: the object, the spool files and the row, together (the row is
    /// locked until the object is gone, so a racing upload finds no row and deletes its
    /// object). `false` when this tenant has no such recording.
    pub async fn delete(&self, customer: CustomerId, id: RecordingId) -> Result<bool, MediaError> {
        let v = &self.vault;
        v.db.tenant_tx(customer, async |tx| {
            if !rows::delete(tx, id.0).await? {
                return Ok(false);
            }
            match v.store.delete(&object_path(customer, id.0)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(customer_id = customer.get(), error = %e, "recording object not deleted");
                    return Err(MediaError::Unavailable(
                        "the recording store is unavailable, retry later".into(),
                    ));
                }
            }
            // A `.part` file belongs to its writer task, which removes it when it finds the
            // row gone at the end of the call.
            let path = v.spool.path(customer, id.0, Ext::Rec);
            if let Ok(meta) = tokio::fs::metadata(&path).await
                && tokio::fs::remove_file(&path).await.is_ok()
            {
                v.spool.sub(meta.len());
            }
            Ok(true)
        })
        .await
    }
}
