//! Generated code for the typed API. The module tree mirrors the protobuf packages (the
//! generated code refers to sibling packages by relative path); the short aliases `common`,
//! `tenant`, `memory` and `media` are what the rest of the workspace uses.

/// The generated packages, one module per protobuf package.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod neurosphere {
    /// `neurosphere.common.*`
    pub mod common {
        /// `neurosphere.common.v1`
        pub mod v1 {
            tonic::include_proto!("neurosphere.common.v1");
        }
    }
    /// `neurosphere.tenant.*`
    pub mod tenant {
        /// `neurosphere.tenant.v1`
        pub mod v1 {
            tonic::include_proto!("neurosphere.tenant.v1");
        }
    }
    /// `neurosphere.memory.*`
    pub mod memory {
        /// `neurosphere.memory.v1`
        pub mod v1 {
            tonic::include_proto!("neurosphere.memory.v1");
        }
    }
    /// `neurosphere.media.*`
    pub mod media {
        /// `neurosphere.media.v1`
        pub mod v1 {
            tonic::include_proto!("neurosphere.media.v1");
        }
    }
}

/// `neurosphere.common.v1`: types shared by the services.
pub use neurosphere::common::v1 as common;
/// `neurosphere.media.v1`: live calls, call records and usage.
pub use neurosphere::media::v1 as media;
/// `neurosphere.memory.v1`: per-tenant, per-caller memory.
pub use neurosphere::memory::v1 as memory;
/// `neurosphere.tenant.v1`: customers, numbers, agent configuration, token issuing.
pub use neurosphere::tenant::v1 as tenant;

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
    /// memory-svc's tenant API.
    pub const MEMORY: &str = "neurosphere.memory.v1.MemoryService";
    /// memory-svc's admin API.
    pub const MEMORY_ADMIN: &str = "neurosphere.memory.v1.MemoryAdminService";
    /// media-svc's tenant API.
    pub const CALL: &str = "neurosphere.media.v1.CallService";
    /// media-svc's admin API.
    pub const MEDIA_ADMIN: &str = "neurosphere.media.v1.MediaAdminService";
}
