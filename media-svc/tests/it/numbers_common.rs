//! The numbers tests' world: media-svc and tenant-svc (real gRPC, real PostgreSQL) with the
//! fake Twilio REST and Pricing APIs (`mesh::testkit::twilio`), the production client pointed
//! at them by settings.

use std::time::Duration;

use media_svc::numbers::client::Retry;
use mesh::api::media::number_admin_service_client::NumberAdminServiceClient;
use mesh::api::media::number_service_client::NumberServiceClient;
use mesh::api::tenant::ResolveNumberRequest;
use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::auth::{AttachToken, TokenSource};
use mesh::domain::AccountSid;
use mesh::identity::{names, scope};
use mesh::testkit::twilio::FakeTwilio;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::common::{Svc, sid};

pub type Numbers = NumberServiceClient<InterceptedService<Channel, AttachToken>>;
pub type Admin = NumberAdminServiceClient<InterceptedService<Channel, AttachToken>>;

/// Our webhooks, as the platform sets them.
pub const VOICE_URL: &str = "https://edge.example/twilio/voice";
pub const STATUS_URL: &str = "https://edge.example/twilio/status";

pub struct World {
    pub svc: Svc,
    pub fake: FakeTwilio,
}

/// media-svc configured for the fake, with tenant-svc; `adjust` changes the numbers' config.
pub async fn start_with(
    adjust: impl FnOnce(&mut media_svc::numbers::NumbersConfig) + Send + 'static,
) -> World {
    let fake = FakeTwilio::start().await;
    let (api, pricing, account, key, secret) = (
        fake.api_url.clone(),
        fake.pricing_url.clone(),
        fake.account_sid.clone(),
        fake.key_sid.clone(),
        fake.key_secret.clone(),
    );
    let svc = Svc::start_with(
        move |mut c| {
            c.twilio.base_url = api;
            c.twilio.account_sid = Some(AccountSid::parse(&account).unwrap());
            c.public_base_url = "https://edge.example".into();
            c.numbers.pricing_base_url = pricing;
            c.numbers.api_key_sid = Some(key);
            c.numbers.api_key_secret = Some(secret.into());
            c.numbers.reconcile_every = Duration::ZERO;
            c.numbers.request_timeout = Duration::from_secs(3);
            c.numbers.retry = Retry {
                attempts: 4,
                base: Duration::from_millis(20),
                max: Duration::from_secs(2),
            };
            adjust(&mut c.numbers);
            c
        },
        true,
    )
    .await;
    World { svc, fake }
}

pub async fn start() -> World {
    start_with(|_| {}).await
}

impl World {
    /// A portal owner's client for `customer` (the owner's scopes, `media:numbers` among them).
    pub async fn owner(&self, customer: i64) -> Numbers {
        let token = self
            .svc
            .tenant_token(customer, "owner", scope::OWNER_SCOPES);
        NumberServiceClient::with_interceptor(
            self.svc.channel_to(self.svc.addr).await,
            AttachToken(TokenSource::fixed(token.into())),
        )
    }

    /// The operator's client (`media:admin`).
    pub async fn admin(&self) -> Admin {
        self.admin_as(names::OPERATOR, &[scope::MEDIA_ADMIN]).await
    }

    /// An admin client with a service token signed by `issuer` carrying `scopes`.
    pub async fn admin_as(&self, issuer: &str, scopes: &[&str]) -> Admin {
        let token = self.svc.service_token(issuer, names::MEDIA_SVC, scopes);
        NumberAdminServiceClient::with_interceptor(
            self.svc.channel_to(self.svc.addr).await,
            AttachToken(TokenSource::fixed(token.into())),
        )
    }

    /// The customer tenant-svc routes a call to `number` to (the gateway's `ResolveNumber`).
    pub async fn routed_to(&self, number: &str) -> Option<i64> {
        let token =
            self.svc
                .service_token(names::GATEWAY, names::TENANT_SVC, &[scope::TENANT_RESOLVE]);
        let mut edge = EdgeServiceClient::with_interceptor(
            self.svc
                .channel_to(self.svc.tenant_addr.expect("tenant-svc"))
                .await,
            AttachToken(TokenSource::fixed(token.into())),
        );
        edge.resolve_number(ResolveNumberRequest {
            called_number: number.to_owned(),
            account_sid: self.fake.account_sid.clone(),
            call_sid: sid("CA", 7),
        })
        .await
        .ok()
        .map(|r| r.into_inner().customer_id)
    }

    /// Rows of `media.numbers`, every tenant (admin connection).
    pub async fn rows(&self) -> i64 {
        self.svc.count("SELECT count(*) FROM media.numbers").await
    }
}
