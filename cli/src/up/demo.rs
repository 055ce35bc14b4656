//! The two demo tenants `neurosphere up` creates on a fresh database, so that a new user can
//! call a number and see two tenants kept apart before configuring anything.

use std::time::Duration;

use anyhow::Context;
use mesh::auth::with_bearer as auth;
use mesh::identity::{DevKeys, names};

/// A tenant `up` creates unless it exists.
struct Demo {
    email: &'static str,
    name: &'static str,
    number: &'static str,
    voice: &'static str,
    greeting: &'static str,
    sliders: [(&'static str, u32); 3],
}

/// The demo tenants.
const DEMO: [Demo; 2] = [
    Demo {
        email: "ops@peterson.example",
        name: "Peterson Family Insurance",
        number: "+14155550101",
        voice: "sage",
        greeting: "{time_greeting}! Thank you for calling Peterson Family Insurance, this is {agent_name}. How can I help?",
        sliders: [("warmth", 80), ("empathy", 75), ("directness", 40)],
    },
    Demo {
        email: "desk@smith.example",
        name: "Smith Insurance Agency",
        number: "+14155550102",
        voice: "coral",
        greeting: "Smith Insurance Agency, {agent_name} speaking. What can I do for you today?",
        sliders: [("warmth", 50), ("empathy", 50), ("directness", 70)],
    },
];

type AdminClient = mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient<
    tonic::transport::Channel,
>;

/// Creates the two demo tenants unless they exist; returns (id, name, number) of each.
pub async fn seed_demo_tenants(
    keys: &DevKeys,
    tenant_addr: &str,
) -> anyhow::Result<Vec<(i64, String, String)>> {
    use mesh::api::tenant::ListCustomersRequest;
    let token = keys.identity(names::OPERATOR).minter().mint_service(
        names::TENANT_SVC,
        &[mesh::identity::scope::TENANT_ADMIN],
        Duration::from_secs(300),
    )?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{tenant_addr}"))?
        .connect()
        .await?;
    let mut admin = AdminClient::new(channel);
    let existing = admin
        .list_customers(auth(
            ListCustomersRequest {
                page_size: 500,
                page_token: String::new(),
            },
            &token,
        ))
        .await?
        .into_inner()
        .customers;
    let mut out = Vec::new();
    for demo in &DEMO {
        let id = match existing.iter().find(|c| c.email == demo.email) {
            Some(c) => c.id,
            None => create(&mut admin, &token, demo).await?,
        };
        out.push((id, demo.name.to_owned(), demo.number.to_owned()));
    }
    Ok(out)
}

/// Creates one demo tenant with its number; returns its customer id.
async fn create(admin: &mut AdminClient, token: &str, demo: &Demo) -> anyhow::Result<i64> {
    use mesh::api::tenant::{AgentConfig, AssignPhoneNumberRequest, CreateCustomerRequest};
    let c = admin
        .create_customer(auth(
            CreateCustomerRequest {
                email: demo.email.into(),
                business_name: demo.name.into(),
                contact_name: String::new(),
                contact_phone: String::new(),
                package_tier: "professional".into(),
                agent_config: Some(AgentConfig {
                    voice: Some(demo.voice.into()),
                    greeting_new_caller: Some(demo.greeting.into()),
                    sliders: demo
                        .sliders
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), *v))
                        .collect(),
                    ..Default::default()
                }),
            },
            token,
        ))
        .await?
        .into_inner()
        .customer
        .context("no customer")?;
    admin
        .assign_phone_number(auth(
            AssignPhoneNumberRequest {
                customer_id: c.id,
                number: demo.number.into(),
                twilio_account_sid: String::new(),
            },
            token,
        ))
        .await?;
    println!(
        "  seeded demo tenant {} (customer {}, {})",
        demo.name, c.id, demo.number
    );
    Ok(c.id)
}

/// The portal owner `up` invites for a demo tenant: `owner@` its e-mail's domain.
fn owner_email(demo: &Demo) -> String {
    let domain = demo.email.split('@').nth(1).unwrap_or("example.com");
    format!("owner@{domain}")
}

/// Invites an owner to each demo tenant's portal; returns (tenant name, owner e-mail, token),
/// the token `None` when the owner is already a user (they sign in with their password).
pub async fn invite_owners(
    keys: &DevKeys,
    tenant_addr: &str,
    demo: &[(i64, String, String)],
) -> anyhow::Result<Vec<(String, String, Option<String>)>> {
    use mesh::api::tenant::account_admin_service_client::AccountAdminServiceClient;
    use mesh::api::tenant::{InviteUserRequest, UserRole};
    let token = keys.identity(names::OPERATOR).minter().mint_service(
        names::TENANT_SVC,
        &[mesh::identity::scope::TENANT_ADMIN],
        Duration::from_secs(300),
    )?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{tenant_addr}"))?
        .connect()
        .await?;
    let mut accounts = AccountAdminServiceClient::new(channel);
    let mut out = Vec::new();
    for ((id, name, _), spec) in demo.iter().zip(&DEMO) {
        let email = owner_email(spec);
        let invited = accounts
            .invite_user(auth(
                InviteUserRequest {
                    customer_id: *id,
                    email: email.clone(),
                    role: UserRole::Owner as i32,
                },
                &token,
            ))
            .await;
        let link = match invited {
            Ok(r) => Some(r.into_inner().token),
            Err(s) if s.code() == tonic::Code::AlreadyExists => None,
            Err(s) => anyhow::bail!("inviting the owner of {name}: {}", s.message()),
        };
        out.push((name.clone(), email, link));
    }
    Ok(out)
}
