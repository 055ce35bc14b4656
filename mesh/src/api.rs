//! Generated code for the typed API. The module tree mirrors the protobuf packages (the
//! generated code refers to sibling packages by relative path); the short aliases `common`,
//! `tenant`, `memory` and `media` are what the rest of the workspace uses.

/// `neurosphere.<name>.*` with its `v1` package as `<name>::v1`: the nesting the generated code
/// expects (it names sibling packages as `super::super::<name>::v1`).
macro_rules! packages {
    ($($name:ident),*) => {$(
        #[doc = concat!("`neurosphere.", stringify!($name), ".*`")]
        pub mod $name {
            #[doc = concat!("`neurosphere.", stringify!($name), ".v1`")]
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/neurosphere.", stringify!($name), ".v1.rs"));
            }
        }
    )*};
}

/// The generated packages, one module per protobuf package.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod neurosphere {
    packages!(common, tenant, memory, media);
}

/// `neurosphere.common.v1`: types shared by the services.
pub use neurosphere::common::v1 as common;
/// `neurosphere.media.v1`: live calls, call records and usage.
pub use neurosphere::media::v1 as media;
/// `neurosphere.memory.v1`: per-tenant, per-caller memory.
pub use neurosphere::memory::v1 as memory;
/// `neurosphere.tenant.v1`: customers, numbers, agent configuration, token issuing.
pub use neurosphere::tenant::v1 as tenant;

/// A UTC time as a protobuf timestamp (every service answers with these).
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).expect("sub-second nanos fit in i32"),
    }
}

/// The encoded `FileDescriptorSet` of every proto file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("neurosphere_descriptor");

/// Full protobuf names of every gRPC service, for health reporting and docs.
pub mod service_names {
    /// tenant-svc's admin API.
    pub const TENANT_ADMIN: &str = "neurosphere.tenant.v1.TenantAdminService";
    /// tenant-svc's tenant API.
    pub const TENANT: &str = "neurosphere.tenant.v1.TenantService";
    /// tenant-svc's edge API.
    pub const TENANT_EDGE: &str = "neurosphere.tenant.v1.EdgeService";
    /// tenant-svc's portal accounts API (the gateway, for the portal).
    pub const ACCOUNT: &str = "neurosphere.tenant.v1.AccountService";
    /// tenant-svc's self sign-up API (the gateway, for the portal).
    pub const SIGNUP: &str = "neurosphere.tenant.v1.SignupService";
    /// tenant-svc's account administration API (operators).
    pub const ACCOUNT_ADMIN: &str = "neurosphere.tenant.v1.AccountAdminService";
    /// tenant-svc's team, API key and audit log API (tenant tokens: portal owners).
    pub const TEAM: &str = "neurosphere.tenant.v1.TeamService";
    /// tenant-svc's API key exchange (the gateway's `POST /v1/tokens`).
    pub const API_KEY_EXCHANGE: &str = "neurosphere.tenant.v1.ApiKeyExchangeService";
    /// tenant-svc's operator console API (the gateway's console, with an operator's session).
    pub const OPERATOR: &str = "neurosphere.tenant.v1.OperatorService";
    /// tenant-svc's operator account administration (`neurosphere operator add`).
    pub const OPERATOR_ADMIN: &str = "neurosphere.tenant.v1.OperatorAdminService";
    /// memory-svc's tenant API.
    pub const MEMORY: &str = "neurosphere.memory.v1.MemoryService";
    /// memory-svc's admin API.
    pub const MEMORY_ADMIN: &str = "neurosphere.memory.v1.MemoryAdminService";
    /// media-svc's tenant API.
    pub const CALL: &str = "neurosphere.media.v1.CallService";
    /// media-svc's admin API.
    pub const MEDIA_ADMIN: &str = "neurosphere.media.v1.MediaAdminService";
    /// media-svc's numbers API (tenant tokens: owners).
    pub const NUMBER: &str = "neurosphere.media.v1.NumberService";
    /// media-svc's numbers administration (the operator, and tenant-svc for the console).
    pub const NUMBER_ADMIN: &str = "neurosphere.media.v1.NumberAdminService";
    /// media-svc's monthly bill of a tenant (tenant tokens: owners).
    pub const BILLING: &str = "neurosphere.media.v1.BillingService";
    /// media-svc's packages, rate cards and every tenant's bills (the operator, and tenant-svc
    /// for the console).
    pub const BILLING_ADMIN: &str = "neurosphere.media.v1.BillingAdminService";
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_keep_seconds_and_nanoseconds() {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let ts = super::timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_789));
    }
}
