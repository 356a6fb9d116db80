//! The management API's routes, one module per resource; each registers its handlers and they are
//! merged into one OpenAPI document in `startup`.

pub mod audit;
pub mod flags;
pub mod health;
pub mod projects;
pub mod segments;
pub mod session;
pub mod tokens;
