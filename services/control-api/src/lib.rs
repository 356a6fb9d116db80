//! Vexil's control plane: the management REST API over the store, the audit log, and the relay that
//! moves the change log to the bus.
//!
//! [`Application::build`] binds the server and starts the relay; `run_until_stopped` serves until
//! SIGTERM. The same `configure_app` is used by the binary, standalone mode and the tests.

pub mod bootstrap;
pub mod error;
pub mod extract;
pub mod fallback;
pub mod relay;
pub mod routes;
pub mod startup;
pub mod state;
pub mod views;

pub use fallback::not_found;
pub use startup::{Application, configure_app, openapi};
