//! Operator commands over the gRPC APIs: tenants, a caller's data, and simulated calls. Each
//! command authenticates with a service token minted from the operator key in `--keys`
//! (`neurosphere-cli.pem`), or with a tenant token tenant-svc issues for the customer, exactly as
//! another team would.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::{media as media_pb, memory as memory_pb, tenant as tenant_pb};
use mesh::auth::with_bearer as auth;
use mesh::identity::{DevKeys, names, scope};
use tonic::transport::Channel;

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

/// `neurosphere caller …`
#[derive(Subcommand)]
pub enum CallerCommand {
    /// Everything stored about one caller of one customer (memory-svc and media-svc), as JSON
    /// lines.
    Export {
        /// Customer id.
        #[arg(long)]
        customer: i64,
        /// The caller, E.164.
        #[arg(long)]
        phone: String,
    },
    /// Erase one caller of one customer in memory-svc and media-svc (audited).
    Erase {
        /// Customer id.
        #[arg(long)]
        customer: i64,
        /// The caller, E.164.
        #[arg(long)]
        phone: String,
    },
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

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
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
            // Check the number before creating anything, so a bad number creates nothing.
            if let Some(n) = &number {
                mesh::domain::PhoneNumber::parse(n)
                    .map_err(|e| anyhow::anyhow!("--number: {e}"))?;
            }
            let (mut admin, token) = conn.admin().await?;
            let c = admin
                .create_customer(auth(
                    tenant_pb::CreateCustomerRequest {
                        email,
                        business_name: name,
                        agent_config: Some(tenant_pb::AgentConfig {
                            voice,
                            agent_name,
                            greeting_new_caller: greeting,
                            ..Default::default()
                        }),
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
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::List => {
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
                    break;
                }
                page_token = page.next_page_token;
            }
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Show { customer } => {
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
                .get_effective_profile(auth(tenant_pb::GetEffectiveProfileRequest {}, &profile))
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
            Ok(ExitCode::SUCCESS)
        }
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
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::SetConfig { customer, set } => {
            let mut config = tenant_pb::AgentConfig::default();
            let mut paths = Vec::new();
            for kv in &set {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--set {kv}: expected key=value"))?;
                match k {
                    "agent_name" => config.agent_name = Some(v.into()),
                    "greeting_new_caller" => config.greeting_new_caller = Some(v.into()),
                    "greeting_returning_caller" => {
                        config.greeting_returning_caller = Some(v.into())
                    }
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
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::History { customer } => {
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
            for c in page.changes {
                let when = c
                    .change_time
                    .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                println!(
                    "{when}  {:<28} {} -> {}  by {}",
                    c.config_key,
                    if c.old_value_json.is_empty() {
                        "(default)"
                    } else {
                        &c.old_value_json
                    },
                    if c.new_value_json.is_empty() {
                        "(default)"
                    } else {
                        &c.new_value_json
                    },
                    c.changed_by
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `neurosphere caller …`.
pub async fn caller(conn: &Conn, cmd: CallerCommand) -> anyhow::Result<ExitCode> {
    let (customer, phone, erase) = match cmd {
        CallerCommand::Export { customer, phone } => (customer, phone, false),
        CallerCommand::Erase { customer, phone } => (customer, phone, true),
    };
    mesh::domain::CallerNumber::parse(&phone).map_err(|e| anyhow::anyhow!("--phone: {e}"))?;
    let scopes: &[&str] = if erase {
        &[scope::MEMORY_ERASE, scope::MEDIA_ERASE]
    } else {
        &[scope::MEMORY_EXPORT, scope::MEDIA_EXPORT]
    };
    let token = conn.tenant_token(customer, scopes).await?;
    let mut memory = MemoryServiceClient::new(Conn::channel(&conn.memory_url).await?);
    let mut media = conn.media().await?;
    if erase {
        let m = memory
            .erase_caller(auth(
                memory_pb::EraseCallerRequest {
                    user_id: phone.clone(),
                },
                &token,
            ))
            .await
            .map_err(status)?
            .into_inner();
        let c = media
            .erase_caller(auth(media_pb::EraseCallerRequest { caller: phone }, &token))
            .await
            .map_err(status)?
            .into_inner();
        for t in m.counts.iter().chain(c.counts.iter()) {
            println!("{:<32} {} row(s) erased", t.table, t.rows);
        }
        println!("audit: {}", m.audit.map(|a| a.action).unwrap_or_default());
    } else {
        let mut s = memory
            .export_caller(auth(
                memory_pb::ExportCallerRequest {
                    user_id: phone.clone(),
                },
                &token,
            ))
            .await
            .map_err(status)?
            .into_inner();
        while let Some(r) = s.message().await.map_err(status)? {
            println!(
                "{}",
                serde_json::json!({ "service": "memory-svc", "record": format!("{:?}", r.record) })
            );
        }
        let mut s = media
            .export_caller(auth(
                media_pb::ExportCallerRequest { caller: phone },
                &token,
            ))
            .await
            .map_err(status)?
            .into_inner();
        while let Some(r) = s.message().await.map_err(status)? {
            println!(
                "{}",
                serde_json::json!({ "service": "media-svc", "record": format!("{:?}", r.record) })
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `neurosphere call simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// The tenant's number to call.
    #[arg(long)]
    to: String,
    /// The caller's number.
    #[arg(long, default_value = "+15551111111")]
    from: String,
    /// Caller audio: a WAV file (8 kHz mono 16-bit PCM or mu-law); a voice-like signal when absent.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// Call length in seconds.
    #[arg(long, default_value_t = 6)]
    seconds: u64,
    /// Save what the agent said to this WAV file (8 kHz mu-law).
    #[arg(long)]
    save: Option<PathBuf>,
    /// The gateway's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: String,
    /// Public base URL the gateway was started with.
    #[arg(long, env = "PUBLIC_BASE_URL", default_value = "http://127.0.0.1:8080")]
    public_base_url: String,
    /// Twilio Auth Token the gateway checks (defaults to `up`'s development value).
    #[arg(long, env = "TWILIO_AUTH_TOKEN")]
    auth_token: Option<String>,
    /// Data directory of `up` (for the development auth token).
    #[arg(long, default_value = ".neurosphere")]
    data_dir: PathBuf,
}

fn read_wav(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut reader =
        hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = reader.spec();
    if spec.sample_rate != 8000 || spec.channels != 1 || spec.bits_per_sample != 16 {
        bail!(
            "--audio: need 8 kHz mono 16-bit PCM WAV (got {} Hz, {} channel(s), {} bits)",
            spec.sample_rate,
            spec.channels,
            spec.bits_per_sample
        );
    }
    Ok(reader
        .samples::<i16>()
        .map(|s| s.map(gateway::sim::linear_to_mulaw))
        .collect::<Result<_, _>>()?)
}

fn mulaw_to_linear(b: u8) -> i16 {
    let b = !b;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = b & 0x0f;
    let magnitude = ((i32::from(mantissa) << 3) + 0x84) << exponent;
    let s = magnitude - 0x84;
    (if sign != 0 { -s } else { s }) as i16
}

fn write_wav(path: &Path, mulaw: &[u8]) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for b in mulaw {
        w.write_sample(mulaw_to_linear(*b))?;
    }
    w.finalize()?;
    Ok(())
}

/// Runs `neurosphere call simulate`.
pub async fn simulate(conn: &Conn, args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let auth_token = match args.auth_token {
        Some(t) => t,
        None => std::fs::read_to_string(args.data_dir.join("dev-twilio-auth-token"))
            .context("no --auth-token / TWILIO_AUTH_TOKEN and no development token from `neurosphere up`")?
            .trim()
            .to_owned(),
    };
    let caller_audio = match &args.audio {
        Some(p) => read_wav(p)?,
        None => gateway::sim::voice_like(args.seconds as f64),
    };
    let call_sid = format!("CA{}", uuid::Uuid::new_v4().simple());
    let call = gateway::sim::SimCall {
        gateway_addr: args.gateway.clone(),
        public_base_url: args.public_base_url.clone(),
        auth_token,
        account_sid: "AC00000000000000000000000000000000".into(),
        call_sid: call_sid.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        caller_audio,
        duration: Duration::from_secs(args.seconds),
        direction: String::new(),
    };
    eprintln!(
        "calling {} from {} for {} s (CallSid {call_sid})…",
        args.to, args.from, args.seconds
    );
    let progress = tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_secs(1));
        let mut n = 0;
        loop {
            t.tick().await;
            eprint!("\r  {n:>3} s");
            n += 1;
        }
    });
    let result = gateway::sim::run(&call).await;
    progress.abort();
    eprintln!();
    let result = result?;
    if !result.connected {
        println!("not connected; Twilio would say: {:?}", result.said);
        return Ok(ExitCode::from(3));
    }
    println!(
        "connected: {} frames sent, {} received ({:.1} s of agent audio), {} marks echoed, {} clear(s); first audio after {:?}",
        result.frames_sent,
        result.frames_received,
        result.agent_audio.len() as f64 / 8000.0,
        result.marks,
        result.clears,
        result.first_audio_after
    );
    if let Some(path) = &args.save {
        write_wav(path, &result.agent_audio)?;
        println!("saved the agent's audio to {}", path.display());
    }
    // The record, as the tenant sees it.
    let token = conn.operator_token(names::TENANT_SVC, &[scope::TENANT_RESOLVE])?;
    let mut edge = mesh::api::tenant::edge_service_client::EdgeServiceClient::new(
        Conn::channel(&conn.tenant_url).await?,
    );
    let resolved = edge
        .resolve_number(auth(
            tenant_pb::ResolveNumberRequest {
                called_number: args.to,
                account_sid: call.account_sid.clone(),
                call_sid: call_sid.clone(),
            },
            &token,
        ))
        .await
        .map_err(status)?
        .into_inner();
    let read = conn
        .tenant_token(resolved.customer_id, &[scope::MEDIA_READ])
        .await?;
    let mut media = conn.media().await?;
    let mut got = None;
    for _ in 0..50 {
        let r = media
            .get_call(auth(
                media_pb::GetCallRequest {
                    call_sid: call_sid.clone(),
                },
                &read,
            ))
            .await
            .map_err(status)?
            .into_inner();
        let done = r.call.as_ref().is_some_and(|c| c.end_time.is_some());
        got = Some(r);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = got.context("no call record")?;
    if let Some(c) = &got.call {
        println!(
            "call record: tenant {}, status {}, {} s, backend {}, ended: {}",
            resolved.customer_id,
            media_pb::CallStatus::try_from(c.status)
                .map(|s| s.as_str_name())
                .unwrap_or("?"),
            c.duration_seconds,
            c.backend,
            c.end_reason
        );
    }
    println!("transcript:");
    for t in &got.turns {
        let who = match mesh::api::common::Speaker::try_from(t.speaker) {
            Ok(mesh::api::common::Speaker::Agent) => "agent ",
            Ok(mesh::api::common::Speaker::Caller) => "caller",
            _ => "system",
        };
        println!(
            "  {:>6.1} s  {who}  {}",
            f64::from(t.offset_ms) / 1000.0,
            t.text
        );
    }
    Ok(ExitCode::SUCCESS)
}
