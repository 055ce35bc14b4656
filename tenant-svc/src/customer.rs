//! A customer (tenant) as tenant-svc holds it: its row with its status as a Rust enum over the
//! `status` text column, its configuration overrides and its phone numbers, and their protobuf
//! form. The store builds it, the routing cache keeps its core, the handlers answer with it.

use chrono::{DateTime, Utc};
use mesh::api::tenant as pb;
use mesh::domain::CustomerId;

use crate::error::{Result, TenantError};
use crate::model::Overrides;
use crate::wire::timestamp;

/// The `status` column of `tenant.customers` (text with `CHECK (status IN ('active',
/// 'suspended', 'pending'))`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerStatus {
    /// Calls are answered and tokens issued.
    Active,
    /// Calls are refused and no token is issued.
    Suspended,
    /// Signed up and awaiting an operator's approval: like `Suspended` for calls and tokens,
    /// but its owners may sign in to the portal (which shows them only a waiting page).
    Pending,
}

impl CustomerStatus {
    /// The column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerStatus::Active => "active",
            CustomerStatus::Suspended => "suspended",
            CustomerStatus::Pending => "pending",
        }
    }

    /// From the column's text. The column's CHECK allows only the three values; anything else
    /// is read as suspended, so that a customer in an unknown state is never served.
    pub fn from_column(s: &str) -> Self {
        match s {
            "active" => CustomerStatus::Active,
            "pending" => CustomerStatus::Pending,
            _ => CustomerStatus::Suspended,
        }
    }

    /// From a request's `CustomerStatus` (ACTIVE or SUSPENDED; anything else is refused: a
    /// customer becomes PENDING only by signing up, and approval is PENDING -> ACTIVE).
    pub fn from_pb(field: &str, status: i32) -> Result<Self> {
        match pb::CustomerStatus::try_from(status) {
            Ok(pb::CustomerStatus::Active) => Ok(CustomerStatus::Active),
            Ok(pb::CustomerStatus::Suspended) => Ok(CustomerStatus::Suspended),
            _ => Err(TenantError::invalid(field, "must be ACTIVE or SUSPENDED")),
        }
    }

    /// The protobuf enum.
    pub fn to_pb(self) -> pb::CustomerStatus {
        match self {
            CustomerStatus::Active => pb::CustomerStatus::Active,
            CustomerStatus::Suspended => pb::CustomerStatus::Suspended,
            CustomerStatus::Pending => pb::CustomerStatus::Pending,
        }
    }
}

/// The refusal of calls and tokens for a customer awaiting approval.
pub const PENDING_APPROVAL: &str = "this customer is pending approval";

/// A customer row with its numbers.
#[derive(Debug, Clone)]
pub struct Customer {
    /// Id.
    pub id: CustomerId,
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
    /// Active or suspended.
    pub status: CustomerStatus,
    /// Configuration overrides.
    pub overrides: Overrides,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
    /// Phone numbers (empty when read without them: the call path needs none).
    pub numbers: Vec<pb::PhoneNumber>,
}

impl Customer {
    /// FAILED_PRECONDITION unless the customer is active (calls, numbers and tokens need
    /// that): a suspended and a pending customer are refused alike.
    pub fn require_active(&self) -> Result<()> {
        match self.status {
            CustomerStatus::Active => Ok(()),
            CustomerStatus::Suspended => Err(TenantError::FailedPrecondition(
                "this customer is suspended".into(),
            )),
            CustomerStatus::Pending => {
                Err(TenantError::FailedPrecondition(PENDING_APPROVAL.into()))
            }
        }
    }

    /// FAILED_PRECONDITION when the customer is suspended: its users may not sign in. A pending
    /// customer's may (to see that they are waiting), an active one's of course.
    pub fn require_not_suspended(&self) -> Result<()> {
        match self.status {
            CustomerStatus::Suspended => Err(TenantError::FailedPrecondition(
                "this customer is suspended".into(),
            )),
            CustomerStatus::Active | CustomerStatus::Pending => Ok(()),
        }
    }

    /// The protobuf form.
    pub fn to_pb(&self) -> pb::Customer {
        pb::Customer {
            id: self.id.get(),
            email: self.email.clone(),
            business_name: self.business_name.clone(),
            contact_name: self.contact_name.clone(),
            contact_phone: self.contact_phone.clone(),
            package_tier: self.package_tier.clone(),
            status: self.status.to_pb() as i32,
            agent_config: Some(self.overrides.to_pb()),
            phone_numbers: self.numbers.clone(),
            create_time: Some(timestamp(self.created_at)),
            update_time: Some(timestamp(self.updated_at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_the_column_and_the_proto() {
        for s in [CustomerStatus::Active, CustomerStatus::Suspended] {
            assert_eq!(CustomerStatus::from_column(s.as_str()), s);
            assert_eq!(
                CustomerStatus::from_pb("status", s.to_pb() as i32).unwrap(),
                s
            );
        }
        let p = CustomerStatus::Pending;
        assert_eq!(CustomerStatus::from_column(p.as_str()), p);
        assert!(
            CustomerStatus::from_pb("status", p.to_pb() as i32).is_err(),
            "an operator approves (PENDING -> ACTIVE) but never sets PENDING"
        );
        assert_eq!(
            CustomerStatus::from_column("unknown"),
            CustomerStatus::Suspended,
            "fails closed"
        );
        let e = CustomerStatus::from_pb("status", 0)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("status:"), "{e}");
    }
}
