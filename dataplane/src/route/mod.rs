//! Routing: the routing keys ([`key`]) and how each item's is read from a request (`keyed`), the ring that maps
//! keys to backends ([`ring`]), the backends already chosen for a request's keys ([`owners`]) and the splitter
//! that cuts a request into one request per backend ([`split`]).

pub mod affinity;
pub mod key;
mod keyed;
pub mod owners;
pub mod peer_held;
pub mod ring;
pub mod split;
