//! Exports and erasures: a caller's data-subject requests (`ExportCaller`, `EraseCaller`) and a
//! tenant's offboarding (`EraseTenant`), each with its audit row in `media.audit_log`.
//!
//! `EraseCaller` is the one erasure of a caller across the mesh: media-svc deletes the caller's
//! rows ([`store::erase::CALLER_TABLES`]) and writes its audit row in one transaction, then asks
//! memory-svc to erase the caller's memory ([`crate::peers::Peers::erase_caller_memory`]).
//! Why this order: once media-svc's part committed, no post-call record of the caller is left to
//! deliver (the outbox rows went with their calls), and memory-svc's erasure marker drops any
//! record already on its way. Both parts are idempotent, so a failure of the second answers
//! UNAVAILABLE ("call data erased, memory not yet") and the same request repeated finishes it.

use futures::{Stream, StreamExt as _, TryStreamExt as _};
use mesh::api::common::TableCount;
use mesh::api::media::{
    EraseCallerResponse, ErasureAudit, ExportCallerResponse, ExportedRecording,
    ExportedRecordingData, ExportedTurn, export_caller_response,
};
use mesh::auth::TenantCaller;
use mesh::domain::{CallerNumber, CustomerId};
use mesh::identity::names;

use crate::error::MediaError;
use crate::recording::{RecordingId, RecordingRow, RecordingState};
use crate::runtime::Runtime;
use crate::store::audit::{AuditAction, audit};
use crate::store::{self, calls as sql};

/// Every call, transcript turn and callback task of `number`, and the rows of its finished
/// recordings (their audio is streamed afterwards by [`recording_audio`]), read and audited in
/// one transaction (the audit row exists iff the export was read).
pub async fn export_caller(
    rt: &Runtime,
    caller: &TenantCaller,
    number: &CallerNumber,
) -> Result<(Vec<ExportCallerResponse>, Vec<RecordingRow>), MediaError> {
    let customer = caller.customer_id;
    let records = rt
        .db
        .tenant_tx(customer, async |tx| {
            let hash = rt.webhooks.caller_hash_in(tx, customer, number).await?;
            let mut out = Vec::new();
            let mut turns_read = 0;
            let calls = sql::calls_of_caller(tx, number).await?;
            for call in &calls {
                let turns = store::transcripts::turns(tx, &call.call_sid).await?;
                turns_read += turns.len();
                let sid = call.call_sid.as_str().to_owned();
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
            let mut recordings = Vec::new();
            for id in store::retention::caller_recordings(tx, number).await? {
                if let Some(row) = store::recordings::get(tx, id).await?
                    && row.state != RecordingState::Recording
                {
                    recordings.push(row);
                }
            }
            let tasks = store::callback_tasks::of_caller(tx, number).await?;
            let tasks_read = tasks.len();
            out.extend(tasks.into_iter().map(|task| ExportCallerResponse {
                record: Some(export_caller_response::Record::Task(task)),
            }));
            let counts = [
                store::count("media.calls", calls.len() as u64),
                store::count("media.transcript_turns", turns_read as u64),
                store::count("media.recordings", recordings.len() as u64),
                store::count("media.callback_tasks", tasks_read as u64),
            ];
            audit(
                tx,
                AuditAction::ExportCaller,
                &hash,
                &caller.subject,
                &counts,
            )
            .await?;
            Ok::<_, MediaError>((out, recordings))
        })
        .await?;
    tracing::info!(
        records = records.0.len(),
        recordings = records.1.len(),
        "exported a caller's calls"
    );
    Ok(records)
}

/// The export records of `recordings`: for each, its metadata, then its WAV in pieces (read
/// lazily, decrypted on the fly: no recording is held in memory whole). A recording that
/// cannot be read (the store unavailable) ends the stream with that error.
pub fn recording_audio(
    rt: Runtime,
    customer: CustomerId,
    recordings: Vec<RecordingRow>,
) -> impl Stream<Item = Result<ExportCallerResponse, MediaError>> + Send + 'static {
    futures::stream::iter(recordings)
        .then(move |row| {
            let rt = rt.clone();
            async move {
                let wav = rt.recordings.wav(customer, RecordingId(row.id)).await?;
                let len = wav.len();
                let id = row.id.to_string();
                let head = ExportCallerResponse {
                    record: Some(export_caller_response::Record::Recording(
                        ExportedRecording {
                            recording_id: id.clone(),
                            call_sid: row.call_sid.clone(),
                            kind: row.kind.as_str().to_owned(),
                            duration_ms: row.duration_ms(),
                            start_time: Some(store::timestamp(row.started_at)),
                            wav_bytes: len,
                        },
                    )),
                };
                let mut offset = 0u64;
                let data = wav.read(0..len).map_ok(move |bytes| {
                    let piece = ExportedRecordingData {
                        recording_id: id.clone(),
                        offset,
                        data: bytes.to_vec(),
                    };
                    offset += bytes.len() as u64;
                    ExportCallerResponse {
                        record: Some(export_caller_response::Record::RecordingData(piece)),
                    }
                });
                Ok::<_, MediaError>(futures::stream::once(async { Ok(head) }).chain(data))
            }
        })
        .try_flatten()
}

/// Deletes the caller's recordings (objects, spool files and rows) before anything else of the
/// caller: UNAVAILABLE when the store cannot be reached (nothing else erased yet; a repeat
/// finishes). Returns how many went.
async fn erase_caller_recordings(
    rt: &Runtime,
    customer: CustomerId,
    number: &CallerNumber,
) -> Result<u64, MediaError> {
    let ids = rt
        .db
        .tenant_tx(customer, async |tx| {
            store::retention::caller_recordings(tx, number).await
        })
        .await?;
    let mut deleted = 0;
    for id in ids {
        if rt.recordings.delete(customer, RecordingId(id)).await? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Erases `number` in media-svc, then in memory-svc (see the module docs).
pub async fn erase_caller(
    rt: &Runtime,
    caller: &TenantCaller,
    number: &CallerNumber,
) -> Result<EraseCallerResponse, MediaError> {
    let customer = caller.customer_id;
    let recordings = erase_caller_recordings(rt, customer, number).await?;
    let (mut counts, media_audit) = rt
        .db
        .tenant_tx(customer, async |tx| {
            let hash = rt.webhooks.caller_hash_in(tx, customer, number).await?;
            let mut counts = store::erase::erase_caller(tx, number).await?;
            // The rows `Recordings::delete` removed with their objects count as erased here.
            if let Some(c) = counts.iter_mut().find(|c| c.table == "media.recordings") {
                c.rows += recordings as i64;
            }
            let (id, at) = audit(
                tx,
                AuditAction::EraseCaller,
                &hash,
                &caller.subject,
                &counts,
            )
            .await?;
            let entry = ErasureAudit {
                service: names::MEDIA_SVC.into(),
                action: AuditAction::EraseCaller.as_str().into(),
                subject_hash: hash,
                actor: caller.subject.clone(),
                counts: counts.clone(),
                create_time: Some(store::timestamp(at)),
                id: id.to_string(),
            };
            Ok::<_, MediaError>((counts, entry))
        })
        .await?;
    let rows: i64 = counts.iter().map(|c| c.rows).sum();
    tracing::info!(rows, "erased a caller's calls");
    let memory = rt
        .peers
        .erase_caller_memory(customer, number, &caller.subject)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e.short(), "caller's memory not erased; call data already erased");
            metrics::counter!("media_erasures_incomplete_total").increment(1);
            MediaError::Unavailable(format!(
                "the caller's call data is erased but memory-svc did not confirm erasing their \
                 memory ({}); repeat the request to finish the erasure",
                e.short()
            ))
        })?;
    tracing::info!("caller's memory erased through memory-svc");
    counts.extend(memory.counts);
    let mut audits = vec![media_audit];
    audits.extend(memory.audit.map(|a| ErasureAudit {
        service: names::MEMORY_SVC.into(),
        action: a.action,
        subject_hash: a.subject_hash,
        actor: a.actor,
        counts: a.counts,
        create_time: a.create_time,
        id: a.id,
    }));
    Ok(EraseCallerResponse { counts, audits })
}

/// Erases every media row of `customer` and audits it (`actor`: the service that asked).
/// First the recordings' objects and spool files go (`Recordings::delete`, each with its row);
/// one that cannot be deleted (the store unavailable) is left behind unreadable, because the
/// erasure then destroys the tenant's recording keys (`media.recording_keys`) with its rows:
/// counted as `recording objects left` and logged, never blocking the erasure.
pub async fn erase_tenant(
    rt: &Runtime,
    actor: &str,
    customer: CustomerId,
) -> Result<Vec<TableCount>, MediaError> {
    let ids = rt
        .db
        .tenant_tx(customer, async |tx| {
            store::retention::tenant_recordings(tx).await
        })
        .await?;
    let (mut deleted, mut left) = (0u64, 0u64);
    for id in ids {
        match rt.recordings.delete(customer, RecordingId(id)).await {
            Ok(true) => deleted += 1,
            Ok(false) => {}
            Err(e) => {
                left += 1;
                tracing::warn!(customer_id = customer.get(), error = %e, "recording object left behind, its key destroyed");
            }
        }
    }
    let counts = rt
        .db
        .tenant_tx(customer, async |tx| {
            let mut counts = store::erase::erase_tenant(tx).await?;
            if let Some(c) = counts.iter_mut().find(|c| c.table == "media.recordings") {
                c.rows += deleted as i64;
            }
            if left > 0 {
                counts.push(store::count("recording objects left", left));
            }
            audit(tx, AuditAction::EraseTenant, "", actor, &counts).await?;
            Ok::<_, MediaError>(counts)
        })
        .await?;
    tracing::info!(requested_by = %actor, ?counts, "erased a tenant's call data");
    Ok(counts)
}
