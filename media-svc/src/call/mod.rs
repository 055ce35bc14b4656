//! One live call (`CallService.StreamCall`), from `start` to the post-call outbox.
//!
//! [`start`] checks the first message (a `start` whose stream grant, from `OpenStream`, names its
//! CallSid and StreamSid; the call streams once), marks the call answered and spawns the driver in a `call` span that
//! carries `customer_id` and `call_sid` (so its log lines need not repeat them). The driver:
//! 1. fetches the agent profile (tenant-svc) and the caller's enriched context (memory-svc)
//!    concurrently, each bounded by the peer timeout; without a profile it uses the product
//!    defaults, without memory it goes ahead with none (both logged and counted). On an outbound
//!    call (direction OUTBOUND_API) the "caller" is the callee, and the tenant's
//!    `greet_first_outbound` is fetched alongside (not greeting first when it cannot be read);
//!    so are the tenant's call-handling settings (recording policy and texts; unreadable:
//!    recording OFF) ([`setup`]);
//! 2. builds the instructions and the greeting (an outbound call: the persona instead of the
//!    agent name, the website's context fenced as data) and opens a backend session that greets
//!    first, or on an outbound call without `greet_first_outbound` waits for the callee; at the
//!    same time, when the call is recorded, plays the announcement (and under ON_WITH_CONSENT the
//!    consent question) to the caller, so it precedes the greeting ([`consent`], [`capture`]);
//! 3. relays ([`relay`]): caller audio to the backend unchanged; backend audio to the caller
//!    followed by a mark; a barge-in clears the edge and truncates the agent's item at what the
//!    caller heard, and later audio of that item is dropped ([`barge_in`]); a session near the
//!    Realtime API's age limit is replaced by one carrying the conversation so far; while
//!    recording, caller frames and the agent audio the caller heard ([`heard`]) go to the
//!    recording writer; a `1` pressed (or the agent's `record_consent`) answers the consent
//!    question;
//! 4. writes transcript turns as they happen (a writer task, so the relay never waits on SQL);
//! 5. runs tools ([`tools`]: `get_current_time`; `transfer_call` redirects the call through
//!    Twilio REST);
//! 6. when the backend cannot be reached, fails or stalls on an inbound call, switches to the
//!    message flow ([`message`]): the prompt at once, the caller's message recorded, a callback
//!    task at the end (beyond the caps on message-taking calls: the old end, below); a call
//!    `RegisterCall` answered at the tenant's concurrent-call limit (`busy`) goes there at once,
//!    with no backend session;
//! 7. ends on `stop`, a vanished caller stream, a transfer, a backend error / lost backend
//!    (then a `hangup` tells the edge to play its apology), or the tenant's maximum call duration
//!    (Twilio is asked to complete the call, and the edge gets a `hangup`), finishes the
//!    recording, finalises the call row, usage (recorded seconds too) and the consent answer
//!    (NO_ANSWER when asked and unanswered) and queues `RecordCall` in the outbox in the same
//!    transaction (with the callback task and its `message.created` webhook event when a message
//!    was taken), and wakes the outbox worker.

pub mod barge_in;
mod capture;
mod consent;
pub mod heard;
pub mod message;
mod message_caps;
mod relay;
mod setup;
mod tones;
mod tools;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use mesh::api::common::Speaker;
use mesh::api::media::stream_call_request::Event as In;
use mesh::api::media::stream_call_response::Event as Out;
use mesh::api::media::{Hangup, StreamCallRequest, StreamCallResponse, Transfer};
use mesh::api::memory::RecordCallRequest;
use mesh::domain::{AccountSid, CallSid, CallerNumber, CustomerId, PhoneNumber, StreamSid};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::Instrument as _;

use crate::error::MediaError;
use crate::runtime::Runtime;
use crate::store::outbox::OutboxKind;
use crate::store::{self, EndReason};
use crate::{backend, instructions};
use barge_in::BargeIn;
use capture::Capture;
use store::consent::Policy;

/// The outbound half of a call stream.
pub type OutStream = futures::stream::BoxStream<'static, Result<StreamCallResponse, Status>>;

/// How long the edge has to send `start` after opening the stream.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call's end is retried while the database is unreachable, and the pause between
/// tries: longer than a PostgreSQL restart, short of holding finished calls for long. (At
/// shutdown the process waits at most `FINALISE_GRACE` for them.)
const FINISH_RETRY_BUDGET: Duration = Duration::from_secs(30);
const FINISH_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Most transcript turns a `RecordCall` carries.
const MAX_RECORDED_TURNS: usize = 5000;

/// Validates the stream's first message (a `start` carrying the grant `OpenStream` gave for
/// its CallSid and StreamSid), marks the call's one stream started and spawns the driver.
pub async fn start(
    rt: Runtime,
    mut inbound: tonic::Streaming<StreamCallRequest>,
) -> Result<OutStream, Status> {
    let first = tokio::time::timeout(START_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no `start` message in time"))??;
    let Some(StreamCallRequest {
        event: Some(In::Start(s)),
    }) = first
    else {
        return Err(MediaError::invalid("start", "the first message must be `start`").into());
    };
    let call_sid =
        CallSid::parse(&s.call_sid).map_err(|e| MediaError::invalid("start.call_sid", e))?;
    let stream_sid =
        StreamSid::parse(&s.stream_sid).map_err(|e| MediaError::invalid("start.stream_sid", e))?;
    let grant = rt.streams.verify_grant(&s.stream_grant).map_err(|e| {
        tracing::warn!(error = %e, "call stream with an invalid stream grant");
        Status::unauthenticated("invalid or expired stream grant")
    })?;
    let customer = grant.customer_id;
    mesh::telemetry::record_customer(customer);
    if grant.call_sid != call_sid || grant.stream_sid != stream_sid {
        tracing::warn!(
            customer_id = customer.get(),
            "stream grant is bound to another call or stream"
        );
        return Err(Status::permission_denied(
            "the stream grant is not bound to this call and stream",
        ));
    }
    let backend_name = rt.backend.name();
    let row = rt
        .db
        .tenant_tx(customer, async |tx| {
            store::streams::start_stream(tx, &call_sid, &stream_sid, backend_name).await
        })
        .await?;
    let outbound = row.is_outbound_api().then(|| instructions::Outbound {
        persona: row.persona.clone(),
        context: row.context.clone(),
        greet_first: false,
    });
    let busy = row.answered_busy() && !row.is_outbound_api();
    // Every line the driver logs carries the tenant and the call through this span.
    let span = tracing::info_span!("call", customer_id = customer.get(), call_sid = %call_sid);
    span.in_scope(|| {
        tracing::info!(
            backend = backend_name,
            outbound = outbound.is_some(),
            busy,
            "call stream started"
        )
    });
    let (out_tx, out_rx) = mpsc::channel(backend::CHANNEL_CAPACITY);
    let rt_calls = rt.calls.clone();
    let call = Call {
        rt,
        customer,
        call_sid,
        account_sid: row.account_sid,
        caller: row.caller.as_deref().and_then(CallerNumber::from_network),
        outbound,
        out: out_tx,
        barge: BargeIn::default(),
        capture: Capture::new(Policy::Off),
        message: None,
        message_settings: message::MessageSettings::default(),
        busy,
        usage: backend::ModelUsage::default(),
    };
    rt_calls.spawn(call.run(inbound).instrument(span));
    Ok(ReceiverStream::new(out_rx).boxed())
}

/// The driver of one call.
struct Call {
    rt: Runtime,
    customer: CustomerId,
    call_sid: CallSid,
    account_sid: AccountSid,
    /// The remote party: the caller, or the callee of an outbound call.
    caller: Option<CallerNumber>,
    /// Set on outbound calls (`greet_first` filled in by `prepare`).
    outbound: Option<instructions::Outbound>,
    out: mpsc::Sender<Result<StreamCallResponse, Status>>,
    /// Marks, what the caller heard, and what a barge-in cuts.
    barge: BargeIn,
    /// The recording: policy, consent, writer, agent audio pending its mark.
    capture: Capture,
    /// The message the caller left (message flow) or the agent took (`take_message`).
    message: Option<message::TakenMessage>,
    /// The tenant's message prompt and limit (read with the call-handling settings).
    message_settings: message::MessageSettings,
    /// Answered at the tenant's concurrent-call limit for the message flow (`RegisterCall`
    /// took its place under the message caps): no agent session is opened.
    busy: bool,
    /// The realtime model's usage summed over every `response.done` of every session of the
    /// call (a rollover's too); stored once with the call when it is finalised.
    usage: backend::ModelUsage,
}

/// Why the call ended, and what the edge is told.
enum End {
    CallerHangup,
    Transfer(PhoneNumber),
    BackendError,
    EdgeGone,
    /// The service's drain deadline passed with the call still running.
    Shutdown,
    /// The call reached its tenant's maximum duration.
    MaxDuration,
    /// The caller's message reached the tenant's maximum length.
    MessageLimit,
    /// Outside the tenant's opening hours, and it takes messages then: no agent.
    AfterHours,
}

impl End {
    fn reason(&self) -> EndReason {
        match self {
            End::CallerHangup => EndReason::CallerHangup,
            End::Transfer(_) => EndReason::Transfer,
            End::BackendError => EndReason::BackendError,
            End::EdgeGone => EndReason::StreamClosed,
            End::Shutdown => EndReason::Shutdown,
            End::MaxDuration => EndReason::MaxDuration,
            End::MessageLimit => EndReason::MessageLimit,
            End::AfterHours => EndReason::AfterHours,
        }
    }
}

/// A transcript turn on its way to the writer: who, what, and the media time it belongs at.
type TurnTx = mpsc::UnboundedSender<(Speaker, String, u32)>;

/// Writes transcript turns in order, each in its own transaction, as they happen (in the call's
/// span).
fn spawn_turn_writer(
    rt: &Runtime,
    customer: CustomerId,
    call_sid: CallSid,
) -> (TurnTx, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Speaker, String, u32)>();
    let db = rt.db.clone();
    let writer = async move {
        let mut seq = 0i32;
        while let Some((speaker, text, offset)) = rx.recv().await {
            seq += 1;
            let n = seq;
            let written = db
                .tenant_tx(customer, async |tx| {
                    store::transcripts::append_turn(tx, &call_sid, n, speaker, &text, offset).await
                })
                .await;
            if let Err(e) = written {
                tracing::error!(error = %e, "transcript turn not written");
            }
        }
    };
    (tx, tokio::spawn(writer.in_current_span()))
}

impl Call {
    async fn send(&self, event: Out) -> bool {
        self.out
            .send(Ok(StreamCallResponse { event: Some(event) }))
            .await
            .is_ok()
    }

    async fn run(mut self, mut inbound: tonic::Streaming<StreamCallRequest>) {
        metrics::gauge!("media_calls_active").increment(1.0);
        let started = Instant::now();
        let (turns, writer) = spawn_turn_writer(&self.rt, self.customer, self.call_sid.clone());
        let end = if self.busy {
            self.busy_flow(&mut inbound).await
        } else {
            self.agent_or_message(&mut inbound, &turns).await
        };
        drop(turns);
        let _ = writer.await;
        let recorded = consent::end_recording(&mut self.capture).await;
        match &end {
            End::Transfer(number) => {
                self.send(Out::Transfer(Transfer {
                    number: number.as_str().to_owned(),
                }))
                .await;
            }
            End::BackendError | End::MaxDuration | End::MessageLimit | End::AfterHours => {
                self.send(Out::Hangup(Hangup {
                    reason: end.reason().as_str().into(),
                }))
                .await;
            }
            // Shutdown: the stream just ends; the edge treats that as a failure and closes the
            // socket with an error, so Twilio plays the apology.
            End::CallerHangup | End::EdgeGone | End::Shutdown => {}
        }
        let webhook = self.message_webhook_wanted().await;
        // Finalising is idempotent (the row keeps its first end, usage is counted once, the
        // outbox entry is unique per call, the task and its event too), so it is tried again
        // through a database restart.
        let finished = store::retry_while_unavailable(
            FINISH_RETRY_BUDGET,
            FINISH_RETRY_PAUSE,
            || false,
            |e| {
                metrics::counter!("media_finish_retries_total").increment(1);
                tracing::warn!(error = %e, "database unavailable at call end; finalising again shortly");
            },
            || self.finish(&end, &recorded, webhook),
        )
        .await;
        match finished {
            // The call was counted: a monthly cap may have passed 80 %.
            Ok(()) => {
                crate::billing::caps::warn_if_due(&self.rt, self.customer, &self.call_sid).await
            }
            Err(e) => tracing::error!(error = %e, "call not finalised"),
        }
        metrics::gauge!("media_calls_active").decrement(1.0);
        metrics::histogram!("media_call_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(reason = end.reason().as_str(), "call ended");
    }

    /// Relays the call to the agent; an inbound caller whom the agent could not answer leaves a
    /// message instead of hearing the apology (an outbound callee was called by the business:
    /// nothing to take), within the caps on message-taking calls.
    async fn agent_or_message(
        &mut self,
        inbound: &mut tonic::Streaming<StreamCallRequest>,
        turns: &TurnTx,
    ) -> End {
        let end = self.relay(inbound, turns).await;
        let reason = match end {
            End::BackendError if self.outbound.is_none() => {
                Some(store::callback_tasks::Reason::BackendDown)
            }
            End::AfterHours => Some(store::callback_tasks::Reason::AfterHours),
            _ => None,
        };
        match reason {
            Some(reason) => self.message_flow(inbound, reason).await.unwrap_or(end),
            None => end,
        }
    }

    /// Whether the tenant wants the `message.created` event of the call's message (asked before
    /// the finishing transaction: a network call must not hold one). When tenant-svc cannot say,
    /// the event is queued anyway: its delivery asks again, and a webhook that does not exist
    /// ends it at once (a dead letter), so no tenant that has one misses a message.
    async fn message_webhook_wanted(&self) -> bool {
        if self.message.is_none() {
            return false;
        }
        let read = tokio::time::timeout(
            self.rt.peers.timeout(),
            self.rt.peers.outbound_settings(self.customer),
        )
        .await;
        match read {
            Ok(Ok(s)) => s.settings.is_some_and(|s| !s.webhook_url.is_empty()),
            _ => {
                tracing::warn!("webhook settings unavailable; the message event is queued anyway");
                true
            }
        }
    }

    /// Finalises the row, usage (recorded seconds too) and the consent answer, and queues
    /// `RecordCall` (and writes the call's callback task with its `message.created` event), in
    /// one transaction.
    async fn finish(
        &self,
        end: &End,
        recorded: &consent::Ended,
        webhook: bool,
    ) -> Result<(), MediaError> {
        let transferred = matches!(end, End::Transfer(_));
        let reason = end.reason();
        let customer = self.customer;
        let caller = self.caller.clone();
        self.rt
            .db
            .tenant_tx(customer, async |tx| {
                let row =
                    store::streams::finish_stream(tx, customer, &self.call_sid, reason).await?;
                if let Some(answer) = recorded.consent {
                    store::consent::set_consent(tx, &self.call_sid, answer).await?;
                }
                store::consent::count_recorded(
                    tx,
                    customer,
                    &self.call_sid,
                    recorded.recorded_seconds,
                    recorded.offset_ms,
                )
                .await?;
                store::usage::count_model_usage(tx, customer, &row, &self.usage).await?;
                if let Some(caller) = &caller {
                    let mut turns = store::transcripts::turns(tx, &row.call_sid).await?;
                    turns.truncate(MAX_RECORDED_TURNS);
                    let request = RecordCallRequest {
                        call_sid: row.call_sid.as_str().to_owned(),
                        user_id: caller.as_str().to_owned(),
                        call_time: Some(store::timestamp(
                            row.answered_at.unwrap_or(row.created_at),
                        )),
                        duration_seconds: row.duration_seconds.clamp(0, 86_400),
                        turns,
                        transferred,
                    };
                    store::outbox::enqueue(
                        tx,
                        OutboxKind::RecordCall,
                        &self.call_sid,
                        &request.encode_to_vec(),
                    )
                    .await?;
                }
                if let Some(taken) = &self.message {
                    self.write_task(tx, taken, caller.as_ref(), webhook).await?;
                }
                Ok::<_, MediaError>(())
            })
            .await?;
        self.rt.outbox_wake.notify_one();
        if self.message.is_some() && webhook {
            self.rt.webhooks.wake();
        }
        Ok(())
    }
}
