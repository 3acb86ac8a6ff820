//! How the temporality processors (cumulativetodelta, deltatocumulative) tell metric streams
//! apart: attributes hashed by value, independently of their order, as the data model says
//! two attribute sets with the same pairs are the same stream.

use std::hash::{Hash, Hasher};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

fn hash_value(value: Option<&AnyValue>, h: &mut impl Hasher) {
    match value.and_then(|v| v.value.as_ref()) {
        None => 0u8.hash(h),
        Some(any_value::Value::StringValue(s)) => (1u8, s).hash(h),
        Some(any_value::Value::BoolValue(b)) => (2u8, b).hash(h),
        Some(any_value::Value::IntValue(i)) => (3u8, i).hash(h),
        Some(any_value::Value::DoubleValue(d)) => (4u8, d.to_bits()).hash(h),
        Some(any_value::Value::BytesValue(b)) => (5u8, b).hash(h),
        Some(any_value::Value::ArrayValue(a)) => {
            6u8.hash(h);
            for v in &a.values {
                hash_value(Some(v), h);
            }
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            7u8.hash(h);
            hash_attributes(&kv.values, h);
        }
        Some(_) => 8u8.hash(h),
    }
}

/// Attributes hashed independently of their order.
pub fn hash_attributes(attributes: &[KeyValue], h: &mut impl Hasher) {
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for a in sorted {
        a.key.hash(h);
        hash_value(a.value.as_ref(), h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn digest(attrs: &[KeyValue]) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        hash_attributes(attrs, &mut h);
        h.finish()
    }

    #[test]
    fn order_does_not_matter_values_and_types_do() {
        let a = kv("a", any_value::Value::StringValue("1".into()));
        let b = kv("b", any_value::Value::IntValue(1));
        assert_eq!(
            digest(&[a.clone(), b.clone()]),
            digest(&[b.clone(), a.clone()])
        );
        let b_string = kv("b", any_value::Value::StringValue("1".into()));
        assert_ne!(digest(&[a.clone(), b]), digest(&[a, b_string]));
    }
}
