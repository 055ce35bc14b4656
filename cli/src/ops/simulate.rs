//! `neurosphere call simulate`: a complete Twilio call against a running gateway (the signed
//! voice webhook, the Media Streams socket, caller audio in real time, marks echoed), then the
//! call's record and transcript as the tenant sees them. A new user's first proof that the mesh
//! answers a phone call; WAV files in and out are decoded and encoded with `mesh::g711`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use gateway::sim::SimCall;
use mesh::api::common::Speaker;
use mesh::api::{media as media_pb, tenant as tenant_pb};
use mesh::auth::with_bearer as auth;
use mesh::g711;
use mesh::identity::scope;

use super::{Conn, status};

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
        .map(|s| s.map(g711::linear_to_ulaw))
        .collect::<Result<_, _>>()?)
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
        w.write_sample(g711::ulaw_to_linear(*b))?;
    }
    w.finalize()?;
    Ok(())
}

impl SimulateArgs {
    /// The call to play: the auth token given, or the one `up` generated.
    fn call(&self) -> anyhow::Result<SimCall> {
        let auth_token = match &self.auth_token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(self.data_dir.join("dev-twilio-auth-token"))
                .context("no --auth-token / TWILIO_AUTH_TOKEN and no development token from `neurosphere up`")?
                .trim()
                .to_owned(),
        };
        let caller_audio = match &self.audio {
            Some(p) => read_wav(p)?,
            None => gateway::sim::voice_like(self.seconds as f64),
        };
        Ok(SimCall {
            gateway_addr: self.gateway.clone(),
            public_base_url: self.public_base_url.clone(),
            auth_token,
            account_sid: "AC00000000000000000000000000000000".into(),
            call_sid: format!("CA{}", uuid::Uuid::new_v4().simple()),
            from: self.from.clone(),
            to: self.to.clone(),
            caller_audio,
            duration: Duration::from_secs(self.seconds),
            direction: String::new(),
        })
    }
}

/// Runs `neurosphere call simulate`.
pub async fn simulate(conn: &Conn, args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let call = args.call()?;
    eprintln!(
        "calling {} from {} for {} s (CallSid {})…",
        args.to, args.from, args.seconds, call.call_sid
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
    print_record(conn, &call).await?;
    Ok(ExitCode::SUCCESS)
}

/// The customer a number is assigned to, found with the operator's `ListCustomers` (the edge's
/// `ResolveNumber` is the gateway's alone).
async fn owner_of(conn: &Conn, number: &str) -> anyhow::Result<i64> {
    let (mut admin, token) = conn.admin().await?;
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_customers(auth(
                tenant_pb::ListCustomersRequest {
                    page_size: 500,
                    page_token,
                },
                &token,
            ))
            .await
            .map_err(status)?
            .into_inner();
        let owner =
            (page.customers.iter()).find(|c| c.phone_numbers.iter().any(|n| n.number == number));
        if let Some(c) = owner {
            return Ok(c.id);
        }
        if page.next_page_token.is_empty() {
            bail!("no customer has the number {number}");
        }
        page_token = page.next_page_token;
    }
}

/// Prints the call's record and transcript as the tenant sees them, waiting up to 5 s for
/// media-svc to finish the call.
async fn print_record(conn: &Conn, call: &SimCall) -> anyhow::Result<()> {
    let customer_id = owner_of(conn, &call.to).await?;
    let read = conn.tenant_token(customer_id, &[scope::MEDIA_READ]).await?;
    let mut media = conn.media().await?;
    let mut got = None;
    for _ in 0..50 {
        let r = media
            .get_call(auth(
                media_pb::GetCallRequest {
                    call_sid: call.call_sid.clone(),
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
            customer_id,
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
        let who = match Speaker::try_from(t.speaker) {
            Ok(Speaker::Agent) => "agent ",
            Ok(Speaker::Caller) => "caller",
            _ => "system",
        };
        println!(
            "  {:>6.1} s  {who}  {}",
            f64::from(t.offset_ms) / 1000.0,
            t.text
        );
    }
    Ok(())
}
