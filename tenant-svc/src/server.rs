//! How tenant-svc starts and serves: the auth [`policy`] of each RPC (enforced by the mesh auth
//! layer before a handler runs), [`run`] (pool logged in as `tenant_svc` and self-checked, the
//! identity, the bound ports) and [`serve`] (the routing cache's listener and the mesh server, on
//! listeners the caller bound: port 0 in tests).

use std::future::Future;

use mesh::api::service_names as names;
use mesh::api::tenant::account_admin_service_server::AccountAdminServiceServer;
use mesh::api::tenant::account_service_server::AccountServiceServer;
use mesh::api::tenant::api_key_exchange_service_server::ApiKeyExchangeServiceServer;
use mesh::api::tenant::edge_service_server::EdgeServiceServer;
use mesh::api::tenant::operator_admin_service_server::OperatorAdminServiceServer;
use mesh::api::tenant::operator_service_server::OperatorServiceServer;
use mesh::api::tenant::signup_service_server::SignupServiceServer;
use mesh::api::tenant::team_service_server::TeamServiceServer;
use mesh::api::tenant::tenant_admin_service_server::TenantAdminServiceServer;
use mesh::api::tenant::tenant_service_server::TenantServiceServer;
use mesh::auth::{Policy, Rule};
use mesh::identity::names::{GATEWAY, MEDIA_SVC, OPERATOR, TENANT_SVC};
use mesh::identity::scope;
use mesh::server::{Core, Listeners, ServeConfig};

use crate::settings::Settings;
use crate::{routing, service};

/// This service's name: the audience of tokens addressed to it and the issuer of its tokens.
pub const NAME: &str = TENANT_SVC;

/// The operator's `tenant:admin`.
fn operator() -> Rule {
    Rule::service(scope::TENANT_ADMIN).issued_by(&[OPERATOR])
}

/// media-svc's `tenant:numbers` (assigning and releasing the numbers it holds at Twilio).
fn numbers() -> Rule {
    Rule::service(scope::TENANT_NUMBERS).issued_by(&[MEDIA_SVC])
}

/// The gateway's `tenant:portal`, for the tenant portal's accounts.
fn portal() -> Rule {
    Rule::service(scope::TENANT_PORTAL).issued_by(&[GATEWAY])
}

/// The gateway's `tenant:operator-console`, for the operator console (each method then checks
/// the operator's session itself).
fn console() -> Rule {
    Rule::service(scope::TENANT_OPERATOR_CONSOLE).issued_by(&[GATEWAY])
}

/// Which token kind, scope and issuer each RPC needs. Admin methods are the operator's;
/// `IssueTenantToken` also serves media-svc, for exactly the scopes, audiences and lifetime of
/// `scope::MEDIA_SVC_ISSUABLE` (checked by the handler, which sees the request);
/// `NotifyOwners` is media-svc's alone, with a scope that opens nothing else; the edge and
/// the portal's accounts are the gateway's (each with its own scope).
pub fn policy() -> Policy {
    operator_policy(team_policy(Policy::new()))
        .service_methods(
            names::TENANT_ADMIN,
            &[
                ("CreateCustomer", operator()),
                ("GetCustomer", operator()),
                ("ListCustomers", operator()),
                ("SetCustomerStatus", operator()),
                // media-svc routes the numbers it buys, imports and releases.
                ("AssignPhoneNumber", operator().or(numbers())),
                ("ReleasePhoneNumber", operator().or(numbers())),
                ("DeleteCustomer", operator()),
                ("GetPlatformDefaults", operator()),
                ("UpdatePlatformDefaults", operator()),
                (
                    "IssueTenantToken",
                    Rule::service(scope::TENANT_ADMIN).issued_by(&[OPERATOR, MEDIA_SVC]),
                ),
                (
                    "NotifyOwners",
                    Rule::service(scope::TENANT_NOTIFY_OWNERS).issued_by(&[MEDIA_SVC]),
                ),
            ],
        )
        .service_methods(
            names::TENANT,
            &[
                ("GetMyCustomer", Rule::tenant(scope::TENANT_READ)),
                ("UpdateAgentConfig", Rule::tenant(scope::TENANT_WRITE)),
                ("ListConfigHistory", Rule::tenant(scope::TENANT_READ)),
                ("RevertConfigChange", Rule::tenant(scope::TENANT_WRITE)),
                ("GetEffectiveProfile", Rule::tenant(scope::TENANT_READ)),
                ("GetOutboundSettings", Rule::tenant(scope::TENANT_READ)),
                ("UpdateOutboundSettings", Rule::tenant(scope::TENANT_WRITE)),
                ("RotateWebhookSecret", Rule::tenant(scope::TENANT_WRITE)),
                ("SignWebhookEvent", Rule::tenant(scope::TENANT_WEBHOOK)),
                ("GetCallHandling", Rule::tenant(scope::TENANT_READ)),
                ("UpdateCallHandling", Rule::tenant(scope::TENANT_WRITE)),
            ],
        )
        .service_methods(
            names::TENANT_EDGE,
            &[
                (
                    "ResolveNumber",
                    Rule::service(scope::TENANT_RESOLVE).issued_by(&[GATEWAY]),
                ),
                (
                    "ExchangeLegacyToken",
                    Rule::service(scope::TENANT_EXCHANGE).issued_by(&[GATEWAY]),
                ),
            ],
        )
        .service_methods(
            names::ACCOUNT,
            &[
                ("GetInvitation", portal()),
                ("AcceptInvitation", portal()),
                ("SignIn", portal()),
                ("RequestPasswordReset", portal()),
                ("ResetPassword", portal()),
                ("ExchangeSession", portal()),
                ("SignOut", portal()),
                ("SignOutEverywhere", portal()),
                ("ChangePassword", portal()),
                ("ListSessions", portal()),
                ("RevokeSession", portal()),
            ],
        )
        .service_methods(names::ACCOUNT_ADMIN, &[("InviteUser", operator())])
        .service_methods(
            names::SIGNUP,
            &[("SignUp", portal()), ("VerifySignup", portal())],
        )
}

/// `TeamService` (tenant tokens: a portal owner's `tenant:team`, `tenant:keys`, `tenant:audit`)
/// and `ApiKeyExchangeService` (the gateway's `tenant:exchange`).
fn team_policy(policy: Policy) -> Policy {
    policy
        .service_methods(
            names::TEAM,
            &[
                ("ListUsers", Rule::tenant(scope::TENANT_TEAM)),
                ("CreateInvitation", Rule::tenant(scope::TENANT_TEAM)),
                ("ListInvitations", Rule::tenant(scope::TENANT_TEAM)),
                ("RevokeInvitation", Rule::tenant(scope::TENANT_TEAM)),
                ("ChangeUserRole", Rule::tenant(scope::TENANT_TEAM)),
                ("RemoveUser", Rule::tenant(scope::TENANT_TEAM)),
                ("CreateApiKey", Rule::tenant(scope::TENANT_KEYS)),
                ("ListApiKeys", Rule::tenant(scope::TENANT_KEYS)),
                ("RevokeApiKey", Rule::tenant(scope::TENANT_KEYS)),
                ("ListAuditEvents", Rule::tenant(scope::TENANT_AUDIT)),
            ],
        )
        .service_methods(
            names::API_KEY_EXCHANGE,
            &[(
                "ExchangeApiKey",
                Rule::service(scope::TENANT_EXCHANGE).issued_by(&[GATEWAY]),
            )],
        )
}

/// `OperatorAdminService` (the operator's CLI) and `OperatorService` (the gateway's console).
fn operator_policy(policy: Policy) -> Policy {
    policy
        .service_methods(
            names::OPERATOR_ADMIN,
            &[("AddOperator", operator()), ("DisableOperator", operator())],
        )
        .service_methods(
            names::OPERATOR,
            &[
                ("OperatorSignIn", console()),
                ("OperatorSignOut", console()),
                ("GetOperatorSession", console()),
                ("OperatorListCustomers", console()),
                ("OperatorGetCustomer", console()),
                ("ApproveCustomer", console()),
                ("SuspendCustomer", console()),
                ("ReactivateCustomer", console()),
                ("OperatorAssignNumber", console()),
                ("OperatorReleaseNumber", console()),
                ("OperatorGetDefaults", console()),
                ("OperatorUpdateDefaults", console()),
                ("ListDeadLetterCounts", console()),
                ("OffboardCustomer", console()),
                ("CancelOffboarding", console()),
            ],
        )
}

/// What the handlers need.
#[derive(Clone)]
pub struct Deps {
    /// The pool (logged in as the service's own role) and the identity (tenant-svc's key
    /// mints tenant tokens).
    pub core: Core,
    /// Verifier of legacy HS256 tokens (`JWT_SECRET_KEY`); `None` disables the exchange.
    pub legacy: Option<mesh::auth::LegacyVerifier>,
    /// `WEBHOOK_ALLOW_INSECURE` (see [`Settings::webhook_allow_insecure`]); `false` in production.
    pub webhook_allow_insecure: bool,
    /// memory-svc and media-svc, which `DeleteCustomer` asks to erase the customer's data.
    pub peers: crate::peers::Peers,
    /// Portal sessions' lifetimes and the account hash key.
    pub accounts: crate::account::AccountConfig,
}

/// Serves on already-bound listeners (tests bind port 0).
pub async fn serve(
    deps: Deps,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let svc = service::TenantSvc::new(deps.clone());
    // Keeps the routing cache in step with the database; ends with this function.
    let listener = tokio::spawn(routing::listen(
        deps.core.db.clone(),
        svc.routing().clone(),
        {
            let svc = svc.clone();
            move || svc.forget_defaults()
        },
    ));
    let _listener = tokio_util::task::AbortOnDropHandle::new(listener);
    let routes = tonic::service::Routes::new(TenantAdminServiceServer::new(svc.clone()))
        .add_service(TenantServiceServer::new(svc.clone()))
        .add_service(EdgeServiceServer::new(svc.clone()))
        .add_service(AccountServiceServer::new(svc.clone()))
        .add_service(TeamServiceServer::new(svc.clone()))
        .add_service(ApiKeyExchangeServiceServer::new(svc.clone()))
        .add_service(OperatorServiceServer::new(svc.clone()))
        .add_service(OperatorAdminServiceServer::new(svc.clone()))
        .add_service(SignupServiceServer::new(svc.clone()))
        .add_service(AccountAdminServiceServer::new(svc));
    // The first unknown-address sign-in must not pay for the dummy hash.
    tokio::spawn(crate::account::password::warm_up());
    let config = ServeConfig::for_service(NAME, policy(), listeners, &deps.core);
    Ok(mesh::server::serve(config, routes, shutdown).await?)
}

/// Connects to the database (self-checked), loads the identity, binds the ports and serves
/// until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let p = mesh::server::prepare(NAME, &settings.common).await?;
    let legacy = settings
        .legacy_secret
        .as_ref()
        .map(mesh::auth::LegacyVerifier::new)
        .transpose()?
        .map(|v| v.with_max_lifetime(settings.legacy_max_lifetime));
    let peers = crate::peers::Peers::new(
        &settings.memory_url,
        &settings.media_url,
        p.core.identity.clone(),
    )?;
    let deps = Deps {
        core: p.core,
        legacy,
        webhook_allow_insecure: settings.webhook_allow_insecure,
        peers,
        accounts: settings.accounts.clone(),
    };
    serve(deps, p.listeners, shutdown).await
}
