//! The tones media-svc itself plays: the beep before a message is recorded, and the comfort
//! tone a caller hears while the agent is being reached (never dead air).

use std::time::Duration;

use crate::audio;

/// 400 ms of a 1 kHz tone: "speak now".
pub fn beep() -> Vec<u8> {
    tone(1000.0, 400, 6000.0)
}

/// What a caller hears while the agent is being reached (never dead air): a soft 425 Hz tone
/// of [`COMFORT_TONE_MS`], then silence to the end of one [`COMFORT_EVERY`] period, so tones sent
/// once per period play back to back.
pub fn comfort_tone() -> Vec<u8> {
    let period = u32::try_from(COMFORT_EVERY.as_millis()).unwrap_or(1000);
    let mut out = tone(425.0, COMFORT_TONE_MS, 2500.0);
    out.extend(std::iter::repeat_n(
        mesh::g711::linear_to_ulaw(0),
        ((period - COMFORT_TONE_MS) * audio::SAMPLE_RATE / 1000) as usize,
    ));
    out
}

/// A comfort tone's period: one is sent per period while the caller waits.
pub const COMFORT_EVERY: Duration = Duration::from_millis(1000);
/// The tone part of each period.
pub const COMFORT_TONE_MS: u32 = 250;

fn tone(freq: f64, ms: u32, amplitude: f64) -> Vec<u8> {
    (0..(ms * audio::SAMPLE_RATE / 1000))
        .map(|n| {
            let t = f64::from(n) / f64::from(audio::SAMPLE_RATE);
            let v = (2.0 * std::f64::consts::PI * freq * t).sin() * amplitude;
            mesh::g711::linear_to_ulaw(v as i16)
        })
        .collect()
}
