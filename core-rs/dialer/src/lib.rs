//! Outbound dialer pacing, as sans-IO state machines: the current time and campaign events
//! in, "dial k numbers now" out. No threads, sockets, sleeps or clock inside.
#![forbid(unsafe_code)]

pub mod abandon;
pub mod dist;
pub mod pacer;
pub mod reference;
pub mod sim;
