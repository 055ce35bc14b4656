//! Notices mailed to a tenant's owners: "a caller left a message" (issue 20), asked for by
//! media-svc (`TenantAdminService.NotifyOwners`) once per callback task; and onboarding's
//! (issue 21): the sign-up's verification link, "approved: choose your number", and the welcome
//! with the first number and how to test it.
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
    let business = business_or_default(business);
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

/// The "monthly minutes 80 % used" mail for `business` (media-svc's billing; the share and the
/// month only: no call, no caller, no amount).
pub fn usage_warning(business: &str, base_url: &str, percent: i32, month: &str) -> Notice {
    let business = business_or_default(business);
    Notice {
        subject: format!("{business} has used {percent}% of this month's minutes"),
        body: format!(
            "Hello,\n\n\
             {business} has used {percent}% of the call minutes included in its package for \
             {month}. When they are used up, new calls are handled as your package says (callers \
             leave a message, or the line is busy) until the month ends.\n\n\
             See this month's usage in the portal:\n\n{base_url}/portal/usage\n"
        ),
    }
}

/// `business`, or "your business" when blank.
fn business_or_default(business: &str) -> &str {
    let business = business.trim();
    if business.is_empty() {
        "your business"
    } else {
        business
    }
}

/// The sign-up's verification mail: the one-time link (valid `hours`).
pub fn verify_signup(business: &str, base_url: &str, token: &str, hours: u64) -> Notice {
    let business = business_or_default(business);
    Notice {
        subject: format!("Confirm your e-mail address for {business}"),
        body: format!(
            "Hello,\n\n\
             someone (hopefully you) signed {business} up for NeuroSphere with this e-mail \
             address. To confirm it, open this link within {hours} hours:\n\n\
             {base_url}/portal/signup/verify?token={token}\n\n\
             If you did not sign up, ignore this mail: nothing is created without the link.\n",
        ),
    }
}

/// The mail to the owners of a customer an operator approved: choose a number.
pub fn approved(business: &str, base_url: &str) -> Notice {
    let business = business_or_default(business);
    Notice {
        subject: format!("{business} is approved: choose your number"),
        body: format!(
            "Hello,\n\n\
             {business} is approved. Sign in and choose the phone number your AI receptionist \
             answers:\n\n{base_url}/portal/numbers\n",
        ),
    }
}

/// The welcome mail once a customer's first number is routed to its agent.
pub fn welcome(business: &str, base_url: &str, number: &str) -> Notice {
    let business = business_or_default(business);
    Notice {
        subject: format!("Welcome to NeuroSphere: {business} answers on {number}"),
        body: format!(
            "Hello,\n\n\
             your AI receptionist for {business} now answers calls to {number}.\n\n\
             To test it, call {number} from any phone: the agent greets you with your \
             business's name. Change its greeting and voice in the portal:\n\n\
             {base_url}/portal/agent\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_warning_names_the_share_and_month_only() {
        let n = usage_warning("Smith & Sons", "https://example.test", 85, "2026-12");
        assert_eq!(
            n.subject,
            "Smith & Sons has used 85% of this month's minutes"
        );
        assert!(
            n.body
                .contains("85% of the call minutes included in its package for 2026-12")
        );
        assert!(n.body.contains("https://example.test/portal/usage"));
    }

    #[test]
    fn onboarding_mails_carry_their_link_and_number() {
        let v = verify_signup("Acme", "https://e.example", "tok", 24);
        assert!(
            v.body
                .contains("\n\nhttps://e.example/portal/signup/verify?token=tok\n\n")
        );
        assert!(v.body.contains("within 24 hours"));
        assert!(
            approved("Acme", "https://e.example")
                .body
                .contains("https://e.example/portal/numbers\n")
        );
        let w = welcome("Acme", "https://e.example", "+15005550006");
        assert!(w.subject.ends_with("+15005550006"));
        assert!(w.body.contains("call +15005550006"));
    }

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
