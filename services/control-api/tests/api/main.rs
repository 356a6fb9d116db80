//! The management API over real HTTP, against a fresh PostgreSQL database per test.

mod helpers;

mod flow;
