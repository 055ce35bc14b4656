//! Operator commands over the gRPC APIs, one module per subject: `tenant` (customers, numbers,
//! agent configuration and its history), `caller` (one caller's data: export, audited erase),
//! `user` (inviting people to the tenant portal), `numbers` (phone numbers at Twilio), `operator`
//! (the operator console's accounts), `billing` (packages, rate cards, bills) and `simulate` (a whole Twilio call through a running gateway). Each command authenticates with a
//! service token minted from the operator key in `--keys` (`neurosphere-cli.pem`), or with a
//! tenant token tenant-svc issues for the customer, exactly as another team would; [`Conn`] holds
//! where the services are and mints both.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::tenant as tenant_pb;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::auth::with_bearer as auth;
use mesh::identity::{DevKeys, names, scope};
use tonic::transport::Channel;

mod billing;
mod caller;
mod numbers;
mod operator;
mod simulate;
mod tenant;
mod user;

pub use billing::{BillingCommand, billing};
pub use caller::{CallerCommand, caller};
pub use numbers::{NumbersCommand, numbers};
pub use operator::{OperatorCommand, operator};
pub use simulate::{SimulateArgs, simulate};
pub use tenant::{TenantCommand, tenant};
pub use user::{UserCommand, invitation_link, user};

/// Where the services are and which keys to use.
#[derive(Args, Clone)]
pub struct Conn {
    /// Directory of the keys (`neurosphere-cli.pem` signs operator tokens).
    #[arg(long, default_value = ".neurosphere/keys", global = true)]
    keys: PathBuf,
    /// tenant-svc endpoint.
    #[arg(
        long,
        env = "TENANT_SVC_URL",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    tenant_url: String,
    /// memory-svc endpoint.
    #[arg(
        long,
        env = "MEMORY_SVC_URL",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    memory_url: String,
    /// media-svc endpoint.
    #[arg(
        long,
        env = "MEDIA_SVC_URL",
        default_value = "http://127.0.0.1:50053",
        global = true
    )]
    media_url: String,
}

impl Conn {
    fn keys(&self) -> anyhow::Result<DevKeys> {
        DevKeys::read(&self.keys).with_context(|| {
            format!(
                "reading keys from {} (run `neurosphere up` or `neurosphere keys generate`)",
                self.keys.display()
            )
        })
    }

    /// An operator service token for `audience`.
    pub fn operator_token(&self, audience: &str, scopes: &[&str]) -> anyhow::Result<String> {
        Ok(self
            .keys()?
            .identity(names::OPERATOR)
            .minter()
            .mint_service(audience, scopes, Duration::from_secs(300))?)
    }

    /// A channel to `url`, failing fast with a hint when nothing listens there.
    async fn channel(url: &str) -> anyhow::Result<Channel> {
        tonic::transport::Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(3))
            .connect()
            .await
            .with_context(|| format!("connecting to {url} (is the mesh running? `neurosphere up`)"))
    }

    /// tenant-svc's admin client and an admin token.
    pub async fn admin(&self) -> anyhow::Result<(TenantAdminServiceClient<Channel>, String)> {
        Ok((
            TenantAdminServiceClient::new(Self::channel(&self.tenant_url).await?),
            self.operator_token(names::TENANT_SVC, &[scope::TENANT_ADMIN])?,
        ))
    }

    /// A tenant token for `customer`, issued by tenant-svc.
    pub async fn tenant_token(&self, customer: i64, scopes: &[&str]) -> anyhow::Result<String> {
        let (mut admin, token) = self.admin().await?;
        Ok(admin
            .issue_tenant_token(auth(
                tenant_pb::IssueTenantTokenRequest {
                    customer_id: customer,
                    scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                    audiences: vec![],
                    ttl: Some(prost_types::Duration {
                        seconds: 600,
                        nanos: 0,
                    }),
                    subject: "neurosphere-cli".into(),
                },
                &token,
            ))
            .await
            .map_err(status)?
            .into_inner()
            .token)
    }

    /// media-svc client.
    pub async fn media(&self) -> anyhow::Result<CallServiceClient<Channel>> {
        Ok(CallServiceClient::new(
            Self::channel(&self.media_url).await?,
        ))
    }
}

/// A refused RPC as an error that names its gRPC code.
fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}
