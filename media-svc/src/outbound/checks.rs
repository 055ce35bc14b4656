//! `PlaceOutboundCall`'s checks of the request against the tenant's customer record and outbound
//! settings, in the order [`super::place`] runs them: the browser origin (required through the
//! public endpoint when the tenant lists origins; and a suspended customer), the destination
//! (E.164, allowed region and kind of number, do-not-call), the persona, the context
//! (markup stripped, length) and the caller id with the account to place the call from. Each
//! refusal is counted by its reason and names what is wrong in words a website can show.

use mesh::api::media::PlaceOutboundCallRequest;
use mesh::api::tenant::{Customer, CustomerStatus, OutboundSettings};
use mesh::domain::{AccountSid, CustomerId, DialPolicy, DialRefusal, PhoneNumber};

use super::refused;
use crate::error::MediaError;
use crate::twilio::TwilioConfig;

/// Longest context, in characters, after markup is stripped.
pub const MAX_CONTEXT_CHARS: usize = 2000;

/// Strips markup from free text: tags (`<` followed by a letter, `/`, `!` or `?`, up to the next
/// `>`, or to the end when none follows) are removed, control characters other than newline are
/// removed, and surrounding whitespace is trimmed. A `<` that does not open a tag (`a < b`) stays.
pub fn strip_markup(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '<'
            && chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'))
        {
            for t in chars.by_ref() {
                if t == '>' {
                    break;
                }
            }
            continue;
        }
        if c.is_control() && c != '\n' {
            continue;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

/// At most `max` characters of client text for an error message, quoted and escaped.
fn quoted(text: &str, max: usize) -> String {
    let cut: String = text.chars().take(max).collect();
    format!("{cut:?}")
}

/// The browser's origin, when the request came through the public endpoint; and the customer
/// must not be suspended.
pub(super) fn origin(
    r: &PlaceOutboundCallRequest,
    record: &Customer,
    settings: &OutboundSettings,
) -> Result<(), MediaError> {
    let origin = r.origin.trim();
    // Through the public endpoint (the gateway sets the client address), a tenant that lists
    // origins accepts no request without one: a script or a server could otherwise skip the
    // check by leaving the header out.
    if origin.is_empty() && !r.client_address.is_empty() && !settings.cors_origins.is_empty() {
        return Err(refused(
            "origin",
            MediaError::PermissionDenied(
                "origin: missing; this customer accepts public calls only from its listed origins"
                    .into(),
            ),
        ));
    }
    if !origin.is_empty()
        && !settings
            .cors_origins
            .iter()
            .any(|o| o.trim().eq_ignore_ascii_case(origin))
    {
        return Err(refused(
            "origin",
            MediaError::PermissionDenied(format!(
                "origin {} is not allowed for this customer",
                quoted(origin, 200)
            )),
        ));
    }
    if record.status == CustomerStatus::Suspended as i32 {
        return Err(refused(
            "suspended",
            MediaError::FailedPrecondition(
                "this customer is suspended: outbound calls are refused".into(),
            ),
        ));
    }
    Ok(())
}

/// The destination: E.164, in an allowed region and not of a restricted kind the tenant has not
/// allowed (toll fraud), not on the do-not-call list.
pub(super) fn destination(
    to: &str,
    settings: &OutboundSettings,
) -> Result<PhoneNumber, MediaError> {
    let to = PhoneNumber::parse(to).map_err(|e| refused("to", MediaError::invalid("to", e)))?;
    let policy =
        DialPolicy::from_settings(&settings.allowed_regions, &settings.allowed_number_types);
    if let Err(refusal) = policy.check(&to) {
        let (reason, why) = match refusal {
            DialRefusal::Region(_) if settings.allowed_regions.is_empty() => (
                "country",
                " (outbound calls are not enabled: no destination region is allowed)",
            ),
            DialRefusal::Region(_) => ("country", ""),
            DialRefusal::Restricted(_) => ("number-type", ""),
        };
        return Err(refused(
            reason,
            MediaError::FailedPrecondition(format!("`to`: {refusal}{why}")),
        ));
    }
    // tenant-svc stores do-not-call entries normalised to E.164, like `to`.
    if settings.do_not_call.iter().any(|n| n.trim() == to.as_str()) {
        return Err(refused(
            "do-not-call",
            MediaError::FailedPrecondition(
                "`to`: the number is on this customer's do-not-call list".into(),
            ),
        ));
    }
    Ok(to)
}

/// The persona: one of the tenant's, stored as the tenant spelled it ('' = the agent profile).
pub(super) fn persona(requested: &str, settings: &OutboundSettings) -> Result<String, MediaError> {
    let requested = requested.trim();
    if requested.is_empty() {
        return Ok(String::new());
    }
    settings
        .allowed_personas
        .iter()
        .map(|p| p.trim())
        .find(|p| p.eq_ignore_ascii_case(requested))
        .map(str::to_owned)
        .ok_or_else(|| {
            refused(
                "persona",
                MediaError::invalid(
                    "persona",
                    format!(
                        "{} is not one of this customer's allowed personas",
                        quoted(requested, 60)
                    ),
                ),
            )
        })
}

/// The context, markup stripped, at most [`MAX_CONTEXT_CHARS`].
pub(super) fn context(text: &str) -> Result<String, MediaError> {
    let context = strip_markup(text);
    if context.chars().count() > MAX_CONTEXT_CHARS {
        return Err(refused(
            "context",
            MediaError::invalid(
                "context",
                "is longer than 2,000 characters (after markup is removed)",
            ),
        ));
    }
    Ok(context)
}

/// The caller id (one of the tenant's own numbers: `from`, or the first) and the account to
/// place the call from (the number's subaccount, else the platform account), which needs the
/// Twilio credentials to be configured.
pub(super) fn caller_id(
    customer: CustomerId,
    from: &str,
    record: &Customer,
    twilio: &TwilioConfig,
) -> Result<(PhoneNumber, AccountSid), MediaError> {
    let number = if from.trim().is_empty() {
        record.phone_numbers.first().ok_or_else(|| {
            refused(
                "from",
                MediaError::FailedPrecondition(
                    "`from`: this customer has no phone number to call from".into(),
                ),
            )
        })?
    } else {
        let wanted = PhoneNumber::parse(from)
            .map_err(|e| refused("from", MediaError::invalid("from", e)))?;
        record
            .phone_numbers
            .iter()
            .find(|n| n.number == wanted.as_str())
            .ok_or_else(|| {
                refused(
                    "from",
                    MediaError::invalid("from", "is not one of this customer's numbers"),
                )
            })?
    };
    let from = PhoneNumber::parse(&number.number)
        .map_err(|_| MediaError::Internal("tenant-svc sent an invalid number".into()))?;
    let not_configured = || {
        refused(
            "not-configured",
            MediaError::FailedPrecondition(
                "outbound calls are not configured for this number".into(),
            ),
        )
    };
    let account = match number
        .twilio_account_sid
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        Some(sid) => AccountSid::parse(sid)
            .map_err(|_| MediaError::Internal("tenant-svc sent an invalid account sid".into()))?,
        None => twilio.account_sid.clone().ok_or_else(|| {
            tracing::error!(
                customer_id = customer.get(),
                "TWILIO_ACCOUNT_SID is not set and the number has no subaccount; outbound call refused"
            );
            not_configured()
        })?,
    };
    if twilio.auth_token.is_none() {
        tracing::error!(
            customer_id = customer.get(),
            "TWILIO_AUTH_TOKEN is not set; outbound call refused"
        );
        return Err(not_configured());
    }
    Ok((from, account))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_stripped_before_the_length_is_counted() {
        assert_eq!(
            strip_markup("  <b>Asked</b> about <i>home</i> insurance  "),
            "Asked about home insurance"
        );
        assert_eq!(
            strip_markup("<script>alert(1)</script>hi<!-- c --><?php x ?>"),
            "alert(1)hi"
        );
        // A `<` that opens no tag is text; an unclosed tag runs to the end.
        assert_eq!(strip_markup("price < 5 and > 3"), "price < 5 and > 3");
        assert_eq!(strip_markup("call me <img src=x onerror"), "call me");
        // Control characters go, newlines stay.
        assert_eq!(
            strip_markup("line one\r\n\tline\u{0}two\u{1b}[31m"),
            "line one\nlinetwo[31m"
        );
        assert_eq!(strip_markup(" \n\t "), "");
        // 2,000 characters of text survive inside any amount of markup.
        let wrapped = format!("<p>{}</p>", "é".repeat(MAX_CONTEXT_CHARS));
        assert_eq!(strip_markup(&wrapped).chars().count(), MAX_CONTEXT_CHARS);
    }

    #[test]
    fn messages_quote_client_text_safely() {
        assert_eq!(
            quoted("https://evil.example\n", 200),
            "\"https://evil.example\\n\""
        );
        assert_eq!(quoted(&"a".repeat(300), 5), "\"aaaaa\"");
    }
}
