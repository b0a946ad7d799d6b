//! RTP load generator for the media benches: N phones on loopback, each sending one
//! 20 ms G.711 packet every 20 ms to its target port and counting what comes back.
//!
//! Usage: rtp_load --targets FILE --warmup S --duration S [--threads T] [--dtmf-every S]
//!                 [--bind-ports P1,P2,...]
//! FILE has one target port per line (127.0.0.1 only). Prints one JSON line at the end:
//! packets sent and received in the measured window, loss by sequence number per stream,
//! the largest gap, and the generator's own tick lateness (so a late generator is seen).
//! Bounded: it stops after warmup + duration seconds, whatever happens.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

struct Stream {
    sock: UdpSocket,
    target: SocketAddr,
    seq: u16,
    ts: u32,
    // Receive side, for the measured window.
    first_seq: Option<u64>,
    highest: u64,
    received: u64,
    ext: ccorch_media::rtp::SeqExtender,
    max_gap: u64,
    last_ext: Option<u64>,
}

#[derive(Default)]
struct Totals {
    sent: u64,
    received: u64,
    expected: u64,
    max_gap: u64,
    silent_streams: u64,
    late_ticks: u64,
    max_late_us: u64,
    ticks: u64,
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn run(
    streams: &mut [Stream],
    warmup: Duration,
    duration: Duration,
    dtmf_every: Option<Duration>,
) -> Totals {
    let mut t = Totals::default();
    let payload: Vec<u8> = (0..160u32).map(|i| (i * 7 % 255) as u8).collect();
    let mut pkt = Vec::with_capacity(200);
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let end = start + warmup + duration;
    let mut tick = 0u64;
    let mut measuring = false;
    loop {
        let due = start + Duration::from_millis(20 * tick);
        let now = Instant::now();
        if now >= end {
            break;
        }
        if due > now {
            std::thread::sleep(due - now);
        } else if measuring {
            let late = (now - due).as_micros() as u64;
            if late > 2000 {
                t.late_ticks += 1;
            }
            t.max_late_us = t.max_late_us.max(late);
        }
        if !measuring && start.elapsed() >= warmup {
            measuring = true;
            for s in streams.iter_mut() {
                s.first_seq = None;
                s.received = 0;
                s.max_gap = 0;
            }
        }
        let dtmf_tick = dtmf_every.is_some_and(|d| tick % (d.as_millis() as u64 / 20).max(1) < 5);
        for s in streams.iter_mut() {
            pkt.clear();
            if dtmf_tick {
                // A short RFC 4733 event (payload type 101), so detection runs under load.
                pkt.extend_from_slice(&[0x80, 101]);
                pkt.extend_from_slice(&s.seq.to_be_bytes());
                pkt.extend_from_slice(&s.ts.to_be_bytes());
                pkt.extend_from_slice(&0x5eed_0000u32.to_be_bytes());
                let end_bit = if tick % 5 == 4 { 0x80 } else { 0 };
                pkt.extend_from_slice(&[5, end_bit | 10, 0, 160]);
            } else {
                pkt.extend_from_slice(&[0x80, 0]);
                pkt.extend_from_slice(&s.seq.to_be_bytes());
                pkt.extend_from_slice(&s.ts.to_be_bytes());
                pkt.extend_from_slice(&0x5eed_0000u32.to_be_bytes());
                pkt.extend_from_slice(&payload);
            }
            if s.sock.send_to(&pkt, s.target).is_ok() && measuring {
                t.sent += 1;
            }
            s.seq = s.seq.wrapping_add(1);
            s.ts = s.ts.wrapping_add(160);
            while let Ok((n, _)) = s.sock.recv_from(&mut buf) {
                if !measuring || n < 12 || (200..=204).contains(&buf[1]) {
                    continue; // RTCP or before the window
                }
                let ext = s.ext.extend(u16::from_be_bytes([buf[2], buf[3]]));
                if s.first_seq.is_none() {
                    s.first_seq = Some(ext);
                    s.highest = ext;
                }
                if let Some(last) = s.last_ext {
                    if ext > last + 1 {
                        s.max_gap = s.max_gap.max(ext - last - 1);
                    }
                }
                s.last_ext = Some(ext);
                s.highest = s.highest.max(ext);
                s.received += 1;
            }
        }
        if measuring {
            t.ticks += 1;
        }
        tick += 1;
    }
    for s in streams.iter() {
        t.received += s.received;
        match s.first_seq {
            Some(f) => t.expected += s.highest - f + 1,
            None => t.silent_streams += 1,
        }
        t.max_gap = t.max_gap.max(s.max_gap);
    }
    t
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let targets =
        std::fs::read_to_string(arg(&args, "--targets", "targets.txt")).expect("targets file");
    let warmup =
        Duration::from_secs_f64(arg(&args, "--warmup", "3").parse().expect("warmup seconds"));
    let duration = Duration::from_secs_f64(
        arg(&args, "--duration", "10")
            .parse::<f64>()
            .expect("seconds")
            .min(600.0),
    );
    let threads: usize = arg(&args, "--threads", "1").parse().expect("threads");
    let dtmf_every: f64 = arg(&args, "--dtmf-every", "0").parse().expect("seconds");
    let dtmf_every = (dtmf_every > 0.0).then(|| Duration::from_secs_f64(dtmf_every));
    let ports: Vec<u16> = targets
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse().expect("port"))
        .collect();
    // Local ports to bind (when the relay was told them in SDP); otherwise any free port.
    let bind_ports: Vec<u16> = arg(&args, "--bind-ports", "")
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().expect("port"))
        .collect();
    let mut groups: Vec<Vec<Stream>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, port) in ports.iter().enumerate() {
        let local = bind_ports.get(i).copied().unwrap_or(0);
        let sock = UdpSocket::bind(("127.0.0.1", local)).expect("bind");
        sock.set_nonblocking(true).expect("nonblocking");
        groups[i % threads].push(Stream {
            sock,
            target: SocketAddr::from(([127, 0, 0, 1], *port)),
            seq: (i * 1000) as u16,
            ts: (i as u32).wrapping_mul(7919),
            first_seq: None,
            highest: 0,
            received: 0,
            ext: Default::default(),
            max_gap: 0,
            last_ext: None,
        });
    }
    let handles: Vec<_> = groups
        .into_iter()
        .map(|mut g| std::thread::spawn(move || run(&mut g, warmup, duration, dtmf_every)))
        .collect();
    let mut total = Totals::default();
    for h in handles {
        let t = h.join().unwrap();
        total.sent += t.sent;
        total.received += t.received;
        total.expected += t.expected;
        total.max_gap = total.max_gap.max(t.max_gap);
        total.silent_streams += t.silent_streams;
        total.late_ticks += t.late_ticks;
        total.max_late_us = total.max_late_us.max(t.max_late_us);
        total.ticks = total.ticks.max(t.ticks);
    }
    let lost = total.expected.saturating_sub(total.received);
    println!(
        "{{\"streams\": {}, \"seconds\": {}, \"sent\": {}, \"received\": {}, \"expected\": {}, \"lost\": {}, \"max_gap\": {}, \"silent_streams\": {}, \"generator_late_ticks\": {}, \"generator_max_late_us\": {}, \"ticks\": {}}}",
        ports.len(),
        duration.as_secs_f64(),
        total.sent,
        total.received,
        total.expected,
        lost,
        total.max_gap,
        total.silent_streams,
        total.late_ticks,
        total.max_late_us,
        total.ticks
    );
}
