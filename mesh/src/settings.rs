//! Typed settings read from environment variables.
//!
//! Every variable any binary of the mesh reads is declared once in [`catalog`] with its name,
//! default and meaning; the README's settings table and `neurosphere settings` are produced from
//! that list, and a test keeps the README in step with it. Binaries read variables through an
//! [`Env`], which collects every problem instead of stopping at the first one, so an operator
//! sees all mistakes at start-up together. Secret values are wrapped in [`secrecy::SecretString`]
//! and never printed: [`Env::describe`] shows them as `<set>`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// One documented environment variable.
#[derive(Debug)]
pub struct Setting {
    /// Variable name.
    pub name: &'static str,
    /// Value used when the variable is unset; `None` means "no default" (see `help`).
    pub default: Option<&'static str>,
    /// What it means, in one sentence.
    pub help: &'static str,
    /// Whether the value is a secret (never printed or logged).
    pub secret: bool,
    /// Which binaries read it.
    pub used_by: &'static str,
}

macro_rules! settings {
    ($( $(#[$doc:meta])* $ident:ident = { name: $name:literal, default: $default:expr, secret: $secret:literal, used_by: $used:literal, help: $help:literal } ),* $(,)?) => {
        $(
            $(#[$doc])*
            pub const $ident: Setting = Setting {
                name: $name,
                default: $default,
                help: $help,
                secret: $secret,
                used_by: $used,
            };
        )*
        /// Every setting, in documentation order.
        pub const ALL: &[&Setting] = &[$(&$ident),*];
    };
}

/// The one list of settings.
pub mod catalog {
    use super::Setting;

    settings! {
        /// Log output format.
        LOG_FORMAT = { name: "LOG_FORMAT", default: Some("pretty"), secret: false, used_by: "all",
            help: "`json` (one JSON object per line, for production) or `pretty` (human-readable)." },
        /// Log filter.
        RUST_LOG = { name: "RUST_LOG", default: Some("info"), secret: false, used_by: "all",
            help: "tracing filter directives, e.g. `info,tenant_svc=debug`." },
        /// Database connection.
        DATABASE_URL = { name: "DATABASE_URL", default: None, secret: true, used_by: "all services, neurosphere migrate",
            help: "PostgreSQL URL. A service connects with it as its own login role (tenant_svc, memory_svc, media_svc); `neurosphere migrate` needs an administrative role. `neurosphere up` starts a private PostgreSQL when unset." },
        /// tenant_svc password.
        TENANT_SVC_DB_PASSWORD = { name: "TENANT_SVC_DB_PASSWORD", default: None, secret: true, used_by: "neurosphere migrate",
            help: "When set, `neurosphere migrate` sets it as the `tenant_svc` role's password (deployments whose database needs passwords)." },
        /// memory_svc password.
        MEMORY_SVC_DB_PASSWORD = { name: "MEMORY_SVC_DB_PASSWORD", default: None, secret: true, used_by: "neurosphere migrate",
            help: "When set, `neurosphere migrate` sets it as the `memory_svc` role's password." },
        /// media_svc password.
        MEDIA_SVC_DB_PASSWORD = { name: "MEDIA_SVC_DB_PASSWORD", default: None, secret: true, used_by: "neurosphere migrate",
            help: "When set, `neurosphere migrate` sets it as the `media_svc` role's password." },
        /// Pool size.
        DATABASE_POOL_SIZE = { name: "DATABASE_POOL_SIZE", default: Some("16"), secret: false, used_by: "all services",
            help: "Maximum connections in a service's pool." },
        /// Statement timeout.
        DATABASE_STATEMENT_TIMEOUT_MS = { name: "DATABASE_STATEMENT_TIMEOUT_MS", default: Some("5000"), secret: false, used_by: "all services",
            help: "Server-side statement timeout for service queries, in milliseconds." },
        /// Bind address.
        BIND_HOST = { name: "BIND_HOST", default: Some("0.0.0.0"), secret: false, used_by: "all services",
            help: "Interface the gRPC, HTTP and admin ports listen on (`neurosphere up` uses 127.0.0.1)." },
        /// tenant-svc gRPC port.
        TENANT_SVC_PORT = { name: "TENANT_SVC_PORT", default: Some("50051"), secret: false, used_by: "tenant-svc",
            help: "tenant-svc gRPC port." },
        /// memory-svc gRPC port.
        MEMORY_SVC_PORT = { name: "MEMORY_SVC_PORT", default: Some("50052"), secret: false, used_by: "memory-svc",
            help: "memory-svc gRPC port." },
        /// media-svc gRPC port.
        MEDIA_SVC_PORT = { name: "MEDIA_SVC_PORT", default: Some("50053"), secret: false, used_by: "media-svc",
            help: "media-svc gRPC port." },
        /// gateway HTTP port.
        GATEWAY_PORT = { name: "GATEWAY_PORT", default: Some("8080"), secret: false, used_by: "gateway",
            help: "gateway HTTP/WebSocket port (Twilio webhooks, Media Streams, legacy REST)." },
        /// tenant-svc admin port.
        TENANT_SVC_ADMIN_PORT = { name: "TENANT_SVC_ADMIN_PORT", default: Some("9051"), secret: false, used_by: "tenant-svc",
            help: "tenant-svc admin HTTP port (`/metrics`, `/healthz`, `/readyz`)." },
        /// memory-svc admin port.
        MEMORY_SVC_ADMIN_PORT = { name: "MEMORY_SVC_ADMIN_PORT", default: Some("9052"), secret: false, used_by: "memory-svc",
            help: "memory-svc admin HTTP port." },
        /// media-svc admin port.
        MEDIA_SVC_ADMIN_PORT = { name: "MEDIA_SVC_ADMIN_PORT", default: Some("9053"), secret: false, used_by: "media-svc",
            help: "media-svc admin HTTP port." },
        /// gateway admin port.
        GATEWAY_ADMIN_PORT = { name: "GATEWAY_ADMIN_PORT", default: Some("9080"), secret: false, used_by: "gateway",
            help: "gateway admin HTTP port." },
        /// Where tenant-svc is.
        TENANT_SVC_URL = { name: "TENANT_SVC_URL", default: Some("http://127.0.0.1:50051"), secret: false, used_by: "gateway, media-svc, neurosphere",
            help: "gRPC endpoint of tenant-svc. The gateway and media-svc also accept a comma-separated list of replicas, balanced client-side (replicas failing their health probe are skipped)." },
        /// Where memory-svc is.
        MEMORY_SVC_URL = { name: "MEMORY_SVC_URL", default: Some("http://127.0.0.1:50052"), secret: false, used_by: "gateway, media-svc, tenant-svc, neurosphere",
            help: "gRPC endpoint of memory-svc (tenant-svc asks it to erase a deleted customer's data). The gateway, media-svc and tenant-svc also accept a comma-separated list of replicas, balanced client-side (replicas failing their health probe are skipped)." },
        /// Where media-svc is.
        MEDIA_SVC_URL = { name: "MEDIA_SVC_URL", default: Some("http://127.0.0.1:50053"), secret: false, used_by: "gateway, tenant-svc, neurosphere",
            help: "gRPC endpoint of media-svc (tenant-svc asks it to erase a deleted customer's data). The gateway and tenant-svc also accept a comma-separated list of replicas, balanced client-side (replicas failing their health probe are skipped)." },
        /// This service's signing key.
        MESH_SIGNING_KEY_FILE = { name: "MESH_SIGNING_KEY_FILE", default: None, secret: false, used_by: "all services",
            help: "Path of this service's Ed25519 private key (PKCS#8 PEM) used to sign its service tokens (and, for tenant-svc, tenant tokens). Required; `neurosphere keys generate` writes one." },
        /// This service's key id.
        MESH_SIGNING_KEY_ID = { name: "MESH_SIGNING_KEY_ID", default: None, secret: false, used_by: "all services",
            help: "`kid` of the signing key, as listed in the trust bundle. Required." },
        /// Trusted public keys.
        MESH_TRUSTED_KEYS_FILE = { name: "MESH_TRUSTED_KEYS_FILE", default: None, secret: false, used_by: "all services",
            help: "Path of the trust bundle: a JWKS-style JSON list of Ed25519 public keys, each bound to its issuer (`iss`). Tokens verify only against listed keys; list old and new keys during a rotation. Required." },
        /// Drain deadline.
        SHUTDOWN_GRACE_SECONDS = { name: "SHUTDOWN_GRACE_SECONDS", default: Some("25"), secret: false, used_by: "all services",
            help: "On SIGTERM/SIGINT, how long in-flight RPCs and streams may run before the process exits." },
        /// Public URL Twilio sees.
        PUBLIC_BASE_URL = { name: "PUBLIC_BASE_URL", default: Some("http://127.0.0.1:8080"), secret: false, used_by: "gateway, media-svc, tenant-svc",
            help: "Public base URL Twilio requests (signatures are checked against it; the Media Streams URL is derived from it). Links to the portal start with it: in webhook events (media-svc) and in the owners' mail about a new message (tenant-svc, which needs https:// or a loopback http:// when its mail is configured)." },
        /// Unknown number message.
        GATEWAY_UNAVAILABLE_MESSAGE = { name: "GATEWAY_UNAVAILABLE_MESSAGE", default: Some("Sorry, this number is not available right now. Goodbye."), secret: false, used_by: "gateway",
            help: "What a caller hears (TwiML `<Say>`) when the called number is unknown or its tenant is suspended." },
        /// Apology message.
        GATEWAY_APOLOGY_MESSAGE = { name: "GATEWAY_APOLOGY_MESSAGE", default: Some("We are sorry, we cannot take your call right now. Please try again later."), secret: false, used_by: "gateway",
            help: "What a caller hears when the platform cannot set up or continue the call (a service down or slow)." },
        /// Busy message.
        GATEWAY_BUSY_MESSAGE = { name: "GATEWAY_BUSY_MESSAGE", default: Some("All our lines are busy right now. Please call again in a few minutes. Goodbye."), secret: false, used_by: "gateway",
            help: "What a caller hears when the tenant already has as many calls in progress as its package allows." },
        /// Per-IP rate.
        GATEWAY_RATE_PER_IP = { name: "GATEWAY_RATE_PER_IP", default: Some("200"), secret: false, used_by: "gateway",
            help: "Requests per second allowed from one client address (IPv6: one /64; behind a trusted proxy, the address it saw) on the Twilio endpoints (burst: twice that); more get 429 with Retry-After." },
        /// Per-account rate.
        GATEWAY_RATE_PER_ACCOUNT = { name: "GATEWAY_RATE_PER_ACCOUNT", default: Some("500"), secret: false, used_by: "gateway",
            help: "Voice webhooks per second allowed for one Twilio account (burst: twice that)." },
        /// Per-tenant rate.
        GATEWAY_RATE_PER_TENANT = { name: "GATEWAY_RATE_PER_TENANT", default: Some("50"), secret: false, used_by: "gateway",
            help: "Legacy REST requests per second allowed for one tenant (burst: twice that)." },
        /// Per-address legacy REST rate.
        GATEWAY_RATE_LEGACY_PER_IP = { name: "GATEWAY_RATE_LEGACY_PER_IP", default: Some("50"), secret: false, used_by: "gateway",
            help: "Legacy REST requests per second allowed from one client address (IPv6: one /64; burst: twice that), checked before the token costs an exchange at tenant-svc." },
        /// Trusted proxies.
        GATEWAY_TRUSTED_PROXIES = { name: "GATEWAY_TRUSTED_PROXIES", default: None, secret: false, used_by: "gateway",
            help: "Comma-separated CIDR networks (or addresses) of the proxies in front of the gateway. Only from these is `X-Forwarded-For` believed: the client is its rightmost address not in the list (a malformed one gets 400). Unset: nobody is trusted and the client is the connecting address." },
        /// Unfinished connections per address.
        GATEWAY_MAX_PENDING_CONNECTIONS_PER_IP = { name: "GATEWAY_MAX_PENDING_CONNECTIONS_PER_IP", default: Some("64"), secret: false, used_by: "gateway",
            help: "Connections one client address (IPv6: one /64) may hold open before their first request's headers are complete; beyond it a new connection is answered 429 and closed at once. Trusted proxies are exempt." },
        /// Keep-alive idle timeout.
        GATEWAY_KEEPALIVE_IDLE_SECONDS = { name: "GATEWAY_KEEPALIVE_IDLE_SECONDS", default: Some("5"), secret: false, used_by: "gateway",
            help: "A kept-alive connection that sends no byte of its next request this long after its previous response is closed (0: one request per connection). At most 10: the next request's headers must be complete 10 s after the previous response anyway." },
        /// h2c on the public port.
        GATEWAY_HTTP2 = { name: "GATEWAY_HTTP2", default: Some("false"), secret: false, used_by: "gateway",
            help: "`true` also serves cleartext HTTP/2 (prior knowledge) on the public port, with keep-alive pings, at most 32 concurrent streams and reset-flood limits. Off by default: Twilio and WebSocket upgrades use HTTP/1.1." },
        /// The operator console's listener.
        OPERATOR_CONSOLE_ADDR = { name: "OPERATOR_CONSOLE_ADDR", default: Some("127.0.0.1:9081"), secret: false, used_by: "gateway",
            help: "Address and port of the operator console's own listener (`/console/`: operators' sign-in with a second factor, customers, approval, suspension). Never served on the public port. A bind address that is not loopback or private (RFC 1918, IPv6 unique local) stops the gateway at start-up unless OPERATOR_CONSOLE_EXPOSED is `true`; put TLS in front of it (a tunnel or a proxy) when it leaves the host." },
        /// Whether the console may listen on a non-private address.
        OPERATOR_CONSOLE_EXPOSED = { name: "OPERATOR_CONSOLE_EXPOSED", default: Some("false"), secret: false, used_by: "gateway",
            help: "`true` lets OPERATOR_CONSOLE_ADDR be a public (or unspecified, 0.0.0.0 / ::) address. Off by default: the console is for the platform's operators only and stays on a loopback or private network." },
        /// Portal mail: SMTP server.
        PORTAL_SMTP_URL = { name: "PORTAL_SMTP_URL", default: None, secret: true, used_by: "gateway, tenant-svc",
            help: "SMTP server the platform's mail goes through (the portal's password-reset links from the gateway; tenant-svc's mail to a tenant's owners when a caller leaves a message): `smtps://user:password@host[:port]` (TLS from the start) or `smtp://user:password@host[:port]` (STARTTLS required; plain only to a loopback host). The gateway requires it unless PUBLIC_BASE_URL is a loopback address (then mail goes to the PORTAL_OUTBOX_DIR folder); tenant-svc without it or PORTAL_OUTBOX_DIR sends no owners' mail." },
        /// Portal mail: sender.
        PORTAL_MAIL_FROM = { name: "PORTAL_MAIL_FROM", default: Some("NeuroSphere <no-reply@localhost>"), secret: false, used_by: "gateway, tenant-svc",
            help: "`From:` of the platform's mail (the portal's and the owners' notices), a mailbox such as `Acme Voice <no-reply@acme.example>`." },
        /// Portal mail: local outbox.
        PORTAL_OUTBOX_DIR = { name: "PORTAL_OUTBOX_DIR", default: None, secret: false, used_by: "gateway, tenant-svc",
            help: "Folder the platform writes its mail to as `.eml` files instead of sending it (development: `neurosphere up` sets it under its data folder for the gateway and tenant-svc alike; unset, the gateway uses `neurosphere-portal-outbox` in the system's temporary folder, named in its log, and tenant-svc sends no owners' mail). Allowed only when PUBLIC_BASE_URL is a loopback address and PORTAL_SMTP_URL is unset." },
        /// Portal sign-in form posts per address.
        PORTAL_AUTH_POSTS_PER_MINUTE = { name: "PORTAL_AUTH_POSTS_PER_MINUTE", default: Some("30"), secret: false, used_by: "gateway",
            help: "Sign-in, invitation and password-reset form posts one client address (IPv6: one /64) may make per minute (all at once at most); beyond it the portal answers 429 with `Retry-After` before any password is hashed. tenant-svc's per-account and per-address failure throttles apply behind it." },
        /// Twilio auth token.
        TWILIO_AUTH_TOKEN = { name: "TWILIO_AUTH_TOKEN", default: None, secret: true, used_by: "gateway, media-svc",
            help: "Twilio Auth Token: key of `X-Twilio-Signature` and of Twilio REST calls. Required by the gateway." },
        /// Twilio REST base.
        TWILIO_API_BASE_URL = { name: "TWILIO_API_BASE_URL", default: Some("https://api.twilio.com"), secret: false, used_by: "media-svc",
            help: "Base URL of Twilio's REST API (tests point it at a local fake)." },
        /// Legacy HS256 key.
        JWT_SECRET_KEY = { name: "JWT_SECRET_KEY", default: None, secret: true, used_by: "tenant-svc",
            help: "Shared HS256 key of the legacy memory REST tokens (at least 32 bytes). Legacy endpoints are refused when unset." },
        /// Longest legacy token.
        JWT_MAX_LIFETIME_SECONDS = { name: "JWT_MAX_LIFETIME_SECONDS", default: Some("86400"), secret: false, used_by: "tenant-svc",
            help: "Longest lifetime (`exp - iat`) of a legacy HS256 token; longer ones are refused (401)." },
        /// Portal accounts' hash key.
        TENANT_ACCOUNT_HASH_KEY = { name: "TENANT_ACCOUNT_HASH_KEY", default: None, secret: true, used_by: "tenant-svc",
            help: "HMAC key (at least 32 bytes) of the tenant portal's e-mail and client address hashes (sign-in lookups and throttles). When unset, a random per-database key created by migration V16 is used. Changing it makes existing users unfindable by e-mail." },
        /// Portal session idle expiry.
        PORTAL_SESSION_IDLE_SECONDS = { name: "PORTAL_SESSION_IDLE_SECONDS", default: Some("1800"), secret: false, used_by: "tenant-svc",
            help: "A tenant portal session not used for this long ends (each page the user opens moves it on)." },
        /// Portal session absolute expiry.
        PORTAL_SESSION_MAX_SECONDS = { name: "PORTAL_SESSION_MAX_SECONDS", default: Some("43200"), secret: false, used_by: "tenant-svc",
            help: "A tenant portal session ends this long after sign-in, whatever happens." },
        /// Automatic approval of self sign-ups.
        TENANT_SIGNUP_AUTO_APPROVE = { name: "TENANT_SIGNUP_AUTO_APPROVE", default: Some("false"), secret: false, used_by: "tenant-svc",
            help: "When true, a business that signs up at `/portal/signup` is active as soon as its e-mail address is verified; when false, it stays pending (no number, no call, no tenant token) until an operator approves it." },
        /// Sign-ups per client address and day.
        TENANT_SIGNUPS_PER_ADDRESS_PER_DAY = { name: "TENANT_SIGNUPS_PER_ADDRESS_PER_DAY", default: Some("5"), secret: false, used_by: "tenant-svc",
            help: "Sign-ups one client address (IPv6: one /64) may make in 24 hours; beyond it the sign-up form answers 429 and nothing is stored or mailed. One e-mail address gets at most 3 verification mails in 24 hours whatever this says." },
        /// OpenAI key.
        OPENAI_API_KEY = { name: "OPENAI_API_KEY", default: None, secret: true, used_by: "media-svc, memory-svc",
            help: "OpenAI API key. When set, calls use the `openai-realtime` backend and memory-svc may use the OpenAI summarizer; when unset, the offline `local` backend and the heuristic summarizer." },
        /// OpenAI REST base (memory-svc summarizer).
        OPENAI_API_BASE_URL = { name: "OPENAI_API_BASE_URL", default: Some("https://api.openai.com/v1"), secret: false, used_by: "memory-svc",
            help: "Base URL of the OpenAI REST API used by memory-svc's summarizer (`/chat/completions` is appended; tests point it at a local fake)." },
        /// Summarizer model.
        OPENAI_SUMMARY_MODEL = { name: "OPENAI_SUMMARY_MODEL", default: Some("gpt-4o-mini"), secret: false, used_by: "memory-svc",
            help: "Chat-completions model memory-svc uses to summarise finished calls when `OPENAI_API_KEY` is set." },
        /// Purge interval.
        MEMORY_PURGE_INTERVAL_SECONDS = { name: "MEMORY_PURGE_INTERVAL_SECONDS", default: Some("3600"), secret: false, used_by: "memory-svc",
            help: "How often memory-svc deletes expired memories in the background (0 disables the task; `PurgeExpiredMemories` still works). Expired memories are never returned either way." },
        /// Audit hash key.
        MEMORY_AUDIT_HASH_KEY = { name: "MEMORY_AUDIT_HASH_KEY", default: None, secret: true, used_by: "memory-svc",
            help: "HMAC key (at least 32 bytes) for the caller hash in memory-svc's export/erase audit log. When unset, a random per-database key created by migration V3 is used." },
        /// OpenAI realtime URL.
        OPENAI_REALTIME_URL = { name: "OPENAI_REALTIME_URL", default: Some("wss://api.openai.com/v1/realtime"), secret: false, used_by: "media-svc",
            help: "WebSocket URL of the OpenAI Realtime API (tests point it at a local fake)." },
        /// Realtime model.
        OPENAI_REALTIME_MODEL = { name: "OPENAI_REALTIME_MODEL", default: Some("gpt-realtime"), secret: false, used_by: "media-svc",
            help: "OpenAI Realtime model, sent as the `model` query parameter." },
        /// Realtime event shapes.
        OPENAI_REALTIME_API_SHAPE = { name: "OPENAI_REALTIME_API_SHAPE", default: Some("ga"), secret: false, used_by: "media-svc",
            help: "`ga` (generally available event shapes) or `beta` (`OpenAI-Beta: realtime=v1`, `g711_ulaw`, `response.audio.delta`)." },
        /// Realtime stall detection.
        OPENAI_REALTIME_STALL_TIMEOUT_MS = { name: "OPENAI_REALTIME_STALL_TIMEOUT_MS", default: Some("10000"), secret: false, used_by: "media-svc",
            help: "A call whose Realtime connection has been silent this long, a WebSocket ping half-way included, ends as a backend failure (the caller hears the apology) instead of hanging in dead air." },
        /// Which AI backend.
        AI_BACKEND = { name: "AI_BACKEND", default: Some("auto"), secret: false, used_by: "media-svc",
            help: "`local` (offline: greeting tone or espeak-ng, replays the caller), `openai-realtime`, or `auto` (openai-realtime when OPENAI_API_KEY is set, else local)." },
        /// Call-start lookups.
        MEDIA_PEER_TIMEOUT_MS = { name: "MEDIA_PEER_TIMEOUT_MS", default: Some("1500"), secret: false, used_by: "media-svc",
            help: "Time a call start waits for the agent profile (tenant-svc) and caller context (memory-svc); past it the call goes ahead with defaults / without memory." },
        /// Outbox retry cap.
        MEDIA_OUTBOX_MAX_BACKOFF_SECONDS = { name: "MEDIA_OUTBOX_MAX_BACKOFF_SECONDS", default: Some("300"), secret: false, used_by: "media-svc",
            help: "Longest wait between two delivery attempts of a post-call record to memory-svc (retries double from 1 s up to this)." },
        /// Platform Twilio account.
        TWILIO_ACCOUNT_SID = { name: "TWILIO_ACCOUNT_SID", default: None, secret: false, used_by: "media-svc",
            help: "Twilio AccountSid (`AC` + 32 hex) that places outbound calls from numbers without their own subaccount; such calls are refused when unset." },
        /// Twilio API key sid (numbers).
        TWILIO_API_KEY_SID = { name: "TWILIO_API_KEY_SID", default: None, secret: false, used_by: "media-svc",
            help: "Twilio API key sid (`SK` + 32 hex) of the REST calls that search, buy, check and release numbers on `TWILIO_ACCOUNT_SID` (HTTP basic auth with `TWILIO_API_KEY_SECRET`; the auth token stays where signatures are checked). When unset, the numbers API answers FAILED_PRECONDITION naming it; nothing else changes." },
        /// Twilio API key secret (numbers).
        TWILIO_API_KEY_SECRET = { name: "TWILIO_API_KEY_SECRET", default: None, secret: true, used_by: "media-svc",
            help: "Secret of `TWILIO_API_KEY_SID`. Never logged, never sent anywhere but Twilio's REST and Pricing hosts." },
        /// Twilio Pricing API base.
        TWILIO_PRICING_BASE_URL = { name: "TWILIO_PRICING_BASE_URL", default: Some("https://pricing.twilio.com"), secret: false, used_by: "media-svc",
            help: "Base URL of Twilio's Pricing API (numbers' monthly prices; tests point it at a local fake)." },
        /// Numbers per tenant.
        MEDIA_NUMBERS_PER_TENANT = { name: "MEDIA_NUMBERS_PER_TENANT", default: Some("5"), secret: false, used_by: "media-svc",
            help: "Numbers one tenant may hold at once (being bought, held or being released), checked under a per-tenant lock before anything is bought." },
        /// Numbers reconcile interval.
        MEDIA_NUMBERS_RECONCILE_SECONDS = { name: "MEDIA_NUMBERS_RECONCILE_SECONDS", default: Some("3600"), secret: false, used_by: "media-svc",
            help: "Interval of the background reconcile of Twilio's numbers with the platform's (fixes webhooks, pending purchases, routing, numbers Twilio no longer lists; one replica at a time under an advisory lock). 0 turns it off; it never runs without `TWILIO_API_KEY_SID`." },
        /// Concurrent calls per package tier.
        MEDIA_CONCURRENT_CALLS_BY_TIER = { name: "MEDIA_CONCURRENT_CALLS_BY_TIER", default: Some("starter=5,professional=20,enterprise=100"), secret: false, used_by: "media-svc",
            help: "Calls a tenant may have in progress at once (inbound and outbound together), per package tier, `tier=n` separated by commas; unknown tiers get the first entry's limit. Inbound calls beyond it leave a message (within `MEDIA_MESSAGE_CALLS_PER_TENANT` / `MEDIA_MESSAGE_CALLS_MAX`, else they hear the busy message); outbound ones are refused. Calls leaving a message do not count towards it." },
        /// Outbound calls per tenant per hour.
        MEDIA_OUTBOUND_CALLS_PER_HOUR = { name: "MEDIA_OUTBOUND_CALLS_PER_HOUR", default: Some("20"), secret: false, used_by: "media-svc",
            help: "Outbound calls a tenant may place per rolling hour when its own `public_calls_per_hour` is 0." },
        /// Message-taking calls per tenant.
        MEDIA_MESSAGE_CALLS_PER_TENANT = { name: "MEDIA_MESSAGE_CALLS_PER_TENANT", default: Some("10"), secret: false, used_by: "media-svc",
            help: "Calls of one tenant that may be in the message flow at once, counted across all media-svc replicas in PostgreSQL (the agent unreachable, after hours, or the tenant at its concurrent-call limit); beyond it a caller hears the apology or the busy message as before. 0 turns the message flow off." },
        /// Message-taking calls of all tenants.
        MEDIA_MESSAGE_CALLS_MAX = { name: "MEDIA_MESSAGE_CALLS_MAX", default: Some("200"), secret: false, used_by: "media-svc",
            help: "Calls of all tenants that may be in the message flow at once, counted across all media-svc replicas in PostgreSQL; beyond it a caller hears the apology or the busy message as before." },
        /// Caller hash key of webhook events.
        MEDIA_CALLER_HASH_KEY = { name: "MEDIA_CALLER_HASH_KEY", default: None, secret: true, used_by: "media-svc",
            help: "HMAC key (at least 32 bytes) of the keyed caller hash in post-call webhook events. When unset, a random per-database key created by migration V10 is used." },
        /// Webhook retry window.
        MEDIA_WEBHOOK_RETRY_FOR_SECONDS = { name: "MEDIA_WEBHOOK_RETRY_FOR_SECONDS", default: Some("86400"), secret: false, used_by: "media-svc",
            help: "How long a post-call webhook event is retried before it is dead-lettered (`ListDeadLetters`)." },
        /// Webhook first retry delay.
        MEDIA_WEBHOOK_BASE_BACKOFF_MS = { name: "MEDIA_WEBHOOK_BASE_BACKOFF_MS", default: Some("2000"), secret: false, used_by: "media-svc",
            help: "First retry delay of a failed webhook delivery; each further retry doubles it (with jitter) up to MEDIA_WEBHOOK_MAX_BACKOFF_SECONDS." },
        /// Webhook retry cap.
        MEDIA_WEBHOOK_MAX_BACKOFF_SECONDS = { name: "MEDIA_WEBHOOK_MAX_BACKOFF_SECONDS", default: Some("900"), secret: false, used_by: "media-svc",
            help: "Longest wait between two webhook delivery attempts." },
        /// Webhook request timeout.
        MEDIA_WEBHOOK_TIMEOUT_MS = { name: "MEDIA_WEBHOOK_TIMEOUT_MS", default: Some("10000"), secret: false, used_by: "media-svc",
            help: "Time a webhook receiver has to answer one delivery (a timeout counts as a failed attempt)." },
        /// Outbound calls per client address per tenant.
        MEDIA_OUTBOUND_CALLS_PER_ADDRESS = { name: "MEDIA_OUTBOUND_CALLS_PER_ADDRESS", default: Some("3"), secret: false, used_by: "media-svc",
            help: "Calls one client address (IPv4 address, IPv6 /64, as the gateway saw it after GATEWAY_TRUSTED_PROXIES) may place through a tenant's public `POST /v1/calls` per MEDIA_OUTBOUND_ADDRESS_WINDOW_SECONDS; beyond it 429 with `Retry-After`. Counted per tenant in PostgreSQL, so it holds across gateway replicas and restarts. Replaces the gateway's GATEWAY_PUBLIC_CALLS_PER_IP." },
        /// Window of the per-address outbound allowance.
        MEDIA_OUTBOUND_ADDRESS_WINDOW_SECONDS = { name: "MEDIA_OUTBOUND_ADDRESS_WINDOW_SECONDS", default: Some("86400"), secret: false, used_by: "media-svc",
            help: "Window of MEDIA_OUTBOUND_CALLS_PER_ADDRESS. Replaces the gateway's GATEWAY_PUBLIC_CALLS_IP_WINDOW_SECONDS." },
        /// Platform's longest call.
        MEDIA_MAX_CALL_SECONDS = { name: "MEDIA_MAX_CALL_SECONDS", default: Some("3600"), secret: false, used_by: "media-svc",
            help: "Longest a call may last when its tenant's `max_call_minutes` is 0: placed calls get it as Twilio's TimeLimit, transfers as `<Dial timeLimit>`, and media-svc hangs up any call still streaming at it (end reason `max-duration`)." },
        /// Recording platform keys.
        MEDIA_RECORDING_KEYS = { name: "MEDIA_RECORDING_KEYS", default: None, secret: true, used_by: "media-svc",
            help: "Platform keys of call recordings at rest: `<version>:<base64 of 32 random bytes>` entries, comma-separated (e.g. `2:...,1:...`). The highest version wraps tenant recording keys; older versions only unwrap, until media-svc has rewrapped every tenant key under the newest at start (rotation: add a version, restart, then drop the old one). Unset: nothing is recorded. `neurosphere up` keeps a generated one under `.neurosphere/`." },
        /// Recording store.
        MEDIA_RECORDING_STORE = { name: "MEDIA_RECORDING_STORE", default: Some("recordings"), secret: false, used_by: "media-svc",
            help: "Where encrypted recordings are kept: a local folder (a path or `file:///path`) or an S3-compatible bucket, `s3://<bucket>` (with the MEDIA_RECORDING_S3_* settings). Objects are `recordings/<customer_id>/<recording_id>`, never public." },
        /// Recording spool folder.
        MEDIA_RECORDING_SPOOL_DIR = { name: "MEDIA_RECORDING_SPOOL_DIR", default: Some("recording-spool"), secret: false, used_by: "media-svc",
            help: "Local folder where recordings are written while calls run and wait until uploaded (one per media-svc process; keep it on persistent disk: what a crash leaves there is uploaded at the next start)." },
        /// Recording spool cap.
        MEDIA_RECORDING_SPOOL_MAX_BYTES = { name: "MEDIA_RECORDING_SPOOL_MAX_BYTES", default: Some("2147483648"), secret: false, used_by: "media-svc",
            help: "Cap of the recording spool in bytes (2 GiB: about 37 hours of recorded calls at 16,016 bytes per second). When full, new calls go on unrecorded (counted in `media_recordings_refused_total`, logged) and recordings in progress stop growing (kept, marked truncated)." },
        /// S3 endpoint.
        MEDIA_RECORDING_S3_ENDPOINT = { name: "MEDIA_RECORDING_S3_ENDPOINT", default: None, secret: false, used_by: "media-svc",
            help: "Endpoint URL of the S3-compatible store (unset: AWS S3). `http://` is accepted only for a loopback address (local tests); path-style requests." },
        /// S3 region.
        MEDIA_RECORDING_S3_REGION = { name: "MEDIA_RECORDING_S3_REGION", default: Some("us-east-1"), secret: false, used_by: "media-svc",
            help: "Region of the recording bucket." },
        /// S3 access key id.
        MEDIA_RECORDING_S3_ACCESS_KEY_ID = { name: "MEDIA_RECORDING_S3_ACCESS_KEY_ID", default: None, secret: false, used_by: "media-svc",
            help: "Access key id for the recording bucket (unset: the environment's credentials, e.g. an instance role)." },
        /// S3 secret access key.
        MEDIA_RECORDING_S3_SECRET_ACCESS_KEY = { name: "MEDIA_RECORDING_S3_SECRET_ACCESS_KEY", default: None, secret: true, used_by: "media-svc",
            help: "Secret access key for the recording bucket." },
        /// Insecure webhook targets.
        WEBHOOK_ALLOW_INSECURE = { name: "WEBHOOK_ALLOW_INSECURE", default: Some("false"), secret: false, used_by: "tenant-svc, media-svc",
            help: "Allow `http://` webhook URLs and loopback/private addresses (local development and tests only). Otherwise webhook URLs must be `https://` and resolve to public addresses." },
        /// Removed: the per-IP allowance moved to media-svc.
        GATEWAY_PUBLIC_CALLS_PER_IP = { name: "GATEWAY_PUBLIC_CALLS_PER_IP", default: None, secret: false, used_by: "gateway",
            help: "Removed: the allowance of `POST /v1/calls` per client address moved to media-svc (MEDIA_OUTBOUND_CALLS_PER_ADDRESS), where it holds across gateway replicas and restarts. The gateway refuses to start while this is set, so a configured value is never silently ignored." },
        /// Removed: the per-IP window moved to media-svc.
        GATEWAY_PUBLIC_CALLS_IP_WINDOW_SECONDS = { name: "GATEWAY_PUBLIC_CALLS_IP_WINDOW_SECONDS", default: None, secret: false, used_by: "gateway",
            help: "Removed: see GATEWAY_PUBLIC_CALLS_PER_IP; the window is media-svc's MEDIA_OUTBOUND_ADDRESS_WINDOW_SECONDS." },
    }
}

/// Every problem found while reading settings, reported together.
#[derive(Debug, thiserror::Error)]
pub struct SettingsError {
    /// One line per problem, naming the variable.
    pub problems: Vec<String>,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Reads settings from a source of variables, collecting errors.
pub struct Env {
    vars: BTreeMap<String, String>,
    problems: Vec<String>,
    seen: Vec<&'static Setting>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// Reads the given pairs (tests, `neurosphere up`).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            problems: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn raw(&mut self, s: &'static Setting) -> Option<String> {
        if !self.seen.iter().any(|x| std::ptr::eq(*x, s)) {
            self.seen.push(s);
        }
        match self.vars.get(s.name) {
            Some(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
            _ => s.default.map(str::to_owned),
        }
    }

    /// A value parsed with `FromStr`, falling back to the default. `None` when missing without a
    /// default or unparsable; the problem is recorded either way.
    pub fn get<T>(&mut self, s: &'static Setting) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let raw = self.required_raw(s)?;
        match raw.parse::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                let shown = if s.secret {
                    "<secret>".to_owned()
                } else {
                    format!("{raw:?}")
                };
                self.problems
                    .push(format!("{}: cannot parse {shown}: {e}", s.name));
                None
            }
        }
    }

    /// An optional value: `Ok(None)` when unset and without default.
    pub fn optional<T>(&mut self, s: &'static Setting) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.raw(s)?;
        self.get(s)
    }

    /// A secret value (required).
    pub fn secret(&mut self, s: &'static Setting) -> Option<SecretString> {
        self.required_raw(s).map(SecretString::from)
    }

    /// An optional secret value.
    pub fn optional_secret(&mut self, s: &'static Setting) -> Option<SecretString> {
        self.raw(s).map(SecretString::from)
    }

    /// A socket address built from `BIND_HOST` and a port setting.
    pub fn listen_addr(&mut self, port: &'static Setting) -> Option<SocketAddr> {
        let host: Option<std::net::IpAddr> = self.get(&catalog::BIND_HOST);
        let port: Option<u16> = self.get(port);
        Some(SocketAddr::new(host?, port?))
    }

    /// A duration given in whole seconds.
    pub fn seconds(&mut self, s: &'static Setting) -> Option<Duration> {
        self.get::<u64>(s).map(Duration::from_secs)
    }

    /// A duration given in milliseconds.
    pub fn millis(&mut self, s: &'static Setting) -> Option<Duration> {
        self.get::<u64>(s).map(Duration::from_millis)
    }

    /// Records a problem found by the caller's own validation.
    pub fn problem(&mut self, setting: &'static Setting, message: impl fmt::Display) {
        self.problems.push(format!("{}: {message}", setting.name));
    }

    fn required_raw(&mut self, s: &'static Setting) -> Option<String> {
        let v = self.raw(s);
        if v.is_none() {
            self.problems
                .push(format!("{}: required but not set ({})", s.name, s.help));
        }
        v
    }

    /// Ends reading: `Err` with every problem when there was any.
    pub fn finish(self) -> Result<(), SettingsError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError {
                problems: self.problems,
            })
        }
    }

    /// The settings read so far as `NAME=value` lines, secrets shown as `<set>`, for the
    /// start-up log line.
    pub fn describe(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|s| {
                let value = match (self.vars.get(s.name), s.default) {
                    (Some(_), _) if s.secret => "<set>".to_owned(),
                    (Some(v), _) if !v.trim().is_empty() => v.trim().to_owned(),
                    (_, Some(d)) => format!("{d} (default)"),
                    _ => "<unset>".to_owned(),
                };
                format!("{}={value}", s.name)
            })
            .collect()
    }
}

/// Renders the settings table (Markdown) used in the README and by `neurosphere settings`.
pub fn markdown_table() -> String {
    let mut out = String::from("| Variable | Default | Used by | Meaning |\n|---|---|---|---|\n");
    for s in catalog::ALL {
        let default = s.default.map_or("(none)".to_owned(), |d| format!("`{d}`"));
        let secret = if s.secret {
            " Secret: never printed."
        } else {
            ""
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {}{} |\n",
            s.name, default, s.used_by, s.help, secret
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reports_every_problem_together() {
        let mut env = Env::from_pairs([
            ("TENANT_SVC_PORT", "not-a-port"),
            ("DATABASE_POOL_SIZE", "-3"),
        ]);
        let port: Option<u16> = env.get(&catalog::TENANT_SVC_PORT);
        let pool: Option<usize> = env.get(&catalog::DATABASE_POOL_SIZE);
        let url = env.secret(&catalog::DATABASE_URL);
        assert!(port.is_none() && pool.is_none() && url.is_none());
        let err = env.finish().unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        let text = err.to_string();
        for name in ["TENANT_SVC_PORT", "DATABASE_POOL_SIZE", "DATABASE_URL"] {
            assert!(text.contains(name), "{text}");
        }
    }

    #[test]
    fn defaults_apply_and_empty_counts_as_unset() {
        let mut env = Env::from_pairs([("MEMORY_SVC_PORT", "  ")]);
        assert_eq!(env.get::<u16>(&catalog::MEMORY_SVC_PORT), Some(50052));
        assert_eq!(
            env.listen_addr(&catalog::TENANT_SVC_PORT),
            Some("0.0.0.0:50051".parse().unwrap())
        );
        env.finish().unwrap();
    }

    #[test]
    fn secrets_are_never_shown() {
        let mut env = Env::from_pairs([
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("TWILIO_AUTH_TOKEN", "abc"),
        ]);
        let url = env.secret(&catalog::DATABASE_URL).unwrap();
        assert_eq!(url.expose_secret(), "postgres://u:hunter2@db/x");
        let bad: Option<u32> = env.get(&catalog::TWILIO_AUTH_TOKEN);
        assert!(bad.is_none());
        let described = env.describe().join("\n");
        assert!(!described.contains("hunter2"), "{described}");
        assert!(described.contains("DATABASE_URL=<set>"));
        let err = env.finish().unwrap_err().to_string();
        assert!(!err.contains("abc"), "{err}");
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    #[test]
    fn catalog_names_are_unique_and_documented() {
        let mut names: Vec<_> = catalog::ALL.iter().map(|s| s.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate setting names");
        for s in catalog::ALL {
            assert!(!s.help.is_empty(), "{} has no help", s.name);
        }
        let table = markdown_table();
        assert!(table.contains("`TWILIO_AUTH_TOKEN`"));
    }
}
