//! Outbound calls: `PlaceOutboundCall`'s checks and limits, and the per-tenant limit on calls in
//! progress that inbound calls share.

/// Limits on how many calls a tenant may have and place.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Calls in progress at once per package tier, in the order configured; a tier that is not
    /// listed gets the first entry's limit.
    pub concurrent_by_tier: Vec<(String, u32)>,
    /// Outbound calls per rolling hour when the tenant's own `public_calls_per_hour` is 0.
    pub outbound_per_hour: u32,
}

impl Limits {
    /// Parses `MEDIA_CONCURRENT_CALLS_BY_TIER` (`tier=n,tier=n`).
    pub fn parse_tiers(s: &str) -> Result<Vec<(String, u32)>, String> {
        let mut tiers = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (tier, n) = part
                .split_once('=')
                .ok_or_else(|| format!("expected `tier=n`, got {part:?}"))?;
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| format!("limit of tier {:?} is not a number", tier.trim()))?;
            if n == 0 {
                return Err(format!(
                    "limit of tier {:?} must be at least 1",
                    tier.trim()
                ));
            }
            tiers.push((tier.trim().to_owned(), n));
        }
        if tiers.is_empty() {
            return Err("at least one `tier=n` is needed".into());
        }
        Ok(tiers)
    }

    /// The concurrent-call limit of `tier`.
    pub fn concurrent_for(&self, tier: &str) -> u32 {
        self.concurrent_by_tier
            .iter()
            .find(|(t, _)| t == tier)
            .or(self.concurrent_by_tier.first())
            .map_or(1, |(_, n)| *n)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrent_by_tier: vec![
                ("starter".into(), 5),
                ("pro".into(), 20),
                ("enterprise".into(), 100),
            ],
            outbound_per_hour: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse_and_unknown_tiers_get_the_first_limit() {
        let limits = Limits {
            concurrent_by_tier: Limits::parse_tiers(" starter=2, pro = 7 ").unwrap(),
            outbound_per_hour: 1,
        };
        assert_eq!(limits.concurrent_for("pro"), 7);
        assert_eq!(limits.concurrent_for("starter"), 2);
        assert_eq!(limits.concurrent_for("gold"), 2);
        assert!(Limits::parse_tiers("starter").is_err());
        assert!(Limits::parse_tiers("starter=0").is_err());
        assert!(Limits::parse_tiers("starter=x").is_err());
        assert!(Limits::parse_tiers("").is_err());
    }
}
