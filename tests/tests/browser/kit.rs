//! What the portal's browser tests share: one mesh and one browser for the whole binary
//! ([`suite`]), a tenant and its users per test, and the sign-in steps as a person does them.
//!
//! Sharing is safe because every test works on tenants of its own (fresh customers, numbers
//! and e-mail addresses) and takes the browser for its whole run ([`Suite::run`] holds a lock),
//! starting with no cookies. Booting the mesh and Chromium once keeps the suite's time small on
//! two cores. The mesh and browser live in a static and are never dropped: the test kit's
//! watchdogs end PostgreSQL, chromedriver and Chromium when the test process goes.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use e2e::browser::{Browser, Cookie, DESKTOP};
use e2e::{ACCOUNT_SID, Mesh, MeshOptions, TenantAdmin, create_tenant, with_token};
use gateway::sim::{self, SimCall};
use mesh::api::media::GetCallRequest;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::tenant::account_admin_service_client::AccountAdminServiceClient;
use mesh::api::tenant::{AgentConfig, InviteUserRequest, UserRole};
use mesh::identity::{names, scope};
use mesh::testkit::twilio::FakeTwilio;
use tokio::sync::Mutex;

/// A password every test user gets (12+ characters, not a common one).
pub const PASSWORD: &str = "correct horse battery staple 19";

/// The mesh and the browser every test of the binary uses, and the runtime that drives both.
pub struct Suite {
    runtime: tokio::runtime::Runtime,
    shared: Option<Shared>,
}

/// The shared mesh and browser (absent when Chromium is not installed and CI is not set).
pub struct Shared {
    /// The whole mesh, portal included (mounted by the gateway).
    pub mesh: Mesh,
    browser: Mutex<Browser>,
    /// The fake Twilio REST API media-svc buys numbers from.
    pub twilio: FakeTwilio,
    /// Where tenant-svc writes its mail (`.eml` files).
    pub outbox: std::path::PathBuf,
}

static SUITE: OnceLock<Suite> = OnceLock::new();
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// The suite, started by the first test that asks.
pub fn suite() -> &'static Suite {
    SUITE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let shared = runtime.block_on(async {
            let browser = Browser::launch().await?;
            // Numbers are bought from the fake Twilio; tenant-svc's mail (sign-up links,
            // approvals, welcomes) goes to an outbox folder the tests read.
            let twilio = FakeTwilio::start().await;
            let outbox = tempfile::tempdir().expect("outbox").keep();
            let dir = outbox.clone();
            let (api, pricing, account, key, secret) = (
                twilio.api_url.clone(),
                twilio.pricing_url.clone(),
                twilio.account_sid.clone(),
                twilio.key_sid.clone(),
                twilio.key_secret.clone(),
            );
            let mesh = Mesh::start_with(MeshOptions {
                media: Some(Box::new(move |c: &mut media_svc::CallConfig| {
                    c.twilio.base_url = api;
                    c.twilio.account_sid =
                        Some(mesh::domain::AccountSid::parse(&account).expect("the fake's sid"));
                    c.numbers.pricing_base_url = pricing;
                    c.numbers.api_key_sid = Some(key);
                    c.numbers.api_key_secret = Some(secret.into());
                    c.numbers.reconcile_every = Duration::ZERO;
                })),
                tenant_accounts: Some(Box::new(move |accounts, base| {
                    accounts.owner_mail = Some(tenant_svc::notice::OwnerMail {
                        mailer: mesh::mail::Mailer::new(
                            &mesh::mail::MailTransport::Outbox(dir),
                            "NeuroSphere <no-reply@mesh.example>",
                        ),
                        base_url: base.to_owned(),
                    });
                    // Every test signs up from 127.0.0.1.
                    accounts.signup.per_address_per_day = 100_000;
                })),
                gateway_env: vec![
                    // Every test signs in from 127.0.0.1: the per-address allowance of sign-in
                    // posts must not make one test's sign-ins fail another's. tenant-svc's own
                    // per-account and per-address failure throttles still apply (tested).
                    ("PORTAL_AUTH_POSTS_PER_MINUTE".into(), "100000".into()),
                ],
            })
            .await;
            Some(Shared {
                mesh,
                browser: Mutex::new(browser),
                twilio,
                outbox,
            })
        });
        Suite { runtime, shared }
    })
}

/// What a test gets: the mesh, the browser (alone, with no cookies) and the portal's base URL.
pub struct Ctx<'a> {
    /// The mesh.
    pub mesh: &'a Mesh,
    /// The browser, at the desktop viewport.
    pub browser: &'a Browser,
    /// The fake Twilio REST API.
    pub twilio: &'a FakeTwilio,
    /// tenant-svc's mail folder.
    pub outbox: &'a std::path::Path,
}

impl Suite {
    /// Runs `test` with the browser to itself, or prints why it is skipped (no Chromium and
    /// not CI). The browser starts at the desktop viewport with no cookies.
    pub fn run<F>(&'static self, test: F)
    where
        F: for<'a> AsyncFnOnce(Ctx<'a>),
    {
        let Some(shared) = &self.shared else {
            return;
        };
        self.runtime.block_on(async {
            let browser = shared.browser.lock().await;
            browser.set_viewport(DESKTOP).await.expect("resize");
            // Cookies are per site: open the portal's origin first, then clear them.
            browser
                .goto(&format!(
                    "{}/portal/static/portal.css",
                    shared.mesh.public_base_url
                ))
                .await
                .expect("open the portal");
            browser
                .client()
                .delete_all_cookies()
                .await
                .expect("clear cookies");
            test(Ctx {
                mesh: &shared.mesh,
                browser: &browser,
                twilio: &shared.twilio,
                outbox: &shared.outbox,
            })
            .await;
        });
    }
}

/// A tenant of a test's own.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Customer id.
    pub id: i64,
    /// Its Twilio number.
    pub number: String,
    /// A tag unique in the run, for the tenant's e-mail addresses.
    pub tag: u32,
}

impl Ctx<'_> {
    /// The portal URL of `path` (which starts with `/portal/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mesh.public_base_url)
    }

    /// Creates a customer with its own number through the admin API.
    pub async fn tenant(&self, business_name: &str) -> Tenant {
        let tag = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let number = format!("+1415555{:04}", 3000 + tag);
        let token = self.admin_token();
        let mut admin = TenantAdmin::new(self.mesh.channel(self.mesh.tenant).await);
        let config = AgentConfig {
            greeting_new_caller: Some(format!("Thank you for calling {business_name}.")),
            voice: Some("sage".into()),
            ..Default::default()
        };
        let id = create_tenant(
            &mut admin,
            &token,
            &format!("ops{tag}@tenant.example"),
            business_name,
            config,
            &number,
        )
        .await;
        Tenant { id, number, tag }
    }

    fn admin_token(&self) -> String {
        self.mesh
            .service_token(names::OPERATOR, names::TENANT_SVC, &["tenant:admin"])
    }

    /// An invitation token for `email` to join `tenant` with `role`, as
    /// `neurosphere user invite` makes one.
    pub async fn invite(&self, tenant: &Tenant, email: &str, role: UserRole) -> String {
        let mut admin = AccountAdminServiceClient::new(self.mesh.channel(self.mesh.tenant).await);
        admin
            .invite_user(with_token(
                InviteUserRequest {
                    customer_id: tenant.id,
                    email: email.to_owned(),
                    role: role.into(),
                },
                &self.admin_token(),
            ))
            .await
            .expect("invite")
            .into_inner()
            .token
    }

    /// Opens the invitation link, sets `password` and waits for the page after it.
    pub async fn accept_invitation(&self, token: &str, password: &str) {
        let b = self.browser;
        b.goto(&self.url(&format!("/portal/invite/{token}")))
            .await
            .expect("open the invitation");
        b.fill("#password", password).await.expect("password");
        b.fill("#confirm", password).await.expect("confirm");
        b.click("main form button[type=submit]")
            .await
            .expect("submit the invitation");
    }

    /// A user of `tenant` with `role`, invited and signed in (by accepting the invitation);
    /// returns their e-mail address.
    pub async fn user(&self, tenant: &Tenant, who: &str, role: UserRole) -> String {
        let email = format!("{who}.{}@tenant.example", tenant.tag);
        let token = self.invite(tenant, &email, role).await;
        self.accept_invitation(&token, PASSWORD).await;
        assert!(
            self.signed_in().await,
            "accepting the invitation of {email} did not sign in: {}\n{}",
            self.browser.url().await.unwrap_or_default(),
            self.browser.text().await.unwrap_or_default()
        );
        email
    }

    /// Signs in on the sign-in page with `email` and `password` (whatever the answer).
    pub async fn sign_in(&self, email: &str, password: &str) {
        let b = self.browser;
        b.goto(&self.url("/portal/sign-in"))
            .await
            .expect("open sign-in");
        b.fill("#email", email).await.expect("e-mail");
        b.fill("#password", password).await.expect("password");
        b.click("main form button[type=submit]")
            .await
            .expect("submit sign-in");
    }

    /// Clicks "Sign out" in the header.
    pub async fn sign_out(&self) {
        if !self.signed_in().await {
            // An error page has no header: sign out from the dashboard.
            self.browser
                .goto(&self.url("/portal/"))
                .await
                .expect("open");
        }
        if let Err(e) = self
            .browser
            .click("form[action='/portal/sign-out'] button")
            .await
        {
            panic!(
                "sign out on {}: {e:#}\n{}",
                self.browser.url().await.unwrap_or_default(),
                self.browser.text().await.unwrap_or_default()
            );
        }
    }

    /// Whether the page shown now is a signed-in page (it has the header's sign-out form).
    pub async fn signed_in(&self) -> bool {
        !self
            .browser
            .find_all("form[action='/portal/sign-out']")
            .await
            .expect("read the page")
            .is_empty()
    }

    /// The browser's cookie named `name` for the portal, if any.
    pub async fn cookie(&self, name: &str) -> Option<Cookie> {
        self.browser
            .cookies()
            .await
            .expect("cookies")
            .into_iter()
            .find(|c| c.name == name)
    }

    /// The paths of the main navigation's links on the page shown now.
    pub async fn nav_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for link in self
            .browser
            .find_all("nav.main-nav a")
            .await
            .expect("read the navigation")
        {
            if let Some(href) = link.attr("href").await.expect("href") {
                out.push(href);
            }
        }
        out
    }

    /// The `<h1>` of the page shown now.
    pub async fn heading(&self) -> String {
        self.browser
            .find("h1")
            .await
            .expect("a heading")
            .text()
            .await
            .expect("its text")
    }

    /// Places a simulated call from `from` to `tenant` (signed webhook, Media Streams, the
    /// local realtime backend) and waits until media-svc has finished its record; returns the
    /// CallSid.
    pub async fn call(&self, tenant: &Tenant, from: &str) -> String {
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let call = SimCall {
            gateway_addr: self.mesh.gateway.main.to_string(),
            public_base_url: self.mesh.public_base_url.clone(),
            auth_token: self.mesh.twilio_auth_token.clone(),
            account_sid: ACCOUNT_SID.into(),
            call_sid: format!("CA{:032x}", 0xb000_0000_u64 + u64::from(n)),
            from: from.into(),
            to: tenant.number.clone(),
            caller_audio: sim::voice_like(2.0),
            duration: Duration::from_secs(3),
            direction: String::new(),
        };
        let result = sim::run(&call).await.expect("the simulated call runs");
        assert!(
            result.connected,
            "the call was not connected: {}",
            result.twiml
        );
        let mut media = CallServiceClient::new(self.mesh.channel(self.mesh.media).await);
        let token = self.mesh.tenant_token(tenant.id, &[scope::MEDIA_READ]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got = media
                .get_call(with_token(
                    GetCallRequest {
                        call_sid: call.call_sid.clone(),
                    },
                    &token,
                ))
                .await;
            if got.is_ok_and(|g| g.into_inner().call.is_some_and(|c| c.end_time.is_some())) {
                return call.call_sid;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the call's record was not finished in 15 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every portal page reachable by links from `start` (GET only, at most `limit` pages;
    /// never sign-out, downloads or the stylesheet), in the order found.
    pub async fn crawl(&self, start: &[&str], limit: usize) -> Vec<String> {
        let mut seen: BTreeSet<String> = start.iter().map(|s| (*s).to_owned()).collect();
        let mut queue: VecDeque<String> = start.iter().map(|s| (*s).to_owned()).collect();
        let mut out = Vec::new();
        while let Some(path) = queue.pop_front() {
            if out.len() >= limit {
                break;
            }
            self.browser.goto(&self.url(&path)).await.expect("open");
            out.push(path);
            for link in self
                .browser
                .find_all("a[href^='/portal/']")
                .await
                .expect("links")
            {
                let Some(href) = link.attr("href").await.expect("href") else {
                    continue;
                };
                let href = href.split('#').next().unwrap_or_default().to_owned();
                let skip = [
                    "/portal/static/",
                    "/portal/sign-out",
                    "export",
                    "download",
                    ".csv",
                ]
                .iter()
                .any(|s| href.contains(s))
                    || link.attr("download").await.expect("attr").is_some();
                if !skip && seen.insert(href.clone()) {
                    queue.push_back(href);
                }
            }
        }
        out
    }
}
