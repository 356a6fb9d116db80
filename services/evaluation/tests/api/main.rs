//! The evaluation service over HTTP, against a real control plane (PostgreSQL store) and real clients:
//! reqwest for the routes, and the published OpenFeature OFREP providers (Python, Node, web) in
//! `providers.rs`.

mod cors;
mod evaluate;
mod events;
mod flags;
mod health;
mod helpers;
mod ofrep;
mod providers;
