//! Service authentication end to end: a real tonic server with `AuthLayer` on a loopback
//! socket, and a handler that counts how often it runs. Every refusal must carry the exact
//! gRPC code and leave the counter where it was.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::api::tenant::edge_service_server::{EdgeService, EdgeServiceServer};
use mesh::api::tenant::{
    ExchangeLegacyTokenRequest, ExchangeLegacyTokenResponse, ResolveNumberRequest,
    ResolveNumberResponse,
};
use mesh::auth::{
    AttachToken, AuthError, AuthLayer, Caller, LegacyVerifier, Minter, Policy, Rule, ServiceCaller,
    SigningKey, TENANT_TOKEN_ISSUER, TenantCaller, TokenSource, TrustedKeys, Verifier,
    service_caller, tenant_caller,
};
use mesh::domain::CustomerId;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};

const EDGE: &str = "neurosphere.tenant.v1.EdgeService";
const AUDIENCE: &str = "tenant-svc";

// ---------------------------------------------------------------------------------------------
// The service under test
// ---------------------------------------------------------------------------------------------

/// What the handler saw: the caller from the extensions, and whether the raw credential was
/// still visible in the metadata (it must not be).
#[derive(Debug, Clone)]
struct Seen {
    caller: Caller,
    service: Option<ServiceCaller>,
    tenant: Option<TenantCaller>,
    authorization_visible: bool,
}

#[derive(Default)]
struct CountingEdge {
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl CountingEdge {
    fn record<T>(&self, req: &Request<T>) {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let seen = Seen {
            caller: req
                .extensions()
                .get::<Caller>()
                .cloned()
                .expect("Caller in extensions"),
            service: req.extensions().get::<ServiceCaller>().cloned(),
            tenant: req.extensions().get::<TenantCaller>().cloned(),
            authorization_visible: req.metadata().get("authorization").is_some(),
        };
        self.seen.lock().unwrap().push(seen);
    }
}

#[tonic::async_trait]
impl EdgeService for CountingEdge {
    async fn resolve_number(
        &self,
        request: Request<ResolveNumberRequest>,
    ) -> Result<Response<ResolveNumberResponse>, Status> {
        self.record(&request);
        // Which issuer arrived is asserted by each test from what was recorded.
        service_caller(&request)?;
        Ok(Response::new(ResolveNumberResponse::default()))
    }

    async fn exchange_legacy_token(
        &self,
        request: Request<ExchangeLegacyTokenRequest>,
    ) -> Result<Response<ExchangeLegacyTokenResponse>, Status> {
        self.record(&request);
        let caller = tenant_caller(&request)?;
        Ok(Response::new(ExchangeLegacyTokenResponse {
            customer_id: caller.customer_id.get(),
            ..Default::default()
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and hand-built tokens
// ---------------------------------------------------------------------------------------------

/// A mesh signing key plus its raw Ed25519 form, to sign arbitrary headers and claims.
struct TestKey {
    key: SigningKey,
    raw: ed25519_dalek::SigningKey,
}

impl TestKey {
    fn new(issuer: &str) -> TestKey {
        let key = SigningKey::generate(issuer);
        let raw = ed25519_dalek::SigningKey::from_pkcs8_pem(key.to_pkcs8_pem().expose_secret())
            .expect("our own PEM parses");
        TestKey { key, raw }
    }

    fn kid(&self) -> &str {
        self.key.kid()
    }

    fn header(&self, typ: &str) -> Value {
        json!({ "alg": "EdDSA", "typ": typ, "kid": self.kid() })
    }

    /// Signs any header and claims JSON with EdDSA (whatever the header says).
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature = self.raw.sign(message.as_bytes()).to_bytes();
        format!("{message}.{}", b64url().encode(signature))
    }

    fn service_token(&self, claims: &Value) -> String {
        self.sign(&self.header("service+jwt"), claims)
    }

    fn tenant_token(&self, claims: &Value) -> String {
        self.sign(&self.header("tenant+jwt"), claims)
    }

    fn minter(&self) -> Minter {
        let pem = self.key.to_pkcs8_pem();
        Minter::new(
            SigningKey::from_pkcs8_pem(self.key.issuer(), self.kid(), pem.expose_secret()).unwrap(),
        )
    }
}

fn b64url() -> base64::engine::general_purpose::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn b64(v: &Value) -> String {
    b64url().encode(serde_json::to_vec(v).unwrap())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Valid service-token claims from `iss` to tenant-svc with scope `tenant:resolve`.
fn service_claims(iss: &str) -> Value {
    let now = now();
    json!({
        "iss": iss, "sub": iss, "aud": [AUDIENCE], "iat": now, "exp": now + 300,
        "jti": jti(), "kind": "service", "scope": "tenant:resolve other:scope",
    })
}

/// Valid tenant-token claims for customer 42 with scope `tenant:read`.
fn tenant_claims() -> Value {
    let now = now();
    json!({
        "iss": TENANT_TOKEN_ISSUER, "sub": "CA0123456789abcdef0123456789abcdef",
        "aud": ["media-svc", AUDIENCE], "iat": now, "exp": now + 300, "jti": jti(),
        "kind": "tenant", "scope": "tenant:read", "customer_id": 42,
    })
}

fn set(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// An HMAC-signed token with jsonwebtoken's encoder (for algorithm-confusion cases).
fn hmac_token(
    alg: jsonwebtoken::Algorithm,
    kid: &str,
    typ: &str,
    claims: &Value,
    secret: &[u8],
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.to_owned());
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// A token with any header and an arbitrary (unverifiable) signature.
fn unsigned_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header),
        b64(claims),
        b64url().encode(signature)
    )
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct Harness {
    /// Trusted for iss "tenant-svc".
    tenant: TestKey,
    /// Trusted for iss "gateway".
    gateway: TestKey,
    verifier: Verifier,
    channel: Channel,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn full_policy() -> Policy {
    Policy::new().service_methods(
        EDGE,
        &[
            (
                "ResolveNumber",
                Rule::service("tenant:resolve").issued_by(&["gateway"]),
            ),
            ("ExchangeLegacyToken", Rule::tenant("tenant:read")),
        ],
    )
}

impl Harness {
    async fn start() -> Harness {
        let tenant = TestKey::new(TENANT_TOKEN_ISSUER);
        let gateway = TestKey::new("gateway");
        let keys = TrustedKeys::new()
            .with(tenant.key.public_key())
            .with(gateway.key.public_key());
        // Through the JSON trust bundle, as a deployment would load it.
        let keys = TrustedKeys::from_json(&keys.to_json()).unwrap();
        let verifier = Verifier::new(AUDIENCE, keys);

        let edge = CountingEdge::default();
        let hits = edge.hits.clone();
        let seen = edge.seen.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::builder()
            .layer(AuthLayer::new(verifier.clone(), Arc::new(full_policy())))
            .add_service(EdgeServiceServer::new(edge))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Harness {
            tenant,
            gateway,
            verifier,
            channel,
            hits,
            seen,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn last_seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("handler ran")
    }

    fn client(&self) -> EdgeServiceClient<Channel> {
        EdgeServiceClient::new(self.channel.clone())
    }

    async fn resolve_with(
        &self,
        authorization: Option<&str>,
    ) -> Result<ResolveNumberResponse, Status> {
        let mut req = Request::new(ResolveNumberRequest::default());
        if let Some(value) = authorization {
            req.metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        self.client()
            .resolve_number(req)
            .await
            .map(Response::into_inner)
    }

    async fn resolve(&self, token: &str) -> Result<ResolveNumberResponse, Status> {
        self.resolve_with(Some(&format!("Bearer {token}"))).await
    }

    async fn exchange(&self, token: &str) -> Result<ExchangeLegacyTokenResponse, Status> {
        let mut req = Request::new(ExchangeLegacyTokenRequest::default());
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        self.client()
            .exchange_legacy_token(req)
            .await
            .map(Response::into_inner)
    }

    /// Awaits a call that must be refused with `code` without running the handler.
    async fn refused<T: std::fmt::Debug>(
        &self,
        code: Code,
        why: &str,
        call: impl Future<Output = Result<T, Status>>,
    ) {
        let before = self.hits();
        let status = call.await.expect_err(why);
        assert_eq!(status.code(), code, "{why}: {status:?}");
        assert_eq!(self.hits(), before, "{why}: the handler ran");
        // Client-facing messages come from a short fixed set and never echo the token.
        let known = [
            "missing bearer token",
            "invalid token",
            "token expired",
            "this method needs a service token",
            "this method needs a tenant token",
            "no access rule for this method",
        ];
        assert!(
            known.contains(&status.message()) || status.message().starts_with("token lacks scope "),
            "{why}: unexpected message {:?}",
            status.message()
        );
    }

    async fn unauthenticated(&self, why: &str, token: &str) {
        self.refused(Code::Unauthenticated, why, self.resolve(token))
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Accepted calls
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn valid_service_token_reaches_handler_as_service_caller() {
    let h = Harness::start().await;
    let token = h.gateway.service_token(&service_claims("gateway"));
    h.resolve(&token).await.expect("valid service token");
    assert_eq!(h.hits(), 1);
    let seen = h.last_seen();
    let Caller::Service(caller) = &seen.caller else {
        panic!("not a service caller: {seen:?}")
    };
    assert_eq!(caller.issuer, "gateway");
    assert!(caller.scopes.contains("tenant:resolve"));
    assert!(caller.scopes.contains("other:scope"));
    assert_eq!(seen.service.as_ref(), Some(caller));
    assert!(seen.tenant.is_none());
    assert!(
        !seen.authorization_visible,
        "the raw token must not reach the handler"
    );
    assert!(!format!("{seen:?}").contains(&token));
}

#[tokio::test]
async fn valid_tenant_token_reaches_tenant_rpc_with_customer_id() {
    let h = Harness::start().await;
    let token = h.tenant.tenant_token(&tenant_claims());
    let response = h.exchange(&token).await.expect("valid tenant token");
    assert_eq!(response.customer_id, 42);
    let seen = h.last_seen();
    let tenant = seen.tenant.clone().expect("TenantCaller in extensions");
    assert_eq!(tenant.customer_id, CustomerId::new(42).unwrap());
    assert_eq!(tenant.subject, "CA0123456789abcdef0123456789abcdef");
    assert!(tenant.scopes.contains("tenant:read"));
    assert_eq!(seen.caller, Caller::Tenant(tenant));
    assert!(seen.service.is_none());
    assert!(!seen.authorization_visible);
}

#[tokio::test]
async fn minted_tokens_and_the_client_interceptor_work_end_to_end() {
    let h = Harness::start().await;
    let gateway = Arc::new(h.gateway.minter());
    let source = TokenSource::service(gateway, AUDIENCE, &["tenant:resolve"]);
    let mut client = EdgeServiceClient::with_interceptor(h.channel.clone(), AttachToken(source));
    client
        .resolve_number(ResolveNumberRequest::default())
        .await
        .expect("minted service token");
    client
        .resolve_number(ResolveNumberRequest::default())
        .await
        .expect("cached service token");
    assert_eq!(h.hits(), 2);

    let tenant_token = h
        .tenant
        .minter()
        .mint_tenant(
            CustomerId::new(7).unwrap(),
            "team-blue",
            &[AUDIENCE, "memory-svc"],
            &["tenant:read"],
            Duration::from_secs(600),
        )
        .unwrap();
    let source = TokenSource::fixed(SecretString::from(tenant_token));
    let mut client = EdgeServiceClient::with_interceptor(h.channel.clone(), AttachToken(source));
    let response = client
        .exchange_legacy_token(ExchangeLegacyTokenRequest::default())
        .await
        .expect("minted tenant token");
    assert_eq!(response.get_ref().customer_id, 7);
    assert_eq!(h.last_seen().tenant.unwrap().subject, "team-blue");
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let h = Harness::start().await;
    let token = h.gateway.service_token(&service_claims("gateway"));
    h.resolve_with(Some(&format!("bearer {token}")))
        .await
        .expect("lower-case scheme");
    h.resolve_with(Some(&format!("BEARER {token}")))
        .await
        .expect("upper-case scheme");
    assert_eq!(h.hits(), 2);
}

// ---------------------------------------------------------------------------------------------
// Missing or malformed credentials
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_or_malformed_credentials_are_unauthenticated() {
    let h = Harness::start().await;
    let u = Code::Unauthenticated;
    h.refused(u, "no token", h.resolve_with(None)).await;
    h.refused(u, "Bearer without token", h.resolve_with(Some("Bearer")))
        .await;
    h.refused(
        u,
        "Basic credentials",
        h.resolve_with(Some("Basic Z2F0ZXdheTpwdw==")),
    )
    .await;
    h.refused(
        u,
        "bare token without scheme",
        h.resolve_with(Some("abc.def.ghi")),
    )
    .await;
    h.unauthenticated("not a JWT", "not-a-jwt").await;
    h.unauthenticated("garbage segments", "!!!.@@@.###").await;
    h.unauthenticated("two segments", "eyJhbGciOiJFZERTQSJ9.e30")
        .await;
    h.unauthenticated("four segments", "a.b.c.d").await;
    h.unauthenticated(
        "base64 of non-JSON",
        &format!("{}.e30.AAAA", b64url().encode("nope")),
    )
    .await;
    let valid = h.gateway.service_token(&service_claims("gateway"));
    let mut tampered = valid.clone();
    tampered.pop();
    tampered.push(if valid.ends_with('A') { 'B' } else { 'A' });
    h.unauthenticated("tampered signature", &tampered).await;
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged_payload = b64(&set(
        service_claims("gateway"),
        "scope",
        json!("tenant:admin"),
    ));
    h.unauthenticated(
        "swapped payload",
        &format!("{head}.{forged_payload}.{signature}"),
    )
    .await;
    assert_eq!(h.hits(), 0);
}

// ---------------------------------------------------------------------------------------------
// Time claims
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn expiry_is_enforced_with_a_short_leeway() {
    let h = Harness::start().await;
    let now = now();
    let claims = |iat: i64, exp: i64| {
        set(
            set(service_claims("gateway"), "iat", json!(iat)),
            "exp",
            json!(exp),
        )
    };
    let expired = h.gateway.service_token(&claims(now - 600, now - 60));
    h.unauthenticated("expired 60 s ago", &expired).await;
    let status = h.resolve(&expired).await.unwrap_err();
    assert_eq!(status.message(), "token expired");

    let within_leeway = h.gateway.service_token(&claims(now - 600, now - 10));
    h.resolve(&within_leeway)
        .await
        .expect("expired 10 s ago is within the 30 s leeway");
    assert_eq!(h.hits(), 1);
}

/// Waits (polling, never more than a few seconds) until the wall clock's second is past `t`.
async fn wait_until_past(t: i64) {
    while now() <= t {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The verified-token memory cannot outlive a token: once `exp` + leeway has passed, a token
/// that was accepted (and remembered) is refused like any expired one, through the real layer
/// (the handler never runs) and through a verifier with no leeway.
#[tokio::test]
async fn a_remembered_token_is_refused_after_its_expiry() {
    let h = Harness::start().await;
    let now = now();
    // Within the 30 s leeway for 2 more seconds.
    let claims = set(service_claims("gateway"), "iat", json!(now - 100));
    let nearly_expired = h
        .gateway
        .service_token(&set(claims, "exp", json!(now - 28)));
    h.resolve(&nearly_expired).await.expect("within leeway");
    h.resolve(&nearly_expired).await.expect("remembered");
    assert_eq!(h.hits(), 2);

    let strict =
        Verifier::new(AUDIENCE, (*h.verifier.trusted_keys()).clone()).with_leeway(Duration::ZERO);
    let one_second =
        h.gateway
            .service_token(&set(service_claims("gateway"), "exp", json!(now + 1)));
    assert!(strict.verify(&one_second).is_ok());
    assert!(strict.verify(&one_second).is_ok(), "remembered");

    wait_until_past(now + 2).await;
    h.unauthenticated("remembered, but past exp + leeway", &nearly_expired)
        .await;
    let status = h.resolve(&nearly_expired).await.unwrap_err();
    assert_eq!(status.message(), "token expired");
    assert_eq!(strict.verify(&one_second), Err(AuthError::Expired));
    assert_eq!(h.hits(), 2);
}

#[tokio::test]
async fn required_time_claims_must_be_present_integers() {
    let h = Harness::start().await;
    let g = &h.gateway;
    h.unauthenticated(
        "missing exp",
        &g.service_token(&without(service_claims("gateway"), "exp")),
    )
    .await;
    h.unauthenticated(
        "missing iat",
        &g.service_token(&without(service_claims("gateway"), "iat")),
    )
    .await;
    let float_exp = set(
        service_claims("gateway"),
        "exp",
        json!(now() as f64 + 300.5),
    );
    h.unauthenticated("fractional exp", &g.service_token(&float_exp))
        .await;
    let string_iat = set(service_claims("gateway"), "iat", json!(now().to_string()));
    h.unauthenticated("string iat", &g.service_token(&string_iat))
        .await;
    h.unauthenticated(
        "missing jti",
        &g.service_token(&without(service_claims("gateway"), "jti")),
    )
    .await;
    let bad_jti = set(service_claims("gateway"), "jti", json!("not-a-uuid"));
    h.unauthenticated("jti not a uuid", &g.service_token(&bad_jti))
        .await;
    assert_eq!(h.hits(), 0);
}

#[tokio::test]
async fn iat_and_nbf_in_the_future_are_refused() {
    let h = Harness::start().await;
    let now = now();
    let future_iat = set(
        set(service_claims("gateway"), "iat", json!(now + 120)),
        "exp",
        json!(now + 400),
    );
    h.unauthenticated(
        "iat 120 s in the future",
        &h.gateway.service_token(&future_iat),
    )
    .await;
    let future_nbf = set(service_claims("gateway"), "nbf", json!(now + 120));
    h.unauthenticated(
        "nbf 120 s in the future",
        &h.gateway.service_token(&future_nbf),
    )
    .await;

    let slight_skew = set(
        set(service_claims("gateway"), "iat", json!(now + 10)),
        "nbf",
        json!(now + 10),
    );
    h.resolve(&h.gateway.service_token(&slight_skew))
        .await
        .expect("10 s of skew is tolerated");
    assert_eq!(h.hits(), 1);
}

#[tokio::test]
async fn lifetimes_above_the_maximum_are_refused() {
    let h = Harness::start().await;
    let now = now();
    let long_service = set(service_claims("gateway"), "exp", json!(now + 2 * 3600));
    h.unauthenticated(
        "service token living 2 h",
        &h.gateway.service_token(&long_service),
    )
    .await;
    let long_tenant = set(tenant_claims(), "exp", json!(now + 25 * 3600));
    h.refused(
        Code::Unauthenticated,
        "tenant token living 25 h",
        h.exchange(&h.tenant.tenant_token(&long_tenant)),
    )
    .await;
    let backwards = set(service_claims("gateway"), "exp", json!(now - 1));
    h.unauthenticated("exp before iat", &h.gateway.service_token(&backwards))
        .await;

    let day_tenant = set(tenant_claims(), "exp", json!(now + 23 * 3600));
    h.exchange(&h.tenant.tenant_token(&day_tenant))
        .await
        .expect("23 h tenant token");
    assert_eq!(h.hits(), 1);
}

// ---------------------------------------------------------------------------------------------
// Audience, issuer, type
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_audience_is_refused() {
    let h = Harness::start().await;
    let other = set(service_claims("gateway"), "aud", json!(["memory-svc"]));
    h.unauthenticated("aud memory-svc", &h.gateway.service_token(&other))
        .await;
    let string_aud = set(service_claims("gateway"), "aud", json!("memory-svc"));
    h.unauthenticated(
        "aud as another string",
        &h.gateway.service_token(&string_aud),
    )
    .await;
    h.unauthenticated(
        "no aud",
        &h.gateway
            .service_token(&without(service_claims("gateway"), "aud")),
    )
    .await;
    let tenant_elsewhere = set(tenant_claims(), "aud", json!(["media-svc", "memory-svc"]));
    h.refused(
        Code::Unauthenticated,
        "tenant token for other services",
        h.exchange(&h.tenant.tenant_token(&tenant_elsewhere)),
    )
    .await;
}

#[tokio::test]
async fn issuer_must_match_the_key_and_the_kind() {
    let h = Harness::start().await;
    // A key listed for "gateway" signing a token that claims to come from tenant-svc.
    let claims = service_claims(TENANT_TOKEN_ISSUER);
    h.unauthenticated(
        "gateway key, iss tenant-svc",
        &h.gateway.service_token(&claims),
    )
    .await;
    h.refused(
        Code::Unauthenticated,
        "gateway key minting a tenant token",
        h.exchange(&h.gateway.tenant_token(&tenant_claims())),
    )
    .await;
    // A tenant token from an issuer other than tenant-svc, even with its own trusted key.
    let gateway_tenant = set(tenant_claims(), "iss", json!("gateway"));
    h.refused(
        Code::Unauthenticated,
        "tenant token issued by gateway",
        h.exchange(&h.gateway.tenant_token(&gateway_tenant)),
    )
    .await;
    h.unauthenticated(
        "missing iss",
        &h.gateway
            .service_token(&without(service_claims("gateway"), "iss")),
    )
    .await;
    let other_sub = set(service_claims("gateway"), "sub", json!("media-svc"));
    h.unauthenticated(
        "service sub differs from iss",
        &h.gateway.service_token(&other_sub),
    )
    .await;
    h.unauthenticated(
        "missing sub",
        &h.gateway
            .service_token(&without(service_claims("gateway"), "sub")),
    )
    .await;
}

#[tokio::test]
async fn typ_and_kind_must_agree() {
    let h = Harness::start().await;
    let g = &h.gateway;
    let claims = service_claims("gateway");
    for typ in ["JWT", "at+jwt", "tenant+jwt", ""] {
        h.unauthenticated(&format!("typ {typ:?}"), &g.sign(&g.header(typ), &claims))
            .await;
    }
    let no_typ = json!({ "alg": "EdDSA", "kid": g.kid() });
    h.unauthenticated("no typ", &g.sign(&no_typ, &claims)).await;
    let app_typ = g.sign(&g.header("application/service+jwt"), &claims);
    h.resolve(&app_typ)
        .await
        .expect("application/ prefix is the same media type");

    h.unauthenticated(
        "kind tenant under typ service+jwt",
        &g.service_token(&set(claims.clone(), "kind", json!("tenant"))),
    )
    .await;
    h.unauthenticated(
        "no kind",
        &g.service_token(&without(claims.clone(), "kind")),
    )
    .await;
    h.unauthenticated(
        "kind Service",
        &g.service_token(&set(claims.clone(), "kind", json!("Service"))),
    )
    .await;
    let crit = json!({ "alg": "EdDSA", "typ": "service+jwt", "kid": g.kid(), "crit": ["exp"] });
    h.unauthenticated("crit header", &g.sign(&crit, &claims))
        .await;
    assert_eq!(h.hits(), 1);
}

// ---------------------------------------------------------------------------------------------
// Algorithms and keys
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn only_eddsa_is_accepted() {
    let h = Harness::start().await;
    let kid = h.gateway.kid();
    let claims = service_claims("gateway");

    let none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "service+jwt", "kid": kid })),
        b64(&claims)
    );
    h.unauthenticated("alg none", &none).await;
    let none_upper = format!(
        "{}.{}.",
        b64(&json!({ "alg": "None", "typ": "service+jwt", "kid": kid })),
        b64(&claims)
    );
    h.unauthenticated("alg None", &none_upper).await;
    let no_alg = h
        .gateway
        .sign(&json!({ "typ": "service+jwt", "kid": kid }), &claims);
    h.unauthenticated("no alg", &no_alg).await;

    // Algorithm confusion: HMAC keyed with the (public) Ed25519 key bytes.
    let public = *h.gateway.key.public_key().bytes();
    use jsonwebtoken::Algorithm::{HS256, HS384};
    h.unauthenticated(
        "HS256 with the public key as secret",
        &hmac_token(HS256, kid, "service+jwt", &claims, &public),
    )
    .await;
    h.unauthenticated(
        "HS384",
        &hmac_token(HS384, kid, "service+jwt", &claims, &[7u8; 48]),
    )
    .await;
    // RS256: refused on the header alone, so an arbitrary 2048-bit-sized signature suffices.
    let rs256 = unsigned_token(
        &json!({ "alg": "RS256", "typ": "service+jwt", "kid": kid }),
        &claims,
        &[1u8; 256],
    );
    h.unauthenticated("RS256", &rs256).await;
    // A valid EdDSA signature under a header that lies about the algorithm.
    let lying = h.gateway.sign(
        &json!({ "alg": "ES256", "typ": "service+jwt", "kid": kid }),
        &claims,
    );
    h.unauthenticated("ES256 header over an EdDSA signature", &lying)
        .await;
    assert_eq!(h.hits(), 0);
}

#[tokio::test]
async fn unknown_or_missing_kid_is_refused() {
    let h = Harness::start().await;
    let stranger = TestKey::new("gateway");
    h.unauthenticated(
        "untrusted key, own kid",
        &stranger.service_token(&service_claims("gateway")),
    )
    .await;
    // An untrusted key claiming a trusted kid: the signature does not verify.
    let impostor = stranger.sign(&h.gateway.header("service+jwt"), &service_claims("gateway"));
    h.unauthenticated("untrusted key, trusted kid", &impostor)
        .await;
    let no_kid = h.gateway.sign(
        &json!({ "alg": "EdDSA", "typ": "service+jwt" }),
        &service_claims("gateway"),
    );
    h.unauthenticated("no kid", &no_kid).await;
    // The tenant-svc key signing a gateway token under the gateway kid.
    let cross = h
        .tenant
        .sign(&h.gateway.header("service+jwt"), &service_claims("gateway"));
    h.unauthenticated("kid of another key", &cross).await;
}

#[tokio::test]
async fn key_rotation_follows_the_trusted_set() {
    let h = Harness::start().await;
    let old = &h.gateway;
    let new = TestKey::new("gateway");
    let old_token = old.service_token(&service_claims("gateway"));
    let new_token = new.service_token(&service_claims("gateway"));

    h.resolve(&old_token).await.expect("old key while listed");
    h.unauthenticated("new key before it is listed", &new_token)
        .await;

    let mut keys = (*h.verifier.trusted_keys()).clone();
    keys.insert(new.key.public_key());
    h.verifier.replace_keys(keys.clone());
    h.resolve(&old_token).await.expect("old key during overlap");
    h.resolve(&new_token).await.expect("new key during overlap");

    keys.remove(old.kid()).expect("old key was listed");
    h.verifier.replace_keys(keys);
    h.unauthenticated("old key after removal", &old_token).await;
    h.resolve(&new_token)
        .await
        .expect("new key after removal of the old");
    assert_eq!(h.hits(), 4);
}

// ---------------------------------------------------------------------------------------------
// Kinds, scopes, customer ids, policy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_kinds_cannot_be_swapped() {
    let h = Harness::start().await;
    let tenant_token = h.tenant.tenant_token(&set(
        tenant_claims(),
        "scope",
        json!("tenant:resolve tenant:read"),
    ));
    h.refused(
        Code::PermissionDenied,
        "tenant token on a service RPC",
        h.resolve(&tenant_token),
    )
    .await;
    let status = h.resolve(&tenant_token).await.unwrap_err();
    assert_eq!(status.message(), "this method needs a service token");

    let service_token = h.gateway.service_token(&set(
        service_claims("gateway"),
        "scope",
        json!("tenant:read tenant:resolve"),
    ));
    h.refused(
        Code::PermissionDenied,
        "service token on a tenant RPC",
        h.exchange(&service_token),
    )
    .await;
}

#[tokio::test]
async fn scope_must_cover_the_rpc() {
    let h = Harness::start().await;
    let narrow = set(
        service_claims("gateway"),
        "scope",
        json!("tenant:read tenant:resolver"),
    );
    h.refused(
        Code::PermissionDenied,
        "scope tenant:resolver only",
        h.resolve(&h.gateway.service_token(&narrow)),
    )
    .await;
    let none = without(service_claims("gateway"), "scope");
    h.refused(
        Code::PermissionDenied,
        "no scope",
        h.resolve(&h.gateway.service_token(&none)),
    )
    .await;
    let tenant = set(tenant_claims(), "scope", json!("tenant:write"));
    h.refused(
        Code::PermissionDenied,
        "tenant without tenant:read",
        h.exchange(&h.tenant.tenant_token(&tenant)),
    )
    .await;
    let status = h
        .exchange(&h.tenant.tenant_token(&tenant))
        .await
        .unwrap_err();
    assert_eq!(status.message(), "token lacks scope tenant:read");
}

#[tokio::test]
async fn customer_id_belongs_to_tenant_tokens_only() {
    let h = Harness::start().await;
    let with_customer = set(service_claims("gateway"), "customer_id", json!(42));
    h.unauthenticated(
        "service token with customer_id",
        &h.gateway.service_token(&with_customer),
    )
    .await;
    let null_customer = set(service_claims("gateway"), "customer_id", Value::Null);
    h.unauthenticated(
        "service token with customer_id null",
        &h.gateway.service_token(&null_customer),
    )
    .await;

    let u = Code::Unauthenticated;
    let t = &h.tenant;
    h.refused(
        u,
        "tenant without customer_id",
        h.exchange(&t.tenant_token(&without(tenant_claims(), "customer_id"))),
    )
    .await;
    for bad in [json!(0), json!(-5), json!("42"), json!(4.2), Value::Null] {
        let claims = set(tenant_claims(), "customer_id", bad.clone());
        h.refused(
            u,
            &format!("customer_id {bad}"),
            h.exchange(&t.tenant_token(&claims)),
        )
        .await;
    }
    let empty_sub = set(tenant_claims(), "sub", json!(""));
    h.refused(
        u,
        "tenant with empty sub",
        h.exchange(&t.tenant_token(&empty_sub)),
    )
    .await;
    assert_eq!(h.hits(), 0);
}

#[tokio::test]
async fn methods_without_a_rule_are_refused_and_public_paths_pass() {
    let h = Harness::start().await;
    let token = h.gateway.service_token(&service_claims("gateway"));
    let grpc = tonic::client::Grpc::new(h.channel.clone());

    let call = |path: &'static str, token: Option<&str>| {
        let mut grpc = grpc.clone();
        let mut req = Request::new(ResolveNumberRequest::default());
        if let Some(token) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        async move {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let codec =
                tonic_prost::ProstCodec::<ResolveNumberRequest, ResolveNumberResponse>::default();
            grpc.unary(req, http::uri::PathAndQuery::from_static(path), codec)
                .await
        }
    };

    let unknown = "/neurosphere.tenant.v1.EdgeService/DeleteEverything";
    h.refused(
        Code::PermissionDenied,
        "unknown method, valid token",
        call(unknown, Some(&token)),
    )
    .await;
    let status = call(unknown, Some(&token)).await.unwrap_err();
    assert_eq!(status.message(), "no access rule for this method");
    h.refused(
        Code::Unauthenticated,
        "unknown method, no token",
        call(unknown, None),
    )
    .await;
    let other_service = "/neurosphere.tenant.v1.TenantAdminService/DeleteCustomer";
    h.refused(
        Code::PermissionDenied,
        "other service, valid token",
        call(other_service, Some(&token)),
    )
    .await;

    // Health is public: the layer lets it through, and this server has no health service, so
    // the router answers UNIMPLEMENTED rather than the layer answering UNAUTHENTICATED.
    let status = call("/grpc.health.v1.Health/Check", None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(h.hits(), 0);
}

#[tokio::test]
async fn a_policy_without_the_method_refuses_it() {
    // The same service behind a policy that only lists ResolveNumber.
    let tenant = TestKey::new(TENANT_TOKEN_ISSUER);
    let verifier = Verifier::new(AUDIENCE, TrustedKeys::new().with(tenant.key.public_key()));
    let policy = Policy::new().rule(
        &format!("/{EDGE}/ResolveNumber"),
        Rule::service("tenant:resolve").issued_by(&["gateway"]),
    );
    let edge = CountingEdge::default();
    let hits = edge.hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .layer(AuthLayer::new(verifier, Arc::new(policy)))
            .add_service(EdgeServiceServer::new(edge))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = EdgeServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut req = Request::new(ExchangeLegacyTokenRequest::default());
    let token = tenant.tenant_token(&tenant_claims());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let status = client.exchange_legacy_token(req).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// An edge server whose ResolveNumber is the operator's `admin`, or tenant-svc's narrower
/// `erase-tenant`, with keys trusted for the operator, tenant-svc and the gateway; returns its
/// client, the handler's hit counter and the three keys.
async fn alternatives_server() -> (EdgeServiceClient<Channel>, Arc<AtomicUsize>, [TestKey; 3]) {
    let keys = [
        TestKey::new("neurosphere-cli"),
        TestKey::new(TENANT_TOKEN_ISSUER),
        TestKey::new("gateway"),
    ];
    let mut trusted = TrustedKeys::new();
    for k in &keys {
        trusted.insert(k.key.public_key());
    }
    let rule = Rule::service("x:admin")
        .issued_by(&["neurosphere-cli"])
        .or(Rule::service("x:erase-tenant").issued_by(&[TENANT_TOKEN_ISSUER]));
    let policy = Policy::new().rule(&format!("/{EDGE}/ResolveNumber"), rule);
    let edge = CountingEdge::default();
    let hits = edge.hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .layer(AuthLayer::new(
                Verifier::new(AUDIENCE, trusted),
                Arc::new(policy),
            ))
            .add_service(EdgeServiceServer::new(edge))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let client = EdgeServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, hits, keys)
}

#[tokio::test]
async fn a_rule_accepts_only_the_issuers_it_names_for_each_scope() {
    let (mut client, hits, [operator, tenant_svc, gateway]) = alternatives_server().await;
    let mut call = async |key: &TestKey, iss: &str, scope: &str| {
        let claims = set(service_claims(iss), "scope", json!(scope));
        let mut req = Request::new(ResolveNumberRequest::default());
        let token = key.service_token(&claims);
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        client.resolve_number(req).await.map(drop)
    };
    // Each alternative, from its issuer.
    call(&operator, "neurosphere-cli", "x:admin").await.unwrap();
    call(&tenant_svc, TENANT_TOKEN_ISSUER, "x:erase-tenant")
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // A trusted key claiming the scope, but not named by the rule: refused before the handler.
    for (key, iss, scope) in [
        (&gateway, "gateway", "x:admin x:erase-tenant"),
        (&tenant_svc, TENANT_TOKEN_ISSUER, "x:admin"),
        (&operator, "neurosphere-cli", "x:erase-tenant"),
    ] {
        let status = call(key, iss, scope).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{iss} {scope}");
    }
    let status = call(&gateway, "gateway", "x:admin").await.unwrap_err();
    assert_eq!(
        status.message(),
        "this method does not accept tokens issued by gateway"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "a refused call ran the handler"
    );
}

#[test]
#[should_panic(expected = "must name its issuers")]
fn a_service_rule_without_issuers_stops_the_policy() {
    let _ = Policy::new().rule(
        &format!("/{EDGE}/ResolveNumber"),
        Rule::service("tenant:resolve"),
    );
}

#[test]
fn rules_check_issuer_and_scope_per_alternative() {
    let service = |issuer: &str, scope: &str| {
        Caller::Service(ServiceCaller {
            issuer: issuer.into(),
            scopes: mesh::auth::Scopes::parse(scope),
        })
    };
    let rule = Rule::service("m:admin")
        .issued_by(&["neurosphere-cli"])
        .or(Rule::service("m:erase-tenant").issued_by(&["tenant-svc", "other"]));
    assert_eq!(rule.check(&service("neurosphere-cli", "m:admin")), Ok(()));
    assert_eq!(rule.check(&service("other", "a m:erase-tenant")), Ok(()));
    assert_eq!(
        rule.check(&service("tenant-svc", "m:admin")),
        Err(AuthError::MissingScope("m:erase-tenant".into()))
    );
    assert_eq!(
        rule.check(&service("gateway", "m:admin m:erase-tenant")),
        Err(AuthError::IssuerNotAllowed("gateway".into()))
    );
    assert!(AuthError::IssuerNotAllowed("gateway".into()).is_permission_denied());
}

// ---------------------------------------------------------------------------------------------
// Minting
// ---------------------------------------------------------------------------------------------

#[test]
fn only_the_tenant_issuer_mints_tenant_tokens() {
    let customer = CustomerId::new(42).unwrap();
    let ttl = Duration::from_secs(300);
    let gateway = Minter::new(SigningKey::generate("gateway"));
    let err = gateway
        .mint_tenant(customer, "CA1", &[AUDIENCE], &["tenant:read"], ttl)
        .unwrap_err();
    assert!(matches!(err, AuthError::MintRefused(_)), "{err:?}");
    assert!(
        gateway
            .mint_service(AUDIENCE, &["tenant:resolve"], ttl)
            .is_ok()
    );

    let tenant = Minter::new(SigningKey::generate(TENANT_TOKEN_ISSUER));
    assert!(
        tenant
            .mint_tenant(customer, "CA1", &[AUDIENCE], &["tenant:read"], ttl)
            .is_ok()
    );
    let day_and_a_bit = Duration::from_secs(24 * 3600 + 1);
    assert!(
        tenant
            .mint_tenant(
                customer,
                "CA1",
                &[AUDIENCE],
                &["tenant:read"],
                day_and_a_bit
            )
            .is_err()
    );
    assert!(
        gateway
            .mint_service(AUDIENCE, &[], Duration::from_secs(3601))
            .is_err()
    );
    assert!(gateway.mint_service(AUDIENCE, &[], Duration::ZERO).is_err());
    assert!(gateway.mint_service("", &[], ttl).is_err());
    assert!(gateway.mint_service(AUDIENCE, &["two words"], ttl).is_err());
    assert!(
        tenant
            .mint_tenant(customer, "", &[AUDIENCE], &[], ttl)
            .is_err()
    );
    assert!(tenant.mint_tenant(customer, "CA1", &[], &[], ttl).is_err());
}

#[test]
fn minted_tokens_carry_explicit_types_and_verify() {
    let tenant_key = SigningKey::generate(TENANT_TOKEN_ISSUER);
    let keys = TrustedKeys::new().with(tenant_key.public_key());
    let minter = Minter::new(tenant_key);
    let verifier = Verifier::new(AUDIENCE, keys.clone());
    let customer = CustomerId::new(9).unwrap();
    let token = minter
        .mint_tenant(
            customer,
            "CA9",
            &["media-svc", AUDIENCE],
            &["tenant:read"],
            Duration::from_secs(60),
        )
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("tenant+jwt"));
    assert_eq!(header.kid.as_deref(), Some(minter.kid()));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let Caller::Tenant(caller) = verifier.verify(&token).unwrap() else {
        panic!("tenant")
    };
    assert_eq!(caller.customer_id, customer);
    // Addressed to media-svc and tenant-svc, not memory-svc.
    let memory = Verifier::new("memory-svc", keys);
    assert_eq!(memory.verify(&token), Err(AuthError::WrongAudience));

    let service = minter
        .mint_service("memory-svc", &["memory:erase"], Duration::from_secs(60))
        .unwrap();
    let header = jsonwebtoken::decode_header(&service).unwrap();
    assert_eq!(header.typ.as_deref(), Some("service+jwt"));
    let Caller::Service(caller) = memory.verify(&service).unwrap() else {
        panic!("service")
    };
    assert_eq!(caller.issuer, TENANT_TOKEN_ISSUER);
}

#[test]
fn verifier_limits_are_configurable_but_leeway_is_capped() {
    let key = TestKey::new("gateway");
    let keys = TrustedKeys::new().with(key.key.public_key());
    let now = now();
    let expired_45s = key.service_token(&set(
        set(service_claims("gateway"), "iat", json!(now - 100)),
        "exp",
        json!(now - 45),
    ));
    let lenient = Verifier::new(AUDIENCE, keys.clone()).with_leeway(Duration::from_secs(3600));
    assert_eq!(
        lenient.verify(&expired_45s),
        Err(AuthError::Expired),
        "leeway is capped at 30 s"
    );
    let strict = Verifier::new(AUDIENCE, keys.clone()).with_leeway(Duration::ZERO);
    let expired_5s = key.service_token(&set(
        set(service_claims("gateway"), "iat", json!(now - 100)),
        "exp",
        json!(now - 5),
    ));
    assert_eq!(strict.verify(&expired_5s), Err(AuthError::Expired));

    let ten_minutes = key.service_token(&set(service_claims("gateway"), "exp", json!(now + 600)));
    let short = Verifier::new(AUDIENCE, keys).with_max_service_lifetime(Duration::from_secs(300));
    assert!(matches!(
        short.verify(&ten_minutes),
        Err(AuthError::LifetimeTooLong { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Legacy HS256
// ---------------------------------------------------------------------------------------------

const LEGACY_SECRET: &str = "legacy-secret-0123456789abcdefghij";

fn legacy() -> LegacyVerifier {
    LegacyVerifier::new(&SecretString::from(LEGACY_SECRET)).unwrap()
}

fn legacy_token(claims: &Value, secret: &str) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn legacy_claims() -> Value {
    let now = now();
    json!({ "customer_id": 42, "scope": "memory:read", "iat": now, "exp": now + 300 })
}

#[test]
fn legacy_verifier_refuses_short_secrets() {
    let short = SecretString::from("x".repeat(31));
    let err = LegacyVerifier::new(&short).unwrap_err();
    assert_eq!(err, AuthError::WeakSecret { len: 31, min: 32 });
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    assert!(LegacyVerifier::new(&SecretString::from("x".repeat(32))).is_ok());
}

#[test]
fn legacy_verifier_accepts_valid_hs256() {
    let v = legacy();
    let claims = v
        .verify(&legacy_token(&legacy_claims(), LEGACY_SECRET))
        .unwrap();
    assert_eq!(claims.customer_id, CustomerId::new(42).unwrap());
    assert_eq!(claims.scope, "memory:read");
    let minted = v.mint_for_tests(CustomerId::new(5).unwrap(), Duration::from_secs(60));
    assert_eq!(v.verify(&minted).unwrap().customer_id.get(), 5);
}

#[test]
fn legacy_verifier_rejects_bad_tokens() {
    let v = legacy();
    let now = now();
    let expired = set(
        set(legacy_claims(), "iat", json!(now - 600)),
        "exp",
        json!(now - 60),
    );
    assert_eq!(
        v.verify(&legacy_token(&expired, LEGACY_SECRET)),
        Err(AuthError::Expired)
    );
    assert_eq!(
        v.verify(&legacy_token(
            &legacy_claims(),
            "another-secret-0123456789abcdefghij"
        )),
        Err(AuthError::BadSignature)
    );
    let missing_iat = without(legacy_claims(), "iat");
    assert_eq!(
        v.verify(&legacy_token(&missing_iat, LEGACY_SECRET)),
        Err(AuthError::MissingClaim("iat"))
    );
    let missing_exp = without(legacy_claims(), "exp");
    assert_eq!(
        v.verify(&legacy_token(&missing_exp, LEGACY_SECRET)),
        Err(AuthError::MissingClaim("exp"))
    );
    for bad in [json!(0), json!("42"), json!(-1)] {
        let claims = set(legacy_claims(), "customer_id", bad);
        assert_eq!(
            v.verify(&legacy_token(&claims, LEGACY_SECRET)),
            Err(AuthError::InvalidClaim("customer_id"))
        );
    }
    let no_customer = without(legacy_claims(), "customer_id");
    assert!(
        v.verify(&legacy_token(&no_customer, LEGACY_SECRET))
            .is_err()
    );

    // Other algorithms, before anything else.
    let eddsa = TestKey::new("gateway").service_token(&legacy_claims());
    assert!(matches!(
        v.verify(&eddsa),
        Err(AuthError::DisallowedAlgorithm(_))
    ));
    let none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(&legacy_claims())
    );
    assert!(matches!(
        v.verify(&none),
        Err(AuthError::DisallowedAlgorithm(_))
    ));
    let hs384 = hmac_token(
        jsonwebtoken::Algorithm::HS384,
        "k",
        "JWT",
        &legacy_claims(),
        LEGACY_SECRET.as_bytes(),
    );
    assert!(matches!(
        v.verify(&hs384),
        Err(AuthError::DisallowedAlgorithm(_))
    ));
    assert!(v.verify("garbage").is_err());
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

#[test]
fn errors_map_to_the_two_codes_with_short_messages() {
    use mesh::auth::TokenKind;
    let denied = [
        AuthError::NoRule,
        AuthError::MissingScope("tenant:read".into()),
        AuthError::WrongKind {
            expected: TokenKind::Service,
            got: TokenKind::Tenant,
        },
    ];
    for e in denied {
        assert_eq!(e.to_status().code(), Code::PermissionDenied, "{e}");
        assert!(e.is_permission_denied());
    }
    let unauthenticated = [
        AuthError::MissingToken,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::UnknownKey("k".into()),
        AuthError::WrongType,
        AuthError::DisallowedAlgorithm("none".into()),
        AuthError::WeakSecret { len: 1, min: 32 },
    ];
    for e in unauthenticated {
        let status = e.to_status();
        assert_eq!(status.code(), Code::Unauthenticated, "{e}");
        assert!(status.message().len() < 40);
    }
}

// ---------------------------------------------------------------------------------------------
// Precise reasons (the gRPC tests above only see the code)
// ---------------------------------------------------------------------------------------------

/// One verifier case: what it shows, the token, the precise error.
type Case = (&'static str, String, AuthError);

/// The keys and claims the precise-reason cases are built from.
struct CaseKeys {
    tenant: TestKey,
    gateway: TestKey,
    stranger: TestKey,
    /// Service claims with `iat` pinned to `now`, so lifetimes computed from it are exact.
    svc: Value,
    now: i64,
}

/// Tokens that do not parse.
fn unparsable_cases() -> Vec<Case> {
    use AuthError as E;
    vec![
        (
            "garbage",
            "!!!.@@@.###".into(),
            E::Malformed("bad base64url"),
        ),
        (
            "one segment",
            "abc".into(),
            E::Malformed("not a compact JWS"),
        ),
    ]
}

/// Times and lifetimes.
fn time_cases(k: &CaseKeys) -> Vec<Case> {
    use AuthError as E;
    let (gateway, svc, now) = (&k.gateway, k.svc.clone(), k.now);
    vec![
        (
            "expired",
            gateway.service_token(&set(
                set(svc.clone(), "iat", json!(now - 600)),
                "exp",
                json!(now - 60),
            )),
            E::Expired,
        ),
        (
            "missing exp",
            gateway.service_token(&without(svc.clone(), "exp")),
            E::MissingClaim("exp"),
        ),
        (
            "missing iat",
            gateway.service_token(&without(svc.clone(), "iat")),
            E::MissingClaim("iat"),
        ),
        (
            "iat in the future",
            gateway.service_token(&set(
                set(svc.clone(), "iat", json!(now + 120)),
                "exp",
                json!(now + 400),
            )),
            E::IssuedInFuture,
        ),
        (
            "nbf in the future",
            gateway.service_token(&set(svc.clone(), "nbf", json!(now + 120))),
            E::NotYetValid,
        ),
        (
            "lifetime",
            gateway.service_token(&set(svc.clone(), "exp", json!(now + 7200))),
            E::LifetimeTooLong {
                lifetime_secs: 7200,
                max_secs: 3600,
            },
        ),
        (
            "iat at i64::MIN",
            gateway.service_token(&set(svc.clone(), "iat", json!(i64::MIN))),
            E::LifetimeTooLong {
                lifetime_secs: i64::MAX,
                max_secs: 3600,
            },
        ),
    ]
}

/// Audience, issuer, subject, type and the tenant claim.
fn identity_cases(k: &CaseKeys) -> Vec<Case> {
    use AuthError as E;
    let (tenant, gateway, svc) = (&k.tenant, &k.gateway, k.svc.clone());
    let mut cases = vec![
        (
            "wrong aud",
            gateway.service_token(&set(svc.clone(), "aud", json!(["memory-svc"]))),
            E::WrongAudience,
        ),
        (
            "wrong iss",
            gateway.service_token(&service_claims(TENANT_TOKEN_ISSUER)),
            E::WrongIssuer,
        ),
        (
            "tenant from gateway key",
            gateway.tenant_token(&set(tenant_claims(), "iss", json!("gateway"))),
            E::WrongIssuer,
        ),
        (
            "sub differs",
            gateway.service_token(&set(svc.clone(), "sub", json!("x"))),
            E::WrongSubject,
        ),
        (
            "typ JWT",
            gateway.sign(&gateway.header("JWT"), &svc),
            E::WrongType,
        ),
        (
            "typ/kind disagree",
            gateway.sign(&gateway.header("tenant+jwt"), &svc),
            E::WrongType,
        ),
    ];
    cases.extend(vec![
        (
            "service with customer_id",
            gateway.service_token(&set(svc.clone(), "customer_id", json!(1))),
            E::UnexpectedCustomerId,
        ),
        (
            "tenant without customer_id",
            tenant.tenant_token(&without(tenant_claims(), "customer_id")),
            E::MissingClaim("customer_id"),
        ),
        (
            "tenant customer_id 0",
            tenant.tenant_token(&set(tenant_claims(), "customer_id", json!(0))),
            E::InvalidClaim("customer_id"),
        ),
    ]);
    cases
}

/// Algorithms and keys.
fn algorithm_and_key_cases(k: &CaseKeys) -> Vec<Case> {
    use AuthError as E;
    use jsonwebtoken::Algorithm::{HS256, HS384};
    let (gateway, stranger, svc) = (&k.gateway, &k.stranger, k.svc.clone());
    let kid = gateway.kid();
    vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({ "alg": "none", "typ": "service+jwt", "kid": kid })),
                b64(&svc)
            ),
            E::DisallowedAlgorithm("none".into()),
        ),
        (
            "HS256 confusion",
            hmac_token(
                HS256,
                kid,
                "service+jwt",
                &svc,
                gateway.key.public_key().bytes(),
            ),
            E::DisallowedAlgorithm("HS256".into()),
        ),
        (
            "HS384",
            hmac_token(HS384, kid, "service+jwt", &svc, &[7u8; 48]),
            E::DisallowedAlgorithm("HS384".into()),
        ),
        (
            "RS256",
            unsigned_token(
                &json!({ "alg": "RS256", "typ": "service+jwt", "kid": kid }),
                &svc,
                &[1u8; 256],
            ),
            E::DisallowedAlgorithm("RS256".into()),
        ),
        (
            "unknown kid",
            stranger.service_token(&svc),
            E::UnknownKey(stranger.kid().into()),
        ),
        (
            "no kid",
            gateway.sign(&json!({ "alg": "EdDSA", "typ": "service+jwt" }), &svc),
            E::MissingKeyId,
        ),
        (
            "impostor",
            stranger.sign(&gateway.header("service+jwt"), &svc),
            E::BadSignature,
        ),
    ]
}

#[test]
fn verifier_reports_the_precise_reason() {
    let tenant = TestKey::new(TENANT_TOKEN_ISSUER);
    let gateway = TestKey::new("gateway");
    let stranger = TestKey::new("gateway");
    let keys = TrustedKeys::new()
        .with(tenant.key.public_key())
        .with(gateway.key.public_key());
    let v = Verifier::new(AUDIENCE, keys);
    let now = now();
    // iat pinned to `now`, so lifetimes computed below are exact.
    let svc = set(service_claims("gateway"), "iat", json!(now));
    let k = CaseKeys {
        tenant,
        gateway,
        stranger,
        svc,
        now,
    };
    let cases = [
        unparsable_cases(),
        time_cases(&k),
        identity_cases(&k),
        algorithm_and_key_cases(&k),
    ];
    for (why, token, expected) in cases.into_iter().flatten() {
        assert_eq!(v.verify(&token), Err(expected), "{why}");
    }
    assert!(v.verify(&k.gateway.service_token(&k.svc)).is_ok());
    assert!(v.verify(&k.tenant.tenant_token(&tenant_claims())).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Tracing: the tenant is recorded on the request span
// ---------------------------------------------------------------------------------------------

/// Collects every `customer_id` recorded on any span.
#[derive(Clone, Default)]
struct RecordedCustomerIds(Arc<Mutex<Vec<i64>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RecordedCustomerIds {
    fn on_record(
        &self,
        _span: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Visit<'a>(&'a Mutex<Vec<i64>>);
        impl tracing::field::Visit for Visit<'_> {
            fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
                if field.name() == "customer_id" {
                    self.0.lock().unwrap().push(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        values.record(&mut Visit(&self.0));
    }
}

#[tokio::test]
async fn tenant_customer_id_is_recorded_on_the_request_span() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let recorded = RecordedCustomerIds::default();
    // Thread-local: the current-thread test runtime runs server and client on this thread.
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorded.clone()));

    let tenant = TestKey::new(TENANT_TOKEN_ISSUER);
    let verifier = Verifier::new(AUDIENCE, TrustedKeys::new().with(tenant.key.public_key()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            // As in `mesh::server`: the span is made (and entered) by the outer trace layer.
            .layer(
                tower_http::trace::TraceLayer::new_for_grpc().make_span_with(
                    |_: &http::Request<tonic::body::Body>| {
                        tracing::info_span!("rpc", customer_id = tracing::field::Empty)
                    },
                ),
            )
            .layer(AuthLayer::new(verifier, Arc::new(full_policy())))
            .add_service(EdgeServiceServer::new(CountingEdge::default()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = EdgeServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut req = Request::new(ExchangeLegacyTokenRequest::default());
    let token = tenant.tenant_token(&set(tenant_claims(), "customer_id", json!(4242)));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    client
        .exchange_legacy_token(req)
        .await
        .expect("valid tenant token");
    assert_eq!(*recorded.0.lock().unwrap(), [4242]);
}
