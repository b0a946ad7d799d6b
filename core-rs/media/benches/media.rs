//! The media plane's user-space costs, without sockets:
//! * mixing one 20 ms frame of a room, including G.711 decode of every input and encode of
//!   every output (per participant, and a supervised 3-party call against a plain 2-party one);
//! * one leg's work per 20 ms in the decoded path (RTP parse, decode, jitter buffer push and
//!   pop, DTMF and timeout checks, encode, RTP build) and in pass-through (re-stamping);
//! * SRTP: protecting our 20 ms packet and checking and decrypting the peer's (one leg's
//!   added cost per 20 ms when the leg is SRTP);
//! * Opus at a browser leg's edge: one 20 ms frame each way.
#![allow(clippy::unwrap_used)]
use ccorch_media::leg::{Leg, LegConfig};
use ccorch_media::mixer::{mix_frame, Speak, FRAME};
use ccorch_media::opus_edge::OpusEdge;
use ccorch_media::rtp::build_rtp;
use ccorch_media::srtp::Srtp;
use ccorch_media::Law;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::net::SocketAddr;

fn payload(seed: u8) -> [u8; FRAME] {
    let mut p = [0u8; FRAME];
    for (i, b) in p.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7).wrapping_add(seed);
    }
    p
}

/// Decode every input, mix, encode every output: one room's 20 ms of work.
fn room_frame(
    inputs: &[[u8; FRAME]],
    speak: &[Speak],
    pcm: &mut [[i16; FRAME]],
    out: &mut [[i16; FRAME]],
    codes: &mut [[u8; FRAME]],
    scratch: &mut [i32; FRAME],
) {
    for (p, c) in pcm.iter_mut().zip(inputs) {
        let _ = Law::Pcmu.decode(c, p);
    }
    mix_frame(pcm, speak, out, scratch);
    for (c, o) in codes.iter_mut().zip(out.iter()) {
        let _ = Law::Pcmu.encode(o, c);
    }
}

fn mixing(c: &mut Criterion) {
    let mut g = c.benchmark_group("mix_frame_with_g711");
    let rooms: Vec<(&str, Vec<Speak>)> = vec![
        ("2-party", vec![Speak::All, Speak::All]),
        (
            "3-party supervised (whisper)",
            vec![Speak::All, Speak::All, Speak::Only(1)],
        ),
        ("3-party conference", vec![Speak::All; 3]),
        ("10-party conference", vec![Speak::All; 10]),
    ];
    for (name, speak) in rooms {
        let n = speak.len();
        let inputs: Vec<[u8; FRAME]> = (0..n).map(|i| payload(i as u8 * 31)).collect();
        let mut pcm = vec![[0i16; FRAME]; n];
        let mut out = vec![[0i16; FRAME]; n];
        let mut codes = vec![[0u8; FRAME]; n];
        let mut scratch = [0i32; FRAME];
        g.throughput(Throughput::Elements(n as u64)); // per participant
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                room_frame(
                    black_box(&inputs),
                    &speak,
                    &mut pcm,
                    &mut out,
                    &mut codes,
                    &mut scratch,
                )
            })
        });
    }
    g.finish();
}

fn leg_tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("leg_per_20ms");
    let src: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let mut leg = Leg::new(
        LegConfig {
            media_timeout_ms: 0,
            ..LegConfig::default()
        },
        1,
        0,
    );
    let mut pkt = Vec::new();
    let mut out = Vec::new();
    let mut events = Vec::new();
    let p = payload(3);
    let mut tick = 0u64;
    g.bench_function("decoded: receive, jitter buffer, send", |b| {
        b.iter(|| {
            build_rtp(&mut pkt, false, 0, tick as u16, (tick * 160) as u32, 9, &p);
            leg.on_datagram(tick * 20, src, &pkt, &mut events);
            leg.pull_frame(tick * 20, &mut events);
            let heard = leg.heard;
            leg.build_packet(Some(&heard), &mut out, &mut events);
            events.clear();
            tick += 1;
        })
    });
    let mut peer = Leg::new(
        LegConfig {
            media_timeout_ms: 0,
            ..LegConfig::default()
        },
        2,
        0,
    );
    peer.set_remote(src, None);
    peer.set_decode(false);
    g.bench_function("pass-through: receive and re-stamp", |b| {
        b.iter(|| {
            build_rtp(&mut pkt, false, 0, tick as u16, (tick * 160) as u32, 9, &p);
            peer.on_datagram(tick * 20, src, &pkt, &mut events);
            peer.forward_from(black_box(&pkt), &mut out);
            tick += 1;
        })
    });
    g.finish();
}

fn srtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp_per_20ms");
    let (mut us, mut peer) = (
        Srtp::new(&[7; 30], &[9; 30]).unwrap(),
        Srtp::new(&[9; 30], &[7; 30]).unwrap(),
    );
    let p = payload(5);
    let mut pkt = Vec::new();
    let mut seq = 0u16;
    g.bench_function("protect ours and unprotect theirs (PCMU, 172 bytes)", |b| {
        b.iter(|| {
            build_rtp(&mut pkt, false, 0, seq, u32::from(seq) * 160, 9, &p);
            let wire = us.protect(black_box(&pkt)).unwrap();
            black_box(peer.unprotect(&wire).unwrap());
            seq = seq.wrapping_add(1);
        })
    });
    g.finish();
}

/// Opus at a browser leg's edge: one 20 ms frame each way (G.711 → Opus for the browser,
/// Opus → G.711 for the leg), resampling included.
fn opus_edge(c: &mut Criterion) {
    let mut g = c.benchmark_group("opus edge (per 20 ms frame)");
    let mut edge = OpusEdge::new().unwrap();
    let mut far = OpusEdge::new().unwrap();
    let pcm: Vec<i16> = (0..FRAME)
        .map(|i| (6000.0 * (i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin()) as i16)
        .collect();
    let mut codes = [0u8; FRAME];
    Law::Pcmu.encode(&pcm, &mut codes).unwrap();
    let mut opus_pkt = Vec::new();
    edge.to_browser(0, &codes, Law::Pcmu, &mut opus_pkt)
        .unwrap();
    let mut out = Vec::new();
    let mut ts = 0u32;
    g.bench_function("G.711 to Opus (to the browser)", |b| {
        b.iter(|| {
            ts = ts.wrapping_add(160);
            black_box(edge.to_browser(ts, black_box(&codes), Law::Pcmu, &mut out))
        })
    });
    let mut ts48 = 0u32;
    g.bench_function("Opus to G.711 (to the leg)", |b| {
        b.iter(|| {
            ts48 = ts48.wrapping_add(960);
            black_box(far.to_leg(ts48, black_box(&opus_pkt), Law::Pcmu, &mut out))
        })
    });
    g.finish();
}

criterion_group!(benches, mixing, leg_tick, srtp, opus_edge);
criterion_main!(benches);
