//! `neurosphere billing …`: packages, versioned rate cards, which package a customer is on, and
//! monthly bills, over media-svc's `BillingAdminService` with the operator's `media:admin` token.
//! Prices are integer minor units of the package's currency (per minute; per million tokens);
//! months are `YYYY-MM` (UTC) and nothing may take effect in a closed month.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use mesh::api::media as pb;
use mesh::api::media::billing_admin_service_client::BillingAdminServiceClient;
use mesh::auth::with_bearer as auth;
use mesh::identity::{names, scope};

use super::{Conn, status};

/// What a package does at its cap.
#[derive(Clone, Copy, ValueEnum)]
pub enum OverCap {
    /// New inbound calls leave a message (no agent).
    MessageFlow,
    /// New calls are refused (the busy answer).
    Refuse,
}

/// `neurosphere billing …`
#[derive(Subcommand)]
pub enum BillingCommand {
    /// Create a package.
    CreatePackage {
        /// Lower-case letters, digits, `-`, `_`.
        #[arg(long)]
        name: String,
        /// ISO 4217 code, e.g. USD.
        #[arg(long)]
        currency: String,
        /// Monthly cap on Twilio minutes (0: none).
        #[arg(long, default_value_t = 0)]
        cap_minutes: i64,
        /// What happens at the cap.
        #[arg(long, value_enum)]
        over_cap: Option<OverCap>,
    },
    /// List packages with their rate card versions.
    Packages,
    /// Publish the next rate card version of a package (prices in minor units).
    PublishRates {
        #[arg(long)]
        package: String,
        /// First month it prices, YYYY-MM (default: the current month).
        #[arg(long, default_value = "")]
        from: String,
        #[arg(long, default_value_t = 0)]
        per_twilio_minute: i64,
        #[arg(long, default_value_t = 0)]
        per_recorded_minute: i64,
        /// Per million uncached input text tokens.
        #[arg(long, default_value_t = 0)]
        input_text: i64,
        /// Per million uncached input audio tokens.
        #[arg(long, default_value_t = 0)]
        input_audio: i64,
        /// Per million cached input text tokens.
        #[arg(long, default_value_t = 0)]
        cached_text: i64,
        /// Per million cached input audio tokens.
        #[arg(long, default_value_t = 0)]
        cached_audio: i64,
        /// Per million output text tokens.
        #[arg(long, default_value_t = 0)]
        output_text: i64,
        /// Per million output audio tokens.
        #[arg(long, default_value_t = 0)]
        output_audio: i64,
    },
    /// Put a customer on a package from a month on.
    Assign {
        #[arg(long)]
        customer: i64,
        #[arg(long)]
        package: String,
        /// YYYY-MM (default: the current month).
        #[arg(long, default_value = "")]
        from: String,
    },
    /// The package of customers with none of their own, from a month on.
    SetDefault {
        #[arg(long)]
        package: String,
        /// YYYY-MM (default: the current month).
        #[arg(long, default_value = "")]
        from: String,
    },
    /// One customer's bill of a month.
    Bill {
        #[arg(long)]
        customer: i64,
        /// YYYY-MM (default: the current month).
        #[arg(long, default_value = "")]
        month: String,
    },
    /// Every customer's bill of a month as CSV, on standard output.
    Export {
        /// YYYY-MM (default: the current month).
        #[arg(long, default_value = "")]
        month: String,
    },
}

type Admin = BillingAdminServiceClient<tonic::transport::Channel>;

/// Runs `neurosphere billing …`.
pub async fn billing(conn: &Conn, cmd: BillingCommand) -> anyhow::Result<ExitCode> {
    let token = conn.operator_token(names::MEDIA_SVC, &[scope::MEDIA_ADMIN])?;
    let mut admin = BillingAdminServiceClient::new(Conn::channel(&conn.media_url).await?);
    match cmd {
        BillingCommand::CreatePackage {
            name,
            currency,
            cap_minutes,
            over_cap,
        } => create_package(&mut admin, &token, name, currency, cap_minutes, over_cap).await?,
        BillingCommand::Packages => list_packages(&mut admin, &token).await?,
        BillingCommand::PublishRates {
            package,
            from,
            per_twilio_minute,
            per_recorded_minute,
            input_text,
            input_audio,
            cached_text,
            cached_audio,
            output_text,
            output_audio,
        } => {
            let card = pb::RateCard {
                version: 0,
                effective_month: from,
                per_twilio_minute,
                per_recorded_minute,
                per_million_input_text_tokens: input_text,
                per_million_input_audio_tokens: input_audio,
                per_million_cached_text_tokens: cached_text,
                per_million_cached_audio_tokens: cached_audio,
                per_million_output_text_tokens: output_text,
                per_million_output_audio_tokens: output_audio,
            };
            publish(&mut admin, &token, package, card).await?;
        }
        BillingCommand::Assign {
            customer,
            package,
            from,
        } => {
            let request = pb::AssignPackageRequest {
                customer_id: customer,
                package: package.clone(),
                effective_month: from,
            };
            admin
                .assign_package(auth(request, &token))
                .await
                .map_err(status)?;
            println!("customer {customer} is on {package}");
        }
        BillingCommand::SetDefault { package, from } => {
            let request = pb::SetDefaultPackageRequest {
                package: package.clone(),
                effective_month: from,
            };
            admin
                .set_default_package(auth(request, &token))
                .await
                .map_err(status)?;
            println!("default package: {package}");
        }
        BillingCommand::Bill { customer, month } => {
            bill(&mut admin, &token, customer, month).await?
        }
        BillingCommand::Export { month } => {
            let csv = admin
                .export_monthly_bills(auth(pb::ExportMonthlyBillsRequest { month }, &token))
                .await
                .map_err(status)?
                .into_inner()
                .csv;
            print!("{csv}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn bill(admin: &mut Admin, token: &str, customer: i64, month: String) -> anyhow::Result<()> {
    let request = pb::GetCustomerBillRequest {
        customer_id: customer,
        month,
    };
    let bill = admin
        .get_customer_bill(auth(request, token))
        .await
        .map_err(status)?
        .into_inner()
        .bill
        .unwrap_or_default();
    print!("{}", render(&bill));
    Ok(())
}

async fn create_package(
    admin: &mut Admin,
    token: &str,
    name: String,
    currency: String,
    cap_minutes: i64,
    over_cap: Option<OverCap>,
) -> anyhow::Result<()> {
    let over_cap = match over_cap {
        None => pb::OverCapAction::Unspecified,
        Some(OverCap::MessageFlow) => pb::OverCapAction::MessageFlow,
        Some(OverCap::Refuse) => pb::OverCapAction::Refuse,
    };
    let request = pb::CreatePackageRequest {
        package: Some(pb::BillingPackage {
            name,
            currency,
            cap_minutes,
            over_cap: over_cap as i32,
            rate_cards: vec![],
        }),
    };
    let p = admin
        .create_package(auth(request, token))
        .await
        .map_err(status)?
        .into_inner()
        .package
        .unwrap_or_default();
    println!("package {} created ({})", p.name, p.currency);
    Ok(())
}

async fn list_packages(admin: &mut Admin, token: &str) -> anyhow::Result<()> {
    let packages = admin
        .list_packages(auth(pb::ListPackagesRequest {}, token))
        .await
        .map_err(status)?
        .into_inner()
        .packages;
    for p in packages {
        let over = pb::OverCapAction::try_from(p.over_cap).map_or("?", |o| o.as_str_name());
        println!(
            "{}\t{}\tcap {} min\t{over}",
            p.name, p.currency, p.cap_minutes
        );
        for c in p.rate_cards {
            println!(
                "  v{} from {}: minute {}, recorded {}, per million: input text {}, input audio {}, cached text {}, cached audio {}, output text {}, output audio {}",
                c.version,
                c.effective_month,
                c.per_twilio_minute,
                c.per_recorded_minute,
                c.per_million_input_text_tokens,
                c.per_million_input_audio_tokens,
                c.per_million_cached_text_tokens,
                c.per_million_cached_audio_tokens,
                c.per_million_output_text_tokens,
                c.per_million_output_audio_tokens
            );
        }
    }
    Ok(())
}

async fn publish(
    admin: &mut Admin,
    token: &str,
    package: String,
    card: pb::RateCard,
) -> anyhow::Result<()> {
    let request = pb::PublishRateCardRequest {
        package: package.clone(),
        rate_card: Some(card),
    };
    let card = admin
        .publish_rate_card(auth(request, token))
        .await
        .map_err(status)?
        .into_inner()
        .rate_card
        .unwrap_or_default();
    println!(
        "{package}: rate card v{} from {}",
        card.version, card.effective_month
    );
    Ok(())
}

/// A bill as text.
fn render(b: &pb::MonthlyBill) -> String {
    let mut out = format!(
        "customer {} {}: package {} (rate card v{}) {}, {} calls, {} of {} cap minutes ({} %)\n",
        b.customer_id,
        b.month,
        if b.package.is_empty() {
            "none"
        } else {
            &b.package
        },
        b.rate_card_version,
        b.currency,
        b.calls,
        b.minutes_used,
        b.cap_minutes,
        b.cap_percent_used
    );
    for l in &b.lines {
        let unit = pb::BillingUnit::try_from(l.unit).map_or("?", |u| u.as_str_name());
        out.push_str(&format!(
            "  {unit:<36} {:>12} x {:>8} = {:>10}\n",
            l.quantity, l.unit_price, l.amount
        ));
    }
    out.push_str(&format!("  total {:>62}\n", b.total));
    out
}
