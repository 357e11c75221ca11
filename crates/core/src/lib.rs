//! confab core: the domain model and every membership rule of the seeds,
//! written once. No HTTP, no SQL, no wire codes: faces translate
//! [`CoreError`] into their own envelopes, and stores implement [`Tx`].
//!
//! The flow of a command: a face builds a command struct, a store opens ONE
//! transaction and hands it to the command function here as `&mut dyn Tx`.
//! The function loads what the rules need through `Tx`, applies the named
//! policy in [`policy`], and writes the change plus its membership event
//! through the same `Tx`. Holding a `Tx` means holding the chat lock
//! (SQLite: the single writer under `BEGIN IMMEDIATE`; PostgreSQL: the chat
//! row `FOR UPDATE`), so a count-then-remove rule cannot race.

pub mod commands;
pub mod error;
pub mod model;
pub mod policy;
pub mod tx;

pub use error::CoreError;
pub use model::*;
pub use tx::Tx;
