//! An [OpenFeature](https://openfeature.dev) provider for Vexil: the `open-feature` crate's (0.3)
//! [`FeatureProvider`] backed by a [`vexil_sdk::Client`], which keeps the environment's flags in
//! memory (streamed or polled) and evaluates them locally. Resolving a flag does no I/O.
//!
//! ```no_run
//! # async fn example() -> Result<(), vexil_sdk::Error> {
//! use open_feature::{EvaluationContext, OpenFeature};
//! use vexil_openfeature::VexilProvider;
//!
//! let vexil = vexil_sdk::Client::builder("<server key>").url("http://127.0.0.1:8080").start().await?;
//! let mut api = OpenFeature::singleton_mut().await;
//! api.set_provider(VexilProvider::new(vexil.clone())).await;
//! let flags = api.create_client();
//!
//! let user = EvaluationContext::default().with_targeting_key("user-1").with_custom_field("country", "DE");
//! let new_checkout = flags.get_bool_value("new-checkout", Some(&user), None).await.unwrap_or(false);
//! # let _ = new_checkout;
//! vexil.close().await; // OpenFeature 0.3 has no provider shutdown: close the client yourself.
//! # Ok(()) }
//! ```
//!
//! # Contexts
//!
//! The evaluation context becomes a Vexil [`Context`](vexil_model::Context): the targeting key is the
//! targeting key, custom fields are attributes, nested structures become JSON objects and arrays
//! (see [`to_vexil_context`] for every rule).
//!
//! # Values
//!
//! | OpenFeature | Vexil flag kind | notes |
//! | --- | --- | --- |
//! | bool | boolean | |
//! | string | string | |
//! | float | number | |
//! | int | number | integral values only (within `i64`); `2.5` is `TYPE_MISMATCH` |
//! | struct | json | JSON objects only; other JSON values are `TYPE_MISMATCH` |
//!
//! A flag of another kind is `TYPE_MISMATCH`.
//!
//! # Reasons
//!
//! | Vexil | OpenFeature reason | variant |
//! | --- | --- | --- |
//! | off (serving its off variation) | `DISABLED` | the variation's name, or its index |
//! | individual target | `TARGETING_MATCH` | 〃 |
//! | rule serving a variation | `TARGETING_MATCH` | 〃 |
//! | rule serving a rollout | `SPLIT` | 〃 |
//! | fallthrough serving a variation | `DEFAULT` | 〃 |
//! | fallthrough serving a rollout | `SPLIT` | 〃 |
//! | prerequisite failed (serving the off variation) | `DEFAULT` | 〃 |
//!
//! Vexil's OFREP endpoint also says `STATIC` (nothing about the context could change the value); the
//! provider says `DEFAULT` there, as it cannot see the whole flag from an evaluation. The exact Vexil
//! reason, the rule (`ruleId`, `ruleIndex`) or prerequisite (`prerequisiteKey`), the
//! variation's index and the data's revision are in the flag metadata (`vexilReason`, `variation`,
//! `revision`).
//!
//! # Errors
//!
//! OpenFeature's Rust API 0.3 passes no default value to a provider: a provider reports an error, and
//! the application's `unwrap_or(default)` (or `get_*_details(..).ok()`) serves its default.
//!
//! | Vexil | OpenFeature error code |
//! | --- | --- |
//! | flag not found (or archived) | `FLAG_NOT_FOUND` |
//! | wrong type (also a non-integral number asked for as int, a non-object asked for as struct) | `TYPE_MISMATCH` |
//! | malformed flag | `PARSE_ERROR` |
//! | rollout without its bucketing attribute | `TARGETING_KEY_MISSING` |
//! | the client has no data yet | `PROVIDER_NOT_READY` |
//! | off, or a prerequisite failed, with no off variation | `GENERAL` with code [`CODE_DEFAULT`] |
//!
//! # Status
//!
//! OpenFeature 0.3 has provider status but no provider events, and its client does not consult the
//! status before resolving (the provider itself answers `PROVIDER_NOT_READY` while the SDK has no
//! data). [`FeatureProvider::status`] follows the SDK's state:
//!
//! | SDK state | provider status |
//! | --- | --- |
//! | `Initializing` | `NotReady` |
//! | `Ready` | `Ready` |
//! | `Stale` (no sync has confirmed the data for a while, or only a bootstrap file so far) | `STALE` |
//! | `Offline` (offline mode) serving a bootstrap file | `Ready` |
//! | `Offline` without a bootstrap (it will only ever serve defaults) | `Error` |
//!
//! [`FeatureProvider::initialize`] (run by `set_provider`) waits for the SDK to leave `Initializing`
//! for at most [`VexilProvider::wait_for_ready`]'s timeout, zero by default: a client from
//! `ClientBuilder::start` has already waited for its data.
#![deny(missing_docs)]

mod context;
mod resolve;
mod value;

use std::time::Duration;

use open_feature::provider::{FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails};
use open_feature::{EvaluationContext, EvaluationResult, StructValue, async_trait};
use vexil_sdk::{Client, EvaluationDetail, State};

pub use context::to_vexil_context;
pub use resolve::{CODE_DEFAULT, error_code, reason};

use resolve::{Evaluated, to_int, to_struct};

/// The provider's name in OpenFeature's provider metadata.
pub const PROVIDER_NAME: &str = "Vexil";

/// An OpenFeature provider that resolves flags with a [`vexil_sdk::Client`].
#[derive(Clone)]
pub struct VexilProvider {
    client: Client,
    metadata: ProviderMetadata,
    ready_timeout: Duration,
}

impl VexilProvider {
    /// A provider over `client` (usually one returned by `ClientBuilder::start`).
    pub fn new(client: Client) -> VexilProvider {
        VexilProvider {
            client,
            metadata: ProviderMetadata::new(PROVIDER_NAME),
            ready_timeout: Duration::ZERO,
        }
    }

    /// Makes `initialize` (and so OpenFeature's `set_provider`) wait up to `timeout` for the client's
    /// first data, for a client that was started with a short start timeout.
    pub fn wait_for_ready(mut self, timeout: Duration) -> VexilProvider {
        self.ready_timeout = timeout;
        self
    }

    /// The SDK client behind the provider (to close it, watch its state, or track events).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn evaluated<T>(&self, detail: EvaluationDetail<T>) -> Evaluated<T> {
        Evaluated {
            value: detail.value,
            variation: detail.variation,
            variant: detail.variant,
            reason: detail.reason,
            in_rollout: detail.in_rollout,
            revision: self.client.revision(),
        }
    }
}

impl std::fmt::Debug for VexilProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VexilProvider")
            .field("state", &self.client.state())
            .field("revision", &self.client.revision())
            .finish_non_exhaustive()
    }
}

/// The provider status for an SDK state (see the crate documentation).
pub fn status(state: State, has_data: bool) -> ProviderStatus {
    match state {
        State::Initializing => ProviderStatus::NotReady,
        State::Ready => ProviderStatus::Ready,
        State::Stale => ProviderStatus::STALE,
        State::Offline if has_data => ProviderStatus::Ready,
        State::Offline => ProviderStatus::Error,
    }
}

#[async_trait]
impl FeatureProvider for VexilProvider {
    async fn initialize(&mut self, _context: &EvaluationContext) {
        if self.ready_timeout.is_zero() {
            return;
        }
        let mut states = self.client.watch_state();
        // Timing out is not a failure: the provider answers PROVIDER_NOT_READY until the data comes.
        let _ =
            tokio::time::timeout(self.ready_timeout, states.wait_for(|state| *state != State::Initializing))
                .await;
    }

    fn status(&self) -> ProviderStatus {
        status(self.client.state(), self.client.revision().is_some())
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let context = to_vexil_context(evaluation_context);
        self.evaluated(self.client.bool_detail(flag_key, &context, false)).resolve(flag_key, Ok)
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        let context = to_vexil_context(evaluation_context);
        self.evaluated(self.client.number_detail(flag_key, &context, 0.0)).resolve(flag_key, to_int)
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        let context = to_vexil_context(evaluation_context);
        self.evaluated(self.client.number_detail(flag_key, &context, 0.0)).resolve(flag_key, Ok)
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        let context = to_vexil_context(evaluation_context);
        self.evaluated(self.client.string_detail(flag_key, &context, "")).resolve(flag_key, Ok)
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        let context = to_vexil_context(evaluation_context);
        self.evaluated(self.client.json_detail(flag_key, &context, serde_json::Value::Null))
            .resolve(flag_key, to_struct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_follows_the_sdk_state() {
        assert_eq!(status(State::Initializing, false), ProviderStatus::NotReady);
        assert_eq!(status(State::Ready, true), ProviderStatus::Ready);
        assert_eq!(status(State::Stale, true), ProviderStatus::STALE);
        assert_eq!(status(State::Offline, true), ProviderStatus::Ready);
        assert_eq!(status(State::Offline, false), ProviderStatus::Error);
    }
}
