//! `neurosphere numbers …`: the platform's phone numbers at Twilio, through media-svc.
//! `import`, `release`, `list` and `reconcile` use `NumberAdminService` with the operator's
//! `media:admin` token; `search` and `buy` act as the customer, with a tenant token tenant-svc
//! issues for it carrying `media:numbers` only (the same path and limits as the portal's owner;
//! `buy` takes a request id so that running it again never buys twice).

use std::process::ExitCode;

use clap::Subcommand;
use mesh::api::media::number_admin_service_client::NumberAdminServiceClient;
use mesh::api::media::number_service_client::NumberServiceClient;
use mesh::api::media::{self as pb, DriftKind, NumberOrigin, NumberState, NumberType};
use mesh::auth::with_bearer as auth;
use mesh::identity::{names, scope};
use tonic::transport::Channel;

use super::{Conn, status};

/// `neurosphere numbers …`
#[derive(Subcommand)]
pub enum NumbersCommand {
    /// Numbers Twilio offers now, with their monthly price.
    Search {
        /// The customer the search is for.
        #[arg(long)]
        customer: i64,
        /// ISO country, e.g. US.
        #[arg(long, default_value = "US")]
        country: String,
        /// Area code (digits).
        #[arg(long, default_value = "")]
        area_code: String,
        /// A city.
        #[arg(long, default_value = "")]
        city: String,
        /// Digits the number contains.
        #[arg(long, default_value = "")]
        contains: String,
        /// `local`, `toll-free` or `mobile`.
        #[arg(long, default_value = "local")]
        kind: String,
    },
    /// Buy a number for a customer and route it to them.
    Buy {
        /// Customer id.
        #[arg(long)]
        customer: i64,
        /// The number (E.164), one of `search`'s.
        #[arg(long)]
        number: String,
        /// Idempotency key (a UUID); the same key again never buys twice. Default: a new one.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Take a number already on the Twilio account into the platform for a customer.
    Import {
        /// Customer id.
        #[arg(long)]
        customer: i64,
        /// The number (E.164).
        #[arg(long)]
        number: String,
        /// Correct its VoiceUrl, VoiceMethod and StatusCallback when they are not ours.
        #[arg(long)]
        fix: bool,
        /// The number was ported in (else: imported).
        #[arg(long)]
        ported: bool,
    },
    /// Release a customer's number (routing stops, released at Twilio).
    Release {
        /// Customer id.
        #[arg(long)]
        customer: i64,
        /// The number (E.164).
        #[arg(long)]
        number: String,
    },
    /// The numbers the platform holds (one customer's, with their history, or everyone's).
    List {
        /// Customer id (default: every customer's held numbers).
        #[arg(long, default_value_t = 0)]
        customer: i64,
    },
    /// Compare Twilio's numbers with the platform's; `--fix` fixes the drift.
    Reconcile {
        /// Fix what can be fixed (a number nobody holds is never released).
        #[arg(long)]
        fix: bool,
    },
}

fn kind(s: &str) -> anyhow::Result<NumberType> {
    Ok(match s {
        "local" => NumberType::Local,
        "toll-free" | "tollfree" => NumberType::TollFree,
        "mobile" => NumberType::Mobile,
        other => anyhow::bail!("--kind: expected local, toll-free or mobile, got {other:?}"),
    })
}

fn price(p: Option<&pb::Price>) -> String {
    p.map_or_else(
        || "-".to_owned(),
        |p| {
            format!(
                "{} {}.{:02}",
                p.currency,
                p.amount_minor / 100,
                p.amount_minor % 100
            )
        },
    )
}

fn line(n: &pb::PlatformNumber) -> String {
    let state = NumberState::try_from(n.state).map_or("?", |s| s.as_str_name());
    let origin = NumberOrigin::try_from(n.origin).map_or("?", |o| o.as_str_name());
    format!(
        "{:<16} customer {:<6} {:<24} {:<24} sid {} webhooks {}",
        n.phone_number,
        n.customer_id,
        state.trim_start_matches("NUMBER_STATE_"),
        origin.trim_start_matches("NUMBER_ORIGIN_"),
        if n.twilio_sid.is_empty() {
            "-"
        } else {
            &n.twilio_sid
        },
        if n.webhooks_ok { "ours" } else { "NOT ours" },
    )
}

async fn admin(conn: &Conn) -> anyhow::Result<(NumberAdminServiceClient<Channel>, String)> {
    let token = conn.operator_token(names::MEDIA_SVC, &[scope::MEDIA_ADMIN])?;
    let channel = Conn::channel(&conn.media_url).await?;
    Ok((NumberAdminServiceClient::new(channel), token))
}

async fn as_customer(
    conn: &Conn,
    customer: i64,
) -> anyhow::Result<(NumberServiceClient<Channel>, String)> {
    let token = conn.tenant_token(customer, &[scope::MEDIA_NUMBERS]).await?;
    let channel = Conn::channel(&conn.media_url).await?;
    Ok((NumberServiceClient::new(channel), token))
}

/// `numbers search`: as the customer.
async fn search(
    conn: &Conn,
    customer: i64,
    request: pb::SearchAvailableNumbersRequest,
) -> anyhow::Result<()> {
    let (mut c, token) = as_customer(conn, customer).await?;
    let found = c
        .search_available_numbers(auth(request, &token))
        .await
        .map_err(status)?
        .into_inner()
        .numbers;
    if found.is_empty() {
        println!("no numbers on offer");
    }
    for n in &found {
        println!(
            "{:<16} {:<20} {:<4} {}/month",
            n.phone_number,
            n.locality,
            n.region,
            price(n.monthly_price.as_ref())
        );
    }
    Ok(())
}

/// `numbers buy`: as the customer, idempotent on the request id.
async fn buy(
    conn: &Conn,
    customer: i64,
    number: String,
    request_id: Option<String>,
) -> anyhow::Result<()> {
    let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let (mut c, token) = as_customer(conn, customer).await?;
    let n = c
        .purchase_number(auth(
            pb::PurchaseNumberRequest {
                phone_number: number,
                request_id: request_id.clone(),
            },
            &token,
        ))
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "{:?}: {} (run again with --request-id {request_id}: never buys twice)",
                s.code(),
                s.message()
            )
        })?
        .into_inner()
        .number
        .unwrap_or_default();
    println!(
        "{}",
        line(&pb::PlatformNumber {
            customer_id: customer,
            ..n
        })
    );
    Ok(())
}

/// `numbers import`: the operator's.
async fn import(
    conn: &Conn,
    customer: i64,
    number: String,
    fix: bool,
    ported: bool,
) -> anyhow::Result<()> {
    let (mut c, token) = admin(conn).await?;
    let origin = if ported {
        NumberOrigin::Ported
    } else {
        NumberOrigin::Imported
    };
    let r = c
        .import_number(auth(
            pb::ImportNumberRequest {
                customer_id: customer,
                phone_number: number,
                fix_webhooks: fix,
                origin: origin as i32,
            },
            &token,
        ))
        .await
        .map_err(status)?
        .into_inner();
    for p in &r.webhook_problems {
        println!("webhooks: {p}");
    }
    if r.webhooks_fixed {
        println!("webhooks corrected");
    }
    println!("{}", line(&r.number.unwrap_or_default()));
    Ok(())
}

/// Runs `neurosphere numbers …`.
pub async fn numbers(conn: &Conn, cmd: NumbersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NumbersCommand::Search {
            customer,
            country,
            area_code,
            city,
            contains,
            kind: k,
        } => {
            let request = pb::SearchAvailableNumbersRequest {
                country,
                number_type: kind(&k)? as i32,
                area_code,
                contains,
                locality: city,
                limit: 0,
            };
            search(conn, customer, request).await?;
        }
        NumbersCommand::Buy {
            customer,
            number,
            request_id,
        } => buy(conn, customer, number, request_id).await?,
        NumbersCommand::Import {
            customer,
            number,
            fix,
            ported,
        } => import(conn, customer, number, fix, ported).await?,
        NumbersCommand::Release { customer, number } => {
            let (mut c, token) = admin(conn).await?;
            let n = c
                .release_customer_number(auth(
                    pb::ReleaseCustomerNumberRequest {
                        customer_id: customer,
                        phone_number: number,
                    },
                    &token,
                ))
                .await
                .map_err(status)?
                .into_inner()
                .number
                .unwrap_or_default();
            println!("{}", line(&n));
        }
        NumbersCommand::List { customer } => {
            let (mut c, token) = admin(conn).await?;
            let all = c
                .list_all_numbers(auth(
                    pb::ListAllNumbersRequest {
                        customer_id: customer,
                    },
                    &token,
                ))
                .await
                .map_err(status)?
                .into_inner()
                .numbers;
            for n in &all {
                println!("{}", line(n));
            }
        }
        NumbersCommand::Reconcile { fix } => return reconcile(conn, fix).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the drift; exits 1 when some is left unfixed (a number nobody holds included).
async fn reconcile(conn: &Conn, fix: bool) -> anyhow::Result<ExitCode> {
    let (mut c, token) = admin(conn).await?;
    let r = c
        .reconcile(auth(pb::ReconcileRequest { fix }, &token))
        .await
        .map_err(status)?
        .into_inner();
    println!(
        "Twilio lists {} number(s); the platform holds {} active",
        r.twilio_numbers, r.platform_numbers
    );
    for d in &r.drift {
        let kind = DriftKind::try_from(d.kind).map_or("?", |k| k.as_str_name());
        println!(
            "{:<16} customer {:<6} {:<28} {}{}",
            d.phone_number,
            d.customer_id,
            kind.trim_start_matches("DRIFT_KIND_"),
            d.detail,
            if d.fixed { " (fixed)" } else { "" }
        );
    }
    Ok(if r.drift.iter().all(|d| d.fixed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
