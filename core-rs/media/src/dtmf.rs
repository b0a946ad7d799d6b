//! DTMF both ways: RFC 4733 telephone-events received (each digit reported once, with its
//! duration, however many redundant end packets arrive and even when they are all lost)
//! and sent, plus in-band detection (Goertzel) and generation for trunks without
//! telephone-event.

/// Where a digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfSource {
    Rfc4733,
    InBand,
}

/// One key press, reported when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    pub digit: char,
    pub duration_ms: u32,
    pub source: DtmfSource,
}

/// RFC 4733 §3.2 event codes 0–16.
pub fn event_to_digit(event: u8) -> Option<char> {
    const DIGITS: &[u8; 17] = b"0123456789*#ABCD!";
    DIGITS.get(usize::from(event)).map(|&b| char::from(b))
}

pub fn digit_to_event(digit: char) -> Option<u8> {
    let up = digit.to_ascii_uppercase();
    b"0123456789*#ABCD!"
        .iter()
        .position(|&b| char::from(b) == up)
        .and_then(|p| u8::try_from(p).ok())
}

/// An event whose updates stop for this long without an end packet is reported anyway.
pub const LOST_END_TIMEOUT_MS: u64 = 250;

#[derive(Debug, Clone, Copy)]
struct OpenEvent {
    ssrc: u32,
    timestamp: u32,
    event: u8,
    duration: u32,
    last_update_ms: u64,
}

/// The receiving side of RFC 4733 for one stream (sans-IO: packets and time in, digits out).
#[derive(Debug, Default)]
pub struct Rfc4733Receiver {
    open: Option<OpenEvent>,
    /// (ssrc, timestamp) of recently ended events: their redundant end packets are ignored.
    ended: [Option<(u32, u32)>; 4],
    ended_next: usize,
    pub redundant_packets: u64,
}

impl Rfc4733Receiver {
    /// Feed one telephone-event payload; digits that ended are pushed to `out`.
    pub fn on_packet(
        &mut self,
        now_ms: u64,
        ssrc: u32,
        timestamp: u32,
        payload: &[u8],
        out: &mut Vec<DtmfDigit>,
    ) {
        let [event, flags, d_hi, d_lo, ..] = *payload else {
            return;
        };
        let end = flags & 0x80 != 0;
        let duration = u32::from(u16::from_be_bytes([d_hi, d_lo]));
        if self.ended.contains(&Some((ssrc, timestamp))) {
            self.redundant_packets += 1;
            return;
        }
        if event_to_digit(event).is_none() {
            return;
        }
        match self.open {
            Some(open) if open.ssrc == ssrc && open.timestamp == timestamp => {
                let o = self.open.get_or_insert(open);
                o.duration = o.duration.max(duration);
                o.last_update_ms = now_ms;
            }
            _ => {
                // A new event while another is open: the open one's end packets were lost.
                self.flush(out);
                self.open = Some(OpenEvent {
                    ssrc,
                    timestamp,
                    event,
                    duration,
                    last_update_ms: now_ms,
                });
            }
        }
        if end {
            self.flush(out);
        }
    }

    /// Report an open event whose updates stopped (all its end packets lost).
    pub fn poll(&mut self, now_ms: u64, out: &mut Vec<DtmfDigit>) {
        if let Some(o) = self.open {
            if now_ms.saturating_sub(o.last_update_ms) >= LOST_END_TIMEOUT_MS {
                self.flush(out);
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<DtmfDigit>) {
        if let Some(o) = self.open.take() {
            self.ended[self.ended_next] = Some((o.ssrc, o.timestamp));
            self.ended_next = (self.ended_next + 1) % self.ended.len();
            if let Some(digit) = event_to_digit(o.event) {
                out.push(DtmfDigit {
                    digit,
                    duration_ms: o.duration / 8,
                    source: DtmfSource::Rfc4733,
                });
            }
        }
    }
}

/// One telephone-event packet to send: the leg stamps sequence number and SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub marker: bool,
    /// The RTP timestamp of the event's start (the same for all its packets).
    pub timestamp: u32,
    pub payload: [u8; 4],
    /// Redundant end packets repeat the previous packet's sequence number (RFC 4733 §2.5.1.4).
    pub repeat_sequence: bool,
}

#[derive(Debug, Clone, Copy)]
enum SendPhase {
    Tone { elapsed: u32 },
    End { sent: u8 },
    Pause { left: u32 },
}

/// The sending side: digits are queued; each 20 ms tick yields at most one packet.
#[derive(Debug, Default)]
pub struct Rfc4733Sender {
    queue: std::collections::VecDeque<(u8, u32)>,
    current: Option<(u8, u32, u32, SendPhase)>, // event, duration samples, start ts, phase
}

/// Silence between queued digits, in samples (100 ms).
const INTER_DIGIT_SAMPLES: u32 = 800;

impl Rfc4733Sender {
    pub fn queue_digits(&mut self, digits: &str, duration_ms: u32) -> Result<(), char> {
        let samples = duration_ms.clamp(40, 5000) * 8;
        let events: Vec<u8> = digits
            .chars()
            .map(|c| digit_to_event(c).ok_or(c))
            .collect::<Result<_, _>>()?;
        self.queue.extend(events.into_iter().map(|e| (e, samples)));
        Ok(())
    }

    pub fn is_active(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// Whether audio must be suppressed this tick (an event is being sent).
    pub fn sending_tone(&self) -> bool {
        matches!(
            self.current,
            Some((_, _, _, SendPhase::Tone { .. } | SendPhase::End { .. }))
        )
    }

    /// Advance one frame of `frame` samples; `ts` is the stream timestamp of this frame.
    pub fn tick(&mut self, ts: u32, frame: u32) -> Option<EventPacket> {
        if self.current.is_none() {
            let (event, samples) = self.queue.pop_front()?;
            self.current = Some((event, samples, ts, SendPhase::Tone { elapsed: 0 }));
        }
        let (event, samples, start, phase) = self.current.as_mut()?;
        let packet = |marker: bool, end: bool, duration: u32, repeat: bool| EventPacket {
            marker,
            timestamp: *start,
            payload: {
                let d = u16::try_from(duration).unwrap_or(u16::MAX).to_be_bytes();
                [*event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
            },
            repeat_sequence: repeat,
        };
        match *phase {
            SendPhase::Tone { elapsed } => {
                let elapsed = elapsed + frame;
                if elapsed >= *samples {
                    *phase = SendPhase::End { sent: 1 };
                    Some(packet(false, true, *samples, false))
                } else {
                    *phase = SendPhase::Tone { elapsed };
                    Some(packet(elapsed == frame, false, elapsed, false))
                }
            }
            SendPhase::End { sent } => {
                let p = packet(false, true, *samples, true);
                *phase = if sent >= 2 {
                    SendPhase::Pause {
                        left: INTER_DIGIT_SAMPLES,
                    }
                } else {
                    SendPhase::End { sent: sent + 1 }
                };
                Some(p)
            }
            SendPhase::Pause { left } => {
                if left <= frame {
                    self.current = None;
                } else {
                    *phase = SendPhase::Pause { left: left - frame };
                }
                None
            }
        }
    }
}

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Thresholds of the in-band detector.
#[derive(Debug, Clone, Copy)]
pub struct InBandConfig {
    /// Minimum power of each tone, as mean square amplitude (default ≈ −36 dBm0).
    pub min_tone_power: f32,
    /// Column over row power allowed (normal twist), and row over column (reverse), in dB.
    pub normal_twist_db: f32,
    pub reverse_twist_db: f32,
    /// Share of the frame's energy the two tones must carry.
    pub min_tone_share: f32,
}

impl Default for InBandConfig {
    fn default() -> Self {
        InBandConfig {
            min_tone_power: 200.0,
            normal_twist_db: 8.0,
            reverse_twist_db: 4.0,
            min_tone_share: 0.6,
        }
    }
}

/// Goertzel detector over 20 ms frames: a digit starts after two frames agree and ends
/// after two frames without it, so a tone must last about 60 ms to be seen.
#[derive(Debug)]
pub struct InBandDetector {
    cfg: InBandConfig,
    coeffs: [f32; 8],
    candidate: Option<char>,
    candidate_frames: u32,
    active: Option<(char, u32)>, // digit, frames present
    absent_frames: u32,
}

impl InBandDetector {
    pub fn new(cfg: InBandConfig) -> Self {
        let mut coeffs = [0.0; 8];
        for (c, f) in coeffs.iter_mut().zip(ROWS.iter().chain(COLS.iter())) {
            *c = 2.0 * (2.0 * std::f32::consts::PI * f / 8000.0).cos();
        }
        InBandDetector {
            cfg,
            coeffs,
            candidate: None,
            candidate_frames: 0,
            active: None,
            absent_frames: 0,
        }
    }

    /// The digit a single frame carries, if any.
    pub fn classify(&self, frame: &[i16]) -> Option<char> {
        let n = frame.len() as f32;
        if frame.is_empty() {
            return None;
        }
        let mut s1 = [0.0f32; 8];
        let mut s2 = [0.0f32; 8];
        let mut energy = 0.0f32;
        for &x in frame {
            let x = f32::from(x);
            energy += x * x;
            for k in 0..8 {
                let s0 = x + self.coeffs[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        // |X(f)|² scaled so a sine of mean square P gives ≈ P.
        let mut power = [0.0f32; 8];
        for k in 0..8 {
            power[k] =
                (s1[k] * s1[k] + s2[k] * s2[k] - self.coeffs[k] * s1[k] * s2[k]) * 2.0 / (n * n);
        }
        let mean_square = energy / n;
        let best = |p: &[f32]| {
            let mut i = 0;
            for j in 1..p.len() {
                if p[j] > p[i] {
                    i = j;
                }
            }
            i
        };
        let (r, c) = (best(&power[..4]), best(&power[4..]));
        let (pr, pc) = (power[r], power[4 + c]);
        if pr < self.cfg.min_tone_power || pc < self.cfg.min_tone_power {
            return None;
        }
        let twist_db = 10.0 * (pc / pr).log10();
        if twist_db > self.cfg.normal_twist_db || -twist_db > self.cfg.reverse_twist_db {
            return None;
        }
        // Each tone must stand 6 dB above the others of its group.
        for (i, &p) in power[..4].iter().enumerate() {
            if i != r && p * 4.0 > pr {
                return None;
            }
        }
        for (i, &p) in power[4..].iter().enumerate() {
            if i != c && p * 4.0 > pc {
                return None;
            }
        }
        if pr + pc < self.cfg.min_tone_share * mean_square {
            return None;
        }
        Some(KEYPAD[r][c])
    }

    /// Feed one 20 ms frame; a digit that ended is returned.
    pub fn push_frame(&mut self, frame: &[i16]) -> Option<DtmfDigit> {
        let seen = self.classify(frame);
        let frame_ms = u32::try_from(frame.len() / 8).unwrap_or(20);
        if let Some((digit, frames)) = self.active {
            if seen == Some(digit) {
                self.active = Some((digit, frames + 1));
                self.absent_frames = 0;
                return None;
            }
            self.absent_frames += 1;
            if self.absent_frames < 2 && seen.is_none() {
                return None;
            }
            self.active = None;
            self.absent_frames = 0;
            self.candidate = seen;
            self.candidate_frames = u32::from(seen.is_some());
            return Some(DtmfDigit {
                digit,
                duration_ms: frames * frame_ms,
                source: DtmfSource::InBand,
            });
        }
        match seen {
            Some(d) if self.candidate == Some(d) => {
                self.candidate_frames += 1;
                if self.candidate_frames >= 2 {
                    self.active = Some((d, self.candidate_frames));
                    self.candidate = None;
                }
            }
            Some(d) => {
                self.candidate = Some(d);
                self.candidate_frames = 1;
            }
            None => {
                self.candidate = None;
                self.candidate_frames = 0;
            }
        }
        None
    }
}

/// Phase-continuous dual-tone generator for in-band sending.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    pub low_hz: f64,
    pub high_hz: f64,
    /// Peak amplitude of each tone.
    pub amplitude: f64,
    sample: u64,
}

impl ToneGenerator {
    pub fn for_digit(digit: char, amplitude: f64) -> Option<Self> {
        let up = digit.to_ascii_uppercase();
        for (r, row) in KEYPAD.iter().enumerate() {
            if let Some(c) = row.iter().position(|&k| k == up) {
                return Some(ToneGenerator {
                    low_hz: f64::from(ROWS[r]),
                    high_hz: f64::from(COLS[c]),
                    amplitude,
                    sample: 0,
                });
            }
        }
        None
    }

    pub fn fill(&mut self, out: &mut [i16]) {
        use std::f64::consts::TAU;
        for o in out {
            let t = self.sample as f64 / 8000.0;
            let v =
                self.amplitude * ((TAU * self.low_hz * t).sin() + (TAU * self.high_hz * t).sin());
            *o = v.clamp(-32768.0, 32767.0) as i16;
            self.sample += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x8a } else { 0x0a }, d[0], d[1]]
    }

    #[test]
    fn redundant_end_packets_count_once() {
        let mut rx = Rfc4733Receiver::default();
        let mut out = Vec::new();
        for (i, dur) in [160u16, 320, 480].iter().enumerate() {
            rx.on_packet(i as u64 * 20, 1, 1000, &payload(5, false, *dur), &mut out);
        }
        for _ in 0..3 {
            rx.on_packet(80, 1, 1000, &payload(5, true, 640), &mut out);
        }
        assert_eq!(
            out,
            vec![DtmfDigit {
                digit: '5',
                duration_ms: 80,
                source: DtmfSource::Rfc4733
            }]
        );
        assert_eq!(rx.redundant_packets, 2);
    }

    #[test]
    fn same_digit_twice_is_two_digits() {
        let mut rx = Rfc4733Receiver::default();
        let mut out = Vec::new();
        rx.on_packet(0, 1, 1000, &payload(1, true, 800), &mut out);
        rx.on_packet(200, 1, 3000, &payload(1, true, 800), &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn lost_end_packets_still_give_the_digit_once() {
        let mut rx = Rfc4733Receiver::default();
        let mut out = Vec::new();
        rx.on_packet(0, 1, 1000, &payload(9, false, 160), &mut out);
        rx.on_packet(20, 1, 1000, &payload(9, false, 320), &mut out);
        rx.poll(100, &mut out);
        assert!(out.is_empty());
        rx.poll(270, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].digit, '9');
        // A late end packet of that event is ignored.
        rx.on_packet(300, 1, 1000, &payload(9, true, 800), &mut out);
        assert_eq!(out.len(), 1);
        // And a new event flushes an open one immediately.
        rx.on_packet(400, 1, 5000, &payload(2, false, 160), &mut out);
        rx.on_packet(420, 1, 6000, &payload(3, true, 800), &mut out);
        assert_eq!(out.iter().map(|d| d.digit).collect::<String>(), "923");
    }

    #[test]
    fn sender_output_is_understood_by_receiver() {
        let mut tx = Rfc4733Sender::default();
        tx.queue_digits("1#9", 100).expect("valid digits");
        assert_eq!(tx.queue_digits("x", 100), Err('x'));
        let mut rx = Rfc4733Receiver::default();
        let mut out = Vec::new();
        let mut ts = 0u32;
        let mut packets = 0;
        for tick in 0..200u64 {
            if let Some(p) = tx.tick(ts, 160) {
                packets += 1;
                rx.on_packet(tick * 20, 7, p.timestamp, &p.payload, &mut out);
            }
            ts = ts.wrapping_add(160);
        }
        assert!(!tx.is_active());
        assert_eq!(out.iter().map(|d| d.digit).collect::<String>(), "1#9");
        assert!(out.iter().all(|d| d.duration_ms == 100));
        assert_eq!(packets, 3 * (4 + 3)); // 4 updates (the 5th is the end), 3 end packets
    }

    fn tone(digit: char, ms: usize, amplitude: f64) -> Vec<i16> {
        let mut g = ToneGenerator::for_digit(digit, amplitude).expect("digit");
        let mut v = vec![0; ms * 8];
        g.fill(&mut v);
        v
    }

    fn detect(signal: &[i16]) -> Vec<DtmfDigit> {
        let mut d = InBandDetector::new(InBandConfig::default());
        let mut out: Vec<DtmfDigit> = signal.chunks(160).filter_map(|f| d.push_frame(f)).collect();
        out.extend(d.push_frame(&[0; 160]));
        out.extend(d.push_frame(&[0; 160]));
        out
    }

    #[test]
    fn inband_detects_every_key() {
        for key in "123A456B789C*0#D".chars() {
            let mut s = vec![0i16; 800];
            s.extend(tone(key, 100, 4000.0));
            s.extend(vec![0; 800]);
            let got = detect(&s);
            assert_eq!(got.len(), 1, "{key}: {got:?}");
            assert_eq!(got[0].digit, key);
            assert!((80..=120).contains(&got[0].duration_ms), "{got:?}");
        }
    }

    #[test]
    fn inband_ignores_single_tones_noise_and_too_weak_digits() {
        let mut single = vec![0i16; 1600];
        for (i, s) in single.iter_mut().enumerate() {
            *s = (8000.0 * (std::f64::consts::TAU * 697.0 * i as f64 / 8000.0).sin()) as i16;
        }
        assert!(detect(&single).is_empty());
        let mut state = 1u32;
        let noise: Vec<i16> = (0..8000)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((state >> 16) as i16) / 4
            })
            .collect();
        assert!(detect(&noise).is_empty());
        assert!(detect(&tone('5', 200, 5.0)).is_empty());
        // Noise at −20 dB under a digit does not stop it being heard.
        let loud: Vec<i16> = tone('7', 200, 6000.0)
            .iter()
            .zip(&noise)
            .map(|(a, b)| a.saturating_add(b / 20))
            .collect();
        assert_eq!(
            detect(&loud).iter().map(|d| d.digit).collect::<String>(),
            "7"
        );
    }
}
