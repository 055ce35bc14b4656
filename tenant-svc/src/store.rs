//! SQL of tenant-svc. Every function takes a transaction opened by `Db::tenant_tx` (tenant data,
//! isolated by RLS) or `Db::service_tx` (platform defaults and the two id-only SECURITY DEFINER
//! functions); none takes a raw connection.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use mesh::api::tenant as pb;
use mesh::db::Tx;
use mesh::domain::CustomerId;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::Type;

use crate::error::{Result, TenantError};
use crate::model::{Change, Defaults, Overrides};
use crate::outbound::OutboundSettings;

/// A protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

const CUSTOMER_COLUMNS: &str = "customer_id, email, business_name, contact_name, contact_phone, \
     package_tier, status, agent_name, greeting_new_caller, greeting_returning_caller, voice, \
     sliders, prompt_blocks, transfer_rules, time_zone, created_at, updated_at";

/// A customer row with its numbers.
#[derive(Debug, Clone)]
pub struct Customer {
    /// Id.
    pub id: i64,
    /// Email.
    pub email: String,
    /// Business name.
    pub business_name: String,
    /// Contact name.
    pub contact_name: String,
    /// Contact phone.
    pub contact_phone: String,
    /// Package tier.
    pub package_tier: String,
    /// `active` or `suspended`.
    pub status: String,
    /// Configuration overrides.
    pub overrides: Overrides,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
    /// Phone numbers.
    pub numbers: Vec<pb::PhoneNumber>,
}

fn from_json<T: serde::de::DeserializeOwned>(v: Option<Value>) -> Option<T> {
    v.and_then(|v| serde_json::from_value(v).ok())
}

fn customer_from_row(row: &Row) -> Customer {
    let sliders: Value = row.get("sliders");
    Customer {
        id: row.get("customer_id"),
        email: row.get("email"),
        business_name: row.get("business_name"),
        contact_name: row.get("contact_name"),
        contact_phone: row.get("contact_phone"),
        package_tier: row.get("package_tier"),
        status: row.get("status"),
        overrides: Overrides {
            agent_name: row.get("agent_name"),
            greeting_new_caller: row.get("greeting_new_caller"),
            greeting_returning_caller: row.get("greeting_returning_caller"),
            voice: row.get("voice"),
            sliders: serde_json::from_value(sliders).unwrap_or_default(),
            prompt_blocks: from_json(row.get("prompt_blocks")),
            transfer_rules: from_json(row.get("transfer_rules")),
            time_zone: row.get("time_zone"),
        },
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        numbers: Vec::new(),
    }
}

impl Customer {
    /// Status as the protobuf enum.
    pub fn status_pb(&self) -> pb::CustomerStatus {
        match self.status.as_str() {
            "active" => pb::CustomerStatus::Active,
            "suspended" => pb::CustomerStatus::Suspended,
            _ => pb::CustomerStatus::Unspecified,
        }
    }

    /// The protobuf form.
    pub fn to_pb(&self) -> pb::Customer {
        pb::Customer {
            id: self.id,
            email: self.email.clone(),
            business_name: self.business_name.clone(),
            contact_name: self.contact_name.clone(),
            contact_phone: self.contact_phone.clone(),
            package_tier: self.package_tier.clone(),
            status: self.status_pb() as i32,
            agent_config: Some(self.overrides.to_pb()),
            phone_numbers: self.numbers.clone(),
            create_time: Some(timestamp(self.created_at)),
            update_time: Some(timestamp(self.updated_at)),
        }
    }
}

/// The next customer id (from the identity sequence), so the row can be inserted under its own
/// tenant context.
pub async fn next_customer_id(tx: &Tx<'_>) -> Result<CustomerId> {
    let row = tx
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('tenant.customers', 'customer_id'))",
            &[],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    CustomerId::new(row.get(0)).map_err(|_| TenantError::FailedPrecondition("bad id".into()))
}

/// New customer fields.
pub struct NewCustomer<'a> {
    /// Email.
    pub email: &'a str,
    /// Business name.
    pub business_name: &'a str,
    /// Contact name.
    pub contact_name: &'a str,
    /// Contact phone.
    pub contact_phone: &'a str,
    /// Tier.
    pub package_tier: &'a str,
    /// Initial overrides.
    pub overrides: &'a Overrides,
}

/// Inserts a customer with the given id (inside that customer's tenant transaction).
pub async fn insert_customer(tx: &Tx<'_>, id: CustomerId, c: &NewCustomer<'_>) -> Result<()> {
    let o = c.overrides;
    tx.execute(
        "INSERT INTO tenant.customers (customer_id, email, business_name, contact_name, \
         contact_phone, package_tier, agent_name, greeting_new_caller, greeting_returning_caller, \
         voice, sliders, prompt_blocks, transfer_rules, time_zone) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        &[
            &id.get(),
            &c.email,
            &c.business_name,
            &c.contact_name,
            &c.contact_phone,
            &c.package_tier,
            &o.agent_name,
            &o.greeting_new_caller,
            &o.greeting_returning_caller,
            &o.voice,
            &serde_json::to_value(&o.sliders).unwrap_or_default(),
            &o.prompt_blocks
                .as_ref()
                .map(|b| serde_json::to_value(b).unwrap_or_default()),
            &o.transfer_rules
                .as_ref()
                .map(|r| serde_json::to_value(r).unwrap_or_default()),
            &o.time_zone,
        ],
    )
    .await
    .map_err(mesh::db::DbError::from)?;
    Ok(())
}

/// The current tenant's customer row without its numbers (the call path needs no more);
/// `None` when it does not exist. One round trip (typed, no separate prepare).
pub async fn get_customer_core(tx: &Tx<'_>, id: CustomerId) -> Result<Option<Customer>> {
    let rows = tx
        .query_typed(
            &format!("SELECT {CUSTOMER_COLUMNS} FROM tenant.customers WHERE customer_id = $1"),
            &[(&id.get(), Type::INT8)],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(rows.first().map(customer_from_row))
}

/// Like [`get_customer_core`] but NOT_FOUND when missing.
pub async fn require_customer_core(tx: &Tx<'_>, id: CustomerId) -> Result<Customer> {
    get_customer_core(tx, id)
        .await?
        .ok_or(TenantError::NotFound("customer"))
}

/// The current tenant's customer (RLS shows only it), with numbers; `None` when it does not
/// exist.
pub async fn get_customer(tx: &Tx<'_>, id: CustomerId) -> Result<Option<Customer>> {
    let Some(mut c) = get_customer_core(tx, id).await? else {
        return Ok(None);
    };
    c.numbers = tx
        .query_typed(
            "SELECT number, twilio_account_sid, assigned_at FROM tenant.phone_numbers \
             WHERE customer_id = $1 ORDER BY number",
            &[(&id.get(), Type::INT8)],
        )
        .await
        .map_err(mesh::db::DbError::from)?
        .iter()
        .map(|r| pb::PhoneNumber {
            number: r.get(0),
            twilio_account_sid: r.get(1),
            assigned_at: Some(timestamp(r.get(2))),
        })
        .collect();
    Ok(Some(c))
}

/// Like [`get_customer`] but NOT_FOUND when missing.
pub async fn require_customer(tx: &Tx<'_>, id: CustomerId) -> Result<Customer> {
    get_customer(tx, id)
        .await?
        .ok_or(TenantError::NotFound("customer"))
}

/// Writes the overrides of the current tenant's customer.
pub async fn update_overrides(tx: &Tx<'_>, id: CustomerId, o: &Overrides) -> Result<()> {
    tx.execute(
        "UPDATE tenant.customers SET agent_name = $2, greeting_new_caller = $3, \
         greeting_returning_caller = $4, voice = $5, sliders = $6, prompt_blocks = $7, \
         transfer_rules = $8, time_zone = $9, updated_at = now() WHERE customer_id = $1",
        &[
            &id.get(),
            &o.agent_name,
            &o.greeting_new_caller,
            &o.greeting_returning_caller,
            &o.voice,
            &serde_json::to_value(&o.sliders).unwrap_or_default(),
            &o.prompt_blocks
                .as_ref()
                .map(|b| serde_json::to_value(b).unwrap_or_default()),
            &o.transfer_rules
                .as_ref()
                .map(|r| serde_json::to_value(r).unwrap_or_default()),
            &o.time_zone,
        ],
    )
    .await
    .map_err(mesh::db::DbError::from)?;
    Ok(())
}

/// Appends history rows.
pub async fn record_changes(
    tx: &Tx<'_>,
    id: CustomerId,
    changes: &[Change],
    by: &str,
) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    for c in changes {
        tx.execute(
            "INSERT INTO tenant.customer_configurations \
             (customer_id, config_type, config_key, old_value, new_value, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&id.get(), &c.config_type, &c.key, &c.old, &c.new, &by],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    }
    Ok(())
}

/// Sets the status; returns whether it changed.
pub async fn set_status(tx: &Tx<'_>, id: CustomerId, status: &str) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE tenant.customers SET status = $2, updated_at = now() \
             WHERE customer_id = $1 AND status <> $2",
            &[&id.get(), &status],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(n == 1)
}

/// History, newest first, ids below `before`.
pub async fn list_history(
    tx: &Tx<'_>,
    id: CustomerId,
    before: i64,
    limit: i64,
) -> Result<Vec<pb::ConfigChange>> {
    let rows = tx
        .query(
            "SELECT id, config_type, config_key, old_value, new_value, created_by, created_at \
             FROM tenant.customer_configurations WHERE customer_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3",
            &[&id.get(), &before, &limit],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(rows
        .iter()
        .map(|r| {
            let text = |v: Option<Value>| v.map(|v| v.to_string()).unwrap_or_default();
            pb::ConfigChange {
                id: r.get(0),
                config_type: r.get(1),
                config_key: r.get(2),
                old_value_json: text(r.get(3)),
                new_value_json: text(r.get(4)),
                changed_by: r.get(5),
                change_time: Some(timestamp(r.get(6))),
            }
        })
        .collect())
}

/// The platform defaults row.
pub async fn load_defaults(tx: &Tx<'_>) -> Result<Defaults> {
    let r = tx
        .query_one(
            "SELECT agent_name, greeting_new_caller, greeting_returning_caller, voice, sliders, \
             prompt_blocks, transfer_rules, time_zone, updated_at FROM tenant.platform_defaults",
            &[],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    let sliders: BTreeMap<String, u32> =
        serde_json::from_value(r.get::<_, Value>(4)).unwrap_or_default();
    Ok(Defaults {
        agent_name: r.get(0),
        greeting_new_caller: r.get(1),
        greeting_returning_caller: r.get(2),
        voice: r.get(3),
        sliders,
        prompt_blocks: from_json(r.get(5)).unwrap_or_default(),
        transfer_rules: from_json(r.get(6)).unwrap_or_default(),
        time_zone: r.get(7),
        updated_at: r.get(8),
    })
}

/// Replaces the platform defaults.
pub async fn save_defaults(tx: &Tx<'_>, d: &Defaults) -> Result<DateTime<Utc>> {
    let r = tx
        .query_one(
            "UPDATE tenant.platform_defaults SET agent_name = $1, greeting_new_caller = $2, \
             greeting_returning_caller = $3, voice = $4, sliders = $5, prompt_blocks = $6, \
             transfer_rules = $7, time_zone = $8, updated_at = now() RETURNING updated_at",
            &[
                &d.agent_name,
                &d.greeting_new_caller,
                &d.greeting_returning_caller,
                &d.voice,
                &serde_json::to_value(&d.sliders).unwrap_or_default(),
                &serde_json::to_value(&d.prompt_blocks).unwrap_or_default(),
                &serde_json::to_value(&d.transfer_rules).unwrap_or_default(),
                &d.time_zone,
            ],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    Ok(r.get(0))
}

/// The customer owning exactly `number` (and matching the Twilio account when the number is
/// pinned to one). The only cross-tenant read of the call path; returns the id only.
pub async fn resolve_number(
    tx: &Tx<'_>,
    number: &str,
    account_sid: &str,
) -> Result<Option<CustomerId>> {
    let row = tx
        .query_typed(
            "SELECT tenant.resolve_number($1, $2)",
            &[(&number, Type::TEXT), (&account_sid, Type::TEXT)],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    let Some(row) = row.first() else {
        return Ok(None);
    };
    Ok(row
        .get::<_, Option<i64>>(0)
        .and_then(|id| CustomerId::new(id).ok()))
}

/// Customer ids after `after`, in order (admin listing).
pub async fn list_customer_ids(tx: &Tx<'_>, after: i64, limit: i32) -> Result<Vec<i64>> {
    Ok(tx
        .query("SELECT tenant.list_customer_ids($1, $2)", &[&after, &limit])
        .await
        .map_err(mesh::db::DbError::from)?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// An opaque page token for a position.
pub fn page_token(position: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("p{position}"))
}

/// Decodes a page token (`None` for the first page).
pub fn parse_page_token(token: &str) -> Result<Option<i64>> {
    if token.is_empty() {
        return Ok(None);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix('p').and_then(|n| n.parse().ok()))
        .map(Some)
        .ok_or_else(|| TenantError::invalid("page_token", "is not a token from a previous page"))
}

/// Page size: 1-500, 50 when 0.
pub fn page_size(size: i32) -> Result<i64> {
    match size {
        0 => Ok(50),
        1..=500 => Ok(i64::from(size)),
        _ => Err(TenantError::invalid(
            "page_size",
            "must be between 1 and 500",
        )),
    }
}

// ---- Outbound settings and webhook secrets (tables of V5) ----------------------------------

const OUTBOUND_COLUMNS: &str = "allowed_country_codes, allowed_personas, do_not_call, \
     cors_origins, greet_first_outbound, webhook_url, webhook_raw_numbers, public_calls_per_hour";

fn outbound_from_row(r: &Row) -> OutboundSettings {
    OutboundSettings {
        allowed_country_codes: r.get("allowed_country_codes"),
        allowed_personas: r.get("allowed_personas"),
        do_not_call: r.get("do_not_call"),
        cors_origins: r.get("cors_origins"),
        greet_first_outbound: r.get("greet_first_outbound"),
        webhook_url: r.get("webhook_url"),
        webhook_raw_numbers: r.get("webhook_raw_numbers"),
        // The column's CHECK keeps it within 0..=10,000.
        public_calls_per_hour: u32::try_from(r.get::<_, i32>("public_calls_per_hour")).unwrap_or(0),
    }
}

/// Locks the current tenant's customer row until the transaction ends, so that concurrent
/// read-modify-write changes of its settings or secret apply one after the other (a second
/// rotation then turns the first one's secret into `previous` instead of losing it). NOT_FOUND
/// when the customer does not exist.
pub async fn lock_customer(tx: &Tx<'_>, id: CustomerId) -> Result<()> {
    tx.query_opt(
        "SELECT 1 FROM tenant.customers WHERE customer_id = $1 FOR NO KEY UPDATE",
        &[&id.get()],
    )
    .await
    .map_err(mesh::db::DbError::from)?
    .map(|_| ())
    .ok_or(TenantError::NotFound("customer"))
}

/// The settings and whether a webhook secret exists (never the secret), in one round trip;
/// defaults when never set; NOT_FOUND when the customer does not exist.
pub async fn get_outbound(tx: &Tx<'_>, id: CustomerId) -> Result<(OutboundSettings, bool)> {
    let rows = tx
        .query_typed(
            "SELECT s.customer_id IS NOT NULL AS stored, s.allowed_country_codes, \
             s.allowed_personas, s.do_not_call, s.cors_origins, s.greet_first_outbound, \
             s.webhook_url, s.webhook_raw_numbers, s.public_calls_per_hour, \
             EXISTS (SELECT 1 FROM tenant.webhook_secrets w WHERE w.customer_id = c.customer_id) \
             AS has_secret \
             FROM tenant.customers c \
             LEFT JOIN tenant.outbound_settings s ON s.customer_id = c.customer_id \
             WHERE c.customer_id = $1",
            &[(&id.get(), Type::INT8)],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    let r = rows.first().ok_or(TenantError::NotFound("customer"))?;
    let settings = if r.get("stored") {
        outbound_from_row(r)
    } else {
        OutboundSettings::default()
    };
    Ok((settings, r.get("has_secret")))
}

/// The stored settings (defaults when never set), for an update under [`lock_customer`].
pub async fn load_outbound(tx: &Tx<'_>, id: CustomerId) -> Result<OutboundSettings> {
    Ok(tx
        .query_opt(
            &format!(
                "SELECT {OUTBOUND_COLUMNS} FROM tenant.outbound_settings WHERE customer_id = $1"
            ),
            &[&id.get()],
        )
        .await
        .map_err(mesh::db::DbError::from)?
        .map(|r| outbound_from_row(&r))
        .unwrap_or_default())
}

/// Writes the settings (creating the row on the first change).
pub async fn save_outbound(tx: &Tx<'_>, id: CustomerId, s: &OutboundSettings) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO tenant.outbound_settings (customer_id, {OUTBOUND_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (customer_id) DO UPDATE SET \
             allowed_country_codes = EXCLUDED.allowed_country_codes, \
             allowed_personas = EXCLUDED.allowed_personas, do_not_call = EXCLUDED.do_not_call, \
             cors_origins = EXCLUDED.cors_origins, \
             greet_first_outbound = EXCLUDED.greet_first_outbound, \
             webhook_url = EXCLUDED.webhook_url, webhook_raw_numbers = EXCLUDED.webhook_raw_numbers, \
             public_calls_per_hour = EXCLUDED.public_calls_per_hour, updated_at = now()"
        ),
        &[
            &id.get(),
            &s.allowed_country_codes,
            &s.allowed_personas,
            &s.do_not_call,
            &s.cors_origins,
            &s.greet_first_outbound,
            &s.webhook_url,
            &s.webhook_raw_numbers,
            &i32::try_from(s.public_calls_per_hour).unwrap_or(i32::MAX),
        ],
    )
    .await
    .map_err(mesh::db::DbError::from)?;
    Ok(())
}

/// Makes `secret` the current webhook secret, under [`lock_customer`]. The old current secret
/// becomes the previous one until the database's `now() + overlap`; a zero overlap drops it.
/// Returns `None` when there was no secret before, else when the previous secret stops signing.
pub async fn rotate_webhook_secret(
    tx: &Tx<'_>,
    id: CustomerId,
    secret: &SecretString,
    overlap: std::time::Duration,
) -> Result<Option<DateTime<Utc>>> {
    let overlap_s = overlap.as_secs_f64();
    let replaced = tx
        .query_opt(
            "UPDATE tenant.webhook_secrets SET \
             previous_secret = CASE WHEN $3::float8 > 0 THEN secret END, \
             previous_expires_at = CASE WHEN $3::float8 > 0 THEN now() + make_interval(secs => $3::float8) END, \
             secret = $2, rotated_at = now() \
             WHERE customer_id = $1 \
             RETURNING coalesce(previous_expires_at, now())",
            &[&id.get(), &secret.expose_secret(), &overlap_s],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    if let Some(r) = replaced {
        return Ok(Some(r.get(0)));
    }
    tx.execute(
        "INSERT INTO tenant.webhook_secrets (customer_id, secret) VALUES ($1, $2)",
        &[&id.get(), &secret.expose_secret()],
    )
    .await
    .map_err(mesh::db::DbError::from)?;
    Ok(None)
}

/// What signing a delivery needs: the webhook URL (empty when none) and the secrets that sign now
/// (the current one, then the previous one while its overlap lasts, by the database clock).
pub struct SigningKeys {
    /// The customer's `webhook_url` ("" when never set).
    pub webhook_url: String,
    /// Current secret, if any.
    pub current: Option<SecretString>,
    /// Previous secret, only while its overlap lasts.
    pub previous: Option<SecretString>,
}

/// The current tenant's [`SigningKeys`]; NOT_FOUND when the customer does not exist.
pub async fn signing_keys(tx: &Tx<'_>, id: CustomerId) -> Result<SigningKeys> {
    let rows = tx
        .query_typed(
            "SELECT coalesce(s.webhook_url, ''), w.secret, \
             CASE WHEN w.previous_expires_at > now() THEN w.previous_secret END \
             FROM tenant.customers c \
             LEFT JOIN tenant.outbound_settings s ON s.customer_id = c.customer_id \
             LEFT JOIN tenant.webhook_secrets w ON w.customer_id = c.customer_id \
             WHERE c.customer_id = $1",
            &[(&id.get(), Type::INT8)],
        )
        .await
        .map_err(mesh::db::DbError::from)?;
    let r = rows.first().ok_or(TenantError::NotFound("customer"))?;
    Ok(SigningKeys {
        webhook_url: r.get(0),
        current: r.get::<_, Option<String>>(1).map(SecretString::from),
        previous: r.get::<_, Option<String>>(2).map(SecretString::from),
    })
}
