//! Onboarding after the sign-up (issue 21): a pending customer refused for routing, tokens,
//! numbers, the legacy exchange and the portal's token; approval mailing the owners once; the
//! first routed number welcomed once; automatic approval. Over real gRPC against a real
//! PostgreSQL, mail in an `.eml` outbox (the sign-up module's harness).

use std::time::Duration;

use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::api::tenant::*;
use mesh::domain::CustomerId;
use mesh::identity::scope;
use tonic::Code;

use crate::common::{self, auth};
use crate::signup::{ACCOUNT, BASE, S, request};

/// A pending customer: its owner's session mints no token (the portal shows the waiting page),
/// no tenant token is issued, no number is assigned (nothing stored), the legacy exchange is
/// refused, and a number routed to it (put there behind the service's back) is refused like a
/// suspended customer's. Another, active customer is unaffected.
#[tokio::test]
async fn a_pending_customer_gets_no_token_number_legacy_exchange_or_call() {
    let s = S::start(false, 50).await;
    let v = s.signed_up("Waiting Co", "wait@waiting.example", 1).await;
    let id = v.user.unwrap().customer_id;
    let secret = v.session.unwrap().secret;

    let x = s.exchange(&secret).await.unwrap();
    assert!(x.pending_approval);
    assert!(x.tenant_token.is_empty() && x.scopes.is_empty());
    assert_eq!(x.user.unwrap().business_name, "Waiting Co");

    let e = s
        .admin()
        .issue_tenant_token(auth(
            IssueTenantTokenRequest {
                customer_id: id,
                scopes: vec![scope::TENANT_READ.into()],
                ..Default::default()
            },
            &s.operator(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("pending approval"), "{e:?}");

    let before = s.snapshot().await;
    let e = s.assign(id, "+15005550006").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(s.snapshot().await, before, "no number, no history row");

    let legacy = s
        .legacy
        .mint_for_tests(CustomerId::new(id).unwrap(), Duration::from_secs(600));
    let gw = common::gateway_token(&s.keys, &[scope::TENANT_EXCHANGE]);
    let e = EdgeServiceClient::new(s.replica.channel.clone())
        .exchange_legacy_token(auth(
            ExchangeLegacyTokenRequest {
                legacy_token: legacy,
            },
            &gw,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    s.db.admin_client()
        .await
        .execute(
            &format!(
                "INSERT INTO tenant.phone_numbers (customer_id, number) VALUES ({id}, '+15005550007')"
            ),
            &[],
        )
        .await
        .unwrap();
    let resolve = ResolveNumberRequest {
        called_number: "+15005550007".into(),
        account_sid: ACCOUNT.into(),
        call_sid: "CA0123456789abcdef0123456789abcdef".into(),
    };
    let gw = common::gateway_token(&s.keys, &[scope::TENANT_RESOLVE]);
    let e = EdgeServiceClient::new(s.replica.channel.clone())
        .resolve_number(auth(resolve, &gw))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // An operator may not put a customer back to PENDING.
    let e = s.set_status(id, CustomerStatus::Pending).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

/// Approval (PENDING -> ACTIVE) mails the owners "choose your number" once and is audited; the
/// session then mints tokens. Suspending and reinstating mails nothing more. The first routed
/// number welcomes the owners once; a second number, a release and a new assignment do not.
#[tokio::test]
async fn approval_and_the_first_number_each_mail_the_owners_once() {
    let s = S::start(false, 50).await;
    let v = s.signed_up("Approved Co", "boss@approved.example", 1).await;
    let id = v.user.unwrap().customer_id;
    let secret = v.session.unwrap().secret;

    let c = s.set_status(id, CustomerStatus::Active).await.unwrap();
    assert_eq!(c.status, CustomerStatus::Active as i32);
    let mails = s.mails(2).await;
    let approved = mails.iter().find(|m| m.contains("is approved")).unwrap();
    assert!(approved.contains("To: boss@approved.example"));
    assert!(approved.contains(&format!("{BASE}/portal/numbers")));
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM tenant.audit_log WHERE customer_id = {id} \
             AND action = 'customer.approved'"
        ))
        .await,
        1
    );
    let x = s.exchange(&secret).await.unwrap();
    assert!(!x.pending_approval);
    assert!(!x.tenant_token.is_empty());

    s.set_status(id, CustomerStatus::Active).await.unwrap();
    s.set_status(id, CustomerStatus::Suspended).await.unwrap();
    s.set_status(id, CustomerStatus::Active).await.unwrap();

    s.assign(id, "+15005550006").await.unwrap();
    let mails = s.mails(3).await;
    let welcome = mails.iter().find(|m| m.contains("Welcome")).unwrap();
    assert!(welcome.contains("To: boss@approved.example"));
    assert!(welcome.contains("+15005550006"));
    s.assign(id, "+15005550008").await.unwrap();
    s.admin()
        .release_phone_number(auth(
            ReleasePhoneNumberRequest {
                customer_id: id,
                number: "+15005550006".into(),
            },
            &s.operator(),
        ))
        .await
        .unwrap();
    s.admin()
        .release_phone_number(auth(
            ReleasePhoneNumberRequest {
                customer_id: id,
                number: "+15005550008".into(),
            },
            &s.operator(),
        ))
        .await
        .unwrap();
    s.assign(id, "+15005550009").await.unwrap();
    // A later mail to another customer shows nothing else was queued for this one.
    s.sign_up(request("Later Co", "later@later.example"))
        .await
        .unwrap();
    let mails = s.mails(4).await;
    assert_eq!(
        mails.iter().filter(|m| m.contains("is approved")).count(),
        1
    );
    assert_eq!(mails.iter().filter(|m| m.contains("Welcome")).count(), 1);
}

/// `TENANT_SIGNUP_AUTO_APPROVE`: the verified customer is ACTIVE at once and its session mints
/// the owner's token; no approval mail is sent (there was no approval).
#[tokio::test]
async fn under_automatic_approval_the_verified_customer_is_active() {
    let s = S::start(true, 50).await;
    let v = s.signed_up("Quick Co", "quick@quick.example", 1).await;
    assert_eq!(v.status, CustomerStatus::Active as i32);
    let x = s.exchange(&v.session.unwrap().secret).await.unwrap();
    assert!(!x.pending_approval);
    assert!(x.scopes.iter().any(|s| s == scope::TENANT_WRITE));
}
