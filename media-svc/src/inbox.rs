//! The callback-task inbox (`ListCallbackTasks`, `SetCallbackTaskDone`; scope `media:messages`):
//! the tenant's tasks newest first, filtered open / done, with the count of open ones, and a
//! task marked done or open again.
//! Every read and write runs in the token's tenant transaction, so another tenant's task id is
//! indistinguishable from an unknown one (NOT_FOUND, nothing changed).

use mesh::api::media::{
    CallbackTask, CallbackTaskFilter, ListCallbackTasksRequest, ListCallbackTasksResponse,
    SetCallbackTaskDoneRequest,
};
use mesh::domain::CustomerId;
use tonic::Status;
use uuid::Uuid;

use crate::error::MediaError;
use crate::page;
use crate::runtime::Runtime;
use crate::store::callback_tasks as sql;

/// One page of the tenant's tasks.
pub async fn list(
    rt: &Runtime,
    customer: CustomerId,
    r: &ListCallbackTasksRequest,
    limit: i64,
) -> Result<ListCallbackTasksResponse, MediaError> {
    let filter = CallbackTaskFilter::try_from(r.filter)
        .map_err(|_| MediaError::invalid("filter", "must be a known task filter"))?;
    let after = page::decode(&r.page_token, Uuid::parse_str)?;
    let (tasks, next, open_count) = rt
        .db
        .tenant_tx(customer, async |tx| {
            let (tasks, next) = sql::list(tx, filter, after, limit).await?;
            Ok::<_, MediaError>((tasks, next, sql::open_count(tx).await?))
        })
        .await?;
    Ok(ListCallbackTasksResponse {
        open_count,
        tasks,
        next_page_token: next
            .map(|(t, id)| page::encode(t, &id.to_string()))
            .unwrap_or_default(),
    })
}

/// Marks one task done or open; NOT_FOUND when the tenant has no such task.
pub async fn set_done(
    rt: &Runtime,
    customer: CustomerId,
    r: &SetCallbackTaskDoneRequest,
) -> Result<CallbackTask, Status> {
    let task_id = Uuid::parse_str(&r.task_id)
        .map_err(|_| MediaError::invalid("task_id", "must be a task id (UUID)"))?;
    let done = r.done;
    let task = rt
        .db
        .tenant_tx(customer, async |tx| sql::set_done(tx, task_id, done).await)
        .await?;
    match task {
        Some(task) => {
            tracing::info!(%task_id, done, "callback task marked");
            Ok(task)
        }
        // Same answer whether another tenant has the task or nobody does. (MediaError::NotFound
        // speaks of calls.)
        None => Err(Status::not_found("no callback task with this id")),
    }
}
