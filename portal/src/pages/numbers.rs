//! `/portal/numbers` (owners): the business's phone numbers (media-svc `ListNumbers`) and how to
//! test one; a search by country and area code or city (`SearchAvailableNumbers`, with each
//! number's monthly price) whose results each have a "Buy" button: a CSRF-checked POST to
//! `/portal/numbers/buy` carrying a `request_id` UUID made when the page was rendered, so a
//! double submit (or a reload of the answer) buys once (`PurchaseNumber` is idempotent on it),
//! then a redirect back here where the number shows. The portal decides nothing: media-svc
//! validates the search and the purchase (its refusal is the 400 page naming the field) and
//! buys at Twilio with the session's own tenant token (scope `media:numbers`).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mesh::api::media::number_service_client::NumberServiceClient;
use mesh::api::media::{
    ListNumbersRequest, NumberState, Price, PurchaseNumberRequest, SearchAvailableNumbersRequest,
};
use serde::Deserialize;
use tonic::transport::Channel;

use crate::{CsrfForm, Layout, NavItem, Owner, PageError, Portal, render};

/// This page's routes.
pub fn routes() -> axum::Router<Arc<Portal>> {
    axum::Router::new()
        .route("/portal/numbers", get(page))
        .route("/portal/numbers/buy", post(buy))
}

fn numbers(portal: &Portal) -> NumberServiceClient<Channel> {
    NumberServiceClient::new(portal.channels().media.clone())
}

/// A price as people read it: `1.15 USD` (zero-decimal currencies without decimals).
fn money(p: Option<&Price>) -> String {
    let Some(p) = p else {
        return "price unknown".into();
    };
    if ["JPY", "KRW", "CLP", "ISK", "VND"].contains(&p.currency.as_str()) {
        return format!("{} {}", p.amount_minor, p.currency);
    }
    let sign = if p.amount_minor < 0 { "-" } else { "" };
    let a = p.amount_minor.unsigned_abs();
    format!("{sign}{}.{:02} {}", a / 100, a % 100, p.currency)
}

/// The search as the form sends it (GET: it changes nothing).
#[derive(Debug, Default, Deserialize)]
struct Search {
    #[serde(default)]
    country: String,
    #[serde(default)]
    area_code: String,
    #[serde(default)]
    city: String,
    /// Set by the redirect after a purchase.
    #[serde(default)]
    bought: Option<String>,
}

/// One of the business's numbers.
struct Held {
    number: String,
    price: String,
}

/// One search result.
struct Offer {
    number: String,
    place: String,
    price: String,
    request_id: String,
}

#[derive(Template)]
#[template(path = "numbers.html")]
struct NumbersPage {
    layout: Layout,
    csrf: String,
    held: Vec<Held>,
    country: String,
    area_code: String,
    city: String,
    searched: bool,
    offers: Vec<Offer>,
    bought: bool,
}

async fn page(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    Query(q): Query<Search>,
) -> Result<Response, PageError> {
    let mut client = numbers(&portal);
    let held = client
        .list_numbers(owner.grpc(ListNumbersRequest {}))
        .await?
        .into_inner()
        .numbers
        .into_iter()
        .filter(|n| n.state == NumberState::Active as i32)
        .map(|n| Held {
            price: money(n.monthly_price.as_ref()),
            number: n.phone_number,
        })
        .collect();
    let searched = !q.country.trim().is_empty();
    let mut offers = Vec::new();
    if searched {
        let found = client
            .search_available_numbers(owner.grpc(SearchAvailableNumbersRequest {
                country: q.country.trim().to_ascii_uppercase(),
                area_code: q.area_code.trim().to_owned(),
                locality: q.city.trim().to_owned(),
                limit: 10,
                ..Default::default()
            }))
            .await?
            .into_inner();
        offers = found
            .numbers
            .into_iter()
            .map(|n| Offer {
                place: [n.locality.as_str(), n.region.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", "),
                price: money(n.monthly_price.as_ref()),
                number: n.phone_number,
                request_id: uuid::Uuid::new_v4().to_string(),
            })
            .collect();
    }
    Ok(render(&NumbersPage {
        layout: owner.layout("Numbers", NavItem::Numbers),
        csrf: owner.csrf().to_owned(),
        held,
        country: if q.country.is_empty() {
            "US".into()
        } else {
            q.country
        },
        area_code: q.area_code,
        city: q.city,
        searched,
        offers,
        bought: q.bought.is_some(),
    }))
}

#[derive(Debug, Deserialize)]
struct BuyForm {
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    request_id: String,
}

async fn buy(
    State(portal): State<Arc<Portal>>,
    owner: Owner,
    CsrfForm(form): CsrfForm<BuyForm>,
) -> Result<Response, PageError> {
    numbers(&portal)
        .purchase_number(owner.grpc(PurchaseNumberRequest {
            phone_number: form.phone_number,
            request_id: form.request_id,
        }))
        .await?;
    tracing::info!(
        customer_id = owner.customer_id(),
        user_id = owner.user_id(),
        "number bought in the portal"
    );
    Ok(Redirect::to("/portal/numbers?bought=1").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_in_major_units() {
        let p = |c: &str, a| Price {
            currency: c.into(),
            amount_minor: a,
        };
        assert_eq!(money(Some(&p("USD", 115))), "1.15 USD");
        assert_eq!(money(Some(&p("USD", 5))), "0.05 USD");
        assert_eq!(money(Some(&p("JPY", 150))), "150 JPY");
        assert_eq!(money(None), "price unknown");
    }
}
