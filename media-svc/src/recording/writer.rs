//! [`RecordingWriter`]: what the call driver feeds. `caller` and `agent` are synchronous and
//! cheap: they copy the mu-law bytes into a small interleaving buffer (byte 2k = caller, 2k+1
//! = agent, silence 0xFF where a channel has nothing) that spans the segment being filled plus
//! a reorder window ([`REORDER_WINDOW_MS`]); the agent's audio arrives after it played (from
//! the mark echoes) and still lands at its time. Once the newest audio is a window past the
//! end of a segment, the segment is handed to the recording's writer task (a bounded channel,
//! `try_send`: never waits); the task seals and writes it. Audio older than the window is
//! dropped (counted); if the task falls [`CHANNEL_SEGMENTS`] segments behind, the recording
//! stops growing and is marked truncated: the call is never slowed down.
//!
//! Memory per call: the buffer, at most (1 s + window) x 16,000 B/s = 64 KB; the channel, at
//! most [`CHANNEL_SEGMENTS`] x 16 KB = 128 KB (normally empty); the task's one held segment,
//! 16 KB. At most about 210 KB, typically about 50 KB.

use tokio::sync::{mpsc, oneshot};

use super::RecordingId;
use super::format::{SEGMENT_FRAMES, SILENCE};
use crate::error::MediaError;

/// How late a channel's audio may arrive and still be placed, in milliseconds.
pub const REORDER_WINDOW_MS: u32 = 3000;
/// Segments the writer task may be behind before the recording stops growing.
pub const CHANNEL_SEGMENTS: usize = 8;

/// What the writer sends its task.
pub(crate) enum Msg {
    /// A full segment of interleaved frames (the final one of `finish` may be shorter).
    Segment(Vec<u8>),
    /// Seal the last segment, fsync, hand to the uploader.
    Finish {
        truncated: bool,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// Delete the file and the row.
    Discard {
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
}

/// One recording being written. Dropping it without [`finish`](Self::finish) keeps what was
/// recorded (the task seals it as if finished, so a call driver that fails loses nothing).
pub struct RecordingWriter {
    id: RecordingId,
    customer: i64,
    tx: mpsc::Sender<Msg>,
    /// Interleaved frames from frame `base` on.
    buf: Vec<u8>,
    /// First frame in `buf`; every frame before it was sent.
    base: u64,
    /// One past the newest frame written by either channel.
    end: u64,
    truncated: bool,
}

impl RecordingWriter {
    pub(crate) fn new(id: RecordingId, customer: i64, tx: mpsc::Sender<Msg>) -> Self {
        Self {
            id,
            customer,
            tx,
            buf: Vec::with_capacity(2 * (SEGMENT_FRAMES as usize + window_frames() as usize)),
            base: 0,
            end: 0,
            truncated: false,
        }
    }

    /// The recording's id.
    pub fn id(&self) -> RecordingId {
        self.id
    }

    /// Whether the recording stopped growing (the spool or the writer fell behind).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Caller audio (mu-law) placed at `media_ms` (the frame's timestamp since stream start).
    pub fn caller(&mut self, media_ms: u32, mulaw: &[u8]) {
        self.place(0, media_ms, mulaw);
    }

    /// Agent audio the caller HEARD (mu-law) placed at `media_ms`.
    pub fn agent(&mut self, media_ms: u32, mulaw: &[u8]) {
        self.place(1, media_ms, mulaw);
    }

    fn place(&mut self, channel: usize, media_ms: u32, mulaw: &[u8]) {
        if self.truncated || mulaw.is_empty() {
            return;
        }
        let mut pos = u64::from(media_ms) * 8;
        let mut data = mulaw;
        if pos < self.base {
            let late = usize::try_from(self.base - pos).unwrap_or(usize::MAX);
            metrics::counter!("media_recording_late_frames_total")
                .increment(late.min(data.len()) as u64);
            if late >= data.len() {
                return;
            }
            data = &data[late..];
            pos = self.base;
        }
        let end = pos + data.len() as u64;
        while end > self.base + u64::from(SEGMENT_FRAMES) + window_frames() {
            if !self.emit(u64::from(SEGMENT_FRAMES)) {
                return;
            }
        }
        // `pos` may now be before `base` if the loop moved past it (a write longer than the
        // window): keep only what is still ahead.
        if pos < self.base {
            let skip = usize::try_from(self.base - pos).unwrap_or(usize::MAX);
            if skip >= data.len() {
                return;
            }
            data = &data[skip..];
            pos = self.base;
        }
        let offset = usize::try_from(pos - self.base).expect("within the buffer");
        let needed = 2 * (offset + data.len());
        if self.buf.len() < needed {
            self.buf.resize(needed, SILENCE);
        }
        for (i, b) in data.iter().enumerate() {
            self.buf[2 * (offset + i) + channel] = *b;
        }
        self.end = self.end.max(end);
    }

    /// Sends the first `frames` frames of the buffer as one segment, without waiting; `false`
    /// when the recording stopped growing.
    fn emit(&mut self, frames: u64) -> bool {
        let n = usize::try_from(2 * frames).expect("a segment fits in memory");
        let segment = self.take(n);
        match self.tx.try_send(Msg::Segment(segment)) {
            Ok(()) => true,
            Err(_) => {
                self.stop("the recording writer fell behind");
                false
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let mut segment: Vec<u8> = if self.buf.len() > n {
            self.buf.drain(..n).collect()
        } else {
            std::mem::take(&mut self.buf)
        };
        segment.resize(n, SILENCE);
        self.base += (n / 2) as u64;
        segment
    }

    fn stop(&mut self, why: &'static str) {
        self.truncated = true;
        self.buf = Vec::new();
        metrics::counter!("media_recordings_truncated_total").increment(1);
        tracing::warn!(customer_id = self.customer, recording = %self.id, "{why}: recording truncated");
    }

    /// Seals, fsyncs and hands the file to the uploader; the recording row gets its duration.
    pub async fn finish(mut self) -> Result<RecordingId, MediaError> {
        while !self.truncated && self.base < self.end {
            let frames = (self.end - self.base).min(u64::from(SEGMENT_FRAMES));
            let n = usize::try_from(2 * frames).expect("a segment fits in memory");
            let segment = self.take(n);
            if self.tx.send(Msg::Segment(segment)).await.is_err() {
                return Err(MediaError::Internal("recording writer task ended".into()));
            }
        }
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Msg::Finish {
                truncated: self.truncated,
                reply,
            })
            .await
            .map_err(|_| MediaError::Internal("recording writer task ended".into()))?;
        done.await
            .map_err(|_| MediaError::Internal("recording writer task ended".into()))??;
        Ok(self.id)
    }

    /// Throws the recording away (consent refused): spool file and row deleted.
    pub async fn discard(self) -> Result<(), MediaError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Msg::Discard { reply })
            .await
            .map_err(|_| MediaError::Internal("recording writer task ended".into()))?;
        done.await
            .map_err(|_| MediaError::Internal("recording writer task ended".into()))?
    }
}

fn window_frames() -> u64 {
    u64::from(REORDER_WINDOW_MS) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (RecordingWriter, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(CHANNEL_SEGMENTS);
        (
            RecordingWriter::new(RecordingId(uuid::Uuid::nil()), 1, tx),
            rx,
        )
    }

    fn segments(rx: &mut mpsc::Receiver<Msg>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(Msg::Segment(s)) = rx.try_recv() {
            out.push(s);
        }
        out
    }

    #[test]
    fn channels_interleave_at_their_time_and_late_agent_audio_still_lands() {
        let (mut w, mut rx) = writer();
        // One second of caller audio, then the agent's 20 ms at 500 ms arriving late.
        for ms in (0..1000).step_by(20) {
            w.caller(ms, &[0x10; 160]);
        }
        w.agent(500, &[0x20; 160]);
        assert!(
            segments(&mut rx).is_empty(),
            "inside the window: nothing sent yet"
        );
        // Four more seconds of caller audio push the first segment out.
        for ms in (1000..5000).step_by(20) {
            w.caller(ms, &[0x11; 160]);
        }
        let segs = segments(&mut rx);
        assert_eq!(segs.len(), 1);
        let s = &segs[0];
        assert_eq!(s.len(), 16000);
        assert_eq!(s[0], 0x10);
        assert_eq!(s[1], SILENCE, "no agent audio at 0 ms");
        assert_eq!(s[2 * 4000 + 1], 0x20, "agent at 500 ms");
        assert_eq!(s[2 * 4160 + 1], SILENCE, "agent audio ends after 20 ms");
        // Agent audio older than the window is dropped.
        w.agent(100, &[0x30; 160]);
        assert!(w.buf.chunks(2).all(|f| f[1] != 0x30));
    }

    #[test]
    fn a_full_channel_truncates_instead_of_waiting() {
        let (mut w, _rx) = writer();
        let second = [0x10u8; 8000];
        for s in 0..(CHANNEL_SEGMENTS as u32 + 10) {
            w.caller(s * 1000, &second);
        }
        assert!(w.truncated());
    }
}
