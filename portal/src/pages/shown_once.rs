//! What the owners' pages with a create form share (`/portal/team`'s invitations,
//! `/portal/tokens`' API keys): a [`View`] of what the page shows besides its lists (a notice
//! after a redirect, a refusal's message, or a secret [`ShownOnce`]), rendered by the partial
//! template `shown_once.html`.
//!
//! A secret is shown once, on the answer to the form that created it, and never again: the
//! portal keeps no copy, and like every portal page but the stylesheet the answer carries
//! `Cache-Control: no-store` (`security::headers`), so no browser or proxy keeps it.

/// A secret shown this once, with what to do with it.
pub struct ShownOnce {
    /// The card's heading (names what was created).
    pub heading: String,
    /// The heading's element id.
    pub heading_id: &'static str,
    /// What to do with the secret now.
    pub advice: &'static str,
    /// The secret itself.
    pub secret: String,
    /// The secret's element id.
    pub secret_id: &'static str,
}

/// What a page shows besides its lists.
#[derive(Default)]
pub struct View {
    /// The notice after a redirect (`?done=...`).
    pub notice: Option<&'static str>,
    /// A refusal's message.
    pub error: Option<String>,
    /// The secret just created.
    pub created: Option<ShownOnce>,
}

/// `?done=...`: the page after an action's redirect.
#[derive(Debug, serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

impl View {
    /// The page after a redirect: the notice `notices` gives for its `done` (if any).
    pub fn after(done: &Done, notices: &[(&str, &'static str)]) -> View {
        let notice = (notices.iter())
            .find(|(d, _)| done.done.as_deref() == Some(*d))
            .map(|(_, n)| *n);
        View {
            notice,
            ..View::default()
        }
    }

    /// The page again after a refusal.
    pub fn error(error: String) -> View {
        View {
            error: Some(error),
            ..View::default()
        }
    }

    /// The answer to a create form: the secret, this once.
    pub fn created(once: ShownOnce) -> View {
        View {
            created: Some(once),
            ..View::default()
        }
    }
}
