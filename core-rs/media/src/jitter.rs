//! Adaptive jitter buffer over decoded 8 kHz samples (sans-IO: arrival time in, frames out).
//!
//! Packets are placed by timestamp in a ring of samples, so any packet size (10, 20, 30 ms)
//! plays out as 20 ms frames. The playout point keeps a fixed distance ("offset") from the
//! wall clock; the offset aims at the largest transit seen over the last few seconds plus
//! a margin, bounded by the configured delays. When the aim moves, one frame is inserted
//! (concealment) or skipped (preferably a quiet one). Because the aim follows transit,
//! a sender whose clock runs fast or slow never makes the buffer drift: it is trimmed or
//! padded a frame at a time. A new SSRC or a timestamp jump (re-INVITE, transfer) restarts
//! the buffer on the new stream.

use crate::rtp::TsExtender;

/// Samples held: 512 ms, above the largest delay allowed.
const CAP: usize = 4096;
const FRAME: usize = 160;
const WINDOW_BUCKETS: usize = 8;
const BUCKET_MS: u64 = 500;

#[derive(Debug, Clone, Copy)]
pub struct JitterConfig {
    pub min_delay_ms: u32,
    pub max_delay_ms: u32,
    /// Extra delay over the largest recent transit.
    pub margin_ms: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_delay_ms: 20,
            max_delay_ms: 200,
            margin_ms: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub packets: u64,
    pub late: u64,
    pub duplicates: u64,
    pub concealed_frames: u64,
    pub inserted_frames: u64,
    pub skipped_frames: u64,
    pub resyncs: u64,
    /// Current buffering delay over the smallest recent transit, in ms.
    pub delay_ms: u32,
}

/// What a popped frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Every sample was received.
    Audio,
    /// Some or all samples were missing and were concealed.
    Concealed,
    /// Nothing received yet (or for long): silence.
    Silence,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    min: i64,
    max: i64,
    used: bool,
}

#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    ring: Box<[i16]>,
    filled: Box<[u64]>,
    ssrc: Option<u32>,
    ts: TsExtender,
    /// Extended timestamp of the next sample to play.
    playout: Option<u64>,
    window: [Bucket; WINDOW_BUCKETS],
    last_frame: [i16; FRAME],
    conceal_run: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        let max = u32::try_from(CAP / 8 - 40).unwrap_or(200);
        let cfg = JitterConfig {
            min_delay_ms: cfg.min_delay_ms.min(max),
            max_delay_ms: cfg.max_delay_ms.clamp(cfg.min_delay_ms.min(max), max),
            margin_ms: cfg.margin_ms,
        };
        JitterBuffer {
            cfg,
            ring: vec![0; CAP].into_boxed_slice(),
            filled: vec![0; CAP / 64].into_boxed_slice(),
            ssrc: None,
            ts: TsExtender::default(),
            playout: None,
            window: [Bucket::default(); WINDOW_BUCKETS],
            last_frame: [0; FRAME],
            conceal_run: 0,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Forget the stream (its packets went elsewhere for a while): the next packet restarts it.
    pub fn reset(&mut self) {
        self.ssrc = None;
        self.ts.reset();
        self.playout = None;
        self.filled.fill(0);
        self.window = [Bucket::default(); WINDOW_BUCKETS];
    }

    fn resync(&mut self, ssrc: u32) {
        if self.ssrc.is_some() {
            self.stats.resyncs += 1;
        }
        self.ssrc = Some(ssrc);
        self.ts.reset();
        self.playout = None;
        self.filled.fill(0);
        self.window = [Bucket::default(); WINDOW_BUCKETS];
    }

    /// Ring positions of `len` samples from `ext`, as at most two contiguous index ranges.
    fn spans(ext: u64, len: usize) -> [(usize, usize); 2] {
        let i0 = (ext % CAP as u64) as usize;
        let first = len.min(CAP - i0);
        [(i0, i0 + first), (0, len - first)]
    }

    /// The bitmap words and masks covering `len` samples from `ext`.
    fn word_masks(ext: u64, len: usize) -> impl Iterator<Item = (usize, u64)> {
        Self::spans(ext, len).into_iter().flat_map(|(a, b)| {
            let mut i = a;
            std::iter::from_fn(move || {
                if i >= b {
                    return None;
                }
                let (w, lo) = (i / 64, i % 64);
                let hi = (b - w * 64).min(64);
                let mask = if hi - lo == 64 {
                    u64::MAX
                } else {
                    ((1u64 << (hi - lo)) - 1) << lo
                };
                i = w * 64 + hi;
                Some((w, mask))
            })
        })
    }

    /// Filled samples among `len` from `ext`, counted a word at a time.
    fn count_filled(&self, ext: u64, len: usize) -> usize {
        Self::word_masks(ext, len)
            .map(|(w, m)| (self.filled[w] & m).count_ones() as usize)
            .sum()
    }

    fn set_range(&mut self, ext: u64, len: usize, on: bool) {
        for (w, m) in Self::word_masks(ext, len) {
            if on {
                self.filled[w] |= m;
            } else {
                self.filled[w] &= !m;
            }
        }
    }

    fn is_filled(&self, ext: u64) -> bool {
        let i = (ext % CAP as u64) as usize;
        self.filled[i / 64] & (1 << (i % 64)) != 0
    }

    /// Store one packet's decoded samples that arrived at `now_ms`.
    pub fn push(&mut self, now_ms: u64, ssrc: u32, timestamp: u32, samples: &[i16]) {
        let samples = &samples[..samples.len().min(CAP / 2)];
        if self.ssrc != Some(ssrc) {
            self.resync(ssrc);
        }
        let mut ext = self.ts.extend(timestamp);
        let len = samples.len() as u64;
        // Late packets count most: they show the jitter the buffer must absorb.
        self.note_transit(now_ms, (now_ms * 8) as i64 - ext as i64);
        if let Some(p) = self.playout {
            let jumped_back = ext + len <= p && p - ext > 8000;
            let beyond = ext + len > p + CAP as u64 - FRAME as u64;
            if jumped_back || beyond {
                self.resync(ssrc);
                ext = self.ts.extend(timestamp);
                self.note_transit(now_ms, (now_ms * 8) as i64 - ext as i64);
            } else if ext + len <= p {
                self.stats.late += 1;
                return;
            }
        }
        self.stats.packets += 1;
        let p = *self
            .playout
            .get_or_insert(ext.saturating_sub(u64::from(self.cfg.min_delay_ms) * 8));
        // Samples before the playout point were due already: keep the rest.
        let skip = p.saturating_sub(ext).min(len) as usize;
        let (start, samples) = (ext + skip as u64, &samples[skip..]);
        if self.count_filled(start, samples.len()) == samples.len() {
            self.stats.duplicates += 1;
            return;
        }
        let mut done = 0;
        for (a, b) in Self::spans(start, samples.len()) {
            self.ring[a..b].copy_from_slice(&samples[done..done + b - a]);
            done += b - a;
        }
        self.set_range(start, samples.len(), true);
    }

    fn note_transit(&mut self, now_ms: u64, transit: i64) {
        let epoch = now_ms / BUCKET_MS;
        let b = &mut self.window[(epoch % WINDOW_BUCKETS as u64) as usize];
        if !b.used || b.epoch != epoch {
            *b = Bucket {
                epoch,
                min: transit,
                max: transit,
                used: true,
            };
        } else {
            b.min = b.min.min(transit);
            b.max = b.max.max(transit);
        }
    }

    /// The largest transit of the window (what the buffer must absorb) and the smallest of
    /// its last second (the floor the delay is counted from). The floor is recent on
    /// purpose: for a sender whose clock runs 10-20% slow, transit climbs 400-800 ms over
    /// the window, and a floor that old would cap the aim below the packets arriving now
    /// (the playout would run ahead of them: every packet late, a hole of seconds).
    fn window_bounds(&self, now_ms: u64) -> Option<(i64, i64)> {
        let epoch = now_ms / BUCKET_MS;
        let live = |b: &&Bucket| b.used && epoch.saturating_sub(b.epoch) < WINDOW_BUCKETS as u64;
        let hi = self.window.iter().filter(live).map(|b| b.max).max()?;
        let recent = |b: &&Bucket| live(b) && epoch.saturating_sub(b.epoch) <= 1;
        let lo = self
            .window
            .iter()
            .filter(recent)
            .map(|b| b.min)
            .min()
            .or_else(|| self.window.iter().filter(live).map(|b| b.min).min())?;
        Some((lo, hi))
    }

    /// Play the next 20 ms frame at `now_ms` into `out`.
    pub fn pop(&mut self, now_ms: u64, out: &mut [i16; FRAME]) -> Frame {
        let Some(mut playout) = self.playout else {
            out.fill(0);
            return Frame::Silence;
        };
        let now = (now_ms * 8) as i64;
        if let Some((lo, hi)) = self.window_bounds(now_ms) {
            let desired = (hi + i64::from(self.cfg.margin_ms) * 8).clamp(
                lo + i64::from(self.cfg.min_delay_ms) * 8,
                lo + i64::from(self.cfg.max_delay_ms) * 8,
            );
            let offset = now - playout as i64;
            self.stats.delay_ms = u32::try_from((offset - lo).max(0) / 8).unwrap_or(u32::MAX);
            if offset < desired {
                // Too little buffered for the current jitter: wait one frame.
                self.stats.inserted_frames += 1;
                self.conceal(out);
                return Frame::Concealed;
            }
            let excess = offset - desired;
            if excess > 240 && (excess > 480 || self.frame_is_quiet(playout)) {
                self.set_range(playout, FRAME, false);
                playout += FRAME as u64;
                self.stats.skipped_frames += 1;
            }
        }
        self.playout = Some(playout + FRAME as u64);
        let got = self.count_filled(playout, FRAME);
        if got == FRAME {
            // The common case: the whole frame is here, two copies at most.
            let mut done = 0;
            for (a, b) in Self::spans(playout, FRAME) {
                out[done..done + b - a].copy_from_slice(&self.ring[a..b]);
                done += b - a;
            }
            self.set_range(playout, FRAME, false);
            self.last_frame = *out;
            self.conceal_run = 0;
            return Frame::Audio;
        }
        let mut fill = [0i16; FRAME];
        self.conceal(&mut fill);
        for (i, (o, f)) in out.iter_mut().zip(fill).enumerate() {
            let e = playout + i as u64;
            *o = if self.is_filled(e) {
                self.ring[(e % CAP as u64) as usize]
            } else {
                f
            };
        }
        self.set_range(playout, FRAME, false);
        if got == 0 && self.conceal_run > 4 {
            return Frame::Silence;
        }
        Frame::Concealed
    }

    /// A missing frame is the last good one, fading out over four frames.
    fn conceal(&mut self, out: &mut [i16; FRAME]) {
        self.stats.concealed_frames += 1;
        self.conceal_run += 1;
        let gain = match self.conceal_run {
            1 => 0.8,
            2 => 0.5,
            3 => 0.25,
            _ => 0.0,
        };
        for (o, &s) in out.iter_mut().zip(&self.last_frame) {
            *o = (f32::from(s) * gain) as i16;
        }
    }

    fn frame_is_quiet(&self, playout: u64) -> bool {
        let mut energy = 0i64;
        for e in playout..playout + FRAME as u64 {
            if self.is_filled(e) {
                let s = i64::from(self.ring[(e % CAP as u64) as usize]);
                energy += s * s;
            }
        }
        energy / FRAME as i64 <= 300 * 300
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ramp whose value encodes the sample's timestamp, so order errors are visible.
    /// Every fourth 20 ms frame is quiet (values under 300), like pauses in speech.
    fn samples_for(ts: u32, len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| {
                let t = ts as usize + i;
                if (t / FRAME) % 4 == 3 {
                    (t % 100) as i16
                } else {
                    (t % 30_000) as i16 + 1000
                }
            })
            .collect()
    }

    fn ramp(ts: u32, len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| ((ts as usize + i) % 30_000) as i16 + 1000)
            .collect()
    }

    struct Run {
        jb: JitterBuffer,
        played: Vec<i16>,
        kinds: Vec<Frame>,
    }

    impl Run {
        fn new() -> Self {
            Run {
                jb: JitterBuffer::new(JitterConfig::default()),
                played: Vec::new(),
                kinds: Vec::new(),
            }
        }
        fn tick(&mut self, now_ms: u64) {
            let mut f = [0; FRAME];
            let k = self.jb.pop(now_ms, &mut f);
            self.played.extend_from_slice(&f);
            self.kinds.push(k);
        }
    }

    /// Deliver packets (send time ms, ts) with per-packet network delays, ticking every 20 ms.
    fn simulate(
        packets: &[(u64, u32, u64)],
        end_ms: u64,
        run: &mut Run,
        ssrc: u32,
        signal: fn(u32, usize) -> Vec<i16>,
    ) {
        let mut arrivals: Vec<(u64, u32)> = packets
            .iter()
            .map(|&(send, ts, delay)| (send + delay, ts))
            .collect();
        arrivals.sort_by_key(|a| a.0);
        let mut next = 0;
        let mut t = 0;
        while t < end_ms {
            // Packets due by this tick arrive first, spread inside the 20 ms.
            while next < arrivals.len() && arrivals[next].0 <= t {
                let (at, ts) = arrivals[next];
                run.jb.push(at, ssrc, ts, &signal(ts, FRAME));
                next += 1;
            }
            run.tick(t);
            t += 20;
        }
    }

    #[test]
    fn reordering_within_jitter_is_undone_exactly() {
        let mut run = Run::new();
        // Every pair of packets swapped, with 0–30 ms of jitter.
        let packets: Vec<(u64, u32, u64)> = (0..500u64)
            .map(|i| {
                (
                    i * 20,
                    (i as u32) * 160,
                    10 + if i % 2 == 0 { 30 } else { 0 } + (i * 7919) % 7,
                )
            })
            .collect();
        simulate(&packets, 10_500, &mut run, 1, ramp);
        let s = run.jb.stats();
        assert_eq!(s.late, 0, "{s:?}");
        // After the buffer settles, the output is a gapless ramp.
        let audio: Vec<i16> = run
            .played
            .iter()
            .copied()
            .skip(20 * FRAME)
            .take(300 * FRAME)
            .collect();
        let start = audio.iter().position(|&x| x != 0).expect("audio");
        let mut expect = audio[start];
        let mut breaks = 0;
        for &x in &audio[start..] {
            if x != expect {
                breaks += 1;
            }
            expect = if x == 30_999 { 1000 } else { x + 1 };
        }
        assert!(breaks <= 1, "ramp broken {breaks} times: {s:?}");
    }

    #[test]
    fn duplicates_are_discarded_and_loss_is_concealed() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut f = [0; FRAME];
        jb.push(0, 9, 0, &[100; FRAME]);
        jb.push(1, 9, 0, &[200; FRAME]);
        assert_eq!(jb.stats().duplicates, 1);
        // 20 ms of delay: the first frame plays at t = 20.
        assert_eq!(jb.pop(0, &mut f), Frame::Concealed);
        assert_eq!(jb.pop(20, &mut f), Frame::Audio);
        assert_eq!(f[0], 100);
        assert_eq!(jb.pop(40, &mut f), Frame::Concealed); // lost: faded copy
        assert_eq!(f[0], 80);
        assert_eq!(jb.pop(60, &mut f), Frame::Concealed);
        assert_eq!(f[0], 50);
        // The late copy of a frame already played counts as late.
        jb.push(61, 9, 160, &[5; FRAME]);
        assert_eq!(jb.stats().late, 1);
    }

    #[test]
    fn loss_and_heavy_jitter_settle_without_late_packets() {
        let mut run = Run::new();
        let mut rng = 42u64;
        let mut packets = Vec::new();
        for i in 0..3000u64 {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            if (rng >> 33) % 100 < 5 {
                continue; // 5% loss
            }
            let jitter = (rng >> 40) % 60; // 0–60 ms
            packets.push((i * 20, (i as u32).wrapping_mul(160), 20 + jitter));
        }
        simulate(&packets, 60_000, &mut run, 3, samples_for);
        let s = run.jb.stats();
        // Late packets only while the buffer learns the jitter.
        assert!(s.late < 30, "{s:?}");
        assert!((60..=110).contains(&s.delay_ms), "{s:?}");
    }

    #[test]
    fn sender_clock_drift_does_not_grow_or_starve_the_buffer() {
        for (period_us, name) in [(19_800u64, "fast"), (20_200u64, "slow")] {
            let mut run = Run::new();
            // One hour of a sender whose clock is 1% off, 10 ms of jitter.
            let packets: Vec<(u64, u32, u64)> = (0..180_000u64)
                .map(|i| {
                    (
                        i * period_us / 1000,
                        (i as u32).wrapping_mul(160),
                        10 + (i * 31) % 10,
                    )
                })
                .collect();
            simulate(
                &packets,
                180_000 * period_us / 1000,
                &mut run,
                5,
                samples_for,
            );
            let s = run.jb.stats();
            // A 1% drift moves transit 40 ms inside the 4 s window, which the aim includes.
            assert!(s.delay_ms <= 90, "{name}: {s:?}");
            assert!(s.late < 10, "{name}: {s:?}");
            // 1% of 180,000 frames had to be trimmed or padded, give or take.
            let adjusted = s.skipped_frames + s.inserted_frames;
            assert!((1_500..=2_200).contains(&adjusted), "{name}: {s:?}");
        }
    }

    #[test]
    fn a_sender_far_off_the_clock_is_padded_or_trimmed_without_holes() {
        // A phone whose packets come 10-20% slower (or faster) than their timestamps say:
        // found by the recording test, where a 2 s hole opened in the audio.
        for period_us in [22_000u64, 24_000, 18_000, 16_700] {
            let mut run = Run::new();
            let n = 60_000_000 / period_us; // one minute
            let packets: Vec<(u64, u32, u64)> = (0..n)
                .map(|i| {
                    (
                        i * period_us / 1000,
                        (i as u32).wrapping_mul(160),
                        10 + (i * 31) % 10,
                    )
                })
                .collect();
            simulate(&packets, n * period_us / 1000, &mut run, 7, samples_for);
            let s = run.jb.stats();
            let settled = &run.kinds[50..];
            let silent = settled.iter().filter(|k| **k == Frame::Silence).count();
            assert_eq!(silent, 0, "{period_us} us: {silent} silent frames, {s:?}");
            assert!(s.late < 10, "{period_us} us: {s:?}");
            assert!(s.delay_ms <= 250, "{period_us} us: {s:?}");
            // Every frame the sender did not send (or sent too many) is one padded (or
            // trimmed): |n - ticks| of them, give or take a few.
            let ticks = run.kinds.len() as u64;
            let adjusted = s.skipped_frames + s.inserted_frames;
            let expected = ticks.abs_diff(n);
            assert!(
                adjusted.abs_diff(expected) <= expected / 10 + 20,
                "{period_us} us: {adjusted} adjusted, {expected} expected, {s:?}"
            );
        }
    }

    #[test]
    fn ssrc_change_and_timestamp_jump_restart_cleanly() {
        let mut run = Run::new();
        let mut t = 0u64;
        for i in 0..100u32 {
            run.jb.push(t, 1, 1_000_000 + i * 160, &[1000; FRAME]);
            run.tick(t);
            t += 20;
        }
        // Transfer: new SSRC, unrelated timestamps.
        for i in 0..100u32 {
            run.jb.push(t, 2, 7 + i * 160, &[2000; FRAME]);
            run.tick(t);
            t += 20;
        }
        // Same SSRC, timestamp jumps forward 10 s.
        for i in 0..100u32 {
            run.jb.push(t, 2, 80_000 + 16_000 + i * 160, &[3000; FRAME]);
            run.tick(t);
            t += 20;
        }
        let s = run.jb.stats();
        assert_eq!(s.resyncs, 2, "{s:?}");
        for (range, value) in [(10..99, 1000), (110..199, 2000), (210..299, 3000)] {
            for frame in range {
                assert_eq!(run.kinds[frame], Frame::Audio, "frame {frame}: {s:?}");
                assert_eq!(run.played[frame * FRAME], value, "frame {frame}");
            }
        }
    }
}
