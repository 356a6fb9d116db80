//! The protocol between Vexil's data plane and its clients — server SDKs, relays, browsers and OpenFeature
//! providers — defined once: the events of every stream as typed values, their framing, how a client
//! applies a change, how it resumes, and the entity tags. `docs/protocol.md` is the same contract in
//! prose, for whoever writes a client in another language.
//!
//! (Not to be confused with `vexil-proto`, the protobuf messages *between the planes*.)
//!
//! | module | what |
//! | --- | --- |
//! | [`sse`] | the `text/event-stream` framing: frames, heartbeats, `retry:`, and an incremental parser |
//! | [`server`] | `GET /v1/stream`: `hydrate` ([`server::SnapshotView`]), `patch` / `delete` ([`Change`]); reading them leniently ([`server::ServerEvent`]) |
//! | [`change`] | a change to a flag or segment, and the one way every copy of an environment applies it |
//! | [`client`] | `GET /v1/client/stream`: `values` and `delete` of evaluated values |
//! | [`ofrep`] | `GET /ofrep/v1/stream`: `refetchEvaluation` notifications |
//! | [`resume`] | `Last-Event-ID` |
//! | [`etag`] | the tags of polled snapshots and OFREP bulk evaluations, and `If-None-Match` |
//!
//! Writers (the streaming and evaluation services) and readers (the Rust SDK, relay mode) use these
//! same types; the streaming service's pre-rendered frames are checked byte for byte against them.
//!
//! ```
//! use vexil_protocol::server::{ReceivedChange, ServerEvent};
//! use vexil_protocol::sse::SseParser;
//! use vexil_protocol::Change;
//!
//! let mut parser = SseParser::default();
//! let events = parser.feed(&Change::DeleteFlag("old-banner".into()).frame(45));
//! let change = ServerEvent::read(&events[0]).unwrap();
//! assert_eq!(change, ServerEvent::Change {
//!     revision: 45,
//!     change: ReceivedChange::Apply(Change::DeleteFlag("old-banner".into())),
//! });
//! ```
#![deny(missing_docs)]

pub mod change;
pub mod client;
pub mod etag;
pub mod ofrep;
pub mod resume;
pub mod server;
pub mod sse;

pub use change::Change;
