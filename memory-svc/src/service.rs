//! The gRPC handlers of memory-svc. Every RPC answers UNIMPLEMENTED until the memory-svc issue
//! lands; the contract (messages, auth rules) is already fixed in `proto/` and [`crate::policy`].

use mesh::api::memory::*;
use mesh::server::not_yet;
use tonic::{Request, Response, Status};

use crate::Deps;

/// Implements the memory-svc gRPC services.
#[derive(Clone)]
pub struct MemorySvc {
    #[allow(dead_code)] // used by the handlers of the memory-svc issue
    deps: Deps,
}

impl MemorySvc {
    /// Handlers over the given dependencies.
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }
}

#[tonic::async_trait]
impl memory_service_server::MemoryService for MemorySvc {
    type ExportCallerStream =
        futures::stream::BoxStream<'static, Result<ExportCallerResponse, Status>>;

    async fn store_memory(
        &self,
        _request: Request<StoreMemoryRequest>,
    ) -> Result<Response<StoreMemoryResponse>, Status> {
        Err(not_yet("MemoryService.StoreMemory"))
    }

    async fn list_memories(
        &self,
        _request: Request<ListMemoriesRequest>,
    ) -> Result<Response<ListMemoriesResponse>, Status> {
        Err(not_yet("MemoryService.ListMemories"))
    }

    async fn delete_memory(
        &self,
        _request: Request<DeleteMemoryRequest>,
    ) -> Result<Response<DeleteMemoryResponse>, Status> {
        Err(not_yet("MemoryService.DeleteMemory"))
    }

    async fn get_caller_profile(
        &self,
        _request: Request<GetCallerProfileRequest>,
    ) -> Result<Response<GetCallerProfileResponse>, Status> {
        Err(not_yet("MemoryService.GetCallerProfile"))
    }

    async fn update_caller_profile(
        &self,
        _request: Request<UpdateCallerProfileRequest>,
    ) -> Result<Response<UpdateCallerProfileResponse>, Status> {
        Err(not_yet("MemoryService.UpdateCallerProfile"))
    }

    async fn record_call(
        &self,
        _request: Request<RecordCallRequest>,
    ) -> Result<Response<RecordCallResponse>, Status> {
        Err(not_yet("MemoryService.RecordCall"))
    }

    async fn get_enriched_context(
        &self,
        _request: Request<GetEnrichedContextRequest>,
    ) -> Result<Response<GetEnrichedContextResponse>, Status> {
        Err(not_yet("MemoryService.GetEnrichedContext"))
    }

    async fn search_summaries(
        &self,
        _request: Request<SearchSummariesRequest>,
    ) -> Result<Response<SearchSummariesResponse>, Status> {
        Err(not_yet("MemoryService.SearchSummaries"))
    }

    async fn export_caller(
        &self,
        _request: Request<ExportCallerRequest>,
    ) -> Result<Response<Self::ExportCallerStream>, Status> {
        Err(not_yet("MemoryService.ExportCaller"))
    }

    async fn erase_caller(
        &self,
        _request: Request<EraseCallerRequest>,
    ) -> Result<Response<EraseCallerResponse>, Status> {
        Err(not_yet("MemoryService.EraseCaller"))
    }
}

#[tonic::async_trait]
impl memory_admin_service_server::MemoryAdminService for MemorySvc {
    async fn purge_expired_memories(
        &self,
        _request: Request<PurgeExpiredMemoriesRequest>,
    ) -> Result<Response<PurgeExpiredMemoriesResponse>, Status> {
        Err(not_yet("MemoryAdminService.PurgeExpiredMemories"))
    }

    async fn erase_tenant(
        &self,
        _request: Request<EraseTenantRequest>,
    ) -> Result<Response<EraseTenantResponse>, Status> {
        Err(not_yet("MemoryAdminService.EraseTenant"))
    }
}
