//! Packages, rate cards, the default package and each tenant's assignments (V29). Packages,
//! rate cards and the default are the platform's (no tenant, no RLS): any transaction reads
//! them. Assignments and cap notices are the tenant's (RLS): read and written in its own
//! transaction. Nothing here is ever updated in a closed month: callers pass months that the
//! service checked are not before the current one.

use chrono::NaiveDate;
use mesh::db::Tx;
use mesh::domain::CustomerId;
use tokio_postgres::Row;

use crate::billing::{Month, Rates};
use crate::error::MediaError;

/// A package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRow {
    /// Its id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Monthly cap on Twilio minutes.
    pub cap_minutes: Option<i64>,
    /// The proto's `OverCapAction` number.
    pub over_cap: i16,
}

const PACKAGE_COLUMNS: &str = "id, name, currency, cap_minutes, over_cap";

fn package(r: &Row) -> PackageRow {
    PackageRow {
        id: r.get(0),
        name: r.get(1),
        currency: r.get(2),
        cap_minutes: r.get(3),
        over_cap: r.get(4),
    }
}

/// A rate card version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateCardRow {
    /// 1, 2, ... per package.
    pub version: i32,
    /// First month it prices.
    pub effective_month: Month,
    /// Its prices.
    pub rates: Rates,
}

const RATE_COLUMNS: &str = "version, effective_month, per_twilio_minute, per_recorded_minute, \
     per_million_input_text, per_million_input_audio, per_million_cached_text, \
     per_million_cached_audio, per_million_output_text, per_million_output_audio";

fn rate_card(r: &Row) -> RateCardRow {
    let month: NaiveDate = r.get(1);
    RateCardRow {
        version: r.get(0),
        effective_month: Month::of(month),
        rates: Rates(std::array::from_fn(|i| r.get(i + 2))),
    }
}

/// Creates a package; `None` when the name is taken.
pub async fn create_package(
    tx: &Tx<'_>,
    name: &str,
    currency: &str,
    cap_minutes: Option<i64>,
    over_cap: i16,
) -> Result<Option<PackageRow>, MediaError> {
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO media.billing_packages (name, currency, cap_minutes, over_cap) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING {PACKAGE_COLUMNS}"
            ),
            &[&name, &currency, &cap_minutes, &over_cap],
        )
        .await?;
    Ok(row.as_ref().map(package))
}

/// Every package, by name.
pub async fn packages(tx: &Tx<'_>) -> Result<Vec<PackageRow>, MediaError> {
    let rows = tx
        .query(
            &format!("SELECT {PACKAGE_COLUMNS} FROM media.billing_packages ORDER BY name"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(package).collect())
}

/// A package by name.
pub async fn package_named(tx: &Tx<'_>, name: &str) -> Result<Option<PackageRow>, MediaError> {
    let row = tx
        .query_opt(
            &format!("SELECT {PACKAGE_COLUMNS} FROM media.billing_packages WHERE name = $1"),
            &[&name],
        )
        .await?;
    Ok(row.as_ref().map(package))
}

/// A package's rate cards, oldest version first.
pub async fn rate_cards(tx: &Tx<'_>, package_id: i64) -> Result<Vec<RateCardRow>, MediaError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {RATE_COLUMNS} FROM media.rate_cards WHERE package_id = $1 ORDER BY version"
            ),
            &[&package_id],
        )
        .await?;
    Ok(rows.iter().map(rate_card).collect())
}

/// Adds the next version of a package's rate card, under a transaction lock per package so two
/// publications never take the same number.
pub async fn publish_rate_card(
    tx: &Tx<'_>,
    package_id: i64,
    effective_month: Month,
    rates: &Rates,
) -> Result<RateCardRow, MediaError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('media.rate_cards', $1))",
        &[&package_id],
    )
    .await?;
    let r = &rates.0;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO media.rate_cards (package_id, version, effective_month, \
                   per_twilio_minute, per_recorded_minute, per_million_input_text, \
                   per_million_input_audio, per_million_cached_text, per_million_cached_audio, \
                   per_million_output_text, per_million_output_audio) \
                 SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
                 FROM media.rate_cards WHERE package_id = $1 \
                 RETURNING {RATE_COLUMNS}"
            ),
            &[
                &package_id,
                &effective_month.first_day(),
                &r[0],
                &r[1],
                &r[2],
                &r[3],
                &r[4],
                &r[5],
                &r[6],
                &r[7],
            ],
        )
        .await?;
    Ok(rate_card(&row))
}

/// Puts the current tenant on a package from a month on (replacing an assignment for that same
/// month, which has not closed).
pub async fn assign(
    tx: &Tx<'_>,
    customer: CustomerId,
    from: Month,
    package_id: i64,
) -> Result<(), MediaError> {
    tx.execute(
        "INSERT INTO media.package_assignments (customer_id, effective_month, package_id) \
         VALUES ($1, $2, $3) ON CONFLICT (customer_id, effective_month) DO UPDATE SET \
           package_id = EXCLUDED.package_id, assigned_at = now()",
        &[&customer, &from.first_day(), &package_id],
    )
    .await?;
    Ok(())
}

/// Sets the platform's default package from a month on.
pub async fn set_default(tx: &Tx<'_>, from: Month, package_id: i64) -> Result<(), MediaError> {
    tx.execute(
        "INSERT INTO media.billing_default_packages (effective_month, package_id) VALUES ($1, $2) \
         ON CONFLICT (effective_month) DO UPDATE SET package_id = EXCLUDED.package_id, set_at = now()",
        &[&from.first_day(), &package_id],
    )
    .await?;
    Ok(())
}

/// The package pricing a month of the current tenant (its own latest assignment from that month
/// or before, else the platform's default then) and the rate card in effect on the month's first
/// day (the highest version of the latest effective month at or before it).
pub async fn pricing(
    tx: &Tx<'_>,
    month: Month,
) -> Result<Option<(PackageRow, Option<RateCardRow>)>, MediaError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {PACKAGE_COLUMNS} FROM media.billing_packages WHERE id = coalesce( \
                   (SELECT package_id FROM media.package_assignments WHERE effective_month <= $1 \
                    ORDER BY effective_month DESC LIMIT 1), \
                   (SELECT package_id FROM media.billing_default_packages WHERE effective_month <= $1 \
                    ORDER BY effective_month DESC LIMIT 1))"
            ),
            &[&month.first_day()],
        )
        .await?;
    let Some(p) = row.as_ref().map(package) else {
        return Ok(None);
    };
    let card = tx
        .query_opt(
            &format!(
                "SELECT {RATE_COLUMNS} FROM media.rate_cards \
                 WHERE package_id = $1 AND effective_month <= $2 \
                 ORDER BY effective_month DESC, version DESC LIMIT 1"
            ),
            &[&p.id, &month.first_day()],
        )
        .await?;
    Ok(Some((p, card.as_ref().map(rate_card))))
}

/// Customer ids with usage in a month, after `after`, at most `limit` (`media.usage_tenants`:
/// ids only, across tenants).
pub async fn usage_tenants(
    tx: &Tx<'_>,
    month: Month,
    after: i64,
    limit: i32,
) -> Result<Vec<CustomerId>, MediaError> {
    let rows = tx
        .query(
            "SELECT customer_id FROM media.usage_tenants($1, $2, $3)",
            &[&month.first_day(), &after, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            CustomerId::new(r.get(0))
                .map_err(|e| MediaError::Internal(format!("stored customer id: {e}")))
        })
        .collect()
}
