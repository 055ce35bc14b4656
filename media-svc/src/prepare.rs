//! `MediaAdminService.PreparePrompts`: renders a tenant's spoken prompts into the object store
//! before any call needs them. tenant-svc asks right after a change to the tenant's prompt texts
//! (`UpdateCallHandling`) or agent voice (`UpdateAgentConfig`, `RevertConfigChange`) commits.
//!
//! The request names the tenant only; media-svc reads the settings (`GetCallHandling`) and the
//! effective voice (`GetEffectiveProfile`, the platform default when the tenant has none)
//! through its peers, exactly as a call does, and composes the texts with the call's own
//! [`prompts::texts`]. So what is stored is what a call will play (one place decides the voice
//! and the composition), requests arriving out of order all render the latest settings, and a
//! caller of this RPC cannot put arbitrary text in the store.

use mesh::api::media::PreparePromptsResponse;
use mesh::domain::CustomerId;
use tonic::Status;

use crate::peers::PeerError;
use crate::prompts::{self, Ensured};
use crate::runtime::Runtime;

/// Renders and stores the tenant's prompts (see the module); the counts of what it did.
pub async fn prepare_prompts(
    rt: &Runtime,
    customer: CustomerId,
) -> Result<PreparePromptsResponse, Status> {
    let unreadable = |e: PeerError| {
        tracing::warn!(
            customer_id = customer.get(),
            error = %e.short(),
            "prompts not prepared: the tenant's settings are unreadable"
        );
        match &e {
            PeerError::Status(s)
                if matches!(
                    s.code(),
                    tonic::Code::NotFound
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::PermissionDenied
                ) =>
            {
                Status::failed_precondition(format!(
                    "customer_id: the tenant's settings cannot be read ({:?})",
                    s.code()
                ))
            }
            _ => Status::unavailable("the tenant's settings cannot be read now"),
        }
    };
    let (handling, profile) =
        tokio::join!(rt.peers.call_handling(customer), rt.peers.profile(customer));
    let (handling, profile) = (handling.map_err(unreadable)?, profile.map_err(unreadable)?);
    let voice = crate::instructions::voice(&profile);
    let mut out = PreparePromptsResponse::default();
    for text in prompts::texts(&handling.settings) {
        match rt.prompts.ensure(&text, voice.as_str()).await {
            Ok(Ensured::Rendered) => out.rendered += 1,
            Ok(Ensured::AlreadyStored) => out.already_stored += 1,
            Ok(Ensured::Unspoken) => out.unspoken += 1,
            Ok(Ensured::Nothing) => {}
            Err(e) => {
                tracing::warn!(customer_id = customer.get(), error = %e, "prompts not prepared");
                return Err(Status::unavailable(
                    "the prompt store cannot be written now",
                ));
            }
        }
    }
    tracing::info!(
        customer_id = customer.get(),
        rendered = out.rendered,
        already_stored = out.already_stored,
        unspoken = out.unspoken,
        "prompts prepared"
    );
    Ok(out)
}
