//! The management API over real HTTP, against a fresh PostgreSQL database per test.

mod helpers;

mod flow;
mod auth;
mod relay;
mod validation;
mod concurrency;
mod resources;
mod config_checks;
