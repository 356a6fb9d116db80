//! The streaming routes: `/v1/stream` ([`server`]), `/v1/client/stream` ([`client`]),
//! `/ofrep/v1/stream` ([`ofrep`]), and the probes ([`health`]).
//!
//! Each route is a server-agnostic function — a `StreamRequest` in, a stream of SSE frames or an
//! [`ApiError`] out. Both servers call the same functions: the actix adapter (`crate::actix`) and the
//! streaming deployment's own HTTP/1.1 server (`crate::http1`). What the routes share — what they read
//! from a request, and who may open a stream — is `request`.

pub(crate) mod client;
pub(crate) mod health;
pub(crate) mod ofrep;
mod request;
pub(crate) mod server;

use std::sync::Arc;

use vexil_dataplane::Cache;
use vexil_http::error::ApiError;

pub(crate) use self::request::{StreamRequest, header_text};
use crate::state::StreamingState;
use crate::stream::Body;

/// The three stream routes, for a server that routes by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamRoute {
    /// `GET /v1/stream`.
    Flags,
    /// `GET /v1/client/stream`.
    Values,
    /// `GET /ofrep/v1/stream`.
    Ofrep,
}

impl StreamRoute {
    /// The route at `path` (without the query), if any.
    pub(crate) fn of_path(path: &str) -> Option<StreamRoute> {
        match path {
            "/v1/stream" => Some(StreamRoute::Flags),
            "/v1/client/stream" => Some(StreamRoute::Values),
            "/ofrep/v1/stream" => Some(StreamRoute::Ofrep),
            _ => None,
        }
    }

    /// Opens the stream `req` asks for.
    pub(crate) fn open(
        self,
        req: &StreamRequest<'_>,
        cache: &Cache,
        streaming: &Arc<StreamingState>,
    ) -> Result<Body, ApiError> {
        match self {
            StreamRoute::Flags => server::open(req, cache, streaming),
            StreamRoute::Values => client::open(req, cache, streaming),
            StreamRoute::Ofrep => ofrep::open(req, cache, streaming),
        }
    }
}
