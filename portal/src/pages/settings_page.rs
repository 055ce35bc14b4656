//! What the owners' settings pages share (`/portal/call-handling`, `/portal/outbound`): the page
//! of the settings as tenant-svc has them, with "Saved." after a save's redirect
//! (`?saved=1`); and a save that checks the form, asks tenant-svc, and on a refusal (the form's
//! own check, or tenant-svc's INVALID_ARGUMENT naming the field) shows the page again with the
//! posted values and the message, status 400, nothing stored.

use std::future::Future;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use crate::PageError;
use crate::layout::render_with;

/// A settings page: its template, with the form it posts.
pub trait SettingsPage: askama::Template {
    /// What the form posts.
    type Form;
    /// Shows `notice` above the form.
    fn set_notice(&mut self, notice: &'static str);
    /// Shows the posted `form` again with the refusal's `error`.
    fn refused(&mut self, form: Self::Form, error: String);
}

/// `?saved=1`: the page after a save's redirect.
#[derive(Debug, serde::Deserialize)]
pub struct Saved {
    saved: Option<String>,
}

/// The page `page` (as tenant-svc has the settings), with "Saved." after a save.
pub fn show<P: SettingsPage>(mut page: P, saved: &Saved) -> Response {
    if saved.saved.is_some() {
        page.set_notice("Saved.");
    }
    render_with(StatusCode::OK, &page)
}

/// Saves `form`: `checked` is the form's own reading of it (a message naming the field when it
/// cannot be read); `update` asks tenant-svc; `load` builds the page again for a refusal. Taken:
/// a redirect to `path?saved=1`. Another error than INVALID_ARGUMENT is an error page.
pub async fn save<P, S, T, U, L>(
    form: P::Form,
    checked: Result<S, String>,
    update: impl FnOnce(S) -> U,
    load: impl FnOnce() -> L,
    path: &str,
) -> Result<Response, PageError>
where
    P: SettingsPage,
    U: Future<Output = Result<T, tonic::Status>>,
    L: Future<Output = Result<P, PageError>>,
{
    let error = match checked {
        Ok(settings) => match update(settings).await {
            Ok(_) => return Ok(Redirect::to(&format!("{path}?saved=1")).into_response()),
            Err(s) if s.code() == tonic::Code::InvalidArgument => s.message().to_owned(),
            Err(s) => return Err(s.into()),
        },
        Err(message) => message,
    };
    let mut page = load().await?;
    page.refused(form, error);
    Ok(render_with(StatusCode::BAD_REQUEST, &page))
}
