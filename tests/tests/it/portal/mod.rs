//! The tenant portal over HTTP against the real mesh (issue 19): real gateway, real gRPC, real
//! PostgreSQL. Shared helpers: boot a mesh ([`PortalMesh`]), invite a user through
//! `AccountAdminService` ([`PortalMesh::invite`]), a cookie-keeping client that sends the
//! portal's own `Origin` on every POST like a browser ([`Browser`]), signing in
//! ([`Browser::sign_in`], [`PortalMesh::signed_in_user`]) and the CSRF token of a page
//! ([`csrf_of`]). One module per lane: `account` (sign-in, invitation, reset, security), `team`, `keys`, `data`
//! (dashboard, calls, callers, usage), `settings` (agent, webhooks, outbound), `call_handling`
//! (recording, retention, messages, opening hours), `signup` (self sign-up, the waiting page), `numbers` (the owner's number page), `recording` (the call page's player and the
//! recording endpoint), `recordings` (every recording of a call, by id), `messages` (the inbox).

// Shared by every lane's module: not each of them uses every helper.
#![allow(dead_code)]

mod account;
mod call_handling;
mod data;
mod keys;
mod messages;
mod numbers;
mod recording;
mod recordings;
mod settings;
mod signup;
mod team;

use std::collections::BTreeMap;

use e2e::{Mesh, MeshOptions, with_token};
use mesh::api::tenant::account_admin_service_client::AccountAdminServiceClient;
use mesh::api::tenant::{InviteUserRequest, UserRole};
use mesh::identity::{names, scope};
use reqwest::header::{self, HeaderMap};

/// A password tenant-svc accepts (long, not a common one).
pub const PASSWORD: &str = "correct horse battery staple 19";

/// A mesh with its portal at `base` (the gateway's public base URL).
pub struct PortalMesh {
    /// The running mesh.
    pub mesh: Mesh,
    /// Where the portal's pages are requested: the gateway's loopback address.
    pub http: String,
    /// The public base URL the gateway was configured with (the portal's origin).
    pub origin: String,
    /// The two demo tenants (customer ids).
    pub tenants: (i64, i64),
}

impl PortalMesh {
    /// A mesh on a plain-http loopback base URL (cookie `ns_session`, `Path=/portal`).
    pub async fn start() -> PortalMesh {
        Self::start_with(&[]).await
    }

    /// A mesh with extra gateway settings (e.g. `PUBLIC_BASE_URL`, `PORTAL_SMTP_URL`).
    pub async fn start_with(gateway_env: &[(&str, &str)]) -> PortalMesh {
        let mesh = Mesh::start_with(MeshOptions {
            gateway_env: gateway_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..MeshOptions::default()
        })
        .await;
        let (a, b) = mesh.seed_demo_tenants().await;
        let http = format!("http://{}", mesh.gateway.main);
        let origin = gateway_env
            .iter()
            .find(|(k, _)| *k == "PUBLIC_BASE_URL")
            .map_or_else(|| http.clone(), |(_, v)| (*v).to_owned());
        PortalMesh {
            mesh,
            http,
            origin,
            tenants: (a.id, b.id),
        }
    }

    /// An invitation token for `email` to `customer_id` with `role`, as an operator makes it.
    pub async fn invite(&self, customer_id: i64, email: &str, role: UserRole) -> String {
        let token =
            self.mesh
                .service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
        let mut admin = AccountAdminServiceClient::new(self.mesh.channel(self.mesh.tenant).await);
        admin
            .invite_user(with_token(
                InviteUserRequest {
                    customer_id,
                    email: email.to_owned(),
                    role: role as i32,
                },
                &token,
            ))
            .await
            .expect("invite user")
            .into_inner()
            .token
    }

    /// A browser on this portal.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.http, &self.origin)
    }

    /// A browser signed in as a new user of `customer_id` with `role` (invited, password set).
    pub async fn signed_in_user(&self, customer_id: i64, email: &str, role: UserRole) -> Browser {
        let token = self.invite(customer_id, email, role).await;
        let mut browser = self.browser();
        let response = browser.accept_invitation(&token, PASSWORD).await;
        assert_eq!(response.status(), 303, "invitation accepted");
        browser
    }

    /// Rows of a table of tenant-svc's schema (read as the administrator, RLS bypassed).
    pub async fn count(&self, table: &str) -> i64 {
        let client = self.mesh.db.admin_client().await;
        client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count rows")
            .get(0)
    }
}

/// A cookie-keeping HTTP client that does not follow redirects (tests look at them) and sends
/// the portal's `Origin` on every POST, as a browser posting the portal's own form does.
pub struct Browser {
    client: reqwest::Client,
    http: String,
    origin: String,
    /// The cookies the portal set (name -> value), as a browser would keep them.
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    /// A browser with no cookies.
    pub fn new(http: &str, origin: &str) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
                .build()
                .expect("client"),
            http: http.to_owned(),
            origin: origin.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps (or, with `Max-Age=0`, drops) the cookies a response sets.
    fn keep(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let value = value.to_str().expect("ascii cookie");
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, v) = pair.split_once('=').expect("name=value");
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), v.to_owned());
            }
        }
    }

    /// GET `path` (under the gateway), cookies sent and kept.
    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.http))
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .expect("GET");
        Page::read(self, response).await
    }

    /// `method` on `path` with extra request headers, the body kept as bytes (media, downloads).
    pub async fn fetch(
        &mut self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Raw {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.http))
            .header(header::COOKIE, self.cookie_header());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        self.keep(response.headers());
        Raw {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("body").to_vec(),
        }
    }

    /// POST a form to `path` with the portal's `Origin`.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.origin.clone();
        self.post_from(path, form, Some(&origin)).await
    }

    /// POST a form to `path` with the given `Origin` (or none).
    pub async fn post_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = self
            .client
            .post(format!("{}{path}", self.http))
            .header(header::COOKIE, self.cookie_header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let response = request.send().await.expect("POST");
        Page::read(self, response).await
    }

    /// Opens the invitation and sets `password` (twice).
    pub async fn accept_invitation(&mut self, token: &str, password: &str) -> Page {
        let path = format!("/portal/invite/{token}");
        let page = self.get(&path).await;
        assert_eq!(page.status(), 200, "{}", page.body);
        let csrf = csrf_of(&page.body);
        self.post(
            &path,
            &[
                ("csrf", &csrf),
                ("password", password),
                ("confirm", password),
            ],
        )
        .await
    }

    /// Signs in through the sign-in form.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let page = self.get("/portal/sign-in").await;
        assert_eq!(page.status(), 200, "{}", page.body);
        let csrf = csrf_of(&page.body);
        self.post(
            "/portal/sign-in",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }

    /// The CSRF token of the page at `path`.
    pub async fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status(), 200, "{}", page.body);
        csrf_of(&page.body)
    }
}

/// A response with its body as bytes.
pub struct Raw {
    /// The status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Raw {
    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or_default())
    }
}

/// A response with its body read.
pub struct Page {
    /// Status and headers.
    pub status: reqwest::StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

impl Page {
    async fn read(browser: &mut Browser, response: reqwest::Response) -> Page {
        browser.keep(response.headers());
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or_default())
    }

    /// How often `needle` occurs in the body.
    pub fn matches_count(&self, needle: &str) -> usize {
        self.body.matches(needle).count()
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }
}

/// The value of the first `csrf` hidden field of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no csrf field in:\n{html}"));
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').expect("closing quote")].to_owned()
}
