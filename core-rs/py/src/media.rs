//! `ccorch._core.MediaEngine`: the tokio media engine seen from Python.
//!
//! Control calls cross as plain ints and strings; events are drained as tuples after the
//! engine's wake-up pipe (``events_fd``) turns readable, so asyncio watches a descriptor
//! with ``loop.add_reader`` and never blocks. Calls that wait for a shard's answer release
//! the GIL while they wait.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use ccorch_media::amd::{AmdClass, AmdConfig};
use ccorch_media::dtmf::DtmfSource;
use ccorch_media::engine::{Engine, EngineConfig, Event, MediaError, RoomMode};
use ccorch_media::jitter::JitterConfig;
use ccorch_media::leg::LegConfig;
use ccorch_media::player::EndReason;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyDict, PyTuple};

use crate::parse_law;

mod exc {
    pyo3::import_exception!(ccorch.errors, MediaError);
}
use exc::MediaError as PyMediaError;

fn media_error(e: MediaError) -> PyErr {
    PyMediaError::new_err(e.to_string())
}

fn addr(host: &str, port: u16) -> PyResult<SocketAddr> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| PyMediaError::new_err(format!("{host:?} is not an IP address")))?;
    Ok(SocketAddr::new(ip, port))
}

fn dtmf_pt(pt: Option<u8>) -> PyResult<Option<u8>> {
    match pt {
        Some(p) if !(96..=127).contains(&p) => Err(PyMediaError::new_err(format!(
            "telephone-event payload type {p} must be dynamic (96-127)"
        ))),
        other => Ok(other),
    }
}

/// The RTP media engine: legs (RTP endpoints), rooms (bridges and conferences),
/// recordings, prompts, DTMF and AMD.
#[pyclass(name = "MediaEngine", module = "ccorch._core", frozen)]
pub struct PyMediaEngine {
    engine: Arc<Engine>,
}

#[pymethods]
impl PyMediaEngine {
    #[new]
    #[pyo3(signature = (*, bind_ip = "127.0.0.1", port_min = 10000, port_max = 20000, shards = 1, passthrough = true, browser_opus = true))]
    fn new(
        bind_ip: &str,
        port_min: u16,
        port_max: u16,
        shards: usize,
        passthrough: bool,
        browser_opus: bool,
    ) -> PyResult<Self> {
        let ip: IpAddr = bind_ip.parse().map_err(|_| {
            PyMediaError::new_err(format!("bind_ip {bind_ip:?} is not an IP address"))
        })?;
        let engine = Engine::start(EngineConfig {
            bind_ip: ip,
            port_min,
            port_max,
            shards,
            passthrough,
            browser_opus,
        })
        .map_err(media_error)?;
        Ok(PyMediaEngine {
            engine: Arc::new(engine),
        })
    }

    /// A new leg; returns ``(leg_id, rtp_port)``. Legs that will share a room need the same group.
    #[pyo3(signature = (group, *, law = "PCMU", dtmf_pt = Some(101), inband_dtmf = false,
                        media_timeout_ms = 30000, symmetric = true, jitter_min_ms = 20, jitter_max_ms = 200))]
    #[allow(clippy::too_many_arguments)]
    fn allocate_leg(
        &self,
        group: u64,
        law: &str,
        dtmf_pt: Option<u8>,
        inband_dtmf: bool,
        media_timeout_ms: u32,
        symmetric: bool,
        jitter_min_ms: u32,
        jitter_max_ms: u32,
    ) -> PyResult<(u64, u16)> {
        let cfg = LegConfig {
            law: parse_law(law)?,
            dtmf_pt: self::dtmf_pt(dtmf_pt)?,
            inband_dtmf,
            media_timeout_ms,
            symmetric,
            jitter: JitterConfig {
                min_delay_ms: jitter_min_ms,
                max_delay_ms: jitter_max_ms,
                ..JitterConfig::default()
            },
        };
        self.engine.allocate_leg(group, cfg).map_err(media_error)
    }

    /// A browser leg (WebRTC, DTLS-SRTP): answers ``offer`` (an SDP string), or offers when
    /// it is None; returns ``(leg_id, port, sdp)``. The codec follows the negotiation.
    #[pyo3(signature = (group, offer = None, *, media_timeout_ms = 30000))]
    fn allocate_webrtc_leg(
        &self,
        py: Python<'_>,
        group: u64,
        offer: Option<&str>,
        media_timeout_ms: u32,
    ) -> PyResult<(u64, u16, String)> {
        let cfg = LegConfig {
            media_timeout_ms,
            ..LegConfig::default()
        };
        let offer = offer.map(str::to_owned);
        let engine = self.engine.clone();
        // certificate generation and the DTLS setup take a few ms: not under the GIL
        py.detach(move || engine.allocate_webrtc_leg(group, offer.as_deref(), cfg))
            .map_err(media_error)
    }

    /// Answer a browser's re-offer (hold, resume); returns our answer.
    fn webrtc_accept_offer(&self, leg: u64, offer: &str) -> PyResult<String> {
        self.engine
            .webrtc_accept_offer(leg, offer)
            .map_err(media_error)
    }

    /// Our re-offer to a browser leg with ``direction`` (``sendonly`` holds it).
    #[pyo3(signature = (leg, direction = "sendrecv"))]
    fn webrtc_offer(&self, leg: u64, direction: &str) -> PyResult<String> {
        self.engine
            .webrtc_offer(leg, direction)
            .map_err(media_error)
    }

    /// The browser's answer to our last offer.
    fn webrtc_accept_answer(&self, leg: u64, answer: &str) -> PyResult<()> {
        self.engine
            .webrtc_accept_answer(leg, answer)
            .map_err(media_error)
    }

    fn release_leg(&self, leg: u64) -> PyResult<()> {
        self.engine.release_leg(leg).map_err(media_error)
    }

    /// Where to send this leg's RTP (from the peer's SDP); re-INVITEs call it again.
    #[pyo3(signature = (leg, host, port, rtcp_port = None))]
    fn set_remote(&self, leg: u64, host: &str, port: u16, rtcp_port: Option<u16>) -> PyResult<()> {
        let rtcp = rtcp_port.map(|p| addr(host, p)).transpose()?;
        self.engine
            .set_remote(leg, addr(host, port)?, rtcp)
            .map_err(media_error)
    }

    #[pyo3(signature = (leg, law, dtmf_pt = Some(101)))]
    fn set_codec(&self, leg: u64, law: &str, dtmf_pt: Option<u8>) -> PyResult<()> {
        self.engine
            .set_codec(leg, parse_law(law)?, self::dtmf_pt(dtmf_pt)?)
            .map_err(media_error)
    }

    fn set_inband_dtmf(&self, leg: u64, on: bool) -> PyResult<()> {
        self.engine.set_inband_dtmf(leg, on).map_err(media_error)
    }

    /// SRTP on the leg (AES_CM_128_HMAC_SHA1_80): our and the peer's 30-byte SDES keys.
    fn set_srtp(&self, leg: u64, local: &[u8], remote: &[u8]) -> PyResult<()> {
        let key = |k: &[u8]| -> PyResult<[u8; 30]> {
            k.try_into()
                .map_err(|_| PyValueError::new_err("an SRTP key is 30 bytes (key and salt)"))
        };
        self.engine
            .set_srtp(leg, key(local)?, key(remote)?)
            .map_err(media_error)
    }

    fn set_media_timeout(&self, leg: u64, ms: u32) -> PyResult<()> {
        self.engine.set_media_timeout(leg, ms).map_err(media_error)
    }

    /// Queue a WAV prompt (8 kHz mono PCM16, A-law or μ-law); returns its play id.
    #[pyo3(signature = (leg, path, *, loop_ = false, barge_in = false))]
    fn play_file(
        &self,
        py: Python<'_>,
        leg: u64,
        path: PathBuf,
        loop_: bool,
        barge_in: bool,
    ) -> PyResult<u64> {
        let engine = self.engine.clone();
        py.detach(move || {
            let samples = engine.load_prompt(&path)?;
            engine.play(leg, samples, loop_, barge_in)
        })
        .map_err(media_error)
    }

    /// Queue raw 8 kHz little-endian PCM16 (e.g. from TTS); returns its play id.
    #[pyo3(signature = (leg, pcm, *, loop_ = false, barge_in = false))]
    fn play_pcm(&self, leg: u64, pcm: PyBackedBytes, loop_: bool, barge_in: bool) -> PyResult<u64> {
        if !pcm.len().is_multiple_of(2) {
            return Err(PyMediaError::new_err(
                "PCM16 buffer has an odd number of bytes",
            ));
        }
        let samples: Arc<[i16]> = pcm
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        self.engine
            .play(leg, samples, loop_, barge_in)
            .map_err(media_error)
    }

    fn stop_playback(&self, leg: u64) -> PyResult<()> {
        self.engine.stop_playback(leg).map_err(media_error)
    }

    /// Send digits: RFC 4733 if the leg has telephone-event, else in-band tones.
    #[pyo3(signature = (leg, digits, duration_ms = 100))]
    fn send_dtmf(&self, leg: u64, digits: &str, duration_ms: u32) -> PyResult<()> {
        self.engine
            .send_dtmf(leg, digits, duration_ms)
            .map_err(media_error)
    }

    #[pyo3(signature = (leg, *, initial_silence_ms = 2500, greeting_ms = 1500, after_greeting_silence_ms = 800,
                        total_analysis_ms = 5000, min_word_length_ms = 100, between_words_silence_ms = 50,
                        maximum_words = 3, silence_threshold = 256))]
    #[allow(clippy::too_many_arguments)]
    fn start_amd(
        &self,
        leg: u64,
        initial_silence_ms: u32,
        greeting_ms: u32,
        after_greeting_silence_ms: u32,
        total_analysis_ms: u32,
        min_word_length_ms: u32,
        between_words_silence_ms: u32,
        maximum_words: u32,
        silence_threshold: u32,
    ) -> PyResult<()> {
        let cfg = AmdConfig {
            initial_silence_ms,
            greeting_ms,
            after_greeting_silence_ms,
            total_analysis_ms,
            min_word_length_ms,
            between_words_silence_ms,
            maximum_words,
            silence_threshold,
        };
        self.engine.start_amd(leg, cfg).map_err(media_error)
    }

    fn create_room(&self, group: u64) -> PyResult<u64> {
        self.engine.create_room(group).map_err(media_error)
    }

    /// Join (or change mode): "full", "listen" or "whisper" (with ``whisper_to``).
    #[pyo3(signature = (room, leg, mode = "full", whisper_to = None))]
    fn join_room(
        &self,
        py: Python<'_>,
        room: u64,
        leg: u64,
        mode: &str,
        whisper_to: Option<u64>,
    ) -> PyResult<()> {
        let mode = match (mode, whisper_to) {
            ("full" | "barge", None) => RoomMode::Full,
            ("listen", None) => RoomMode::Listen,
            ("whisper", Some(t)) => RoomMode::Whisper(t),
            ("whisper", None) => return Err(PyMediaError::new_err("whisper needs whisper_to (the agent's leg)")),
            (m, _) => {
                return Err(PyMediaError::new_err(format!(
                    "unknown room mode {m:?} (or whisper_to given without \"whisper\"): expected full, barge, listen or whisper"
                )))
            }
        };
        let engine = self.engine.clone();
        py.detach(move || engine.join_room(room, leg, mode))
            .map_err(media_error)
    }

    fn leave_room(&self, room: u64, leg: u64) -> PyResult<()> {
        self.engine.leave_room(room, leg).map_err(media_error)
    }

    fn destroy_room(&self, room: u64) -> PyResult<()> {
        self.engine.destroy_room(room).map_err(media_error)
    }

    /// Connect two legs both ways; returns the two-party room.
    fn bridge(&self, py: Python<'_>, a: u64, b: u64) -> PyResult<u64> {
        let engine = self.engine.clone();
        py.detach(move || engine.bridge(a, b)).map_err(media_error)
    }

    /// Stereo WAV: ``left`` leg's party (the caller) on the left, ``right`` (the agent) on the right.
    #[pyo3(signature = (path, left, right = None))]
    fn start_recording(
        &self,
        py: Python<'_>,
        path: PathBuf,
        left: Option<u64>,
        right: Option<u64>,
    ) -> PyResult<u64> {
        let engine = self.engine.clone();
        py.detach(move || engine.start_recording(&path, left, right))
            .map_err(media_error)
    }

    fn pause_recording(&self, recording: u64, paused: bool) -> PyResult<()> {
        self.engine
            .pause_recording(recording, paused)
            .map_err(media_error)
    }

    #[pyo3(signature = (recording, left, right = None))]
    fn set_recording_sources(
        &self,
        recording: u64,
        left: Option<u64>,
        right: Option<u64>,
    ) -> PyResult<()> {
        self.engine
            .set_recording_sources(recording, left, right)
            .map_err(media_error)
    }

    fn stop_recording(&self, recording: u64) -> PyResult<()> {
        self.engine.stop_recording(recording).map_err(media_error)
    }

    fn leg_stats<'py>(&self, py: Python<'py>, leg: u64) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine.clone();
        let s = py
            .detach(move || engine.leg_stats(leg))
            .map_err(media_error)?;
        let d = PyDict::new(py);
        d.set_item("packets_received", s.packets_received)?;
        d.set_item("packets_lost", s.packets_lost)?;
        d.set_item("jitter_ms", s.jitter_ms)?;
        d.set_item("packets_sent", s.packets_sent)?;
        d.set_item("malformed", s.malformed)?;
        d.set_item("rtt_ms", s.rtt_ms)?;
        d.set_item("remote_fraction_lost", s.remote_fraction_lost)?;
        d.set_item("mos", s.mos)?;
        let jb = s.jitter_buffer;
        d.set_item("late", jb.late)?;
        d.set_item("duplicates", jb.duplicates)?;
        d.set_item("concealed_frames", jb.concealed_frames)?;
        d.set_item("inserted_frames", jb.inserted_frames)?;
        d.set_item("skipped_frames", jb.skipped_frames)?;
        d.set_item("resyncs", jb.resyncs)?;
        d.set_item("jitter_buffer_ms", jb.delay_ms)?;
        d.set_item("recording_late", s.recording.late)?;
        d.set_item("recording_resyncs", s.recording.resyncs)?;
        Ok(d)
    }

    /// Engine-wide figures: ticks, tick lateness quantiles, CPU time spent in ticks, counts.
    /// ``reset=True`` starts a new measuring window for the tick figures.
    #[pyo3(signature = (reset = false))]
    fn stats<'py>(&self, py: Python<'py>, reset: bool) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine.clone();
        let s = py
            .detach(move || engine.stats(reset))
            .map_err(media_error)?;
        let d = PyDict::new(py);
        d.set_item("ticks", s.ticks)?;
        d.set_item("lateness_p50_ms", s.lateness_quantile_ms(0.50))?;
        d.set_item("lateness_p99_ms", s.lateness_quantile_ms(0.99))?;
        d.set_item("lateness_max_ms", s.lateness_quantile_ms(1.0))?;
        d.set_item("tick_busy_us_total", s.busy_us_total)?;
        d.set_item("legs", s.legs)?;
        d.set_item("rooms", s.rooms)?;
        d.set_item("passthrough_rooms", s.passthrough_rooms)?;
        d.set_item("recordings", s.recordings)?;
        d.set_item("send_errors", s.send_errors)?;
        d.set_item("skipped_ticks", s.skipped_ticks)?;
        d.set_item("srtp_rejected", s.srtp_rejected)?;
        d.set_item("srtcp_rejected", s.srtcp_rejected)?;
        Ok(d)
    }

    /// A descriptor that turns readable when events wait (owned by the engine: never close it).
    fn events_fd(&self) -> i32 {
        self.engine.events().fd()
    }

    /// Take the waiting events as tuples; read the descriptor's bytes first.
    fn drain_events<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let events = self.engine.events().drain();
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let t = match e {
                Event::Dtmf {
                    leg,
                    digit,
                    duration_ms,
                    source,
                } => {
                    let src = match source {
                        DtmfSource::Rfc4733 => "rfc4733",
                        DtmfSource::InBand => "inband",
                    };
                    ("dtmf", leg, digit.to_string(), duration_ms, src).into_pyobject(py)?
                }
                Event::MediaTimeout { leg, silent_ms } => {
                    ("media_timeout", leg, silent_ms).into_pyobject(py)?
                }
                Event::Amd { leg, decision } => {
                    let class = match decision.class {
                        AmdClass::Human => "human",
                        AmdClass::Machine => "machine",
                        AmdClass::Silence => "silence",
                    };
                    (
                        "amd",
                        leg,
                        class,
                        decision.reason,
                        decision.decision_ms,
                        decision.words,
                    )
                        .into_pyobject(py)?
                }
                Event::PlaybackFinished { leg, play, reason } => {
                    let r = match reason {
                        EndReason::Done => "done",
                        EndReason::Stopped => "stopped",
                        EndReason::BargeIn => "barge_in",
                    };
                    ("playback_finished", leg, play, r).into_pyobject(py)?
                }
                Event::RtcpBye { leg } => ("rtcp_bye", leg).into_pyobject(py)?,
                Event::WebRtcState {
                    leg,
                    connected,
                    reason,
                } => ("webrtc_state", leg, connected, reason).into_pyobject(py)?,
                Event::RecordingStopped {
                    recording,
                    path,
                    duration_ms,
                    bytes,
                } => {
                    ("recording_stopped", recording, path, duration_ms, bytes).into_pyobject(py)?
                }
                Event::RecordingFailed { recording, error } => {
                    ("recording_failed", recording, error).into_pyobject(py)?
                }
            };
            out.push(t);
        }
        Ok(out)
    }

    /// Stop the engine: open recordings are finalized (their events can still be drained).
    fn shutdown(&self, py: Python<'_>) {
        let engine = self.engine.clone();
        py.detach(move || engine.shutdown());
    }
}
