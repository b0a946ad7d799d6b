//! The ccorch media plane's pure parts: no Python, no sockets.
//!
//! For now this is the G.711 codec; RTP, RFC 4733 DTMF, the jitter buffer, the mixer,
//! the recorder and the player join it as sans-IO modules, with the tokio socket loop
//! kept at the edge.
#![forbid(unsafe_code)]

pub mod g711;

pub use g711::{G711Error, Law};
pub mod amd;
#[cfg(feature = "engine")]
pub mod batch_recv;
pub mod dtmf;
#[cfg(feature = "engine")]
pub mod engine;
pub mod jitter;
pub mod leg;
pub mod mixer;
pub mod opus_edge;
pub mod player;
pub mod record_tap;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
pub mod wav;
pub mod webrtc;
