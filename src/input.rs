//! The first checks on untrusted input, below every part that takes some: the [`Invalid`] error
//! that names the field at fault, and [`parse_json`], which reads a body as one JSON document
//! with no key twice.

use serde_json::Value;

/// Input that is not valid: which field, and what is wrong with it (a tap, a stop list, a
/// command from the broker).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The field (`job_id`, `status`, `items[2].qty`, `body`, ...).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// An [`Invalid`] for `field`.
pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { field: field.into(), message: message.into() }
}

/// Reads a request body as one JSON document: UTF-8, valid JSON, and no object with the same
/// key twice (a parser that keeps the last one would let a body say two things).
pub fn parse_json(body: &[u8]) -> Result<Value, Invalid> {
    let text = std::str::from_utf8(body).map_err(|_| invalid("body", "is not UTF-8"))?;
    let duplicate = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = serde::de::DeserializeSeed::deserialize(strict::Strict(&duplicate), &mut de).and_then(|v| {
        de.end()?;
        Ok(v)
    });
    match (parsed, duplicate.into_inner()) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(key)) => Err(invalid(key, "appears twice in the body; send each field once")),
        (Err(e), None) => Err(invalid("body", format!("is not valid JSON: {e}"))),
    }
}

mod strict {
    //! A `serde_json::Value` that refuses duplicate keys.
    use std::cell::RefCell;
    use std::fmt;

    use serde::de::{DeserializeSeed, Error, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    /// Where the first duplicate key is recorded.
    pub struct Strict<'a>(pub &'a RefCell<Option<String>>);

    impl<'de> DeserializeSeed<'de> for Strict<'_> {
        type Value = Value;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(Strict(self.0))? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    let message = format!("duplicate key {key:?}");
                    *self.0.borrow_mut() = Some(key);
                    return Err(A::Error::custom(message));
                }
                let value = map.next_value_seed(Strict(self.0))?;
                out.insert(key, value);
            }
            Ok(Value::Object(out))
        }
    }
}
