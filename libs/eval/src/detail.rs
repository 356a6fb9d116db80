//! The result of an evaluation, borrowed from the snapshot (no allocation), and its typed views.

use std::borrow::Cow;

use serde_json::Value;
use vexil_model::{ErrorKind, EvaluationResult, Flag, FlagKind, Reason};

use crate::compile::CompiledFlag;

/// What a flag served, and why. Borrows from the compiled snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail<'a> {
    /// The value served; `None` means the caller's default applies (an error, or off with no off
    /// variation).
    pub value: Option<&'a Value>,
    /// The index of the variation served.
    pub variation: Option<usize>,
    /// Why.
    pub reason: Reason<'a>,
    /// Whether a rollout (percentage split) picked the variation.
    pub in_rollout: bool,
    /// The flag evaluated, when it exists.
    pub flag: Option<&'a Flag>,
}

impl<'a> Detail<'a> {
    pub(crate) fn served(
        flag: &'a CompiledFlag,
        variation: usize,
        reason: Reason<'a>,
        in_rollout: bool,
    ) -> Self {
        let source = flag.source.flag();
        Detail {
            value: source.variations.get(variation).map(|v| &v.value),
            variation: Some(variation),
            reason,
            in_rollout,
            flag: Some(source),
        }
    }

    /// A result that serves the caller's default because of `kind`.
    pub fn error(kind: ErrorKind, flag: Option<&'a CompiledFlag>) -> Self {
        Detail {
            value: None,
            variation: None,
            reason: Reason::Error { error_kind: kind },
            in_rollout: false,
            flag: flag.map(|f| f.source.flag()),
        }
    }

    /// The OpenFeature `variant` of the served variation: its name, or its index.
    pub fn variant(&self) -> Option<Cow<'a, str>> {
        Some(self.flag?.variant_name(self.variation?))
    }

    /// Detaches the result from the snapshot.
    pub fn to_result(&self) -> EvaluationResult {
        EvaluationResult {
            value: self.value.cloned(),
            variation: self.variation,
            reason: self.reason.clone().into_owned(),
            in_rollout: self.in_rollout,
        }
    }

    /// The value as a boolean, or `default` with `WrongType` if the flag is not boolean.
    pub fn into_bool(self, default: bool) -> TypedDetail<'a, bool> {
        self.typed(FlagKind::Boolean, default, Value::as_bool)
    }

    /// The value as a string, or `default` with `WrongType` if the flag is not a string flag.
    pub fn into_str<'r>(self, default: &'r str) -> TypedDetail<'r, &'r str>
    where
        'a: 'r,
    {
        self.typed(FlagKind::String, default, Value::as_str)
    }

    /// The value as a number, or `default` with `WrongType` if the flag is not a number flag.
    pub fn into_number(self, default: f64) -> TypedDetail<'a, f64> {
        self.typed(FlagKind::Number, default, Value::as_f64)
    }

    /// The value as JSON, or `default` with `WrongType` if the flag is not a JSON flag.
    pub fn into_json<'r>(self, default: &'r Value) -> TypedDetail<'r, &'r Value>
    where
        'a: 'r,
    {
        self.typed(FlagKind::Json, default, Some)
    }

    fn typed<'r, T: Copy>(
        self,
        kind: FlagKind,
        default: T,
        read: impl FnOnce(&'r Value) -> Option<T>,
    ) -> TypedDetail<'r, T>
    where
        'a: 'r,
    {
        let fallback =
            |reason| TypedDetail { value: default_of(&default), variation: None, reason, in_rollout: false };
        match self.flag {
            Some(flag) if flag.kind != kind => {
                return fallback(Reason::Error { error_kind: ErrorKind::WrongType });
            }
            _ => {}
        }
        match self.value.and_then(read) {
            Some(value) => TypedDetail {
                value,
                variation: self.variation,
                reason: self.reason,
                in_rollout: self.in_rollout,
            },
            None if self.value.is_some() => fallback(Reason::Error { error_kind: ErrorKind::WrongType }),
            None => TypedDetail {
                value: default,
                variation: self.variation,
                reason: self.reason,
                in_rollout: false,
            },
        }
    }
}

// `T` is Copy for every accessor (bool, f64, &str, &Value); this keeps `typed` generic without a bound
// on the closure's result.
fn default_of<T: Copy>(default: &T) -> T {
    *default
}

/// A typed evaluation result: the value (or the caller's default), the variation and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedDetail<'a, T> {
    /// The flag's value, or the caller's default.
    pub value: T,
    /// The variation served, when the flag's value was used.
    pub variation: Option<usize>,
    /// Why.
    pub reason: Reason<'a>,
    /// Whether a rollout (percentage split) picked the variation; `false` when the caller's default is
    /// served.
    pub in_rollout: bool,
}
