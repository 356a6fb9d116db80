//! HTTP plumbing every Vexil service shares: the problem+json error table ([`error`]) and JSON bodies
//! that name the offending field ([`json`]). The data plane's own HTTP pieces (SDK keys, CORS) are
//! `vexil-dataplane-http`'s.
#![deny(missing_docs)]

pub mod error;
pub mod json;
