//! Self sign-up (issue 21) over real gRPC against a real PostgreSQL, mail written to an `.eml`
//! outbox folder: the verification link creates the customer once (pending) with its owner;
//! replayed, unknown and expired links create nothing; answers that say nothing about the
//! address; the per-address and per-e-mail daily limits; bad input naming the field with nothing
//! stored; who may call. The harness ([`S`]) serves `onboarding` too.

use std::path::Path;
use std::time::Duration;

use mesh::api::tenant::account_service_client::AccountServiceClient;
use mesh::api::tenant::signup_service_client::SignupServiceClient;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::*;
use mesh::auth::LegacyVerifier;
use mesh::identity::{DevKeys, scope};
use mesh::mail::{MailTransport, Mailer};
use mesh::testkit::TestDb;
use mesh::testkit::smtp::read_mails;
use secrecy::SecretString;
use tonic::{Code, Status};

use crate::common::{self, auth};

pub(crate) const BASE: &str = "https://edge.example.com";
const PASSWORD: &str = "correct horse battery staple";
const ADDRESS: &str = "203.0.113.7";
pub(crate) const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const LEGACY_SECRET: &str = "legacy-secret-for-tests-0123456789abcdef";

pub(crate) struct S {
    pub(crate) db: TestDb,
    pub(crate) keys: DevKeys,
    pub(crate) replica: common::Replica,
    pub(crate) outbox: tempfile::TempDir,
    pub(crate) legacy: LegacyVerifier,
}

impl S {
    pub(crate) async fn start(auto_approve: bool, per_address: i64) -> S {
        let outbox = tempfile::tempdir().unwrap();
        let accounts = tenant_svc::account::AccountConfig {
            owner_mail: Some(tenant_svc::notice::OwnerMail {
                mailer: Mailer::new(
                    &MailTransport::Outbox(outbox.path().into()),
                    "NeuroSphere <no-reply@mesh.example>",
                ),
                base_url: BASE.into(),
            }),
            signup: tenant_svc::account::SignupConfig {
                auto_approve,
                per_address_per_day: per_address,
            },
            ..Default::default()
        };
        let db = TestDb::new().await;
        let keys = DevKeys::generate();
        let legacy = LegacyVerifier::new(&SecretString::from(LEGACY_SECRET)).unwrap();
        let peers = common::Peers {
            memory: common::dead_addr().await,
            media: common::dead_addr().await,
        };
        let replica =
            common::serve_configured(&db, &keys, Some(legacy.clone()), false, &peers, accounts)
                .await;
        S {
            db,
            keys,
            replica,
            outbox,
            legacy,
        }
    }

    pub(crate) fn portal(&self) -> String {
        common::gateway_token(&self.keys, &[scope::TENANT_PORTAL])
    }

    pub(crate) fn operator(&self) -> String {
        common::operator_token(&self.keys, &[scope::TENANT_ADMIN])
    }

    pub(crate) fn signups(&self) -> SignupServiceClient<tonic::transport::Channel> {
        SignupServiceClient::new(self.replica.channel.clone())
    }

    pub(crate) fn admin(&self) -> TenantAdminServiceClient<tonic::transport::Channel> {
        TenantAdminServiceClient::new(self.replica.channel.clone())
    }

    pub(crate) async fn sign_up(&self, r: SignUpRequest) -> Result<SignUpResponse, Status> {
        self.signups()
            .sign_up(auth(r, &self.portal()))
            .await
            .map(|r| r.into_inner())
    }

    pub(crate) async fn verify(&self, token: &str) -> Result<VerifySignupResponse, Status> {
        self.signups()
            .verify_signup(auth(
                VerifySignupRequest {
                    token: token.into(),
                    user_agent: "Firefox/128.0 (X11; Linux)".into(),
                },
                &self.portal(),
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub(crate) async fn count(&self, sql: &str) -> i64 {
        self.db
            .admin_client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Rows of every table a sign-up or a verification writes.
    pub(crate) async fn snapshot(&self) -> Vec<i64> {
        let mut v = Vec::new();
        for t in [
            "signups",
            "customers",
            "users",
            "sessions",
            "audit_log",
            "phone_numbers",
            "customer_configurations",
        ] {
            v.push(
                self.count(&format!("SELECT count(*) FROM tenant.{t}"))
                    .await,
            );
        }
        v
    }

    /// The outbox's mails once there are `n` (the mail goes in the background).
    pub(crate) async fn mails(&self, n: usize) -> Vec<String> {
        wait_mails(self.outbox.path(), n).await
    }

    pub(crate) async fn exchange(&self, secret: &str) -> Result<ExchangeSessionResponse, Status> {
        AccountServiceClient::new(self.replica.channel.clone())
            .exchange_session(auth(
                ExchangeSessionRequest {
                    session_secret: secret.into(),
                },
                &self.portal(),
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub(crate) async fn set_status(
        &self,
        id: i64,
        status: CustomerStatus,
    ) -> Result<Customer, Status> {
        self.admin()
            .set_customer_status(auth(
                SetCustomerStatusRequest {
                    customer_id: id,
                    status: status.into(),
                },
                &self.operator(),
            ))
            .await
            .map(|r| r.into_inner().customer.unwrap())
    }

    pub(crate) async fn assign(&self, id: i64, number: &str) -> Result<(), Status> {
        self.admin()
            .assign_phone_number(auth(
                AssignPhoneNumberRequest {
                    customer_id: id,
                    number: number.into(),
                    twilio_account_sid: String::new(),
                },
                &self.operator(),
            ))
            .await
            .map(|_| ())
    }

    /// Signs `email` up from `ADDRESS`, verifies the mailed link (the `n`th mail) and returns
    /// the verification's answer.
    pub(crate) async fn signed_up(
        &self,
        business: &str,
        email: &str,
        n: usize,
    ) -> VerifySignupResponse {
        self.sign_up(request(business, email)).await.unwrap();
        let mails = self.mails(n).await;
        let mail = mails
            .iter()
            .find(|m| m.contains(&format!("To: {email}")) && m.contains(business))
            .expect("the verification mail");
        self.verify(&link_token(mail)).await.unwrap()
    }
}

pub(crate) fn request(business: &str, email: &str) -> SignUpRequest {
    SignUpRequest {
        business_name: business.into(),
        contact_name: "Ada Owner".into(),
        email: email.into(),
        password: PASSWORD.into(),
        client_address: ADDRESS.into(),
    }
}

/// The outbox's mails once there are at least `n` and two reads agree (a mail may be read while
/// it is being written; at most 10 s).
async fn wait_mails(dir: &Path, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = Vec::new();
    loop {
        let mails = read_mails(dir);
        if (mails.len() >= n && mails == last) || tokio::time::Instant::now() > deadline {
            assert_eq!(mails.len(), n, "mails: {mails:#?}");
            return mails;
        }
        last = mails;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The token of the verification link in a mail (quoted-printable's soft line breaks and `=3D`
/// undone).
pub(crate) fn link_token(mail: &str) -> String {
    let mail = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let at = mail
        .find("/portal/signup/verify?token=")
        .expect("a verification link");
    mail[at + "/portal/signup/verify?token=".len()..]
        .chars()
        .take(43)
        .collect()
}

/// The link creates the customer (pending) and its owner, signed in, once; the token is stored
/// only as a hash and the verified row keeps no personal data.
#[tokio::test]
async fn a_verified_link_creates_one_pending_customer_with_its_owner() {
    let s = S::start(false, 5).await;
    let before = s.snapshot().await;
    s.sign_up(request("Acme Plumbing", "Ada@Acme.example"))
        .await
        .unwrap();
    let mails = s.mails(1).await;
    let mail = &mails[0];
    assert!(mail.contains("To: ada@acme.example"), "{mail}");
    assert!(mail.contains("Subject: Confirm your e-mail address for Acme Plumbing"));
    assert!(mail.contains(&format!("{BASE}/portal/signup/verify?token=")));
    let token = link_token(mail);
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM tenant.signups WHERE token_hash = sha256('{token}'::bytea)"
        ))
        .await,
        1,
        "only the token's SHA-256 is stored"
    );
    assert_eq!(
        s.snapshot().await[1..],
        before[1..],
        "no customer before the link"
    );

    let v = s.verify(&token).await.unwrap();
    assert_eq!(v.status, CustomerStatus::Pending as i32);
    let user = v.user.unwrap();
    assert_eq!(user.role, UserRole::Owner as i32);
    assert_eq!(user.business_name, "Acme Plumbing");
    assert_eq!(user.email, "ada@acme.example");
    let id = user.customer_id;
    let c = s
        .admin()
        .get_customer(auth(GetCustomerRequest { customer_id: id }, &s.operator()))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(c.status, CustomerStatus::Pending as i32);
    assert_eq!(c.contact_name, "Ada Owner");
    assert!(c.phone_numbers.is_empty());
    let agent = c.agent_config.unwrap();
    assert!(
        agent
            .greeting_new_caller
            .as_deref()
            .unwrap()
            .contains("Thank you for calling Acme Plumbing"),
        "{agent:?}"
    );
    assert_eq!(
        agent.voice, None,
        "everything else falls back to the platform defaults"
    );
    assert_eq!(
        s.count(
            "SELECT count(*) FROM tenant.signups WHERE verified_at IS NOT NULL AND email IS NULL \
             AND password_hash IS NULL AND business_name IS NULL"
        )
        .await,
        1,
        "a verified row keeps no personal data"
    );
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM tenant.audit_log WHERE customer_id = {id} \
             AND action IN ('customer.signed_up', 'auth.sign_in')"
        ))
        .await,
        2
    );
}

/// The replayed link, an unknown and a malformed token, and an expired link: NOT_FOUND alike,
/// nothing created.
#[tokio::test]
async fn replayed_unknown_and_expired_links_create_nothing() {
    let s = S::start(false, 5).await;
    s.sign_up(request("Acme Plumbing", "ada@acme.example"))
        .await
        .unwrap();
    let token = link_token(&s.mails(1).await[0]);
    s.verify(&token).await.unwrap();
    let after = s.snapshot().await;
    for t in [token.as_str(), &"A".repeat(43), "short"] {
        let e = s.verify(t).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert_eq!(e.message(), "sign-up not found");
    }
    assert_eq!(s.snapshot().await, after);
    // An expired link likewise.
    s.sign_up(request("Late Co", "late@late.example"))
        .await
        .unwrap();
    let late = link_token(
        &s.mails(2)
            .await
            .into_iter()
            .find(|m| m.contains("Late Co"))
            .unwrap(),
    );
    s.db.admin_client()
        .await
        .execute(
            "UPDATE tenant.signups SET expires_at = now() - interval '1 second' \
             WHERE verified_at IS NULL",
            &[],
        )
        .await
        .unwrap();
    let before = s.snapshot().await;
    assert_eq!(s.verify(&late).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(s.snapshot().await, before);
}

/// The same answer whether the address is an owner's somewhere, a customer's contact address,
/// or unknown; the fourth sign-up of one address in a day is dropped with that answer (no row,
/// no mail).
#[tokio::test]
async fn answers_are_the_same_for_known_and_unknown_addresses_and_one_address_gets_three_mails() {
    let s = S::start(false, 50).await;
    s.signed_up("Known Co", "known@known.example", 1).await;
    let known = s
        .sign_up(request("Known Again", "known@known.example"))
        .await
        .unwrap();
    let fresh = s
        .sign_up(request("Fresh Co", "fresh@fresh.example"))
        .await
        .unwrap();
    assert_eq!(known, fresh);
    s.mails(3).await;
    // A verified link of a known address: the unique customer address is told after the
    // mailbox was proven, never before.
    let mails = s.mails(3).await;
    let again = mails.iter().find(|m| m.contains("Known Again")).unwrap();
    let e = s.verify(&link_token(again)).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    // The link stays usable (nothing was claimed) but still creates nothing.
    assert_eq!(
        s.count("SELECT count(*) FROM tenant.signups WHERE verified_at IS NULL")
            .await,
        2
    );

    // Three sign-ups of one address in a day get mails; the fourth the same answer and nothing.
    for i in 0..2 {
        s.sign_up(request(&format!("Spam {i}"), "victim@victim.example"))
            .await
            .unwrap();
    }
    s.sign_up(request("Spam 2", "victim@victim.example"))
        .await
        .unwrap();
    s.mails(6).await;
    let rows = s.snapshot().await;
    let dropped = s
        .sign_up(request("Spam 3", "victim@victim.example"))
        .await
        .unwrap();
    assert_eq!(dropped, fresh);
    assert_eq!(s.snapshot().await, rows, "nothing stored");
    s.sign_up(request("After Co", "after@after.example"))
        .await
        .unwrap();
    let mails = s.mails(7).await;
    assert!(
        !mails.iter().any(|m| m.contains("Spam 3")),
        "nothing mailed"
    );
}

/// `TENANT_SIGNUPS_PER_ADDRESS_PER_DAY`: the next sign-up from that address (IPv6: its /64) is
/// RESOURCE_EXHAUSTED with `retry-after`, nothing stored or mailed; another address signs up.
#[tokio::test]
async fn the_per_address_limit_refuses_and_stores_nothing() {
    let s = S::start(false, 2).await;
    let v6 = |host: &str, email: &str| SignUpRequest {
        client_address: format!("2001:db8:aa:bb:{host}"),
        ..request("V6 Co", email)
    };
    s.sign_up(v6("1::1", "a@v6.example")).await.unwrap();
    s.sign_up(v6("ffff::2", "b@v6.example")).await.unwrap();
    s.mails(2).await;
    let before = s.snapshot().await;
    let e = s.sign_up(v6("9::9", "c@v6.example")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let retry: u64 = e
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(s.snapshot().await, before);
    // Another /64 and an IPv4 address are not affected.
    s.sign_up(SignUpRequest {
        client_address: "2001:db8:aa:bc::1".into(),
        ..request("V6 Co", "d@v6.example")
    })
    .await
    .unwrap();
    s.sign_up(request("V4 Co", "e@v4.example")).await.unwrap();
    let mails = s.mails(4).await;
    assert!(!mails.iter().any(|m| m.contains("c@v6.example")));
}

/// Bad input is INVALID_ARGUMENT naming the field; nothing stored or mailed. Only the gateway's
/// `tenant:portal` token may call.
#[tokio::test]
async fn bad_input_and_wrong_tokens_are_refused_and_store_nothing() {
    let s = S::start(false, 50).await;
    let before = s.snapshot().await;
    let bad = |f: fn(&mut SignUpRequest)| {
        let mut r = request("Bad Co", "bad@bad.example");
        f(&mut r);
        r
    };
    for (r, field) in [
        (bad(|r| r.business_name = " ".into()), "business_name"),
        (bad(|r| r.business_name = "x".repeat(201)), "business_name"),
        (bad(|r| r.contact_name = String::new()), "contact_name"),
        (bad(|r| r.email = "not-an-address".into()), "email"),
        (bad(|r| r.password = "short".into()), "password"),
        (bad(|r| r.password = "password1234".into()), "password"),
        (
            bad(|r| r.client_address = "nowhere".into()),
            "client_address",
        ),
    ] {
        let e = s.sign_up(r).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {e:?}");
    }
    for token in [
        s.operator(),
        common::gateway_token(&s.keys, &[scope::TENANT_RESOLVE]),
        common::operator_token(&s.keys, &[scope::TENANT_PORTAL]),
        common::tenant_token(&s.keys, 1, &[scope::TENANT_READ, scope::TENANT_WRITE]),
    ] {
        let e = s
            .signups()
            .sign_up(auth(request("Bad Co", "bad@bad.example"), &token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let e = s
            .signups()
            .verify_signup(auth(VerifySignupRequest::default(), &token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    assert_eq!(s.snapshot().await, before);
    // A valid sign-up afterwards is the first and only mail.
    s.sign_up(request("Good Co", "good@good.example"))
        .await
        .unwrap();
    assert_eq!(s.mails(1).await.len(), 1);
}
