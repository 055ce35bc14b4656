//! Sound for the local backend: the energy of caller frames (to find utterances), a
//! recognisable tone pattern, and optional speech through `espeak-ng`, all in 8 kHz G.711 mu-law
//! (the codec itself is the mesh's one, [`mesh::g711`]).

use std::time::Duration;

use mesh::g711::{linear_to_ulaw, ulaw_to_linear};

/// Samples per second of telephone audio.
pub const SAMPLE_RATE: u32 = 8000;
/// Bytes (= samples) in a 20 ms frame.
pub const FRAME_BYTES: usize = 160;

/// Mean absolute amplitude of a mu-law buffer (0 for silence, a few thousand for speech).
pub fn energy(payload: &[u8]) -> u32 {
    if payload.is_empty() {
        return 0;
    }
    let sum: u64 = payload
        .iter()
        .map(|b| u64::from(ulaw_to_linear(*b).unsigned_abs()))
        .sum();
    (sum / payload.len() as u64) as u32
}

/// Duration of a mu-law buffer.
pub fn duration(bytes: usize) -> Duration {
    Duration::from_micros(bytes as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
}

/// The offline "greeting": three rising beeps (440, 660, 880 Hz, 200 ms each, 100 ms apart),
/// recognisable on a phone and in tests.
pub fn tone_pattern() -> Vec<u8> {
    let mut out = Vec::new();
    for freq in [440.0_f64, 660.0, 880.0] {
        for n in 0..(SAMPLE_RATE as usize / 5) {
            let t = n as f64 / f64::from(SAMPLE_RATE);
            let v = (2.0 * std::f64::consts::PI * freq * t).sin() * 8000.0;
            out.push(linear_to_ulaw(v as i16));
        }
        out.extend(std::iter::repeat_n(
            linear_to_ulaw(0),
            SAMPLE_RATE as usize / 10,
        ));
    }
    out
}

/// Speaks `text` with `espeak-ng` when it is installed: WAV output resampled to 8 kHz mu-law.
/// `None` when it is missing, fails or takes too long.
pub async fn espeak(text: &str) -> Option<Vec<u8>> {
    espeak_voice(text, None).await
}

/// [`espeak`] with an espeak-ng voice (`-v`, e.g. `en-us+f3`); `None` is espeak-ng's default.
pub async fn espeak_voice(text: &str, voice: Option<&str>) -> Option<Vec<u8>> {
    let mut command = tokio::process::Command::new("espeak-ng");
    if let Some(v) = voice {
        command.arg("-v").arg(v);
    }
    let run = command
        .arg("--stdout")
        .arg("--")
        .arg(text)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .ok()?
        .ok()?;
    if !out.status.success() {
        return None;
    }
    wav_to_ulaw(&out.stdout)
}

/// 16-bit mono PCM WAV to 8 kHz mu-law (linear interpolation).
fn wav_to_ulaw(wav: &[u8]) -> Option<Vec<u8>> {
    if wav.len() < 44 || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return None;
    }
    let mut pos = 12;
    let mut rate = 0u32;
    while pos + 8 <= wav.len() {
        let id = &wav[pos..pos + 4];
        let size = u32::from_le_bytes(wav[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 8 <= wav.len() {
            rate = u32::from_le_bytes(wav[body + 4..body + 8].try_into().ok()?);
        }
        if id == b"data" {
            let end = if size == 0 || body + size > wav.len() {
                wav.len()
            } else {
                body + size
            };
            let samples: Vec<i16> = wav[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            if rate == 0 || samples.is_empty() {
                return None;
            }
            let n_out = samples.len() as u64 * u64::from(SAMPLE_RATE) / u64::from(rate);
            let mut out = Vec::with_capacity(n_out as usize);
            for i in 0..n_out {
                let src = i as f64 * f64::from(rate) / f64::from(SAMPLE_RATE);
                let j = src as usize;
                let frac = src - j as f64;
                let a = f64::from(samples[j.min(samples.len() - 1)]);
                let b = f64::from(samples[(j + 1).min(samples.len() - 1)]);
                out.push(linear_to_ulaw((a + (b - a) * frac) as i16));
            }
            return Some(out);
        }
        pos = body + size + (size & 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // The codec's own round trip is tested beside it, in mesh/src/g711.rs.
    #[test]
    fn silence_has_no_energy_and_the_tone_has_some() {
        assert_eq!(energy(&[0xFF; 160]), 0);
        assert!(energy(&tone_pattern()[..1600]) > 1000);
    }

    #[tokio::test]
    async fn espeak_speech_becomes_8khz_mulaw_when_installed() {
        let installed = std::process::Command::new("espeak-ng")
            .arg("--version")
            .output()
            .is_ok();
        let speech = espeak("Good morning! This is Ada.").await;
        if !installed {
            // scripts/test.sh installs espeak-ng, so under CI its absence fails, not skips.
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "espeak-ng is missing"
            );
            assert!(speech.is_none());
            return;
        }
        let speech = speech.expect("espeak-ng output decodes");
        let secs = duration(speech.len()).as_secs_f64();
        assert!((0.8..6.0).contains(&secs), "{secs} s of speech");
        assert!(energy(&speech) > 100, "audible");
    }

    #[test]
    fn tone_pattern_is_nine_tenths_of_a_second() {
        assert_eq!(duration(tone_pattern().len()), Duration::from_millis(900));
    }
}
