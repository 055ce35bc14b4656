//! The gateway's settings, read from the environment through `mesh::settings` (which documents
//! every name and default once, and reports every problem together).

use std::net::SocketAddr;
use std::time::Duration;

use mesh::identity::IdentityFiles;
use mesh::settings::{Env, SettingsError, catalog};
use secrecy::SecretString;

use crate::http::ConnectionConfig;
use crate::limits::LimitConfig;
use crate::proxy::TrustedProxies;

/// gateway settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Public HTTP/WebSocket listen address.
    pub http_addr: SocketAddr,
    /// Admin listen address.
    pub admin_addr: SocketAddr,
    /// Base URL Twilio requests; signatures are checked against it.
    pub public_base_url: String,
    /// Twilio Auth Token (signature key).
    pub twilio_auth_token: SecretString,
    /// tenant-svc endpoint.
    pub tenant_svc_url: String,
    /// memory-svc endpoint.
    pub memory_svc_url: String,
    /// media-svc endpoint.
    pub media_svc_url: String,
    /// Signing key (service tokens to tenant-svc) and trust bundle.
    pub identity: IdentityFiles,
    /// Drain deadline on shutdown.
    pub drain_deadline: Duration,
    /// Said when the number is unknown or the tenant suspended.
    pub unavailable_message: String,
    /// Said when the platform cannot take the call.
    pub apology_message: String,
    /// Said when the tenant has as many calls in progress as its package allows.
    pub busy_message: String,
    /// Rate limits.
    pub limits: LimitConfig,
    /// The proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Bounds on the public listener's connections.
    pub connections: ConnectionConfig,
    /// The tenant portal's settings (mail, sign-in allowance; origin and cookie from the base URL).
    pub portal: portal::Config,
    /// The operator console's listener (`OPERATOR_CONSOLE_ADDR`): loopback or private unless
    /// `OPERATOR_CONSOLE_EXPOSED`.
    pub console_addr: SocketAddr,
}

impl Settings {
    /// Reads the environment, reporting every problem together.
    pub fn from_env(mut env: Env) -> Result<Self, SettingsError> {
        let http_addr = env.listen_addr(&catalog::GATEWAY_PORT);
        let admin_addr = env.listen_addr(&catalog::GATEWAY_ADMIN_PORT);
        let public_base_url: Option<String> = env.get(&catalog::PUBLIC_BASE_URL);
        if let Some(u) = &public_base_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            env.problem(
                &catalog::PUBLIC_BASE_URL,
                "must start with https:// or http://",
            );
        }
        let twilio_auth_token = env.secret(&catalog::TWILIO_AUTH_TOKEN);
        let tenant_svc_url = env.get(&catalog::TENANT_SVC_URL);
        let memory_svc_url = env.get(&catalog::MEMORY_SVC_URL);
        let media_svc_url = env.get(&catalog::MEDIA_SVC_URL);
        let identity = IdentityFiles::from_env(&mut env);
        let drain_deadline = env.seconds(&catalog::SHUTDOWN_GRACE_SECONDS);
        let unavailable_message: Option<String> = env.get(&catalog::GATEWAY_UNAVAILABLE_MESSAGE);
        let apology_message: Option<String> = env.get(&catalog::GATEWAY_APOLOGY_MESSAGE);
        let busy_message: Option<String> = env.get(&catalog::GATEWAY_BUSY_MESSAGE);
        let limits = limits_from_env(&mut env);
        let trusted_proxies = env
            .optional::<TrustedProxies>(&catalog::GATEWAY_TRUSTED_PROXIES)
            .unwrap_or_default();
        let connections = connections_from_env(&mut env);
        let portal = portal::Config::from_env(&mut env, public_base_url.as_deref());
        let console_addr = console_addr_from_env(&mut env);
        env.finish()?;
        let missing = "present when finish() succeeded";
        Ok(Self {
            http_addr: http_addr.expect(missing),
            admin_addr: admin_addr.expect(missing),
            public_base_url: public_base_url.expect(missing),
            twilio_auth_token: twilio_auth_token.expect(missing),
            tenant_svc_url: tenant_svc_url.expect(missing),
            memory_svc_url: memory_svc_url.expect(missing),
            media_svc_url: media_svc_url.expect(missing),
            identity: identity.expect(missing),
            drain_deadline: drain_deadline.expect(missing),
            unavailable_message: unavailable_message.expect(missing),
            apology_message: apology_message.expect(missing),
            busy_message: busy_message.expect(missing),
            limits: limits.expect(missing),
            trusted_proxies,
            connections: connections.expect(missing),
            portal: portal.expect(missing),
            console_addr: console_addr.expect(missing),
        })
    }
}

/// The rate limits: each rate with a burst of twice that. The `POST /v1/calls` allowance moved
/// to media-svc: its old settings stop the gateway with a message saying where they went.
/// The operator console's address: refused (a problem recorded) when it is not loopback or
/// private and `OPERATOR_CONSOLE_EXPOSED` is not `true`.
fn console_addr_from_env(env: &mut Env) -> Option<SocketAddr> {
    let addr: Option<SocketAddr> = env.get(&catalog::OPERATOR_CONSOLE_ADDR);
    let exposed: Option<bool> = env.get(&catalog::OPERATOR_CONSOLE_EXPOSED);
    if let (Some(a), Some(false)) = (addr, exposed)
        && !crate::console::is_private(a.ip())
    {
        env.problem(
            &catalog::OPERATOR_CONSOLE_ADDR,
            "is not a loopback or private address; the operator console stays off public \
             networks unless OPERATOR_CONSOLE_EXPOSED=true",
        );
    }
    addr
}

fn limits_from_env(env: &mut Env) -> Option<LimitConfig> {
    for (old, new) in [
        (
            &catalog::GATEWAY_PUBLIC_CALLS_PER_IP,
            "MEDIA_OUTBOUND_CALLS_PER_ADDRESS",
        ),
        (
            &catalog::GATEWAY_PUBLIC_CALLS_IP_WINDOW_SECONDS,
            "MEDIA_OUTBOUND_ADDRESS_WINDOW_SECONDS",
        ),
    ] {
        if env.optional::<String>(old).is_some() {
            env.problem(
                old,
                format!(
                    "was removed: the per-address allowance of POST /v1/calls is media-svc's now \
                     (it holds across gateway replicas and restarts); set {new} on media-svc and \
                     remove this variable"
                ),
            );
        }
    }
    let per_ip: Option<u32> = env.get(&catalog::GATEWAY_RATE_PER_IP);
    let per_account: Option<u32> = env.get(&catalog::GATEWAY_RATE_PER_ACCOUNT);
    let per_tenant: Option<u32> = env.get(&catalog::GATEWAY_RATE_PER_TENANT);
    let legacy_per_ip: Option<u32> = env.get(&catalog::GATEWAY_RATE_LEGACY_PER_IP);
    for (setting, value) in [
        (&catalog::GATEWAY_RATE_LEGACY_PER_IP, legacy_per_ip),
        (&catalog::GATEWAY_RATE_PER_IP, per_ip),
        (&catalog::GATEWAY_RATE_PER_ACCOUNT, per_account),
        (&catalog::GATEWAY_RATE_PER_TENANT, per_tenant),
    ] {
        if value == Some(0) {
            env.problem(setting, "must be at least 1");
        }
    }
    let with_burst = |rate: u32| (rate, rate.saturating_mul(2));
    Some(LimitConfig {
        per_ip: with_burst(per_ip?),
        per_account: with_burst(per_account?),
        per_tenant: with_burst(per_tenant?),
        legacy_per_ip: with_burst(legacy_per_ip?),
    })
}

/// The public listener's connection bounds.
fn connections_from_env(env: &mut Env) -> Option<ConnectionConfig> {
    let pending: Option<usize> = env.get(&catalog::GATEWAY_MAX_PENDING_CONNECTIONS_PER_IP);
    if pending == Some(0) {
        env.problem(
            &catalog::GATEWAY_MAX_PENDING_CONNECTIONS_PER_IP,
            "must be at least 1",
        );
    }
    let keepalive_idle = env.seconds(&catalog::GATEWAY_KEEPALIVE_IDLE_SECONDS);
    if keepalive_idle.is_some_and(|idle| idle > crate::http::HEADER_READ_TIMEOUT) {
        env.problem(
            &catalog::GATEWAY_KEEPALIVE_IDLE_SECONDS,
            "must be at most 10 (the next request's headers are due 10 s after a response)",
        );
    }
    let http2: Option<bool> = env.get(&catalog::GATEWAY_HTTP2);
    Some(ConnectionConfig {
        pending_per_address: pending?,
        keepalive_idle: keepalive_idle?,
        http2: http2?,
        ..ConnectionConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The console listens on loopback by default; a public or unspecified address stops the
    /// gateway unless the operator exposes it on purpose.
    #[test]
    fn a_public_console_address_needs_the_exposed_setting() {
        let mut env = Env::from_pairs(Vec::<(&str, &str)>::new());
        assert_eq!(
            console_addr_from_env(&mut env),
            Some("127.0.0.1:9081".parse().unwrap())
        );
        env.finish().unwrap();
        for addr in ["0.0.0.0:9081", "203.0.113.7:9081", "[::]:9081"] {
            let mut env = Env::from_pairs([("OPERATOR_CONSOLE_ADDR", addr)]);
            console_addr_from_env(&mut env);
            let e = env.finish().unwrap_err().to_string();
            assert!(e.contains("OPERATOR_CONSOLE_ADDR"), "{e}");
            let mut env = Env::from_pairs([
                ("OPERATOR_CONSOLE_ADDR", addr),
                ("OPERATOR_CONSOLE_EXPOSED", "true"),
            ]);
            console_addr_from_env(&mut env);
            env.finish().unwrap();
        }
        let mut env = Env::from_pairs([("OPERATOR_CONSOLE_ADDR", "10.0.0.5:9081")]);
        console_addr_from_env(&mut env);
        env.finish().unwrap();
    }

    /// The allowance moved to media-svc: a gateway still configured with its old settings does
    /// not start (a silently ignored limit would look like protection), and says where it went.
    #[test]
    fn the_removed_public_calls_settings_stop_the_gateway_naming_their_replacement() {
        for (old, new) in [
            (
                "GATEWAY_PUBLIC_CALLS_PER_IP",
                "MEDIA_OUTBOUND_CALLS_PER_ADDRESS",
            ),
            (
                "GATEWAY_PUBLIC_CALLS_IP_WINDOW_SECONDS",
                "MEDIA_OUTBOUND_ADDRESS_WINDOW_SECONDS",
            ),
        ] {
            let mut env = Env::from_pairs([(old, "3")]);
            limits_from_env(&mut env);
            let e = env.finish().unwrap_err().to_string();
            assert!(e.contains(old) && e.contains(new), "{e}");
        }
        let mut env = Env::from_pairs([("GATEWAY_RATE_PER_IP", "5")]);
        assert_eq!(limits_from_env(&mut env).unwrap().per_ip, (5, 10));
        env.finish().unwrap();
    }
}
