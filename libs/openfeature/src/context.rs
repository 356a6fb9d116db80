//! OpenFeature evaluation contexts → Vexil contexts.

use std::any::Any;
use std::collections::HashMap;

use open_feature::{EvaluationContext, EvaluationContextFieldValue, StructValue, Value as FeatureValue};
use serde_json::{Map, Number, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vexil_model::Context;

/// How deep nested structures are followed; deeper parts are left out (a context is built by the
/// application, but a recursive conversion must not be able to exhaust the stack).
pub(crate) const MAX_DEPTH: usize = 64;

/// Vexil's name for the targeting key in a context's JSON form.
const TARGETING_KEY: &str = "targetingKey";

/// Converts an OpenFeature evaluation context into the Vexil context it stands for.
///
/// - `targeting_key` becomes the targeting key. A custom field called `targetingKey` (what the key is
///   called in Vexil's JSON) is used when the context has no targeting key and it is a string; it is
///   never an ordinary attribute.
/// - Booleans, integers, strings and floats become JSON values; a float that JSON cannot hold (NaN,
///   infinite) is left out, so clauses on it see a missing attribute.
/// - Date-times become RFC 3339 strings (what the `before` / `after` operators compare), or epoch
///   milliseconds for a year RFC 3339 cannot write.
/// - Structures (`EvaluationContextFieldValue::Struct`, a type-erased `Arc<dyn Any>`) become JSON when
///   they hold one of: `serde_json::Value`, `serde_json::Map<String, Value>`, `open_feature::Value`,
///   `open_feature::StructValue`, `Vec<open_feature::Value>`, `Vec<serde_json::Value>`,
///   `HashMap<String, EvaluationContextFieldValue>`, `Vec<EvaluationContextFieldValue>`, `String`,
///   `&'static str`, `bool`, `i64`, `i32`, `u32` or `f64`. Anything else cannot be seen into and is
///   left out, as is anything nested deeper than 64 levels.
pub fn to_vexil_context(context: &EvaluationContext) -> Context {
    let mut converted = Context { targeting_key: context.targeting_key.clone(), ..Context::default() };
    for (name, field) in &context.custom_fields {
        if name == TARGETING_KEY {
            if converted.targeting_key.is_none()
                && let Some(key) = field.as_str()
            {
                converted.targeting_key = Some(key.to_owned());
            }
            continue;
        }
        if let Some(value) = field_to_json(field, 0) {
            converted.attributes.insert(name.clone(), value);
        }
    }
    converted
}

/// One custom field as JSON, or `None` when it has no JSON form.
fn field_to_json(field: &EvaluationContextFieldValue, depth: usize) -> Option<Value> {
    match field {
        EvaluationContextFieldValue::Bool(value) => Some(Value::Bool(*value)),
        EvaluationContextFieldValue::Int(value) => Some(Value::from(*value)),
        EvaluationContextFieldValue::Float(value) => float(*value),
        EvaluationContextFieldValue::String(value) => Some(Value::String(value.clone())),
        EvaluationContextFieldValue::DateTime(value) => Some(date_time(*value)),
        EvaluationContextFieldValue::Struct(value) => any_to_json(value.as_ref(), depth + 1),
    }
}

fn float(value: f64) -> Option<Value> {
    Number::from_f64(value).map(Value::Number)
}

fn date_time(value: OffsetDateTime) -> Value {
    match value.format(&Rfc3339) {
        Ok(text) => Value::String(text),
        // Years before 0 or after 9999: epoch milliseconds, the operators' other accepted form.
        Err(_) => {
            let millis = value.unix_timestamp_nanos() / 1_000_000;
            i64::try_from(millis).map(Value::from).unwrap_or(Value::Null)
        }
    }
}

/// The JSON form of a type-erased structure, for the types listed on [`to_vexil_context`].
fn any_to_json(value: &(dyn Any + Send + Sync), depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    if let Some(json) = value.downcast_ref::<Value>() {
        return bounded_json(json, depth);
    }
    if let Some(map) = value.downcast_ref::<Map<String, Value>>() {
        return object(map.iter().filter_map(|(k, v)| Some((k.clone(), bounded_json(v, depth + 1)?))));
    }
    if let Some(value) = value.downcast_ref::<FeatureValue>() {
        return feature_value_to_json(value, depth);
    }
    if let Some(value) = value.downcast_ref::<StructValue>() {
        return struct_to_json(value, depth);
    }
    if let Some(items) = value.downcast_ref::<Vec<FeatureValue>>() {
        return array(items.iter().map(|item| feature_value_to_json(item, depth + 1)));
    }
    if let Some(items) = value.downcast_ref::<Vec<Value>>() {
        return array(items.iter().map(|item| bounded_json(item, depth + 1)));
    }
    if let Some(fields) = value.downcast_ref::<HashMap<String, EvaluationContextFieldValue>>() {
        return object(fields.iter().filter_map(|(k, v)| Some((k.clone(), field_to_json(v, depth + 1)?))));
    }
    if let Some(items) = value.downcast_ref::<Vec<EvaluationContextFieldValue>>() {
        return array(items.iter().map(|item| field_to_json(item, depth + 1)));
    }
    if let Some(text) = value.downcast_ref::<String>() {
        return Some(Value::String(text.clone()));
    }
    if let Some(text) = value.downcast_ref::<&'static str>() {
        return Some(Value::String((*text).to_owned()));
    }
    if let Some(value) = value.downcast_ref::<bool>() {
        return Some(Value::Bool(*value));
    }
    if let Some(value) = value.downcast_ref::<i64>() {
        return Some(Value::from(*value));
    }
    if let Some(value) = value.downcast_ref::<i32>() {
        return Some(Value::from(*value));
    }
    if let Some(value) = value.downcast_ref::<u32>() {
        return Some(Value::from(*value));
    }
    if let Some(value) = value.downcast_ref::<f64>() {
        return float(*value);
    }
    None
}

fn feature_value_to_json(value: &FeatureValue, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    match value {
        FeatureValue::Bool(value) => Some(Value::Bool(*value)),
        FeatureValue::Int(value) => Some(Value::from(*value)),
        FeatureValue::Float(value) => float(*value),
        FeatureValue::String(value) => Some(Value::String(value.clone())),
        FeatureValue::Array(items) => array(items.iter().map(|item| feature_value_to_json(item, depth + 1))),
        FeatureValue::Struct(value) => struct_to_json(value, depth),
    }
}

fn struct_to_json(value: &StructValue, depth: usize) -> Option<Value> {
    object(value.fields.iter().filter_map(|(k, v)| Some((k.clone(), feature_value_to_json(v, depth + 1)?))))
}

/// A copy of `value`, or `None` when it nests deeper than [`MAX_DEPTH`].
fn bounded_json(value: &Value, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    match value {
        Value::Array(items) => array(items.iter().map(|item| bounded_json(item, depth + 1))),
        Value::Object(map) => {
            object(map.iter().filter_map(|(k, v)| Some((k.clone(), bounded_json(v, depth + 1)?))))
        }
        scalar => Some(scalar.clone()),
    }
}

fn object(fields: impl Iterator<Item = (String, Value)>) -> Option<Value> {
    Some(Value::Object(fields.collect()))
}

/// An array keeps its positions: an element with no JSON form becomes `null`.
fn array(items: impl Iterator<Item = Option<Value>>) -> Option<Value> {
    Some(Value::Array(items.map(|item| item.unwrap_or(Value::Null)).collect()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use time::{Date, Month};

    use super::*;

    #[test]
    fn the_targeting_key_and_scalar_fields_carry_over() {
        let context = EvaluationContext::default()
            .with_targeting_key("user-1")
            .with_custom_field("country", "DE")
            .with_custom_field("age", 42)
            .with_custom_field("score", 0.5)
            .with_custom_field("beta", true);

        let converted = to_vexil_context(&context);

        assert_eq!(
            serde_json::to_value(&converted).unwrap(),
            json!({"targetingKey": "user-1", "country": "DE", "age": 42, "score": 0.5, "beta": true})
        );
    }

    #[test]
    fn a_targeting_key_custom_field_is_the_key_only_when_there_is_no_other() {
        let only_field = EvaluationContext::default().with_custom_field("targetingKey", "from-field");
        let both = EvaluationContext::default()
            .with_targeting_key("from-context")
            .with_custom_field("targetingKey", "from-field");

        assert_eq!(to_vexil_context(&only_field).targeting_key(), Some("from-field"));
        let converted = to_vexil_context(&both);
        assert_eq!(converted.targeting_key(), Some("from-context"));
        assert_eq!(serde_json::to_value(&converted).unwrap(), json!({"targetingKey": "from-context"}));
    }

    #[test]
    fn floats_json_cannot_hold_are_left_out() {
        let context = EvaluationContext::default()
            .with_custom_field("nan", f64::NAN)
            .with_custom_field("inf", f64::INFINITY)
            .with_custom_field("fine", 1.5);

        assert_eq!(serde_json::to_value(to_vexil_context(&context)).unwrap(), json!({"fine": 1.5}));
    }

    #[test]
    fn date_times_become_rfc3339_or_epoch_milliseconds() {
        let signed_up = Date::from_calendar_date(2025, Month::March, 1).unwrap().with_hms(12, 30, 0).unwrap();
        // RFC 3339 has four-digit years only.
        let before_year_zero = Date::from_calendar_date(-1, Month::January, 1).unwrap().midnight();
        let context = EvaluationContext::default()
            .with_custom_field("signed_up", signed_up.assume_utc())
            .with_custom_field("ancient", before_year_zero.assume_utc());

        let converted = to_vexil_context(&context);

        assert_eq!(converted.attribute(["signed_up"]), Some(&json!("2025-03-01T12:30:00Z")));
        let millis = before_year_zero.assume_utc().unix_timestamp() * 1000;
        assert_eq!(converted.attribute(["ancient"]), Some(&json!(millis)));
    }

    #[test]
    fn nested_structures_and_lists_become_json() {
        let app = StructValue::default()
            .with_field("version", "2.1")
            .with_field("build", 7)
            .with_field("channels", vec!["beta", "stable"]);
        let nested: HashMap<String, EvaluationContextFieldValue> =
            HashMap::from([("team".to_owned(), EvaluationContextFieldValue::from("core"))]);
        let context = EvaluationContext::default()
            .with_custom_field("app", EvaluationContextFieldValue::new_struct(app))
            .with_custom_field("org", EvaluationContextFieldValue::new_struct(nested))
            .with_custom_field(
                "json",
                EvaluationContextFieldValue::new_struct(json!({"a": [1, {"b": null}]})),
            )
            .with_custom_field(
                "tags",
                EvaluationContextFieldValue::new_struct(vec![FeatureValue::from("x"), FeatureValue::from(2)]),
            )
            .with_custom_field("plan", Arc::new(String::from("pro")));

        let converted = to_vexil_context(&context);

        assert_eq!(
            serde_json::to_value(&converted).unwrap(),
            json!({
                "app": {"version": "2.1", "build": 7, "channels": ["beta", "stable"]},
                "org": {"team": "core"},
                "json": {"a": [1, {"b": null}]},
                "tags": ["x", 2],
                "plan": "pro"
            })
        );
        assert_eq!(converted.attribute(["app", "version"]), Some(&json!("2.1")));
    }

    #[test]
    fn structures_of_unknown_types_are_left_out() {
        #[derive(Debug)]
        struct Opaque;
        let context = EvaluationContext::default()
            .with_custom_field("opaque", EvaluationContextFieldValue::new_struct(Opaque))
            .with_custom_field("kept", "yes");

        assert_eq!(serde_json::to_value(to_vexil_context(&context)).unwrap(), json!({"kept": "yes"}));
    }

    #[test]
    fn structures_nested_too_deeply_are_cut_off_instead_of_overflowing_the_stack() {
        let mut value = FeatureValue::from("leaf");
        for _ in 0..10_000 {
            value = FeatureValue::Array(vec![value]);
        }
        let context = EvaluationContext::default().with_custom_field("deep", Arc::new(value));

        let converted = to_vexil_context(&context);

        let mut depth = 0;
        let mut current = converted.attribute(["deep"]).expect("the top levels are kept");
        while let Some(inner) = current.as_array().and_then(|items| items.first()) {
            depth += 1;
            current = inner;
        }
        assert!(depth <= MAX_DEPTH, "kept {depth} levels");
        assert_eq!(current, &Value::Null);
        // Dropping a 10 000-deep value is recursive too; leak it rather than test the test's stack.
        std::mem::forget(context);
    }
}
