//! Page tokens of the list RPCs (`ListCalls`, `ListDeadLetters`): opaque to clients, they name
//! the position after the last row of a page as `<time micros>:<key>` in base64url, where the
//! time and key are the list's sort order (created_at and CallSid, dead_at and event id). One
//! codec for both lists, so a token is checked the same way wherever it comes back.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::error::MediaError;

/// The token of the position (`time`, `key`).
pub fn encode(time: DateTime<Utc>, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{key}", time.timestamp_micros()))
}

/// The position a token names (`None` for the empty token: the first page), its key parsed by
/// `parse_key`; INVALID_ARGUMENT `page_token` for anything that is not a token of ours.
pub fn decode<K, E>(
    token: &str,
    parse_key: impl FnOnce(&str) -> Result<K, E>,
) -> Result<Option<(DateTime<Utc>, K)>, MediaError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || MediaError::invalid("page_token", "is not a token from a previous response");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (micros, key) = text.split_once(':').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let time = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let key = parse_key(key).map_err(|_| bad())?;
    Ok(Some((time, key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        let time = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let token = encode(time, "CA42");
        let back = decode(&token, |k| Ok::<_, ()>(k.to_owned())).unwrap();
        assert_eq!(back, Some((time, "CA42".to_owned())));
        assert_eq!(decode("", |k| Ok::<_, ()>(k.to_owned())).unwrap(), None);
        for bad in ["!!", "bm90IGEgdG9rZW4", &encode(time, "x")] {
            let e = decode(bad, |k| if k == "x" { Err(()) } else { Ok(()) }).unwrap_err();
            assert!(e.to_string().contains("page_token"), "{e}");
        }
    }
}
