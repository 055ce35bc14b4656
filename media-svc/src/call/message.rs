//! The message flow: when the agent cannot answer (the realtime backend cannot be reached,
//! failed or stalled; the tenant is at its concurrent-call limit; the call came after hours),
//! media-svc itself plays the tenant's message prompt, records the caller's message and, when
//! the call ends, creates a callback task (and its `message.created` webhook event) in the
//! transaction that finalises the call ([`super::Call::finish`]).
//!
//! - The prompt starts at once: [`Call::message_flow`] sends a `clear` (whatever agent audio was
//!   still queued at the edge goes) and the prompt's frames immediately, then a short beep and a
//!   mark. The recording limit runs from the moment the edge reports that mark played (what the
//!   caller heard of the prompt is not their message), with a backstop of the prompt's length
//!   plus the limit in case the mark never comes back.
//! - It ends when the caller hangs up, or at the tenant's `message_max_seconds` (Twilio is asked
//!   to complete the call, and the edge gets a `hangup`).
//! - The caller's frames go to the recording writer (kind `Message`) when one is running.
//! - Message-taking calls are capped per tenant and platform-wide, across replicas: a call takes
//!   its place in PostgreSQL ([`crate::store::message_calls`], under an advisory lock) when it
//!   switches, or at `RegisterCall` when the tenant is at its concurrent-call limit (a `busy`
//!   call: its driver goes straight here, [`Call::busy_flow`], without an agent session). Beyond a
//!   cap the call ends as before (the edge's apology), counted and logged. [`MessageCaps`] counts
//!   per process only the calls let in while the database could not be asked.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use mesh::api::media::stream_call_request::Event as In;
use mesh::api::media::stream_call_response::Event as Out;
use mesh::api::media::{AudioFrame, Clear, Mark, StreamCallRequest};
use mesh::db::Tx;
use mesh::domain::CallerNumber;
use uuid::Uuid;

use super::{Call, End};
use crate::audio;
use crate::error::MediaError;
use crate::peers::CallHandlingSettings;
use crate::recording::{RecordingKind, RecordingWriter};
use crate::store::callback_tasks::{self, NewTask, Reason};
use crate::store::message_calls::{self, Place};
use crate::webhooks::{self, MessageEvent};

pub use super::message_caps::{MessageCaps, MessageSlot};
pub use super::tones::{COMFORT_EVERY, COMFORT_TONE_MS, beep, comfort_tone};
pub use mesh::call_handling::{DEFAULT_MESSAGE_MAX_SECONDS, DEFAULT_MESSAGE_PROMPT};
/// The mark after the prompt and the beep: from its playing on, the caller is recorded.
pub const RECORD_MARK: &str = "message-record";

/// What the message flow needs of the tenant's call-handling settings.
#[derive(Debug, Clone)]
pub struct MessageSettings {
    /// The prompt's text.
    pub prompt: String,
    /// The longest message.
    pub max_seconds: u32,
    /// The voice the prompt is spoken in.
    pub voice: String,
}

impl MessageSettings {
    /// The tenant's message prompt and longest message (the defaults where it set none), in the
    /// agent's voice.
    pub fn of(handling: &mesh::api::tenant::CallHandling, voice: &str) -> Self {
        let prompt = handling.message_prompt.trim();
        Self {
            prompt: if prompt.is_empty() {
                DEFAULT_MESSAGE_PROMPT.into()
            } else {
                prompt.to_owned()
            },
            max_seconds: match handling.message_max_seconds {
                0 => DEFAULT_MESSAGE_MAX_SECONDS,
                n => n,
            },
            voice: voice.to_owned(),
        }
    }
}

impl Default for MessageSettings {
    fn default() -> Self {
        Self {
            prompt: DEFAULT_MESSAGE_PROMPT.into(),
            max_seconds: DEFAULT_MESSAGE_MAX_SECONDS,
            voice: String::new(),
        }
    }
}

/// A message the call leaves for [`super::Call::finish`] to write as a callback task.
#[derive(Debug, Clone)]
pub(super) struct TakenMessage {
    /// Chosen once per call, so a finish retried through a database restart writes one task.
    pub task_id: Uuid,
    /// Why.
    pub reason: Reason,
    /// The agent's summary (`take_message`), or empty.
    pub note: String,
    /// The recording of the message, when one was kept.
    pub recording_id: Option<Uuid>,
}

impl TakenMessage {
    pub(super) fn new(reason: Reason) -> Self {
        Self {
            task_id: Uuid::new_v4(),
            reason,
            note: String::new(),
            recording_id: None,
        }
    }
}

/// Counts and logs a message flow refused at a cap (`tenant` is -1 when only this process's
/// own count was known).
fn refused(reason: Reason, tenant: i64, platform: i64) {
    metrics::counter!("media_message_flows_refused_total", "reason" => reason.as_str())
        .increment(1);
    tracing::warn!(
        reason = reason.as_str(),
        tenant_messages = tenant,
        platform_messages = platform,
        "message flow refused: message-taking calls at their cap"
    );
}

impl Call {
    /// The prompt's audio: the tenant's text spoken in the agent's voice ([`crate::prompts`]:
    /// rendered once, cached; the tone pattern when it cannot be spoken). Rendered at call start
    /// ([`Call::warm_message_prompt`]), so it is normally ready at once; while a first rendering
    /// runs, the caller hears comfort tones instead of silence.
    async fn prompt_audio(&self, settings: &MessageSettings) -> Result<Arc<[u8]>, End> {
        let render = crate::prompts::prompt(&self.rt, &settings.prompt, &settings.voice);
        tokio::pin!(render);
        let mut comfort = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_millis(300),
            COMFORT_EVERY,
        );
        loop {
            tokio::select! {
                audio = &mut render => return Ok(audio),
                _ = comfort.tick() => {
                    if let ControlFlow::Break(end) = self.play(&comfort_tone()).await {
                        return Err(end);
                    }
                }
            }
        }
    }

    /// At call start: keeps the tenant's message settings and warms the prompt; true when the
    /// call came outside the tenant's opening hours and it takes messages then (an inbound
    /// call goes to the message flow without an agent).
    pub(super) fn prepare_messages(
        &mut self,
        handling: &CallHandlingSettings,
        voice: &str,
    ) -> bool {
        self.warm_message_prompt(MessageSettings::of(&handling.settings, voice));
        self.outbound.is_none()
            && handling.settings.messages_after_hours
            && !crate::peers::in_opening_hours(
                &handling.settings,
                handling.time_zone,
                chrono::Utc::now(),
            )
    }

    /// Renders the message prompt in the background at call start (a cache hit after the first
    /// call with the same text and voice), so a switch to the message flow plays it at once.
    fn warm_message_prompt(&mut self, settings: MessageSettings) {
        let rt = self.rt.clone();
        let (text, voice) = (settings.prompt.clone(), settings.voice.clone());
        self.message_settings = settings;
        tokio::spawn(async move {
            crate::prompts::prompt(&rt, &text, &voice).await;
        });
    }

    /// Sends `bytes` to the edge in 20 ms frames.
    pub(super) async fn play(&self, bytes: &[u8]) -> ControlFlow<End> {
        for chunk in bytes.chunks(audio::FRAME_BYTES) {
            let frame = Out::Audio(AudioFrame {
                payload: chunk.to_vec(),
                sequence: 0,
                timestamp_ms: 0,
            });
            if !self.send(frame).await {
                return ControlFlow::Break(End::EdgeGone);
            }
        }
        ControlFlow::Continue(())
    }

    /// Runs the message flow for `reason` until the caller hangs up or the message reaches its
    /// limit; `None` when a cap on message-taking calls refuses it (the caller then gets what
    /// the call would have had without it).
    pub(super) async fn message_flow(
        &mut self,
        inbound: &mut tonic::Streaming<StreamCallRequest>,
        reason: Reason,
    ) -> Option<End> {
        let (customer, call_sid, caps) = (
            self.customer,
            self.call_sid.clone(),
            self.rt.messages.caps(),
        );
        let taken = self
            .rt
            .db
            .tenant_tx(customer, async |tx| {
                message_calls::take(tx, customer, &call_sid, reason, caps).await
            })
            .await;
        // Held to the end of the message when the database could not count it.
        let mut _local = None;
        match taken {
            Ok(Place::Taken) => {}
            Ok(Place::Full { tenant, platform }) => {
                refused(reason, tenant, platform);
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "message caps not readable; this replica's own count applies");
                match self.rt.messages.try_acquire(customer) {
                    Some(slot) => _local = Some(slot),
                    None => {
                        let local = i64::from(self.rt.messages.in_use());
                        refused(reason, -1, local);
                        return None;
                    }
                }
            }
        }
        metrics::counter!("media_message_flows_total", "reason" => reason.as_str()).increment(1);
        tracing::info!(
            reason = reason.as_str(),
            "call switched to the message flow"
        );
        Some(self.record_message(inbound, reason).await)
    }

    /// A call answered at the tenant's concurrent-call limit (`busy`, its place under the message
    /// caps taken at `RegisterCall`): the message flow at once, no agent session. Only the
    /// prompt's settings are read (the call-handling settings and the agent's voice).
    pub(super) async fn busy_flow(
        &mut self,
        inbound: &mut tonic::Streaming<StreamCallRequest>,
    ) -> End {
        let (_, config, handling) = self.session_config().await;
        self.prepare_messages(&handling, &config.voice);
        metrics::counter!("media_message_flows_total", "reason" => Reason::Busy.as_str())
            .increment(1);
        tracing::info!(
            reason = Reason::Busy.as_str(),
            "busy call answered with the message flow"
        );
        self.record_message(inbound, Reason::Busy).await
    }

    async fn record_message(
        &mut self,
        inbound: &mut tonic::Streaming<StreamCallRequest>,
        reason: Reason,
    ) -> End {
        // Whatever agent audio is still queued at the edge goes; the prompt follows at once.
        if !self.send(Out::Clear(Clear {})).await {
            return End::EdgeGone;
        }
        let settings = self.message_settings.clone();
        let writer = self.start_message_writer();
        let prompt = match self.prompt_audio(&settings).await {
            Ok(p) => p,
            Err(end) => return end,
        };
        let beep = beep();
        if let ControlFlow::Break(end) = self.play(&prompt).await {
            return end;
        }
        if let ControlFlow::Break(end) = self.play(&beep).await {
            return end;
        }
        if !self
            .send(Out::Mark(Mark {
                name: RECORD_MARK.into(),
            }))
            .await
        {
            return End::EdgeGone;
        }
        // Kept even when the message flow later replaces an agent's `take_message` note.
        let mut taken = self
            .message
            .take()
            .unwrap_or_else(|| TakenMessage::new(reason));
        taken.reason = reason;
        self.message = Some(taken);
        let max = Duration::from_secs(u64::from(settings.max_seconds.max(1)));
        let backstop = audio::duration(prompt.len() + beep.len()) + max + Duration::from_secs(2);
        let limit = tokio::time::sleep(backstop);
        tokio::pin!(limit);
        let mut recording_started = false;
        let mut writer = match writer.await {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "message not recorded");
                None
            }
            Err(_) => None,
        };
        let mut first_ms = None;
        let end = loop {
            tokio::select! {
                biased;
                msg = inbound.message() => match msg {
                    Ok(Some(StreamCallRequest { event: Some(In::Audio(frame)) })) => {
                        self.barge.caller_audio(frame.timestamp_ms);
                        if recording_started && let Some(w) = writer.as_mut() {
                            // Placed from the message's first frame: no leading silence.
                            let first = *first_ms.get_or_insert(frame.timestamp_ms);
                            w.caller(frame.timestamp_ms.saturating_sub(first), &frame.payload);
                        }
                    }
                    Ok(Some(StreamCallRequest { event: Some(In::Mark(m)) })) => {
                        if m.name == RECORD_MARK && !recording_started {
                            recording_started = true;
                            limit.as_mut().reset(tokio::time::Instant::now() + max);
                        }
                    }
                    Ok(Some(StreamCallRequest { event: Some(In::Stop(_)) })) | Ok(None) => {
                        break End::CallerHangup;
                    }
                    Ok(Some(_)) => {}
                    Err(status) => {
                        tracing::info!(code = ?status.code(), "call stream broke during the message");
                        break End::EdgeGone;
                    }
                },
                () = self.rt.cut_calls.cancelled() => break End::Shutdown,
                () = &mut limit => break self.message_limit_reached().await,
            }
        };
        self.finish_message_writer(writer).await;
        end
    }

    /// The message's own recording (kind Message: a voicemail the caller chooses to leave),
    /// opened while the prompt plays.
    fn start_message_writer(
        &self,
    ) -> tokio::task::JoinHandle<Result<Option<RecordingWriter>, MediaError>> {
        let recorder = self.rt.recorder.clone();
        let (customer, call_sid) = (self.customer, self.call_sid.clone());
        tokio::spawn(async move {
            recorder
                .start(customer, &call_sid, RecordingKind::Message)
                .await
        })
    }

    /// Seals the message's recording; the task names it.
    async fn finish_message_writer(&mut self, writer: Option<RecordingWriter>) {
        let Some(w) = writer else { return };
        match w.finish().await {
            Ok(id) => {
                if let Some(taken) = self.message.as_mut() {
                    taken.recording_id = Some(id.0);
                }
            }
            Err(e) => tracing::warn!(error = %e, "message recording not finished"),
        }
    }

    /// The message reached the tenant's limit: Twilio is asked to end the call (the edge's
    /// hang-up ends it either way).
    async fn message_limit_reached(&self) -> End {
        metrics::counter!("media_message_limit_total").increment(1);
        tracing::info!("message reached its maximum length; hanging up");
        if let Err(e) =
            crate::twilio::complete_call(&self.rt.twilio, &self.account_sid, &self.call_sid).await
        {
            tracing::warn!(error = %e, "Twilio did not end the call; the edge's hang-up ends it");
        }
        End::MessageLimit
    }
}

impl Call {
    /// Writes the call's callback task, marks why the call went to the message flow, queues the
    /// owners' notice (mailed by tenant-svc) and its `message.created` event when the tenant
    /// wants events; inside the finishing transaction, so the task, the notice, the event and
    /// the call's end commit together.
    pub(super) async fn write_task(
        &self,
        tx: &Tx<'_>,
        taken: &TakenMessage,
        caller: Option<&CallerNumber>,
        webhook: bool,
    ) -> Result<(), MediaError> {
        let (task_id, created_at, _) = callback_tasks::upsert(
            tx,
            &NewTask {
                task_id: taken.task_id,
                call_sid: &self.call_sid,
                caller,
                reason: taken.reason,
                recording_id: taken.recording_id,
                transcript: None,
                note: &taken.note,
            },
        )
        .await?;
        if taken.reason != Reason::Agent {
            callback_tasks::mark_call(tx, &self.call_sid, taken.reason).await?;
        }
        crate::outbox::queue_owner_notice(tx, self.customer, &self.call_sid, task_id, taken.reason)
            .await?;
        if webhook {
            let event = MessageEvent {
                task_id,
                reason: taken.reason,
                created_at,
                call_sid: &self.call_sid,
                caller,
            };
            let portal = &self.rt.outbound.public_base_url;
            webhooks::enqueue_message(tx, &self.rt.webhooks, self.customer, portal, event).await?;
        }
        Ok(())
    }
}
