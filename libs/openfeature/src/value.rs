//! Vexil's JSON flag values → OpenFeature's structure values.

use open_feature::{StructValue, Value as FeatureValue};
use serde_json::Value;

use crate::context::MAX_DEPTH;

/// Why a JSON value has no OpenFeature form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unrepresentable {
    /// The value is not a JSON object (a structure flag must serve one).
    NotAnObject,
    /// An array holds `null`, which OpenFeature values cannot express.
    NullInArray,
    /// Nested deeper than the conversion follows.
    TooDeep,
}

impl std::fmt::Display for Unrepresentable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unrepresentable::NotAnObject => "the value is not a JSON object",
            Unrepresentable::NullInArray => {
                "an array in the value holds null, which OpenFeature cannot express"
            }
            Unrepresentable::TooDeep => "the value is nested too deeply",
        })
    }
}

/// A JSON object as an OpenFeature structure.
///
/// OpenFeature values have no `null`: an object member that is `null` is left out (absent and `null`
/// mean the same to most readers), a `null` inside an array is an error (leaving it out would shift
/// the positions after it). Integers that fit an `i64` become `Int`, every other number `Float`.
pub(crate) fn json_to_struct(value: &Value) -> Result<StructValue, Unrepresentable> {
    match value {
        Value::Object(_) => match json_to_value(value, 0)? {
            Some(FeatureValue::Struct(structure)) => Ok(structure),
            _ => Err(Unrepresentable::NotAnObject),
        },
        _ => Err(Unrepresentable::NotAnObject),
    }
}

/// `Ok(None)` for `null`.
fn json_to_value(value: &Value, depth: usize) -> Result<Option<FeatureValue>, Unrepresentable> {
    if depth > MAX_DEPTH {
        return Err(Unrepresentable::TooDeep);
    }
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(value) => FeatureValue::Bool(*value),
        Value::Number(number) => match number.as_i64() {
            Some(int) => FeatureValue::Int(int),
            // Without serde_json's arbitrary precision every number is an i64, a u64 or an f64.
            None => FeatureValue::Float(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => FeatureValue::String(text.clone()),
        Value::Array(items) => FeatureValue::Array(
            items
                .iter()
                .map(|item| json_to_value(item, depth + 1)?.ok_or(Unrepresentable::NullInArray))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(members) => {
            let mut structure = StructValue::default();
            for (name, member) in members {
                if let Some(member) = json_to_value(member, depth + 1)? {
                    structure.add_field(name.clone(), member);
                }
            }
            FeatureValue::Struct(structure)
        }
    }))
}

/// A number flag's value as an integer, when it is one exactly.
pub(crate) fn integral(value: f64) -> Option<i64> {
    // 2^63 is exactly representable; every f64 below it (and at or above -2^63) converts exactly when
    // it has no fractional part.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (value.is_finite() && value.fract() == 0.0 && (-LIMIT..LIMIT).contains(&value)).then_some(value as i64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use test_case::test_case;

    use super::*;

    #[test]
    fn an_object_becomes_a_structure_with_typed_fields() {
        let value = json!({
            "title": "Hi", "count": 3, "ratio": 0.25, "big": u64::MAX, "on": true,
            "list": [1, "two", {"three": 3}], "nested": {"deeper": {"x": -1}}
        });

        let structure = json_to_struct(&value).unwrap();

        let expected = StructValue::default()
            .with_field("title", "Hi")
            .with_field("count", 3)
            .with_field("ratio", 0.25)
            .with_field("big", u64::MAX as f64)
            .with_field("on", true)
            .with_field(
                "list",
                FeatureValue::Array(vec![
                    1.into(),
                    "two".into(),
                    StructValue::default().with_field("three", 3).into(),
                ]),
            )
            .with_field(
                "nested",
                StructValue::default().with_field("deeper", StructValue::default().with_field("x", -1)),
            );
        assert_eq!(structure, expected);
    }

    #[test]
    fn null_members_are_left_out() {
        assert_eq!(
            json_to_struct(&json!({"a": null, "b": 1})).unwrap(),
            StructValue::default().with_field("b", 1)
        );
    }

    #[test_case(json!([1, 2]), Unrepresentable::NotAnObject ; "an array")]
    #[test_case(json!("text"), Unrepresentable::NotAnObject ; "a string")]
    #[test_case(json!(null), Unrepresentable::NotAnObject ; "null")]
    #[test_case(json!({"a": [1, null]}), Unrepresentable::NullInArray ; "null in an array")]
    fn values_without_a_structure_form_are_refused(value: Value, why: Unrepresentable) {
        assert_eq!(json_to_struct(&value), Err(why));
    }

    #[test]
    fn values_nested_too_deeply_are_refused() {
        let mut value = json!({});
        for _ in 0..(MAX_DEPTH + 2) {
            value = json!({"a": value});
        }
        assert_eq!(json_to_struct(&value), Err(Unrepresentable::TooDeep));
    }

    #[test_case(3.0, Some(3))]
    #[test_case(-0.0, Some(0))]
    #[test_case(-9_223_372_036_854_775_808.0, Some(i64::MIN))]
    #[test_case(9_223_372_036_854_775_808.0, None ; "two to the 63 does not fit")]
    #[test_case(2.5, None)]
    #[test_case(f64::NAN, None)]
    #[test_case(f64::INFINITY, None)]
    fn only_integral_numbers_in_range_are_integers(value: f64, expected: Option<i64>) {
        assert_eq!(integral(value), expected);
    }
}
