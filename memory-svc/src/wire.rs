//! The boundary: request limits, parsing of wire values into domain values, and conversions
//! between protobuf well-known types (`Value`, `Struct`, `Timestamp`) and `serde_json`/`chrono`.
//!
//! # Limits (documented in the README and enforced before anything is stored)
//! See the `MAX_*` constants; every refusal is INVALID_ARGUMENT naming the field.

use chrono::{DateTime, TimeZone, Utc};
use mesh::api::memory::{MemoryScope, MemoryType};
use mesh::domain::CallerNumber;
use prost_types::value::Kind;
use serde_json::{Map, Value as Json};

use crate::error::{MemoryError, Result};
use crate::model::{MemoryKind, Scope};

/// Longest memory key, in characters.
pub const MAX_KEY_CHARS: usize = 200;
/// Longest memory `source`, in characters.
pub const MAX_SOURCE_CHARS: usize = 200;
/// Largest memory value, profile `preferences` or `context`, JSON-encoded, in bytes.
pub const MAX_JSON_BYTES: usize = 16 * 1024;
/// Deepest nesting accepted in a JSON value (deep nesting is a parser-stack hazard downstream).
pub const MAX_JSON_DEPTH: usize = 32;
/// Longest preferred name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest `thread_id` filter, in characters.
pub const MAX_THREAD_ID_CHARS: usize = 200;
/// Default and range of `ttl_days`.
pub const DEFAULT_TTL_DAYS: i32 = 365;
/// Longest TTL.
pub const MAX_TTL_DAYS: i32 = 3650;
/// Default, maximum page size of ListMemories.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// Largest page of ListMemories.
pub const MAX_PAGE_SIZE: i32 = 500;
/// Most transcript turns in one RecordCall.
pub const MAX_TURNS: usize = 5000;
/// Longest transcript turn, in characters.
pub const MAX_TURN_CHARS: usize = 8000;
/// Longest call.
pub const MAX_DURATION_SECONDS: i32 = 86_400;
/// Default, maximum summaries in the enriched context.
pub const DEFAULT_NUM_SUMMARIES: i32 = 3;
/// Most summaries in the enriched context.
pub const MAX_NUM_SUMMARIES: i32 = 20;
/// Most memories in the enriched context.
pub const CONTEXT_MEMORIES: i64 = 20;
/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Default search results.
pub const DEFAULT_SEARCH_LIMIT: i32 = 10;
/// Most search results.
pub const MAX_SEARCH_LIMIT: i32 = 100;

/// Parses a caller number (`user_id`).
pub fn caller(field: &'static str, raw: &str) -> Result<CallerNumber> {
    CallerNumber::parse(raw).map_err(|e| MemoryError::invalid(field, e.0))
}

/// A text field of at most `max` characters; `min_one` refuses empty text.
pub fn text(field: &'static str, raw: &str, max: usize, min_one: bool) -> Result<String> {
    let n = raw.chars().count();
    if min_one && raw.trim().is_empty() {
        return Err(MemoryError::invalid(field, "is required"));
    }
    if n > max {
        return Err(MemoryError::invalid(
            field,
            format!("is too long: {n} characters, at most {max}"),
        ));
    }
    if raw.contains('\0') {
        return Err(MemoryError::invalid(
            field,
            "must not contain NUL characters",
        ));
    }
    Ok(raw.to_owned())
}

/// A memory type; refuses UNSPECIFIED and unknown numbers.
pub fn memory_type(field: &'static str, raw: i32) -> Result<MemoryKind> {
    match MemoryType::try_from(raw) {
        Ok(t) => MemoryKind::from_wire(t).ok_or_else(|| {
            MemoryError::invalid(
                field,
                "is required (MEMORY_TYPE_UNSPECIFIED is not a memory type)",
            )
        }),
        Err(_) => Err(MemoryError::invalid(
            field,
            format!("unknown memory type {raw}"),
        )),
    }
}

/// A memory scope; UNSPECIFIED means `user`.
pub fn scope(field: &'static str, raw: i32) -> Result<Scope> {
    MemoryScope::try_from(raw)
        .map(Scope::from_wire)
        .map_err(|_| MemoryError::invalid(field, format!("unknown memory scope {raw}")))
}

/// `ttl_days`: 0 means the default; negative or above the maximum is refused.
pub fn ttl_days(field: &'static str, raw: i32) -> Result<i32> {
    match raw {
        0 => Ok(DEFAULT_TTL_DAYS),
        n if n < 0 => Err(MemoryError::invalid(
            field,
            format!("must not be negative, got {n} (0 means {DEFAULT_TTL_DAYS} days)"),
        )),
        n if n > MAX_TTL_DAYS => Err(MemoryError::invalid(
            field,
            format!("must be at most {MAX_TTL_DAYS} days, got {n}"),
        )),
        n => Ok(n),
    }
}

/// A bounded integer with a default for 0.
pub fn bounded(field: &'static str, raw: i32, default: i32, max: i32) -> Result<i32> {
    match raw {
        0 => Ok(default),
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(MemoryError::invalid(
            field,
            format!("must be between 1 and {max} (0 for {default}), got {n}"),
        )),
    }
}

/// Checks size and depth of a JSON value about to be stored.
pub fn check_json(field: &'static str, value: &Json) -> Result<()> {
    if depth(value) > MAX_JSON_DEPTH {
        return Err(MemoryError::invalid(
            field,
            format!("is nested too deeply (at most {MAX_JSON_DEPTH} levels)"),
        ));
    }
    let len = serde_json::to_vec(value)
        .map_err(|_| MemoryError::invalid(field, "is not representable as JSON"))?
        .len();
    if len > MAX_JSON_BYTES {
        return Err(MemoryError::invalid(
            field,
            format!("is too large: {len} bytes once encoded as JSON, at most {MAX_JSON_BYTES}"),
        ));
    }
    if contains_nul(value) {
        return Err(MemoryError::invalid(
            field,
            "must not contain NUL characters (PostgreSQL jsonb cannot store them)",
        ));
    }
    Ok(())
}

fn depth(v: &Json) -> usize {
    match v {
        Json::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Json::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn contains_nul(v: &Json) -> bool {
    match v {
        Json::String(s) => s.contains('\0'),
        Json::Array(a) => a.iter().any(contains_nul),
        Json::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// protobuf `Value` -> JSON. Non-finite numbers are refused (JSON has none).
pub fn value_to_json(field: &'static str, v: &prost_types::Value, level: usize) -> Result<Json> {
    if level > MAX_JSON_DEPTH {
        return Err(MemoryError::invalid(
            field,
            format!("is nested too deeply (at most {MAX_JSON_DEPTH} levels)"),
        ));
    }
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(|n| {
                // Whole numbers are stored as integers so they read back the way they were meant.
                if n.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                {
                    Json::from(n.as_f64().unwrap_or_default() as i64)
                } else {
                    Json::Number(n)
                }
            })
            .ok_or_else(|| MemoryError::invalid(field, "numbers must be finite"))?,
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(l)) => Json::Array(
            l.values
                .iter()
                .map(|v| value_to_json(field, v, level + 1))
                .collect::<Result<_>>()?,
        ),
        Some(Kind::StructValue(s)) => Json::Object(struct_to_map(field, s, level + 1)?),
    })
}

/// protobuf `Struct` -> JSON object.
pub fn struct_to_map(
    field: &'static str,
    s: &prost_types::Struct,
    level: usize,
) -> Result<Map<String, Json>> {
    let mut out = Map::new();
    for (k, v) in &s.fields {
        out.insert(k.clone(), value_to_json(field, v, level)?);
    }
    Ok(out)
}

/// JSON -> protobuf `Value`.
pub fn json_to_value(v: &Json) -> prost_types::Value {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        Json::Object(o) => Kind::StructValue(map_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// JSON object -> protobuf `Struct`.
pub fn map_to_struct(o: &Map<String, Json>) -> prost_types::Struct {
    prost_types::Struct {
        fields: o
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// JSON (object expected) -> protobuf `Struct`; non-objects give an empty struct.
pub fn json_to_struct(v: &Json) -> prost_types::Struct {
    match v {
        Json::Object(o) => map_to_struct(o),
        _ => prost_types::Struct::default(),
    }
}

/// chrono -> protobuf timestamp.
pub use mesh::api::timestamp as ts;

/// protobuf timestamp -> chrono, refusing out-of-range values.
pub fn from_ts(field: &'static str, t: &prost_types::Timestamp) -> Result<DateTime<Utc>> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(MemoryError::invalid(field, "nanos out of range"));
    }
    match Utc.timestamp_opt(t.seconds, t.nanos as u32) {
        chrono::LocalResult::Single(d) if (1970..=9999).contains(&chrono::Datelike::year(&d)) => {
            Ok(d)
        }
        _ => Err(MemoryError::invalid(
            field,
            "is out of range (1970-01-01 to 9999-12-31)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rules() {
        assert_eq!(ttl_days("ttl_days", 0).unwrap(), 365);
        assert_eq!(ttl_days("ttl_days", 7).unwrap(), 7);
        assert!(
            ttl_days("ttl_days", -1)
                .unwrap_err()
                .to_string()
                .contains("ttl_days")
        );
        assert!(ttl_days("ttl_days", 3651).is_err());
    }

    #[test]
    fn types_are_strict() {
        assert_eq!(memory_type("type", 1).unwrap().as_str(), "person");
        assert!(memory_type("type", 0).is_err());
        assert!(memory_type("type", 99).is_err());
        for n in 1..=9 {
            let kind = memory_type("type", n).unwrap();
            assert_eq!(kind.to_wire() as i32, n);
        }
        assert_eq!(scope("scope", 0).unwrap().as_str(), "user");
        assert!(scope("scope", 9).is_err());
    }

    #[test]
    fn json_round_trips_and_limits() {
        let j: Json = serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": "d"}});
        let v = json_to_value(&j);
        assert_eq!(value_to_json("value", &v, 0).unwrap(), j);
        let big = Json::String("x".repeat(MAX_JSON_BYTES + 1));
        assert!(
            check_json("value", &big)
                .unwrap_err()
                .to_string()
                .starts_with("value:")
        );
        let mut deep = Json::Null;
        for _ in 0..40 {
            deep = Json::Array(vec![deep]);
        }
        assert!(check_json("value", &deep).is_err());
    }

    #[test]
    fn text_limits() {
        assert!(text("key", "", 200, true).is_err());
        assert!(text("key", &"k".repeat(201), 200, true).is_err());
        assert!(text("key", &"é".repeat(200), 200, true).is_ok());
    }
}
