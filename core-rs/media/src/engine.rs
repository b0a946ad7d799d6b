//! The socket edge: a tokio engine that owns the UDP sockets and drives the sans-IO legs,
//! rooms and recordings on one 20 ms clock per shard.
//!
//! Each shard is one OS thread running a current-thread tokio runtime with one ticker task
//! that, every 20 ms, first reads every decoded leg's queued RTP itself (`recvmmsg`, each
//! packet with its kernel arrival time: no task wake-up per packet), then does all playout,
//! mixing, recording and sending. Legs forwarded packet by packet (pass-through rooms) and
//! browser legs have a receive task instead, so their packets are handled as they come; RTCP
//! sockets too (a packet every few seconds). All legs of a room live on
//! one shard (legs are placed by a caller-chosen group key, e.g. the call), so the hot path
//! takes no locks. Recordings are written by one writer thread, so media never waits on disk.
//! Events (DTMF, prompts finished, timeouts, AMD, recordings closed) go to an [`EventSink`]
//! that wakes its consumer through a pipe: an asyncio loop can watch that file descriptor.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{PipeReader, PipeWriter, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc as tmpsc, Notify};
use tokio::task::{JoinHandle as TaskHandle, LocalSet};

use crate::amd::{AmdConfig, AmdDecision};
use crate::batch_recv::{enable_timestamps, BatchReceiver, BATCH};
use crate::dtmf::{DtmfSource, ToneGenerator};
use crate::g711::Law;
use crate::leg::{Leg, LegConfig, LegEvent, LegStats, Received, FRAME};
use crate::mixer::{mix_frame, Speak};
use crate::player::{EndReason, Prompt};
use crate::srtp;
use crate::wav::{pcm16_header, read_prompt, WavError};
use crate::webrtc::{WebRtc, WebRtcError, WebRtcIo, WebRtcState};

pub type LegId = u64;
pub type RoomId = u64;
pub type RecordingId = u64;
pub type PlayId = u64;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub bind_ip: IpAddr,
    /// RTP ports are even numbers in this range, RTCP the odd one above.
    pub port_min: u16,
    pub port_max: u16,
    pub shards: usize,
    /// Forward packets undecoded between two legs when nothing needs their audio.
    pub passthrough: bool,
    /// Offer and accept Opus on browser legs (transcoded at the edge), else G.711 only.
    pub browser_opus: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            port_min: 10_000,
            port_max: 20_000,
            shards: 1,
            passthrough: true,
            browser_opus: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaError {
    NoFreePorts {
        min: u16,
        max: u16,
    },
    Io(String),
    UnknownLeg(LegId),
    UnknownRoom(RoomId),
    UnknownRecording(RecordingId),
    /// Legs of one room must be allocated with the same group.
    DifferentShards {
        leg: LegId,
        room: RoomId,
    },
    AlreadyInRoom {
        leg: LegId,
        room: RoomId,
    },
    BadDigit(char),
    BadConfig(String),
    Prompt(String),
    /// A browser leg's SDP was refused, or the operation needs a browser leg.
    WebRtc(String),
    Stopped,
    /// A media thread did not answer within 5 s (overloaded).
    Busy,
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaError::NoFreePorts { min, max } => write!(f, "no free RTP port pair in {min}–{max}"),
            MediaError::Io(e) => write!(f, "media I/O error: {e}"),
            MediaError::UnknownLeg(id) => write!(f, "no media leg {id}"),
            MediaError::UnknownRoom(id) => write!(f, "no media room {id}"),
            MediaError::UnknownRecording(id) => write!(f, "no recording {id}"),
            MediaError::DifferentShards { leg, room } => write!(
                f,
                "leg {leg} and room {room} are on different media shards: allocate the legs of one call with the same group"
            ),
            MediaError::AlreadyInRoom { leg, room } => write!(f, "leg {leg} is already in room {room}"),
            MediaError::BadDigit(c) => write!(f, "{c:?} is not a DTMF digit (0-9, *, #, A-D)"),
            MediaError::BadConfig(e) => write!(f, "bad media configuration: {e}"),
            MediaError::Prompt(e) => write!(f, "{e}"),
            MediaError::WebRtc(e) => write!(f, "{e}"),
            MediaError::Stopped => f.write_str("the media engine has stopped"),
            MediaError::Busy => f.write_str("a media thread did not answer within 5 s (overloaded)"),
        }
    }
}

impl std::error::Error for MediaError {}

impl From<std::io::Error> for MediaError {
    fn from(e: std::io::Error) -> Self {
        MediaError::Io(e.to_string())
    }
}

/// A participant's mode in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomMode {
    /// Heard by all, hears all. Barge-in is a supervisor switching to this mode.
    Full,
    /// Hears all, heard by nobody (monitoring, mute).
    Listen,
    /// Hears all, heard only by this leg (coaching the agent).
    Whisper(LegId),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Dtmf {
        leg: LegId,
        digit: char,
        duration_ms: u32,
        source: DtmfSource,
    },
    MediaTimeout {
        leg: LegId,
        silent_ms: u64,
    },
    Amd {
        leg: LegId,
        decision: AmdDecision,
    },
    PlaybackFinished {
        leg: LegId,
        play: PlayId,
        reason: EndReason,
    },
    RtcpBye {
        leg: LegId,
    },
    /// A browser leg connected (ICE and DTLS done), or failed with the reason.
    WebRtcState {
        leg: LegId,
        connected: bool,
        reason: String,
    },
    RecordingStopped {
        recording: RecordingId,
        path: PathBuf,
        duration_ms: u64,
        bytes: u64,
    },
    RecordingFailed {
        recording: RecordingId,
        error: String,
    },
}

/// Events waiting for their consumer, and the pipe that wakes it (one byte per batch).
pub struct EventSink {
    inner: Mutex<SinkInner>,
    reader: PipeReader,
}

struct SinkInner {
    events: Vec<Event>,
    signalled: bool,
    pipe: PipeWriter,
}

impl EventSink {
    fn new() -> std::io::Result<Self> {
        let (reader, pipe) = std::io::pipe()?;
        Ok(EventSink {
            inner: Mutex::new(SinkInner {
                events: Vec::new(),
                signalled: false,
                pipe,
            }),
            reader,
        })
    }

    fn push(&self, events: impl IntoIterator<Item = Event>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let before = inner.events.len();
        inner.events.extend(events);
        if inner.events.len() > before && !inner.signalled {
            inner.signalled = true;
            let _ = inner.pipe.write(&[1]);
        }
    }

    /// Take every waiting event. The consumer reads the pipe's bytes first, then drains.
    pub fn drain(&self) -> Vec<Event> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.signalled = false;
        std::mem::take(&mut inner.events)
    }

    /// The readable end of the wake-up pipe (owned by the sink: do not close it).
    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.reader.as_raw_fd()
    }
}

/// How late ticks ran, and how long they took, in 50 µs buckets up to 50 ms.
#[derive(Debug, Clone, Default)]
pub struct TickStats {
    pub ticks: u64,
    pub lateness_us: Vec<u64>,
    pub busy_us_total: u64,
    pub legs: usize,
    pub rooms: usize,
    pub recordings: usize,
    pub passthrough_rooms: usize,
    pub send_errors: u64,
    /// Frames dropped because the shard fell more than 200 ms behind (overload).
    pub skipped_ticks: u64,
    /// RTP packets dropped on SRTP legs: failed authentication, replays, plain RTP.
    pub srtp_rejected: u64,
    /// RTCP packets dropped on SRTP legs (some phones send a few in clear text).
    pub srtcp_rejected: u64,
}

const BUCKET_US: u64 = 50;
const BUCKETS: usize = 1001;

impl TickStats {
    fn record(&mut self, lateness: Duration) {
        if self.lateness_us.is_empty() {
            self.lateness_us = vec![0; BUCKETS];
        }
        let b = (lateness.as_micros() as u64 / BUCKET_US).min(BUCKETS as u64 - 1) as usize;
        self.lateness_us[b] += 1;
        self.ticks += 1;
    }

    /// Lateness at quantile `q` in ms (bucket upper bound).
    pub fn lateness_quantile_ms(&self, q: f64) -> f64 {
        let total: u64 = self.lateness_us.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let target = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.lateness_us.iter().enumerate() {
            seen += n;
            if seen >= target {
                return ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        (BUCKETS as u64 * BUCKET_US) as f64 / 1000.0
    }

    fn merge(&mut self, o: &TickStats) {
        if self.lateness_us.is_empty() {
            self.lateness_us = vec![0; BUCKETS];
        }
        for (a, b) in self.lateness_us.iter_mut().zip(&o.lateness_us) {
            *a += b;
        }
        self.ticks += o.ticks;
        self.busy_us_total += o.busy_us_total;
        self.legs += o.legs;
        self.rooms += o.rooms;
        self.recordings += o.recordings;
        self.passthrough_rooms += o.passthrough_rooms;
        self.send_errors += o.send_errors;
        self.skipped_ticks += o.skipped_ticks;
        self.srtp_rejected += o.srtp_rejected;
        self.srtcp_rejected += o.srtcp_rejected;
    }
}

/// Ids are sequential integers: a multiply-rotate hash is enough and far cheaper than SipHash.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
}

type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// A shard's thread, taken when the engine stops.
type ShardThread = Mutex<Option<JoinHandle<()>>>;

/// Decoded prompts by path, with the file's modification time when decoded.
type PromptCache = HashMap<PathBuf, (SystemTime, Arc<[i16]>)>;

type Reply<T> = mpsc::SyncSender<Result<T, MediaError>>;

enum Cmd {
    AddLeg {
        id: LegId,
        rtp: StdUdpSocket,
        rtcp: StdUdpSocket,
        cfg: LegConfig,
        ssrc: u32,
        webrtc: Option<Box<WebRtc>>,
    },
    WebRtcSdp {
        leg: LegId,
        op: SdpOp,
        reply: Reply<String>,
    },
    Release {
        leg: LegId,
    },
    SetRemote {
        leg: LegId,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    },
    SetCodec {
        leg: LegId,
        law: Law,
        dtmf_pt: Option<u8>,
    },
    SetInband {
        leg: LegId,
        on: bool,
    },
    SetSrtp {
        leg: LegId,
        local: Box<[u8; srtp::KEY_LEN]>,
        remote: Box<[u8; srtp::KEY_LEN]>,
    },
    SetTimeout {
        leg: LegId,
        ms: u32,
    },
    Play {
        leg: LegId,
        prompt: Prompt,
    },
    StopPlay {
        leg: LegId,
    },
    SendDtmf {
        leg: LegId,
        digits: String,
        duration_ms: u32,
    },
    StartAmd {
        leg: LegId,
        cfg: AmdConfig,
    },
    RoomCreate {
        room: RoomId,
    },
    RoomJoin {
        room: RoomId,
        leg: LegId,
        mode: RoomMode,
        reply: Reply<()>,
    },
    RoomLeave {
        room: RoomId,
        leg: LegId,
    },
    RoomDestroy {
        room: RoomId,
    },
    RecStart {
        rec: RecordingId,
        left: Option<LegId>,
        right: Option<LegId>,
    },
    RecPause {
        rec: RecordingId,
        paused: bool,
    },
    RecSources {
        rec: RecordingId,
        left: Option<LegId>,
        right: Option<LegId>,
    },
    RecStop {
        rec: RecordingId,
    },
    LegStats {
        leg: LegId,
        reply: Reply<LegStats>,
    },
    Stats {
        reply: Reply<TickStats>,
        reset: bool,
    },
    Shutdown,
}

/// An SDP step on a browser leg, done on its shard (where its session lives).
enum SdpOp {
    /// Answer the browser's (re-)offer.
    AcceptOffer(String),
    /// Offer with this direction (hold: sendonly).
    Offer(String),
    AcceptAnswer(String),
}

enum WriterMsg {
    Open {
        rec: RecordingId,
        path: PathBuf,
        file: File,
    },
    Data {
        rec: RecordingId,
        bytes: Vec<u8>,
    },
    Close {
        rec: RecordingId,
    },
}

/// Where each id lives.
#[derive(Default)]
struct Directory {
    legs: HashMap<LegId, usize>,
    rooms: HashMap<RoomId, usize>,
    recordings: HashMap<RecordingId, usize>,
}

pub struct Engine {
    cfg: EngineConfig,
    shards: Vec<(tmpsc::UnboundedSender<Cmd>, ShardThread)>,
    writer: Mutex<Option<mpsc::Sender<WriterMsg>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    dir: Mutex<Directory>,
    next_id: AtomicU64,
    next_port: Mutex<u16>,
    events: Arc<EventSink>,
    prompts: Mutex<PromptCache>,
    clock_stop: Arc<AtomicBool>,
    clock_thread: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    pub fn start(cfg: EngineConfig) -> Result<Self, MediaError> {
        if cfg.shards == 0 || cfg.shards > 64 {
            return Err(MediaError::BadConfig(format!(
                "shards must be 1–64, not {}",
                cfg.shards
            )));
        }
        if cfg.port_min < 1024 || cfg.port_max <= cfg.port_min {
            return Err(MediaError::BadConfig(format!(
                "RTP port range {}–{} must be above 1023 and hold at least one pair",
                cfg.port_min, cfg.port_max
            )));
        }
        let events = Arc::new(EventSink::new()?);
        let (wtx, wrx) = mpsc::channel();
        let wevents = events.clone();
        let pool: BufferPool = Arc::default();
        let wpool = pool.clone();
        let writer = std::thread::Builder::new()
            .name("ccorch-rec".into())
            .spawn(move || writer_loop(wrx, &wevents, &wpool))?;
        let epoch = Instant::now();
        let mut shards = Vec::new();
        let mut clocks = Vec::new();
        for i in 0..cfg.shards {
            let (tx, rx) = tmpsc::unbounded_channel();
            let clock = Arc::new(Notify::new());
            clocks.push(clock.clone());
            let setup = ShardSetup {
                events: events.clone(),
                writer: wtx.clone(),
                epoch,
                passthrough: cfg.passthrough,
                clock,
                pool: pool.clone(),
            };
            let h = std::thread::Builder::new()
                .name(format!("ccorch-media-{i}"))
                .spawn(move || run_shard(rx, setup))?;
            shards.push((tx, Mutex::new(Some(h))));
        }
        let clock_stop = Arc::new(AtomicBool::new(false));
        let stop = clock_stop.clone();
        let clock_thread = std::thread::Builder::new()
            .name("ccorch-media-clock".into())
            .spawn(move || clock_loop(epoch, &clocks, &stop))?;
        let port = cfg.port_min + (cfg.port_min & 1);
        Ok(Engine {
            cfg,
            shards,
            writer: Mutex::new(Some(wtx)),
            writer_thread: Mutex::new(Some(writer)),
            dir: Mutex::new(Directory::default()),
            next_id: AtomicU64::new(1),
            next_port: Mutex::new(port),
            events,
            prompts: Mutex::new(HashMap::new()),
            clock_stop,
            clock_thread: Mutex::new(Some(clock_thread)),
        })
    }

    pub fn events(&self) -> &Arc<EventSink> {
        &self.events
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    fn dir(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.dir.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, shard: usize, cmd: Cmd) -> Result<(), MediaError> {
        self.shards
            .get(shard)
            .ok_or(MediaError::Stopped)?
            .0
            .send(cmd)
            .map_err(|_| MediaError::Stopped)
    }

    fn leg_shard(&self, leg: LegId) -> Result<usize, MediaError> {
        self.dir()
            .legs
            .get(&leg)
            .copied()
            .ok_or(MediaError::UnknownLeg(leg))
    }

    fn to_leg(&self, leg: LegId, cmd: Cmd) -> Result<(), MediaError> {
        let s = self.leg_shard(leg)?;
        self.send(s, cmd)
    }

    fn ask<T>(&self, shard: usize, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, MediaError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(shard, make(tx))?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => MediaError::Busy,
                mpsc::RecvTimeoutError::Disconnected => MediaError::Stopped,
            })?
    }

    fn bind_pair(&self) -> Result<(StdUdpSocket, StdUdpSocket, u16), MediaError> {
        let mut next = self.next_port.lock().unwrap_or_else(|p| p.into_inner());
        let (min, max) = (
            self.cfg.port_min + (self.cfg.port_min & 1),
            self.cfg.port_max,
        );
        let pairs = (max - min) / 2 + 1;
        for _ in 0..pairs {
            let port = *next;
            *next = if port.saturating_add(2) >= max {
                min
            } else {
                port + 2
            };
            let Ok(rtp) = StdUdpSocket::bind((self.cfg.bind_ip, port)) else {
                continue;
            };
            let Ok(rtcp) = StdUdpSocket::bind((self.cfg.bind_ip, port + 1)) else {
                continue;
            };
            rtp.set_nonblocking(true)?;
            rtcp.set_nonblocking(true)?;
            return Ok((rtp, rtcp, port));
        }
        Err(MediaError::NoFreePorts {
            min: self.cfg.port_min,
            max: self.cfg.port_max,
        })
    }

    fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new leg with its RTP/RTCP port pair; legs that will share a room need the same group.
    pub fn allocate_leg(&self, group: u64, cfg: LegConfig) -> Result<(LegId, u16), MediaError> {
        let (rtp, rtcp, port) = self.bind_pair()?;
        let id = self.add_leg(group, rtp, rtcp, cfg, None)?;
        Ok((id, port))
    }

    /// Hand a leg's sockets to its shard (chosen by `group`); its id.
    fn add_leg(
        &self,
        group: u64,
        rtp: StdUdpSocket,
        rtcp: StdUdpSocket,
        cfg: LegConfig,
        webrtc: Option<Box<WebRtc>>,
    ) -> Result<LegId, MediaError> {
        let id = self.new_id();
        let shard = (group % self.shards.len() as u64) as usize;
        // SSRC: unpredictable enough for loop detection, distinct per leg.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let ssrc = (id as u32).wrapping_mul(0x9e37_79b9) ^ nanos;
        self.send(
            shard,
            Cmd::AddLeg {
                id,
                rtp,
                rtcp,
                cfg,
                ssrc,
                webrtc,
            },
        )?;
        self.dir().legs.insert(id, shard);
        Ok(id)
    }

    /// A browser leg (WebRTC: ICE-lite, DTLS-SRTP on one port) answering `offer`, or
    /// offering when there is none: its id, port, and our SDP. Its codec follows the SDP.
    pub fn allocate_webrtc_leg(
        &self,
        group: u64,
        offer: Option<&str>,
        mut cfg: LegConfig,
    ) -> Result<(LegId, u16, String), MediaError> {
        let (rtp, rtcp, port) = self.bind_pair()?;
        let local = rtp.local_addr()?;
        let now = Instant::now();
        let mut rtc = WebRtc::new(local, now, self.cfg.browser_opus).map_err(webrtc_error)?;
        let sdp = match offer {
            Some(o) => rtc.accept_offer(o, now),
            None => rtc.create_offer("sendrecv"),
        }
        .map_err(webrtc_error)?;
        if let Some((law, dtmf_pt)) = rtc.codec() {
            cfg.law = law;
            cfg.dtmf_pt = dtmf_pt;
        }
        cfg.symmetric = true;
        let id = self.add_leg(group, rtp, rtcp, cfg, Some(Box::new(rtc)))?;
        Ok((id, port, sdp))
    }

    /// Answer a browser's re-offer (hold, resume) on its leg.
    pub fn webrtc_accept_offer(&self, leg: LegId, offer: &str) -> Result<String, MediaError> {
        let shard = self.leg_shard(leg)?;
        let op = SdpOp::AcceptOffer(offer.to_owned());
        self.ask(shard, |reply| Cmd::WebRtcSdp { leg, op, reply })
    }

    /// Our (re-)offer to a browser leg, `direction` as in SDP.
    pub fn webrtc_offer(&self, leg: LegId, direction: &str) -> Result<String, MediaError> {
        let shard = self.leg_shard(leg)?;
        let op = SdpOp::Offer(direction.to_owned());
        self.ask(shard, |reply| Cmd::WebRtcSdp { leg, op, reply })
    }

    /// The browser's answer to our last offer.
    pub fn webrtc_accept_answer(&self, leg: LegId, answer: &str) -> Result<(), MediaError> {
        let shard = self.leg_shard(leg)?;
        let op = SdpOp::AcceptAnswer(answer.to_owned());
        self.ask(shard, |reply| Cmd::WebRtcSdp { leg, op, reply })
            .map(|_| ())
    }

    pub fn release_leg(&self, leg: LegId) -> Result<(), MediaError> {
        let s = self
            .dir()
            .legs
            .remove(&leg)
            .ok_or(MediaError::UnknownLeg(leg))?;
        self.send(s, Cmd::Release { leg })
    }

    pub fn set_remote(
        &self,
        leg: LegId,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), MediaError> {
        self.to_leg(leg, Cmd::SetRemote { leg, rtp, rtcp })
    }

    pub fn set_codec(&self, leg: LegId, law: Law, dtmf_pt: Option<u8>) -> Result<(), MediaError> {
        self.to_leg(leg, Cmd::SetCodec { leg, law, dtmf_pt })
    }

    pub fn set_inband_dtmf(&self, leg: LegId, on: bool) -> Result<(), MediaError> {
        self.to_leg(leg, Cmd::SetInband { leg, on })
    }

    /// Protect the leg with SRTP (SDES keys: ours, the peer's); from now on a packet that
    /// does not authenticate with the peer's key is dropped, and all we send is encrypted.
    pub fn set_srtp(
        &self,
        leg: LegId,
        local: [u8; srtp::KEY_LEN],
        remote: [u8; srtp::KEY_LEN],
    ) -> Result<(), MediaError> {
        // the keys are checked here, where an error can still reach the caller
        srtp::Srtp::new(&local, &remote).map_err(|e| MediaError::BadConfig(e.to_string()))?;
        self.to_leg(
            leg,
            Cmd::SetSrtp {
                leg,
                local: Box::new(local),
                remote: Box::new(remote),
            },
        )
    }

    pub fn set_media_timeout(&self, leg: LegId, ms: u32) -> Result<(), MediaError> {
        self.to_leg(leg, Cmd::SetTimeout { leg, ms })
    }

    /// Decode a WAV prompt, cached by path until the file changes.
    pub fn load_prompt(&self, path: &Path) -> Result<Arc<[i16]>, MediaError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| MediaError::Prompt(format!("{}: {e}", path.display())))?;
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some((t, s)) = self
            .prompts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
        {
            if *t == mtime {
                return Ok(s.clone());
            }
        }
        let bytes = std::fs::read(path)
            .map_err(|e| MediaError::Prompt(format!("{}: {e}", path.display())))?;
        let samples: Arc<[i16]> = read_prompt(&bytes)
            .map_err(|e: WavError| MediaError::Prompt(format!("{}: {e}", path.display())))?
            .into();
        self.prompts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_path_buf(), (mtime, samples.clone()));
        Ok(samples)
    }

    pub fn play(
        &self,
        leg: LegId,
        samples: Arc<[i16]>,
        looping: bool,
        barge_in: bool,
    ) -> Result<PlayId, MediaError> {
        let id = self.new_id();
        self.to_leg(
            leg,
            Cmd::Play {
                leg,
                prompt: Prompt {
                    id,
                    samples,
                    looping,
                    barge_in,
                },
            },
        )?;
        Ok(id)
    }

    pub fn stop_playback(&self, leg: LegId) -> Result<(), MediaError> {
        self.to_leg(leg, Cmd::StopPlay { leg })
    }

    pub fn send_dtmf(&self, leg: LegId, digits: &str, duration_ms: u32) -> Result<(), MediaError> {
        if let Some(c) = digits
            .chars()
            .find(|&c| ToneGenerator::for_digit(c, 1.0).is_none())
        {
            return Err(MediaError::BadDigit(c));
        }
        self.to_leg(
            leg,
            Cmd::SendDtmf {
                leg,
                digits: digits.to_string(),
                duration_ms,
            },
        )
    }

    pub fn start_amd(&self, leg: LegId, cfg: AmdConfig) -> Result<(), MediaError> {
        self.to_leg(leg, Cmd::StartAmd { leg, cfg })
    }

    pub fn create_room(&self, group: u64) -> Result<RoomId, MediaError> {
        self.create_room_on((group % self.shards.len() as u64) as usize)
    }

    fn create_room_on(&self, shard: usize) -> Result<RoomId, MediaError> {
        let id = self.new_id();
        self.send(shard, Cmd::RoomCreate { room: id })?;
        self.dir().rooms.insert(id, shard);
        Ok(id)
    }

    fn room_shard(&self, room: RoomId, leg: LegId) -> Result<usize, MediaError> {
        let dir = self.dir();
        let rs = *dir.rooms.get(&room).ok_or(MediaError::UnknownRoom(room))?;
        let ls = *dir.legs.get(&leg).ok_or(MediaError::UnknownLeg(leg))?;
        if rs != ls {
            return Err(MediaError::DifferentShards { leg, room });
        }
        Ok(rs)
    }

    /// Add a leg to a room, or change its mode if it is there already (effective next frame).
    pub fn join_room(&self, room: RoomId, leg: LegId, mode: RoomMode) -> Result<(), MediaError> {
        let s = self.room_shard(room, leg)?;
        if let RoomMode::Whisper(target) = mode {
            self.room_shard(room, target)?;
        }
        self.ask(s, |reply| Cmd::RoomJoin {
            room,
            leg,
            mode,
            reply,
        })
    }

    pub fn leave_room(&self, room: RoomId, leg: LegId) -> Result<(), MediaError> {
        let s = self.room_shard(room, leg)?;
        self.send(s, Cmd::RoomLeave { room, leg })
    }

    pub fn destroy_room(&self, room: RoomId) -> Result<(), MediaError> {
        let s = self
            .dir()
            .rooms
            .remove(&room)
            .ok_or(MediaError::UnknownRoom(room))?;
        self.send(s, Cmd::RoomDestroy { room })
    }

    /// Bridge two legs both ways: a two-party room.
    ///
    /// Answered from the directory without waiting for the media thread (a call set-up
    /// must not wait for a tick): the shard applies the create and both joins in order.
    pub fn bridge(&self, a: LegId, b: LegId) -> Result<RoomId, MediaError> {
        let shard = self.leg_shard(a)?;
        let room = self.create_room_on(shard)?;
        if self.leg_shard(b)? != shard {
            let _ = self.destroy_room(room);
            return Err(MediaError::DifferentShards { leg: b, room });
        }
        for leg in [a, b] {
            // Nobody waits on this reply; the legs were checked above.
            let (reply, _) = mpsc::sync_channel(1);
            self.send(
                shard,
                Cmd::RoomJoin {
                    room,
                    leg,
                    mode: RoomMode::Full,
                    reply,
                },
            )?;
        }
        Ok(room)
    }

    /// Start a stereo recording: `left` is what that leg's party says (the caller), `right`
    /// the other (the agent). The file is created now, so a bad path fails here.
    pub fn start_recording(
        &self,
        path: &Path,
        left: Option<LegId>,
        right: Option<LegId>,
    ) -> Result<RecordingId, MediaError> {
        let any = left
            .or(right)
            .ok_or_else(|| MediaError::BadConfig("a recording needs at least one leg".into()))?;
        let shard = self.leg_shard(any)?;
        for l in [left, right].into_iter().flatten() {
            if self.leg_shard(l)? != shard {
                return Err(MediaError::BadConfig(
                    "recorded legs must share a group".into(),
                ));
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file =
            File::create(path).map_err(|e| MediaError::Io(format!("{}: {e}", path.display())))?;
        file.write_all_at(&pcm16_header(2, 0), 0)?;
        let rec = self.new_id();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer
            .as_ref()
            .ok_or(MediaError::Stopped)?
            .send(WriterMsg::Open {
                rec,
                path: path.to_path_buf(),
                file,
            })
            .map_err(|_| MediaError::Stopped)?;
        self.send(shard, Cmd::RecStart { rec, left, right })?;
        self.dir().recordings.insert(rec, shard);
        Ok(rec)
    }

    fn rec_shard(&self, rec: RecordingId) -> Result<usize, MediaError> {
        self.dir()
            .recordings
            .get(&rec)
            .copied()
            .ok_or(MediaError::UnknownRecording(rec))
    }

    pub fn pause_recording(&self, rec: RecordingId, paused: bool) -> Result<(), MediaError> {
        let s = self.rec_shard(rec)?;
        self.send(s, Cmd::RecPause { rec, paused })
    }

    /// Re-point a recording's channels (after a transfer the new agent goes on the right).
    pub fn set_recording_sources(
        &self,
        rec: RecordingId,
        left: Option<LegId>,
        right: Option<LegId>,
    ) -> Result<(), MediaError> {
        let s = self.rec_shard(rec)?;
        for l in [left, right].into_iter().flatten() {
            if self.leg_shard(l)? != s {
                return Err(MediaError::BadConfig(
                    "recorded legs must share a group".into(),
                ));
            }
        }
        self.send(s, Cmd::RecSources { rec, left, right })
    }

    /// Stop and finalize; [`Event::RecordingStopped`] follows once the file is synced.
    pub fn stop_recording(&self, rec: RecordingId) -> Result<(), MediaError> {
        let s = self
            .dir()
            .recordings
            .remove(&rec)
            .ok_or(MediaError::UnknownRecording(rec))?;
        self.send(s, Cmd::RecStop { rec })
    }

    pub fn leg_stats(&self, leg: LegId) -> Result<LegStats, MediaError> {
        let s = self.leg_shard(leg)?;
        self.ask(s, |reply| Cmd::LegStats { leg, reply })
    }

    /// Engine-wide figures; `reset` starts a new measuring window (tick histogram and CPU).
    pub fn stats(&self, reset: bool) -> Result<TickStats, MediaError> {
        let mut total = TickStats::default();
        for s in 0..self.shards.len() {
            total.merge(&self.ask(s, |reply| Cmd::Stats { reply, reset })?);
        }
        Ok(total)
    }

    /// Stop every shard (open recordings are finalized) and the writer.
    pub fn shutdown(&self) {
        self.clock_stop.store(true, Ordering::Relaxed);
        if let Some(h) = self
            .clock_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
        for (tx, _) in &self.shards {
            let _ = tx.send(Cmd::Shutdown);
        }
        for (_, h) in &self.shards {
            if let Some(h) = h.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = h.join();
            }
        }
        drop(self.writer.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(h) = self
            .writer_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn writer_loop(rx: mpsc::Receiver<WriterMsg>, events: &EventSink, pool: &BufferPool) {
    struct Open {
        path: PathBuf,
        file: File,
        data_len: u64,
    }
    let mut files: HashMap<RecordingId, Open> = HashMap::new();
    let close = |rec: RecordingId, o: Open, events: &EventSink| {
        let result = o.file.sync_all();
        events.push([match result {
            Ok(()) => Event::RecordingStopped {
                recording: rec,
                path: o.path,
                duration_ms: o.data_len / 32,
                bytes: o.data_len + 44,
            },
            Err(e) => Event::RecordingFailed {
                recording: rec,
                error: e.to_string(),
            },
        }]);
    };
    // The channel closes when the engine and every shard are gone.
    while let Ok(msg) = rx.recv() {
        match msg {
            WriterMsg::Open { rec, path, file } => {
                files.insert(
                    rec,
                    Open {
                        path,
                        file,
                        data_len: 0,
                    },
                );
            }
            WriterMsg::Data { rec, bytes } => {
                let Some(o) = files.get_mut(&rec) else {
                    continue;
                };
                let new_len = o.data_len + bytes.len() as u64;
                // Data first, then the header that makes it count: a crash between the two
                // leaves a valid file that ends at the previous flush.
                let ok = o.file.write_all_at(&bytes, 44 + o.data_len).and_then(|()| {
                    o.file.write_all_at(
                        &pcm16_header(2, u32::try_from(new_len).unwrap_or(u32::MAX)),
                        0,
                    )
                });
                let mut bytes = bytes;
                bytes.clear();
                let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
                if pool.len() < 4096 {
                    pool.push(bytes);
                }
                drop(pool);
                match ok {
                    Ok(()) => o.data_len = new_len,
                    Err(e) => {
                        files.remove(&rec);
                        events.push([Event::RecordingFailed {
                            recording: rec,
                            error: e.to_string(),
                        }]);
                    }
                }
            }
            WriterMsg::Close { rec } => {
                if let Some(o) = files.remove(&rec) {
                    close(rec, o, events);
                }
            }
        }
    }
    for (rec, o) in files.drain() {
        close(rec, o, events);
    }
}

struct LegSlot {
    leg: Leg,
    /// Sends always go through this (non-blocking) socket. Reads: by the shard's tick (see
    /// [`BatchReceiver`]) for a leg whose audio is played out on the tick anyway; by
    /// `rtp_task` (a registered duplicate of it) for a leg forwarded packet by packet (a
    /// pass-through room: waiting for the tick would delay the audio by up to 20 ms) and
    /// for a browser (ICE and DTLS answer as soon as a packet comes).
    rtp: StdUdpSocket,
    rtp_task: Option<TaskHandle<()>>,
    rtcp: Rc<UdpSocket>,
    tasks: [TaskHandle<()>; 1],
    room: Option<RoomId>,
    mixed: Option<[i16; FRAME]>,
    recorded: u32,
    /// This tick's frame of the party's audio for its recordings (by RTP timestamp).
    rec_frame: [i16; FRAME],
    /// SDES-keyed SRTP: every packet in is checked and decrypted, every packet out protected
    srtp: Option<srtp::Srtp>,
    /// A browser: its WebRTC session carries the leg's RTP (and does its own RTCP).
    webrtc: Option<Box<WebRtc>>,
    webrtc_io: WebRtcIo,
    /// What was reported of the browser's session: 0 nothing, 1 connected, 2 failed.
    webrtc_reported: u8,
}

fn webrtc_error(e: WebRtcError) -> MediaError {
    MediaError::WebRtc(e.to_string())
}

impl LegSlot {
    /// Send an RTP or RTCP packet of this leg, protected when the leg is SRTP.
    fn send(&mut self, packet: &[u8], to: SocketAddr, rtcp: bool, stats: &mut TickStats) {
        if let Some(w) = self.webrtc.as_mut() {
            if !rtcp {
                w.send_rtp(Instant::now(), packet, &mut self.webrtc_io);
                self.flush_webrtc(stats);
            }
            return;
        }
        let send = |bytes: &[u8]| {
            if rtcp {
                self.rtcp.try_send_to(bytes, to).is_ok()
            } else {
                self.rtp.send_to(bytes, to).is_ok()
            }
        };
        let sent = match self.srtp.as_mut() {
            None => send(packet),
            Some(s) => match s.protect(packet) {
                Ok(wire) => send(&wire),
                Err(_) => false,
            },
        };
        if !sent && !rtcp {
            stats.send_errors += 1;
        }
    }
}

impl LegSlot {
    /// Where this leg's packets go: the RTP peer, or (a browser) its session, which knows.
    fn peer(&self) -> Option<SocketAddr> {
        self.leg
            .remote
            .or_else(|| self.webrtc.as_ref().map(|w| w.local()))
    }

    /// Send what the browser's session wants sent (STUN, DTLS, SRTP, SRTCP).
    fn flush_webrtc(&mut self, stats: &mut TickStats) {
        for (to, datagram) in &self.webrtc_io.transmit {
            if self.rtp.send_to(datagram, *to).is_err() {
                stats.send_errors += 1;
            }
        }
        self.webrtc_io.clear_transmit();
    }

    /// A state change of the browser's session to report (once each). A failed session
    /// stays (disconnected: it sends nothing, so never plain RTP) until the leg is released.
    fn webrtc_change(&mut self) -> Option<(bool, String)> {
        let w = self.webrtc.as_ref()?;
        match (w.state(), self.webrtc_reported) {
            (WebRtcState::Connected, 0) => {
                self.webrtc_reported = 1;
                Some((true, String::new()))
            }
            (WebRtcState::Failed(reason), 0 | 1) => {
                self.webrtc_reported = 2;
                Some((false, reason.clone()))
            }
            _ => None,
        }
    }
}

impl Drop for LegSlot {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(&self.rtp_task) {
            t.abort();
        }
    }
}

struct Member {
    leg: LegId,
    mode: RoomMode,
}

#[derive(Default)]
struct Room {
    members: Vec<Member>,
    passthrough: bool,
}

struct Recording {
    left: Option<LegId>,
    right: Option<LegId>,
    paused: bool,
    buf: Vec<u8>,
    /// Bytes at which the next flush happens: the first is staggered by id, so recordings
    /// started together do not all flush in the same tick.
    flush_at: usize,
}

/// One second of stereo PCM16: the recorder's write size.
const REC_FLUSH_BYTES: usize = 8000 * 4;

/// Emptied recording buffers come back from the writer, so a flush does not allocate.
type BufferPool = Arc<Mutex<Vec<Vec<u8>>>>;

fn pooled_buffer(pool: &BufferPool) -> Vec<u8> {
    pool.lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(2 * REC_FLUSH_BYTES))
}

struct Shard {
    legs: IdMap<LegId, LegSlot>,
    rooms: IdMap<RoomId, Room>,
    recs: IdMap<RecordingId, Recording>,
    events: Arc<EventSink>,
    writer: mpsc::Sender<WriterMsg>,
    epoch: Instant,
    pending: Vec<Event>,
    leg_events: Vec<LegEvent>,
    buf: Vec<u8>,
    stats: TickStats,
    scratch: [i32; FRAME],
    room_in: Vec<[i16; FRAME]>,
    room_out: Vec<[i16; FRAME]>,
    speak: Vec<Speak>,
    passthrough: bool,
    pool: BufferPool,
    tick_legs: Vec<LegId>,
    tick_rooms: Vec<RoomId>,
    recv_legs: Vec<LegId>,
    rx: BatchReceiver,
    /// Legs whose RTP reader must change (tick or task), found by the tick.
    reader_changes: Vec<LegId>,
}

/// What a shard thread starts with.
struct ShardSetup {
    events: Arc<EventSink>,
    writer: mpsc::Sender<WriterMsg>,
    epoch: Instant,
    passthrough: bool,
    clock: Arc<Notify>,
    pool: BufferPool,
}

fn run_shard(rx: tmpsc::UnboundedReceiver<Cmd>, setup: ShardSetup) {
    let ShardSetup {
        events,
        writer,
        epoch,
        passthrough,
        clock,
        pool,
    } = setup;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccorch media shard could not start its runtime: {e}");
            return;
        }
    };
    let local = LocalSet::new();
    local.block_on(&rt, async move {
        let shard = Rc::new(RefCell::new(Shard {
            legs: IdMap::default(),
            rooms: IdMap::default(),
            recs: IdMap::default(),
            events,
            writer,
            epoch,
            pending: Vec::new(),
            leg_events: Vec::new(),
            buf: Vec::with_capacity(256),
            stats: TickStats::default(),
            scratch: [0; FRAME],
            room_in: Vec::new(),
            room_out: Vec::new(),
            speak: Vec::new(),
            passthrough,
            pool,
            tick_legs: Vec::new(),
            tick_rooms: Vec::new(),
            recv_legs: Vec::new(),
            rx: BatchReceiver::new(),
            reader_changes: Vec::new(),
        }));
        let ticker = tokio::task::spawn_local(tick_loop(shard.clone(), clock));
        let mut rx = rx;
        while let Some(cmd) = rx.recv().await {
            if matches!(cmd, Cmd::Shutdown) {
                break;
            }
            Shard::apply(&shard, cmd);
        }
        ticker.abort();
        let mut s = shard.borrow_mut();
        let recs: Vec<RecordingId> = s.recs.keys().copied().collect();
        for rec in recs {
            s.stop_recording(rec);
        }
        s.legs.clear();
    });
}

/// The engine's 20 ms clock: one thread sleeping to absolute deadlines (sub-millisecond,
/// where the runtime's timer rounds to whole milliseconds) that wakes every shard.
fn clock_loop(epoch: Instant, shards: &[Arc<Notify>], stop: &AtomicBool) {
    let mut n: u32 = 1;
    while !stop.load(Ordering::Relaxed) {
        let due = epoch + FRAME_PERIOD * n;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        for s in shards {
            s.notify_one();
        }
        n = n.wrapping_add(1);
    }
}

const FRAME_PERIOD: Duration = Duration::from_millis(20);
const CATCH_UP_DRAIN: Duration = Duration::from_millis(4);
const MAX_CATCH_UP_TICKS: u128 = 10;

async fn tick_loop(shard: Rc<RefCell<Shard>>, clock: Arc<Notify>) {
    let epoch = shard.borrow().epoch;
    let mut next: u32 = 1;
    loop {
        clock.notified().await;
        // Every tick that is due runs, in order, after a short stall; an overload longer
        // than MAX_CATCH_UP_TICKS drops frames instead of falling further behind.
        loop {
            let scheduled = epoch + FRAME_PERIOD * next;
            let started = Instant::now();
            if scheduled > started {
                break;
            }
            let behind = (started - scheduled).as_millis() / 20;
            if behind > MAX_CATCH_UP_TICKS {
                let skip = u32::try_from(behind).unwrap_or(u32::MAX);
                next = next.wrapping_add(skip);
                shard.borrow_mut().stats.skipped_ticks += u64::from(skip);
                continue;
            }
            {
                let mut s = shard.borrow_mut();
                s.receive(started.saturating_duration_since(scheduled) > CATCH_UP_DRAIN);
                s.tick(u64::from(next) * 20);
                s.stats.record(started.saturating_duration_since(scheduled));
                s.stats.busy_us_total += started.elapsed().as_micros() as u64;
            }
            Shard::place_readers(&shard);
            next = next.wrapping_add(1);
            // Let receive tasks and commands run between catch-up ticks.
            tokio::task::yield_now().await;
        }
    }
}

/// A task reading a leg's RTP as packets come, on a registered duplicate of its socket.
fn rtp_reader(
    shard: &Rc<RefCell<Shard>>,
    leg: LegId,
    rtp: &StdUdpSocket,
) -> Option<TaskHandle<()>> {
    let sock = UdpSocket::from_std(rtp.try_clone().ok()?).ok()?;
    Some(tokio::task::spawn_local(recv_loop(
        shard.clone(),
        leg,
        Rc::new(sock),
    )))
}

async fn recv_loop(shard: Rc<RefCell<Shard>>, leg: LegId, sock: Rc<UdpSocket>) {
    let mut buf = vec![0u8; 2048];
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        let mut s = shard.borrow_mut();
        let now = s.now_ms();
        // Drain what is queued in one borrow: one wake-up, many datagrams under load.
        for _ in 0..64 {
            match sock.try_recv_from(&mut buf) {
                Ok((n, src)) => s.on_datagram(leg, src, &buf[..n], now),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break, // ICMP errors surface here; the socket stays usable
            }
        }
    }
}

impl Shard {
    /// Give a leg that entered a pass-through room its own reader task, and hand a leg that
    /// left one back to the tick (a browser leg keeps its task).
    fn place_readers(shard: &Rc<RefCell<Shard>>) {
        let mut s = shard.borrow_mut();
        let changes = std::mem::take(&mut s.reader_changes);
        for &id in &changes {
            let pass = s.in_passthrough_room(id);
            let Some(slot) = s.legs.get_mut(&id) else {
                continue;
            };
            let wanted = pass || slot.webrtc.is_some();
            match (wanted, slot.rtp_task.take()) {
                (true, None) => slot.rtp_task = rtp_reader(shard, id, &slot.rtp),
                (false, Some(task)) => task.abort(),
                (_, task) => slot.rtp_task = task,
            }
        }
        s.reader_changes = changes;
        s.reader_changes.clear();
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn flush_leg_events(&mut self, leg: LegId) {
        for e in self.leg_events.drain(..) {
            self.pending.push(match e {
                LegEvent::Dtmf(d) => Event::Dtmf {
                    leg,
                    digit: d.digit,
                    duration_ms: d.duration_ms,
                    source: d.source,
                },
                LegEvent::MediaTimeout { silent_ms } => Event::MediaTimeout { leg, silent_ms },
                LegEvent::Amd(decision) => Event::Amd { leg, decision },
                LegEvent::Played(f) => Event::PlaybackFinished {
                    leg,
                    play: f.id,
                    reason: f.reason,
                },
                LegEvent::RtcpBye => Event::RtcpBye { leg },
            });
        }
    }

    fn publish(&mut self) {
        if !self.pending.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            self.events.push(batch);
        }
    }

    /// Read every plain leg's queued RTP, each packet stamped with its kernel arrival time;
    /// when the tick is `late`, the browser legs' too (their tasks could not run meanwhile, and
    /// a frame played before its packet is read would count the packet late).
    fn receive(&mut self, late: bool) {
        let mut rx = std::mem::take(&mut self.rx);
        let mut ids = std::mem::take(&mut self.recv_legs);
        ids.clear();
        ids.extend(self.legs.keys().copied());
        let now = self.now_ms();
        let wall = SystemTime::now();
        let arrived_ms = |at: Option<SystemTime>| match at.and_then(|t| wall.duration_since(t).ok())
        {
            Some(age) => now.saturating_sub(age.as_millis() as u64),
            None => now,
        };
        let mut buf = [0u8; 2048];
        for &id in &ids {
            for _ in 0..8 {
                let got = match self.legs.get(&id) {
                    Some(slot) if slot.rtp_task.is_none() => rx.receive(&slot.rtp),
                    Some(slot) if late => match slot.rtp.recv_from(&mut buf) {
                        Ok((n, src)) => {
                            self.on_datagram(id, src, &buf[..n], now);
                            continue;
                        }
                        Err(_) => break,
                    },
                    _ => break,
                };
                let Ok(n) = got else {
                    break; // an ICMP error of an earlier send: read on at the next tick
                };
                for i in 0..n {
                    if let Some((data, src, at)) = rx.get(i) {
                        self.on_datagram(id, src, data, arrived_ms(at));
                    }
                }
                if n < BATCH {
                    break;
                }
            }
        }
        self.recv_legs = ids;
        self.rx = rx;
    }

    fn on_datagram(&mut self, id: LegId, src: SocketAddr, wire: &[u8], now: u64) {
        let Some(slot) = self.legs.get_mut(&id) else {
            return;
        };
        if let Some(w) = slot.webrtc.as_mut() {
            // a browser: STUN, DTLS and SRTP go to its session; what comes out is plain RTP
            w.receive(Instant::now(), src, wire, &mut slot.webrtc_io);
            slot.flush_webrtc(&mut self.stats);
            let packets = std::mem::take(&mut slot.webrtc_io.rtp);
            for p in &packets {
                self.on_plain(id, src, p, now);
            }
            if let Some(slot) = self.legs.get_mut(&id) {
                slot.webrtc_io.recycle(packets);
            }
            self.report_webrtc(id);
            self.publish();
            return;
        }
        let plain;
        let data = match slot.srtp.as_mut() {
            None => wire,
            Some(s) => match s.unprotect(wire) {
                Ok(p) => {
                    plain = p;
                    &plain[..]
                }
                Err(_) => {
                    // forged, replayed, or plain RTP on an SRTP leg: never heard
                    if srtp::is_rtcp(wire) {
                        self.stats.srtcp_rejected += 1;
                    } else {
                        self.stats.srtp_rejected += 1;
                    }
                    return;
                }
            },
        };
        self.on_plain(id, src, data, now);
        self.publish();
    }

    /// A browser leg's session changed state: tell the consumer once.
    fn report_webrtc(&mut self, id: LegId) {
        if let Some((connected, reason)) = self.legs.get_mut(&id).and_then(|s| s.webrtc_change()) {
            self.pending.push(Event::WebRtcState {
                leg: id,
                connected,
                reason,
            });
        }
    }

    /// One plain RTP or RTCP packet of leg `id` (decrypted when the leg is SRTP or WebRTC).
    fn on_plain(&mut self, id: LegId, src: SocketAddr, data: &[u8], now: u64) {
        let Some(slot) = self.legs.get_mut(&id) else {
            return;
        };
        let kind = slot.leg.on_datagram(now, src, data, &mut self.leg_events);
        let room = slot.room;
        self.flush_leg_events(id);
        if matches!(kind, Received::Audio | Received::Event) {
            if let Some(room) = room
                .and_then(|r| self.rooms.get(&r))
                .filter(|r| r.passthrough)
            {
                if let Some(peer) = room.members.iter().map(|m| m.leg).find(|&l| l != id) {
                    if let Some(p) = self.legs.get_mut(&peer) {
                        if p.leg.forward_from(data, &mut self.buf) {
                            if let Some(remote) = p.peer() {
                                p.send(&self.buf, remote, false, &mut self.stats);
                            }
                        }
                    }
                }
            }
        }
    }

    fn apply(shard: &Rc<RefCell<Shard>>, cmd: Cmd) {
        let mut s = shard.borrow_mut();
        let now = s.now_ms();
        match cmd {
            Cmd::AddLeg {
                id,
                rtp,
                rtcp,
                cfg,
                ssrc,
                webrtc,
            } => {
                let Ok(rtcp) = UdpSocket::from_std(rtcp) else {
                    return;
                };
                let rtcp = Rc::new(rtcp);
                let tasks = [tokio::task::spawn_local(recv_loop(
                    shard.clone(),
                    id,
                    rtcp.clone(),
                ))];
                // Without kernel stamps a packet's arrival is when the tick read it: still
                // correct, only up to 20 ms late for the jitter estimate.
                let _ = enable_timestamps(&rtp);
                let rtp_task = if webrtc.is_some() {
                    let Some(task) = rtp_reader(shard, id, &rtp) else {
                        return;
                    };
                    Some(task)
                } else {
                    None
                };
                let leg = Leg::new(cfg, ssrc, now);
                s.legs.insert(
                    id,
                    LegSlot {
                        leg,
                        rtp,
                        rtp_task,
                        rtcp,
                        tasks,
                        room: None,
                        mixed: None,
                        recorded: 0,
                        rec_frame: [0; FRAME],
                        srtp: None,
                        webrtc,
                        webrtc_io: WebRtcIo::default(),
                        webrtc_reported: 0,
                    },
                );
            }
            Cmd::Release { leg } => {
                if let Some(slot) = s.legs.remove(&leg) {
                    if let Some(r) = slot.room.and_then(|r| s.rooms.get_mut(&r)) {
                        r.members.retain(|m| m.leg != leg);
                    }
                }
                for rec in s.recs.values_mut() {
                    if rec.left == Some(leg) {
                        rec.left = None;
                    }
                    if rec.right == Some(leg) {
                        rec.right = None;
                    }
                }
            }
            Cmd::SetRemote { leg, rtp, rtcp } => s.with_leg(leg, |l| l.set_remote(rtp, rtcp)),
            Cmd::SetCodec { leg, law, dtmf_pt } => s.with_leg(leg, |l| l.set_codec(law, dtmf_pt)),
            Cmd::SetInband { leg, on } => s.with_leg(leg, |l| l.set_inband_dtmf(on)),
            Cmd::SetSrtp { leg, local, remote } => {
                if let Some(slot) = s.legs.get_mut(&leg) {
                    // proven valid by set_srtp before the command was sent
                    slot.srtp = srtp::Srtp::new(&local, &remote).ok();
                }
            }
            Cmd::WebRtcSdp { leg, op, reply } => {
                let _ = reply.send(s.webrtc_sdp(leg, op));
            }
            Cmd::SetTimeout { leg, ms } => s.with_leg(leg, |l| l.set_media_timeout(ms, now)),
            Cmd::Play { leg, prompt } => s.with_leg(leg, |l| l.enqueue_prompt(prompt)),
            Cmd::StopPlay { leg } => {
                let mut evs = Vec::new();
                s.with_leg(leg, |l| l.stop_playback(&mut evs));
                s.leg_events = evs;
                s.flush_leg_events(leg);
                s.publish();
            }
            Cmd::SendDtmf {
                leg,
                digits,
                duration_ms,
            } => s.with_leg(leg, |l| {
                let _ = l.queue_dtmf(&digits, duration_ms); // validated by the engine
            }),
            Cmd::StartAmd { leg, cfg } => s.with_leg(leg, |l| l.start_amd(cfg)),
            Cmd::RoomCreate { room } => {
                s.rooms.insert(room, Room::default());
            }
            Cmd::RoomJoin {
                room,
                leg,
                mode,
                reply,
            } => {
                let _ = reply.send(s.join(room, leg, mode));
            }
            Cmd::RoomLeave { room, leg } => {
                if let Some(r) = s.rooms.get_mut(&room) {
                    r.members.retain(|m| m.leg != leg);
                }
                if let Some(slot) = s.legs.get_mut(&leg).filter(|sl| sl.room == Some(room)) {
                    slot.room = None;
                }
            }
            Cmd::RoomDestroy { room } => {
                if let Some(r) = s.rooms.remove(&room) {
                    for m in r.members {
                        if let Some(slot) = s.legs.get_mut(&m.leg) {
                            slot.room = None;
                        }
                    }
                }
            }
            Cmd::RecStart { rec, left, right } => {
                // From the next packet on, not the next tick: the first words count too.
                for l in [left, right].into_iter().flatten() {
                    s.with_leg(l, |leg| leg.set_recorded(true));
                }
                let buf = pooled_buffer(&s.pool);
                s.recs.insert(
                    rec,
                    Recording {
                        left,
                        right,
                        paused: false,
                        buf,
                        flush_at: REC_FLUSH_BYTES / 2 + (rec as usize % 50) * 640,
                    },
                );
            }
            Cmd::RecPause { rec, paused } => {
                if let Some(r) = s.recs.get_mut(&rec) {
                    r.paused = paused;
                }
            }
            Cmd::RecSources { rec, left, right } => {
                if let Some(r) = s.recs.get_mut(&rec) {
                    r.left = left;
                    r.right = right;
                }
                for l in [left, right].into_iter().flatten() {
                    s.with_leg(l, |leg| leg.set_recorded(true));
                }
            }
            Cmd::RecStop { rec } => s.stop_recording(rec),
            Cmd::LegStats { leg, reply } => {
                let r = s
                    .legs
                    .get(&leg)
                    .map(|sl| sl.leg.stats())
                    .ok_or(MediaError::UnknownLeg(leg));
                let _ = reply.send(r);
            }
            Cmd::Stats { reply, reset } => {
                let mut st = s.stats.clone();
                if reset {
                    s.stats = TickStats::default();
                }
                st.legs = s.legs.len();
                st.rooms = s.rooms.len();
                st.recordings = s.recs.len();
                st.passthrough_rooms = s.rooms.values().filter(|r| r.passthrough).count();
                let _ = reply.send(Ok(st));
            }
            Cmd::Shutdown => {}
        }
    }

    fn webrtc_sdp(&mut self, leg: LegId, op: SdpOp) -> Result<String, MediaError> {
        let slot = self.legs.get_mut(&leg).ok_or(MediaError::UnknownLeg(leg))?;
        let w = slot
            .webrtc
            .as_mut()
            .ok_or_else(|| MediaError::WebRtc(format!("leg {leg} is not a browser leg")))?;
        let now = Instant::now();
        let out = match op {
            SdpOp::AcceptOffer(o) => w.accept_offer(&o, now),
            SdpOp::Offer(direction) => w.create_offer(&direction),
            SdpOp::AcceptAnswer(a) => w.accept_answer(&a, now).map(|()| String::new()),
        }
        .map_err(webrtc_error)?;
        if let Some((law, dtmf_pt)) = w.codec() {
            slot.leg.set_codec(law, dtmf_pt);
        }
        Ok(out)
    }

    fn with_leg(&mut self, leg: LegId, f: impl FnOnce(&mut Leg)) {
        if let Some(slot) = self.legs.get_mut(&leg) {
            f(&mut slot.leg);
        }
    }

    fn join(&mut self, room: RoomId, leg: LegId, mode: RoomMode) -> Result<(), MediaError> {
        let slot = self.legs.get_mut(&leg).ok_or(MediaError::UnknownLeg(leg))?;
        match slot.room {
            Some(r) if r != room => return Err(MediaError::AlreadyInRoom { leg, room: r }),
            _ => {}
        }
        let r = self
            .rooms
            .get_mut(&room)
            .ok_or(MediaError::UnknownRoom(room))?;
        slot.room = Some(room);
        match r.members.iter_mut().find(|m| m.leg == leg) {
            Some(m) => m.mode = mode,
            None => r.members.push(Member { leg, mode }),
        }
        Ok(())
    }

    fn stop_recording(&mut self, rec: RecordingId) {
        if let Some(mut r) = self.recs.remove(&rec) {
            if !r.paused {
                self.take_recorded_tail(&mut r);
            }
            if !r.buf.is_empty() {
                let _ = self.writer.send(WriterMsg::Data {
                    rec,
                    bytes: std::mem::take(&mut r.buf),
                });
            }
            let _ = self.writer.send(WriterMsg::Close { rec });
        }
    }

    /// A recording that stops takes the audio its legs' taps still hold (the 200 ms they
    /// read behind), so the last words are in the file. A leg another recording also reads
    /// is left alone (that one goes on reading it).
    fn take_recorded_tail(&mut self, r: &mut Recording) {
        let sole = |l: Option<LegId>, legs: &IdMap<LegId, LegSlot>| {
            l.filter(|l| legs.get(l).is_some_and(|s| s.recorded <= 1))
        };
        let (left, right) = (sole(r.left, &self.legs), sole(r.right, &self.legs));
        let pending = [left, right]
            .into_iter()
            .flatten()
            .filter_map(|l| self.legs.get(&l))
            .map(|s| s.leg.recorded_pending_frames())
            .max()
            .unwrap_or(0);
        for _ in 0..pending {
            let mut side = |l: Option<LegId>| {
                let mut f = [0i16; FRAME];
                if let Some(slot) = l.and_then(|l| self.legs.get_mut(&l)) {
                    slot.leg.pull_recorded(&mut f);
                }
                f
            };
            let (a, b) = (side(left), side(right));
            for (x, y) in a.iter().zip(&b) {
                r.buf.extend_from_slice(&x.to_le_bytes());
                r.buf.extend_from_slice(&y.to_le_bytes());
            }
        }
    }

    fn in_passthrough_room(&self, leg: LegId) -> bool {
        self.legs
            .get(&leg)
            .and_then(|s| s.room)
            .and_then(|r| self.rooms.get(&r))
            .is_some_and(|r| r.passthrough)
    }

    /// Two full members on the same law, nothing else needing their audio: forward packets.
    fn passthrough_ok(&self, room: &Room) -> bool {
        if !self.passthrough {
            return false;
        }
        let [a, b] = room.members.as_slice() else {
            return false;
        };
        if a.mode != RoomMode::Full || b.mode != RoomMode::Full {
            return false;
        }
        let (Some(la), Some(lb)) = (self.legs.get(&a.leg), self.legs.get(&b.leg)) else {
            return false;
        };
        let (ca, cb) = (la.leg.config(), lb.leg.config());
        ca.law == cb.law
            && ca.dtmf_pt.is_some() == cb.dtmf_pt.is_some()
            && la.recorded == 0
            && lb.recorded == 0
            && !la.leg.needs_audio_path()
            && !lb.leg.needs_audio_path()
    }

    fn tick(&mut self, now_ms: u64) {
        // Which legs are recorded (recording blocks pass-through).
        for slot in self.legs.values_mut() {
            slot.recorded = 0;
            slot.mixed = None;
        }
        for r in self.recs.values() {
            for l in [r.left, r.right].into_iter().flatten() {
                if let Some(slot) = self.legs.get_mut(&l) {
                    slot.recorded += 1;
                }
            }
        }
        // Id lists reused from tick to tick: no allocation on the 20 ms path.
        let mut room_ids = std::mem::take(&mut self.tick_rooms);
        room_ids.clear();
        room_ids.extend(self.rooms.keys().copied());
        for &rid in &room_ids {
            let ok = self.rooms.get(&rid).is_some_and(|r| self.passthrough_ok(r));
            if let Some(r) = self.rooms.get_mut(&rid) {
                r.passthrough = ok;
            }
        }
        // Pull one frame from every decoding leg.
        let mut ids = std::mem::take(&mut self.tick_legs);
        ids.clear();
        ids.extend(self.legs.keys().copied());
        // Browser sessions' timers (ICE consent, DTLS, RTCP, the connect deadline).
        let instant = Instant::now();
        for &id in &ids {
            if let Some(slot) = self.legs.get_mut(&id) {
                if let Some(w) = slot.webrtc.as_mut() {
                    w.tick(instant, &mut slot.webrtc_io);
                    slot.flush_webrtc(&mut self.stats);
                    self.report_webrtc(id);
                }
            }
        }
        for &id in &ids {
            let pass = self.in_passthrough_room(id);
            let mut evs = std::mem::take(&mut self.leg_events);
            if let Some(slot) = self.legs.get_mut(&id) {
                if (pass || slot.webrtc.is_some()) != slot.rtp_task.is_some() {
                    self.reader_changes.push(id);
                }
                slot.leg.set_decode(!pass);
                if pass {
                    slot.leg.check_timeout(now_ms, &mut evs);
                } else {
                    slot.leg.pull_frame(now_ms, &mut evs);
                }
                slot.leg.set_recorded(slot.recorded > 0);
                if slot.recorded > 0 {
                    slot.leg.pull_recorded(&mut slot.rec_frame);
                }
            }
            self.leg_events = evs;
            self.flush_leg_events(id);
        }
        // Mix every room that is not passing packets through.
        for &rid in &room_ids {
            let Some(room) = self.rooms.get(&rid) else {
                continue;
            };
            if room.passthrough || room.members.is_empty() {
                continue;
            }
            self.room_in.clear();
            self.speak.clear();
            for m in &room.members {
                let heard = self.legs.get(&m.leg).map_or([0; FRAME], |s| s.leg.heard);
                self.room_in.push(heard);
                self.speak.push(match m.mode {
                    RoomMode::Full => Speak::All,
                    RoomMode::Listen => Speak::Nobody,
                    RoomMode::Whisper(t) => room
                        .members
                        .iter()
                        .position(|x| x.leg == t)
                        .map_or(Speak::Nobody, Speak::Only),
                });
            }
            self.room_out.resize(room.members.len(), [0; FRAME]);
            mix_frame(
                &self.room_in,
                &self.speak,
                &mut self.room_out,
                &mut self.scratch,
            );
            for (m, out) in room.members.iter().zip(&self.room_out) {
                if let Some(slot) = self.legs.get_mut(&m.leg) {
                    slot.mixed = Some(*out);
                }
            }
        }
        // Recordings: caller left, agent right, interleaved.
        for (&rec, r) in self.recs.iter_mut() {
            if r.paused {
                continue;
            }
            // What each party said, by RTP timestamp: a packet too late for the live
            // playout (concealed there) still lands in its place in the file.
            let side = |l: Option<LegId>| {
                l.and_then(|l| self.legs.get(&l))
                    .map_or([0; FRAME], |s| s.rec_frame)
            };
            let (left, right) = (side(r.left), side(r.right));
            let mut stereo = [0u8; FRAME * 4];
            for ((out, a), b) in stereo.chunks_exact_mut(4).zip(&left).zip(&right) {
                out[..2].copy_from_slice(&a.to_le_bytes());
                out[2..].copy_from_slice(&b.to_le_bytes());
            }
            r.buf.extend_from_slice(&stereo);
            if r.buf.len() >= r.flush_at {
                let bytes = std::mem::replace(&mut r.buf, pooled_buffer(&self.pool));
                r.flush_at = REC_FLUSH_BYTES;
                let _ = self.writer.send(WriterMsg::Data { rec, bytes });
            }
        }
        // Send one packet per leg (pass-through legs forward on receipt instead), and RTCP.
        for &id in &ids {
            let pass = self.in_passthrough_room(id);
            let mut evs = std::mem::take(&mut self.leg_events);
            if let Some(slot) = self.legs.get_mut(&id) {
                if !pass {
                    let mixed = slot.mixed;
                    if slot
                        .leg
                        .build_packet(mixed.as_ref(), &mut self.buf, &mut evs)
                    {
                        if let Some(remote) = slot.peer() {
                            slot.send(&self.buf, remote, false, &mut self.stats);
                        }
                    }
                }
                if slot.leg.rtcp_due(now_ms, &mut self.buf) {
                    if let Some(remote) = slot.leg.remote_rtcp {
                        slot.send(&self.buf, remote, true, &mut self.stats);
                    }
                }
            }
            self.leg_events = evs;
            self.flush_leg_events(id);
        }
        self.tick_legs = ids;
        self.tick_rooms = room_ids;
        self.publish();
    }
}
