//! Vexil's control plane: the management REST API over the store and its audit log.
//!
//! [`Application::build`] binds the server and starts the change relay beside it (`vexil-outbox`, which
//! moves the change log to the bus); `run_until_stopped` serves until SIGTERM. The same `configure_app` is used by the binary, standalone mode and the tests.

pub mod bootstrap;
pub mod error;
pub mod extract;
pub mod fallback;
pub mod routes;
pub mod startup;
pub mod state;
pub mod views;

pub use fallback::not_found;
pub use startup::{Application, configure_app, openapi};
