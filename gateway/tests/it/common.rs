//! A real gateway on port 0 in front of stub peers: one gRPC server playing tenant-svc
//! (`EdgeService`), media-svc (`CallService`) and memory-svc (`MemoryService`), which answers
//! the calls the gateway makes and records each, so a test can tell what got through.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh::api::media::call_service_server::{CallService, CallServiceServer};
use mesh::api::media::{self as media_pb};
use mesh::api::memory::memory_service_server::{MemoryService, MemoryServiceServer};
use mesh::api::memory::{self as memory_pb};
use mesh::api::tenant::edge_service_server::{EdgeService, EdgeServiceServer};
use mesh::api::tenant::{
    ExchangeLegacyTokenRequest, ExchangeLegacyTokenResponse, ResolveNumberRequest,
    ResolveNumberResponse,
};
use mesh::identity::{DevKeys, names};
use tonic::{Request, Response, Status};

/// The Twilio Auth Token the test gateway checks signatures with.
pub const AUTH_TOKEN: &str = "test-auth-token-not-a-secret";

/// A Twilio account.
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// The tenant every number resolves to.
pub const CUSTOMER_ID: i64 = 7;

/// What reached the stub peers, by method (`ResolveNumber`'s numbers, the memories stored, ...).
#[derive(Default, Clone)]
pub struct Seen(Arc<Mutex<HashMap<&'static str, Vec<String>>>>);

impl Seen {
    fn record(&self, method: &'static str, what: impl Into<String>) {
        let mut seen = self.0.lock().unwrap();
        seen.entry(method).or_default().push(what.into());
    }

    /// The values recorded for `method`, in order.
    pub fn of(&self, method: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .get(method)
            .cloned()
            .unwrap_or_default()
    }
}

/// The stub peers. Legacy tokens `legacy-<id>` belong to tenant `<id>`; others are refused.
/// Every exchange attempt is recorded under `ExchangeLegacyToken`.
#[derive(Clone, Default)]
struct Stub(Seen);

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not part of the stub"))
}

#[tonic::async_trait]
impl EdgeService for Stub {
    async fn resolve_number(
        &self,
        request: Request<ResolveNumberRequest>,
    ) -> Result<Response<ResolveNumberResponse>, Status> {
        let r = request.into_inner();
        self.0.record("ResolveNumber", r.called_number);
        Ok(Response::new(ResolveNumberResponse {
            customer_id: CUSTOMER_ID,
            tenant_token: "tenant-token".into(),
            ..Default::default()
        }))
    }

    async fn exchange_legacy_token(
        &self,
        request: Request<ExchangeLegacyTokenRequest>,
    ) -> Result<Response<ExchangeLegacyTokenResponse>, Status> {
        let token = request.into_inner().legacy_token;
        // Every attempt is recorded, refused ones too: each costs tenant-svc a verification.
        self.0.record("ExchangeLegacyToken", token.clone());
        let Some(id) = token.strip_prefix("legacy-").and_then(|id| id.parse().ok()) else {
            return Err(Status::unauthenticated("invalid token"));
        };
        Ok(Response::new(ExchangeLegacyTokenResponse {
            customer_id: id,
            tenant_token: format!("tenant-{id}"),
            ..Default::default()
        }))
    }
}

type Nothing<T> = tokio_stream::Empty<Result<T, Status>>;

#[tonic::async_trait]
impl CallService for Stub {
    async fn register_call(
        &self,
        request: Request<media_pb::RegisterCallRequest>,
    ) -> Result<Response<media_pb::RegisterCallResponse>, Status> {
        let r = request.into_inner();
        self.0.record("RegisterCall", r.call_sid);
        Ok(Response::new(media_pb::RegisterCallResponse {
            answer: media_pb::CallAnswer::Stream as i32,
            stream_ticket: "stream-ticket".into(),
            ..Default::default()
        }))
    }
    async fn open_stream(
        &self,
        _: Request<media_pb::OpenStreamRequest>,
    ) -> Result<Response<media_pb::OpenStreamResponse>, Status> {
        unimplemented()
    }
    async fn get_call_stats(
        &self,
        _: Request<media_pb::GetCallStatsRequest>,
    ) -> Result<Response<media_pb::GetCallStatsResponse>, Status> {
        unimplemented()
    }
    type StreamCallStream = Nothing<media_pb::StreamCallResponse>;
    async fn stream_call(
        &self,
        _: Request<tonic::Streaming<media_pb::StreamCallRequest>>,
    ) -> Result<Response<Self::StreamCallStream>, Status> {
        unimplemented()
    }
    async fn update_call_status(
        &self,
        request: Request<media_pb::UpdateCallStatusRequest>,
    ) -> Result<Response<media_pb::UpdateCallStatusResponse>, Status> {
        self.0
            .record("UpdateCallStatus", request.into_inner().call_sid);
        Ok(Response::new(media_pb::UpdateCallStatusResponse::default()))
    }
    async fn list_calls(
        &self,
        _: Request<media_pb::ListCallsRequest>,
    ) -> Result<Response<media_pb::ListCallsResponse>, Status> {
        unimplemented()
    }
    async fn get_call(
        &self,
        _: Request<media_pb::GetCallRequest>,
    ) -> Result<Response<media_pb::GetCallResponse>, Status> {
        unimplemented()
    }
    async fn get_usage(
        &self,
        _: Request<media_pb::GetUsageRequest>,
    ) -> Result<Response<media_pb::GetUsageResponse>, Status> {
        unimplemented()
    }
    type ExportCallerStream = Nothing<media_pb::ExportCallerResponse>;
    async fn export_caller(
        &self,
        _: Request<media_pb::ExportCallerRequest>,
    ) -> Result<Response<Self::ExportCallerStream>, Status> {
        unimplemented()
    }
    type ReadRecordingStream = Nothing<media_pb::ReadRecordingResponse>;
    async fn read_recording(
        &self,
        _: Request<media_pb::ReadRecordingRequest>,
    ) -> Result<Response<Self::ReadRecordingStream>, Status> {
        unimplemented()
    }
    async fn erase_caller(
        &self,
        _: Request<media_pb::EraseCallerRequest>,
    ) -> Result<Response<media_pb::EraseCallerResponse>, Status> {
        unimplemented()
    }
    async fn place_outbound_call(
        &self,
        _: Request<media_pb::PlaceOutboundCallRequest>,
    ) -> Result<Response<media_pb::PlaceOutboundCallResponse>, Status> {
        unimplemented()
    }
    async fn list_dead_letters(
        &self,
        _: Request<media_pb::ListDeadLettersRequest>,
    ) -> Result<Response<media_pb::ListDeadLettersResponse>, Status> {
        unimplemented()
    }
    async fn redeliver_dead_letter(
        &self,
        _: Request<media_pb::RedeliverDeadLetterRequest>,
    ) -> Result<Response<media_pb::RedeliverDeadLetterResponse>, Status> {
        unimplemented()
    }
    async fn list_webhook_deliveries(
        &self,
        _: Request<media_pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<media_pb::ListWebhookDeliveriesResponse>, Status> {
        unimplemented()
    }
    async fn list_callback_tasks(
        &self,
        _: Request<media_pb::ListCallbackTasksRequest>,
    ) -> Result<Response<media_pb::ListCallbackTasksResponse>, Status> {
        unimplemented()
    }
    async fn set_callback_task_done(
        &self,
        _: Request<media_pb::SetCallbackTaskDoneRequest>,
    ) -> Result<Response<media_pb::SetCallbackTaskDoneResponse>, Status> {
        unimplemented()
    }
    async fn render_instructions(
        &self,
        _: Request<media_pb::RenderInstructionsRequest>,
    ) -> Result<Response<media_pb::RenderInstructionsResponse>, Status> {
        unimplemented()
    }
    async fn list_audit_entries(
        &self,
        _: Request<media_pb::ListAuditEntriesRequest>,
    ) -> Result<Response<media_pb::ListAuditEntriesResponse>, Status> {
        unimplemented()
    }
}

#[tonic::async_trait]
impl MemoryService for Stub {
    async fn store_memory(
        &self,
        request: Request<memory_pb::StoreMemoryRequest>,
    ) -> Result<Response<memory_pb::StoreMemoryResponse>, Status> {
        let tenant = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.0.record("StoreMemory", tenant);
        Ok(Response::new(memory_pb::StoreMemoryResponse::default()))
    }
    async fn list_memories(
        &self,
        _: Request<memory_pb::ListMemoriesRequest>,
    ) -> Result<Response<memory_pb::ListMemoriesResponse>, Status> {
        unimplemented()
    }
    async fn list_callers(
        &self,
        _: Request<memory_pb::ListCallersRequest>,
    ) -> Result<Response<memory_pb::ListCallersResponse>, Status> {
        unimplemented()
    }
    async fn get_caller(
        &self,
        _: Request<memory_pb::GetCallerRequest>,
    ) -> Result<Response<memory_pb::GetCallerResponse>, Status> {
        unimplemented()
    }
    async fn get_call_summary(
        &self,
        _: Request<memory_pb::GetCallSummaryRequest>,
    ) -> Result<Response<memory_pb::GetCallSummaryResponse>, Status> {
        unimplemented()
    }
    async fn delete_memory(
        &self,
        _: Request<memory_pb::DeleteMemoryRequest>,
    ) -> Result<Response<memory_pb::DeleteMemoryResponse>, Status> {
        unimplemented()
    }
    async fn get_caller_profile(
        &self,
        _: Request<memory_pb::GetCallerProfileRequest>,
    ) -> Result<Response<memory_pb::GetCallerProfileResponse>, Status> {
        unimplemented()
    }
    async fn update_caller_profile(
        &self,
        _: Request<memory_pb::UpdateCallerProfileRequest>,
    ) -> Result<Response<memory_pb::UpdateCallerProfileResponse>, Status> {
        unimplemented()
    }
    async fn record_call(
        &self,
        _: Request<memory_pb::RecordCallRequest>,
    ) -> Result<Response<memory_pb::RecordCallResponse>, Status> {
        unimplemented()
    }
    async fn get_enriched_context(
        &self,
        _: Request<memory_pb::GetEnrichedContextRequest>,
    ) -> Result<Response<memory_pb::GetEnrichedContextResponse>, Status> {
        unimplemented()
    }
    async fn search_summaries(
        &self,
        _: Request<memory_pb::SearchSummariesRequest>,
    ) -> Result<Response<memory_pb::SearchSummariesResponse>, Status> {
        unimplemented()
    }
    type ExportCallerStream = Nothing<memory_pb::ExportCallerResponse>;
    async fn export_caller(
        &self,
        _: Request<memory_pb::ExportCallerRequest>,
    ) -> Result<Response<Self::ExportCallerStream>, Status> {
        unimplemented()
    }
    async fn erase_caller(
        &self,
        _: Request<memory_pb::EraseCallerRequest>,
    ) -> Result<Response<memory_pb::EraseCallerResponse>, Status> {
        unimplemented()
    }
    async fn list_audit_entries(
        &self,
        _: Request<memory_pb::ListAuditEntriesRequest>,
    ) -> Result<Response<memory_pb::ListAuditEntriesResponse>, Status> {
        unimplemented()
    }
}

/// A gateway in front of the stub peers.
pub struct Gateway {
    /// Its public address.
    pub addr: SocketAddr,
    /// What reached the peers.
    pub seen: Seen,
    http: reqwest::Client,
}

impl Gateway {
    /// Starts the stub peers and a gateway with `extra` settings; both run until the test ends.
    pub async fn start(extra: &[(&str, &str)]) -> Gateway {
        let stub = Stub::default();
        let seen = stub.0.clone();
        let peers = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peers_url = format!("http://{}", peers.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(EdgeServiceServer::new(stub.clone()))
                .add_service(CallServiceServer::new(stub.clone()))
                .add_service(MemoryServiceServer::new(stub))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(peers)),
        );
        // A deep accept queue: the connection tests open thousands of sockets in a burst.
        let http = {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            socket.listen(4096).unwrap()
        };
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = http.local_addr().unwrap();
        let mut env: Vec<(String, String)> = [
            ("GATEWAY_PORT", addr.port().to_string()),
            (
                "GATEWAY_ADMIN_PORT",
                admin.local_addr().unwrap().port().to_string(),
            ),
            ("PUBLIC_BASE_URL", format!("http://{addr}")),
            ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_owned()),
            ("TENANT_SVC_URL", peers_url.clone()),
            ("MEMORY_SVC_URL", peers_url.clone()),
            ("MEDIA_SVC_URL", peers_url),
            // The identity is handed over directly; these are not read.
            ("MESH_SIGNING_KEY_FILE", "unused".to_owned()),
            ("MESH_SIGNING_KEY_ID", "unused".to_owned()),
            ("MESH_TRUSTED_KEYS_FILE", "unused".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let settings = gateway::Settings::from_env(mesh::settings::Env::from_pairs(env))
            .expect("gateway settings");
        let keys = DevKeys::generate();
        let edge = gateway::edge_state(&settings, &keys.identity(names::GATEWAY)).unwrap();
        tokio::spawn(gateway::serve(
            edge,
            http,
            admin,
            Duration::from_secs(1),
            std::future::pending(),
        ));
        Gateway {
            addr,
            seen,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs `params` to `path` signed as Twilio signs them (`signed`), or with no signature.
    pub async fn twilio_post(
        &self,
        path: &str,
        params: &[(&str, &str)],
        signed: bool,
    ) -> reqwest::Response {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let url = format!("http://{}{path}", self.addr);
        let mut request = self.http.post(&url).form(&owned);
        if signed {
            let signature = gateway::signature::compute(AUTH_TOKEN.as_bytes(), &url, &owned);
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send().await.expect("the gateway answers")
    }

    /// A client whose connections come from `local` (any 127.x.y.z address reaches the
    /// gateway on loopback), as a different host or a proxy would.
    pub fn client_from(local: std::net::IpAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(local)
            .build()
            .expect("client")
    }

    /// The public URL of `path` on this gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a legacy REST request with `token` as bearer token.
    pub async fn legacy_post(
        &self,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(format!("http://{}{path}", self.addr))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("the gateway answers")
    }
}

/// A voice webhook's parameters.
pub fn call_params<'a>(
    call_sid: &'a str,
    from: &'a str,
    to: &'a str,
    direction: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CallSid", call_sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", from),
        ("To", to),
        ("CallStatus", "ringing"),
        ("Direction", direction),
    ]
}

/// The `n`th test CallSid.
pub fn call_sid(n: u32) -> String {
    format!("CA{n:032x}")
}
