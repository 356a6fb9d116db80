//! What the routes answer: `/v1/evaluate` results and OFREP documents, built from evaluation
//! [`Detail`]s. Request and response types live here, apart from the domain types.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use vexil_eval::{CompiledFlag, Detail};
use vexil_keys::KeyKind;
use vexil_model::{Context, ErrorKind, Reason};

/// `POST /v1/evaluate`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// The OpenFeature context: `{"targetingKey": "user-1", ...attributes}`; `{}` when left out.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: Context,
    /// Only these flags; every flag the key may see when left out.
    #[serde(default)]
    pub flags: Option<Vec<String>>,
}

/// `POST /v1/evaluate`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluateResponse<'a> {
    /// The environment's revision the values come from.
    pub revision: u64,
    /// Flag key → result, in the environment's order (or the order listed).
    #[schema(value_type = std::collections::BTreeMap<String, FlagResult>)]
    pub flags: FlagResults<'a>,
}

/// Results keyed by flag, serialised as a JSON object in order.
#[derive(Debug)]
pub struct FlagResults<'a>(pub Vec<(&'a str, FlagResult<'a>)>);

impl Serialize for FlagResults<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, result) in &self.0 {
            map.serialize_entry(key, result)?;
        }
        map.end()
    }
}

/// One flag's result. `value`, `variation` and `variant` are absent when the caller's default applies:
/// an error (`reason.kind` = `ERROR`), or a flag that is off (or failed a prerequisite) without an off
/// variation.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlagResult<'a> {
    /// The value served.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<&'a Value>,
    /// Index of the variation served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variation: Option<usize>,
    /// The variation's name, or its index when it has none (the OpenFeature variant).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub variant: Option<Cow<'a, str>>,
    /// Why: `{"kind": "OFF" | "TARGET_MATCH" | "RULE_MATCH" | "FALLTHROUGH" | "PREREQUISITE_FAILED" |
    /// "ERROR", ...}`. Server keys see the rule (`rule_id`, `rule_index`) and the failed prerequisite
    /// (`prerequisite_key`); client keys see the kind only, since rules and other flags are not theirs
    /// to see. Errors carry `error_kind` (`FLAG_NOT_FOUND`, `TARGETING_KEY_MISSING`, ...).
    #[schema(value_type = Object)]
    pub reason: ReasonView<'a>,
}

impl<'a> FlagResult<'a> {
    /// The result as a key of `kind` may see it.
    pub fn new(detail: Detail<'a>, kind: KeyKind) -> FlagResult<'a> {
        let variant = detail.variant();
        let reason = match kind {
            KeyKind::Server => ReasonView::Full(detail.reason),
            KeyKind::Client => ReasonView::KindOnly(detail.reason),
        };
        FlagResult { value: detail.value, variation: detail.variation, variant, reason }
    }

    /// A flag the key may not see, or that does not exist: the same answer for both.
    pub fn not_found() -> FlagResult<'static> {
        FlagResult {
            value: None,
            variation: None,
            variant: None,
            reason: ReasonView::Full(Reason::Error { error_kind: ErrorKind::FlagNotFound }),
        }
    }
}

/// A reason as a key may see it.
#[derive(Debug)]
pub enum ReasonView<'a> {
    /// Everything (server keys).
    Full(Reason<'a>),
    /// Without the rule or prerequisite it names (client keys).
    KindOnly(Reason<'a>),
}

impl Serialize for ReasonView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let hidden = match self {
            ReasonView::KindOnly(Reason::RuleMatch { .. }) => Some("RULE_MATCH"),
            ReasonView::KindOnly(Reason::PrerequisiteFailed { .. }) => Some("PREREQUISITE_FAILED"),
            _ => None,
        };
        match (hidden, self) {
            (Some(kind), _) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("kind", kind)?;
                map.end()
            }
            (None, ReasonView::Full(reason) | ReasonView::KindOnly(reason)) => reason.serialize(serializer),
        }
    }
}

// ------------------------------------------------------------------------------------------------ //
// OFREP

/// An OFREP request body: `{"context": {...}}`. The context may be left out or `{}` (clients send that
/// when the application gave none); unknown fields are ignored, for later protocol versions.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct OfrepRequest {
    /// The evaluation context.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(value_type = Object)]
    pub context: Context,
}

fn null_as_default<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Context, D::Error> {
    Ok(Option::<Context>::deserialize(deserializer)?.unwrap_or_default())
}

/// A successful OFREP evaluation. `value` is left out when the flag defers to the code's default (off,
/// or a failed prerequisite, with no off variation): OFREP's `codeDefaultFlag`, which current providers
/// answer with the caller's default and the given reason. `variant` is always present (`null` in that
/// case), because the Python provider reads it unconditionally.
#[derive(Debug, Serialize)]
pub struct OfrepSuccess<'a> {
    /// The flag.
    pub key: &'a str,
    /// `STATIC`, `TARGETING_MATCH`, `SPLIT`, `DISABLED` or `DEFAULT`.
    pub reason: &'static str,
    /// The variation's name (or index).
    pub variant: Option<Cow<'a, str>>,
    /// The value served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<&'a Value>,
}

/// A failed OFREP evaluation: always all three fields, or the JS providers report a format error and the
/// Python one crashes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfrepFailure<'a> {
    /// The flag.
    pub key: Cow<'a, str>,
    /// `FLAG_NOT_FOUND`, `PARSE_ERROR`, `TARGETING_KEY_MISSING`, `INVALID_CONTEXT` or `GENERAL`.
    pub error_code: &'static str,
    /// What went wrong, for a person.
    pub error_details: String,
}

/// One flag's OFREP result, as the single-flag route answers it and the bulk route lists it.
#[derive(Debug)]
pub enum OfrepResult<'a> {
    /// A value (or a deferral to the code default).
    Success(OfrepSuccess<'a>),
    /// An error, with the HTTP status the single-flag route answers it with.
    Failure(StatusCode, OfrepFailure<'a>),
}

impl Serialize for OfrepResult<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            OfrepResult::Success(success) => success.serialize(serializer),
            OfrepResult::Failure(_, failure) => failure.serialize(serializer),
        }
    }
}

impl<'a> OfrepResult<'a> {
    /// Maps an evaluation to OFREP (see the crate docs for the reason table).
    pub fn new(flag: &'a CompiledFlag, detail: Detail<'a>) -> OfrepResult<'a> {
        let key = flag.key().as_str();
        let config = flag.source().config();
        let reason = match &detail.reason {
            Reason::Off => "DISABLED",
            Reason::PrerequisiteFailed { .. } => "DEFAULT",
            Reason::TargetMatch => "TARGETING_MATCH",
            Reason::RuleMatch { .. } if detail.in_rollout => "SPLIT",
            Reason::RuleMatch { .. } => "TARGETING_MATCH",
            Reason::Fallthrough if detail.in_rollout => "SPLIT",
            // Nothing about the context can change what such a flag serves.
            Reason::Fallthrough
                if config.targets.is_empty()
                    && config.rules.is_empty()
                    && config.prerequisites.is_empty() =>
            {
                "STATIC"
            }
            Reason::Fallthrough => "DEFAULT",
            Reason::Error { error_kind } => return OfrepResult::error(key, *error_kind),
        };
        let variant = detail.variant();
        OfrepResult::Success(OfrepSuccess { key, reason, variant, value: detail.value })
    }

    /// The OFREP error for an evaluation error.
    pub fn error(key: &'a str, kind: ErrorKind) -> OfrepResult<'a> {
        let (status, code, details) = match kind {
            ErrorKind::FlagNotFound => {
                (StatusCode::NOT_FOUND, "FLAG_NOT_FOUND", format!("flag {key} was not found"))
            }
            ErrorKind::TargetingKeyMissing => (
                StatusCode::BAD_REQUEST,
                "TARGETING_KEY_MISSING",
                format!(
                    "flag {key} splits by a context attribute (the targetingKey by default) that the context \
                     does not have as a string or an integer"
                ),
            ),
            ErrorKind::MalformedFlag => {
                (StatusCode::BAD_REQUEST, "PARSE_ERROR", format!("flag {key} could not be evaluated"))
            }
            ErrorKind::WrongType | ErrorKind::NotReady => {
                (StatusCode::BAD_REQUEST, "GENERAL", format!("flag {key} could not be evaluated"))
            }
        };
        OfrepResult::Failure(
            status,
            OfrepFailure { key: Cow::Borrowed(key), error_code: code, error_details: details },
        )
    }
}

/// A flag missing from the environment, or hidden from the key: the same answer, so that a client key
/// learns nothing about flags it may not see.
pub fn ofrep_not_found(key: &str) -> OfrepResult<'_> {
    OfrepResult::error(key, ErrorKind::FlagNotFound)
}

/// The bulk answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfrepBulk<'a> {
    /// Every flag the key may see, evaluated.
    pub flags: Vec<OfrepResult<'a>>,
    /// The change stream, when one is configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_streams: Vec<EventStream>,
}

/// An OFREP push channel.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventStream {
    /// Always `sse`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The stream's URL, with the key in it (EventSource sends no headers).
    pub url: String,
    /// Seconds hidden before the client closes the stream (and refetches when it comes back).
    pub inactivity_delay_sec: u64,
}

/// A request-level OFREP error (the body), with its status: `{key, errorCode, errorDetails}` for the
/// single-flag route, `{errorCode, errorDetails}` for bulk.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfrepRequestError {
    /// The flag, on the single-flag route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `PARSE_ERROR`, `INVALID_CONTEXT` or `GENERAL`.
    pub error_code: &'static str,
    /// What went wrong.
    pub error_details: String,
}
