//! The management API over real HTTP, against a fresh PostgreSQL database per test.

mod helpers;

mod auth;
mod concurrency;
mod config_checks;
mod flow;
mod relay;
mod resources;
mod session;
mod validation;
