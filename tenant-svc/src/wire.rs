//! The conversions every other module needs and none should own: a protobuf timestamp from the
//! database's `timestamptz`, and values to and from the JSON columns. They sit at the bottom of
//! the crate's module graph (they import nothing of it), so that the model, the store and the
//! handlers can all use them without importing each other: `model` once took `timestamp` from
//! `store`, which closed the circle `model -> store -> outbound -> model`.

use serde_json::Value;

/// A protobuf timestamp (mesh's, here beside the other conversions).
pub use mesh::api::timestamp;

/// A value as JSON (for a `jsonb` column or a history entry). The values here are plain data
/// (strings, numbers, lists, maps with string keys), which always serialize; `null` otherwise.
pub fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A nullable `jsonb` column read back; `None` when NULL or not of the expected shape.
pub fn from_json<T: serde::de::DeserializeOwned>(v: Option<Value>) -> Option<T> {
    v.and_then(|v| serde_json::from_value(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_tolerates_null() {
        let v = json(&vec!["a".to_owned()]);
        assert_eq!(
            from_json::<Vec<String>>(Some(v)),
            Some(vec!["a".to_owned()])
        );
        assert_eq!(from_json::<Vec<String>>(None), None);
        assert_eq!(from_json::<Vec<String>>(Some(Value::from(3))), None);
    }
}
