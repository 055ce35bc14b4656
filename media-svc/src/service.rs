//! The gRPC handlers of media-svc. Every RPC answers UNIMPLEMENTED until the media-svc issue
//! lands; the contract (messages, auth rules) is already fixed in `proto/` and [`crate::policy`].

use mesh::api::media::*;
use mesh::server::not_yet;
use tonic::{Request, Response, Status};

use crate::Deps;

/// Implements the media-svc gRPC services.
#[derive(Clone)]
pub struct MediaSvc {
    #[allow(dead_code)] // used by the handlers of the media-svc issue
    deps: Deps,
}

impl MediaSvc {
    /// Handlers over the given dependencies.
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }
}

#[tonic::async_trait]
impl call_service_server::CallService for MediaSvc {
    type StreamCallStream = futures::stream::BoxStream<'static, Result<StreamCallResponse, Status>>;

    type ExportCallerStream =
        futures::stream::BoxStream<'static, Result<ExportCallerResponse, Status>>;

    async fn register_call(
        &self,
        _request: Request<RegisterCallRequest>,
    ) -> Result<Response<RegisterCallResponse>, Status> {
        Err(not_yet("CallService.RegisterCall"))
    }

    async fn stream_call(
        &self,
        _request: Request<tonic::Streaming<StreamCallRequest>>,
    ) -> Result<Response<Self::StreamCallStream>, Status> {
        Err(not_yet("CallService.StreamCall"))
    }

    async fn update_call_status(
        &self,
        _request: Request<UpdateCallStatusRequest>,
    ) -> Result<Response<UpdateCallStatusResponse>, Status> {
        Err(not_yet("CallService.UpdateCallStatus"))
    }

    async fn list_calls(
        &self,
        _request: Request<ListCallsRequest>,
    ) -> Result<Response<ListCallsResponse>, Status> {
        Err(not_yet("CallService.ListCalls"))
    }

    async fn get_call(
        &self,
        _request: Request<GetCallRequest>,
    ) -> Result<Response<GetCallResponse>, Status> {
        Err(not_yet("CallService.GetCall"))
    }

    async fn get_usage(
        &self,
        _request: Request<GetUsageRequest>,
    ) -> Result<Response<GetUsageResponse>, Status> {
        Err(not_yet("CallService.GetUsage"))
    }

    async fn export_caller(
        &self,
        _request: Request<ExportCallerRequest>,
    ) -> Result<Response<Self::ExportCallerStream>, Status> {
        Err(not_yet("CallService.ExportCaller"))
    }

    async fn erase_caller(
        &self,
        _request: Request<EraseCallerRequest>,
    ) -> Result<Response<EraseCallerResponse>, Status> {
        Err(not_yet("CallService.EraseCaller"))
    }

    async fn place_outbound_call(
        &self,
        _request: Request<PlaceOutboundCallRequest>,
    ) -> Result<Response<PlaceOutboundCallResponse>, Status> {
        Err(not_yet("CallService.PlaceOutboundCall"))
    }

    async fn list_dead_letters(
        &self,
        _request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        Err(not_yet("CallService.ListDeadLetters"))
    }

    async fn redeliver_dead_letter(
        &self,
        _request: Request<RedeliverDeadLetterRequest>,
    ) -> Result<Response<RedeliverDeadLetterResponse>, Status> {
        Err(not_yet("CallService.RedeliverDeadLetter"))
    }
}

#[tonic::async_trait]
impl media_admin_service_server::MediaAdminService for MediaSvc {
    async fn erase_tenant(
        &self,
        _request: Request<EraseTenantRequest>,
    ) -> Result<Response<EraseTenantResponse>, Status> {
        Err(not_yet("MediaAdminService.EraseTenant"))
    }
}
