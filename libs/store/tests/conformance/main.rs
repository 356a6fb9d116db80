//! One behavioural suite, run against PostgreSQL and SQLite: both backends must agree.

mod helpers;

mod audit;
mod changes;
mod flags;
mod migrations;
mod projects;
mod sessions;
mod tokens;
