//! The skill-based automatic call distributor, as a sans-IO state machine: events and the
//! current time in, decisions out. No threads, sockets, sleeps or clock inside.
#![forbid(unsafe_code)]

pub mod engine;
pub mod erlang;
pub mod ewt;
pub mod skills;
