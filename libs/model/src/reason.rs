//! Evaluation results and the reasons behind them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why an evaluation could not produce the flag's value; the caller's default is served instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorKind {
    /// No flag with that key in the environment (or it is archived).
    FlagNotFound,
    /// The caller asked for a type the flag does not serve.
    WrongType,
    /// The flag's data could not be used (e.g. prerequisites nested deeper than any valid chain).
    MalformedFlag,
    /// A rollout needed its bucketing attribute (the targeting key by default) and the context had
    /// none, or had one that is neither a string nor an integer.
    TargetingKeyMissing,
    /// The SDK or replica has no data yet.
    NotReady,
}

/// Why an evaluation served what it served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Reason<'a> {
    /// The flag is off.
    Off,
    /// The context's key is in one of the flag's target lists.
    TargetMatch,
    /// A rule matched.
    RuleMatch {
        /// The rule's id.
        rule_id: Cow<'a, str>,
        /// The rule's position in the configuration.
        rule_index: usize,
    },
    /// No target or rule matched; the fallthrough was served.
    Fallthrough,
    /// A prerequisite flag did not serve the required variation; the off variation was served.
    PrerequisiteFailed {
        /// The prerequisite that failed.
        prerequisite_key: Cow<'a, str>,
    },
    /// Evaluation could not produce a value; the caller's default is served.
    Error {
        /// What went wrong.
        error_kind: ErrorKind,
    },
}

impl Reason<'_> {
    /// Detaches the reason from the snapshot it borrows from.
    pub fn into_owned(self) -> Reason<'static> {
        match self {
            Reason::Off => Reason::Off,
            Reason::TargetMatch => Reason::TargetMatch,
            Reason::RuleMatch { rule_id, rule_index } => {
                Reason::RuleMatch { rule_id: Cow::Owned(rule_id.into_owned()), rule_index }
            }
            Reason::Fallthrough => Reason::Fallthrough,
            Reason::PrerequisiteFailed { prerequisite_key } => {
                Reason::PrerequisiteFailed { prerequisite_key: Cow::Owned(prerequisite_key.into_owned()) }
            }
            Reason::Error { error_kind } => Reason::Error { error_kind },
        }
    }

    /// The error, if this reason is one.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            Reason::Error { error_kind } => Some(*error_kind),
            _ => None,
        }
    }
}

/// An owned evaluation result, for sending over the wire or keeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvaluationResult {
    /// The value served; absent when the caller's default applies (errors, or off with no off
    /// variation).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<Value>,
    /// The index of the variation served.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variation: Option<usize>,
    /// Why.
    pub reason: Reason<'static>,
    /// Whether the value was picked by a rollout (a percentage split) rather than fixed.
    #[serde(default)]
    pub in_rollout: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reasons_have_a_stable_json_form() {
        let rule = Reason::RuleMatch { rule_id: Cow::Borrowed("germany"), rule_index: 2 };
        assert_eq!(
            serde_json::to_value(&rule).unwrap(),
            json!({"kind": "RULE_MATCH", "rule_id": "germany", "rule_index": 2})
        );
        let error = Reason::Error { error_kind: ErrorKind::TargetingKeyMissing };
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"kind": "ERROR", "error_kind": "TARGETING_KEY_MISSING"})
        );
        assert_eq!(serde_json::to_value(Reason::Off).unwrap(), json!({"kind": "OFF"}));
        let back: Reason<'static> =
            serde_json::from_value(json!({"kind": "PREREQUISITE_FAILED", "prerequisite_key": "a"})).unwrap();
        assert_eq!(back, Reason::PrerequisiteFailed { prerequisite_key: Cow::Borrowed("a") });
    }
}
