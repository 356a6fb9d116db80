//! Vexil evaluation results → OpenFeature resolution details, reasons and error codes.

use open_feature::provider::ResolutionDetails;
use open_feature::{
    EvaluationError, EvaluationErrorCode, EvaluationReason, EvaluationResult, FlagMetadata, StructValue,
};
use serde_json::Value;
use vexil_model::{ErrorKind, Reason};

use crate::value::{integral, json_to_struct};

/// The error code (`EvaluationErrorCode::General`) of a flag that served no value of its own: it is
/// off, or a prerequisite failed, and it has no off variation, so the caller's default applies.
///
/// OpenFeature's Rust API 0.3 gives a provider no default value to return, so the provider reports
/// this as an error and the application's `unwrap_or(default)` serves the default — which is what
/// Vexil means by it. The message says which of the two happened.
pub const CODE_DEFAULT: &str = "CODE_DEFAULT";

/// OpenFeature's reason for a Vexil reason, and whether a rollout picked the variation (see the
/// table in the crate documentation).
///
/// `Error` reasons map to [`EvaluationReason::Error`]; the provider reports those as errors with
/// [`error_code`] instead.
pub fn reason(reason: &Reason<'_>, in_rollout: bool) -> EvaluationReason {
    match reason {
        Reason::Off => EvaluationReason::Disabled,
        Reason::RuleMatch { .. } | Reason::Fallthrough if in_rollout => EvaluationReason::Split,
        Reason::TargetMatch | Reason::RuleMatch { .. } => EvaluationReason::TargetingMatch,
        Reason::Fallthrough | Reason::PrerequisiteFailed { .. } => EvaluationReason::Default,
        Reason::Error { .. } => EvaluationReason::Error,
    }
}

/// OpenFeature's error code for a Vexil evaluation error.
pub fn error_code(kind: ErrorKind) -> EvaluationErrorCode {
    match kind {
        ErrorKind::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorKind::WrongType => EvaluationErrorCode::TypeMismatch,
        ErrorKind::MalformedFlag => EvaluationErrorCode::ParseError,
        ErrorKind::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
        ErrorKind::NotReady => EvaluationErrorCode::ProviderNotReady,
    }
}

fn error_message(flag_key: &str, kind: ErrorKind) -> String {
    match kind {
        ErrorKind::FlagNotFound => format!("flag {flag_key} was not found"),
        ErrorKind::WrongType => format!("flag {flag_key} does not serve values of the requested type"),
        ErrorKind::MalformedFlag => format!("flag {flag_key} could not be evaluated"),
        ErrorKind::TargetingKeyMissing => format!(
            "flag {flag_key} splits by a context attribute (the targeting key by default) that the context \
             does not have as a string or an integer"
        ),
        ErrorKind::NotReady => "the Vexil client has no flag data yet".to_owned(),
    }
}

/// One evaluation, as the SDK's `EvaluationDetail` gives it.
pub(crate) struct Evaluated<T> {
    pub value: T,
    pub variation: Option<usize>,
    pub variant: Option<String>,
    pub reason: Reason<'static>,
    /// Whether a rollout picked the variation.
    pub in_rollout: bool,
    /// The client's revision when it evaluated, for the flag metadata.
    pub revision: Option<u64>,
}

impl<T> Evaluated<T> {
    /// The resolution details for this evaluation, with the value converted by `convert` (which
    /// answers a message when the value does not have the requested type).
    pub(crate) fn resolve<U>(
        self,
        flag_key: &str,
        convert: impl FnOnce(T) -> Result<U, String>,
    ) -> EvaluationResult<ResolutionDetails<U>> {
        if let Reason::Error { error_kind } = self.reason {
            return Err(error(error_code(error_kind), error_message(flag_key, error_kind)));
        }
        let Some(variation) = self.variation else {
            let why = match &self.reason {
                Reason::PrerequisiteFailed { prerequisite_key } => {
                    format!("prerequisite {prerequisite_key} of flag {flag_key} failed")
                }
                _ => format!("flag {flag_key} is off"),
            };
            return Err(error(
                EvaluationErrorCode::General(CODE_DEFAULT.to_owned()),
                format!("{why} and has no off variation: the caller's default applies"),
            ));
        };
        let value = convert(self.value).map_err(|why| {
            error(EvaluationErrorCode::TypeMismatch, format!("flag {flag_key} served {why}"))
        })?;
        Ok(ResolutionDetails {
            value,
            variant: self.variant.or_else(|| Some(variation.to_string())),
            reason: Some(reason(&self.reason, self.in_rollout)),
            flag_metadata: Some(metadata(&self.reason, variation, self.revision)),
        })
    }
}

/// What the provider adds as flag metadata: the variation's index, Vexil's own reason (and the rule
/// or prerequisite behind it), and the revision of the data it was evaluated on.
fn metadata(reason: &Reason<'_>, variation: usize, revision: Option<u64>) -> FlagMetadata {
    let mut metadata = FlagMetadata::default();
    if let Ok(variation) = i64::try_from(variation) {
        metadata.add_value("variation", variation);
    }
    let kind = match reason {
        Reason::Off => "OFF",
        Reason::TargetMatch => "TARGET_MATCH",
        Reason::RuleMatch { rule_id, rule_index } => {
            metadata.add_value("ruleId", rule_id.as_ref());
            if let Ok(index) = i64::try_from(*rule_index) {
                metadata.add_value("ruleIndex", index);
            }
            "RULE_MATCH"
        }
        Reason::Fallthrough => "FALLTHROUGH",
        Reason::PrerequisiteFailed { prerequisite_key } => {
            metadata.add_value("prerequisiteKey", prerequisite_key.as_ref());
            "PREREQUISITE_FAILED"
        }
        Reason::Error { .. } => "ERROR",
    };
    metadata.add_value("vexilReason", kind);
    if let Some(revision) = revision.and_then(|revision| i64::try_from(revision).ok()) {
        metadata.add_value("revision", revision);
    }
    metadata
}

fn error(code: EvaluationErrorCode, message: String) -> EvaluationError {
    EvaluationError { code, message: Some(message) }
}

/// A number flag's value as an `i64` (integral values only).
pub(crate) fn to_int(value: f64) -> Result<i64, String> {
    integral(value).ok_or_else(|| format!("{value}, which is not an integer"))
}

/// A JSON flag's value as a structure (objects only).
pub(crate) fn to_struct(value: Value) -> Result<StructValue, String> {
    json_to_struct(&value).map_err(|why| format!("a value OpenFeature cannot take as a structure: {why}"))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use open_feature::FlagMetadataValue;
    use serde_json::json;
    use test_case::test_case;

    use super::*;

    fn evaluated<T>(value: T, variation: Option<usize>, reason: Reason<'static>) -> Evaluated<T> {
        let variant = variation.map(|v| format!("v{v}"));
        Evaluated { value, variation, variant, reason, in_rollout: false, revision: Some(7) }
    }

    #[test_case(Reason::Off, false, EvaluationReason::Disabled)]
    #[test_case(Reason::TargetMatch, false, EvaluationReason::TargetingMatch)]
    #[test_case(Reason::RuleMatch { rule_id: Cow::Borrowed("de"), rule_index: 0 }, false, EvaluationReason::TargetingMatch)]
    #[test_case(Reason::RuleMatch { rule_id: Cow::Borrowed("de"), rule_index: 0 }, true, EvaluationReason::Split)]
    #[test_case(Reason::Fallthrough, false, EvaluationReason::Default)]
    #[test_case(Reason::Fallthrough, true, EvaluationReason::Split)]
    #[test_case(Reason::PrerequisiteFailed { prerequisite_key: Cow::Borrowed("p") }, false, EvaluationReason::Default)]
    #[test_case(Reason::Error { error_kind: ErrorKind::WrongType }, false, EvaluationReason::Error)]
    fn vexil_reasons_map_to_openfeature_reasons(
        vexil: Reason<'static>,
        in_rollout: bool,
        expected: EvaluationReason,
    ) {
        assert_eq!(reason(&vexil, in_rollout), expected);
    }

    #[test_case(ErrorKind::FlagNotFound, "FLAG_NOT_FOUND")]
    #[test_case(ErrorKind::WrongType, "TYPE_MISMATCH")]
    #[test_case(ErrorKind::MalformedFlag, "PARSE_ERROR")]
    #[test_case(ErrorKind::TargetingKeyMissing, "TARGETING_KEY_MISSING")]
    #[test_case(ErrorKind::NotReady, "PROVIDER_NOT_READY")]
    fn vexil_errors_map_to_openfeature_error_codes(kind: ErrorKind, expected: &str) {
        assert_eq!(error_code(kind).to_string(), expected);
        let result = evaluated(false, None, Reason::Error { error_kind: kind }).resolve("f", Ok);
        assert_eq!(result.unwrap_err().code.to_string(), expected);
    }

    #[test]
    fn a_served_value_carries_its_variant_reason_and_metadata() {
        let rule = Reason::RuleMatch { rule_id: Cow::Borrowed("germany"), rule_index: 2 };

        let details = evaluated(true, Some(0), rule).resolve("f", Ok).unwrap();

        assert!(details.value);
        assert_eq!(details.variant.as_deref(), Some("v0"));
        assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
        let metadata = details.flag_metadata.unwrap().values;
        assert_eq!(metadata["ruleId"], FlagMetadataValue::String("germany".into()));
        assert_eq!(metadata["ruleIndex"], FlagMetadataValue::Int(2));
        assert_eq!(metadata["variation"], FlagMetadataValue::Int(0));
        assert_eq!(metadata["vexilReason"], FlagMetadataValue::String("RULE_MATCH".into()));
        assert_eq!(metadata["revision"], FlagMetadataValue::Int(7));
    }

    #[test]
    fn a_variation_without_a_name_is_named_by_its_index() {
        let mut unnamed = evaluated("blue".to_owned(), Some(3), Reason::Fallthrough);
        unnamed.variant = None;

        assert_eq!(unnamed.resolve("f", Ok).unwrap().variant.as_deref(), Some("3"));
    }

    #[test]
    fn an_off_flag_without_an_off_variation_defers_to_the_callers_default() {
        let error = evaluated(false, None, Reason::Off).resolve("f", Ok).unwrap_err();

        assert_eq!(error.code, EvaluationErrorCode::General(CODE_DEFAULT.into()));
        assert!(error.message.unwrap().contains("flag f is off"));
        let prerequisite = Reason::PrerequisiteFailed { prerequisite_key: Cow::Borrowed("base") };
        let error = evaluated(false, None, prerequisite).resolve("f", Ok).unwrap_err();
        assert!(error.message.unwrap().contains("prerequisite base"));
    }

    #[test]
    fn an_off_flag_with_an_off_variation_is_disabled() {
        let details = evaluated(false, Some(1), Reason::Off).resolve("f", Ok).unwrap();

        assert!(!details.value);
        assert_eq!(details.reason, Some(EvaluationReason::Disabled));
    }

    #[test]
    fn ints_come_from_integral_numbers_only() {
        assert_eq!(evaluated(42.0, Some(0), Reason::Fallthrough).resolve("n", to_int).unwrap().value, 42);
        let error = evaluated(2.5, Some(0), Reason::Fallthrough).resolve("n", to_int).unwrap_err();
        assert_eq!(error.code, EvaluationErrorCode::TypeMismatch);
        assert!(error.message.unwrap().contains("2.5"));
    }

    #[test]
    fn structures_come_from_json_objects_only() {
        let object = evaluated(json!({"a": 1}), Some(0), Reason::Fallthrough).resolve("j", to_struct);
        assert_eq!(object.unwrap().value, StructValue::default().with_field("a", 1));
        let array = evaluated(json!([1]), Some(0), Reason::Fallthrough).resolve("j", to_struct);
        assert_eq!(array.unwrap_err().code, EvaluationErrorCode::TypeMismatch);
    }
}
