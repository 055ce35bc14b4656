//! The process around the handlers: the auth [`policy`] of every RPC, [`run`] (settings, the
//! pool logged in as `media_svc` and self-checked, the identity, the ports) and [`serve`] (the
//! outbox and webhook workers, the mesh server, and the ordered shutdown that lets calls ended
//! in the drain be finalised before the workers stop).

use std::future::Future;
use std::time::Duration;

use mesh::api::media::billing_admin_service_server::BillingAdminServiceServer;
use mesh::api::media::billing_service_server::BillingServiceServer;
use mesh::api::media::call_service_server::CallServiceServer;
use mesh::api::media::media_admin_service_server::MediaAdminServiceServer;
use mesh::api::media::number_admin_service_server::NumberAdminServiceServer;
use mesh::api::media::number_service_server::NumberServiceServer;
use mesh::api::service_names as names;
use mesh::auth::{Policy, Rule};
use mesh::identity::names::{GATEWAY, MEDIA_SVC, OPERATOR, TENANT_SVC};
use mesh::identity::scope;
use mesh::server::{Listeners, ServeConfig};

use crate::runtime::{Deps, Runtime};
use crate::settings::Settings;
use crate::{billing, numbers, outbox, recording, retention, service, webhooks};

/// This service's name: the audience of tokens addressed to it and the issuer of its tokens.
pub const NAME: &str = MEDIA_SVC;

/// How long shutdown waits, after the gRPC drain, for call drivers to finalise their calls.
pub const FINALISE_GRACE: Duration = Duration::from_secs(5);

/// Which token kind, scope and issuer each RPC needs. `OpenStream` and `StreamCall` are the
/// gateway's. `EraseTenant` is the operator's, or tenant-svc's fanning out a tenant erasure (a
/// scope that opens nothing else); `PreparePrompts` likewise, tenant-svc's after a change to a
/// tenant's prompts or voice commits.
pub fn policy() -> Policy {
    with_billing(Policy::new())
        .service_methods(
            names::CALL,
            &[
                ("RegisterCall", Rule::tenant(scope::MEDIA_CALLS)),
                // The gateway's service token; the call comes from media-svc's own stream
                // ticket (OpenStream) and grant (StreamCall), never from a tenant token.
                (
                    "OpenStream",
                    Rule::service(scope::MEDIA_STREAM_OPEN).issued_by(&[GATEWAY]),
                ),
                (
                    "StreamCall",
                    Rule::service(scope::MEDIA_STREAM).issued_by(&[GATEWAY]),
                ),
                ("UpdateCallStatus", Rule::tenant(scope::MEDIA_CALLS)),
                ("ListCalls", Rule::tenant(scope::MEDIA_READ)),
                ("GetCall", Rule::tenant(scope::MEDIA_READ)),
                ("GetUsage", Rule::tenant(scope::MEDIA_READ)),
                ("GetCallStats", Rule::tenant(scope::MEDIA_READ)),
                ("ExportCaller", Rule::tenant(scope::MEDIA_EXPORT)),
                ("EraseCaller", Rule::tenant(scope::MEDIA_ERASE)),
                ("PlaceOutboundCall", Rule::tenant(scope::MEDIA_OUTBOUND)),
                ("ListDeadLetters", Rule::tenant(scope::MEDIA_READ)),
                (
                    "RedeliverDeadLetter",
                    Rule::tenant(scope::MEDIA_WEBHOOKS).or(Rule::tenant(scope::MEDIA_CALLS)),
                ),
                ("ListWebhookDeliveries", Rule::tenant(scope::MEDIA_WEBHOOKS)),
                ("RenderInstructions", Rule::tenant(scope::MEDIA_PREVIEW)),
                ("ListAuditEntries", Rule::tenant(scope::MEDIA_AUDIT)),
                ("ReadRecording", Rule::tenant(scope::MEDIA_RECORDINGS)),
                ("ListCallbackTasks", Rule::tenant(scope::MEDIA_MESSAGES)),
                ("SetCallbackTaskDone", Rule::tenant(scope::MEDIA_MESSAGES)),
            ],
        )
        .service_methods(
            names::MEDIA_ADMIN,
            &[
                (
                    "EraseTenant",
                    Rule::service(scope::MEDIA_ADMIN)
                        .issued_by(&[OPERATOR])
                        .or(Rule::service(scope::MEDIA_ERASE_TENANT).issued_by(&[TENANT_SVC])),
                ),
                (
                    "PreparePrompts",
                    Rule::service(scope::MEDIA_ADMIN)
                        .issued_by(&[OPERATOR])
                        .or(Rule::service(scope::MEDIA_PREPARE_PROMPTS).issued_by(&[TENANT_SVC])),
                ),
                (
                    "CountDeadLetters",
                    Rule::service(scope::MEDIA_ADMIN)
                        .issued_by(&[OPERATOR])
                        .or(Rule::service(scope::MEDIA_DEAD_LETTERS).issued_by(&[TENANT_SVC])),
                ),
            ],
        )
        .service_methods(
            names::NUMBER,
            &[
                ("SearchAvailableNumbers", Rule::tenant(scope::MEDIA_NUMBERS)),
                ("PurchaseNumber", Rule::tenant(scope::MEDIA_NUMBERS)),
                ("ListNumbers", Rule::tenant(scope::MEDIA_NUMBERS)),
                ("ReleaseNumber", Rule::tenant(scope::MEDIA_NUMBERS)),
            ],
        )
        .service_methods(
            names::NUMBER_ADMIN,
            &[
                ("ImportNumber", numbers_admin()),
                ("ReleaseCustomerNumber", numbers_admin()),
                ("ReleaseAllNumbers", numbers_admin()),
                ("ListAllNumbers", numbers_admin()),
                ("Reconcile", numbers_admin()),
            ],
        )
}

/// The operator's `media:admin`, or tenant-svc's `media:numbers-admin` (the operator console,
/// porting and offboarding acting through tenant-svc).
fn numbers_admin() -> Rule {
    Rule::service(scope::MEDIA_ADMIN)
        .issued_by(&[OPERATOR])
        .or(Rule::service(scope::MEDIA_NUMBERS_ADMIN).issued_by(&[TENANT_SVC]))
}

/// The rules of `BillingService` and `BillingAdminService`.
fn with_billing(policy: Policy) -> Policy {
    policy
        // A tenant's own bill: the portal's owners.
        .service_methods(
            names::BILLING,
            &[
                ("GetMonthlyBill", Rule::tenant(scope::MEDIA_BILLING)),
                ("ExportMonthlyBill", Rule::tenant(scope::MEDIA_BILLING)),
            ],
        )
        // Packages, prices and every tenant's bills: the operator's CLI, or tenant-svc for the
        // operator console with a scope that opens nothing else.
        .service_methods(
            names::BILLING_ADMIN,
            &[
                "CreatePackage",
                "ListPackages",
                "PublishRateCard",
                "AssignPackage",
                "SetDefaultPackage",
                "GetCustomerBill",
                "ListMonthlyBills",
                "ExportMonthlyBills",
            ]
            .map(|m| (m, billing_admin_rule())),
        )
}

/// Who may use `BillingAdminService`.
fn billing_admin_rule() -> Rule {
    Rule::service(scope::MEDIA_ADMIN)
        .issued_by(&[OPERATOR])
        .or(Rule::service(scope::MEDIA_BILLING_ADMIN).issued_by(&[TENANT_SVC]))
}

/// Serves on already-bound listeners (tests bind port 0).
pub async fn serve(
    deps: Deps,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let runtime = Runtime::new(&deps)?;
    let (stop_outbox, outbox_stopped) = tokio::sync::watch::channel(false);
    let webhook_worker = tokio::spawn(webhooks::run(runtime.clone(), outbox_stopped.clone()));
    let uploader = tokio::spawn(recording::upload::run(
        runtime.recordings.clone(),
        outbox_stopped.clone(),
    ));
    let retention_worker = tokio::spawn(retention::run(
        runtime.clone(),
        deps.calls.retention.clone(),
        outbox_stopped.clone(),
    ));
    let numbers = numbers::Numbers::new(
        deps.core.db.clone(),
        runtime.peers.clone(),
        deps.core.identity.clone(),
        &deps.calls.twilio.base_url,
        deps.calls.twilio.account_sid.as_ref(),
        &deps.calls.public_base_url,
        &deps.calls.numbers,
    );
    let reconciler = tokio::spawn(numbers::reconcile::run(
        numbers.clone(),
        outbox_stopped.clone(),
    ));
    let worker = tokio::spawn(outbox::run(
        runtime.clone(),
        deps.calls.outbox.clone(),
        outbox_stopped,
    ));
    let (calls, cut_calls) = (runtime.calls.clone(), runtime.cut_calls.clone());
    let revocations = runtime.peers.revocations().clone();
    let billing = billing::service::BillingSvc::new(runtime.db.clone());
    let svc = service::MediaSvc::new(runtime);
    let routes = tonic::service::Routes::new(CallServiceServer::new(svc.clone()))
        .add_service(MediaAdminServiceServer::new(svc))
        .add_service(NumberServiceServer::new(numbers.clone()))
        .add_service(NumberAdminServiceServer::new(numbers))
        .add_service(BillingServiceServer::new(billing.clone()))
        .add_service(BillingAdminServiceServer::new(billing));
    let mut config = ServeConfig::for_service(NAME, policy(), listeners, &deps.core);
    // One copy of the revocations: the auth layer's refresher fills the one the peer-token
    // cache reads, so a revoked peer token is dropped as soon as the layer would refuse it.
    if let Some(feed) = config.revocations.as_mut() {
        feed.revocations = revocations;
    }
    let served = mesh::server::serve(config, routes, shutdown).await;
    // The streams are closed now; the drivers of calls that ended in the drain are still
    // writing their final rows and outbox entries.
    cut_calls.cancel();
    calls.close();
    if !calls.is_empty() {
        tracing::info!(service = NAME, calls = calls.len(), "finalising calls");
    }
    if tokio::time::timeout(FINALISE_GRACE, calls.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            service = NAME,
            calls = calls.len(),
            "calls still finalising at exit"
        );
    }
    let _ = stop_outbox.send(true);
    let _ = worker.await;
    let _ = webhook_worker.await;
    let _ = uploader.await;
    let _ = retention_worker.await;
    let _ = reconciler.await;
    served?;
    Ok(())
}

/// Connects to the database (self-checked), loads the identity, binds the ports and serves
/// until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let p = mesh::server::prepare(NAME, &settings.common).await?;
    let deps = Deps {
        core: p.core,
        calls: settings.calls,
    };
    serve(deps, p.listeners, shutdown).await
}
