//! Helpers shared by the integration test binaries of the `vexil` package.
//!
//! Every test binary (`multi_process`, `sdk`, ...) compiles this module for itself and uses a different
//! part of it; what one binary leaves unused would warn as dead code there, hence the allowance.
#![allow(dead_code)]

pub mod cluster;
pub mod standalone;
