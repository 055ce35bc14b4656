//! The offline backend, honest about what it is: it "speaks" the greeting (with `espeak-ng` when
//! installed, otherwise a three-beep tone pattern), detects the end of each caller utterance by
//! energy on the mu-law frames, answers by replaying what the caller said, and writes transcript
//! placeholders such as `[caller audio 1.3 s]`. Speech starting while the driver still has agent
//! audio pending is a barge-in, exactly as with the real backend.
//!
//! Timing uses the frames' media timestamps, not the wall clock, so tests are deterministic.

use tokio::sync::mpsc;

use super::{
    AiBackend, BackendError, CHANNEL_CAPACITY, ChannelSession, FromBackend, Session, SessionConfig,
    ToBackend,
};
use crate::audio;

/// Mean absolute amplitude above which a frame counts as speech.
pub const SPEECH_THRESHOLD: u32 = 500;
/// Silence that ends an utterance, in ms of media time.
pub const END_OF_UTTERANCE_MS: u32 = 400;
/// Utterances shorter than this (clicks, pops) are ignored.
pub const MIN_UTTERANCE_MS: u32 = 100;

/// The offline backend.
#[derive(Debug, Clone, Default)]
pub struct LocalBackend {
    /// Try `espeak-ng` for the greeting.
    pub use_espeak: bool,
}

#[tonic::async_trait]
impl AiBackend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn connect(&self, config: SessionConfig) -> Result<Session, BackendError> {
        let (to_tx, to_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (from_tx, from_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let use_espeak = self.use_espeak;
        tokio::spawn(async move {
            if !config.speak_first {
                run(to_rx, from_tx).await;
                return;
            }
            let greeting_audio = if use_espeak {
                audio::espeak(&config.greeting).await
            } else {
                None
            };
            let (greeting_audio, what) = match greeting_audio {
                Some(a) => (a, "spoken with espeak-ng"),
                None => (audio::tone_pattern(), "tone pattern"),
            };
            let _ = from_tx
                .send(FromBackend::AgentTranscript(format!(
                    "{} [greeting, {what}]",
                    config.greeting
                )))
                .await;
            if send_audio(&from_tx, "local-greeting", &greeting_audio)
                .await
                .is_err()
            {
                return;
            }
            run(to_rx, from_tx).await;
        });
        Ok(Box::new(ChannelSession {
            tx: to_tx,
            rx: from_rx,
        }))
    }
}

async fn send_audio(
    tx: &mpsc::Sender<FromBackend>,
    item_id: &str,
    bytes: &[u8],
) -> Result<(), mpsc::error::SendError<FromBackend>> {
    for chunk in bytes.chunks(audio::FRAME_BYTES) {
        tx.send(FromBackend::Audio {
            item_id: item_id.to_owned(),
            payload: chunk.to_vec(),
        })
        .await?;
    }
    Ok(())
}

/// Utterance detection state.
#[derive(Default)]
struct Detector {
    utterance: Vec<u8>,
    speaking: bool,
    last_voice_ms: u32,
    voiced_ms: u32,
}

async fn run(mut rx: mpsc::Receiver<ToBackend>, tx: mpsc::Sender<FromBackend>) {
    let mut d = Detector::default();
    let mut replies = 0u32;
    while let Some(event) = rx.recv().await {
        let ToBackend::Audio {
            payload,
            timestamp_ms,
        } = event
        else {
            // DTMF, truncation and tool results need no action here: the driver already
            // recorded them and cleared pending audio.
            continue;
        };
        let frame_ms = audio::duration(payload.len()).as_millis() as u32;
        let voiced = audio::energy(&payload) > SPEECH_THRESHOLD;
        if voiced {
            if !d.speaking {
                d.speaking = true;
                d.utterance.clear();
                d.voiced_ms = 0;
                if tx.send(FromBackend::SpeechStarted).await.is_err() {
                    return;
                }
            }
            d.last_voice_ms = timestamp_ms;
            d.voiced_ms += frame_ms;
        }
        if d.speaking {
            d.utterance.extend_from_slice(&payload);
            if !voiced && timestamp_ms.saturating_sub(d.last_voice_ms) >= END_OF_UTTERANCE_MS {
                d.speaking = false;
                if d.voiced_ms < MIN_UTTERANCE_MS {
                    continue;
                }
                // Replay the utterance without its trailing silence.
                let keep = d
                    .utterance
                    .len()
                    .saturating_sub((END_OF_UTTERANCE_MS as usize) * 8);
                let reply = d.utterance[..keep].to_vec();
                let secs = audio::duration(reply.len()).as_secs_f64();
                replies += 1;
                let item = format!("local-reply-{replies}");
                let events = [
                    FromBackend::CallerTranscript(format!("[caller audio {secs:.1} s]")),
                    FromBackend::AgentTranscript(format!("[replay of caller audio {secs:.1} s]")),
                ];
                for e in events {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
                if send_audio(&tx, &item, &reply).await.is_err() {
                    return;
                }
            }
        }
    }
}
