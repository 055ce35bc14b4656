//! `MemoryService`: the tenant-facing RPCs. The tenant is the verified token's, never a field of
//! the request; every statement of a request runs in that tenant's one transaction.

use mesh::api::memory::*;
use mesh::audit::AuditPage;
use mesh::auth::tenant_caller;
use mesh::domain::CustomerId;
use tonic::{Request, Response, Status};

use super::MemorySvc;
use super::requests::{self, page_token};
use crate::error::{MemoryError, Result};
use crate::model::AuditAction;
use crate::store::{self, CallRecord};
use crate::{context, wire};

/// The token's tenant (the auth layer has recorded it on the `rpc` span already).
fn tenant<T>(request: &Request<T>) -> Result<CustomerId, Status> {
    Ok(tenant_caller(request)?.customer_id)
}

#[tonic::async_trait]
impl memory_service_server::MemoryService for MemorySvc {
    type ExportCallerStream =
        futures::stream::BoxStream<'static, Result<ExportCallerResponse, Status>>;

    async fn store_memory(
        &self,
        request: Request<StoreMemoryRequest>,
    ) -> Result<Response<StoreMemoryResponse>, Status> {
        let customer = tenant(&request)?;
        let new = requests::new_memory(request.get_ref())?;
        let memory = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::insert_memory(tx, customer, &new).await
            })
            .await?;
        Ok(Response::new(StoreMemoryResponse {
            memory: Some(memory),
            customer_id: customer.get(),
        }))
    }

    async fn list_memories(
        &self,
        request: Request<ListMemoriesRequest>,
    ) -> Result<Response<ListMemoriesResponse>, Status> {
        let customer = tenant(&request)?;
        let query = requests::memory_query(request.get_ref())?;
        let mut memories = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::list_memories(tx, customer, &query).await
            })
            .await?;
        // The store returns one row past the page when there is a next one.
        let next_page_token = if memories.len() as i64 > query.limit {
            memories.truncate(query.limit as usize);
            memories.last().and_then(page_token).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListMemoriesResponse {
            memories,
            next_page_token,
            customer_id: customer.get(),
        }))
    }

    async fn delete_memory(
        &self,
        request: Request<DeleteMemoryRequest>,
    ) -> Result<Response<DeleteMemoryResponse>, Status> {
        let customer = tenant(&request)?;
        let id = uuid::Uuid::parse_str(request.get_ref().memory_id.trim())
            .map_err(|_| MemoryError::invalid("memory_id", "must be a UUID"))?;
        let deleted = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::delete_memory(tx, customer, id).await
            })
            .await?;
        if !deleted {
            return Err(MemoryError::NotFound("memory not found".into()).into());
        }
        Ok(Response::new(DeleteMemoryResponse {}))
    }

    async fn get_caller_profile(
        &self,
        request: Request<GetCallerProfileRequest>,
    ) -> Result<Response<GetCallerProfileResponse>, Status> {
        let customer = tenant(&request)?;
        let user = wire::caller("user_id", &request.get_ref().user_id)?;
        let profile = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::get_profile(tx, customer, &user).await
            })
            .await?
            .ok_or_else(|| MemoryError::NotFound("no profile for this caller".into()))?;
        Ok(Response::new(GetCallerProfileResponse {
            profile: Some(profile),
        }))
    }

    async fn update_caller_profile(
        &self,
        request: Request<UpdateCallerProfileRequest>,
    ) -> Result<Response<UpdateCallerProfileResponse>, Status> {
        let customer = tenant(&request)?;
        let req = request.get_ref();
        let user = wire::caller("user_id", &req.user_id)?;
        let update = requests::profile_update(req)?;
        let profile = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::upsert_profile(tx, customer, &user, &update).await
            })
            .await?;
        Ok(Response::new(UpdateCallerProfileResponse {
            profile: Some(profile),
        }))
    }

    async fn record_call(
        &self,
        request: Request<RecordCallRequest>,
    ) -> Result<Response<RecordCallResponse>, Status> {
        let customer = tenant(&request)?;
        let call = requests::call_to_record(request.get_ref())?;
        // Cheap idempotency check first, so a redelivered call does not pay for a summary.
        if let Some(existing) = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::get_summary(tx, customer, &call.call_sid).await
            })
            .await?
        {
            return Ok(Response::new(RecordCallResponse {
                summary: Some(existing),
                already_recorded: true,
                erased: false,
            }));
        }
        // The summarizer may call a remote model: never inside a transaction.
        let analysis = self.analyse(&call.input).await;
        let record = CallRecord {
            user: &call.user,
            call: &call.call_sid,
            at: call.at,
            duration_seconds: call.input.duration_seconds,
            analysis: &analysis,
        };
        let hash = self.subject_hash(&call.user).await?;
        let recorded = self
            .db()
            .tenant_tx(customer, async |tx| {
                // After the caller's (or tenant's) erasure, a call that began before it is
                // acknowledged and dropped (see store::erasures for the lock).
                store::lock_caller(tx, customer, record.user).await?;
                match store::erased_at(tx, customer, &hash).await? {
                    Some(erased) if record.at <= erased => Ok(None),
                    _ => store::record_call(tx, customer, &record).await.map(Some),
                }
            })
            .await?;
        let Some((summary, already_recorded)) = recorded else {
            tracing::info!(call_sid = %call.call_sid, "post-call record of an erased caller dropped");
            metrics::counter!("memory_records_dropped_after_erasure_total").increment(1);
            return Ok(Response::new(RecordCallResponse {
                summary: None,
                already_recorded: false,
                erased: true,
            }));
        };
        if !already_recorded {
            tracing::info!(
                caller = %mesh::telemetry::redact_phone(call.user.as_str()),
                summarizer = %summary.summarizer,
                "call recorded"
            );
        }
        Ok(Response::new(RecordCallResponse {
            summary: Some(summary),
            already_recorded,
            erased: false,
        }))
    }

    async fn get_enriched_context(
        &self,
        request: Request<GetEnrichedContextRequest>,
    ) -> Result<Response<GetEnrichedContextResponse>, Status> {
        let customer = tenant(&request)?;
        let req = request.get_ref();
        let user = wire::caller("user_id", &req.user_id)?;
        let num = requests::num_summaries(req.num_summaries)?;
        let rows = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::context(tx, customer, &user, num).await
            })
            .await?;
        let rendered_text = context::render(
            rows.profile.as_ref(),
            rows.averages.as_ref(),
            &rows.summaries,
            &rows.memories,
        );
        Ok(Response::new(GetEnrichedContextResponse {
            has_personality_data: rows.averages.is_some(),
            summary_count: rows.summaries.len() as i32,
            profile: rows.profile,
            personality: rows.averages,
            recent_summaries: rows.summaries,
            memories: rows.memories,
            rendered_text,
            customer_id: customer.get(),
        }))
    }

    async fn search_summaries(
        &self,
        request: Request<SearchSummariesRequest>,
    ) -> Result<Response<SearchSummariesResponse>, Status> {
        let customer = tenant(&request)?;
        let req = request.get_ref();
        let user = wire::caller("user_id", &req.user_id)?;
        let query = wire::text("query", &req.query, wire::MAX_QUERY_CHARS, true)?;
        let limit = wire::bounded(
            "limit",
            req.limit,
            wire::DEFAULT_SEARCH_LIMIT,
            wire::MAX_SEARCH_LIMIT,
        )?;
        let summaries = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::search_summaries(tx, customer, &user, &query, i64::from(limit)).await
            })
            .await?;
        Ok(Response::new(SearchSummariesResponse { summaries }))
    }

    async fn list_callers(
        &self,
        request: Request<ListCallersRequest>,
    ) -> Result<Response<ListCallersResponse>, Status> {
        let customer = tenant(&request)?;
        Ok(Response::new(
            self.callers_page(customer, request.get_ref()).await?,
        ))
    }

    async fn get_caller(
        &self,
        request: Request<GetCallerRequest>,
    ) -> Result<Response<GetCallerResponse>, Status> {
        let customer = tenant(&request)?;
        Ok(Response::new(
            self.caller(customer, request.get_ref()).await?,
        ))
    }

    async fn get_call_summary(
        &self,
        request: Request<GetCallSummaryRequest>,
    ) -> Result<Response<GetCallSummaryResponse>, Status> {
        let customer = tenant(&request)?;
        Ok(Response::new(
            self.call_summary(customer, request.get_ref()).await?,
        ))
    }

    async fn export_caller(
        &self,
        request: Request<ExportCallerRequest>,
    ) -> Result<Response<Self::ExportCallerStream>, Status> {
        let caller = tenant_caller(&request)?.clone();
        let customer = caller.customer_id;
        let user = wire::caller("user_id", &request.get_ref().user_id)?;
        let hash = self.subject_hash(&user).await?;
        // Read and audit in one transaction: the audit row exists iff the export was read.
        let export = self
            .db()
            .tenant_tx(customer, async |tx| {
                let export = store::export(tx, customer, &user).await?;
                let counts = export.counts();
                let action = AuditAction::ExportCaller;
                store::audit(tx, customer, action, &hash, &caller.subject, &counts).await?;
                Ok::<_, MemoryError>(export)
            })
            .await?;
        tracing::info!(
            caller = %mesh::telemetry::redact_phone(user.as_str()),
            "caller exported"
        );
        use export_caller_response::Record;
        let mut records: Vec<Record> = Vec::new();
        records.extend(export.memories.into_iter().map(Record::Memory));
        records.extend(export.profile.map(Record::Profile));
        records.extend(export.summaries.into_iter().map(Record::Summary));
        records.extend(export.metrics.into_iter().map(Record::Metrics));
        records.extend(export.averages.map(Record::Averages));
        let stream = futures::stream::iter(
            records
                .into_iter()
                .map(|r| Ok(ExportCallerResponse { record: Some(r) })),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn erase_caller(
        &self,
        request: Request<EraseCallerRequest>,
    ) -> Result<Response<EraseCallerResponse>, Status> {
        let caller = tenant_caller(&request)?.clone();
        let customer = caller.customer_id;
        let user = wire::caller("user_id", &request.get_ref().user_id)?;
        let hash = self.subject_hash(&user).await?;
        let action = AuditAction::EraseCaller;
        let (counts, (id, at)) = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::lock_caller(tx, customer, &user).await?;
                let counts = store::erase(tx, customer, Some(&user)).await?;
                store::mark_erased(tx, customer, &hash).await?;
                let (id, at) =
                    store::audit(tx, customer, action, &hash, &caller.subject, &counts).await?;
                Ok::<_, MemoryError>((counts, (id, at)))
            })
            .await?;
        tracing::info!(
            caller = %mesh::telemetry::redact_phone(user.as_str()),
            rows = counts.iter().map(|c| c.rows).sum::<i64>(),
            "caller erased"
        );
        Ok(Response::new(EraseCallerResponse {
            audit: Some(AuditEntry {
                action: action.as_str().into(),
                subject_hash: hash,
                actor: caller.subject.clone(),
                counts: counts.clone(),
                create_time: Some(wire::ts(at)),
                id: id.to_string(),
            }),
            counts,
        }))
    }

    async fn list_audit_entries(
        &self,
        request: Request<ListAuditEntriesRequest>,
    ) -> Result<Response<ListAuditEntriesResponse>, Status> {
        let customer = tenant(&request)?;
        let r = request.get_ref();
        let page = AuditPage::from_request(r.page_size, r.before_time.as_ref(), &r.before_id)
            .map_err(|e| MemoryError::invalid(e.field, e.message))?;
        let entries = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::list_audit(tx, customer, &page).await
            })
            .await?;
        Ok(Response::new(ListAuditEntriesResponse { entries }))
    }
}
