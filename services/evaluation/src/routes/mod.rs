//! The evaluation service's routes, one module per resource.

pub mod evaluate;
pub mod events;
pub mod flags;
pub mod health;
pub mod ofrep;
