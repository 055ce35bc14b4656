//! Who may use tenant-svc's admin powers: every `TenantAdminService` method is the operator's
//! (media-svc may also ask `IssueTenantToken`, for exactly what its peers' calls need), and the
//! edge is the gateway's. Another service's key claiming `tenant:admin` is refused by the auth
//! layer with PERMISSION_DENIED before any handler runs, and nothing changes.

use std::time::Duration;

use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::common::{self, Replica, auth};

const NUMBER: &str = "+14155550131";

struct Svc {
    db: TestDb,
    keys: DevKeys,
    channel: Channel,
    peers: common::Peers,
    _replica: Replica,
}

impl Svc {
    async fn start() -> Svc {
        let db = TestDb::new().await;
        let keys = DevKeys::generate();
        let peers = common::Peers {
            memory: common::dead_addr().await,
            media: common::dead_addr().await,
        };
        let replica = common::serve_with_peers(&db, &keys, None, false, &peers).await;
        Svc {
            db,
            keys,
            channel: replica.channel.clone(),
            peers,
            _replica: replica,
        }
    }

    /// memory-svc and media-svc at this replica's peer addresses (DeleteCustomer erases the
    /// customer there), until the guard drops.
    async fn erasers(&self) -> tokio::sync::watch::Sender<bool> {
        common::serve_peers(&self.db, &self.keys, &self.peers, true, true).await
    }

    fn admin(&self) -> TenantAdminServiceClient<Channel> {
        TenantAdminServiceClient::new(self.channel.clone())
    }

    /// A service token signed by `issuer`'s own key, for tenant-svc, with `scopes`.
    fn token(&self, issuer: &str, scopes: &[&str]) -> String {
        self.keys
            .identity(issuer)
            .minter()
            .mint_service(names::TENANT_SVC, scopes, Duration::from_secs(300))
            .unwrap()
    }

    /// Every row of tenant-svc's tables, as one digest (what a refused call must not change).
    async fn digest(&self) -> String {
        let sql = [
            "tenant.customers",
            "tenant.phone_numbers",
            "tenant.customer_configurations",
            "tenant.platform_defaults",
        ]
        .iter()
        .map(|t| {
            format!(
                "(SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x)"
            )
        })
        .collect::<Vec<_>>()
        .join(" || ");
        let c = self.db.admin_client().await;
        c.query_one(&format!("SELECT {sql}"), &[])
            .await
            .unwrap()
            .get(0)
    }

    /// A customer with a number, created by the operator.
    async fn customer(&self, email: &str) -> i64 {
        let op = self.token(names::OPERATOR, &[scope::TENANT_ADMIN]);
        let c = self
            .admin()
            .create_customer(auth(
                CreateCustomerRequest {
                    email: email.into(),
                    business_name: "Issuer Test Agency".into(),
                    ..Default::default()
                },
                &op,
            ))
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        c.id
    }
}

/// Every `TenantAdminService` method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    GetCustomer,
    ListCustomers,
    GetPlatformDefaults,
    UpdatePlatformDefaults,
    IssueTenantToken,
    SetCustomerStatus,
    AssignPhoneNumber,
    ReleasePhoneNumber,
    CreateCustomer,
    DeleteCustomer,
}

/// In an order in which the operator's calls all succeed.
const METHODS: [Method; 10] = [
    Method::GetCustomer,
    Method::ListCustomers,
    Method::GetPlatformDefaults,
    Method::UpdatePlatformDefaults,
    Method::IssueTenantToken,
    Method::SetCustomerStatus,
    Method::AssignPhoneNumber,
    Method::ReleasePhoneNumber,
    Method::CreateCustomer,
    Method::DeleteCustomer,
];

/// Calls `method` about `customer` with `token`: a request the operator may make.
async fn call(
    admin: &mut TenantAdminServiceClient<Channel>,
    method: Method,
    token: &str,
    customer: i64,
) -> Result<(), Status> {
    let id = customer;
    match method {
        Method::GetCustomer => admin
            .get_customer(auth(GetCustomerRequest { customer_id: id }, token))
            .await
            .map(drop),
        Method::ListCustomers => admin
            .list_customers(auth(ListCustomersRequest::default(), token))
            .await
            .map(drop),
        Method::GetPlatformDefaults => admin
            .get_platform_defaults(auth(GetPlatformDefaultsRequest {}, token))
            .await
            .map(drop),
        Method::UpdatePlatformDefaults => {
            let request = UpdatePlatformDefaultsRequest {
                defaults: Some(PlatformDefaults {
                    agent_name: "Riley".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["agent_name".into()],
                }),
            };
            admin
                .update_platform_defaults(auth(request, token))
                .await
                .map(drop)
        }
        Method::IssueTenantToken => admin
            .issue_tenant_token(auth(issue(id, &[scope::TENANT_READ], &[], 600), token))
            .await
            .map(drop),
        Method::SetCustomerStatus => {
            let request = SetCustomerStatusRequest {
                customer_id: id,
                status: CustomerStatus::Suspended.into(),
            };
            admin
                .set_customer_status(auth(request, token))
                .await
                .map(drop)
        }
        Method::AssignPhoneNumber => {
            let request = AssignPhoneNumberRequest {
                customer_id: id,
                number: NUMBER.into(),
                twilio_account_sid: String::new(),
            };
            admin
                .assign_phone_number(auth(request, token))
                .await
                .map(drop)
        }
        Method::ReleasePhoneNumber => {
            let request = ReleasePhoneNumberRequest {
                customer_id: id,
                number: NUMBER.into(),
            };
            admin
                .release_phone_number(auth(request, token))
                .await
                .map(drop)
        }
        Method::CreateCustomer => {
            let request = CreateCustomerRequest {
                email: "new@issuers.example".into(),
                business_name: "New Agency".into(),
                ..Default::default()
            };
            admin.create_customer(auth(request, token)).await.map(drop)
        }
        Method::DeleteCustomer => admin
            .delete_customer(auth(DeleteCustomerRequest { customer_id: id }, token))
            .await
            .map(drop),
    }
}

/// An `IssueTenantToken` request.
fn issue(customer: i64, scopes: &[&str], audiences: &[&str], ttl: i64) -> IssueTenantTokenRequest {
    IssueTenantTokenRequest {
        customer_id: customer,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        ttl: Some(prost_types::Duration {
            seconds: ttl,
            nanos: 0,
        }),
        subject: "issuer-test".into(),
    }
}

#[tokio::test]
async fn other_services_keys_claiming_tenant_admin_are_refused_on_every_admin_method() {
    let s = Svc::start().await;
    let victim = s.customer("victim@issuers.example").await;
    let mut admin = s.admin();
    let before = s.digest().await;
    for issuer in [names::GATEWAY, names::MEMORY_SVC, names::MEDIA_SVC] {
        // Every scope a service token could claim here.
        let token = s.token(
            issuer,
            &[
                scope::TENANT_ADMIN,
                scope::TENANT_RESOLVE,
                scope::TENANT_EXCHANGE,
            ],
        );
        for method in METHODS {
            if issuer == names::MEDIA_SVC && method == Method::IssueTenantToken {
                continue; // media-svc's own case: the next test.
            }
            let err = call(&mut admin, method, &token, victim)
                .await
                .expect_err(&format!("{issuer} on {method:?}"));
            assert_eq!(err.code(), Code::PermissionDenied, "{issuer} {method:?}");
            // media-svc may call the two number methods, with `tenant:numbers` only: claiming
            // `tenant:admin` instead is refused by the auth layer for the scope it lacks.
            let numbers_method = matches!(
                method,
                Method::AssignPhoneNumber | Method::ReleasePhoneNumber
            );
            let expected = if issuer == names::MEDIA_SVC && numbers_method {
                format!("token lacks scope {}", scope::TENANT_NUMBERS)
            } else {
                format!("this method does not accept tokens issued by {issuer}")
            };
            assert_eq!(
                err.message(),
                expected,
                "refused by the auth layer, not the handler"
            );
        }
    }
    assert_eq!(
        s.digest().await,
        before,
        "a refused admin call changed a row"
    );

    // The operator's token still does every one of them.
    let _erasers = s.erasers().await;
    let op = s.token(names::OPERATOR, &[scope::TENANT_ADMIN]);
    for method in METHODS {
        call(&mut admin, method, &op, victim)
            .await
            .unwrap_or_else(|e| panic!("operator on {method:?}: {e:?}"));
    }
    assert_ne!(s.digest().await, before);
}

#[tokio::test]
async fn media_svc_may_issue_only_the_tenant_tokens_its_calls_need() {
    let s = Svc::start().await;
    let id = s.customer("media@issuers.example").await;
    let media = s.token(names::MEDIA_SVC, &[scope::TENANT_ADMIN]);
    let mut admin = s.admin();
    // What media-svc asks for (media-svc/src/peers.rs) is granted: its peer token and the
    // one-minute token that erases a caller's memory.
    for allowed in scope::MEDIA_SVC_ISSUABLE {
        let ttl = allowed.max_ttl.as_secs() as i64;
        let ok = issue(id, allowed.scopes, allowed.audiences, ttl);
        let token = (admin.issue_tenant_token(auth(ok, &media)).await)
            .unwrap()
            .into_inner()
            .token;
        let caller = (s.keys.identity(names::MEMORY_SVC))
            .verifier(names::MEMORY_SVC)
            .verify(&token)
            .unwrap();
        assert_eq!(caller.customer_id().map(|c| c.get()), Some(id));
    }

    // Anything more is refused, naming what was refused.
    let peer = scope::MEDIA_SVC_PEER_TOKEN.audiences;
    let memory = &[names::MEMORY_SVC][..];
    for (request, message) in [
        (
            issue(id, &[scope::TENANT_READ, scope::MEDIA_OUTBOUND], peer, 60),
            "scopes: media-svc may not ask for media:outbound",
        ),
        (
            issue(id, &[scope::MEMORY_EXPORT, scope::TENANT_WRITE], peer, 60),
            "scopes: media-svc may not ask for memory:export, tenant:write",
        ),
        // Each allowed on its own, never together.
        (
            issue(id, &[scope::MEMORY_READ, scope::MEMORY_ERASE], memory, 60),
            "scopes: media-svc may not ask for memory:read, memory:erase in one token",
        ),
        (
            issue(id, &[scope::TENANT_READ], &[names::MEDIA_SVC], 60),
            "audiences: media-svc may not ask for media-svc",
        ),
        (
            issue(id, &[scope::MEMORY_ERASE], peer, 60),
            "audiences: media-svc may not ask for tenant-svc",
        ),
        // No audience means every service, media-svc included.
        (
            issue(id, &[scope::TENANT_READ], &[], 60),
            "audiences: media-svc may not ask for media-svc",
        ),
        (
            issue(id, &[scope::TENANT_READ], peer, 901),
            "ttl: media-svc may ask for at most 900 s for this token",
        ),
        (
            issue(id, &[scope::MEMORY_ERASE], memory, 61),
            "ttl: media-svc may ask for at most 60 s for this token",
        ),
    ] {
        let err = admin
            .issue_tenant_token(auth(request, &media))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert_eq!(err.message(), message);
    }
    // The operator may ask for those.
    let op = s.token(names::OPERATOR, &[scope::TENANT_ADMIN]);
    admin
        .issue_tenant_token(auth(
            issue(id, &[scope::MEDIA_OUTBOUND], &[names::MEDIA_SVC], 3600),
            &op,
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_edge_is_the_gateways_alone() {
    let s = Svc::start().await;
    let id = s.customer("edge@issuers.example").await;
    let op = s.token(names::OPERATOR, &[scope::TENANT_ADMIN]);
    let number = AssignPhoneNumberRequest {
        customer_id: id,
        number: NUMBER.into(),
        twilio_account_sid: String::new(),
    };
    s.admin()
        .assign_phone_number(auth(number, &op))
        .await
        .unwrap();
    let mut edge = EdgeServiceClient::new(s.channel.clone());
    let resolve = || ResolveNumberRequest {
        called_number: NUMBER.into(),
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        call_sid: "CA0123456789abcdef0123456789abcdef".into(),
    };
    let scopes = [
        scope::TENANT_RESOLVE,
        scope::TENANT_EXCHANGE,
        scope::TENANT_ADMIN,
    ];
    for issuer in [names::OPERATOR, names::MEDIA_SVC, names::MEMORY_SVC] {
        let token = s.token(issuer, &scopes);
        let err = edge
            .resolve_number(auth(resolve(), &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{issuer}: {err:?}");
        let err = edge
            .exchange_legacy_token(auth(ExchangeLegacyTokenRequest::default(), &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{issuer}: {err:?}");
    }
    let gateway = s.token(names::GATEWAY, &[scope::TENANT_RESOLVE]);
    let r = edge
        .resolve_number(auth(resolve(), &gateway))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.customer_id, id);
}
