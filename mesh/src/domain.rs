//! Validated newtypes for identifiers that cross the wire. Parse at the boundary: handlers turn
//! protobuf strings and integers into these types first, and only these types reach SQL.

use std::fmt;

/// Why a value was refused. The message names the rule; the caller adds the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DomainError(pub String);

/// A tenant's id: a positive 64-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct CustomerId(i64);

impl CustomerId {
    /// Accepts ids >= 1.
    pub fn new(id: i64) -> Result<Self, DomainError> {
        if id >= 1 {
            Ok(Self(id))
        } else {
            Err(DomainError(format!("customer id must be a positive integer, got {id}")))
        }
    }

    /// The raw id, for SQL parameters and the wire.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for CustomerId {
    type Error = DomainError;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<CustomerId> for i64 {
    fn from(v: CustomerId) -> i64 {
        v.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
