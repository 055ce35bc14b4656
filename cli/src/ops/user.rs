//! `neurosphere user …`: the tenant portal's users, as an operator. `invite` creates a one-time
//! invitation (72 hours) through tenant-svc's `AccountAdminService.InviteUser` and prints the link
//! the person opens to choose a password: `<PUBLIC_BASE_URL>/portal/invite/<token>`.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use mesh::api::tenant::account_admin_service_client::AccountAdminServiceClient;
use mesh::api::tenant::{InviteUserRequest, UserRole};
use mesh::auth::with_bearer as auth;
use mesh::identity::{names, scope};

use super::{Conn, status};

/// A portal user's role.
#[derive(Clone, Copy, ValueEnum)]
pub enum Role {
    /// Everything: settings, export, erasure, API keys, team.
    Owner,
    /// Calls, transcripts and callers' memory, to read.
    Staff,
}

/// `neurosphere user …`
#[derive(Subcommand)]
pub enum UserCommand {
    /// Invite a person to a customer's portal; prints the one-time link (valid 72 hours).
    Invite {
        /// Customer id.
        #[arg(long)]
        customer: i64,
        /// Their e-mail address.
        #[arg(long)]
        email: String,
        /// Their role.
        #[arg(long, value_enum)]
        role: Role,
        /// The public base URL the portal is served under (the link's prefix).
        #[arg(long, env = "PUBLIC_BASE_URL", default_value = "http://127.0.0.1:8080")]
        public_base_url: String,
    },
}

/// The invitation link of `token` under `base`.
pub fn invitation_link(base: &str, token: &str) -> String {
    format!("{}/portal/invite/{token}", base.trim_end_matches('/'))
}

/// Invites `email` to `customer` as `role` with the operator key; returns the token.
pub async fn invite(
    conn: &Conn,
    customer: i64,
    email: &str,
    role: Role,
) -> Result<String, tonic::Status> {
    let token = conn
        .operator_token(names::TENANT_SVC, &[scope::TENANT_ADMIN])
        .map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
    let channel = Conn::channel(&conn.tenant_url)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?;
    let role = match role {
        Role::Owner => UserRole::Owner,
        Role::Staff => UserRole::Staff,
    };
    Ok(AccountAdminServiceClient::new(channel)
        .invite_user(auth(
            InviteUserRequest {
                customer_id: customer,
                email: email.to_owned(),
                role: role as i32,
            },
            &token,
        ))
        .await?
        .into_inner()
        .token)
}

/// Runs `neurosphere user …`.
pub async fn user(conn: &Conn, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let UserCommand::Invite {
        customer,
        email,
        role,
        public_base_url,
    } = cmd;
    let token = invite(conn, customer, &email, role).await.map_err(status)?;
    println!("{}", invitation_link(&public_base_url, &token));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_have_one_slash() {
        assert_eq!(
            invitation_link("https://mesh.example/", "abc"),
            "https://mesh.example/portal/invite/abc"
        );
    }
}
