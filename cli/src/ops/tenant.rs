//! `neurosphere tenant …`: customers, their numbers and agent configuration, as an operator
//! (tenant-svc's admin API with an operator service token) or, for the configuration, as the
//! customer itself (a tenant token tenant-svc issues).

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use mesh::api::tenant as tenant_pb;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::auth::with_bearer as auth;
use mesh::identity::scope;

use super::{Conn, status};

/// `neurosphere tenant …`
#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a customer (optionally with a number and agent settings).
    Create {
        /// Contact email (unique).
        #[arg(long)]
        email: String,
        /// Business name.
        #[arg(long)]
        name: String,
        /// A Twilio number to assign, E.164.
        #[arg(long)]
        number: Option<String>,
        /// Voice (alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar).
        #[arg(long)]
        voice: Option<String>,
        /// Agent name.
        #[arg(long)]
        agent_name: Option<String>,
        /// Greeting for new callers ({agent_name}, {user_name}, {time_greeting}).
        #[arg(long)]
        greeting: Option<String>,
    },
    /// List customers.
    List,
    /// Show one customer.
    Show {
        /// Customer id.
        #[arg(long)]
        customer: i64,
    },
    /// Assign a number to a customer.
    AssignNumber {
        /// Customer id.
        #[arg(long)]
        customer: i64,
        /// E.164 number.
        #[arg(long)]
        number: String,
    },
    /// Release a customer's number.
    ReleaseNumber {
        /// Customer id.
        #[arg(long)]
        customer: i64,
        /// E.164 number.
        #[arg(long)]
        number: String,
    },
    /// Change a customer's agent configuration (as the customer, through a tenant token).
    SetConfig {
        /// Customer id.
        #[arg(long)]
        customer: i64,
        /// `key=value`, repeatable: agent_name, greeting_new_caller, greeting_returning_caller,
        /// voice, time_zone, sliders.<name> (e.g. sliders.warmth=80).
        #[arg(long = "set", required = true)]
        set: Vec<String>,
    },
    /// A customer's configuration history, newest first.
    History {
        /// Customer id.
        #[arg(long)]
        customer: i64,
    },
}

fn print_customer(c: &tenant_pb::Customer) {
    let status = tenant_pb::CustomerStatus::try_from(c.status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("CUSTOMER_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let numbers: Vec<&str> = c.phone_numbers.iter().map(|n| n.number.as_str()).collect();
    println!(
        "{:>5}  {:<32} {:<9} {:<28} {}",
        c.id,
        c.business_name,
        status,
        c.email,
        numbers.join(",")
    );
}

/// Runs `neurosphere tenant …`.
pub async fn tenant(conn: &Conn, cmd: TenantCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TenantCommand::Create {
            email,
            name,
            number,
            voice,
            agent_name,
            greeting,
        } => {
            let config = tenant_pb::AgentConfig {
                voice,
                agent_name,
                greeting_new_caller: greeting,
                ..Default::default()
            };
            create(conn, email, name, number, config).await?;
        }
        TenantCommand::List => list(conn).await?,
        TenantCommand::Show { customer } => show(conn, customer).await?,
        TenantCommand::AssignNumber { customer, number } => {
            let (mut admin, token) = conn.admin().await?;
            admin
                .assign_phone_number(auth(
                    tenant_pb::AssignPhoneNumberRequest {
                        customer_id: customer,
                        number,
                        twilio_account_sid: String::new(),
                    },
                    &token,
                ))
                .await
                .map_err(status)?;
            println!("assigned");
        }
        TenantCommand::ReleaseNumber { customer, number } => {
            let (mut admin, token) = conn.admin().await?;
            admin
                .release_phone_number(auth(
                    tenant_pb::ReleasePhoneNumberRequest {
                        customer_id: customer,
                        number,
                    },
                    &token,
                ))
                .await
                .map_err(status)?;
            println!("released");
        }
        TenantCommand::SetConfig { customer, set } => set_config(conn, customer, &set).await?,
        TenantCommand::History { customer } => history(conn, customer).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates a customer, then assigns its number; a refused number deletes the customer again.
async fn create(
    conn: &Conn,
    email: String,
    name: String,
    number: Option<String>,
    config: tenant_pb::AgentConfig,
) -> anyhow::Result<()> {
    // Check the number before creating anything, so a bad number creates nothing.
    if let Some(n) = &number {
        mesh::domain::PhoneNumber::parse(n).map_err(|e| anyhow::anyhow!("--number: {e}"))?;
    }
    let (mut admin, token) = conn.admin().await?;
    let c = admin
        .create_customer(auth(
            tenant_pb::CreateCustomerRequest {
                email,
                business_name: name,
                agent_config: Some(config),
                ..Default::default()
            },
            &token,
        ))
        .await
        .map_err(status)?
        .into_inner()
        .customer
        .context("no customer in the answer")?;
    if let Some(n) = number
        && let Err(e) = admin
            .assign_phone_number(auth(
                tenant_pb::AssignPhoneNumberRequest {
                    customer_id: c.id,
                    number: n,
                    twilio_account_sid: String::new(),
                },
                &token,
            ))
            .await
    {
        // Do not leave a half-created customer behind.
        let _ = admin
            .delete_customer(auth(
                tenant_pb::DeleteCustomerRequest { customer_id: c.id },
                &token,
            ))
            .await;
        return Err(status(e)).context("--number");
    }
    println!("created customer {}", c.id);
    Ok(())
}

/// Prints every customer, page by page.
async fn list(conn: &Conn) -> anyhow::Result<()> {
    let (mut admin, token) = conn.admin().await?;
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_customers(auth(
                tenant_pb::ListCustomersRequest {
                    page_size: 100,
                    page_token,
                },
                &token,
            ))
            .await
            .map_err(status)?
            .into_inner();
        page.customers.iter().for_each(print_customer);
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

/// Prints one customer and its effective agent profile, read as the customer.
async fn show(conn: &Conn, customer: i64) -> anyhow::Result<()> {
    let (mut admin, token) = conn.admin().await?;
    let c = admin
        .get_customer(auth(
            tenant_pb::GetCustomerRequest {
                customer_id: customer,
            },
            &token,
        ))
        .await
        .map_err(status)?
        .into_inner()
        .customer
        .context("no customer")?;
    print_customer(&c);
    let profile = conn.tenant_token(customer, &[scope::TENANT_READ]).await?;
    let mut t = TenantServiceClient::new(Conn::channel(&conn.tenant_url).await?);
    let p = t
        .get_effective_profile(auth(
            tenant_pb::GetEffectiveProfileRequest::default(),
            &profile,
        ))
        .await
        .map_err(status)?
        .into_inner()
        .profile
        .context("no profile")?;
    println!(
        "  agent {:?}, voice {}, time zone {}",
        p.agent_name, p.voice, p.time_zone
    );
    println!("  new callers:       {:?}", p.greeting_new_caller);
    println!("  returning callers: {:?}", p.greeting_returning_caller);
    let mut sliders: Vec<_> = p.sliders.iter().filter(|(_, v)| **v != 50).collect();
    sliders.sort();
    println!("  sliders not at 50: {sliders:?}");
    Ok(())
}

/// The configuration and field mask that `--set key=value` pairs describe.
fn parse_set(set: &[String]) -> anyhow::Result<(tenant_pb::AgentConfig, Vec<String>)> {
    let mut config = tenant_pb::AgentConfig::default();
    let mut paths = Vec::new();
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv}: expected key=value"))?;
        match k {
            "agent_name" => config.agent_name = Some(v.into()),
            "greeting_new_caller" => config.greeting_new_caller = Some(v.into()),
            "greeting_returning_caller" => config.greeting_returning_caller = Some(v.into()),
            "voice" => config.voice = Some(v.into()),
            "time_zone" => config.time_zone = Some(v.into()),
            s if s.starts_with("sliders.") => {
                let value: u32 = v
                    .parse()
                    .with_context(|| format!("--set {kv}: slider values are 0-100"))?;
                config
                    .sliders
                    .insert(s["sliders.".len()..].to_owned(), value);
            }
            other => bail!("--set {other}: unknown key"),
        }
        paths.push(k.to_owned());
    }
    Ok((config, paths))
}

/// Changes the agent configuration as the customer (a tenant token), as the customer's own
/// tools would.
async fn set_config(conn: &Conn, customer: i64, set: &[String]) -> anyhow::Result<()> {
    let (config, paths) = parse_set(set)?;
    let token = conn
        .tenant_token(customer, &[scope::TENANT_READ, scope::TENANT_WRITE])
        .await?;
    let mut t = TenantServiceClient::new(Conn::channel(&conn.tenant_url).await?);
    let r = t
        .update_agent_config(auth(
            tenant_pb::UpdateAgentConfigRequest {
                config: Some(config),
                update_mask: Some(prost_types::FieldMask { paths }),
            },
            &token,
        ))
        .await
        .map_err(status)?
        .into_inner();
    println!("{} change(s) recorded", r.changes_recorded);
    Ok(())
}

/// Prints the customer's configuration changes, newest first.
async fn history(conn: &Conn, customer: i64) -> anyhow::Result<()> {
    let token = conn.tenant_token(customer, &[scope::TENANT_READ]).await?;
    let mut t = TenantServiceClient::new(Conn::channel(&conn.tenant_url).await?);
    let page = t
        .list_config_history(auth(
            tenant_pb::ListConfigHistoryRequest {
                page_size: 100,
                page_token: String::new(),
            },
            &token,
        ))
        .await
        .map_err(status)?
        .into_inner();
    let or_default = |v: &str| if v.is_empty() { "(default)" } else { v }.to_owned();
    for c in page.changes {
        let when = c
            .change_time
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        println!(
            "{when}  {:<28} {} -> {}  by {}",
            c.config_key,
            or_default(&c.old_value_json),
            or_default(&c.new_value_json),
            c.changed_by
        );
    }
    Ok(())
}
