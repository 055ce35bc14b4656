//! The relay loop of a live call: one task polls the caller's stream, the backend session, the
//! session's age, the call's maximum duration and the service's shutdown, and hands each event to a handler that says whether
//! the call goes on ([`ControlFlow::Continue`]) or how it ended. Caller audio and DTMF go to the
//! backend unchanged; backend audio goes to the caller followed by a mark, unless a barge-in cut
//! its item ([`super::barge_in`]); transcripts go to the turn writer and into the history a
//! replacement session is given. While the call is recorded, caller frames and the agent audio
//! as its marks come back go to the recording ([`super::capture`]); a `1` answers the consent
//! question.

use std::ops::ControlFlow;
use std::time::Duration;

use mesh::api::common::Speaker;
use mesh::api::media::stream_call_request::Event as In;
use mesh::api::media::stream_call_response::Event as Out;
use mesh::api::media::{AudioFrame, Clear, DtmfDigit, Mark, StreamCallRequest};
use mesh::api::tenant::AgentProfile;
use mesh::domain::CustomerId;
use tonic::Status;

use super::capture::{Capture, policy_of};
use super::consent::Via;
use super::message::{COMFORT_EVERY, comfort_tone};
use super::setup::rollover_instructions;
use super::{Call, End, TurnTx};
use crate::backend::{CONNECT_TIMEOUT, FromBackend, Session, SessionConfig, ToBackend};
use crate::runtime::Runtime;
use crate::store::consent::{Consent, Policy};

/// What a handler decides: go on, or the call ended this way.
type Step = ControlFlow<End>;

/// The call's backend side while it relays.
struct Live {
    session: Session,
    /// What the session was opened with (a replacement session starts from it).
    config: SessionConfig,
    /// The profile the tools read.
    profile: AgentProfile,
    /// The conversation so far, as a replacement session is told it.
    history: Vec<String>,
}

impl Live {
    async fn send(&mut self, event: ToBackend) -> Step {
        match self.session.send(event).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(End::BackendError),
        }
    }
}

/// The tenant's maximum call duration (`max_call_minutes`), or the platform's when it cannot be
/// read in time.
async fn tenant_max_call(rt: Runtime, customer: CustomerId) -> Duration {
    let limits = &rt.outbound.limits;
    let read = tokio::time::timeout(rt.peers.timeout(), rt.peers.outbound_settings(customer)).await;
    match read {
        Ok(Ok(s)) => limits.max_call_for(s.settings.map_or(0, |s| s.max_call_minutes)),
        _ => {
            tracing::warn!(
                "outbound settings unavailable; the platform's maximum call duration applies"
            );
            limits.max_call
        }
    }
}

/// Silence after the caller's last voiced frame, with nothing from the backend since, after
/// which the caller hears a comfort tone (the backend is slow to answer, or stalling: it ends
/// as a backend error at its stall timeout, and the message flow follows).
const COMFORT_AFTER_SPEECH: Duration = Duration::from_millis(2500);
/// Comfort tones at most per wait (the backend's stall timeout ends a longer one).
const COMFORT_TONES: u8 = 6;

/// The comfort-tone timer of a relaying call: armed by caller speech, disarmed by anything from
/// the backend, due [`COMFORT_AFTER_SPEECH`] after the last speech and then every
/// [`COMFORT_EVERY`], at most [`COMFORT_TONES`] times.
struct Comfort {
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    left: u8,
}

impl Comfort {
    fn new(idle: Duration) -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep(idle)),
            left: 0,
        }
    }

    fn arm(&mut self) {
        let at = tokio::time::Instant::now() + COMFORT_AFTER_SPEECH;
        self.timer.as_mut().reset(at);
        self.left = COMFORT_TONES;
    }

    fn disarm(&mut self) {
        self.left = 0;
    }

    fn armed(&self) -> bool {
        self.left > 0
    }

    /// Resolves when a tone is due, and counts it (cancel-safe: the timer is stored).
    async fn due(&mut self) {
        (&mut self.timer).await;
        self.left = self.left.saturating_sub(1);
        let next = tokio::time::Instant::now() + COMFORT_EVERY;
        self.timer.as_mut().reset(next);
    }
}

impl Call {
    /// Whether this message from the edge is caller speech while no agent audio is unheard:
    /// what (re)arms the comfort tone.
    fn caller_spoke(&self, msg: &Result<Option<StreamCallRequest>, Status>) -> bool {
        match msg {
            Ok(Some(StreamCallRequest {
                event: Some(In::Audio(frame)),
            })) => {
                !self.barge.agent_unheard()
                    && crate::audio::energy(&frame.payload)
                        > crate::backend::local::SPEECH_THRESHOLD
            }
            _ => false,
        }
    }

    /// Sends an event to the edge; a closed edge ends the call.
    async fn to_edge(&self, event: Out) -> Step {
        if self.send(event).await {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(End::EdgeGone)
        }
    }

    /// Prepares the call, opens the backend session and relays until the call ends.
    pub(super) async fn relay(
        &mut self,
        inbound: &mut tonic::Streaming<StreamCallRequest>,
        turns: &TurnTx,
    ) -> End {
        let (profile, config, handling) = self.session_config().await;
        if self.prepare_messages(&handling, &config.voice) {
            return End::AfterHours;
        }
        // The announcement goes to the edge while the session opens; the greeting is relayed
        // only once both are done, so the caller hears the announcement first.
        let (session, begun) = tokio::join!(
            self.open_session(config.clone()),
            self.begin_recording(&handling, &config.voice, turns)
        );
        let policy = policy_of(handling.policy());
        self.capture = Capture::new(policy);
        self.capture.set_writer(begun.writer, None);
        if policy != Policy::Off {
            self.capture.announced();
        }
        let session = match (session, begun.edge_gone) {
            (Ok(mut s), true) => {
                s.close().await;
                return End::EdgeGone;
            }
            (Ok(s), false) => s,
            (Err(end), _) => return end,
        };
        let mut live = Live {
            session,
            config,
            profile,
            history: Vec::new(),
        };
        // One timer for the whole session (not one per loop turn: the loop runs per frame).
        let rollover = tokio::time::sleep(self.rt.session_max);
        tokio::pin!(rollover);
        // The call's maximum duration: the platform's until the tenant's setting arrives (read
        // alongside the relay, so it delays no audio).
        let started = tokio::time::Instant::now();
        let max_call = tokio::time::sleep(self.rt.outbound.limits.max_call);
        tokio::pin!(max_call);
        let tenant_max = tenant_max_call(self.rt.clone(), self.customer);
        tokio::pin!(tenant_max);
        let mut tenant_max_known = false;
        // The comfort tone while the caller waits for an answer.
        let mut comfort = Comfort::new(self.rt.session_max);
        let end = loop {
            // In this order when several are ready: what the caller already sent (a `stop` that
            // arrived with a shutdown must still end the call as a hang-up), then a shutdown cut,
            // then the rest. Inbound frames arrive every 20 ms, so the cut waits at most one.
            let step = tokio::select! {
                biased;
                msg = inbound.message() => {
                    if self.caller_spoke(&msg) {
                        comfort.arm();
                    }
                    self.on_caller(msg, &mut live, turns).await
                }
                () = self.rt.cut_calls.cancelled() => ControlFlow::Break(End::Shutdown),
                limit = &mut tenant_max, if !tenant_max_known => {
                    tenant_max_known = true;
                    max_call.as_mut().reset(started + limit);
                    ControlFlow::Continue(())
                }
                () = &mut max_call => self.max_duration_reached().await,
                () = &mut rollover => {
                    rollover.as_mut().reset(tokio::time::Instant::now() + self.rt.session_max);
                    self.roll_over(&mut live).await
                }
                ev = live.session.recv() => {
                    comfort.disarm();
                    self.on_backend(ev, &mut live, turns).await
                }
                () = comfort.due(), if comfort.armed() => self.play(&comfort_tone()).await,
            };
            if let ControlFlow::Break(end) = step {
                break end;
            }
        };
        live.session.close().await;
        end
    }

    /// The call reached its maximum duration: Twilio is asked to end it (best effort: the edge's
    /// `hangup` ends the stream either way, and Twilio then plays what follows `<Connect>`).
    async fn max_duration_reached(&self) -> Step {
        metrics::counter!("media_calls_max_duration_total").increment(1);
        tracing::info!("call reached its maximum duration; hanging up");
        if let Err(e) =
            crate::twilio::complete_call(&self.rt.twilio, &self.account_sid, &self.call_sid).await
        {
            tracing::warn!(error = %e, "Twilio did not end the call; the edge's hang-up ends it");
        }
        ControlFlow::Break(End::MaxDuration)
    }

    /// Realtime sessions end at 30 minutes: continue in a fresh session that carries the
    /// conversation so far, without greeting again.
    async fn roll_over(&mut self, live: &mut Live) -> Step {
        let next = SessionConfig {
            instructions: rollover_instructions(&live.config.instructions, &live.history),
            greeting: String::new(),
            speak_first: false,
            ..live.config.clone()
        };
        let Ok(Ok(fresh)) =
            tokio::time::timeout(CONNECT_TIMEOUT, self.rt.backend.connect(next)).await
        else {
            metrics::counter!("media_backend_errors_total").increment(1);
            tracing::error!("backend session rollover failed");
            return ControlFlow::Break(End::BackendError);
        };
        live.session.close().await;
        live.session = fresh;
        metrics::counter!("media_session_rollovers_total").increment(1);
        tracing::info!("backend session rolled over");
        if self.barge.session_replaced() {
            self.capture.cleared(self.barge.media_ms());
            return self.to_edge(Out::Clear(Clear {})).await;
        }
        ControlFlow::Continue(())
    }

    /// One message from the edge.
    async fn on_caller(
        &mut self,
        msg: Result<Option<StreamCallRequest>, Status>,
        live: &mut Live,
        turns: &TurnTx,
    ) -> Step {
        let event = match msg {
            Ok(Some(StreamCallRequest { event: Some(e) })) => e,
            Ok(Some(_)) => return ControlFlow::Continue(()),
            Ok(None) => return ControlFlow::Break(End::CallerHangup),
            Err(status) => {
                tracing::info!(code = ?status.code(), "call stream broke");
                return ControlFlow::Break(End::EdgeGone);
            }
        };
        match event {
            In::Audio(frame) => {
                self.barge.caller_audio(frame.timestamp_ms);
                self.capture.caller(frame.timestamp_ms, &frame.payload);
                live.send(ToBackend::Audio {
                    payload: frame.payload,
                    timestamp_ms: frame.timestamp_ms,
                })
                .await
            }
            In::Dtmf(d) => self.dtmf(&d, live, turns).await,
            In::Mark(m) => {
                self.barge.mark_played(&m.name);
                self.capture.mark_played(&m.name, self.barge.media_ms());
                ControlFlow::Continue(())
            }
            In::Stop(_) => ControlFlow::Break(End::CallerHangup),
            In::Start(_) => {
                tracing::warn!("second `start` on a call stream ignored");
                ControlFlow::Continue(())
            }
        }
    }

    /// A key the caller pressed: one digit (`0-9`, `A-D`, `*`, `#`), noted in the transcript and
    /// told to the backend.
    async fn dtmf(&mut self, d: &DtmfDigit, live: &mut Live, turns: &TurnTx) -> Step {
        let digit: String = d
            .digit
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '*' || *c == '#')
            .take(1)
            .collect();
        if digit.is_empty() {
            return ControlFlow::Continue(());
        }
        if digit == "1" && self.capture.awaiting_consent() {
            self.consent_given(Consent::Agreed, Via::Dtmf, turns).await;
        }
        let note = format!("[caller pressed {digit}]");
        live.history.push(note.clone());
        let _ = turns.send((Speaker::System, note, self.barge.media_ms()));
        live.send(ToBackend::Dtmf(digit)).await
    }

    /// One event from the backend (`None`: it is gone).
    async fn on_backend(
        &mut self,
        ev: Option<FromBackend>,
        live: &mut Live,
        turns: &TurnTx,
    ) -> Step {
        let Some(ev) = ev else {
            tracing::error!("backend session ended unexpectedly");
            return ControlFlow::Break(End::BackendError);
        };
        match ev {
            FromBackend::Audio { item_id, payload } => self.agent_audio(&item_id, payload).await,
            FromBackend::SpeechStarted => self.speech_started(live).await,
            FromBackend::CallerTranscript(text) => {
                live.history.push(format!("Caller: {text}"));
                let _ = turns.send((Speaker::Caller, text, self.barge.media_ms()));
                ControlFlow::Continue(())
            }
            FromBackend::AgentTranscript(text) => {
                live.history.push(format!("Agent: {text}"));
                let _ = turns.send((Speaker::Agent, text, self.barge.agent_turn_ms()));
                ControlFlow::Continue(())
            }
            FromBackend::ToolCall {
                call_id,
                name,
                arguments,
            } if name == "record_consent" => {
                let output = self.record_consent_tool(&arguments, turns).await;
                live.send(ToBackend::ToolResult { call_id, output }).await
            }
            FromBackend::ToolCall {
                call_id,
                name,
                arguments,
            } => {
                let (output, end) = self.tool(&live.profile, &name, &arguments, turns).await;
                if let Some(end) = end {
                    return ControlFlow::Break(end);
                }
                live.send(ToBackend::ToolResult { call_id, output }).await
            }
            FromBackend::Usage(usage) => {
                self.usage.add(&usage);
                ControlFlow::Continue(())
            }
            FromBackend::Error(e) => {
                metrics::counter!("media_backend_errors_total").increment(1);
                tracing::error!(error = %e, "backend error ends the call");
                ControlFlow::Break(End::BackendError)
            }
        }
    }

    /// Agent audio: to the caller followed by its mark, unless a barge-in cut its item.
    async fn agent_audio(&mut self, item_id: &str, payload: Vec<u8>) -> Step {
        let Some(mark) = self.barge.agent_audio(item_id) else {
            return ControlFlow::Continue(());
        };
        self.capture
            .agent_sent(self.barge.marks_sent(), self.barge.media_ms(), &payload);
        self.to_edge(Out::Audio(AudioFrame {
            payload,
            sequence: 0,
            timestamp_ms: 0,
        }))
        .await?;
        self.to_edge(Out::Mark(Mark { name: mark })).await
    }

    /// The caller started speaking: a barge-in when agent audio is unheard (`clear` to the
    /// edge, the item truncated at what was heard).
    /// While the recording announcement plays there is no barge-in: it must be heard whole.
    async fn speech_started(&mut self, live: &mut Live) -> Step {
        if self.capture.announcing() {
            return ControlFlow::Continue(());
        }
        let Some(cut) = self.barge.speech_started() else {
            return ControlFlow::Continue(());
        };
        self.capture.cleared(self.barge.media_ms());
        metrics::counter!("media_barge_in_total").increment(1);
        self.to_edge(Out::Clear(Clear {})).await?;
        match cut.truncate {
            Some((item_id, audio_end_ms)) => {
                live.send(ToBackend::Truncate {
                    item_id,
                    audio_end_ms,
                })
                .await
            }
            None => ControlFlow::Continue(()),
        }
    }
}
