//! `tenant.outbound_settings`: a customer's outbound-call and webhook settings (migrations V5 and V14),
//! defaults when the row was never written.

use mesh::db::Tx;
use mesh::domain::CustomerId;
use tokio_postgres::Row;
use tokio_postgres::types::Type;

use crate::error::{Result, TenantError};
use crate::outbound::OutboundSettings;

const OUTBOUND_COLUMNS: &str = "allowed_regions, allowed_personas, do_not_call, \
     cors_origins, greet_first_outbound, webhook_url, webhook_raw_numbers, public_calls_per_hour, \
     allowed_number_types, transfer_regions, max_call_minutes";

fn outbound_from_row(r: &Row) -> OutboundSettings {
    OutboundSettings {
        allowed_regions: r.get("allowed_regions"),
        allowed_personas: r.get("allowed_personas"),
        do_not_call: r.get("do_not_call"),
        cors_origins: r.get("cors_origins"),
        greet_first_outbound: r.get("greet_first_outbound"),
        webhook_url: r.get("webhook_url"),
        webhook_raw_numbers: r.get("webhook_raw_numbers"),
        // The column's CHECK keeps it within 0..=10,000.
        public_calls_per_hour: u32::try_from(r.get::<_, i32>("public_calls_per_hour")).unwrap_or(0),
        allowed_number_types: r.get("allowed_number_types"),
        transfer_regions: r.get("transfer_regions"),
        // The column's CHECK keeps it within 0..=240.
        max_call_minutes: u32::try_from(r.get::<_, i32>("max_call_minutes")).unwrap_or(0),
    }
}

/// The settings and whether a webhook secret exists (never the secret), in one round trip;
/// defaults when never set; NOT_FOUND when the customer does not exist.
pub async fn get_outbound(tx: &Tx<'_>, id: CustomerId) -> Result<(OutboundSettings, bool)> {
    let rows = tx
        .query_typed(
            "SELECT s.customer_id IS NOT NULL AS stored, s.allowed_regions, \
             s.allowed_personas, s.do_not_call, s.cors_origins, s.greet_first_outbound, \
             s.webhook_url, s.webhook_raw_numbers, s.public_calls_per_hour, \
             s.allowed_number_types, s.transfer_regions, s.max_call_minutes, \
             EXISTS (SELECT 1 FROM tenant.webhook_secrets w WHERE w.customer_id = c.customer_id) \
             AS has_secret \
             FROM tenant.customers c \
             LEFT JOIN tenant.outbound_settings s ON s.customer_id = c.customer_id \
             WHERE c.customer_id = $1",
            &[(&id, Type::INT8)],
        )
        .await?;
    let r = rows.first().ok_or(TenantError::NotFound("customer"))?;
    let settings = if r.get("stored") {
        outbound_from_row(r)
    } else {
        OutboundSettings::default()
    };
    Ok((settings, r.get("has_secret")))
}

/// The stored settings (defaults when never set), for an update under [`lock_customer`](super::customers::lock_customer).
pub async fn load_outbound(tx: &Tx<'_>, id: CustomerId) -> Result<OutboundSettings> {
    Ok(tx
        .query_opt(
            &format!(
                "SELECT {OUTBOUND_COLUMNS} FROM tenant.outbound_settings WHERE customer_id = $1"
            ),
            &[&id],
        )
        .await?
        .map(|r| outbound_from_row(&r))
        .unwrap_or_default())
}

/// Writes the settings (creating the row on the first change).
pub async fn save_outbound(tx: &Tx<'_>, id: CustomerId, s: &OutboundSettings) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO tenant.outbound_settings (customer_id, {OUTBOUND_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (customer_id) DO UPDATE SET \
             allowed_regions = EXCLUDED.allowed_regions, \
             allowed_personas = EXCLUDED.allowed_personas, do_not_call = EXCLUDED.do_not_call, \
             cors_origins = EXCLUDED.cors_origins, \
             greet_first_outbound = EXCLUDED.greet_first_outbound, \
             webhook_url = EXCLUDED.webhook_url, webhook_raw_numbers = EXCLUDED.webhook_raw_numbers, \
             public_calls_per_hour = EXCLUDED.public_calls_per_hour, \
             allowed_number_types = EXCLUDED.allowed_number_types, \
             transfer_regions = EXCLUDED.transfer_regions, \
             max_call_minutes = EXCLUDED.max_call_minutes, updated_at = now()"
        ),
        &[
            &id,
            &s.allowed_regions,
            &s.allowed_personas,
            &s.do_not_call,
            &s.cors_origins,
            &s.greet_first_outbound,
            &s.webhook_url,
            &s.webhook_raw_numbers,
            &i32::try_from(s.public_calls_per_hour).unwrap_or(i32::MAX),
            &s.allowed_number_types,
            &s.transfer_regions,
            &i32::try_from(s.max_call_minutes).unwrap_or(i32::MAX),
        ],
    )
    .await?;
    Ok(())
}
