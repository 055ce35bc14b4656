//! The state every handler shares ([`Edge`]): peer clients, the gateway's tokens, the limiters,
//! the live-call tracker. Built once by [`edge_state`] from the settings; nothing in it is per
//! request or per call (what a call was answered is media-svc's call row).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Uri};
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::auth::TokenSource;
use mesh::identity::{Identity, names, scope};
use secrecy::ExposeSecret;
use tonic::transport::Channel;

use crate::limits::Limits;
use crate::{Settings, signature};

/// Everything the handlers share.
pub struct Edge {
    /// Public base URL (no trailing slash), e.g. `https://edge.example.com`.
    pub public_base_url: String,
    /// The `wss://` URL of the Media Streams endpoint.
    pub media_ws_url: String,
    /// Twilio Auth Token bytes.
    pub auth_token: secrecy::SecretSlice<u8>,
    /// tenant-svc client.
    pub tenant: EdgeServiceClient<Channel>,
    /// media-svc client.
    pub media: CallServiceClient<Channel>,
    /// memory-svc client.
    pub memory: MemoryServiceClient<Channel>,
    /// The channels to tenant-svc and media-svc, for readiness probes.
    pub peer_channels: [(&'static str, Channel); 2],
    /// The gateway's service tokens to tenant-svc.
    pub tenant_token: TokenSource,
    /// The gateway's service tokens to media-svc: `OpenStream` and `StreamCall`.
    pub media_token: TokenSource,
    /// The answer's time budget.
    pub budget: Duration,
    /// What callers hear when the number is unknown or the tenant suspended.
    pub unavailable_message: String,
    /// What callers hear when the platform cannot take the call.
    pub apology_message: String,
    /// What callers hear when the tenant is at its concurrent-call limit.
    pub busy_message: String,
    /// Rate limits.
    pub limits: Limits,
    /// The proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: crate::proxy::TrustedProxies,
    /// Bounds on the public listener's connections.
    pub connections: crate::http::ConnectionConfig,
    /// Every Media Streams bridge holds a token of this tracker from the upgrade on: an upgraded
    /// connection leaves hyper's hands, so the drain on shutdown waits here for live calls.
    pub streams: tokio_util::task::TaskTracker,
    /// Cancelled when the drain deadline passes: bridges still running close their sockets with
    /// an error code (Twilio plays the apology) instead of vanishing with the process.
    pub drain_expired: tokio_util::sync::CancellationToken,
    /// Key for hashing phone numbers in logs.
    pub log_key: Vec<u8>,
    /// The tenant portal (its router is mounted under `/portal/`).
    pub portal: Arc<portal::Portal>,
    /// The operator console (served on its own listener by [`crate::console::serve`]).
    pub console: Arc<crate::console::Console>,
}

impl Edge {
    /// The channel to tenant-svc (for its services other than `EdgeService`, such as the API
    /// key exchange).
    pub fn tenant_channel(&self) -> Channel {
        self.peer_channels[0].1.clone()
    }

    /// A keyed hash of a phone number, for logs (never the number itself).
    pub fn hash_number(&self, number: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.log_key).expect("any key length");
        mac.update(number.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// The URL Twilio requested and signed: the configured public base URL with the request's
    /// path and query (never `Host` or `X-Forwarded-*`, which a client controls).
    pub fn signed_url(&self, uri: &Uri) -> String {
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        format!("{}{}", self.public_base_url, pq)
    }

    /// Whether `headers` carry a valid `X-Twilio-Signature` for `url` and `params`.
    pub fn signature_ok(
        &self,
        headers: &HeaderMap,
        url: &str,
        params: &[(String, String)],
    ) -> bool {
        headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|sig| {
                signature::validate(self.auth_token.expose_secret(), url, params, sig)
            })
    }
}

/// One URL or a comma-separated list of replicas (balanced, health-probed), connected lazily:
/// the gateway starts even when a service is down, and calls then get the apology in budget.
fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(mesh::balance::channel(url, |e| {
        e.connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
    })?)
}

/// The `ws(s)://` form of the public base URL (Twilio opens Media Streams there).
fn websocket_base(base: &str) -> anyhow::Result<String> {
    if let Some(rest) = base.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else if let Some(rest) = base.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else {
        anyhow::bail!("PUBLIC_BASE_URL must start with https:// or http://");
    }
}

/// The gateway's service tokens for tenant-svc's `AccountService` (the tenant portal's sign-in,
/// invitations, resets and session exchange): scope `tenant:portal` and nothing else, so the
/// token that reaches accounts opens no other RPC, and the edge's token (`tenant:resolve`,
/// `tenant:exchange`) opens no account. Minted with the gateway's key, cached and re-minted like
/// every service token.
pub fn portal_account_tokens(identity: &Identity) -> TokenSource {
    identity.service_tokens(names::TENANT_SVC, &[scope::TENANT_PORTAL])
}

/// Builds the shared state: lazy gRPC channels, the gateway's token source, limits.
pub fn edge_state(settings: &Settings, identity: &Identity) -> anyhow::Result<Arc<Edge>> {
    let base = settings.public_base_url.trim_end_matches('/').to_owned();
    let ws_base = websocket_base(&base)?;
    let token = settings
        .twilio_auth_token
        .expose_secret()
        .as_bytes()
        .to_vec();
    let log_key = {
        use sha2::Digest;
        sha2::Sha256::digest([b"neurosphere-log-hash:".as_slice(), &token].concat()).to_vec()
    };
    let tenant_channel = channel(&settings.tenant_svc_url)?;
    let media_channel = channel(&settings.media_svc_url)?;
    let memory_channel = channel(&settings.memory_svc_url)?;
    // The portal's only power of its own: `AccountService` (sign-in, sessions, resets). Every
    // page's data is read with the signed-in user's own short-lived tenant token.
    let portal = Arc::new(portal::Portal::new(
        settings.portal.clone(),
        portal::Channels {
            tenant: tenant_channel.clone(),
            memory: memory_channel.clone(),
            media: media_channel.clone(),
        },
        portal_account_tokens(identity),
    ));
    let console = Arc::new(crate::console::Console::new(
        tenant_channel.clone(),
        identity,
    ));
    Ok(Arc::new(Edge {
        console,
        public_base_url: base,
        media_ws_url: format!("{ws_base}/twilio/media"),
        auth_token: secrecy::SecretSlice::from(token),
        tenant: EdgeServiceClient::new(tenant_channel.clone()),
        media: CallServiceClient::new(media_channel.clone()),
        peer_channels: [("tenant-svc", tenant_channel), ("media-svc", media_channel)],
        memory: MemoryServiceClient::new(memory_channel),
        tenant_token: identity.service_tokens(
            names::TENANT_SVC,
            &[scope::TENANT_RESOLVE, scope::TENANT_EXCHANGE],
        ),
        media_token: identity.service_tokens(
            names::MEDIA_SVC,
            &[scope::MEDIA_STREAM_OPEN, scope::MEDIA_STREAM],
        ),
        budget: Duration::from_secs(2),
        unavailable_message: settings.unavailable_message.clone(),
        apology_message: settings.apology_message.clone(),
        busy_message: settings.busy_message.clone(),
        limits: Limits::new(settings.limits),
        trusted_proxies: settings.trusted_proxies.clone(),
        connections: settings.connections.clone(),
        streams: tokio_util::task::TaskTracker::new(),
        drain_expired: tokio_util::sync::CancellationToken::new(),
        log_key,
        portal,
    }))
}
