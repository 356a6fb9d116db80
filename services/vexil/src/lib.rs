//! How the `vexil` binary puts Vexil's parts together, as a library so that its integration tests run
//! the same code: standalone mode ([`standalone`]), the data plane's database fallback
//! ([`DatabaseSnapshots`]), and the background tasks every process owns ([`Background`]).
//!
//! The command line is `main.rs`.

mod background;
mod database;
pub mod standalone;

pub use background::Background;
pub use database::DatabaseSnapshots;
