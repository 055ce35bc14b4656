//! The call driver's side of recording ([`super::capture`] holds the state): the policy noted on
//! the call, the announcement (and consent question) played before the agent greets, the
//! caller's answer (DTMF `1`, or the agent's `record_consent`), and the recording finished with
//! the call.

use mesh::api::common::Speaker;
use mesh::api::media::stream_call_response::Event as Out;
use mesh::api::media::{AudioFrame, Mark};

use super::capture::{ANNOUNCEMENT_MARK, Capture, policy_of, start_writer};
use super::{Call, TurnTx};
use crate::audio::FRAME_BYTES;
use crate::peers::CallHandlingSettings;
use crate::prompts;
use crate::recording::RecordingWriter;
use crate::store::consent::{self, Consent, Policy};

/// How the caller answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// Pressed 1.
    Dtmf,
    /// Said it; the agent confirmed through `record_consent`.
    Agent,
}

/// What the start of a recorded call prepared: the writer (ON) and whether the edge is gone.
pub(super) struct Begun {
    pub writer: Option<RecordingWriter>,
    pub edge_gone: bool,
}

impl Call {
    /// At the start of the call (alongside the backend session opening): notes the policy on the
    /// call, plays the announcement (and, under ON_WITH_CONSENT, the question) to the caller
    /// followed by the mark [`ANNOUNCEMENT_MARK`], and under ON starts the writer. The agent's
    /// greeting is relayed only after this, so the caller hears the announcement first.
    pub(super) async fn begin_recording(
        &self,
        handling: &CallHandlingSettings,
        voice: &str,
        turns: &TurnTx,
    ) -> Begun {
        let policy = policy_of(handling.policy());
        let noted = self
            .rt
            .db
            .tenant_tx(self.customer, async |tx| {
                consent::set_policy(tx, &self.call_sid, policy).await
            })
            .await;
        if let Err(e) = noted {
            tracing::error!(error = %e, "recording policy not noted on the call");
        }
        let mut begun = Begun {
            writer: None,
            edge_gone: false,
        };
        if policy == Policy::Off {
            return begun;
        }
        let s = &handling.settings;
        let (text, note) = match policy {
            Policy::OnWithConsent => (
                prompts::announcement(s, true),
                "[recording announcement and consent question played]",
            ),
            _ => (
                prompts::announcement(s, false),
                "[recording announcement played]",
            ),
        };
        let (audio, writer) = tokio::join!(prompts::prompt(&self.rt, &text, voice), async {
            match policy {
                Policy::On => start_writer(&self.rt.recorder, self.customer, &self.call_sid).await,
                _ => None,
            }
        });
        begun.writer = writer;
        let _ = turns.send((Speaker::System, note.to_owned(), 0));
        for chunk in audio.chunks(FRAME_BYTES) {
            let frame = Out::Audio(AudioFrame {
                payload: chunk.to_vec(),
                sequence: 0,
                timestamp_ms: 0,
            });
            if !self.send(frame).await {
                begun.edge_gone = true;
                return begun;
            }
        }
        let mark = Out::Mark(Mark {
            name: ANNOUNCEMENT_MARK.to_owned(),
        });
        begun.edge_gone = !self.send(mark).await;
        begun
    }

    /// The caller answered the consent question (the first answer stands). The answer and its
    /// time are kept on the call; on agreement the writer starts and the recording begins now.
    /// Returns whether this answer was taken.
    pub(super) async fn consent_given(
        &mut self,
        consent: Consent,
        via: Via,
        turns: &TurnTx,
    ) -> bool {
        if !self.capture.answer(consent) {
            return false;
        }
        let kept = self
            .rt
            .db
            .tenant_tx(self.customer, async |tx| {
                consent::set_consent(tx, &self.call_sid, consent).await
            })
            .await;
        metrics::counter!("media_recording_consents_total", "answer" => consent.as_str())
            .increment(1);
        let how = match via {
            Via::Dtmf => "pressed 1",
            Via::Agent => "confirmed by the agent",
        };
        let note = match consent {
            Consent::Agreed => format!("[caller agreed to recording, {how}]"),
            _ => format!("[caller declined recording, {how}]"),
        };
        let _ = turns.send((Speaker::System, note, self.barge.media_ms()));
        match kept {
            Ok(_) if consent == Consent::Agreed => {
                tracing::info!("caller agreed to recording");
                let writer = start_writer(&self.rt.recorder, self.customer, &self.call_sid).await;
                self.capture.set_writer(writer, Some(self.barge.media_ms()));
            }
            Ok(_) => tracing::info!(answer = consent.as_str(), "recording consent answered"),
            // Without the answer on the call there is no record of the consent: no recording.
            Err(e) => {
                tracing::error!(error = %e, "consent answer not kept; the call is not recorded")
            }
        }
        true
    }

    /// The `record_consent` tool (`{"agreed": bool}`): the agent confirms a spoken answer.
    pub(super) async fn record_consent_tool(&mut self, arguments: &str, turns: &TurnTx) -> String {
        if self.capture.policy() != Policy::OnWithConsent {
            return serde_json::json!({"ok": false, "error": "consent is not asked on this call"})
                .to_string();
        }
        let agreed = serde_json::from_str::<serde_json::Value>(arguments)
            .ok()
            .and_then(|v| v.get("agreed").and_then(serde_json::Value::as_bool));
        let Some(agreed) = agreed else {
            return serde_json::json!({"ok": false, "error": "agreed must be true or false"})
                .to_string();
        };
        let consent = if agreed {
            Consent::Agreed
        } else {
            Consent::Declined
        };
        if !self.consent_given(consent, Via::Agent, turns).await {
            return serde_json::json!({"ok": false, "error": "the caller already answered"})
                .to_string();
        }
        serde_json::json!({"ok": true, "recording": agreed}).to_string()
    }
}

/// What the end of the call keeps: the answer (NO_ANSWER when asked and unanswered), and the
/// recording's seconds and offset once its writer finished.
pub(super) struct Ended {
    pub consent: Option<Consent>,
    pub recorded_seconds: u32,
    pub offset_ms: Option<u32>,
}

/// Finishes the recording of an ended call (unheard agent audio dropped).
pub(super) async fn end_recording(capture: &mut Capture) -> Ended {
    let consent = match capture.policy() {
        Policy::OnWithConsent => Some(capture.consent().unwrap_or(Consent::NoAnswer)),
        _ => None,
    };
    let offset_ms = capture.offset_ms();
    let (writer, secs) = capture.end();
    let nothing = Ended {
        consent,
        recorded_seconds: 0,
        offset_ms: None,
    };
    let Some(writer) = writer else {
        return nothing;
    };
    if offset_ms.is_none() {
        // Started but never begun (the caller left during the announcement): nothing to keep.
        if let Err(e) = writer.discard().await {
            tracing::error!(error = %e, "empty recording not discarded");
        }
        return nothing;
    }
    match writer.finish().await {
        Ok(id) => {
            tracing::info!(recording = %id, seconds = secs, "recording finished");
            Ended {
                consent,
                recorded_seconds: secs,
                offset_ms,
            }
        }
        Err(e) => {
            metrics::counter!("media_recording_finish_failures_total").increment(1);
            tracing::error!(error = %e, "recording not finished");
            nothing
        }
    }
}
