//! The tenant's audit log on `/portal/security` (owners only; `templates/security_audit.html`):
//! sign-ins, failed sign-ins, team, key and setting changes, caller exports and erasures,
//! gathered by tenant-svc from every service (`TeamService.ListAuditEvents`, scope
//! `tenant:audit`), newest first, 50 to a page with a link to the older ones.

use mesh::api::tenant::team_service_client::TeamServiceClient;
use mesh::api::tenant::{AuditEvent, ListAuditEventsRequest};

use super::security::when;
use crate::{PageError, Portal, Session};

/// Events on one page.
const PAGE_SIZE: i32 = 50;

/// One event as the table shows it.
pub struct AuditRow {
    /// When (UTC, to the minute).
    pub when: String,
    /// Who: the user's address when the actor is a team member, else the token subject.
    pub who: String,
    /// What, dotted (`auth.sign_in`, `keys.created`, `caller.erased`, ...).
    pub action: String,
    /// The service that recorded it.
    pub service: String,
    /// Details, `name: value` joined.
    pub details: String,
}

impl AuditRow {
    fn from_event(e: AuditEvent) -> AuditRow {
        let mut details: Vec<(String, String)> = e.details.into_iter().collect();
        details.sort();
        AuditRow {
            when: when(e.create_time.as_ref()),
            who: if e.actor_email.is_empty() {
                e.actor
            } else {
                e.actor_email
            },
            action: e.action,
            service: e.service,
            details: details
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The section: shown to owners only.
#[derive(Default)]
pub struct AuditSection {
    /// Whether the section is shown (an owner's page).
    pub shown: bool,
    /// This page's events.
    pub rows: Vec<AuditRow>,
    /// The link to the next (older) page.
    pub next: Option<String>,
    /// Why the log cannot be shown now (a service did not answer); the rest of the page is.
    pub unavailable: bool,
}

/// The audit section of `session`'s security page at `page` (a token from a previous page).
pub async fn section(
    portal: &Portal,
    session: &Session,
    page: Option<String>,
) -> Result<AuditSection, PageError> {
    if !session.is_owner() {
        return Ok(AuditSection::default());
    }
    let request = ListAuditEventsRequest {
        page_size: PAGE_SIZE,
        page_token: page.unwrap_or_default(),
    };
    let answer = TeamServiceClient::new(portal.channels().tenant.clone())
        .list_audit_events(session.grpc(request))
        .await;
    match answer {
        Ok(r) => {
            let r = r.into_inner();
            let next = (!r.next_page_token.is_empty()).then(|| {
                let token: String =
                    form_urlencoded::byte_serialize(r.next_page_token.as_bytes()).collect();
                format!("/portal/security?audit={token}#audit-heading")
            });
            Ok(AuditSection {
                shown: true,
                rows: r.events.into_iter().map(AuditRow::from_event).collect(),
                next,
                unavailable: false,
            })
        }
        Err(e) if e.code() == tonic::Code::Unavailable => {
            tracing::warn!(
                customer_id = session.customer_id(),
                "the audit log could not be gathered"
            );
            Ok(AuditSection {
                shown: true,
                unavailable: true,
                ..AuditSection::default()
            })
        }
        Err(e) => Err(e.into()),
    }
}
