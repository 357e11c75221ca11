//! The `confab` server: configuration, the HTTP stack around the faces,
//! the demo world and startup/shutdown. `main.rs` is only the CLI.

pub mod app;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod startup;
