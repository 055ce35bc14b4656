//! The gRPC handlers of memory-svc.
//!
//! Each handler: takes the tenant from the verified token only (`tenant_caller`), parses every
//! wire field into a domain value (INVALID_ARGUMENT naming the field, before anything is
//! stored), runs its SQL in one `Db::tenant_tx` (row-level security confines it to that
//! tenant), and maps errors once through [`MemoryError`].

use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use mesh::api::common::{Speaker, TableCount};
use mesh::api::memory::*;
use mesh::auth::{service_caller, tenant_caller};
use mesh::domain::{CallSid, CallerNumber, CustomerId};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use tokio::sync::OnceCell;
use tonic::{Request, Response, Status};

use crate::error::{MemoryError, Result};
use crate::store::{self, NewMemory};
use crate::summarizer::{CallInput, HeuristicSummarizer, Summarizer, Turn};
use crate::{Deps, Options, context, wire};

/// Implements the memory-svc gRPC services. Cheap to clone.
#[derive(Clone)]
pub struct MemorySvc {
    inner: Arc<Inner>,
}

struct Inner {
    deps: Deps,
    summarizer: Arc<dyn Summarizer>,
    /// Key of the audit subject hash: configured, or loaded once from the database.
    audit_key: OnceCell<SecretSlice<u8>>,
    purge_batch: i32,
}

/// Rows deleted per purge statement, so one purge never holds a huge transaction.
pub const PURGE_BATCH: i32 = 10_000;

impl MemorySvc {
    /// Handlers over the given dependencies, with the heuristic summarizer.
    pub fn new(deps: Deps) -> Self {
        Self::with_options(deps, Options::default())
    }

    /// Handlers with explicit options.
    pub fn with_options(deps: Deps, options: Options) -> Self {
        let audit_key = OnceCell::new();
        if let Some(k) = options.audit_hash_key {
            let _ = audit_key.set(k);
        }
        Self {
            inner: Arc::new(Inner {
                deps,
                summarizer: options.summarizer,
                audit_key,
                purge_batch: PURGE_BATCH,
            }),
        }
    }

    fn db(&self) -> &mesh::db::Db {
        &self.inner.deps.db
    }

    /// Keyed hash of a caller number for the audit log: HMAC-SHA256, hex.
    async fn subject_hash(&self, user: &CallerNumber) -> Result<String> {
        let key = self
            .inner
            .audit_key
            .get_or_try_init(|| async {
                let k = self
                    .db()
                    .service_tx(async |tx| store::audit_hash_key(tx).await)
                    .await?;
                Ok::<_, MemoryError>(SecretSlice::from(k))
            })
            .await?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret())
            .map_err(|_| MemoryError::Internal("audit hash key rejected".into()))?;
        mac.update(b"caller:");
        mac.update(user.as_str().as_bytes());
        let out = mac.finalize().into_bytes();
        Ok(out.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Deletes expired memories of every tenant; returns how many.
    pub async fn purge_expired(&self) -> Result<i64> {
        let mut total = 0;
        loop {
            let batch = self.inner.purge_batch;
            let n = self
                .db()
                .service_tx(async |tx| store::purge_batch(tx, batch).await)
                .await?;
            total += n;
            if n < i64::from(batch) {
                break;
            }
        }
        Ok(total)
    }

    async fn analyse(&self, call: &CallInput) -> crate::summarizer::CallAnalysis {
        match self.inner.summarizer.summarize(call).await {
            Ok(a) => a,
            Err(e) => {
                // Visible fallback: logged, counted, and recorded in the summary's `summarizer`.
                tracing::warn!(
                    summarizer = %self.inner.summarizer.name(),
                    error = %e,
                    "summarizer failed; using the heuristic summarizer for this call"
                );
                metrics::counter!("memory_summarizer_fallbacks_total").increment(1);
                let mut a = HeuristicSummarizer.analyse(call);
                a.summarizer = format!(
                    "{} (fallback: {} failed)",
                    crate::summarizer::HEURISTIC_NAME,
                    self.inner.summarizer.name()
                );
                a
            }
        }
    }
}

fn page_token(m: &Memory) -> Option<String> {
    let t = m.create_time.as_ref()?;
    let micros = t.seconds * 1_000_000 + i64::from(t.nanos / 1000);
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{micros}/{}", m.id)))
}

fn parse_page_token(raw: &str) -> Result<Option<store::Cursor>> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || MemoryError::invalid("page_token", "is not a token from a previous response");
    if raw.len() > 200 {
        return Err(bad());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (micros, id) = text.split_once('/').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    let at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(Some((at, id)))
}

fn parse_turns(turns: &[mesh::api::common::TranscriptTurn]) -> Result<Vec<Turn>> {
    if turns.len() > wire::MAX_TURNS {
        return Err(MemoryError::invalid(
            "turns",
            format!("has {} turns, at most {}", turns.len(), wire::MAX_TURNS),
        ));
    }
    turns
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let speaker = Speaker::try_from(t.speaker).map_err(|_| {
                MemoryError::invalid("turns", format!("turn {i}: unknown speaker {}", t.speaker))
            })?;
            let n = t.text.chars().count();
            if n > wire::MAX_TURN_CHARS {
                return Err(MemoryError::invalid(
                    "turns",
                    format!(
                        "turn {i}: text is too long: {n} characters, at most {}",
                        wire::MAX_TURN_CHARS
                    ),
                ));
            }
            if t.text.contains('\0') {
                return Err(MemoryError::invalid(
                    "turns",
                    format!("turn {i}: text must not contain NUL characters"),
                ));
            }
            Ok(Turn {
                speaker,
                text: t.text.clone(),
                offset_ms: t.offset_ms,
            })
        })
        .collect()
}

/// A profile update, parsed: `None` means "leave unchanged".
struct ProfileUpdate {
    preferred_name: Option<String>,
    preferences: Option<serde_json::Value>,
    context: Option<serde_json::Value>,
}

fn parse_profile_update(req: &UpdateCallerProfileRequest) -> Result<ProfileUpdate> {
    let empty = CallerProfile::default();
    let profile = req.profile.as_ref().unwrap_or(&empty);
    let paths: Vec<String> = match &req.update_mask {
        Some(mask) if !mask.paths.is_empty() => mask.paths.clone(),
        // No mask: every updatable field the request carries (AIP-134).
        _ => {
            let mut p = Vec::new();
            if !profile.preferred_name.is_empty() {
                p.push("preferred_name".to_owned());
            }
            if profile.preferences.is_some() {
                p.push("preferences".to_owned());
            }
            if profile.context.is_some() {
                p.push("context".to_owned());
            }
            p
        }
    };
    if paths.is_empty() {
        return Err(MemoryError::invalid(
            "update_mask",
            "names no field to update (preferred_name, preferences, context)",
        ));
    }
    let mut out = ProfileUpdate {
        preferred_name: None,
        preferences: None,
        context: None,
    };
    for path in &paths {
        match path.as_str() {
            "preferred_name" => {
                out.preferred_name = Some(wire::text(
                    "profile.preferred_name",
                    profile.preferred_name.trim(),
                    wire::MAX_NAME_CHARS,
                    false,
                )?);
            }
            "preferences" | "context" => {
                let field = if path == "preferences" {
                    "profile.preferences"
                } else {
                    "profile.context"
                };
                let s = if path == "preferences" {
                    &profile.preferences
                } else {
                    &profile.context
                };
                let map = match s {
                    Some(s) => wire::struct_to_map(field, s, 1)?,
                    None => serde_json::Map::new(),
                };
                let v = serde_json::Value::Object(map);
                wire::check_json(field, &v)?;
                if path == "preferences" {
                    out.preferences = Some(v);
                } else {
                    out.context = Some(v);
                }
            }
            other => {
                return Err(MemoryError::invalid(
                    "update_mask",
                    format!(
                        "cannot update `{}`: only preferred_name, preferences and context \
                         (counters and call times are maintained by RecordCall)",
                        other.escape_debug()
                    ),
                ));
            }
        }
    }
    Ok(out)
}

fn tenant(customer: CustomerId) -> i64 {
    customer.get()
}

/// The token's tenant, also recorded on the handler's span so every log line names it.
fn tenant_of<T>(request: &Request<T>) -> Result<CustomerId, Status> {
    let customer = tenant_caller(request)?.customer_id;
    tracing::Span::current().record("customer_id", customer.get());
    Ok(customer)
}

#[tonic::async_trait]
impl memory_service_server::MemoryService for MemorySvc {
    type ExportCallerStream =
        futures::stream::BoxStream<'static, Result<ExportCallerResponse, Status>>;

    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn store_memory(
        &self,
        request: Request<StoreMemoryRequest>,
    ) -> Result<Response<StoreMemoryResponse>, Status> {
        let customer = tenant_of(&request)?;
        let req = request.into_inner();
        let new = NewMemory {
            user_id: wire::caller("user_id", &req.user_id)?,
            kind: wire::memory_type("type", req.r#type)?,
            key: wire::text("key", &req.key, wire::MAX_KEY_CHARS, true)?,
            value: {
                let v = req
                    .value
                    .as_ref()
                    .ok_or_else(|| MemoryError::invalid("value", "is required"))?;
                let j = wire::value_to_json("value", v, 0)?;
                wire::check_json("value", &j)?;
                j
            },
            scope: wire::scope("scope", req.scope)?,
            source: wire::text("source", &req.source, wire::MAX_SOURCE_CHARS, false)?,
            ttl_days: wire::ttl_days("ttl_days", req.ttl_days)?,
        };
        let memory = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::insert_memory(tx, customer, &new).await
            })
            .await?;
        Ok(Response::new(StoreMemoryResponse {
            memory: Some(memory),
            customer_id: tenant(customer),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn list_memories(
        &self,
        request: Request<ListMemoriesRequest>,
    ) -> Result<Response<ListMemoriesResponse>, Status> {
        let customer = tenant_of(&request)?;
        let req = request.into_inner();
        let user = wire::caller("user_id", &req.user_id)?;
        let types = req
            .types
            .iter()
            .map(|t| wire::memory_type("types", *t))
            .collect::<Result<Vec<_>>>()?;
        let thread_id = wire::text(
            "thread_id",
            &req.thread_id,
            wire::MAX_THREAD_ID_CHARS,
            false,
        )?;
        let page_size = wire::bounded(
            "page_size",
            req.page_size,
            wire::DEFAULT_PAGE_SIZE,
            wire::MAX_PAGE_SIZE,
        )?;
        let after = parse_page_token(&req.page_token)?;
        let limit = i64::from(page_size);
        let mut memories = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::list_memories(tx, customer, &user, &types, &thread_id, after, limit).await
            })
            .await?;
        let next_page_token = if memories.len() as i64 > limit {
            memories.truncate(page_size as usize);
            memories.last().and_then(page_token).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListMemoriesResponse {
            memories,
            next_page_token,
            customer_id: tenant(customer),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn delete_memory(
        &self,
        request: Request<DeleteMemoryRequest>,
    ) -> Result<Response<DeleteMemoryResponse>, Status> {
        let customer = tenant_of(&request)?;
        let req = request.into_inner();
        let id = uuid::Uuid::parse_str(req.memory_id.trim())
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

    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn get_caller_profile(
        &self,
        request: Request<GetCallerProfileRequest>,
    ) -> Result<Response<GetCallerProfileResponse>, Status> {
        let customer = tenant_of(&request)?;
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

    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn update_caller_profile(
        &self,
        request: Request<UpdateCallerProfileRequest>,
    ) -> Result<Response<UpdateCallerProfileResponse>, Status> {
        let customer = tenant_of(&request)?;
        let req = request.into_inner();
        let user = wire::caller("user_id", &req.user_id)?;
        let update = parse_profile_update(&req)?;
        let profile = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::upsert_profile(
                    tx,
                    customer,
                    &user,
                    update.preferred_name.as_deref(),
                    update.preferences.as_ref(),
                    update.context.as_ref(),
                )
                .await
            })
            .await?;
        Ok(Response::new(UpdateCallerProfileResponse {
            profile: Some(profile),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn record_call(
        &self,
        request: Request<RecordCallRequest>,
    ) -> Result<Response<RecordCallResponse>, Status> {
        let customer = tenant_of(&request)?;
        let req = request.into_inner();
        let call_sid =
            CallSid::parse(&req.call_sid).map_err(|e| MemoryError::invalid("call_sid", e.0))?;
        let user = wire::caller("user_id", &req.user_id)?;
        let call_at = match &req.call_time {
            Some(t) => wire::from_ts("call_time", t)?,
            None => chrono::Utc::now(),
        };
        if !(0..=wire::MAX_DURATION_SECONDS).contains(&req.duration_seconds) {
            return Err(MemoryError::invalid(
                "duration_seconds",
                format!(
                    "must be between 0 and {}, got {}",
                    wire::MAX_DURATION_SECONDS,
                    req.duration_seconds
                ),
            )
            .into());
        }
        let input = CallInput {
            duration_seconds: req.duration_seconds,
            transferred: req.transferred,
            turns: parse_turns(&req.turns)?,
        };

        // Cheap idempotency check first, so a redelivered call does not pay for a summary.
        if let Some(existing) = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::get_summary(tx, customer, &call_sid).await
            })
            .await?
        {
            return Ok(Response::new(RecordCallResponse {
                summary: Some(existing),
                already_recorded: true,
            }));
        }
        // The summarizer may call a remote model: never inside a transaction.
        let analysis = self.analyse(&input).await;
        let (summary, already_recorded) = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::record_call(
                    tx,
                    customer,
                    &user,
                    &call_sid,
                    call_at,
                    input.duration_seconds,
                    &analysis,
                )
                .await
            })
            .await?;
        if !already_recorded {
            tracing::info!(
                caller = %mesh::telemetry::redact_phone(user.as_str()),
                summarizer = %summary.summarizer,
                "call recorded"
            );
        }
        Ok(Response::new(RecordCallResponse {
            summary: Some(summary),
            already_recorded,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn get_enriched_context(
        &self,
        request: Request<GetEnrichedContextRequest>,
    ) -> Result<Response<GetEnrichedContextResponse>, Status> {
        let customer = tenant_of(&request)?;
        let req = request.into_inner();
        let user = wire::caller("user_id", &req.user_id)?;
        let num = req.num_summaries.unwrap_or(wire::DEFAULT_NUM_SUMMARIES);
        if !(0..=wire::MAX_NUM_SUMMARIES).contains(&num) {
            return Err(MemoryError::invalid(
                "num_summaries",
                format!(
                    "must be between 0 and {}, got {num}",
                    wire::MAX_NUM_SUMMARIES
                ),
            )
            .into());
        }
        let rows = self
            .db()
            .tenant_tx(customer, async |tx| {
                store::context(tx, customer, &user, i64::from(num)).await
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
            customer_id: tenant(customer),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn search_summaries(
        &self,
        request: Request<SearchSummariesRequest>,
    ) -> Result<Response<SearchSummariesResponse>, Status> {
        let customer = tenant_of(&request)?;
        let req = request.into_inner();
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

    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn export_caller(
        &self,
        request: Request<ExportCallerRequest>,
    ) -> Result<Response<Self::ExportCallerStream>, Status> {
        let caller = tenant_caller(&request)?.clone();
        let customer = tenant_of(&request)?;
        let user = wire::caller("user_id", &request.get_ref().user_id)?;
        let hash = self.subject_hash(&user).await?;
        // Read and audit in one transaction: the audit row exists iff the export was read.
        let export = self
            .db()
            .tenant_tx(customer, async |tx| {
                let export = store::export(tx, customer, &user).await?;
                store::audit(
                    tx,
                    customer,
                    "export_caller",
                    &hash,
                    &caller.subject,
                    &export.counts(),
                )
                .await?;
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

    #[tracing::instrument(skip_all, fields(customer_id = tracing::field::Empty))]
    async fn erase_caller(
        &self,
        request: Request<EraseCallerRequest>,
    ) -> Result<Response<EraseCallerResponse>, Status> {
        let caller = tenant_caller(&request)?.clone();
        let customer = tenant_of(&request)?;
        let user = wire::caller("user_id", &request.get_ref().user_id)?;
        let hash = self.subject_hash(&user).await?;
        let (counts, at) = self
            .db()
            .tenant_tx(customer, async |tx| {
                let counts = store::erase(tx, customer, Some(&user)).await?;
                let at = store::audit(
                    tx,
                    customer,
                    "erase_caller",
                    &hash,
                    &caller.subject,
                    &counts,
                )
                .await?;
                Ok::<_, MemoryError>((counts, at))
            })
            .await?;
        tracing::info!(
            caller = %mesh::telemetry::redact_phone(user.as_str()),
            rows = counts.iter().map(|c| c.rows).sum::<i64>(),
            "caller erased"
        );
        Ok(Response::new(EraseCallerResponse {
            audit: Some(AuditEntry {
                action: "erase_caller".into(),
                subject_hash: hash,
                actor: caller.subject.clone(),
                counts: counts.clone(),
                create_time: Some(wire::ts(at)),
            }),
            counts,
        }))
    }
}

#[tonic::async_trait]
impl memory_admin_service_server::MemoryAdminService for MemorySvc {
    #[tracing::instrument(skip_all)]
    async fn purge_expired_memories(
        &self,
        request: Request<PurgeExpiredMemoriesRequest>,
    ) -> Result<Response<PurgeExpiredMemoriesResponse>, Status> {
        let issuer = service_caller(&request)?.issuer.clone();
        let deleted = self.purge_expired().await?;
        tracing::info!(deleted, requested_by = %issuer, "expired memories purged");
        Ok(Response::new(PurgeExpiredMemoriesResponse { deleted }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn erase_tenant(
        &self,
        request: Request<EraseTenantRequest>,
    ) -> Result<Response<EraseTenantResponse>, Status> {
        let issuer = service_caller(&request)?.issuer.clone();
        let customer = CustomerId::new(request.get_ref().customer_id)
            .map_err(|e| MemoryError::invalid("customer_id", e.0))?;
        let counts: Vec<TableCount> = self
            .db()
            .tenant_tx(customer, async |tx| {
                let counts = store::erase(tx, customer, None).await?;
                store::audit(tx, customer, "erase_tenant", "", &issuer, &counts).await?;
                Ok::<_, MemoryError>(counts)
            })
            .await?;
        tracing::warn!(
            requested_by = %issuer,
            rows = counts.iter().map(|c| c.rows).sum::<i64>(),
            "tenant memory erased"
        );
        Ok(Response::new(EraseTenantResponse { counts }))
    }
}
