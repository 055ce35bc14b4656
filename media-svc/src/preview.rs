//! `RenderInstructions`: the greeting and instructions a call would send the realtime backend,
//! rendered by the very function calls use ([`instructions::for_call`]) so that the portal's
//! preview never drifts from what callers get. The profile comes from tenant-svc
//! (`GetEffectiveProfile`), with the owner's unsaved draft applied there and validated as an
//! update would be; nothing is stored. The caller is an example: a new one, or a returning one
//! with a name and an example of the context memory-svc would give (fenced as data, as the real
//! context is).

use chrono::{DateTime, Utc};
use mesh::api::media::{ExampleCaller, RenderInstructionsRequest, RenderInstructionsResponse};
use mesh::api::tenant::GetEffectiveProfileRequest;
use mesh::domain::CustomerId;
use tonic::Status;

use crate::error::MediaError;
use crate::instructions;
use crate::peers::PeerError;
use crate::runtime::Runtime;

/// The returning caller's name when the request names none.
pub const EXAMPLE_NAME: &str = "Alex";

/// Longest example name accepted.
const MAX_NAME_CHARS: usize = 60;

/// An example of what memory-svc tells the agent about a returning caller (its shape; the real
/// text comes from the caller's own calls).
fn example_context(name: &str) -> String {
    format!(
        "(An example; on a real call this is what memory-svc knows about the caller.)\n\
         === CALLER PROFILE ===\nName: {name}\nTotal calls: 3\nPreferences: prefers e-mail\n\n\
         === RECENT CALL SUMMARIES ===\n1. Summary: asked about opening hours and booked a visit.\n"
    )
}

/// The example caller's name: trimmed, one line, at most 60 characters; [`EXAMPLE_NAME`] when
/// empty.
fn example_name(raw: &str) -> Result<String, MediaError> {
    let name = raw.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(MediaError::invalid(
            "example_caller_name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(MediaError::invalid(
            "example_caller_name",
            "must be one line of text",
        ));
    }
    Ok(if name.is_empty() {
        EXAMPLE_NAME.to_owned()
    } else {
        name.to_owned()
    })
}

fn render_time(t: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, MediaError> {
    match t {
        None => Ok(Utc::now()),
        Some(t) => crate::store::from_timestamp(t)
            .ok_or_else(|| MediaError::invalid("time", "out of range")),
    }
}

/// Renders the preview for `customer`.
pub async fn render(
    rt: &Runtime,
    customer: CustomerId,
    r: RenderInstructionsRequest,
) -> Result<RenderInstructionsResponse, Status> {
    let returning = match ExampleCaller::try_from(r.example_caller) {
        Ok(ExampleCaller::Unspecified | ExampleCaller::New) => false,
        Ok(ExampleCaller::Returning) => true,
        Err(_) => {
            return Err(MediaError::invalid("example_caller", "must be NEW or RETURNING").into());
        }
    };
    let name = example_name(&r.example_caller_name)?;
    let now = render_time(r.time.as_ref())?;
    let request = GetEffectiveProfileRequest {
        draft: r.draft,
        draft_mask: r.draft_mask,
    };
    let profile = match rt.peers.profile_with(customer, request).await {
        Ok(p) => p,
        // tenant-svc's validation of the draft, naming the `draft.` field: the client's to fix.
        Err(PeerError::Status(s)) if s.code() == tonic::Code::InvalidArgument => {
            return Err(Status::invalid_argument(s.message().to_owned()));
        }
        Err(e) => {
            tracing::warn!(customer_id = customer.get(), error = %e.short(), "agent profile unavailable for a preview");
            return Err(MediaError::Unavailable(
                "the agent configuration cannot be read now; retry later".into(),
            )
            .into());
        }
    };
    let greeting_new_caller = instructions::render_greeting(&profile, None, now);
    let greeting_returning_caller = instructions::render_greeting(&profile, Some(&name), now);
    let (user_name, context) = if returning {
        (Some(name.as_str()), Some(example_context(&name)))
    } else {
        (None, None)
    };
    let call = instructions::for_call(profile, user_name, context.as_deref(), None, now);
    Ok(RenderInstructionsResponse {
        voice: instructions::voice(&call.profile).as_str().to_owned(),
        greeting: call.greeting,
        instructions: call.instructions,
        greeting_new_caller,
        greeting_returning_caller,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_names_are_bounded_single_lines() {
        assert_eq!(example_name("  ").unwrap(), EXAMPLE_NAME);
        assert_eq!(example_name(" Maria ").unwrap(), "Maria");
        assert!(example_name(&"x".repeat(61)).is_err());
        assert!(example_name("Ma\nria").is_err());
    }
}
