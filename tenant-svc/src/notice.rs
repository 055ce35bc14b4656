//! Notices mailed to a tenant's owners (issue 20): today one kind, "a caller left a message",
//! asked for by media-svc (`TenantAdminService.NotifyOwners`) once per callback task.
//!
//! The mail names the business and the kind of reason, and links to the portal's inbox; it
//! never carries the caller's number, the message's transcript or audio, or the agent's note:
//! an owner reads those only after signing in. Each owner gets their own mail (no owner sees
//! another's address). [`OwnerMail`] is the configuration (the shared [`mesh::mail`] settings
//! and `PUBLIC_BASE_URL`); `None` in [`crate::account::AccountConfig`] means mail is not
//! configured and nothing is sent.

use mesh::api::tenant::MessageReason;

/// How owners' notices are sent.
#[derive(Debug, Clone)]
pub struct OwnerMail {
    /// The transport and sender (`PORTAL_SMTP_URL` or `PORTAL_OUTBOX_DIR`, `PORTAL_MAIL_FROM`).
    pub mailer: mesh::mail::Mailer,
    /// The public base URL, no trailing slash: the link is `<base>/portal/messages`.
    pub base_url: String,
}

/// A notice's subject and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// What the owners read about a reason (its kind only).
fn reason_text(reason: MessageReason) -> &'static str {
    match reason {
        MessageReason::BackendDown => "the AI receptionist could not answer the call",
        MessageReason::Busy => "every line was busy",
        MessageReason::AfterHours => "the call came outside your opening hours",
        MessageReason::Agent => "the AI receptionist took the message during the call",
        MessageReason::Unspecified => "the call could not be answered",
    }
}

/// The "a caller left a message" mail for `business`.
pub fn message_taken(business: &str, base_url: &str, reason: MessageReason) -> Notice {
    let business = business.trim();
    let business = if business.is_empty() {
        "your business"
    } else {
        business
    };
    Notice {
        subject: format!("New message for {business}"),
        body: format!(
            "Hello,\n\n\
             a caller left a message for {business} ({why}).\n\n\
             Open it in the portal:\n\n{base_url}/portal/messages\n\n\
             For your callers' privacy this mail does not contain the caller's number or the \
             message: sign in to the portal to read and listen to it.\n",
            why = reason_text(reason),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mail_links_to_the_inbox_and_names_the_reason_kind_only() {
        let n = message_taken(
            "Acme Plumbing",
            "https://edge.example.com",
            MessageReason::AfterHours,
        );
        assert_eq!(n.subject, "New message for Acme Plumbing");
        assert!(
            n.body
                .contains("\n\nhttps://edge.example.com/portal/messages\n\n")
        );
        assert!(n.body.contains("outside your opening hours"));
        assert!(
            message_taken(" ", "http://x", MessageReason::Busy)
                .subject
                .ends_with("your business")
        );
    }
}
