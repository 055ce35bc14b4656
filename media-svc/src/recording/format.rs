//! The layout of one recording object (`recordings/<customer_id>/<recording_id>`), the same in
//! the spool and in the object store:
//!
//! ```text
//! header (32 bytes, plain): magic "NSREC\0\0\0", version u16 BE = 1, reserved u16,
//!                           segment_frames u32 BE, recording id (16 bytes)
//! segment 0 .. segment n-1: each `2 * segment_frames` bytes of interleaved stereo mu-law
//!                           (byte 2k = caller, 2k+1 = agent; 8,000 frames/s) + a 16-byte tag;
//!                           all full but the last, which is always shorter than a full one
//!                           (possibly empty: 16 bytes), and alone sealed with the last flag.
//! ```
//!
//! A file cut at any segment boundary therefore ends with a full segment not sealed as last:
//! the cut is detected, and a file whose writer died can be closed by appending an empty last
//! segment without sealing anything twice under one nonce.
//!
//! The number of frames follows from the object's length, so a range of frames maps to the
//! segments it covers without reading anything else. The WAV that readers get is computed from
//! it on the fly ([`wav_header`]): 16-bit PCM, 2 channels, 8 kHz, a 44-byte header.

use uuid::Uuid;

use super::crypto::TAG_LEN;

/// Bytes of the plain header.
pub const HEADER_LEN: u64 = 32;
/// Frames (one caller byte and one agent byte) per second.
pub const FRAMES_PER_SECOND: u64 = 8000;
/// Frames per segment: one second (16,000 bytes of audio, 16,016 sealed).
pub const SEGMENT_FRAMES: u32 = 8000;
/// Bytes of the WAV header.
pub const WAV_HEADER_LEN: u64 = 44;
/// Silence in mu-law.
pub const SILENCE: u8 = 0xFF;

const MAGIC: &[u8; 8] = b"NSREC\0\0\0";
const VERSION: u16 = 1;

/// The plain header of a recording object.
pub fn header(segment_frames: u32, recording: Uuid) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_be_bytes());
    h[12..16].copy_from_slice(&segment_frames.to_be_bytes());
    h[16..32].copy_from_slice(recording.as_bytes());
    h
}

/// Checks a header against the row: magic, version, segment size and recording id.
pub fn check_header(h: &[u8], segment_frames: u32, recording: Uuid) -> bool {
    h.len() >= HEADER_LEN as usize && h[..HEADER_LEN as usize] == header(segment_frames, recording)
}

/// Where the segments of a recording of `frames` frames lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Frames per segment.
    pub segment_frames: u32,
    /// Frames in the recording.
    pub frames: u64,
}

impl Layout {
    /// Segments in the object: the full ones and the shorter last one.
    pub fn segments(&self) -> u64 {
        self.frames / u64::from(self.segment_frames) + 1
    }

    fn sealed_full(&self) -> u64 {
        2 * u64::from(self.segment_frames) + TAG_LEN as u64
    }

    /// Byte range of segment `index` in the object, and whether it is the last.
    pub fn segment(&self, index: u64) -> (std::ops::Range<u64>, bool) {
        let start = HEADER_LEN + index * self.sealed_full();
        let first_frame = index * u64::from(self.segment_frames);
        let frames =
            (self.frames - first_frame.min(self.frames)).min(u64::from(self.segment_frames));
        let last = index + 1 == self.segments();
        (start..start + 2 * frames + TAG_LEN as u64, last)
    }

    /// Bytes of the whole object.
    pub fn object_len(&self) -> u64 {
        self.segment(self.segments() - 1).0.end
    }

    /// The layout of an object `len` bytes long, if the length is one a recording can have.
    pub fn from_object_len(segment_frames: u32, len: u64) -> Option<Self> {
        let full = 2 * u64::from(segment_frames) + TAG_LEN as u64;
        let body = len.checked_sub(HEADER_LEN)?;
        let (n, rest) = (body / full, body % full);
        let frames = match rest {
            r if r >= TAG_LEN as u64 && (r - TAG_LEN as u64).is_multiple_of(2) => {
                n * u64::from(segment_frames) + (r - TAG_LEN as u64) / 2
            }
            _ => return None,
        };
        let layout = Self {
            segment_frames,
            frames,
        };
        (layout.object_len() == len).then_some(layout)
    }

    /// Bytes of the WAV of this recording.
    pub fn wav_len(&self) -> u64 {
        WAV_HEADER_LEN + 4 * self.frames
    }
}

/// The 44-byte header of a WAV of `frames` stereo 16-bit frames at 8 kHz.
pub fn wav_header(frames: u64) -> [u8; WAV_HEADER_LEN as usize] {
    let data = u32::try_from(4 * frames).unwrap_or(u32::MAX - 36);
    let mut h = [0u8; WAV_HEADER_LEN as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&2u16.to_le_bytes()); // channels
    h[24..28].copy_from_slice(&8000u32.to_le_bytes()); // sample rate
    h[28..32].copy_from_slice(&32000u32.to_le_bytes()); // byte rate
    h[32..34].copy_from_slice(&4u16.to_le_bytes()); // block align
    h[34..36].copy_from_slice(&16u16.to_le_bytes()); // bits per sample
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// Decodes interleaved mu-law frames to interleaved 16-bit little-endian PCM.
pub fn decode_frames(mulaw: &[u8], out: &mut Vec<u8>) {
    out.reserve(mulaw.len() * 2);
    for &b in mulaw {
        out.extend_from_slice(&mesh::g711::ulaw_to_linear(b).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_length_gives_back_the_frames() {
        for frames in [0, 1, 7999, 8000, 8001, 16000, 123_457] {
            let l = Layout {
                segment_frames: SEGMENT_FRAMES,
                frames,
            };
            assert_eq!(
                Layout::from_object_len(SEGMENT_FRAMES, l.object_len()),
                Some(l),
                "{frames}"
            );
            let (last, is_last) = l.segment(l.segments() - 1);
            assert!(is_last);
            assert_eq!(last.end, l.object_len());
        }
        assert_eq!(Layout::from_object_len(SEGMENT_FRAMES, HEADER_LEN), None);
        let two = Layout {
            segment_frames: SEGMENT_FRAMES,
            frames: 16000,
        };
        assert_eq!(two.segments(), 3, "two full segments and an empty last one");
        let (last, _) = two.segment(2);
        assert_eq!(last.end - last.start, TAG_LEN as u64);
        assert_eq!(
            Layout::from_object_len(SEGMENT_FRAMES, two.segment(1).0.end),
            None,
            "a file ending with a full segment was cut"
        );
        assert_eq!(
            Layout::from_object_len(SEGMENT_FRAMES, HEADER_LEN + 17),
            None
        );
        assert_eq!(Layout::from_object_len(SEGMENT_FRAMES, 5), None);
    }

    #[test]
    fn the_wav_header_states_the_exact_length() {
        let h = wav_header(8000);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 36 + 32000);
        assert_eq!(u32::from_le_bytes(h[40..44].try_into().unwrap()), 32000);
        assert!(check_header(&header(8000, Uuid::nil()), 8000, Uuid::nil()));
        assert!(!check_header(&header(8000, Uuid::nil()), 4000, Uuid::nil()));
    }
}
