//! `neurosphere caller …`: everything one customer holds about one caller, in memory-svc and
//! media-svc, exported as JSON lines or erased. Both run as the customer, with a tenant token
//! carrying only the export or erase scopes. The erase is one request: media-svc `EraseCaller`
//! erases the caller's calls, then their memory through memory-svc, auditing in each; when it
//! answers that the second half is not done, running the command again finishes it.

use std::process::ExitCode;

use clap::Subcommand;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::{media as media_pb, memory as memory_pb};
use mesh::auth::with_bearer as auth;
use mesh::identity::scope;
use tonic::transport::Channel;

use super::{Conn, status};

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

/// Runs `neurosphere caller …`.
pub async fn caller(conn: &Conn, cmd: CallerCommand) -> anyhow::Result<ExitCode> {
    let (customer, phone, erase) = match cmd {
        CallerCommand::Export { customer, phone } => (customer, phone, false),
        CallerCommand::Erase { customer, phone } => (customer, phone, true),
    };
    mesh::domain::CallerNumber::parse(&phone).map_err(|e| anyhow::anyhow!("--phone: {e}"))?;
    let scopes: &[&str] = if erase {
        &[scope::MEDIA_ERASE]
    } else {
        &[scope::MEMORY_EXPORT, scope::MEDIA_EXPORT]
    };
    let token = conn.tenant_token(customer, scopes).await?;
    let clients = Clients {
        memory: MemoryServiceClient::new(Conn::channel(&conn.memory_url).await?),
        media: conn.media().await?,
        token,
    };
    if erase {
        clients.erase(phone).await?;
    } else {
        clients.export(phone).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The two services that hold a caller's data, and the customer's token for them.
struct Clients {
    memory: MemoryServiceClient<Channel>,
    media: CallServiceClient<Channel>,
    token: String,
}

impl Clients {
    /// Erases the caller (media-svc, which erases in memory-svc too); prints the rows erased
    /// per table and the audit rows written.
    async fn erase(mut self, phone: String) -> anyhow::Result<()> {
        let erased = self
            .media
            .erase_caller(auth(
                media_pb::EraseCallerRequest { caller: phone },
                &self.token,
            ))
            .await
            .map_err(status)?
            .into_inner();
        for t in &erased.counts {
            println!("{:<32} {} row(s) erased", t.table, t.rows);
        }
        for a in &erased.audits {
            println!("audit: {} {} {}", a.service, a.action, a.subject_hash);
        }
        Ok(())
    }

    /// Prints every record about the caller, memory-svc's then media-svc's, one JSON line each.
    async fn export(mut self, phone: String) -> anyhow::Result<()> {
        let print = |service: &str, record: String| {
            println!(
                "{}",
                serde_json::json!({ "service": service, "record": record })
            );
        };
        let mut s = self
            .memory
            .export_caller(auth(
                memory_pb::ExportCallerRequest {
                    user_id: phone.clone(),
                },
                &self.token,
            ))
            .await
            .map_err(status)?
            .into_inner();
        while let Some(r) = s.message().await.map_err(status)? {
            print("memory-svc", format!("{:?}", r.record));
        }
        let mut s = self
            .media
            .export_caller(auth(
                media_pb::ExportCallerRequest { caller: phone },
                &self.token,
            ))
            .await
            .map_err(status)?
            .into_inner();
        while let Some(r) = s.message().await.map_err(status)? {
            use base64::Engine as _;
            use media_pb::export_caller_response::Record;
            // A recording's audio pieces as base64 (the WAV bytes from `offset`).
            let record = match r.record {
                Some(Record::RecordingData(d)) => format!(
                    "RecordingData {{ recording_id: {:?}, offset: {}, wav_base64: {:?} }}",
                    d.recording_id,
                    d.offset,
                    base64::engine::general_purpose::STANDARD.encode(&d.data)
                ),
                other => format!("{other:?}"),
            };
            print("media-svc", record);
        }
        Ok(())
    }
}
