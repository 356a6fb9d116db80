//! Everything one environment serves, at one revision.

use serde::{Deserialize, Serialize};

use crate::config::{FlagConfig, FlagConfigSpec};
use crate::flag::{Flag, FlagSpec};
use crate::segment::Segment;
use crate::validation::ValidationErrors;

/// A flag together with its configuration in one environment, as written. See [`ConfiguredFlag`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredFlagSpec {
    /// The flag.
    pub flag: FlagSpec,
    /// Its configuration in this environment.
    pub config: FlagConfigSpec,
}

/// A valid flag with a configuration valid for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ConfiguredFlagSpec", into = "ConfiguredFlagSpec")]
pub struct ConfiguredFlag {
    flag: Flag,
    config: FlagConfig,
}

impl ConfiguredFlag {
    /// Pairs a flag with a configuration checked against it.
    pub fn new(flag: Flag, config: FlagConfig) -> ConfiguredFlag {
        ConfiguredFlag { flag, config }
    }

    /// Parses both halves; errors in the configuration are prefixed with `config.`.
    pub fn parse(spec: ConfiguredFlagSpec) -> Result<ConfiguredFlag, ValidationErrors> {
        let flag = Flag::parse(spec.flag).map_err(|e| e.prefixed("flag"))?;
        let config = FlagConfig::parse(spec.config, &flag).map_err(|e| e.prefixed("config"))?;
        Ok(ConfiguredFlag { flag, config })
    }

    /// The flag.
    pub fn flag(&self) -> &Flag {
        &self.flag
    }

    /// Its configuration.
    pub fn config(&self) -> &FlagConfig {
        &self.config
    }
}

impl TryFrom<ConfiguredFlagSpec> for ConfiguredFlag {
    type Error = ValidationErrors;
    fn try_from(spec: ConfiguredFlagSpec) -> Result<ConfiguredFlag, ValidationErrors> {
        ConfiguredFlag::parse(spec)
    }
}

impl From<ConfiguredFlag> for ConfiguredFlagSpec {
    fn from(configured: ConfiguredFlag) -> ConfiguredFlagSpec {
        ConfiguredFlagSpec { flag: configured.flag.into_spec(), config: configured.config.into_spec() }
    }
}

/// All flags and segments of one environment at one revision: what the data plane serves.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The environment's revision this snapshot reflects.
    pub revision: u64,
    /// Every flag with its configuration.
    #[serde(default)]
    pub flags: Vec<ConfiguredFlag>,
    /// Every segment.
    #[serde(default)]
    pub segments: Vec<Segment>,
}
