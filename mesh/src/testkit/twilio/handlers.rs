//! The fake's request handling: authentication, the 429 switch, and one handler per Twilio
//! endpoint (the REST host's numbers, the Pricing host's countries).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{Ctx, Owned, Recorded, lock};

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

/// `application/x-www-form-urlencoded` (a body or a query) into pairs.
fn pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn authorized(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", ctx.key_sid, ctx.key_secret));
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {expected}"))
}

fn resource(account: &str, o: &Owned) -> Value {
    json!({
        "account_sid": account,
        "sid": o.sid,
        "phone_number": o.phone_number,
        "friendly_name": o.phone_number,
        "voice_url": o.voice_url,
        "voice_method": o.voice_method,
        "status_callback": o.status_callback,
        "status_callback_method": o.status_callback_method,
        "capabilities": {"voice": true, "sms": true, "mms": true, "fax": false},
        "uri": format!("/2010-04-01/Accounts/{account}/IncomingPhoneNumbers/{}.json", o.sid),
    })
}

pub(super) async fn handle(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = pairs(uri.query().unwrap_or(""));
    let form = pairs(&String::from_utf8_lossy(&body));
    let path = uri.path().to_owned();
    {
        let mut s = lock(&ctx.state);
        s.requests.push(Recorded {
            host: ctx.host,
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            form: form.clone(),
        });
    }
    if !authorized(&ctx, &headers) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if ctx.host == "pricing" {
        return pricing(&ctx, &path);
    }
    {
        let mut s = lock(&ctx.state);
        if s.too_many > 0 {
            s.too_many -= 1;
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            if let Some(secs) = s.retry_after {
                r.headers_mut()
                    .insert("retry-after", secs.to_string().parse().expect("digits"));
            }
            return r;
        }
    }
    let prefix = format!("/2010-04-01/Accounts/{}/", ctx.account_sid);
    let Some(rest) = path.strip_prefix(&prefix) else {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["AvailablePhoneNumbers", country, kind]) => {
            available(&ctx, country, kind.trim_end_matches(".json"), &query)
        }
        ("GET", ["IncomingPhoneNumbers.json"]) => list(&ctx, &query).await,
        ("POST", ["IncomingPhoneNumbers.json"]) => purchase(&ctx, &form),
        ("POST", ["IncomingPhoneNumbers", sid]) => {
            update(&ctx, sid.trim_end_matches(".json"), &form)
        }
        ("DELETE", ["IncomingPhoneNumbers", sid]) => {
            let sid = sid.trim_end_matches(".json");
            let mut s = lock(&ctx.state);
            let before = s.owned.len();
            s.owned.retain(|o| o.sid != sid);
            if s.owned.len() == before {
                return error(
                    StatusCode::NOT_FOUND,
                    20404,
                    "The requested resource was not found",
                );
            }
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ),
    }
}

fn pricing(ctx: &Ctx, path: &str) -> Response {
    let Some(iso) = path.strip_prefix("/v1/PhoneNumbers/Countries/") else {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    };
    let s = lock(&ctx.state);
    let Some((country, unit, prices)) = s.prices.iter().find(|(c, _, _)| c == iso) else {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    };
    let prices: Vec<Value> = prices
        .iter()
        .map(|(t, p)| json!({"number_type": t, "base_price": p, "current_price": p}))
        .collect();
    axum::Json(json!({
        "country": country,
        "iso_country": country,
        "phone_number_prices": prices,
        "price_unit": unit,
        "url": format!("https://pricing.twilio.com/v1/PhoneNumbers/Countries/{country}"),
    }))
    .into_response()
}

fn available(ctx: &Ctx, country: &str, kind: &str, query: &[(String, String)]) -> Response {
    let s = lock(&ctx.state);
    if !s.known_countries.iter().any(|c| c == country) {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    }
    let area = get(query, "AreaCode");
    if let Some(a) = area
        && !(a.len() == 3 && a.bytes().all(|b| b.is_ascii_digit()) && !a.starts_with(['0', '1']))
    {
        return error(StatusCode::BAD_REQUEST, 21451, "Invalid area code");
    }
    let contains = get(query, "Contains").map(|c| c.replace('*', ""));
    let locality = get(query, "InLocality");
    let page_size: usize = get(query, "PageSize")
        .and_then(|p| p.parse().ok())
        .unwrap_or(50);
    let numbers: Vec<Value> = s
        .offered
        .iter()
        .filter(|o| o.country == country && o.kind == kind)
        .filter(|o| area.is_none_or(|a| o.phone_number.starts_with(&format!("+1{a}"))))
        .filter(|o| {
            contains
                .as_deref()
                .is_none_or(|c| o.phone_number.contains(c))
        })
        .filter(|o| locality.is_none_or(|l| o.locality.eq_ignore_ascii_case(l)))
        .take(page_size)
        .map(|o| {
            json!({
                "friendly_name": o.phone_number,
                "phone_number": o.phone_number,
                "locality": o.locality,
                "region": o.region,
                "iso_country": o.country,
                "address_requirements": "none",
                "beta": false,
                "capabilities": {"voice": true, "SMS": true, "MMS": true},
            })
        })
        .collect();
    axum::Json(json!({
        "available_phone_numbers": numbers,
        "uri": format!("/2010-04-01/Accounts/{}/AvailablePhoneNumbers/{country}/{kind}.json", ctx.account_sid),
    }))
    .into_response()
}

async fn list(ctx: &Ctx, query: &[(String, String)]) -> Response {
    let delay = lock(&ctx.state).list_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let s = lock(&ctx.state);
    let matching: Vec<&Owned> = s
        .owned
        .iter()
        .filter(|o| get(query, "PhoneNumber").is_none_or(|p| o.phone_number == p))
        .collect();
    let page_size: usize = get(query, "PageSize")
        .and_then(|p| p.parse().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page: usize = get(query, "Page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let items: Vec<Value> = matching
        .iter()
        .skip(page * page_size)
        .take(page_size)
        .map(|o| resource(&ctx.account_sid, o))
        .collect();
    let base = format!(
        "/2010-04-01/Accounts/{}/IncomingPhoneNumbers.json",
        ctx.account_sid
    );
    let next = ((page + 1) * page_size < matching.len()).then(|| {
        format!(
            "{base}?PageSize={page_size}&Page={}&PageToken=PA{}",
            page + 1,
            page + 1
        )
    });
    axum::Json(json!({
        "incoming_phone_numbers": items,
        "page": page,
        "page_size": page_size,
        "first_page_uri": format!("{base}?PageSize={page_size}&Page=0"),
        "next_page_uri": next,
        "previous_page_uri": null,
        "uri": base,
    }))
    .into_response()
}

fn purchase(ctx: &Ctx, form: &[(String, String)]) -> Response {
    let Some(number) = get(form, "PhoneNumber") else {
        return error(StatusCode::BAD_REQUEST, 21452, "No phone numbers found");
    };
    if !(number.starts_with('+')
        && number.len() > 7
        && number[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return error(StatusCode::BAD_REQUEST, 21421, "PhoneNumber is invalid");
    }
    let mut s = lock(&ctx.state);
    let Some(i) = s.offered.iter().position(|o| o.phone_number == number) else {
        return error(
            StatusCode::BAD_REQUEST,
            21422,
            &format!("PhoneNumber {number} requested is not available"),
        );
    };
    s.offered.remove(i);
    let sid = format!("PN{:032x}", s.next_sid);
    s.next_sid += 1;
    let owned = Owned {
        sid,
        phone_number: number.to_owned(),
        voice_url: get(form, "VoiceUrl").unwrap_or("").to_owned(),
        voice_method: get(form, "VoiceMethod").unwrap_or("POST").to_owned(),
        status_callback: get(form, "StatusCallback").unwrap_or("").to_owned(),
        status_callback_method: get(form, "StatusCallbackMethod")
            .unwrap_or("POST")
            .to_owned(),
    };
    let answer = resource(&ctx.account_sid, &owned);
    s.owned.push(owned);
    if s.drop_purchase_answers > 0 {
        s.drop_purchase_answers -= 1;
        // Bought; the answer never arrives whole: the body fails, which cuts the connection.
        let body = Body::from_stream(futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("connection cut"))
        }));
        return (StatusCode::CREATED, body).into_response();
    }
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

fn update(ctx: &Ctx, sid: &str, form: &[(String, String)]) -> Response {
    let mut s = lock(&ctx.state);
    let Some(o) = s.owned.iter_mut().find(|o| o.sid == sid) else {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    };
    for (k, v) in form {
        match k.as_str() {
            "VoiceUrl" => o.voice_url = v.clone(),
            "VoiceMethod" => o.voice_method = v.clone(),
            "StatusCallback" => o.status_callback = v.clone(),
            "StatusCallbackMethod" => o.status_callback_method = v.clone(),
            _ => {}
        }
    }
    let answer = resource(&ctx.account_sid, o);
    axum::Json(answer).into_response()
}
