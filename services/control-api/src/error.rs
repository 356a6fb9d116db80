//! The API's errors are the shared problem+json table of `vexil-http`.

pub use vexil_http::error::*;
