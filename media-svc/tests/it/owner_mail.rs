//! The e-mail to a tenant's owners when a caller leaves a message (issue 20), end to end: real
//! PostgreSQL, real tenant-svc (accounts, mail settings, `NotifyOwners`), real memory-svc,
//! media-svc over gRPC with the realtime backend unreachable (so each call goes to the message
//! flow), mail written to tenant-svc's `.eml` outbox folder or sent to a real SMTP server
//! (aiosmtpd). The notice is queued in media-svc's outbox with the task and delivered with
//! retries; each owner gets one mail with the portal link and nothing of the message.

use std::time::{Duration, Instant};

use media_svc::CallConfig;
use mesh::mail::{MailTransport, Mailer};
use mesh::testkit::smtp::{SmtpServer, free_port, read_mails};
use webhooks::{CALLER, Mesh, Mode, Receiver};

use crate::messages::{
    backend_down, hear_prompt, leave_message_and_hang_up, open, unreachable_realtime,
};
use crate::{common, webhooks};

const BASE: &str = "http://127.0.0.1:8080";

fn mail_to(transport: MailTransport) -> tenant_svc::account::AccountConfig {
    tenant_svc::account::AccountConfig {
        owner_mail: Some(tenant_svc::notice::OwnerMail {
            mailer: Mailer::new(&transport, "NeuroSphere <no-reply@localhost>"),
            base_url: BASE.into(),
        }),
        ..Default::default()
    }
}

/// The backend down, and the outbox retrying every 100-400 ms.
async fn config() -> impl FnOnce(CallConfig) -> CallConfig {
    let down = backend_down(unreachable_realtime().await);
    move |c| {
        let mut c = down(c);
        c.outbox.base_backoff = Duration::from_millis(100);
        c.outbox.max_backoff = Duration::from_millis(400);
        c
    }
}

/// Adds a portal user straight into tenant-svc's table (the accounts' own flow is tested in
/// tenant-svc); the password hash is never used here.
async fn user(mesh: &Mesh, customer: i64, email: &str, role: &str) {
    mesh.db
        .admin_client()
        .await
        .execute(
            "INSERT INTO tenant.users (customer_id, email_hash, email, role, password_hash) \
             VALUES ($1, sha256(convert_to($2, 'UTF8')), $2, $3, '$argon2id$unused')",
            &[&customer, &email, &role],
        )
        .await
        .unwrap();
}

/// One message-flow call of `customer` (call `n`): the prompt, a message, the hang-up.
async fn message_call(mesh: &Mesh, customer: i64, n: u32) -> String {
    let (call_sid, mut call, opened) = open(mesh, customer, n).await;
    hear_prompt(&mut call, opened).await;
    leave_message_and_hang_up(call).await;
    call_sid
}

/// Checks a mail carries the link and the business, and nothing of the call: not the caller's
/// number (in any spelling), the CallSid or the task's note.
fn check_body(mail: &str, business: &str, call_sid: &str) {
    // Quoted-printable soft line breaks undone, so nothing hides across one.
    let mail = &mail.replace("=\r\n", "").replace("=\n", "");
    assert!(mail.contains(&format!("{BASE}/portal/messages")), "{mail}");
    assert!(mail.contains(business), "{mail}");
    for secret in [
        CALLER,
        &CALLER[1..],
        "5551111111",
        call_sid,
        "Content-Type: audio",
    ] {
        assert!(!mail.contains(secret), "{secret} in {mail}");
    }
}

fn to_of(mail: &str) -> String {
    mail.lines()
        .find_map(|l| l.strip_prefix("To: "))
        .expect("To:")
        .trim()
        .to_owned()
}

/// A message-flow call leaves one mail per owner of its tenant (staff and the other tenant's
/// owner get none) with the portal link and nothing of the message; the task and its
/// `message.created` event are there as before; the notice is delivered once.
#[tokio::test]
async fn a_message_mails_each_owner_once_with_only_a_portal_link() {
    let outbox = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(Mode::Verify).await;
    let mesh = Mesh::start_with(
        config().await,
        mail_to(MailTransport::Outbox(outbox.path().into())),
    )
    .await;
    let (a, secret) = mesh.tenant("acme", &receiver.url, false).await;
    receiver.set_secret(&secret);
    let (b, _) = mesh.tenant("bravo", "", false).await;
    user(&mesh, a, "owner1@acme.example", "owner").await;
    user(&mesh, a, "owner2@acme.example", "owner").await;
    user(&mesh, a, "staff@acme.example", "staff").await;
    user(&mesh, b, "owner@bravo.example", "owner").await;

    let call_sid = message_call(&mesh, a, 1).await;
    common::eventually("the owners' notice delivered", || async {
        mesh.count("SELECT count(*) FROM media.outbox WHERE kind = 'notify_owners' AND delivered_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    let mails = read_mails(outbox.path());
    let mut to: Vec<String> = mails.iter().map(|m| to_of(m)).collect();
    to.sort();
    assert_eq!(to, ["owner1@acme.example", "owner2@acme.example"]);
    for mail in &mails {
        check_body(mail, "acme Ltd", &call_sid);
    }
    assert_eq!(
        mesh.count("SELECT count(*) FROM media.callback_tasks")
            .await,
        1
    );
    common::eventually("the message.created event delivered", || async {
        mesh.count("SELECT count(*) FROM media.webhook_events WHERE event_type = 'message.created' AND delivered_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    // Nothing more arrives later (the outbox does not deliver a notice twice).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read_mails(outbox.path()).len(), 2);
    assert_eq!(
        mesh.count("SELECT count(*) FROM tenant.owner_notifications")
            .await,
        2
    );
    mesh.stop().await;
}

/// With the SMTP server down the notice waits in media-svc's outbox (retried, the call and its
/// task unaffected); once the server is up each owner gets exactly one mail.
#[tokio::test]
async fn with_the_mail_server_down_the_notice_waits_and_is_sent_once_when_it_is_back() {
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let mesh = Mesh::start_with(config().await, mail_to(MailTransport::Smtp(url.into()))).await;
    let (a, _) = mesh.tenant("acme", "", false).await;
    user(&mesh, a, "owner1@acme.example", "owner").await;
    user(&mesh, a, "owner2@acme.example", "owner").await;

    let started = Instant::now();
    let call_sid = message_call(&mesh, a, 1).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        mesh.count("SELECT count(*) FROM media.callback_tasks")
            .await,
        1
    );
    common::eventually("the notice retried while the server is down", || async {
        mesh.count("SELECT count(*) FROM media.outbox WHERE kind = 'notify_owners' AND attempts >= 2 AND delivered_at IS NULL AND dead_at IS NULL AND last_error IS NOT NULL")
            .await
            == 1
    })
    .await;

    let Some(smtp) = SmtpServer::start_on(port).await else {
        mesh.stop().await;
        return;
    };
    let mails = smtp.wait_for(2).await;
    common::eventually("the notice marked delivered", || async {
        mesh.count("SELECT count(*) FROM media.outbox WHERE kind = 'notify_owners' AND delivered_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(smtp.messages().len(), 2, "no duplicate");
    let mut to: Vec<String> = mails.iter().map(|m| to_of(m)).collect();
    to.sort();
    assert_eq!(to, ["owner1@acme.example", "owner2@acme.example"]);
    for mail in &mails {
        check_body(mail, "acme Ltd", &call_sid);
    }
    mesh.stop().await;
}

/// Without mail settings in tenant-svc the notice is answered OK and marked delivered at once;
/// the task and the `message.created` event are unaffected.
#[tokio::test]
async fn without_mail_settings_the_task_and_the_event_are_unaffected() {
    let receiver = Receiver::start(Mode::Verify).await;
    let mesh = Mesh::start(config().await).await;
    let (a, secret) = mesh.tenant("acme", &receiver.url, false).await;
    receiver.set_secret(&secret);
    user(&mesh, a, "owner1@acme.example", "owner").await;
    message_call(&mesh, a, 1).await;
    common::eventually("the notice delivered on its first attempt", || async {
        mesh.count("SELECT count(*) FROM media.outbox WHERE kind = 'notify_owners' AND delivered_at IS NOT NULL AND attempts = 1")
            .await
            == 1
    })
    .await;
    common::eventually("the message.created event delivered", || async {
        mesh.count("SELECT count(*) FROM media.webhook_events WHERE event_type = 'message.created' AND delivered_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    assert_eq!(
        mesh.count("SELECT count(*) FROM media.callback_tasks")
            .await,
        1
    );
    assert_eq!(
        mesh.count("SELECT count(*) FROM tenant.owner_notifications")
            .await,
        0
    );
    mesh.stop().await;
}
