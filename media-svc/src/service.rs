//! The gRPC handlers of media-svc: `CallService` (tenant tokens, but for `OpenStream` and
//! `StreamCall`: the gateway's service token, the tenant and call coming from media-svc's own
//! stream credentials) and `MediaAdminService` (service tokens). Each handler takes the tenant
//! from the verified token (or stream credential) only, parses wire strings into domain types,
//! and runs its SQL through `Db::tenant_tx` (see [`crate::store`]). `RegisterCall` decides the
//! answer to a call once (the row is the record) and `OpenStream` binds its one stream
//! ([`crate::answer`]); `StreamCall` hands the stream to [`crate::call`]. Handlers open no span of their own: the
//! mesh's `rpc` span already carries the method, the request id and the `customer_id` the auth
//! layer recorded.

use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use mesh::api::media::*;
use mesh::audit::AuditPage;
use mesh::auth::{operator_target, service_caller, tenant_caller};
use mesh::domain::{AccountSid, CallSid, CallerNumber, CustomerId, PhoneNumber};
use tonic::{Request, Response, Status};

use crate::error::MediaError;
use crate::runtime::Runtime;
use crate::store::calls as sql;
use crate::store::webhooks as events;
use crate::store::{self, ListFilter, NewCall, StatusUpdate};
use crate::{answer, call, erasure, inbox, outbound, page, playback, preview};

/// Implements the media-svc gRPC services.
#[derive(Clone)]
pub struct MediaSvc {
    deps: Runtime,
}

impl MediaSvc {
    /// Handlers over the given dependencies.
    pub fn new(deps: Runtime) -> Self {
        Self { deps }
    }
}

fn parse_call_sid(field: &'static str, v: &str) -> Result<CallSid, MediaError> {
    CallSid::parse(v).map_err(|e| MediaError::invalid(field, e))
}

fn parse_caller(field: &'static str, v: &str) -> Result<CallerNumber, MediaError> {
    CallerNumber::parse(v).map_err(|e| MediaError::invalid(field, e))
}

fn parse_status(field: &'static str, v: i32) -> Result<CallStatus, MediaError> {
    match CallStatus::try_from(v) {
        Ok(CallStatus::Unspecified) | Err(_) => {
            Err(MediaError::invalid(field, "must be a known call status"))
        }
        Ok(s) => Ok(s),
    }
}

fn parse_time(
    field: &'static str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, MediaError> {
    t.map(|t| store::from_timestamp(t).ok_or_else(|| MediaError::invalid(field, "out of range")))
        .transpose()
}

/// The tenant of a request, from its verified token (the auth layer put it there and recorded
/// it on the request's span).
fn tenant<T>(request: &Request<T>) -> Result<CustomerId, Status> {
    Ok(tenant_caller(request)?.customer_id)
}

/// A list's page size: 0 is the default of 50.
fn page_size(n: i32) -> Result<i64, MediaError> {
    match n {
        0 => Ok(50),
        n @ 1..=500 => Ok(i64::from(n)),
        _ => Err(MediaError::invalid("page_size", "must be 1-500 (or 0)")),
    }
}

#[tonic::async_trait]
impl call_service_server::CallService for MediaSvc {
    type StreamCallStream = futures::stream::BoxStream<'static, Result<StreamCallResponse, Status>>;

    type ExportCallerStream =
        futures::stream::BoxStream<'static, Result<ExportCallerResponse, Status>>;

    type ReadRecordingStream =
        futures::stream::BoxStream<'static, Result<ReadRecordingResponse, Status>>;

    async fn register_call(
        &self,
        request: Request<RegisterCallRequest>,
    ) -> Result<Response<RegisterCallResponse>, Status> {
        let customer = tenant(&request)?;
        let r = request.get_ref();
        let call = NewCall {
            call_sid: parse_call_sid("call_sid", &r.call_sid)?,
            account_sid: AccountSid::parse(&r.account_sid)
                .map_err(|e| MediaError::invalid("account_sid", e))?,
            caller: CallerNumber::from_network(&r.from),
            called: PhoneNumber::parse(&r.to).map_err(|e| MediaError::invalid("to", e))?,
            direction: match CallDirection::try_from(r.direction) {
                Ok(CallDirection::Unspecified) | Err(_) => CallDirection::Inbound,
                Ok(d) => d,
            },
            status: match CallStatus::try_from(r.status) {
                Ok(CallStatus::Unspecified) => CallStatus::Ringing,
                Ok(s) => s,
                Err(_) => return Err(MediaError::invalid("status", "unknown call status").into()),
            },
        };
        // New CallSids live only while the tenant is under its concurrent-call limit (else
        // recorded as refused); repeats get the answer their row records.
        let (row, created) = outbound::register(&self.deps, customer, &call).await?;
        if created {
            metrics::counter!("media_calls_registered_total").increment(1);
        }
        let (answer, stream_ticket) = answer::of(&self.deps.streams, customer, &row)?;
        Ok(Response::new(RegisterCallResponse {
            call: Some(row.to_proto()),
            created,
            answer: answer as i32,
            stream_ticket,
        }))
    }

    async fn open_stream(
        &self,
        request: Request<OpenStreamRequest>,
    ) -> Result<Response<OpenStreamResponse>, Status> {
        service_caller(&request)?;
        let (customer, stream_grant) = answer::open_stream(&self.deps, request.get_ref()).await?;
        Ok(Response::new(OpenStreamResponse {
            stream_grant,
            customer_id: customer.get(),
        }))
    }

    async fn stream_call(
        &self,
        request: Request<tonic::Streaming<StreamCallRequest>>,
    ) -> Result<Response<Self::StreamCallStream>, Status> {
        service_caller(&request)?;
        let inbound = request.into_inner();
        let outbound = call::start(self.deps.clone(), inbound).await?;
        Ok(Response::new(outbound))
    }

    async fn update_call_status(
        &self,
        request: Request<UpdateCallStatusRequest>,
    ) -> Result<Response<UpdateCallStatusResponse>, Status> {
        let customer = tenant(&request)?;
        let r = request.get_ref();
        let call_sid = parse_call_sid("call_sid", &r.call_sid)?;
        if r.duration_seconds < 0 || r.duration_seconds > 86_400 {
            return Err(MediaError::invalid("duration_seconds", "must be 0-86400").into());
        }
        let update = StatusUpdate {
            status: parse_status("status", r.status)?,
            sequence: r.sequence_number,
            duration_seconds: (r.duration_seconds > 0).then_some(r.duration_seconds),
            event_time: parse_time("event_time", r.event_time.as_ref())?,
        };
        let (row, applied) = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                sql::update_status(tx, customer, &call_sid, &update).await
            })
            .await?;
        if !applied {
            metrics::counter!("media_status_callbacks_ignored_total").increment(1);
        } else if row.is_final() {
            // The call was counted: a monthly cap may have passed 80 %.
            crate::billing::caps::warn_if_due(&self.deps, customer, &call_sid).await;
        }
        Ok(Response::new(UpdateCallStatusResponse {
            call: Some(row.to_proto()),
            applied,
        }))
    }

    async fn list_calls(
        &self,
        request: Request<ListCallsRequest>,
    ) -> Result<Response<ListCallsResponse>, Status> {
        let customer = tenant(&request)?;
        let r = request.get_ref();
        let limit = page_size(r.page_size)?;
        let filter = ListFilter {
            start: parse_time("start_time", r.start_time.as_ref())?,
            end: parse_time("end_time", r.end_time.as_ref())?,
            caller: (!r.caller.is_empty())
                .then(|| parse_caller("caller", &r.caller))
                .transpose()?,
            status: (r.status != 0)
                .then(|| parse_status("status", r.status))
                .transpose()?,
            direction: match CallDirection::try_from(r.direction) {
                Ok(CallDirection::Unspecified) => None,
                Ok(d) => Some(d),
                Err(_) => return Err(MediaError::invalid("direction", "unknown direction").into()),
            },
            after: page::decode(&r.page_token, CallSid::parse)?,
            limit,
        };
        let (calls, more, mut recordings) = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                let (calls, more) = store::listing::list_calls(tx, &filter).await?;
                let sids: Vec<&str> = calls.iter().map(|c| c.call_sid.as_str()).collect();
                let recordings = store::playback::of_calls(tx, &sids).await?;
                let messages = store::playback::with_messages(tx, &sids).await?;
                Ok::<_, MediaError>((calls, more, (recordings, messages)))
            })
            .await?;
        let (recordings, messages) = &mut recordings;
        let next_page_token = match (more, calls.last()) {
            (true, Some(last)) => page::encode(last.created_at, last.call_sid.as_str()),
            _ => String::new(),
        };
        Ok(Response::new(ListCallsResponse {
            calls: calls
                .iter()
                .map(|c| {
                    let mut call = c.to_proto();
                    let sid = c.call_sid.as_str();
                    store::playback::fill(
                        &mut call,
                        recordings.remove(sid).unwrap_or_default(),
                        messages.contains(sid),
                    );
                    call
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_call(
        &self,
        request: Request<GetCallRequest>,
    ) -> Result<Response<GetCallResponse>, Status> {
        let customer = tenant(&request)?;
        let call_sid = parse_call_sid("call_sid", &request.get_ref().call_sid)?;
        let (call, turns, recordings, has_message) = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                let call = sql::get_call(tx, &call_sid, false)
                    .await?
                    .ok_or(MediaError::NotFound)?;
                let turns = store::transcripts::turns(tx, &call.call_sid).await?;
                let recordings = store::playback::of_call(tx, &call.call_sid).await?;
                let messages =
                    store::playback::with_messages(tx, &[call.call_sid.as_str()]).await?;
                Ok::<_, MediaError>((call, turns, recordings, !messages.is_empty()))
            })
            .await?;
        let mut call = call.to_proto();
        store::playback::fill(&mut call, recordings, has_message);
        Ok(Response::new(GetCallResponse {
            call: Some(call),
            turns,
        }))
    }

    async fn get_usage(
        &self,
        request: Request<GetUsageRequest>,
    ) -> Result<Response<GetUsageResponse>, Status> {
        let customer = tenant(&request)?;
        let r = request.get_ref();
        let month = store::month_start(r.year, r.month).ok_or_else(|| {
            MediaError::invalid("month", "year 2000-2200 and month 1-12 required")
        })?;
        let usage = self
            .deps
            .db
            .tenant_tx(customer, async |tx| store::usage::usage(tx, month).await)
            .await?;
        Ok(Response::new(GetUsageResponse {
            total_calls: usage.calls,
            total_minutes: usage.minutes,
            total_seconds: usage.seconds,
            recorded_minutes: usage.recorded_minutes,
            recorded_seconds: usage.recorded_seconds,
        }))
    }

    async fn get_call_stats(
        &self,
        request: Request<GetCallStatsRequest>,
    ) -> Result<Response<GetCallStatsResponse>, Status> {
        let customer = tenant(&request)?;
        let zone = request.get_ref().time_zone.trim();
        let zone = zone.parse::<chrono_tz::Tz>().map_err(|_| {
            MediaError::invalid("time_zone", "must be an IANA time zone, e.g. Europe/Paris")
        })?;
        let stats = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                store::listing::call_stats(tx, customer, zone.name()).await
            })
            .await?;
        Ok(Response::new(GetCallStatsResponse {
            calls_today: stats.today,
            calls_this_week: stats.this_week,
            minutes_this_month: stats.minutes_this_month,
            calls_in_progress: stats.in_progress,
            days: stats.days,
        }))
    }

    async fn export_caller(
        &self,
        request: Request<ExportCallerRequest>,
    ) -> Result<Response<Self::ExportCallerStream>, Status> {
        let caller = tenant_caller(&request)?;
        let number = parse_caller("caller", &request.get_ref().caller)?;
        let customer = caller.customer_id;
        let (records, recordings) = erasure::export_caller(&self.deps, caller, &number).await?;
        let audio =
            erasure::recording_audio(self.deps.clone(), customer, recordings).map_err(Status::from);
        Ok(Response::new(
            futures::stream::iter(records.into_iter().map(Ok))
                .chain(audio)
                .boxed(),
        ))
    }

    async fn erase_caller(
        &self,
        request: Request<EraseCallerRequest>,
    ) -> Result<Response<EraseCallerResponse>, Status> {
        let caller = tenant_caller(&request)?;
        let number = parse_caller("caller", &request.get_ref().caller)?;
        let response = erasure::erase_caller(&self.deps, caller, &number).await?;
        Ok(Response::new(response))
    }

    async fn place_outbound_call(
        &self,
        request: Request<PlaceOutboundCallRequest>,
    ) -> Result<Response<PlaceOutboundCallResponse>, Status> {
        let customer = tenant(&request)?;
        let row = outbound::place(&self.deps, customer, request.get_ref()).await?;
        Ok(Response::new(PlaceOutboundCallResponse {
            call: Some(row.to_proto()),
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let customer = tenant(&request)?;
        let r = request.get_ref();
        let limit = page_size(r.page_size)?;
        let after = page::decode(&r.page_token, uuid::Uuid::parse_str)?;
        let (dead_letters, next) = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                events::list_dead_letters(tx, after, limit).await
            })
            .await?;
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters,
            next_page_token: next
                .map(|(t, id)| page::encode(t, &id.to_string()))
                .unwrap_or_default(),
        }))
    }

    async fn redeliver_dead_letter(
        &self,
        request: Request<RedeliverDeadLetterRequest>,
    ) -> Result<Response<RedeliverDeadLetterResponse>, Status> {
        let customer = tenant(&request)?;
        let event_id = uuid::Uuid::parse_str(&request.get_ref().event_id)
            .map_err(|_| MediaError::invalid("event_id", "must be an event id (UUID)"))?;
        let requeued = self
            .deps
            .db
            .tenant_tx(customer, async |tx| events::redeliver(tx, event_id).await)
            .await?;
        if !requeued {
            // Same answer whether the event is delivered, pending, another tenant's or unknown.
            // (MediaError::NotFound speaks of calls; this is the one not-found of events.)
            return Err(Status::not_found("no dead-lettered event with this id"));
        }
        tracing::info!(%event_id, "dead-lettered webhook event queued again");
        self.deps.webhooks.wake();
        Ok(Response::new(RedeliverDeadLetterResponse {}))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<ListWebhookDeliveriesRequest>,
    ) -> Result<Response<ListWebhookDeliveriesResponse>, Status> {
        let customer = tenant(&request)?;
        let r = request.get_ref();
        let limit = page_size(r.page_size)?;
        let after = page::decode(&r.page_token, uuid::Uuid::parse_str)?;
        let (deliveries, next) = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                events::list_deliveries(tx, after, limit).await
            })
            .await?;
        Ok(Response::new(ListWebhookDeliveriesResponse {
            deliveries,
            next_page_token: next
                .map(|(t, id)| page::encode(t, &id.to_string()))
                .unwrap_or_default(),
        }))
    }

    async fn render_instructions(
        &self,
        request: Request<RenderInstructionsRequest>,
    ) -> Result<Response<RenderInstructionsResponse>, Status> {
        let customer = tenant(&request)?;
        let response = preview::render(&self.deps, customer, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn list_audit_entries(
        &self,
        request: Request<ListAuditEntriesRequest>,
    ) -> Result<Response<ListAuditEntriesResponse>, Status> {
        let customer = tenant(&request)?;
        let r = request.get_ref();
        let page = AuditPage::from_request(r.page_size, r.before_time.as_ref(), &r.before_id)
            .map_err(|e| MediaError::invalid(e.field, e.message))?;
        let entries = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                store::audit::list_audit(tx, &page).await
            })
            .await?;
        Ok(Response::new(ListAuditEntriesResponse { entries }))
    }

    async fn read_recording(
        &self,
        request: Request<ReadRecordingRequest>,
    ) -> Result<Response<Self::ReadRecordingStream>, Status> {
        let customer = tenant(&request)?;
        let r = request.get_ref();
        let call_sid = parse_call_sid("call_sid", &r.call_sid)?;
        let recording_id = match r.recording_id.as_str() {
            "" => None,
            id => Some(
                uuid::Uuid::parse_str(id)
                    .map_err(|_| MediaError::invalid("recording_id", "a UUID"))?,
            ),
        };
        let stream = playback::read(
            &self.deps,
            customer,
            &call_sid,
            recording_id,
            r.offset,
            r.length,
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn list_callback_tasks(
        &self,
        request: Request<ListCallbackTasksRequest>,
    ) -> Result<Response<ListCallbackTasksResponse>, Status> {
        let customer = tenant(&request)?;
        let r = request.get_ref();
        let limit = page_size(r.page_size)?;
        let response = inbox::list(&self.deps, customer, r, limit).await?;
        Ok(Response::new(response))
    }

    async fn set_callback_task_done(
        &self,
        request: Request<SetCallbackTaskDoneRequest>,
    ) -> Result<Response<SetCallbackTaskDoneResponse>, Status> {
        let customer = tenant(&request)?;
        let task = inbox::set_done(&self.deps, customer, request.get_ref()).await?;
        Ok(Response::new(SetCallbackTaskDoneResponse {
            task: Some(task),
        }))
    }
}

#[tonic::async_trait]
impl media_admin_service_server::MediaAdminService for MediaSvc {
    async fn erase_tenant(
        &self,
        request: Request<EraseTenantRequest>,
    ) -> Result<Response<EraseTenantResponse>, Status> {
        let (issuer, customer) = operator_target(&request, |r| r.customer_id)?;
        let counts = erasure::erase_tenant(&self.deps, &issuer, customer).await?;
        Ok(Response::new(EraseTenantResponse { counts }))
    }

    async fn prepare_prompts(
        &self,
        request: Request<PreparePromptsRequest>,
    ) -> Result<Response<PreparePromptsResponse>, Status> {
        let (_, customer) = operator_target(&request, |r| r.customer_id)?;
        Ok(Response::new(
            crate::prepare::prepare_prompts(&self.deps, customer).await?,
        ))
    }

    async fn count_dead_letters(
        &self,
        _request: Request<CountDeadLettersRequest>,
    ) -> Result<Response<CountDeadLettersResponse>, Status> {
        let counts = self
            .deps
            .db
            .service_tx(async |tx| crate::store::webhooks::dead_letter_counts(tx).await)
            .await?
            .into_iter()
            .map(|(customer_id, count)| DeadLetterTenantCount { customer_id, count })
            .collect();
        Ok(Response::new(CountDeadLettersResponse { counts }))
    }
}
