//! Attribute values: from YAML into OTLP `AnyValue`, and the text form used for matching,
//! hashing and `convert` to string.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use sluice_pipeline::proto::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};

/// A `value:` as written in the config: any YAML scalar, list or map, typed the way the YAML
/// core schema reads it (`42` is an int, `"42"` a string).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigValue(pub AnyValue);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(AnyValueVisitor)
            .map(ConfigValue)
    }
}

struct AnyValueVisitor;

fn any(value: any_value::Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

impl<'de> Visitor<'de> for AnyValueVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean, list or map")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::BoolValue(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::IntValue(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AnyValue, E> {
        // OTLP integers are signed 64-bit; silently turning a larger one into a double would
        // lose digits the user wrote.
        let v = i64::try_from(v).map_err(|_| {
            E::custom(format!(
                "`{v}` is too large for an attribute integer (at most {})",
                i64::MAX
            ))
        })?;
        Ok(any(any_value::Value::IntValue(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::DoubleValue(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::StringValue(v.to_string())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        // Only reachable inside a list or map (`value: ~` itself means "no value"): OTLP's
        // empty value is the closest meaning.
        Ok(AnyValue { value: None })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some(ConfigValue(v)) = seq.next_element()? {
            values.push(v);
        }
        Ok(any(any_value::Value::ArrayValue(ArrayValue { values })))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some((key, ConfigValue(v))) = map.next_entry::<String, ConfigValue>()? {
            values.push(KeyValue {
                key,
                value: Some(v),
                ..Default::default()
            });
        }
        Ok(any(any_value::Value::KvlistValue(KeyValueList { values })))
    }
}

pub fn string_value(s: impl Into<String>) -> AnyValue {
    any(any_value::Value::StringValue(s.into()))
}

/// The value as text: strings as they are, numbers and booleans as written in YAML, bytes as
/// base64 and lists/maps as JSON (as the OTel Collector's `AsString` does).
pub fn text(value: Option<&AnyValue>) -> String {
    use any_value::Value as V;
    match value.and_then(|v| v.value.as_ref()) {
        Some(V::StringValue(s)) => s.clone(),
        Some(V::BoolValue(b)) => b.to_string(),
        Some(V::IntValue(i)) => i.to_string(),
        Some(V::DoubleValue(d)) => double_text(*d),
        Some(V::BytesValue(b)) => base64(b),
        Some(V::ArrayValue(_) | V::KvlistValue(_)) => {
            let mut out = String::new();
            if let Some(v) = value {
                write_json(v, &mut out);
            }
            out
        }
        // A string-table reference means nothing outside profiles (the OTLP spec says to
        // treat it as absent).
        Some(V::StringValueStrindex(_)) | None => String::new(),
    }
}

/// Borrowed text when the value already is a string, to avoid a copy on the matching path.
pub fn text_cow(value: Option<&AnyValue>) -> std::borrow::Cow<'_, str> {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => std::borrow::Cow::Borrowed(s.as_str()),
        _ => std::borrow::Cow::Owned(text(value)),
    }
}

fn double_text(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Rust's shortest round-trip form: `1.5`, `3` for 3.0, no exponent.
        d.to_string()
    }
}

fn write_json(value: &AnyValue, out: &mut String) {
    use any_value::Value as V;
    match &value.value {
        Some(V::StringValue(s)) => json_string(s, out),
        Some(V::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(V::IntValue(i)) => out.push_str(&i.to_string()),
        Some(V::DoubleValue(d)) if d.is_finite() => out.push_str(&d.to_string()),
        // JSON has no NaN or infinity; a string keeps the information.
        Some(V::DoubleValue(d)) => json_string(&double_text(*d), out),
        Some(V::BytesValue(b)) => json_string(&base64(b), out),
        Some(V::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(v, out);
            }
            out.push(']');
        }
        Some(V::KvlistValue(kv)) => {
            out.push('{');
            for (i, entry) in kv.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(&entry.key, out);
                out.push(':');
                match &entry.value {
                    Some(v) => write_json(v, out),
                    None => out.push_str("null"),
                }
            }
            out.push('}');
        }
        Some(V::StringValueStrindex(_)) | None => out.push_str("null"),
    }
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes `hash` digests, as the OTel Collector feeds them to SHA-256: a string's bytes, one
/// byte 1/0 for a bool, the 8 little-endian bytes of an int or of a double's bits. `None` for
/// every other value (bytes, lists, maps, empty) and the empty string, which become `""`.
pub fn hash_input(value: Option<&AnyValue>) -> Option<Vec<u8>> {
    use any_value::Value as V;
    match value.and_then(|v| v.value.as_ref())? {
        V::StringValue(s) if s.is_empty() => None,
        V::StringValue(s) => Some(s.as_bytes().to_vec()),
        V::BoolValue(b) => Some(vec![u8::from(*b)]),
        V::IntValue(i) => Some(i.to_le_bytes().to_vec()),
        V::DoubleValue(d) => Some(d.to_bits().to_le_bytes().to_vec()),
        _ => None,
    }
}

/// The target type of `convert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvertedType {
    Int,
    Double,
    String,
}

/// `value` converted to `to`, or `None` when it cannot be (the attribute is then left as it
/// is, as the OTel Collector does, rather than dropping data).
pub fn convert(value: Option<&AnyValue>, to: ConvertedType) -> Option<AnyValue> {
    use any_value::Value as V;
    let v = value.and_then(|v| v.value.as_ref())?;
    let out = match (to, v) {
        (ConvertedType::Int, V::IntValue(_))
        | (ConvertedType::Double, V::DoubleValue(_))
        | (ConvertedType::String, V::StringValue(_)) => return None,
        (ConvertedType::Int, V::StringValue(s)) => V::IntValue(s.trim().parse::<i64>().ok()?),
        (ConvertedType::Int, V::BoolValue(b)) => V::IntValue(i64::from(*b)),
        (ConvertedType::Int, V::DoubleValue(d)) => {
            // `as` saturates; an out-of-range or NaN double has no integer meaning.
            if !d.is_finite() || *d < i64::MIN as f64 || *d >= i64::MAX as f64 {
                return None;
            }
            V::IntValue(d.trunc() as i64)
        }
        (ConvertedType::Double, V::StringValue(s)) => V::DoubleValue(s.trim().parse::<f64>().ok()?),
        (ConvertedType::Double, V::IntValue(i)) => V::DoubleValue(*i as f64),
        (ConvertedType::Double, V::BoolValue(b)) => V::DoubleValue(if *b { 1.0 } else { 0.0 }),
        (ConvertedType::String, V::StringValueStrindex(_)) => return None,
        (ConvertedType::String, _) => V::StringValue(text(value)),
        _ => return None,
    };
    Some(any(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn text_form_of_every_type() {
        use any_value::Value as V;
        let t = |v: V| text(Some(&any(v)));
        assert_eq!(t(V::StringValue("a".into())), "a");
        assert_eq!(t(V::IntValue(-3)), "-3");
        assert_eq!(t(V::DoubleValue(3.0)), "3");
        assert_eq!(t(V::DoubleValue(1.5)), "1.5");
        assert_eq!(t(V::BoolValue(true)), "true");
        assert_eq!(t(V::BytesValue(vec![1, 2])), "AQI=");
        let list = V::ArrayValue(ArrayValue {
            values: vec![
                string_value("x\"y"),
                any(V::IntValue(1)),
                any(V::DoubleValue(f64::NAN)),
            ],
        });
        assert_eq!(t(list), r#"["x\"y",1,"NaN"]"#);
        let map = V::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "k".into(),
                value: Some(any(V::BoolValue(false))),
                ..Default::default()
            }],
        });
        assert_eq!(t(map), r#"{"k":false}"#);
        assert_eq!(text(None), "");
    }
}
