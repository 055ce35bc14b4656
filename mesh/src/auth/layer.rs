//! The server-side tower layer and the handler helpers.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::header::AUTHORIZATION;

use super::{AuthError, Caller, Policy, Revocations, ServiceCaller, TenantCaller, Verifier};

// Why this layer exists: authentication is decided once, before any handler runs, from one
// policy table, so no handler can forget a check and none ever sees a raw token.
/// Verifies the bearer token of every non-public request against the [`Policy`] and puts the
/// [`Caller`] into the request extensions; refuses everything else without calling the service.
///
/// A tenant's `customer_id` is recorded on the span that is current while the layer's `call`
/// runs: put it inside a layer that enters its span there, such as tower-http's `TraceLayer`
/// (as `mesh::server` does; tonic's `trace_fn` only enters its span when polling).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    verifier: Verifier,
    policy: Arc<Policy>,
    revocations: Revocations,
}

impl AuthLayer {
    /// A layer verifying with `verifier` and authorizing with `policy` (no tenant revoked; see
    /// [`AuthLayer::with_revocations`]).
    pub fn new(verifier: Verifier, policy: Arc<Policy>) -> AuthLayer {
        AuthLayer {
            verifier,
            policy,
            revocations: Revocations::new(),
        }
    }

    /// Refuses tenant tokens that `revocations` revokes (checked after every verification,
    /// cached or not).
    pub fn with_revocations(mut self, revocations: Revocations) -> AuthLayer {
        self.revocations = revocations;
        self
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
            policy: self.policy.clone(),
            revocations: self.revocations.clone(),
        }
    }
}

/// The service produced by [`AuthLayer`]; generic over request and response bodies.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Verifier,
    policy: Arc<Policy>,
    revocations: Revocations,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for AuthService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<http::Response<ResBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let path = req.uri().path();
        if Policy::is_public(path) {
            return Either::Left(self.inner.call(req));
        }
        let checks = (&self.verifier, &*self.policy, &self.revocations);
        match authorize(checks, path, req.headers()) {
            Ok(caller) => {
                // The handler gets the typed caller only: drop the credential itself so it
                // cannot be logged or forwarded from inside the service.
                req.headers_mut().remove(AUTHORIZATION);
                let ext = req.extensions_mut();
                match &caller {
                    Caller::Service(s) => {
                        tracing::debug!(caller = %s.issuer, "authenticated service caller");
                        ext.insert(s.clone());
                    }
                    Caller::Tenant(t) => {
                        crate::telemetry::record_customer(t.customer_id);
                        ext.insert(t.clone());
                    }
                }
                metrics::counter!("mesh_auth_accepted_total", "kind" => caller.kind().as_str())
                    .increment(1);
                ext.insert(caller);
                Either::Left(self.inner.call(req))
            }
            Err(err) => {
                let path = super::sanitize_for_log(req.uri().path());
                if err.is_suspicious() {
                    tracing::warn!(reason = %err, %path, "request refused by auth");
                } else {
                    tracing::debug!(reason = %err, %path, "request refused by auth");
                }
                metrics::counter!("mesh_auth_rejections_total", "reason" => err.reason())
                    .increment(1);
                Either::Right(ready(Ok(err.to_status().into_http())))
            }
        }
    }
}

/// Authentication (token, then its tenant's revocation) first, then authorization (rule): an
/// unauthenticated caller learns nothing about which methods exist. Revocation is checked after
/// the verifier, whose cache of verified tokens cannot bypass it.
fn authorize(
    (verifier, policy, revocations): (&Verifier, &Policy, &Revocations),
    path: &str,
    headers: &http::HeaderMap,
) -> Result<Caller, AuthError> {
    let token = super::bearer::token(headers)?;
    let (caller, iat) = verifier.verify_issued(token)?;
    if let Caller::Tenant(t) = &caller
        && revocations.refuses(t.customer_id, &t.subject, iat)
    {
        return Err(AuthError::Revoked);
    }
    let rule = policy.get(path).ok_or(AuthError::NoRule)?;
    rule.check(&caller)?;
    Ok(caller)
}

/// The tenant caller of a request that passed [`AuthLayer`]. Missing means the layer did not
/// run (or the method's rule is not a tenant rule): refused as UNAUTHENTICATED, never served.
pub fn tenant_caller<T>(req: &tonic::Request<T>) -> Result<&TenantCaller, tonic::Status> {
    req.extensions().get::<TenantCaller>().ok_or_else(|| {
        tracing::error!("no TenantCaller in request extensions; is AuthLayer installed?");
        tonic::Status::unauthenticated("a tenant token is required")
    })
}

/// The service caller of a request that passed [`AuthLayer`]; see [`tenant_caller`].
pub fn service_caller<T>(req: &tonic::Request<T>) -> Result<&ServiceCaller, tonic::Status> {
    req.extensions().get::<ServiceCaller>().ok_or_else(|| {
        tracing::error!("no ServiceCaller in request extensions; is AuthLayer installed?");
        tonic::Status::unauthenticated("a service token is required")
    })
}

/// An operator's request about one tenant (erasure, for one): the calling service's name and
/// the tenant the request names in its `customer_id` field (read by `customer_id`), refused
/// with INVALID_ARGUMENT naming that field when it is not a customer id. The tenant is recorded
/// on the rpc span from here on, since the operator's token named none.
pub fn operator_target<T>(
    req: &tonic::Request<T>,
    customer_id: impl FnOnce(&T) -> i64,
) -> Result<(String, crate::domain::CustomerId), tonic::Status> {
    let issuer = service_caller(req)?.issuer.clone();
    let customer = crate::domain::CustomerId::new(customer_id(req.get_ref()))
        .map_err(|e| tonic::Status::invalid_argument(format!("customer_id: {e}")))?;
    crate::telemetry::record_customer(customer);
    Ok((issuer, customer))
}
