//! Browser legs under load: N pairs, each a WebRTC leg (its "browser" is a str0m client
//! here: full ICE, DTLS-SRTP, PCMU) bridged to a plain RTP leg, in one media-engine shard;
//! then, in the same run, N RTP↔RTP pairs for comparison. Both ends send one 20 ms PCMU
//! packet every 20 ms. Pass-through is off, so every frame goes through the jitter buffer,
//! decode, mix and encode, as in a recorded call.
//!
//! Usage: webrtc_load --pairs N [--warmup S] [--duration S] [--modes webrtc,rtp]
//!                    [--read-every-ms MS]   (1 for the latency run; 20 for capacity)
//!
//! Measured in the window after warm-up, per mode (one JSON line each):
//! * the engine's CPU: its shard thread's utime+stime (`/proc/self/task`, the thread named
//!   `ccorch-media-0`) over wall time, in % of one core; the generator (this process's
//!   main thread, also str0m for the browsers) is measured apart;
//! * packets delivered end to end over packets sent (both directions);
//! * one-way latency through the node, jitter buffer included: each payload carries its
//!   packet's number in μ-law codes that survive decode and re-encode, and the receiver
//!   looks up when that packet was sent (p50, p95, p99).
//!
//! Only 127.0.0.1; bounded by warm-up + duration (and 15 s for the browsers to connect).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ccorch_media::engine::{Engine, EngineConfig, LegId};
use ccorch_media::leg::LegConfig;
use ccorch_media::rtp::{build_rtp, RtpPacket};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

const USER_HZ: f64 = 100.0; // Linux's USER_HZ on x86-64: /proc's clock ticks

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// User + system CPU seconds in a `/proc/.../stat` line.
fn cpu_of_stat(stat: &str) -> f64 {
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / USER_HZ
}

/// CPU seconds of this process's threads named `name`.
fn thread_cpu(name: &str) -> f64 {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc") {
        let dir = entry.expect("task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            total += cpu_of_stat(&std::fs::read_to_string(dir.join("stat")).unwrap_or_default());
        }
    }
    total
}

/// CPU seconds of the calling thread.
fn own_cpu() -> f64 {
    cpu_of_stat(&std::fs::read_to_string("/proc/thread-self/stat").expect("/proc"))
}

/// A packet number as three μ-law codes in 0..=125 (codes that decode and re-encode to
/// themselves), repeated over the payload.
fn stamp(n: u32, out: &mut [u8]) {
    let digits = [
        (n % 126) as u8,
        (n / 126 % 126) as u8,
        (n / 15_876 % 126) as u8,
    ];
    for (i, b) in out.iter_mut().enumerate() {
        *b = digits[i % 3];
    }
}

fn read_stamp(p: &[u8]) -> Option<u32> {
    if p.len() < 6 || p[..3] != p[3..6] {
        return None; // not a whole, unmixed frame of ours
    }
    Some(u32::from(p[0]) + 126 * u32::from(p[1]) + 15_876 * u32::from(p[2]))
}

/// One end of a pair, in the generator: a browser (str0m) or a phone (plain RTP).
enum End {
    Browser {
        rtc: Box<Rtc>,
        mid: Mid,
        sock: UdpSocket,
        connected: bool,
        next_timeout: Option<Instant>,
    },
    Phone {
        sock: UdpSocket,
        target: SocketAddr,
    },
}

struct Peer {
    end: End,
    id: u32, // packet numbers are id * 1_000_000 + count
    seq: u16,
    ts: u32,
    count: u32,
}

struct Counts {
    sent: u64,
    received: u64,
    latencies_us: Vec<u64>,
    unstamped: u64,
}

fn browser_rtc(now: Instant) -> (Rtc, UdpSocket, Mid, String, str0m::change::SdpPendingOffer) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_pcmu(true, false)
        .set_stats_interval(None)
        .build(now);
    let c = Candidate::host(sock.local_addr().expect("addr"), Protocol::Udp).expect("candidate");
    rtc.add_local_candidate(c);
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    (rtc, sock, mid, offer.to_sdp_string(), pending)
}

fn phone(target_port: u16) -> End {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    End::Phone {
        sock,
        target: SocketAddr::from(([127, 0, 0, 1], target_port)),
    }
}

fn cfg() -> LegConfig {
    LegConfig {
        media_timeout_ms: 0,
        ..LegConfig::default()
    }
}

/// Allocate and bridge the pairs; returns the generator's ends and the engine's legs.
fn setup(engine: &Engine, pairs: u32, webrtc: bool) -> (Vec<Peer>, Vec<LegId>) {
    let mut peers = Vec::new();
    let mut legs = Vec::new();
    for i in 0..pairs {
        let group = u64::from(i);
        let first = if webrtc {
            let now = Instant::now();
            let (mut rtc, sock, mid, offer, pending) = browser_rtc(now);
            let (leg, _port, answer) = engine
                .allocate_webrtc_leg(group, Some(&offer), cfg())
                .expect("browser leg");
            let answer = SdpAnswer::from_sdp_string(&answer).expect("answer");
            rtc.sdp_api()
                .accept_answer(pending, answer)
                .expect("answer accepted");
            legs.push(leg);
            End::Browser {
                rtc: Box::new(rtc),
                mid,
                sock,
                connected: false,
                next_timeout: None,
            }
        } else {
            let (leg, port) = engine.allocate_leg(group, cfg()).expect("leg");
            legs.push(leg);
            phone(port)
        };
        let (leg2, port2) = engine.allocate_leg(group, cfg()).expect("leg");
        legs.push(leg2);
        let second = phone(port2);
        engine.bridge(legs[legs.len() - 2], leg2).expect("bridged");
        for (k, end) in [first, second].into_iter().enumerate() {
            let id = 2 * i + k as u32;
            peers.push(Peer {
                end,
                id,
                seq: (id * 7919) as u16,
                ts: id.wrapping_mul(104_729),
                count: 0,
            });
        }
    }
    (peers, legs)
}

fn on_received(
    payload: &[u8],
    counts: &mut Counts,
    sent_at: &HashMap<u32, Instant>,
    now: Instant,
    measuring: bool,
) {
    if !measuring {
        return;
    }
    // only frames sent in the window count; silence (a jitter buffer with nothing yet) and
    // frames sent before the window are counted apart
    match read_stamp(payload).and_then(|n| sent_at.get(&n)) {
        Some(t) => {
            counts.received += 1;
            counts
                .latencies_us
                .push(now.duration_since(*t).as_micros() as u64);
        }
        None => counts.unstamped += 1,
    }
}

/// The generator's state: its ends, what it counted, and its buffers.
struct Generator {
    peers: Vec<Peer>,
    counts: Counts,
    sent_at: HashMap<u32, Instant>,
    buf: Vec<u8>,
    pkt: Vec<u8>,
    number: u32,
}

/// Drive every end: the browsers' timers and datagrams, and (when `send`) one packet each.
fn pump(g: &mut Generator, send: bool, measuring: bool) {
    let Generator {
        peers,
        counts,
        sent_at,
        buf,
        pkt,
        number: next_number,
    } = g;
    let now = Instant::now();
    let mut payload = [0u8; 160];
    for p in peers.iter_mut() {
        // 126^3 numbers: they wrap after 2,000,376 packets, far beyond one window's
        let number = *next_number % 2_000_376;
        if send {
            *next_number = next_number.wrapping_add(1);
        }
        stamp(number, &mut payload);
        match &mut p.end {
            End::Browser {
                rtc,
                mid,
                sock,
                connected,
                next_timeout,
            } => {
                if send && *connected {
                    if let Some(tx) = rtc.direct_api().stream_tx_by_mid(*mid, None) {
                        let write = RtpWrite::new(
                            Pt::from(0),
                            (u64::from(p.count) + 1).into(),
                            p.ts,
                            now,
                            payload.to_vec(),
                        );
                        tx.write_rtp(write);
                        if measuring {
                            counts.sent += 1;
                            sent_at.insert(number, now);
                        }
                    }
                }
                if next_timeout.is_some_and(|t| now >= t) {
                    rtc.handle_input(Input::Timeout(now)).expect("timeout");
                }
                let local = sock.local_addr().expect("addr");
                loop {
                    loop {
                        match rtc.poll_output().expect("poll") {
                            Output::Timeout(t) => {
                                *next_timeout = Some(t);
                                break;
                            }
                            Output::Transmit(t) => {
                                let _ = sock.send_to(&t.contents, t.destination);
                            }
                            Output::Event(Event::Connected) => *connected = true,
                            Output::Event(Event::RtpPacket(r)) => {
                                if r.header.payload_type == Pt::from(0) {
                                    on_received(&r.payload, counts, sent_at, now, measuring);
                                }
                            }
                            Output::Event(_) => {}
                        }
                    }
                    let Ok((n, src)) = sock.recv_from(buf) else {
                        break;
                    };
                    let r = Receive::new(Protocol::Udp, src, local, &buf[..n]).expect("dgram");
                    rtc.handle_input(Input::Receive(now, r)).expect("input");
                }
            }
            End::Phone { sock, target } => {
                if send {
                    build_rtp(pkt, false, 0, p.seq, p.ts, 0x5eed_0000 + p.id, &payload);
                    if sock.send_to(pkt, *target).is_ok() && measuring {
                        counts.sent += 1;
                        sent_at.insert(number, now);
                    }
                }
                while let Ok((n, _)) = sock.recv_from(buf) {
                    if let Ok(r) = RtpPacket::parse(&buf[..n]) {
                        if r.payload_type == 0 {
                            on_received(r.payload, counts, sent_at, now, measuring);
                        }
                    }
                }
            }
        }
        if send {
            p.seq = p.seq.wrapping_add(1);
            p.ts = p.ts.wrapping_add(160);
            p.count += 1;
        }
    }
}

fn quantile(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i] as f64 / 1000.0
}

fn run(pairs: u32, webrtc: bool, warmup: Duration, duration: Duration, read_every: Duration) {
    let engine = Engine::start(EngineConfig {
        port_min: 30_000,
        port_max: 39_998,
        passthrough: false,
        // the generator's browsers speak PCMU (each frame carries its number, which Opus
        // would not keep): this measures the G.711 path
        browser_opus: false,
        ..EngineConfig::default()
    })
    .expect("engine");
    let (peers, legs) = setup(&engine, pairs, webrtc);
    let mut g = Generator {
        peers,
        counts: Counts {
            sent: 0,
            received: 0,
            latencies_us: Vec::new(),
            unstamped: 0,
        },
        sent_at: HashMap::new(),
        buf: vec![0u8; 2048],
        pkt: Vec::with_capacity(200),
        number: 0,
    };
    // Connect the browsers first (bounded).
    let connect_start = Instant::now();
    while webrtc && connect_start.elapsed() < Duration::from_secs(15) {
        pump(&mut g, false, false);
        let all = g.peers.iter().all(|p| match &p.end {
            End::Browser { connected, .. } => *connected,
            End::Phone { .. } => true,
        });
        if all {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let connected = g
        .peers
        .iter()
        .filter(|p| {
            matches!(
                &p.end,
                End::Browser {
                    connected: true,
                    ..
                }
            )
        })
        .count();
    let connect_ms = connect_start.elapsed().as_millis();
    let start = Instant::now();
    let end = start + warmup + duration;
    let mut tick = 0u64;
    let mut measuring = false;
    let (mut cpu0, mut gen0, mut t0) = (0.0, 0.0, start);
    while Instant::now() < end {
        let due = start + Duration::from_millis(20 * tick);
        // between ticks: read every `read_every` (fine for latency, coarse for capacity)
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(read_every));
            if read_every < Duration::from_millis(20) {
                pump(&mut g, false, measuring);
            }
        }
        if !measuring && start.elapsed() >= warmup {
            measuring = true;
            cpu0 = thread_cpu("ccorch-media-0");
            gen0 = own_cpu();
            t0 = Instant::now();
        }
        pump(&mut g, true, measuring);
        tick += 1;
    }
    // late packets of the last tick
    for _ in 0..50 {
        pump(&mut g, false, true);
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = t0.elapsed().as_secs_f64();
    let engine_cpu = (thread_cpu("ccorch-media-0") - cpu0) / wall * 100.0;
    let generator_cpu = (own_cpu() - gen0) / wall * 100.0;
    let stats = engine.stats(false).expect("stats");
    let counts = &mut g.counts;
    let lat = &mut counts.latencies_us;
    let line = format!(
        concat!(
            "{{\"mode\": \"{}\", \"pairs\": {}, \"browsers_connected\": {}, \"connect_ms\": {}, ",
            "\"engine_cpu_pct\": {:.1}, \"generator_cpu_pct\": {:.1}, \"sent\": {}, \"received\": {}, ",
            "\"delivered_pct\": {:.3}, \"unstamped\": {}, \"latency_ms_p50\": {:.1}, ",
            "\"latency_ms_p95\": {:.1}, \"latency_ms_p99\": {:.1}, \"tick_late_p99_ms\": {:.2}, ",
            "\"skipped_ticks\": {}}}"
        ),
        if webrtc { "webrtc-rtp" } else { "rtp-rtp" },
        pairs,
        connected,
        connect_ms,
        engine_cpu,
        generator_cpu,
        counts.sent,
        counts.received,
        100.0 * counts.received as f64 / counts.sent.max(1) as f64,
        counts.unstamped,
        quantile(lat, 0.5),
        quantile(lat, 0.95),
        quantile(lat, 0.99),
        stats.lateness_quantile_ms(0.99),
        stats.skipped_ticks,
    );
    println!("{line}");
    for leg in legs {
        let _ = engine.release_leg(leg);
    }
    engine.shutdown();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pairs: u32 = arg(&args, "--pairs", "100").parse().expect("pairs");
    let warmup = Duration::from_secs_f64(arg(&args, "--warmup", "3").parse().expect("seconds"));
    let duration =
        Duration::from_secs_f64(arg(&args, "--duration", "10").parse().expect("seconds"));
    // how often the generator reads between its 20 ms sends: 1 ms for latency runs
    let read_every =
        Duration::from_millis(arg(&args, "--read-every-ms", "20").parse().expect("ms"));
    for mode in arg(&args, "--modes", "webrtc,rtp").split(',') {
        run(pairs, mode == "webrtc", warmup, duration, read_every);
    }
}
