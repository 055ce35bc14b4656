//! Operators (issue 21) over real gRPC against a real PostgreSQL: an operator added by the CLI's
//! `tenant:admin` token signs in with password and TOTP (required, a code works once), the two
//! throttles, session expiry and sign-out, who may call `OperatorService`, and the console's
//! customer actions, each audited in the affected tenant's log only.

use mesh::api::tenant::operator_admin_service_client::OperatorAdminServiceClient;
use mesh::api::tenant::operator_service_client::OperatorServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{names, scope};
use tenant_svc::operator::totp;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::accounts::Svc;
use crate::common::{self, auth};

const ADDRESS: &str = "198.51.100.9";
const OPS: &str = "Ops@Platform.example";

/// An operator as the CLI's answer gives it.
pub(crate) struct Op {
    pub(crate) id: i64,
    pub(crate) email: String,
    pub(crate) password: String,
    pub(crate) secret: Vec<u8>,
}

impl Op {
    /// The code of the current step plus `offset` steps.
    pub(crate) fn code(&self, offset: i64) -> String {
        let now = chrono::Utc::now().timestamp() as u64;
        let step = (totp::step_at(now) as i64 + offset) as u64;
        format!("{:06}", totp::code(&self.secret, step, 6))
    }
}

/// RFC 4648 base32 (no padding), as the otpauth URI carries the secret.
fn base32_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {c}"),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

pub(crate) fn console_token(s: &Svc) -> String {
    common::gateway_token(&s.keys, &[scope::TENANT_OPERATOR_CONSOLE])
}

pub(crate) fn console(s: &Svc) -> OperatorServiceClient<Channel> {
    OperatorServiceClient::new(s.channel.clone())
}

/// Adds an operator with the CLI's token.
pub(crate) async fn add_operator(s: &Svc, email: &str) -> Op {
    let r = OperatorAdminServiceClient::new(s.channel.clone())
        .add_operator(auth(
            AddOperatorRequest {
                email: email.into(),
            },
            &s.operator(),
        ))
        .await
        .unwrap()
        .into_inner();
    let uri = r.otpauth_uri;
    assert!(uri.starts_with("otpauth://totp/NeuroSphere:"), "{uri}");
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|x| x.split('&').next())
        .unwrap();
    Op {
        id: r.operator.unwrap().id,
        email: email.to_lowercase(),
        password: r.initial_password,
        secret: base32_decode(secret),
    }
}

pub(crate) async fn sign_in_as(
    s: &Svc,
    email: &str,
    password: &str,
    code: &str,
) -> Result<OperatorSignInResponse, Status> {
    Ok(console(s)
        .operator_sign_in(auth(
            OperatorSignInRequest {
                email: email.into(),
                password: password.into(),
                totp_code: code.into(),
                client_address: ADDRESS.into(),
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into(),
            },
            &console_token(s),
        ))
        .await?
        .into_inner())
}

/// Signs `op` in with the current code; the session secret.
pub(crate) async fn signed_in(s: &Svc, op: &Op) -> String {
    sign_in_as(s, &op.email, &op.password, &op.code(0))
        .await
        .unwrap()
        .session
        .unwrap()
        .secret
}

async fn whoami(s: &Svc, secret: &str) -> Result<GetOperatorSessionResponse, Status> {
    Ok(console(s)
        .get_operator_session(auth(
            GetOperatorSessionRequest {
                session_secret: secret.into(),
            },
            &console_token(s),
        ))
        .await?
        .into_inner())
}

/// A console action on one customer.
#[derive(Clone, Copy)]
enum Act {
    Get,
    Approve,
    Suspend,
    Reactivate,
}

/// `act` on `customer_id` with the operator session `secret`; the customer after it.
async fn act(s: &Svc, secret: &str, act: Act, customer_id: i64) -> Result<CustomerSummary, Status> {
    let (mut c, t, session_secret) = (console(s), console_token(s), secret.to_owned());
    let customer = match act {
        Act::Get => {
            let r = OperatorGetCustomerRequest {
                session_secret,
                customer_id,
            };
            c.operator_get_customer(auth(r, &t))
                .await?
                .into_inner()
                .customer
        }
        Act::Approve => {
            let r = ApproveCustomerRequest {
                session_secret,
                customer_id,
            };
            c.approve_customer(auth(r, &t)).await?.into_inner().customer
        }
        Act::Suspend => {
            let r = SuspendCustomerRequest {
                session_secret,
                customer_id,
            };
            c.suspend_customer(auth(r, &t)).await?.into_inner().customer
        }
        Act::Reactivate => {
            let r = ReactivateCustomerRequest {
                session_secret,
                customer_id,
            };
            c.reactivate_customer(auth(r, &t))
                .await?
                .into_inner()
                .customer
        }
    };
    Ok(customer.expect("a customer in the answer"))
}

async fn sessions(s: &Svc) -> i64 {
    s.count("SELECT count(*) FROM tenant.operator_sessions")
        .await
}

#[tokio::test]
async fn the_second_factor_is_required_and_a_code_works_once() {
    let s = Svc::start().await;
    let op = add_operator(&s, OPS).await;
    // Stored: the hash and the sealed secret, never the password or the secret.
    let row =
        s.db.admin_client()
            .await
            .query_one(
                "SELECT password_hash, totp_sealed FROM tenant.operators WHERE id = $1",
                &[&op.id],
            )
            .await
            .unwrap();
    let hash: String = row.get(0);
    let sealed: Vec<u8> = row.get(1);
    assert!(hash.starts_with("$argon2id$") && !hash.contains(&op.password));
    assert!(
        !sealed
            .windows(op.secret.len())
            .any(|w| w == op.secret.as_slice())
    );

    // No code, or not six digits: INVALID_ARGUMENT naming the field, nothing stored.
    for code in ["", "12345", "abcdef"] {
        let e = sign_in_as(&s, OPS, &op.password, code).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{code:?}");
        assert!(e.message().starts_with("totp_code:"), "{}", e.message());
    }
    // A wrong code or a wrong password: one message, a failure recorded, no session.
    let wrong = format!(
        "{:06}",
        (op.code(0).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let e = sign_in_as(&s, OPS, &op.password, &wrong).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e2 = sign_in_as(&s, OPS, "not the password at all", &op.code(0))
        .await
        .unwrap_err();
    assert_eq!((e2.code(), e2.message()), (e.code(), e.message()));
    let e3 = sign_in_as(&s, "nobody@platform.example", &op.password, &op.code(0))
        .await
        .unwrap_err();
    assert_eq!((e3.code(), e3.message()), (e.code(), e.message()));
    assert_eq!(sessions(&s).await, 0);
    assert_eq!(
        s.count("SELECT count(*) FROM tenant.operator_signin_failures")
            .await,
        2
    );

    // The right password and code: a session (the address is case-insensitive).
    let code = op.code(0);
    let ok = sign_in_as(&s, OPS, &op.password, &code).await.unwrap();
    assert_eq!(ok.operator.unwrap().id, op.id);
    let secret = ok.session.unwrap().secret;
    assert_eq!(
        whoami(&s, &secret).await.unwrap().operator.unwrap().id,
        op.id
    );
    // The same code again (a replay, or someone watching): refused, no second session.
    let e = sign_in_as(&s, OPS, &op.password, &code).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // So is the previous step's code once a later step was used.
    let e = sign_in_as(&s, OPS, &op.password, &op.code(-1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(sessions(&s).await, 1);
    // The next step's code (clock drift of one step) is accepted.
    sign_in_as(&s, OPS, &op.password, &op.code(1))
        .await
        .unwrap();
    assert_eq!(sessions(&s).await, 2);

    // Sign-out ends the session; a second sign-out is fine.
    for _ in 0..2 {
        console(&s)
            .operator_sign_out(auth(
                OperatorSignOutRequest {
                    session_secret: secret.clone(),
                },
                &console_token(&s),
            ))
            .await
            .unwrap();
    }
    let e = whoami(&s, &secret).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn adding_an_operator_twice_or_with_a_bad_address_is_refused() {
    let s = Svc::start().await;
    add_operator(&s, OPS).await;
    // A second operator with the same address is refused.
    let e = OperatorAdminServiceClient::new(s.channel.clone())
        .add_operator(auth(
            AddOperatorRequest {
                email: "ops@platform.example".into(),
            },
            &s.operator(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = OperatorAdminServiceClient::new(s.channel.clone())
        .add_operator(auth(
            AddOperatorRequest {
                email: "not an address".into(),
            },
            &s.operator(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("email:"), "{}", e.message());
    assert_eq!(s.count("SELECT count(*) FROM tenant.operators").await, 1);
}

#[tokio::test]
async fn ten_failures_throttle_the_operator_even_with_the_right_code() {
    let s = Svc::start().await;
    let op = add_operator(&s, OPS).await;
    for _ in 0..10 {
        let e = sign_in_as(&s, OPS, "a wrong password here", &op.code(0))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    let e = sign_in_as(&s, OPS, &op.password, &op.code(0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    let wait: u64 = e
        .metadata()
        .get("retry-after")
        .expect("retry-after")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(sessions(&s).await, 0);
    // The code was not spent by the refused attempt: once the window has passed it works.
    s.db.admin_client()
        .await
        .execute(
            "UPDATE tenant.operator_signin_failures SET at = now() - interval '2 minutes'",
            &[],
        )
        .await
        .unwrap();
    // The address failures too (ten of thirty: not throttled by address).
    signed_in(&s, &op).await;
}

#[tokio::test]
async fn sessions_expire_when_idle_and_at_their_absolute_end_and_with_a_disabled_operator() {
    let s = Svc::start().await;
    let op = add_operator(&s, OPS).await;
    let admin = s.db.admin_client().await;
    let first = signed_in(&s, &op).await;
    admin
        .execute(
            "UPDATE tenant.operator_sessions SET idle_expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        whoami(&s, &first).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // Use moves the idle expiry on, never past the absolute end.
    let second = sign_in_as(&s, OPS, &op.password, &op.code(1))
        .await
        .unwrap()
        .session
        .unwrap();
    let touched = whoami(&s, &second.secret).await.unwrap();
    assert!(touched.idle_expire_time.unwrap().seconds <= second.expire_time.unwrap().seconds);
    admin
        .execute(
            "UPDATE tenant.operator_sessions SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        whoami(&s, &second.secret).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // Disabling ends the sessions and refuses sign-in.
    admin
        .execute("UPDATE tenant.operators SET totp_last_step = 0", &[])
        .await
        .unwrap();
    let third = signed_in(&s, &op).await;
    let ended = OperatorAdminServiceClient::new(s.channel.clone())
        .disable_operator(auth(
            DisableOperatorRequest { email: OPS.into() },
            &s.operator(),
        ))
        .await
        .unwrap()
        .into_inner()
        .ended_sessions;
    assert_eq!(ended, 1);
    assert_eq!(
        whoami(&s, &third).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let e = sign_in_as(&s, OPS, &op.password, &op.code(1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn only_the_gateways_console_token_with_an_operator_session_reaches_the_console() {
    let s = Svc::start().await;
    let op = add_operator(&s, OPS).await;
    let a = s.customer("Peterson").await;
    // A tenant user's portal session is not an operator session.
    let portal_session = s.user(a, "owner@peterson.example", UserRole::Owner).await;
    let list = |secret: &str| OperatorListCustomersRequest {
        session_secret: secret.into(),
        ..Default::default()
    };
    let e = console(&s)
        .operator_list_customers(auth(list(&portal_session), &console_token(&s)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = console(&s)
        .suspend_customer(auth(
            SuspendCustomerRequest {
                session_secret: portal_session.clone(),
                customer_id: a,
            },
            &console_token(&s),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    let secret = signed_in(&s, &op).await;
    // Every other token is refused before the handler runs, session or not.
    let tenant = common::tenant_token(&s.keys, a, &[scope::TENANT_READ, scope::TENANT_WRITE]);
    let operator_cli = s.operator();
    let portal = s.portal_token();
    let media_key = s
        .keys
        .identity(names::MEDIA_SVC)
        .minter()
        .mint_service(
            names::TENANT_SVC,
            &[scope::TENANT_OPERATOR_CONSOLE],
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    for token in [&tenant, &operator_cli, &portal, &media_key] {
        let e = console(&s)
            .operator_list_customers(auth(list(&secret), token))
            .await
            .unwrap_err();
        assert!(
            matches!(e.code(), Code::PermissionDenied | Code::Unauthenticated),
            "{e:?}"
        );
    }
    // The console's token cannot add operators.
    let e = OperatorAdminServiceClient::new(s.channel.clone())
        .add_operator(auth(
            AddOperatorRequest {
                email: "evil@platform.example".into(),
            },
            &console_token(&s),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The customer was not touched.
    assert_eq!(
        s.count("SELECT count(*) FROM tenant.customers WHERE status = 'active'")
            .await,
        1
    );
    assert!(
        !s.audit_actions(a)
            .await
            .iter()
            .any(|x| x.starts_with("operator."))
    );
}

#[tokio::test]
async fn customer_actions_are_audited_in_that_tenants_log_only() {
    let s = Svc::start().await;
    let op = add_operator(&s, OPS).await;
    let a = s.customer("Peterson").await;
    let b = s.customer("Smith").await;
    let secret = signed_in(&s, &op).await;
    let t = console_token(&s);

    let listed = console(&s)
        .operator_list_customers(auth(
            OperatorListCustomersRequest {
                session_secret: secret.clone(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), [a, b]);
    assert!(
        listed
            .iter()
            .all(|c| c.status == CustomerStatus::Active as i32)
    );
    // media-svc is not running here: usage is absent, never a made-up zero.
    assert!(listed.iter().all(|c| c.calls_this_month.is_none()));

    let b_before = s.audit_actions(b).await;
    let suspended = act(&s, &secret, Act::Suspend, a).await.unwrap();
    assert_eq!(suspended.status, CustomerStatus::Suspended as i32);
    let row =
        s.db.admin_client()
            .await
            .query_one(
                "SELECT actor, detail::text FROM tenant.audit_log \
             WHERE customer_id = $1 AND action = 'operator.suspended'",
                &[&a],
            )
            .await
            .unwrap();
    assert_eq!(row.get::<_, String>(0), format!("operator:{}", op.id));
    let detail: String = row.get(1);
    assert!(detail.contains("\"to\": \"suspended\""), "{detail}");
    // The history says who, too.
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM tenant.customer_configurations \
             WHERE customer_id = {a} AND created_by = 'operator:{}'",
            op.id
        ))
        .await,
        1
    );

    // Approving a customer that is not pending changes nothing.
    let before = s.audit_actions(a).await;
    let e = act(&s, &secret, Act::Approve, b).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    // Bad and unknown ids: the field named, nothing changed.
    let e = act(&s, &secret, Act::Reactivate, 0).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("customer_id:"), "{}", e.message());
    let e = act(&s, &secret, Act::Suspend, 999_999).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(s.audit_actions(a).await, before);

    // Reactivation: back to active, audited.
    let back = act(&s, &secret, Act::Reactivate, a).await.unwrap();
    assert_eq!(back.status, CustomerStatus::Active as i32);
    let actions = s.audit_actions(a).await;
    assert_eq!(
        actions
            .iter()
            .filter(|x| x.starts_with("operator."))
            .collect::<Vec<_>>(),
        ["operator.suspended", "operator.reactivated"]
    );
    // Tenant B: untouched, its log unchanged.
    assert_eq!(s.audit_actions(b).await, b_before);
    let b_now = act(&s, &secret, Act::Get, b).await.unwrap();
    assert_eq!(b_now.status, CustomerStatus::Active as i32);
}

#[tokio::test]
async fn dead_letters_are_counted_per_customer_and_numbers_media_svc_refuses_change_nothing() {
    let (s, _media) = Svc::with_media().await;
    let op = add_operator(&s, OPS).await;
    let a = s.customer("Peterson").await;
    let b = s.customer("Smith").await;
    let secret = signed_in(&s, &op).await;
    let admin = s.db.admin_client().await;
    for (customer, n, dead) in [(a, 1, true), (a, 2, true), (a, 3, false), (b, 4, false)] {
        let sid = format!("CA{n:032}");
        admin
            .execute(
                "INSERT INTO media.calls (customer_id, call_sid, account_sid, caller, called, \
                 direction, status) VALUES ($1, $2, 'AC' || repeat('0', 32), '+14155550100', \
                 '+14158675309', 1, 5)",
                &[&customer, &sid],
            )
            .await
            .unwrap();
        admin
            .execute(
                "INSERT INTO media.webhook_events (customer_id, event_id, call_sid, body, \
                 retry_for, give_up_at, dead_at) VALUES ($1, gen_random_uuid(), $2, '\\x7b7d', \
                 interval '1 hour', now(), CASE WHEN $3 THEN now() END)",
                &[&customer, &sid, &dead],
            )
            .await
            .unwrap();
    }
    let counts = console(&s)
        .list_dead_letter_counts(auth(
            ListDeadLetterCountsRequest {
                session_secret: secret.clone(),
            },
            &console_token(&s),
        ))
        .await
        .unwrap()
        .into_inner()
        .counts;
    assert_eq!(
        counts
            .iter()
            .map(|c| (c.customer_id, c.count))
            .collect::<Vec<_>>(),
        [(a, 2)]
    );

    // Numbers: media-svc here has no Twilio account configured, so it refuses; nothing is
    // recorded in the tenant's log and no number is routed.
    let before = s.audit_actions(a).await;
    let e = console(&s)
        .operator_assign_number(auth(
            OperatorAssignNumberRequest {
                session_secret: secret.clone(),
                customer_id: a,
                number: "+14155550199".into(),
            },
            &console_token(&s),
        ))
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    assert!(!e.message().contains("+1415"), "{}", e.message());
    let e = console(&s)
        .operator_assign_number(auth(
            OperatorAssignNumberRequest {
                session_secret: secret.clone(),
                customer_id: a,
                number: "not a number".into(),
            },
            &console_token(&s),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("number:"), "{}", e.message());
    assert_eq!(s.audit_actions(a).await, before);
    assert_eq!(
        s.count("SELECT count(*) FROM tenant.phone_numbers").await,
        0
    );
}

#[tokio::test]
async fn approving_a_pending_customer_activates_it_once_and_audits_it() {
    let s = Svc::start().await;
    let op = add_operator(&s, OPS).await;
    let a = s.customer("Peterson").await;
    let b = s.customer("Smith").await;
    for id in [a, b] {
        s.db.admin_client()
            .await
            .execute(
                "UPDATE tenant.customers SET status = 'pending' WHERE customer_id = $1",
                &[&id],
            )
            .await
            .unwrap();
    }
    let secret = signed_in(&s, &op).await;
    let pending = act(&s, &secret, Act::Get, a).await.unwrap();
    assert_eq!(pending.status, CustomerStatus::Pending as i32);
    let approved = act(&s, &secret, Act::Approve, a).await.unwrap();
    assert_eq!(approved.status, CustomerStatus::Active as i32);
    assert!(
        s.audit_actions(a)
            .await
            .contains(&"operator.approved".to_owned())
    );
    // A second approval: not pending any more, refused, nothing more recorded.
    let before = s.audit_actions(a).await;
    let e = act(&s, &secret, Act::Approve, a).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(s.audit_actions(a).await, before);
    // The other pending customer is untouched.
    let other = act(&s, &secret, Act::Get, b).await.unwrap();
    assert_eq!(other.status, CustomerStatus::Pending as i32);
    assert!(s.audit_actions(b).await.is_empty());
}
