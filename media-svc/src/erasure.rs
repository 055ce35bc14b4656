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

use mesh::api::common::TableCount;
use mesh::api::media::{
    EraseCallerResponse, ErasureAudit, ExportCallerResponse, ExportedTurn, export_caller_response,
};
use mesh::auth::TenantCaller;
use mesh::domain::{CallerNumber, CustomerId};
use mesh::identity::names;

use crate::error::MediaError;
use crate::runtime::Runtime;
use crate::store::audit::{AuditAction, audit};
use crate::store::{self, calls as sql};

/// Every call and transcript turn of `number`, read and audited in one transaction (the audit
/// row exists iff the export was read).
pub async fn export_caller(
    rt: &Runtime,
    caller: &TenantCaller,
    number: &CallerNumber,
) -> Result<Vec<ExportCallerResponse>, MediaError> {
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
            let counts = [
                store::count("media.calls", calls.len() as u64),
                store::count("media.transcript_turns", turns_read as u64),
            ];
            audit(
                tx,
                AuditAction::ExportCaller,
                &hash,
                &caller.subject,
                &counts,
            )
            .await?;
            Ok::<_, MediaError>(out)
        })
        .await?;
    tracing::info!(records = records.len(), "exported a caller's calls");
    Ok(records)
}

/// Erases `number` in media-svc, then in memory-svc (see the module docs).
pub async fn erase_caller(
    rt: &Runtime,
    caller: &TenantCaller,
    number: &CallerNumber,
) -> Result<EraseCallerResponse, MediaError> {
    let customer = caller.customer_id;
    let (mut counts, media_audit) = rt
        .db
        .tenant_tx(customer, async |tx| {
            let hash = rt.webhooks.caller_hash_in(tx, customer, number).await?;
            let counts = store::erase::erase_caller(tx, number).await?;
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
pub async fn erase_tenant(
    rt: &Runtime,
    actor: &str,
    customer: CustomerId,
) -> Result<Vec<TableCount>, MediaError> {
    let counts = rt
        .db
        .tenant_tx(customer, async |tx| {
            let counts = store::erase::erase_tenant(tx).await?;
            audit(tx, AuditAction::EraseTenant, "", actor, &counts).await?;
            Ok::<_, MediaError>(counts)
        })
        .await?;
    tracing::info!(requested_by = %actor, ?counts, "erased a tenant's call data");
    Ok(counts)
}
