//! Property-based fuzzing of everything the media plane takes from outside: datagrams
//! (RTP, RTCP, RFC 4733, SRTP), WAV files, and the jitter buffer's arrivals. A panic is a
//! bug, never bad input. CI runs the default number of cases (256 per property); a longer
//! run is `PROPTEST_CASES=100000 cargo test -p ccorch-media --release --test fuzz_inputs`.
//! A failing case is shrunk and kept in `proptest-regressions/` to be replayed every run.

use std::net::SocketAddr;

use ccorch_media::dtmf::Rfc4733Receiver;
use ccorch_media::jitter::{JitterBuffer, JitterConfig};
use ccorch_media::leg::{Leg, LegConfig, FRAME};
use ccorch_media::rtcp::parse_report;
use ccorch_media::rtp::RtpPacket;
use ccorch_media::srtp::{Srtp, KEY_LEN};
use ccorch_media::wav::{pcm16_header, read_prompt};
use proptest::prelude::*;

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4000))
}

/// Bytes that look like RTP often enough to get past the first checks.
fn rtpish() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        prop_oneof![Just(0u8), Just(8), Just(101), Just(0x80 | 101), any::<u8>()],
        proptest::collection::vec(any::<u8>(), 0..400),
    )
        .prop_map(|(first, pt, rest)| {
            let mut p = vec![0x80 | (first & 0x3f), pt];
            p.extend(rest);
            p
        })
}

proptest! {
    #[test]
    fn rtp_and_rtcp_parsers_take_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = RtpPacket::parse(&data);
        let _ = parse_report(&data);
    }

    #[test]
    fn rtp_like_datagrams_never_break_a_leg(
        datagrams in proptest::collection::vec(rtpish(), 1..60),
        steps in proptest::collection::vec(0u64..80, 1..60),
    ) {
        let mut leg = Leg::new(LegConfig::default(), 7, 0);
        let mut events = Vec::new();
        let mut now = 0u64;
        let mut out = Vec::new();
        for (d, step) in datagrams.iter().zip(steps.iter().cycle()) {
            now += step;
            let _ = leg.on_datagram(now, peer(), d, &mut events);
            leg.pull_frame(now, &mut events);
            let _ = leg.build_packet(None, &mut out, &mut events);
            let _ = leg.rtcp_due(now, &mut out);
        }
    }

    #[test]
    fn telephone_events_of_any_shape_are_taken(
        packets in proptest::collection::vec(
            (any::<u32>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..12)), 1..40),
    ) {
        let mut rx = Rfc4733Receiver::default();
        let mut digits = Vec::new();
        for (i, (ssrc, ts, payload)) in packets.iter().enumerate() {
            rx.on_packet(i as u64 * 20, *ssrc, *ts, payload, &mut digits);
            rx.poll(i as u64 * 20, &mut digits);
        }
    }

    #[test]
    fn wav_reader_takes_any_file(
        channels in 0u16..4,
        claimed in any::<u32>(),
        tail in proptest::collection::vec(any::<u8>(), 0..2000),
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut file = pcm16_header(channels, claimed).to_vec();
        file.extend(&tail);
        let _ = read_prompt(&file);
        let _ = read_prompt(&garbage);
        let _ = read_prompt(&file[..file.len().min(tail.len())]);
    }

    #[test]
    fn the_jitter_buffer_takes_any_arrivals(
        arrivals in proptest::collection::vec(
            (0u64..200, any::<u32>(), any::<u32>(), 0usize..400), 1..80),
    ) {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut now = 0u64;
        let mut frame = [0i16; FRAME];
        for (step, ssrc, ts, len) in arrivals {
            now += step;
            let samples = vec![100i16; len];
            jb.push(now, ssrc % 3, ts, &samples);
            let _ = jb.pop(now, &mut frame);
        }
    }

    #[test]
    fn srtp_rejects_garbage_without_panicking(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        key in proptest::collection::vec(any::<u8>(), KEY_LEN),
    ) {
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&key);
        let mut s = Srtp::new(&k, &k).expect("any 30 bytes are a key");
        // random bytes never authenticate (an 80-bit tag)
        prop_assert!(s.unprotect(&data).is_err());
    }
}
