//! Where a number leads and whether a tenant may dial it (toll fraud): the ISO 3166 region of a
//! [`PhoneNumber`] as libphonenumber's metadata assigns it, its [`RestrictedType`] when it is one
//! of the kinds that cost money or hide where a call goes, and [`DialPolicy`], the one check
//! media-svc runs before it dials (placed calls, transfers) and tenant-svc runs when a transfer
//! rule is saved.
//!
//! Calling codes are not regions: `+1` alone reaches about 25 of them (the Caribbean's premium
//! lines included), so the policy lists regions. Numbers of the kinds toll fraud uses (premium
//! rate, shared cost, personal numbers, UAN, pagers, voicemail access, numbers whose type is
//! unknown, and the non-geographic numbers of region `001` such as +800 or +882) are refused
//! unless the tenant allows that kind by name. VoIP numbers are allowed: they are priced like
//! ordinary numbers of their region and many legitimate businesses answer on them.

use phonenumber::Type;
use phonenumber::metadata::DATABASE;

use super::{DomainError, PhoneNumber};

/// The kinds of number a tenant must allow by name before they are dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestrictedType {
    /// Premium rate (e.g. +1 900, UK 09).
    PremiumRate,
    /// Shared cost (e.g. UK 084/087).
    SharedCost,
    /// Personal numbers (e.g. UK 070): forwarded anywhere.
    PersonalNumber,
    /// Pagers (e.g. UK 076).
    Pager,
    /// Universal access ("company") numbers.
    Uan,
    /// Voicemail access numbers.
    Voicemail,
    /// Valid numbers whose type libphonenumber cannot tell.
    Unknown,
    /// Non-geographic numbers (region `001`: +800, +808, +870, +881, +882, +883, +888, +979).
    NonGeographic,
}

impl RestrictedType {
    /// Every restricted type, in the order they are documented.
    pub const ALL: [RestrictedType; 8] = [
        Self::PremiumRate,
        Self::SharedCost,
        Self::PersonalNumber,
        Self::Pager,
        Self::Uan,
        Self::Voicemail,
        Self::Unknown,
        Self::NonGeographic,
    ];

    /// The name a tenant setting uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PremiumRate => "premium_rate",
            Self::SharedCost => "shared_cost",
            Self::PersonalNumber => "personal_number",
            Self::Pager => "pager",
            Self::Uan => "uan",
            Self::Voicemail => "voicemail",
            Self::Unknown => "unknown",
            Self::NonGeographic => "non_geographic",
        }
    }

    /// Parses a setting's name (lower case, as [`Self::as_str`] writes it).
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| {
                DomainError(format!(
                    "must be one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }
}

/// The region of non-geographic numbers in libphonenumber's metadata.
pub const NON_GEOGRAPHIC_REGION: &str = "001";

impl PhoneNumber {
    fn parsed(&self) -> Option<phonenumber::PhoneNumber> {
        phonenumber::parse(None, self.as_str()).ok()
    }

    /// The ISO 3166 alpha-2 region the number belongs to (`JM` for +1 876 ...), or
    /// [`NON_GEOGRAPHIC_REGION`] for a non-geographic number.
    pub fn region(&self) -> String {
        self.parsed()
            .and_then(|p| p.metadata(&DATABASE).map(|m| m.id().to_owned()))
            .unwrap_or_else(|| NON_GEOGRAPHIC_REGION.to_owned())
    }

    /// The restricted kind the number is, if any.
    pub fn restricted_type(&self) -> Option<RestrictedType> {
        if self.region() == NON_GEOGRAPHIC_REGION {
            return Some(RestrictedType::NonGeographic);
        }
        let kind = self
            .parsed()
            .map_or(Type::Unknown, |p| p.number_type(&DATABASE));
        match kind {
            Type::FixedLine
            | Type::Mobile
            | Type::FixedLineOrMobile
            | Type::TollFree
            | Type::Voip => None,
            Type::PremiumRate => Some(RestrictedType::PremiumRate),
            Type::SharedCost => Some(RestrictedType::SharedCost),
            Type::PersonalNumber => Some(RestrictedType::PersonalNumber),
            Type::Pager => Some(RestrictedType::Pager),
            Type::Uan => Some(RestrictedType::Uan),
            Type::Voicemail => Some(RestrictedType::Voicemail),
            _ => Some(RestrictedType::Unknown),
        }
    }
}

/// An ISO 3166 alpha-2 region that has telephone numbers (libphonenumber knows it), upper case.
pub fn parse_region(input: &str) -> Result<String, DomainError> {
    let code = input.trim().to_ascii_uppercase();
    let known = code.len() == 2
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && DATABASE.by_id(code.as_str()).is_some();
    if known {
        Ok(code)
    } else {
        Err(DomainError(
            "must be an ISO 3166 alpha-2 region with telephone numbers, e.g. US, CA, PT or GB"
                .into(),
        ))
    }
}

/// The regions a calling code serves, its main region first (`1` gives `US`, then `AG`, `AI`,
/// ...); empty for an unassigned code.
pub fn regions_of_calling_code(code: u16) -> Vec<String> {
    let mut all: Vec<(bool, String)> = DATABASE
        .by_code(&code)
        .unwrap_or_default()
        .into_iter()
        .map(|m| (!m.is_main_country_for_code(), m.id().to_owned()))
        .collect();
    all.sort();
    all.into_iter().map(|(_, r)| r).collect()
}

/// Why a number may not be dialled; the text names the region or kind, never the number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialRefusal {
    /// The number's region is not allowed.
    #[error("numbers in region {0} are not allowed for this customer")]
    Region(String),
    /// The number is of a restricted kind the tenant has not allowed.
    #[error("{} numbers are not allowed for this customer", .0.as_str())]
    Restricted(RestrictedType),
}

/// The regions and restricted kinds one tenant may dial for one purpose (outbound calls, or
/// transfers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialPolicy {
    /// ISO 3166 alpha-2 regions, upper case.
    pub regions: Vec<String>,
    /// Restricted kinds allowed anyway.
    pub allowed_types: Vec<RestrictedType>,
}

impl DialPolicy {
    /// A policy from settings as stored (names already validated; unknown ones are ignored).
    pub fn from_settings(regions: &[String], allowed_types: &[String]) -> Self {
        Self {
            regions: regions
                .iter()
                .map(|r| r.trim().to_ascii_uppercase())
                .collect(),
            allowed_types: allowed_types
                .iter()
                .filter_map(|t| RestrictedType::parse(t).ok())
                .collect(),
        }
    }

    /// What transfers may dial: `transfer_regions`, or, when that is empty, the regions of the
    /// tenant's own numbers (`own_numbers`, E.164; invalid ones are skipped), with the restricted
    /// kinds the tenant allows.
    pub fn for_transfers<'a>(
        transfer_regions: &[String],
        allowed_types: &[String],
        own_numbers: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut policy = Self::from_settings(transfer_regions, allowed_types);
        if policy.regions.is_empty() {
            policy.regions = own_numbers
                .into_iter()
                .filter_map(|n| PhoneNumber::parse(n).ok())
                .map(|n| n.region())
                .collect();
            policy.regions.sort();
            policy.regions.dedup();
        }
        policy
    }

    /// Whether `number` may be dialled: a restricted kind must be allowed by name (a
    /// non-geographic number needs nothing else), any other number must be in one of the
    /// regions.
    pub fn check(&self, number: &PhoneNumber) -> Result<(), DialRefusal> {
        let restricted = number.restricted_type();
        if let Some(kind) = restricted
            && !self.allowed_types.contains(&kind)
        {
            return Err(DialRefusal::Restricted(kind));
        }
        if restricted == Some(RestrictedType::NonGeographic) {
            return Ok(());
        }
        let region = number.region();
        if self.regions.contains(&region) {
            Ok(())
        } else {
            Err(DialRefusal::Region(region))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn regions_and_kinds_come_from_the_metadata() {
        for (number, region, kind) in [
            ("+12025550173", "US", None),
            ("+14165550123", "CA", None),
            ("+18769295555", "JM", None),
            ("+19002223333", "US", Some(RestrictedType::PremiumRate)),
            ("+449098790000", "GB", Some(RestrictedType::PremiumRate)),
            ("+447031234567", "GB", Some(RestrictedType::PersonalNumber)),
            ("+351912345678", "PT", None),
            ("+80012345678", "001", Some(RestrictedType::NonGeographic)),
            (
                "+882390123456789",
                "001",
                Some(RestrictedType::NonGeographic),
            ),
        ] {
            let p = n(number);
            assert_eq!(p.region(), region, "{number}");
            assert_eq!(p.restricted_type(), kind, "{number}");
        }
    }

    #[test]
    fn the_policy_refuses_other_regions_and_restricted_kinds_unless_allowed() {
        let policy = DialPolicy::from_settings(&["us".into(), "CA".into()], &[]);
        assert!(policy.check(&n("+12025550173")).is_ok());
        assert!(policy.check(&n("+14165550123")).is_ok());
        assert_eq!(
            policy.check(&n("+18769295555")),
            Err(DialRefusal::Region("JM".into()))
        );
        assert_eq!(
            policy.check(&n("+19002223333")),
            Err(DialRefusal::Restricted(RestrictedType::PremiumRate))
        );
        assert_eq!(
            policy.check(&n("+80012345678")),
            Err(DialRefusal::Restricted(RestrictedType::NonGeographic))
        );
        let allowing = DialPolicy::from_settings(
            &["US".into()],
            &["premium_rate".into(), "non_geographic".into()],
        );
        assert!(allowing.check(&n("+19002223333")).is_ok());
        assert!(allowing.check(&n("+80012345678")).is_ok());
        // An allowed kind does not widen the regions.
        assert_eq!(
            allowing.check(&n("+449098790000")),
            Err(DialRefusal::Region("GB".into()))
        );
        assert!(DialPolicy::default().check(&n("+12025550173")).is_err());
        // Transfers default to the regions of the tenant's own numbers.
        let own = [
            "+14165550123",
            "+12025550173",
            "+14155550100",
            "not a number",
        ];
        let transfers = DialPolicy::for_transfers(&[], &[], own);
        assert_eq!(transfers.regions, ["CA", "US"]);
        let listed = DialPolicy::for_transfers(&["JM".into()], &[], own);
        assert_eq!(listed.regions, ["JM"]);
    }

    #[test]
    fn region_names_and_kind_names_parse_strictly() {
        assert_eq!(parse_region(" pt ").unwrap(), "PT");
        for bad in ["", "1", "001", "USA", "XX", "U1", "ZZ"] {
            assert!(parse_region(bad).is_err(), "{bad}");
        }
        for t in RestrictedType::ALL {
            assert_eq!(RestrictedType::parse(t.as_str()), Ok(t));
        }
        assert!(RestrictedType::parse("voip").is_err());
        assert_eq!(regions_of_calling_code(1)[0], "US");
        assert!(regions_of_calling_code(1).contains(&"CA".to_owned()));
        assert_eq!(regions_of_calling_code(351), ["PT"]);
        assert_eq!(regions_of_calling_code(44)[0], "GB");
        assert!(regions_of_calling_code(999).is_empty());
    }
}
