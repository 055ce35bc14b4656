//! media-svc's clients of the other services: tenant-svc (the effective agent profile, and tenant
//! tokens) and memory-svc (the caller's enriched context at call start, `RecordCall` after it).
//!
//! Tokens: the auth layer strips the caller's bearer token before any handler runs, and only
//! tenant-svc can mint tenant tokens, so media-svc asks tenant-svc for one
//! (`TenantAdminService.IssueTenantToken`, with its own service token) for the call's tenant:
//! audiences tenant-svc and memory-svc, scopes `tenant:read tenant:webhook memory:read
//! memory:write`, 15
//! minutes, cached per tenant until half its life or until the tenant's tokens are revoked (the
//! same copy of `mesh::auth::Revocations` the auth layer checks: after a suspension is lifted
//! the next request gets a fresh token at once instead of presenting the revoked one for the
//! rest of its cached life). The same path serves the outbox, so a delivery retried hours later
//! still has a valid token and no credential is ever stored.
//!
//! One call uses media-svc's own service token instead: `TenantAdminService.NotifyOwners` (the
//! outbox telling a tenant's owners that a caller left a message), scope `tenant:notify-owners`,
//! which opens that RPC and nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::memory::{
    EraseCallerRequest, EraseCallerResponse, GetEnrichedContextRequest, GetEnrichedContextResponse,
    RecordCallRequest, RecordCallResponse,
};
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::{
    AgentProfile, CallHandling, Customer, GetCallHandlingRequest, GetEffectiveProfileRequest,
    GetMyCustomerRequest, GetOutboundSettingsRequest, GetOutboundSettingsResponse,
    IssueTenantTokenRequest, NotifyOwnersRequest, NotifyOwnersResponse, SignWebhookEventRequest,
    SignWebhookEventResponse,
};
use mesh::auth::{AttachToken, Revocations, TokenSource};
pub use mesh::call_handling::{in_opening_hours, recording_policy};
use mesh::domain::{CallerNumber, CustomerId};
use mesh::identity::{Identity, names, scope};
use secrecy::SecretString;
use tonic::transport::Channel;

/// Lifetime of the tenant tokens media-svc requests (the most tenant-svc grants it).
const TOKEN_TTL: Duration = scope::MEDIA_SVC_PEER_TOKEN.max_ttl;

/// Lifetime of the one-use token that erases a caller's memory (never cached).
const ERASE_TOKEN_TTL: Duration = scope::MEDIA_SVC_ERASE_TOKEN.max_ttl;

/// A tenant's call-handling settings as media-svc uses them: the settings and the time zone
/// (parsed) their opening hours are read in.
#[derive(Debug, Clone, PartialEq)]
pub struct CallHandlingSettings {
    /// The settings (`GetCallHandling`).
    pub settings: CallHandling,
    /// The effective agent profile's time zone; UTC when tenant-svc sent one chrono-tz does not
    /// know.
    pub time_zone: chrono_tz::Tz,
}

impl CallHandlingSettings {
    /// What a call uses when the settings cannot be read: recording OFF (record nothing), the
    /// defaults otherwise (always open), UTC.
    pub fn fallback() -> Self {
        Self {
            settings: mesh::call_handling::defaults(),
            time_zone: chrono_tz::Tz::UTC,
        }
    }

    /// Whether `now` is within the opening hours (no opening hours: always).
    pub fn is_open(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        in_opening_hours(&self.settings, self.time_zone, now)
    }

    /// The recording policy (UNSPECIFIED or unknown: OFF).
    pub fn policy(&self) -> mesh::api::tenant::RecordingPolicy {
        recording_policy(&self.settings)
    }
}

/// Clients of tenant-svc and memory-svc.
#[derive(Clone)]
pub struct Peers {
    tenant: Channel,
    memory: Channel,
    identity: Identity,
    timeout: Duration,
    cache: Arc<Mutex<HashMap<CustomerId, CachedToken>>>,
    revocations: Revocations,
}

/// A tenant token media-svc holds for one tenant.
struct CachedToken {
    token: SecretString,
    /// When it is renewed anyway (half its life).
    refresh_at: Instant,
    /// Its `iat` as tenant-svc's answer implies it (expiry minus the lifetime asked for; never
    /// later than the real one), compared with the tenant's revocation time.
    issued_at: i64,
}

/// A peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The URL is unusable.
    #[error("bad peer URL: {0}")]
    Url(String),
    /// The peer answered with an error.
    #[error("{0}")]
    Status(#[from] tonic::Status),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}

impl PeerError {
    /// Whether retrying cannot help (the request itself is refused).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Status(s) if matches!(s.code(), tonic::Code::InvalidArgument | tonic::Code::OutOfRange))
    }

    /// A short, secret-free description for logs and the outbox.
    pub fn short(&self) -> String {
        match self {
            Self::Status(s) => format!("{:?}", s.code()),
            other => other.to_string(),
        }
    }
}

/// One URL or a comma-separated list of replicas (balanced, health-probed; see
/// `mesh::balance`).
fn lazy_channel(url: &str, timeout: Duration) -> Result<Channel, PeerError> {
    mesh::balance::channel(url, |e| {
        e.connect_timeout(timeout).timeout(Duration::from_secs(10))
    })
    .map_err(|e| PeerError::Url(e.to_string()))
}

impl Peers {
    /// Lazy channels (nothing connects until the first call).
    pub fn new(
        tenant_url: &str,
        memory_url: &str,
        identity: Identity,
        timeout: Duration,
    ) -> Result<Self, PeerError> {
        Ok(Self {
            tenant: lazy_channel(tenant_url, timeout)?,
            memory: lazy_channel(memory_url, timeout)?,
            identity,
            timeout,
            cache: Arc::default(),
            revocations: Revocations::new(),
        })
    }

    /// The channel to tenant-svc (for the calls made with media-svc's own service token).
    pub fn tenant_channel(&self) -> Channel {
        self.tenant.clone()
    }

    /// The time allowed for call-start lookups.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The revocations this media-svc knows of: the server's auth layer fills this very copy
    /// (`server::serve` hands it to the mesh server's refresher).
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// A tenant token for `customer` (cached until half its life, or until the tenant's tokens
    /// issued when it was are revoked).
    pub async fn tenant_token(&self, customer: CustomerId) -> Result<SecretString, PeerError> {
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = cache.get(&customer)
                && Instant::now() < cached.refresh_at
                && !self.revocations.is_revoked(customer, cached.issued_at)
            {
                return Ok(cached.token.clone());
            }
        }
        let source = self
            .identity
            .service_tokens(names::TENANT_SVC, &[scope::TENANT_ADMIN]);
        let mut client =
            TenantAdminServiceClient::with_interceptor(self.tenant.clone(), AttachToken(source));
        let response = client
            .issue_tenant_token(IssueTenantTokenRequest {
                customer_id: customer.get(),
                // Exactly what tenant-svc grants media-svc, no more.
                scopes: (scope::MEDIA_SVC_PEER_TOKEN.scopes.iter())
                    .map(|s| (*s).to_owned())
                    .collect(),
                audiences: (scope::MEDIA_SVC_PEER_TOKEN.audiences.iter())
                    .map(|a| (*a).to_owned())
                    .collect(),
                ttl: Some(prost_types::Duration {
                    seconds: TOKEN_TTL.as_secs() as i64,
                    nanos: 0,
                }),
                subject: names::MEDIA_SVC.into(),
            })
            .await?
            .into_inner();
        let issued_at = response.expire_time.map_or(0, |t| t.seconds) - TOKEN_TTL.as_secs() as i64;
        let token = SecretString::from(response.token);
        let cached = CachedToken {
            token: token.clone(),
            refresh_at: Instant::now() + TOKEN_TTL / 2,
            issued_at,
        };
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(customer, cached);
        Ok(token)
    }

    /// Asks tenant-svc for a tenant token of `customer`.
    async fn issue_token(
        &self,
        customer: CustomerId,
        scopes: &[&str],
        audiences: &[&str],
        ttl: Duration,
        subject: String,
    ) -> Result<SecretString, PeerError> {
        let source = self
            .identity
            .service_tokens(names::TENANT_SVC, &[scope::TENANT_ADMIN]);
        let mut client =
            TenantAdminServiceClient::with_interceptor(self.tenant.clone(), AttachToken(source));
        let request = IssueTenantTokenRequest {
            customer_id: customer.get(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            ttl: Some(prost_types::Duration {
                seconds: ttl.as_secs() as i64,
                nanos: 0,
            }),
            subject,
        };
        let response = tokio::time::timeout(self.timeout, client.issue_tenant_token(request))
            .await
            .map_err(|_| PeerError::Timeout)??;
        Ok(SecretString::from(response.into_inner().token))
    }

    /// Erases one caller in memory-svc (`EraseCaller`, idempotent there), with a token of its
    /// own: audience memory-svc, scope `memory:erase`, one minute, subject naming who asked
    /// media-svc (memory-svc's audit row records it).
    pub async fn erase_caller_memory(
        &self,
        customer: CustomerId,
        caller: &CallerNumber,
        actor: &str,
    ) -> Result<EraseCallerResponse, PeerError> {
        let subject: String = format!("{}:{actor}", names::MEDIA_SVC)
            .chars()
            .filter(char::is_ascii_graphic)
            .take(128)
            .collect();
        let token = self
            .issue_token(
                customer,
                scope::MEDIA_SVC_ERASE_TOKEN.scopes,
                scope::MEDIA_SVC_ERASE_TOKEN.audiences,
                ERASE_TOKEN_TTL,
                subject,
            )
            .await?;
        let mut client = MemoryServiceClient::with_interceptor(
            self.memory.clone(),
            AttachToken(TokenSource::fixed(token)),
        );
        let request = EraseCallerRequest {
            user_id: caller.as_str().to_owned(),
        };
        let response = tokio::time::timeout(Duration::from_secs(30), client.erase_caller(request))
            .await
            .map_err(|_| PeerError::Timeout)??;
        Ok(response.into_inner())
    }

    /// The effective agent profile.
    pub async fn profile(&self, customer: CustomerId) -> Result<AgentProfile, PeerError> {
        self.profile_with(customer, GetEffectiveProfileRequest::default())
            .await
    }

    /// The effective agent profile, with an unsaved draft applied when `request` carries one
    /// (tenant-svc validates it as an update and stores nothing).
    pub async fn profile_with(
        &self,
        customer: CustomerId,
        request: GetEffectiveProfileRequest,
    ) -> Result<AgentProfile, PeerError> {
        let token = self.tenant_token(customer).await?;
        let mut client = TenantServiceClient::with_interceptor(
            self.tenant.clone(),
            AttachToken(TokenSource::fixed(token)),
        );
        let profile = client
            .get_effective_profile(request)
            .await?
            .into_inner()
            .profile
            .ok_or_else(|| tonic::Status::internal("tenant-svc sent no profile"))?;
        Ok(profile)
    }

    fn tenant_client(
        &self,
        token: SecretString,
    ) -> TenantServiceClient<tonic::service::interceptor::InterceptedService<Channel, AttachToken>>
    {
        TenantServiceClient::with_interceptor(
            self.tenant.clone(),
            AttachToken(TokenSource::fixed(token)),
        )
    }

    /// The tenant's customer record (numbers with their Twilio accounts, package tier).
    pub async fn customer(&self, customer: CustomerId) -> Result<Customer, PeerError> {
        let token = self.tenant_token(customer).await?;
        let response = tokio::time::timeout(
            self.timeout,
            self.tenant_client(token)
                .get_my_customer(GetMyCustomerRequest {}),
        )
        .await
        .map_err(|_| PeerError::Timeout)??;
        response
            .into_inner()
            .customer
            .ok_or_else(|| tonic::Status::internal("tenant-svc sent no customer").into())
    }

    /// The tenant's outbound-call and webhook settings.
    pub async fn outbound_settings(
        &self,
        customer: CustomerId,
    ) -> Result<GetOutboundSettingsResponse, PeerError> {
        let token = self.tenant_token(customer).await?;
        let response = tokio::time::timeout(
            self.timeout,
            self.tenant_client(token)
                .get_outbound_settings(GetOutboundSettingsRequest {}),
        )
        .await
        .map_err(|_| PeerError::Timeout)??;
        Ok(response.into_inner())
    }

    /// The tenant's call-handling settings (recording policy and texts, retention, message flow,
    /// opening hours) with the time zone they are read in, within the peer timeout. Call start
    /// uses [`Peers::call_handling_or_fallback`]; retention needs the error (never deletes on a
    /// default).
    pub async fn call_handling(
        &self,
        customer: CustomerId,
    ) -> Result<CallHandlingSettings, PeerError> {
        let token = self.tenant_token(customer).await?;
        let response = tokio::time::timeout(
            self.timeout,
            self.tenant_client(token)
                .get_call_handling(GetCallHandlingRequest {}),
        )
        .await
        .map_err(|_| PeerError::Timeout)??
        .into_inner();
        let settings = response
            .settings
            .ok_or_else(|| tonic::Status::internal("tenant-svc sent no call handling"))?;
        let time_zone = response.time_zone.parse().unwrap_or_else(|_| {
            tracing::warn!(
                customer_id = customer.get(),
                "unknown time zone from tenant-svc; opening hours read in UTC"
            );
            chrono_tz::Tz::UTC
        });
        Ok(CallHandlingSettings {
            settings,
            time_zone,
        })
    }

    /// [`Peers::call_handling`], or [`CallHandlingSettings::fallback`] (recording OFF) when it
    /// cannot be read (logged).
    pub async fn call_handling_or_fallback(&self, customer: CustomerId) -> CallHandlingSettings {
        match self.call_handling(customer).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    customer_id = customer.get(),
                    error = %e.short(),
                    "call handling unreadable; recording off, defaults otherwise"
                );
                CallHandlingSettings::fallback()
            }
        }
    }

    /// Signs one webhook delivery with the tenant's secrets (which stay in tenant-svc) and
    /// says where to send it.
    pub async fn sign_webhook_event(
        &self,
        customer: CustomerId,
        timestamp: i64,
        body: Vec<u8>,
    ) -> Result<SignWebhookEventResponse, PeerError> {
        let token = self.tenant_token(customer).await?;
        let response = tokio::time::timeout(
            self.timeout,
            self.tenant_client(token)
                .sign_webhook_event(SignWebhookEventRequest { timestamp, body }),
        )
        .await
        .map_err(|_| PeerError::Timeout)??;
        Ok(response.into_inner())
    }

    /// The caller's enriched context.
    pub async fn context(
        &self,
        customer: CustomerId,
        caller: &CallerNumber,
    ) -> Result<GetEnrichedContextResponse, PeerError> {
        let token = self.tenant_token(customer).await?;
        let mut client = MemoryServiceClient::with_interceptor(
            self.memory.clone(),
            AttachToken(TokenSource::fixed(token)),
        );
        Ok(client
            .get_enriched_context(GetEnrichedContextRequest {
                user_id: caller.as_str().to_owned(),
                num_summaries: None,
            })
            .await?
            .into_inner())
    }

    /// Records a finished call in memory-svc (idempotent there on the CallSid). The answer
    /// carries the stored summary, which the post-call webhook event includes.
    pub async fn record_call(
        &self,
        customer: CustomerId,
        request: RecordCallRequest,
    ) -> Result<RecordCallResponse, PeerError> {
        let token = self.tenant_token(customer).await?;
        let mut client = MemoryServiceClient::with_interceptor(
            self.memory.clone(),
            AttachToken(TokenSource::fixed(token)),
        );
        let response = tokio::time::timeout(Duration::from_secs(30), client.record_call(request))
            .await
            .map_err(|_| PeerError::Timeout)??;
        Ok(response.into_inner())
    }

    /// Asks tenant-svc to mail the tenant's owners about a callback task (idempotent there per
    /// task and owner). The request names its customer: it is sent with media-svc's service
    /// token, whose scope opens this RPC only.
    pub async fn notify_owners(
        &self,
        request: NotifyOwnersRequest,
    ) -> Result<NotifyOwnersResponse, PeerError> {
        let source = self
            .identity
            .service_tokens(names::TENANT_SVC, &[scope::TENANT_NOTIFY_OWNERS]);
        let mut client =
            TenantAdminServiceClient::with_interceptor(self.tenant.clone(), AttachToken(source));
        // The channel cuts a request after 10 s (a hung mail server); owners mailed before the
        // cut are recorded by tenant-svc, so the outbox's retry mails only the others.
        let response = client.notify_owners(request).await?;
        Ok(response.into_inner())
    }
}
