//! Vexil's domain model.
//!
//! Two layers of types:
//!
//! * `*Spec` types ([`FlagSpec`], [`FlagConfigSpec`], [`SegmentSpec`]) are the JSON shape that people,
//!   pipelines and the database exchange. Their fields are already typed (a [`FlagKey`] cannot hold a
//!   bad key, an [`Operator`] cannot be unknown), so a deserialisation error names the field.
//! * [`Flag`], [`FlagConfig`] and [`Segment`] are the same data once every cross-field rule has been
//!   checked (variation values match the kind, indexes are in range, weights sum to 100 000, regexes
//!   compile, ...). They can only be built by `parse`, which reports *every* problem with the path of
//!   the offending field, so a value of these types that exists in memory is valid.
//!
//! Checks that span several flags (prerequisites exist and form no cycle, segments exist) belong to the
//! environment as a whole and live in `vexil-eval`'s `compile`.
#![deny(missing_docs)]

mod attributes;
mod config;
mod context;
mod flag;
mod keys;
mod reason;
mod segment;
mod snapshot;
mod validation;
pub mod values;

pub use attributes::Attributes;
pub use config::{
    Clause, FlagConfig, FlagConfigSpec, Operator, Prerequisite, Rollout, Rule, Serve, TOTAL_WEIGHT, Target,
    WeightedVariation,
};
pub use context::Context;
pub use flag::{Flag, FlagKind, FlagSpec, Variation};
pub use keys::{
    AttributePath, EnvironmentKey, ExperimentKey, FlagKey, KeyError, ProjectKey, RuleId, SegmentKey,
};
pub use reason::{ErrorKind, EvaluationResult, Reason};
pub use segment::{Segment, SegmentRule, SegmentSpec};
pub use snapshot::{ConfiguredFlag, ConfiguredFlagSpec, Snapshot};
pub use validation::{FieldError, ValidationErrors};
