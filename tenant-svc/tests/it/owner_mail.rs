//! `TenantAdminService.NotifyOwners` (issue 20: the e-mail to a tenant's owners when a caller
//! leaves a message) over real gRPC against a real PostgreSQL, with real accounts (invited and
//! accepted), mail written to an `.eml` outbox folder or sent to a real SMTP server (aiosmtpd):
//! each active owner of the customer once per task (staff, disabled owners and other tenants'
//! owners never), a link to the portal and nothing of the message; who may call it; bad input;
//! no mail settings; a mail server that is down, then back.

use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{DevKeys, names, scope};
use mesh::mail::{MailTransport, Mailer};
use mesh::testkit::smtp::{SmtpServer, free_port, read_mails};
use tonic::{Code, Status};

use crate::accounts::Svc;
use crate::common::{self, auth};

const BASE: &str = "https://edge.example.com";
const TASK: &str = "0b7c9a52-59f4-4d0e-9d7e-2f1c3a4b5c6d";

fn with_mail(transport: MailTransport) -> tenant_svc::account::AccountConfig {
    tenant_svc::account::AccountConfig {
        owner_mail: Some(tenant_svc::notice::OwnerMail {
            mailer: Mailer::new(&transport, "NeuroSphere <no-reply@mesh.example>"),
            base_url: BASE.into(),
        }),
        ..Default::default()
    }
}

/// media-svc's service token for tenant-svc with `scopes`.
fn media_token(keys: &DevKeys, scopes: &[&str]) -> String {
    keys.identity(names::MEDIA_SVC)
        .minter()
        .mint_service(
            names::TENANT_SVC,
            scopes,
            std::time::Duration::from_secs(300),
        )
        .unwrap()
}

fn request(customer: i64, task: &str) -> NotifyOwnersRequest {
    NotifyOwnersRequest {
        customer_id: customer,
        kind: OwnerNotice::MessageTaken.into(),
        task_id: task.into(),
        reason: MessageReason::BackendDown.into(),
        ..Default::default()
    }
}

async fn notify(
    s: &Svc,
    token: &str,
    r: NotifyOwnersRequest,
) -> Result<NotifyOwnersResponse, Status> {
    TenantAdminServiceClient::new(s.channel.clone())
        .notify_owners(auth(r, token))
        .await
        .map(|r| r.into_inner())
}

/// The `To:` of each mail.
fn recipients(mails: &[String]) -> Vec<String> {
    let mut to: Vec<String> = mails
        .iter()
        .map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("To: "))
                .expect("a To: header")
                .trim()
                .to_owned()
        })
        .collect();
    to.sort();
    to
}

/// Two owners, one staff user and one disabled owner at Acme; one owner at Bravo.
async fn two_tenants(s: &Svc) -> (i64, i64) {
    let acme = s.customer("Acme").await;
    let bravo = s.customer("Bravo").await;
    s.user(acme, "owner1@acme.example", UserRole::Owner).await;
    s.user(acme, "owner2@acme.example", UserRole::Owner).await;
    s.user(acme, "staff@acme.example", UserRole::Staff).await;
    s.user(acme, "gone@acme.example", UserRole::Owner).await;
    s.db.admin_client()
        .await
        .execute(
            "UPDATE tenant.users SET disabled_at = now() WHERE email = 'gone@acme.example'",
            &[],
        )
        .await
        .unwrap();
    s.user(bravo, "owner@bravo.example", UserRole::Owner).await;
    (acme, bravo)
}

/// Each active owner of the customer gets one mail per task, with the portal link and nothing
/// of the message; staff, a disabled owner and the other tenant's owner get none; a repeat mails
/// nobody again; the same task id at another tenant is that tenant's own.
#[tokio::test]
async fn each_active_owner_is_mailed_once_per_task_and_nobody_else() {
    let outbox = tempfile::tempdir().unwrap();
    let s = Svc::with(with_mail(MailTransport::Outbox(outbox.path().into()))).await;
    let (acme, bravo) = two_tenants(&s).await;
    let media = media_token(&s.keys, &[scope::TENANT_NOTIFY_OWNERS]);

    let r = notify(&s, &media, request(acme, TASK)).await.unwrap();
    assert_eq!((r.mail_configured, r.sent, r.already_sent), (true, 2, 0));
    let mails = read_mails(outbox.path());
    assert_eq!(
        recipients(&mails),
        ["owner1@acme.example", "owner2@acme.example"]
    );
    for mail in &mails {
        assert!(mail.contains("Subject: New message for Acme"), "{mail}");
        assert!(mail.contains(&format!("{BASE}/portal/messages")), "{mail}");
        assert!(mail.contains("no-reply@mesh.example"), "{mail}");
    }

    // A repeat (media-svc's outbox retrying after a lost answer) mails nobody twice.
    let r = notify(&s, &media, request(acme, TASK)).await.unwrap();
    assert_eq!((r.sent, r.already_sent), (0, 2));
    assert_eq!(read_mails(outbox.path()).len(), 2);

    // The same task id at Bravo is Bravo's own: its owner only.
    let r = notify(&s, &media, request(bravo, TASK)).await.unwrap();
    assert_eq!((r.sent, r.already_sent), (1, 0));
    let mails = read_mails(outbox.path());
    assert_eq!(mails.len(), 3);
    assert_eq!(
        recipients(&mails),
        [
            "owner1@acme.example",
            "owner2@acme.example",
            "owner@bravo.example"
        ]
    );
    assert!(
        mails
            .iter()
            .any(|m| m.contains("To: owner@bravo.example") && m.contains("New message for Bravo"))
    );
}

/// Wrong issuers and scopes are refused by the auth layer, bad input names the field, an unknown
/// customer is NOT_FOUND: nothing is sent or recorded.
#[tokio::test]
async fn wrong_tokens_and_bad_input_are_refused_and_nothing_is_sent() {
    let outbox = tempfile::tempdir().unwrap();
    let s = Svc::with(with_mail(MailTransport::Outbox(outbox.path().into()))).await;
    let (acme, _) = two_tenants(&s).await;
    let media = media_token(&s.keys, &[scope::TENANT_NOTIFY_OWNERS]);
    // Refused before the handler: the gateway or the operator with the scope, media-svc
    // without it, a tenant token, no token. Nothing sent, nothing recorded.
    let other_task = "7e0f4c1a-1111-4e2b-8c3d-000000000001";
    for (token, code) in [
        (
            common::gateway_token(&s.keys, &[scope::TENANT_NOTIFY_OWNERS]),
            Code::PermissionDenied,
        ),
        (
            common::operator_token(&s.keys, &[scope::TENANT_NOTIFY_OWNERS]),
            Code::PermissionDenied,
        ),
        (
            media_token(&s.keys, &[scope::TENANT_ADMIN]),
            Code::PermissionDenied,
        ),
        (
            common::tenant_token(&s.keys, acme, &[scope::TENANT_READ, scope::TENANT_WRITE]),
            Code::PermissionDenied,
        ),
        ("not-a-token".to_owned(), Code::Unauthenticated),
    ] {
        let e = notify(&s, &token, request(acme, other_task))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
    }

    // Bad input names the field; an unknown customer is NOT_FOUND.
    let bad = |f: fn(&mut NotifyOwnersRequest)| {
        let mut r = request(acme, other_task);
        f(&mut r);
        r
    };
    for (r, field) in [
        (bad(|r| r.task_id = "nope".into()), "task_id"),
        (bad(|r| r.kind = 0), "kind"),
        (bad(|r| r.reason = 0), "reason"),
        (bad(|r| r.reason = 99), "reason"),
        (bad(|r| r.customer_id = 0), "customer_id"),
    ] {
        let e = notify(&s, &media, r).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{e:?}");
    }
    let e = notify(&s, &media, request(999_999, other_task))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(read_mails(outbox.path()).len(), 0, "nothing sent");
    assert_eq!(
        s.count("SELECT count(*) FROM tenant.owner_notifications")
            .await,
        0
    );
    // The right token for the same task still works afterwards.
    let r = notify(&s, &media, request(acme, other_task)).await.unwrap();
    assert_eq!(r.sent, 2);
}

/// Without mail settings the request is answered OK and nothing is sent or recorded.
#[tokio::test]
async fn without_mail_settings_it_is_ok_and_nothing_is_sent() {
    let s = Svc::start().await;
    let (acme, _) = two_tenants(&s).await;
    let media = media_token(&s.keys, &[scope::TENANT_NOTIFY_OWNERS]);
    let r = notify(&s, &media, request(acme, TASK)).await.unwrap();
    assert_eq!((r.mail_configured, r.sent, r.already_sent), (false, 0, 0));
    assert_eq!(
        s.count("SELECT count(*) FROM tenant.owner_notifications")
            .await,
        0
    );
}

/// A mail server that is down answers UNAVAILABLE (media-svc retries) with nothing recorded;
/// once it is back the retry mails each owner once, and a further repeat mails nobody.
#[tokio::test]
async fn a_mail_server_down_is_unavailable_and_the_retry_mails_each_owner_once() {
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let s = Svc::with(with_mail(MailTransport::Smtp(url.into()))).await;
    let (acme, _) = two_tenants(&s).await;
    let media = media_token(&s.keys, &[scope::TENANT_NOTIFY_OWNERS]);
    let e = notify(&s, &media, request(acme, TASK)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(
        s.count("SELECT count(*) FROM tenant.owner_notifications")
            .await,
        0
    );

    let Some(smtp) = SmtpServer::start_on(port).await else {
        return;
    };
    let r = notify(&s, &media, request(acme, TASK)).await.unwrap();
    assert_eq!((r.sent, r.already_sent), (2, 0));
    let r = notify(&s, &media, request(acme, TASK)).await.unwrap();
    assert_eq!((r.sent, r.already_sent), (0, 2));
    let mails = smtp.wait_for(2).await;
    assert_eq!(
        recipients(&mails),
        ["owner1@acme.example", "owner2@acme.example"]
    );
    assert_eq!(smtp.messages().len(), 2, "no duplicate");
}

/// The usage warning (media-svc's billing at 80 % of a monthly cap): each active owner once per
/// notice, the share and month in the mail and nothing else; a bad share or month is refused
/// naming the field and mails nobody.
#[tokio::test]
async fn the_usage_warning_mails_each_owner_once_and_bad_fields_are_named() {
    let outbox = tempfile::tempdir().unwrap();
    let s = Svc::with(with_mail(MailTransport::Outbox(outbox.path().into()))).await;
    let (acme, _) = two_tenants(&s).await;
    let media = media_token(&s.keys, &[scope::TENANT_NOTIFY_OWNERS]);
    let warning = |percent: i32, month: &str| NotifyOwnersRequest {
        customer_id: acme,
        kind: OwnerNotice::UsageWarning.into(),
        task_id: TASK.into(),
        percent_used: percent,
        month: month.into(),
        ..Default::default()
    };
    for (r, field) in [
        (warning(0, "2026-12"), "percent_used"),
        (warning(85, "2026-13"), "month"),
    ] {
        let e = notify(&s, &media, r).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains(field), "{}", e.message());
    }
    assert!(read_mails(outbox.path()).is_empty());
    let r = notify(&s, &media, warning(85, "2026-12")).await.unwrap();
    assert_eq!((r.sent, r.already_sent), (2, 0));
    for mail in read_mails(outbox.path()) {
        assert!(
            mail.contains("has used 85% of this month's minutes"),
            "{mail}"
        );
        assert!(mail.contains(&format!("{BASE}/portal/usage")), "{mail}");
    }
    let r = notify(&s, &media, warning(85, "2026-12")).await.unwrap();
    assert_eq!((r.sent, r.already_sent), (0, 2));
}
