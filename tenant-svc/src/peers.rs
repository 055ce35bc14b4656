//! tenant-svc's clients of memory-svc and media-svc, for three things only: fanning out a
//! tenant's erasure (`EraseTenant`) with tenant-svc's own service tokens, whose scopes
//! (`memory:erase-tenant`, `media:erase-tenant`) open that one RPC and nothing else; asking
//! media-svc to render a tenant's spoken prompts after a change to their texts or the voice
//! commits (`PreparePrompts`, scope `media:prepare-prompts`, in the background:
//! [`Peers::prepare_prompts_soon`]); and reading a tenant's export and erasure audit rows
//! (`ListAuditEntries`) for its audit log, with a tenant token of that customer that tenant-svc
//! mints for itself (one minute, `memory:audit` or `media:audit` only).

use std::time::Duration;

use mesh::api::common::TableCount;
use mesh::api::media::EraseTenantRequest as MediaEraseTenant;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::media::media_admin_service_client::MediaAdminServiceClient;
use mesh::api::media::number_admin_service_client::NumberAdminServiceClient;
use mesh::api::media::{
    ErasureAudit, GetUsageRequest, GetUsageResponse, ListAuditEntriesRequest as MediaListAudit,
    PreparePromptsRequest, PreparePromptsResponse,
};
use mesh::api::media::{ImportNumberRequest, ReleaseCustomerNumberRequest};
use mesh::api::memory::EraseTenantRequest as MemoryEraseTenant;
use mesh::api::memory::memory_admin_service_client::MemoryAdminServiceClient;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::memory::{AuditEntry, ListAuditEntriesRequest as MemoryListAudit};
use mesh::audit::AuditPage;
use mesh::auth::{AttachToken, with_bearer};
use mesh::domain::CustomerId;
use mesh::identity::{Identity, names, scope};
use tonic::transport::Channel;

/// How long one service may take to erase a tenant.
const ERASE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one service may take to list a page of audit rows.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Lifetime of the tenant token tenant-svc mints for itself to read a peer's audit rows.
const AUDIT_TOKEN_TTL: Duration = Duration::from_secs(60);
/// How long media-svc may take to render and store a tenant's prompts (espeak-ng, twice).
const PREPARE_TIMEOUT: Duration = Duration::from_secs(30);
/// The pauses before each retry of `PreparePrompts` after a change (then it is left to the
/// first call, which renders on a miss): four attempts within about 20 s plus their timeouts.
pub const PREPARE_RETRY_PAUSES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(4),
    Duration::from_secs(15),
];

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
    /// tenant-svc could not mint the token to ask with.
    #[error("cannot mint a token: {0}")]
    Mint(#[from] mesh::auth::AuthError),
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

    /// media-svc `PreparePrompts`: the tenant's prompts rendered and stored as its settings
    /// stand now.
    pub async fn prepare_prompts(
        &self,
        customer: CustomerId,
    ) -> Result<PreparePromptsResponse, PeerError> {
        let tokens = self
            .identity
            .service_tokens(names::MEDIA_SVC, &[scope::MEDIA_PREPARE_PROMPTS]);
        let mut client =
            MediaAdminServiceClient::with_interceptor(self.media.clone(), AttachToken(tokens));
        let request = PreparePromptsRequest {
            customer_id: customer.get(),
        };
        let response = tokio::time::timeout(PREPARE_TIMEOUT, client.prepare_prompts(request))
            .await
            .map_err(|_| PeerError::Timeout)??;
        Ok(response.into_inner())
    }

    /// [`Peers::prepare_prompts`] in the background, retried after [`PREPARE_RETRY_PAUSES`]
    /// while media-svc is unreachable or answers UNAVAILABLE; returns at once, so the change's
    /// answer never waits on media-svc and never fails because of it. Each attempt renders the
    /// settings as they stand then, so overlapping attempts after quick changes all end on the
    /// latest. If every attempt fails, the first call renders the prompts itself.
    pub fn prepare_prompts_soon(&self, customer: CustomerId) {
        let peers = self.clone();
        tokio::spawn(async move {
            let mut pauses = PREPARE_RETRY_PAUSES.iter();
            loop {
                let error = match peers.prepare_prompts(customer).await {
                    Ok(done) => {
                        tracing::debug!(
                            customer_id = customer.get(),
                            rendered = done.rendered,
                            "prompts prepared"
                        );
                        return;
                    }
                    Err(e) => e,
                };
                let retry = match &error {
                    PeerError::Timeout => true,
                    PeerError::Mint(_) => false,
                    PeerError::Status(s) => matches!(
                        s.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Unknown
                            | tonic::Code::Internal
                            | tonic::Code::ResourceExhausted
                            | tonic::Code::Aborted
                    ),
                };
                let pause = pauses.next().filter(|_| retry);
                tracing::warn!(
                    customer_id = customer.get(),
                    error = %error,
                    retrying = pause.is_some(),
                    "media-svc did not prepare the prompts; a call renders them on a miss"
                );
                match pause {
                    Some(p) => tokio::time::sleep(*p).await,
                    None => return,
                }
            }
        });
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

    /// media-svc `GetUsage` of `customer` for a calendar month, with a tenant token of that
    /// customer (`media:read` only, one minute) that tenant-svc mints for itself: the operator
    /// console's usage column.
    pub async fn usage(
        &self,
        customer: CustomerId,
        year: i32,
        month: i32,
    ) -> Result<GetUsageResponse, PeerError> {
        let token = self.audit_token(customer, names::MEDIA_SVC, scope::MEDIA_READ)?;
        let mut client = CallServiceClient::new(self.media.clone());
        let request = GetUsageRequest { year, month };
        let response = tokio::time::timeout(
            AUDIT_TIMEOUT,
            client.get_usage(with_bearer(request, &token)),
        )
        .await
        .map_err(|_| PeerError::Timeout)??;
        Ok(response.into_inner())
    }

    /// media-svc `CountDeadLetters`: per customer id, its dead-lettered webhook events, with
    /// tenant-svc's service token of scope `media:dead-letters` (that RPC only).
    pub async fn dead_letter_counts(&self) -> Result<Vec<(i64, i64)>, PeerError> {
        let tokens = self
            .identity
            .service_tokens(names::MEDIA_SVC, &[scope::MEDIA_DEAD_LETTERS]);
        let mut client =
            MediaAdminServiceClient::with_interceptor(self.media.clone(), AttachToken(tokens));
        let response = tokio::time::timeout(
            AUDIT_TIMEOUT,
            client.count_dead_letters(mesh::api::media::CountDeadLettersRequest {}),
        )
        .await
        .map_err(|_| PeerError::Timeout)??;
        Ok(response
            .into_inner()
            .counts
            .into_iter()
            .map(|c| (c.customer_id, c.count))
            .collect())
    }

    /// media-svc `NumberAdminService` with tenant-svc's `media:numbers-admin` token (the
    /// operator console's numbers, offboarding's release).
    fn number_admin(
        &self,
    ) -> NumberAdminServiceClient<
        tonic::service::interceptor::InterceptedService<Channel, AttachToken>,
    > {
        let tokens = self
            .identity
            .service_tokens(names::MEDIA_SVC, &[scope::MEDIA_NUMBERS_ADMIN]);
        NumberAdminServiceClient::with_interceptor(self.media.clone(), AttachToken(tokens))
    }

    /// Imports `number` (already on the Twilio account) for `customer`, its webhooks corrected.
    pub async fn import_number(&self, customer: CustomerId, number: &str) -> Result<(), PeerError> {
        let request = ImportNumberRequest {
            customer_id: customer.get(),
            phone_number: number.to_owned(),
            fix_webhooks: true,
            origin: 0,
        };
        tokio::time::timeout(ERASE_TIMEOUT, self.number_admin().import_number(request))
            .await
            .map_err(|_| PeerError::Timeout)??;
        Ok(())
    }

    /// Releases `customer`'s `number` (routing, then Twilio).
    pub async fn release_number(
        &self,
        customer: CustomerId,
        number: &str,
    ) -> Result<(), PeerError> {
        let request = ReleaseCustomerNumberRequest {
            customer_id: customer.get(),
            phone_number: number.to_owned(),
        };
        tokio::time::timeout(
            ERASE_TIMEOUT,
            self.number_admin().release_customer_number(request),
        )
        .await
        .map_err(|_| PeerError::Timeout)??;
        Ok(())
    }

    /// A tenant token of `customer` for `audience` with `scope` only, subject `tenant-svc`.
    fn audit_token(
        &self,
        customer: CustomerId,
        audience: &str,
        scope: &str,
    ) -> Result<String, PeerError> {
        Ok(self.identity.minter().mint_tenant(
            customer,
            names::TENANT_SVC,
            &[audience],
            &[scope],
            AUDIT_TOKEN_TTL,
        )?)
    }

    /// memory-svc `ListAuditEntries` for `customer`: one page below the cursor.
    pub async fn memory_audit(
        &self,
        customer: CustomerId,
        page: &AuditPage,
    ) -> Result<Vec<AuditEntry>, PeerError> {
        let token = self.audit_token(customer, names::MEMORY_SVC, scope::MEMORY_AUDIT)?;
        let (before_time, before_id) = page.to_request();
        let request = MemoryListAudit {
            page_size: page.limit as i32,
            before_time,
            before_id,
        };
        let mut client = MemoryServiceClient::new(self.memory.clone());
        let response = tokio::time::timeout(
            AUDIT_TIMEOUT,
            client.list_audit_entries(with_bearer(request, &token)),
        )
        .await
        .map_err(|_| PeerError::Timeout)??;
        Ok(response.into_inner().entries)
    }

    /// media-svc `ListAuditEntries` for `customer`: one page below the cursor.
    pub async fn media_audit(
        &self,
        customer: CustomerId,
        page: &AuditPage,
    ) -> Result<Vec<ErasureAudit>, PeerError> {
        let token = self.audit_token(customer, names::MEDIA_SVC, scope::MEDIA_AUDIT)?;
        let (before_time, before_id) = page.to_request();
        let request = MediaListAudit {
            page_size: page.limit as i32,
            before_time,
            before_id,
        };
        let mut client = CallServiceClient::new(self.media.clone());
        let response = tokio::time::timeout(
            AUDIT_TIMEOUT,
            client.list_audit_entries(with_bearer(request, &token)),
        )
        .await
        .map_err(|_| PeerError::Timeout)??;
        Ok(response.into_inner().entries)
    }
}
