//! The gRPC handlers of media-svc: `CallService` (tenant tokens) and `MediaAdminService`
//! (service tokens). Each handler takes the tenant from the verified token only, parses wire
//! strings into domain types, and runs its SQL through `Db::tenant_tx` (see [`crate::store`]).
//! `StreamCall` hands the stream to [`crate::call`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use mesh::api::media::*;
use mesh::auth::{service_caller, tenant_caller};
use mesh::domain::{AccountSid, CallSid, CallerNumber, CustomerId, PhoneNumber};
use tonic::{Request, Response, Status};

use crate::error::MediaError;
use crate::store::{self, ListFilter, NewCall, StatusUpdate};
use crate::{Runtime, call, outbound};

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

/// Page tokens are opaque to clients: `<created_at micros>:<call_sid>`, base64url.
fn encode_page_token(call: &store::CallRow) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}:{}",
        call.created_at.timestamp_micros(),
        call.call_sid
    ))
}

fn decode_page_token(token: &str) -> Result<Option<(DateTime<Utc>, String)>, MediaError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || MediaError::invalid("page_token", "is not a token from a previous response");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (micros, sid) = text.split_once(':').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let time = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let sid = CallSid::parse(sid).map_err(|_| bad())?;
    Ok(Some((time, sid.as_str().to_owned())))
}

#[tonic::async_trait]
impl call_service_server::CallService for MediaSvc {
    type StreamCallStream = futures::stream::BoxStream<'static, Result<StreamCallResponse, Status>>;

    type ExportCallerStream =
        futures::stream::BoxStream<'static, Result<ExportCallerResponse, Status>>;

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn register_call(
        &self,
        request: Request<RegisterCallRequest>,
    ) -> Result<Response<RegisterCallResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        tracing::Span::current().record("customer_id", customer.get());
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
        // New CallSids only while the tenant is under its concurrent-call limit; repeats always.
        let (row, created) = outbound::register(&self.deps, customer, &call).await?;
        if created {
            metrics::counter!("media_calls_registered_total").increment(1);
        }
        Ok(Response::new(RegisterCallResponse {
            call: Some(row.to_proto()),
            created,
        }))
    }

    async fn stream_call(
        &self,
        request: Request<tonic::Streaming<StreamCallRequest>>,
    ) -> Result<Response<Self::StreamCallStream>, Status> {
        let caller = tenant_caller(&request)?.clone();
        let inbound = request.into_inner();
        let outbound = call::start(self.deps.clone(), caller, inbound).await?;
        Ok(Response::new(outbound))
    }

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn update_call_status(
        &self,
        request: Request<UpdateCallStatusRequest>,
    ) -> Result<Response<UpdateCallStatusResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        tracing::Span::current().record("customer_id", customer.get());
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
                store::update_status(tx, customer, &call_sid, &update).await
            })
            .await?;
        if !applied {
            metrics::counter!("media_status_callbacks_ignored_total").increment(1);
        }
        Ok(Response::new(UpdateCallStatusResponse {
            call: Some(row.to_proto()),
            applied,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn list_calls(
        &self,
        request: Request<ListCallsRequest>,
    ) -> Result<Response<ListCallsResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        tracing::Span::current().record("customer_id", customer.get());
        let r = request.get_ref();
        let limit = match r.page_size {
            0 => 50,
            n @ 1..=500 => i64::from(n),
            _ => return Err(MediaError::invalid("page_size", "must be 1-500 (or 0)").into()),
        };
        let filter = ListFilter {
            start: parse_time("start_time", r.start_time.as_ref())?,
            end: parse_time("end_time", r.end_time.as_ref())?,
            caller: (!r.caller.is_empty())
                .then(|| parse_caller("caller", &r.caller))
                .transpose()?,
            status: (r.status != 0)
                .then(|| parse_status("status", r.status))
                .transpose()?,
            after: decode_page_token(&r.page_token)?,
            limit,
        };
        let (calls, more) = self
            .deps
            .db
            .tenant_tx(customer, async |tx| store::list_calls(tx, &filter).await)
            .await?;
        let next_page_token = match (more, calls.last()) {
            (true, Some(last)) => encode_page_token(last),
            _ => String::new(),
        };
        Ok(Response::new(ListCallsResponse {
            calls: calls.iter().map(store::CallRow::to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn get_call(
        &self,
        request: Request<GetCallRequest>,
    ) -> Result<Response<GetCallResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        tracing::Span::current().record("customer_id", customer.get());
        let call_sid = parse_call_sid("call_sid", &request.get_ref().call_sid)?;
        let (call, turns) = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                let call = store::get_call(tx, &call_sid, false)
                    .await?
                    .ok_or(MediaError::NotFound)?;
                let turns = store::turns(tx, &call.call_sid).await?;
                Ok::<_, MediaError>((call, turns))
            })
            .await?;
        Ok(Response::new(GetCallResponse {
            call: Some(call.to_proto()),
            turns,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn get_usage(
        &self,
        request: Request<GetUsageRequest>,
    ) -> Result<Response<GetUsageResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        tracing::Span::current().record("customer_id", customer.get());
        let r = request.get_ref();
        let month = store::month_start(r.year, r.month).ok_or_else(|| {
            MediaError::invalid("month", "year 2000-2200 and month 1-12 required")
        })?;
        let (calls, minutes, seconds) = self
            .deps
            .db
            .tenant_tx(customer, async |tx| store::usage(tx, month).await)
            .await?;
        Ok(Response::new(GetUsageResponse {
            total_calls: calls,
            total_minutes: minutes,
            total_seconds: seconds,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn export_caller(
        &self,
        request: Request<ExportCallerRequest>,
    ) -> Result<Response<Self::ExportCallerStream>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        tracing::Span::current().record("customer_id", customer.get());
        let caller = parse_caller("caller", &request.get_ref().caller)?;
        let records = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                let mut out = Vec::new();
                for call in store::calls_of_caller(tx, &caller).await? {
                    let turns = store::turns(tx, &call.call_sid).await?;
                    let sid = call.call_sid.clone();
                    out.push(ExportCallerResponse {
                        record: Some(export_caller_response::Record::Call(call.to_proto())),
                    });
                    out.extend(turns.into_iter().map(|turn| ExportCallerResponse {
                        record: Some(export_caller_response::Record::Turn(ExportedTurn {
                            call_sid: sid.clone(),
                            turn: Some(turn),
                        })),
                    }));
                }
                Ok::<_, MediaError>(out)
            })
            .await?;
        tracing::info!(records = records.len(), "exported a caller's calls");
        Ok(Response::new(
            futures::stream::iter(records.into_iter().map(Ok)).boxed(),
        ))
    }

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn erase_caller(
        &self,
        request: Request<EraseCallerRequest>,
    ) -> Result<Response<EraseCallerResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        tracing::Span::current().record("customer_id", customer.get());
        let caller = parse_caller("caller", &request.get_ref().caller)?;
        let counts = self
            .deps
            .db
            .tenant_tx(customer, async |tx| store::erase_caller(tx, &caller).await)
            .await?;
        tracing::info!(?counts, "erased a caller's calls");
        Ok(Response::new(EraseCallerResponse { counts }))
    }

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn place_outbound_call(
        &self,
        request: Request<PlaceOutboundCallRequest>,
    ) -> Result<Response<PlaceOutboundCallResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        tracing::Span::current().record("customer_id", customer.get());
        let row = outbound::place(&self.deps, customer, request.get_ref()).await?;
        Ok(Response::new(PlaceOutboundCallResponse {
            call: Some(row.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        tracing::Span::current().record("customer_id", customer.get());
        let r = request.get_ref();
        let limit = match r.page_size {
            0 => 50,
            n @ 1..=500 => i64::from(n),
            _ => return Err(MediaError::invalid("page_size", "must be 1-500 (or 0)").into()),
        };
        let after = crate::webhooks::decode_dead_letter_token(&r.page_token)?;
        let (dead_letters, next) = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                crate::webhooks::list_dead_letters(tx, after, limit).await
            })
            .await?;
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters,
            next_page_token: next
                .map(|(t, id)| crate::webhooks::encode_dead_letter_token(t, id))
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn redeliver_dead_letter(
        &self,
        request: Request<RedeliverDeadLetterRequest>,
    ) -> Result<Response<RedeliverDeadLetterResponse>, Status> {
        let customer = tenant_caller(&request)?.customer_id;
        tracing::Span::current().record("customer_id", customer.get());
        let event_id = uuid::Uuid::parse_str(&request.get_ref().event_id)
            .map_err(|_| MediaError::invalid("event_id", "must be an event id (UUID)"))?;
        let requeued = self
            .deps
            .db
            .tenant_tx(customer, async |tx| {
                crate::webhooks::redeliver(tx, event_id).await
            })
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
}

#[tonic::async_trait]
impl media_admin_service_server::MediaAdminService for MediaSvc {
    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn erase_tenant(
        &self,
        request: Request<EraseTenantRequest>,
    ) -> Result<Response<EraseTenantResponse>, Status> {
        let issuer = service_caller(&request)?.issuer.clone();
        let customer = CustomerId::new(request.get_ref().customer_id)
            .map_err(|e| MediaError::invalid("customer_id", e))?;
        tracing::Span::current().record("customer_id", customer.get());
        let counts = self
            .deps
            .db
            .tenant_tx(customer, async |tx| store::erase_tenant(tx).await)
            .await?;
        tracing::info!(%issuer, ?counts, "erased a tenant's call data");
        Ok(Response::new(EraseTenantResponse { counts }))
    }
}
