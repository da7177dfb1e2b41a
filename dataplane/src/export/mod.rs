//! Export: deliver the parts of a split request to their backends, concurrently, retrying only what failed; parts
//! waiting for the same backend leave together.
//!
//! How a part travels: [`deliver`] awaits [`Backend::export`] for every part at once. `export` does not send; it
//! puts the part in the backend's sending queue, in the line of its signal, with the sending half of a
//! `oneshot` channel for its outcome, and awaits the receiving half until its deadline. The first part to join an
//! idle line also spawns the line's flush task, which yields once (so that parts routed at the same moment join
//! the line), then takes a request's worth of parts for each free sending slot and spawns a task to send it (the
//! last request it sends itself). The sending task answers every part it carried through its `oneshot`. A part
//! whose caller stopped waiting (its deadline passed, so the receiving half is gone) is dropped unsent; a backend
//! that leaves the pool answers every waiting part UNAVAILABLE, and [`deliver`] routes those parts again.

mod backend;
mod coalesce;
mod connection;
mod deliver;
mod grpc;
pub mod health;
mod reply;
#[cfg(test)]
mod unary_tests;
pub mod wal;

pub use backend::{Backend, Load};
pub use deliver::{Delivered, Routed, Undelivered, Unroutable, deliver};
pub use reply::{Reply, parse_reply, retryable};
