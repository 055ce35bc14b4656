//! tenant-svc's clients of memory-svc and media-svc, for one thing only: fanning out a tenant's
//! erasure (`EraseTenant`) with tenant-svc's own service tokens, whose scopes
//! (`memory:erase-tenant`, `media:erase-tenant`) open that one RPC and nothing else.

use std::time::Duration;

use mesh::api::common::TableCount;
use mesh::api::media::EraseTenantRequest as MediaEraseTenant;
use mesh::api::media::media_admin_service_client::MediaAdminServiceClient;
use mesh::api::memory::EraseTenantRequest as MemoryEraseTenant;
use mesh::api::memory::memory_admin_service_client::MemoryAdminServiceClient;
use mesh::auth::AttachToken;
use mesh::domain::CustomerId;
use mesh::identity::{Identity, names, scope};
use tonic::transport::Channel;

/// How long one service may take to erase a tenant.
const ERASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Lazy channels to memory-svc and media-svc (nothing connects until the first erasure).
#[derive(Clone)]
pub struct Peers {
    memory: Channel,
    media: Channel,
    identity: Identity,
}

/// A peer did not confirm: its status, or no answer in time.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer answered with an error.
    #[error("{}", .0.code())]
    Status(#[from] tonic::Status),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}

impl Peers {
    /// Channels to memory-svc and media-svc, each one URL or a comma-separated list of replicas
    /// (`mesh::balance`).
    pub fn new(memory_url: &str, media_url: &str, identity: Identity) -> anyhow::Result<Self> {
        let channel =
            |url: &str| mesh::balance::channel(url, |e| e.connect_timeout(Duration::from_secs(2)));
        Ok(Self {
            memory: channel(memory_url)?,
            media: channel(media_url)?,
            identity,
        })
    }

    /// media-svc `EraseTenant`; the rows it removed per table.
    pub async fn erase_media(&self, customer: CustomerId) -> Result<Vec<TableCount>, PeerError> {
        let tokens = self
            .identity
            .service_tokens(names::MEDIA_SVC, &[scope::MEDIA_ERASE_TENANT]);
        let mut client =
            MediaAdminServiceClient::with_interceptor(self.media.clone(), AttachToken(tokens));
        let request = MediaEraseTenant {
            customer_id: customer.get(),
        };
        let response = tokio::time::timeout(ERASE_TIMEOUT, client.erase_tenant(request))
            .await
            .map_err(|_| PeerError::Timeout)??;
        Ok(response.into_inner().counts)
    }

    /// memory-svc `EraseTenant`; the rows it removed per table.
    pub async fn erase_memory(&self, customer: CustomerId) -> Result<Vec<TableCount>, PeerError> {
        let tokens = self
            .identity
            .service_tokens(names::MEMORY_SVC, &[scope::MEMORY_ERASE_TENANT]);
        let mut client =
            MemoryAdminServiceClient::with_interceptor(self.memory.clone(), AttachToken(tokens));
        let request = MemoryEraseTenant {
            customer_id: customer.get(),
        };
        let response = tokio::time::timeout(ERASE_TIMEOUT, client.erase_tenant(request))
            .await
            .map_err(|_| PeerError::Timeout)??;
        Ok(response.into_inner().counts)
    }
}
