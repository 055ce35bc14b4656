//! What the caller actually heard of the agent, placed on the recording's agent channel.
//!
//! Agent audio goes to the edge in chunks, each followed by a mark ([`super::barge_in`]); the
//! edge echoes a mark once the audio before it has played. While the call is recorded, each
//! chunk sent is kept here, pending, with its mark number and the caller media time it was sent
//! at. When its mark (or a later one) is echoed it was played: it goes to the agent channel at
//! `max(agent cursor, echo media time - chunk duration)` (never overlapping what was placed
//! before; the echo arrives when the chunk finished). A barge-in (or a session replacement,
//! which also clears the edge) cuts what is playing: pending chunks are placed back to back from
//! `max(cursor, sent time)` up to the cut (the caller media time of the `clear`), the chunk
//! playing is written only up to the cut, and the rest is dropped. Chunks not echoed when the
//! call ends are dropped (the caller never heard them).
//!
//! Pending audio lives in one ring buffer that grows to the largest backlog and is then reused:
//! no allocation per chunk. It is bounded by [`MAX_PENDING_BYTES`]; a chunk arriving while the
//! backlog is full is not kept (its place stays silent in the agent channel; counted).

use std::collections::VecDeque;

use crate::audio::SAMPLE_RATE;

/// Most agent audio kept while it waits for its mark: 64 s at 8 kHz mu-law (512 KiB), more than
/// any answer the backend sends ahead of playback.
pub const MAX_PENDING_BYTES: usize = 64 * SAMPLE_RATE as usize;

/// Bytes of mu-law per millisecond.
const BYTES_PER_MS: u32 = SAMPLE_RATE / 1000;

/// Where agent audio the caller heard goes (the recording writer).
pub trait AgentSink {
    /// `mulaw` was heard from `media_ms` on.
    fn agent(&mut self, media_ms: u32, mulaw: &[u8]);
}

/// One chunk sent and not yet echoed.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// The number of the mark sent after it (`m<n>`).
    mark: u64,
    /// Its bytes (the first `len` of the ring after the chunks before it), 0 when not kept.
    len: u32,
    /// Its duration in ms (kept or not).
    ms: u32,
    /// Caller media time when it was sent.
    sent_ms: u32,
}

/// The pending agent chunks of one recorded call and the agent channel's cursor.
#[derive(Debug, Default)]
pub struct Heard {
    audio: VecDeque<u8>,
    chunks: VecDeque<Chunk>,
    /// End of the agent audio placed so far (media ms).
    cursor_ms: u32,
    /// Chunks not kept because the backlog was full.
    overflowed: u64,
}

/// The mark number of an echoed mark name (`m<n>`); `None` for other names.
pub fn mark_number(name: &str) -> Option<u64> {
    name.strip_prefix('m')?.parse().ok()
}

impl Heard {
    /// Nothing is placed before `media_ms` (where the recording begins).
    pub fn start_at(&mut self, media_ms: u32) {
        self.cursor_ms = self.cursor_ms.max(media_ms);
    }

    /// Agent audio `mulaw` went to the edge at caller media time `media_ms`, followed by mark
    /// number `mark`.
    pub fn sent(&mut self, mark: u64, media_ms: u32, mulaw: &[u8]) {
        let ms = mulaw.len() as u32 / BYTES_PER_MS;
        let len = if self.audio.len() + mulaw.len() <= MAX_PENDING_BYTES {
            self.audio.extend(mulaw);
            mulaw.len() as u32
        } else {
            self.overflowed += 1;
            metrics::counter!("media_recording_agent_overflow_total").increment(1);
            0
        };
        self.chunks.push_back(Chunk {
            mark,
            len,
            ms,
            sent_ms: media_ms,
        });
    }

    /// The edge echoed mark number `mark` at caller media time `echo_ms`: that chunk and every
    /// one before it played; each goes to `sink` (placed so that the last ends at the echo).
    pub fn played(&mut self, mark: u64, echo_ms: u32, sink: &mut impl AgentSink) {
        let Some(last) = self.chunks.iter().position(|c| c.mark == mark) else {
            return;
        };
        // The echoed chunks ended at the echo: they started their total duration before it.
        let total: u32 = self.chunks.iter().take(last + 1).map(|c| c.ms).sum();
        let mut start = echo_ms.saturating_sub(total).max(self.cursor_ms);
        for _ in 0..=last {
            let chunk = self.chunks.pop_front().expect("counted above");
            self.emit(start, chunk.len as usize, sink);
            self.drain(chunk.len as usize);
            start += chunk.ms;
            self.cursor_ms = start;
        }
    }

    /// The edge was cleared at caller media time `cut_ms` (a barge-in, or a new session): what
    /// played of the pending chunks up to the cut goes to `sink`; the rest is dropped.
    pub fn cut(&mut self, cut_ms: u32, sink: &mut impl AgentSink) {
        while let Some(chunk) = self.chunks.pop_front() {
            let start = self.cursor_ms.max(chunk.sent_ms);
            if start >= cut_ms {
                break;
            }
            let heard_ms = (cut_ms - start).min(chunk.ms);
            let bytes = ((heard_ms * BYTES_PER_MS) as usize).min(chunk.len as usize);
            self.emit(start, bytes, sink);
            self.drain(chunk.len as usize);
            self.cursor_ms = start + heard_ms;
        }
        self.clear();
    }

    /// Forgets everything pending (the call ended: unechoed audio was never heard).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.audio.clear();
    }

    /// Chunks not kept because the backlog was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Bytes of agent audio pending.
    pub fn pending_bytes(&self) -> usize {
        self.audio.len()
    }

    /// Writes the first `bytes` of the ring at `start` (two slices when it wraps).
    fn emit(&self, start: u32, bytes: usize, sink: &mut impl AgentSink) {
        if bytes == 0 {
            return;
        }
        let (a, b) = self.audio.as_slices();
        let first = bytes.min(a.len());
        sink.agent(start, &a[..first]);
        if bytes > first {
            sink.agent(start + first as u32 / BYTES_PER_MS, &b[..bytes - first]);
        }
    }

    fn drain(&mut self, bytes: usize) {
        self.audio.drain(..bytes.min(self.audio.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent channel as placed bytes: (start ms, bytes).
    #[derive(Default)]
    struct Channel(Vec<(u32, Vec<u8>)>);

    impl AgentSink for Channel {
        fn agent(&mut self, media_ms: u32, mulaw: &[u8]) {
            // Two slices of one wrapped chunk join up.
            if let Some((start, last)) = self.0.last_mut()
                && *start + last.len() as u32 / BYTES_PER_MS == media_ms
                && last.len() % (BYTES_PER_MS as usize) == 0
            {
                last.extend_from_slice(mulaw);
                return;
            }
            self.0.push((media_ms, mulaw.to_vec()));
        }
    }

    fn chunk(byte: u8) -> Vec<u8> {
        vec![byte; 160]
    }

    #[test]
    fn marks_are_m_and_a_number() {
        assert_eq!(mark_number("m12"), Some(12));
        assert_eq!(mark_number("announcement"), None);
        assert_eq!(mark_number("m"), None);
    }

    #[test]
    fn echoed_chunks_end_at_their_echo_and_never_overlap() {
        let mut h = Heard::default();
        let mut ch = Channel::default();
        // Three chunks sent at once at 1000 ms; m2 echoed at 1050 (late network: the rule
        // places them back to back ending at the echo).
        h.sent(1, 1000, &chunk(1));
        h.sent(2, 1000, &chunk(2));
        h.sent(3, 1000, &chunk(3));
        h.played(2, 1040, &mut ch);
        assert_eq!(ch.0.len(), 1);
        assert_eq!(ch.0[0].0, 1000);
        assert_eq!(ch.0[0].1, [chunk(1), chunk(2)].concat());
        // m3's echo comes "early" (1045): it still starts after what was placed (1040).
        h.played(3, 1045, &mut ch);
        assert_eq!(ch.0[0].1.len(), 480, "joined back to back");
        assert_eq!(h.pending_bytes(), 0);
        // An unknown or repeated echo changes nothing.
        h.played(3, 2000, &mut ch);
        h.played(99, 2000, &mut ch);
        assert_eq!(ch.0.len(), 1);
        // After a pause, a chunk echoed at 5020 sits at 5000.
        h.sent(4, 4990, &chunk(4));
        h.played(4, 5020, &mut ch);
        assert_eq!(ch.0[1], (5000, chunk(4)));
    }

    #[test]
    fn a_barge_in_keeps_what_played_up_to_the_cut_and_drops_the_rest() {
        let mut h = Heard::default();
        let mut ch = Channel::default();
        for m in 1..=5 {
            h.sent(m, 2000, &chunk(m as u8));
        }
        h.played(1, 2020, &mut ch);
        // The caller speaks at 2050: m2 played whole (2020..2040), m3 for 10 ms, m4, m5 never.
        h.cut(2050, &mut ch);
        assert_eq!(ch.0.len(), 1);
        let heard = &ch.0[0].1;
        assert_eq!(ch.0[0].0, 2000);
        assert_eq!(heard, &[chunk(1), chunk(2), vec![3; 80]].concat());
        assert_eq!(h.pending_bytes(), 0);
        // Echoes of cleared marks arrive later: nothing more is written.
        h.played(5, 2100, &mut ch);
        assert_eq!(ch.0.len(), 1);
        // A cut with nothing pending, or before the pending audio started, writes nothing.
        h.cut(3000, &mut ch);
        h.sent(6, 4000, &chunk(6));
        h.cut(3990, &mut ch);
        assert_eq!(ch.0.len(), 1);
    }

    #[test]
    fn the_ring_wraps_without_losing_bytes() {
        let mut h = Heard::default();
        let mut ch = Channel::default();
        let mut expected = Vec::new();
        for m in 1..=200u64 {
            let c: Vec<u8> = (0..160).map(|i| (i as u8).wrapping_add(m as u8)).collect();
            h.sent(m, (m as u32) * 20, &c);
            expected.extend_from_slice(&c);
            if m % 3 == 0 {
                h.played(m, m as u32 * 20 + 20, &mut ch);
            }
        }
        h.played(200, 4020, &mut ch);
        let all: Vec<u8> = ch.0.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn the_backlog_is_bounded_and_unechoed_audio_is_dropped() {
        let mut h = Heard::default();
        let mut ch = Channel::default();
        let chunks = MAX_PENDING_BYTES / 160 + 10;
        for m in 1..=chunks as u64 {
            h.sent(m, 0, &chunk(7));
        }
        assert_eq!(h.pending_bytes(), MAX_PENDING_BYTES);
        assert_eq!(h.overflowed(), 10);
        h.clear();
        assert_eq!(h.pending_bytes(), 0);
        h.played(chunks as u64, 999_999, &mut ch);
        assert!(ch.0.is_empty(), "hang-up dropped them");
    }
}
