//! `neurosphere operator …`: the platform's operators (who sign in to the operator console).
//! `add` creates one through tenant-svc's `OperatorAdminService.AddOperator` with the CLI's
//! `tenant:admin` token and prints, once, the initial password and the `otpauth://` URI to enrol
//! the required second factor in an authenticator app. Neither is stored or logged anywhere:
//! tenant-svc keeps the password's Argon2id hash and the TOTP secret sealed.

use std::process::ExitCode;

use clap::Subcommand;
use mesh::api::tenant::operator_admin_service_client::OperatorAdminServiceClient;
use mesh::api::tenant::{AddOperatorRequest, AddOperatorResponse, DisableOperatorRequest};
use mesh::auth::with_bearer as auth;
use mesh::identity::{names, scope};

use super::{Conn, status};

/// `neurosphere operator …`
#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Add an operator; prints the initial password and the authenticator URI (shown once).
    Add {
        /// Their e-mail address.
        #[arg(long)]
        email: String,
    },
    /// Disable an operator and end their sessions.
    Disable {
        /// Their e-mail address.
        #[arg(long)]
        email: String,
    },
}

async fn client(
    conn: &Conn,
) -> anyhow::Result<(
    OperatorAdminServiceClient<tonic::transport::Channel>,
    String,
)> {
    let token = conn.operator_token(names::TENANT_SVC, &[scope::TENANT_ADMIN])?;
    let channel = Conn::channel(&conn.tenant_url).await?;
    Ok((OperatorAdminServiceClient::new(channel), token))
}

/// Adds the operator `email` with the operator key.
pub async fn add(conn: &Conn, email: &str) -> anyhow::Result<AddOperatorResponse> {
    let (mut c, token) = client(conn).await?;
    Ok(c.add_operator(auth(
        AddOperatorRequest {
            email: email.to_owned(),
        },
        &token,
    ))
    .await
    .map_err(status)?
    .into_inner())
}

/// Runs `neurosphere operator …`.
pub async fn operator(conn: &Conn, cmd: OperatorCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OperatorCommand::Add { email } => {
            let added = add(conn, &email).await?;
            let id = added.operator.map(|o| o.id).unwrap_or_default();
            println!("operator {id} added");
            println!("initial password (shown once): {}", added.initial_password);
            println!(
                "second factor: add this to an authenticator app (shown once):\n{}",
                added.otpauth_uri
            );
        }
        OperatorCommand::Disable { email } => {
            let (mut c, token) = client(conn).await?;
            let ended = c
                .disable_operator(auth(DisableOperatorRequest { email }, &token))
                .await
                .map_err(status)?
                .into_inner()
                .ended_sessions;
            println!("operator disabled; {ended} session(s) ended");
        }
    }
    Ok(ExitCode::SUCCESS)
}
