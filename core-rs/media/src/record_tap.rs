//! What a recorded leg's party said, placed by RTP timestamp rather than by playout.
//!
//! The live path plays a packet only if it arrives before its frame is due (the jitter
//! buffer conceals it otherwise). A recording has no listener waiting, so it can wait
//! longer: each packet's G.711 codes are written into a ring at the position its RTP
//! timestamp gives, and the recorder reads (and decodes) one frame per tick [`DELAY`]
//! behind the first packet's timestamp. A packet up to that late, reordered or not, lands
//! where it belongs; only a packet that never comes leaves silence, exactly its own length.
//! The ring holds codes, not samples: half the memory that 200 ms of every recorded leg
//! keeps warm.

use crate::g711::Law;
use crate::leg::FRAME;

/// Ring length in samples (a power of two, so positions survive the timestamp's wrap).
const RING: usize = 8192;
const MASK: u32 = RING as u32 - 1;
/// How far the recorder reads behind the newest timestamp: 200 ms at 8 kHz.
pub const DELAY: u32 = 1600;
/// Consecutive late packets that mean the sender's clock, not the network, moved.
const LATE_RUN_RESYNC: u32 = 3;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Packets that came after their samples were written to the recording.
    pub late: u64,
    /// Timeline restarts: a new source or law, a timestamp jump, or clock drift beyond the
    /// window.
    pub resyncs: u64,
}

impl std::ops::Add for TapStats {
    type Output = TapStats;
    fn add(self, o: TapStats) -> TapStats {
        TapStats {
            late: self.late + o.late,
            resyncs: self.resyncs + o.resyncs,
        }
    }
}

#[derive(Debug)]
pub struct RecordTap {
    ring: Box<[u8; RING]>,
    law: Law,
    /// RTP timestamp of the next sample to read; `None` until the first packet.
    read_ts: Option<u32>,
    /// Just past the newest sample written (what a recording that stops must still take).
    end_ts: u32,
    ssrc: Option<u32>,
    late_run: u32,
    stats: TapStats,
}

impl Default for RecordTap {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordTap {
    pub fn new() -> Self {
        RecordTap {
            ring: Box::new([Law::Pcmu.silence(); RING]),
            law: Law::Pcmu,
            read_ts: None,
            end_ts: 0,
            ssrc: None,
            late_run: 0,
            stats: TapStats::default(),
        }
    }

    pub fn stats(&self) -> TapStats {
        self.stats
    }

    fn anchor(&mut self, ssrc: u32, law: Law, timestamp: u32) -> u32 {
        if self.read_ts.is_some() {
            self.stats.resyncs += 1;
        }
        self.law = law;
        self.ring.fill(law.silence());
        self.ssrc = Some(ssrc);
        let read = timestamp.wrapping_sub(DELAY);
        self.read_ts = Some(read);
        self.end_ts = read;
        self.late_run = 0;
        read
    }

    /// A packet: G.711 `codes` in `law` starting at RTP `timestamp` of source `ssrc`.
    pub fn push(&mut self, ssrc: u32, law: Law, timestamp: u32, codes: &[u8]) {
        let codes = &codes[..codes.len().min(RING / 2)];
        let read = match self.read_ts {
            Some(r) if self.ssrc == Some(ssrc) && self.law == law => r,
            _ => self.anchor(ssrc, law, timestamp),
        };
        // Signed distance from the read position, in samples.
        let ahead = timestamp.wrapping_sub(read) as i32;
        if ahead < 0 {
            self.late_run += 1;
            if ahead.unsigned_abs() as usize > RING || self.late_run >= LATE_RUN_RESYNC {
                self.anchor(ssrc, law, timestamp);
                return self.write(timestamp, codes);
            }
            self.stats.late += 1;
            // The part not yet read still belongs in the file.
            let skip = ahead.unsigned_abs() as usize;
            if let Some(rest) = codes.get(skip..) {
                self.write(timestamp.wrapping_add(skip as u32), rest);
            }
            return;
        }
        self.late_run = 0;
        if ahead as usize + codes.len() > RING {
            // The sender's timeline jumped ahead (or its clock ran fast for a long while).
            self.anchor(ssrc, law, timestamp);
        }
        self.write(timestamp, codes);
    }

    /// Copy `codes` into the ring from `timestamp`'s position, in at most two pieces.
    fn write(&mut self, timestamp: u32, codes: &[u8]) {
        let end = timestamp.wrapping_add(codes.len() as u32);
        if let Some(read) = self.read_ts {
            if end.wrapping_sub(read) as i32 > self.end_ts.wrapping_sub(read) as i32 {
                self.end_ts = end;
            }
        }
        let at = (timestamp & MASK) as usize;
        let first = codes.len().min(RING - at);
        let (a, b) = codes.split_at(first);
        if let Some(dst) = self.ring.get_mut(at..at + first) {
            dst.copy_from_slice(a);
        }
        if let Some(dst) = self.ring.get_mut(..b.len()) {
            dst.copy_from_slice(b);
        }
    }

    /// Frames still to read up to the newest sample written: what a recording that stops
    /// now takes before it closes, so the last words are not cut.
    pub fn pending_frames(&self) -> usize {
        let Some(read) = self.read_ts else {
            return 0;
        };
        let ahead = self.end_ts.wrapping_sub(read) as i32;
        (ahead.max(0) as usize).div_ceil(FRAME).min(RING / FRAME)
    }

    /// The next frame of the recording (silence before the first packet and where none came).
    pub fn pull(&mut self, out: &mut [i16; FRAME]) {
        let Some(read) = self.read_ts else {
            out.fill(0);
            return;
        };
        let at = (read & MASK) as usize;
        let first = FRAME.min(RING - at);
        let silence = self.law.silence();
        let (out_a, out_b) = out.split_at_mut(first);
        for (src, dst) in [(at..at + first, out_a), (0..FRAME - first, out_b)] {
            if let Some(codes) = self.ring.get_mut(src) {
                let _ = self.law.decode(codes, dst); // equal lengths
                codes.fill(silence);
            }
        }
        self.read_ts = Some(read.wrapping_add(FRAME as u32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: usize = (DELAY as usize) / FRAME;

    /// A packet of one code; decoded, every sample is the code's value.
    fn frame(v: i16) -> [u8; FRAME] {
        [code(v); FRAME]
    }

    /// Distinct codes for small numbers, 0 being silence.
    fn code(v: i16) -> u8 {
        0x80 + v as u8
    }

    fn value(sample: i16) -> i16 {
        if sample == 0 {
            return 0;
        }
        (0..127)
            .find(|&v| Law::Pcmu.decode_sample(code(v)) == sample)
            .expect("a code")
    }

    fn pull(t: &mut RecordTap) -> i16 {
        let mut out = [7; FRAME];
        t.pull(&mut out);
        assert!(out.iter().all(|&s| s == out[0]), "a frame is one packet");
        value(out[0])
    }

    #[test]
    fn packets_in_order_come_out_whole_after_the_delay() {
        let mut t = RecordTap::new();
        let mut got = Vec::new();
        for k in 0..40u32 {
            t.push(9, Law::Pcmu, 1000 + k * 160, &frame(k as i16 + 1));
            got.push(pull(&mut t));
        }
        assert!(got[..LAG].iter().all(|&v| v == 0));
        assert_eq!(got[LAG..], (1..=(40 - LAG) as i16).collect::<Vec<_>>()[..]);
        assert_eq!(t.stats(), TapStats::default());
    }

    #[test]
    fn a_packet_later_than_playout_but_within_the_delay_still_lands_in_place() {
        // Packet 5 is held back 120 ms (6 ticks): a 60 ms jitter buffer would conceal it.
        let mut t = RecordTap::new();
        let mut got = Vec::new();
        for tick in 0..40u32 {
            if tick < 30 && tick != 5 {
                t.push(1, Law::Pcmu, tick * 160, &frame(tick as i16 + 1));
            }
            if tick == 11 {
                t.push(1, Law::Pcmu, 5 * 160, &frame(6));
            }
            got.push(pull(&mut t));
        }
        assert_eq!(got[LAG..LAG + 30], (1..=30).collect::<Vec<i16>>()[..]);
        assert_eq!(t.stats().late, 0);
    }

    #[test]
    fn a_lost_packet_is_exactly_one_frame_of_silence_and_reordering_is_undone() {
        let mut t = RecordTap::new();
        let order = [0u32, 2, 1, 3, 5, 4, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16]; // 7 never comes
        let mut got = Vec::new();
        for &k in &order {
            t.push(1, Law::Pcmu, k * 160, &frame(k as i16 + 1));
            got.push(pull(&mut t));
        }
        for _ in 0..=LAG {
            got.push(pull(&mut t));
        }
        let body: Vec<i16> = got[LAG..LAG + 17].to_vec();
        let mut want: Vec<i16> = (1..=17).collect();
        want[7] = 0;
        assert_eq!(body, want);
    }

    #[test]
    fn a_stopping_recording_takes_what_is_still_in_the_ring() {
        let mut t = RecordTap::new();
        assert_eq!(t.pending_frames(), 0);
        for k in 0..20u32 {
            t.push(1, Law::Pcmu, k * 160, &frame(k as i16 + 1));
            pull(&mut t);
        }
        // 20 packets written, 20 frames read from 200 ms behind: the last 10 are pending.
        assert_eq!(t.pending_frames(), LAG);
        let tail: Vec<i16> = (0..t.pending_frames()).map(|_| pull(&mut t)).collect();
        assert_eq!(tail, (11..=20).collect::<Vec<i16>>());
        assert_eq!(t.pending_frames(), 0);
        // A late packet does not move the end back.
        t.push(1, Law::Pcmu, 5 * 160, &frame(1));
        assert_eq!(t.pending_frames(), 0);
    }

    #[test]
    fn the_timeline_survives_the_timestamps_wrap() {
        let mut t = RecordTap::new();
        let start = u32::MAX - 5 * 160 + 1;
        let mut got = Vec::new();
        for k in 0..30u32 {
            t.push(
                1,
                Law::Pcmu,
                start.wrapping_add(k * 160),
                &frame(k as i16 + 1),
            );
            got.push(pull(&mut t));
        }
        assert_eq!(got[LAG..], (1..=(30 - LAG) as i16).collect::<Vec<_>>()[..]);
        assert_eq!(t.stats().resyncs, 0);
    }

    #[test]
    fn a_new_source_or_a_jump_restarts_the_timeline_and_too_late_is_counted() {
        let mut t = RecordTap::new();
        for k in 0..20u32 {
            t.push(1, Law::Pcmu, k * 160, &frame(1));
            pull(&mut t);
        }
        // Far too late for its place: dropped and counted (one packet is the network).
        t.push(1, Law::Pcmu, 0, &frame(2));
        assert_eq!(t.stats().late, 1);
        // A new SSRC (e.g. after a transfer) starts over.
        t.push(2, Law::Pcmu, 555_000, &frame(3));
        assert_eq!(t.stats().resyncs, 1);
        let mut got = Vec::new();
        for _ in 0..=LAG {
            got.push(pull(&mut t));
        }
        assert_eq!(got[LAG - 1..], [0, 3]);
        // Three late in a row is the sender's clock, not the network: restart there.
        for k in 0..3u32 {
            t.push(2, Law::Pcmu, 100 + k * 160, &frame(4));
        }
        assert_eq!(t.stats().resyncs, 2);
    }
}
