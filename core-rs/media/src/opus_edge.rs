//! Opus at the edge of a browser leg: the leg inside the engine stays G.711 at 8 kHz (its
//! jitter buffer, mixer, recorder, DTMF and AMD are untouched), and this translates its
//! packets to and from the browser's Opus (48 kHz mono, 20 ms frames), so a trunk in G.711
//! talks to a browser in Opus.
//!
//! Resampling is deliberately simple, the audio being telephone band on the engine's side:
//! down by 6 with a 6-tap average (a boxcar low-pass before decimation), up by 6 with linear
//! interpolation. RTP timestamps are mapped between the 8 kHz and 48 kHz clocks from each
//! direction's first packet, so both timelines stay continuous across wrap-around.

use crate::g711::Law;

/// Samples per 20 ms at 48 kHz and at 8 kHz.
pub const FRAME_48K: usize = 960;
pub const FRAME_8K: usize = 160;
const RATIO: u32 = 6;
/// The longest frame a browser may send (120 ms at 48 kHz).
const MAX_FRAME_48K: usize = 5760;

pub struct OpusEdge {
    enc: opus::Encoder,
    dec: opus::Decoder,
    pcm48: Vec<i16>,
    pcm8: Vec<i16>,
    /// The last 8 kHz sample sent, for interpolation across frames.
    last8: i16,
    /// (first 48 kHz timestamp, its 8 kHz counterpart) per direction.
    rx_base: Option<(u32, u32)>,
    tx_base: Option<(u32, u32)>,
}

impl std::fmt::Debug for OpusEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEdge").finish_non_exhaustive()
    }
}

impl OpusEdge {
    pub fn new() -> Result<Self, String> {
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .map_err(|e| format!("Opus encoder: {e}"))?;
        // the source is telephone band: no point coding above it, and it is cheaper
        enc.set_max_bandwidth(opus::Bandwidth::Narrowband)
            .map_err(|e| format!("Opus encoder: {e}"))?;
        enc.set_complexity(5)
            .map_err(|e| format!("Opus encoder: {e}"))?;
        let dec = opus::Decoder::new(48_000, opus::Channels::Mono)
            .map_err(|e| format!("Opus decoder: {e}"))?;
        Ok(OpusEdge {
            enc,
            dec,
            pcm48: vec![0; MAX_FRAME_48K],
            pcm8: vec![0; MAX_FRAME_48K / RATIO as usize],
            last8: 0,
            rx_base: None,
            tx_base: None,
        })
    }

    /// The browser's Opus packet as G.711 codes for the leg (`out`, cleared first), and the
    /// packet's 8 kHz timestamp; None when it does not decode.
    pub fn to_leg(&mut self, ts48: u32, opus: &[u8], law: Law, out: &mut Vec<u8>) -> Option<u32> {
        let n = self.dec.decode(opus, &mut self.pcm48, false).ok()?;
        let m = n / RATIO as usize;
        for (i, s) in self.pcm8[..m].iter_mut().enumerate() {
            let window = &self.pcm48[i * 6..i * 6 + 6];
            *s = (window.iter().map(|&x| i32::from(x)).sum::<i32>() / 6) as i16;
        }
        out.clear();
        out.resize(m, 0);
        law.encode(&self.pcm8[..m], out).ok()?;
        Some(self.ts_to_leg(ts48))
    }

    /// The leg's G.711 frame as an Opus packet for the browser (`out`, cleared first), and
    /// its 48 kHz timestamp; None when it cannot be encoded.
    pub fn to_browser(
        &mut self,
        ts8: u32,
        codes: &[u8],
        law: Law,
        out: &mut Vec<u8>,
    ) -> Option<u32> {
        let m = codes.len().min(self.pcm8.len());
        law.decode(&codes[..m], &mut self.pcm8[..m]).ok()?;
        let mut prev = i32::from(self.last8);
        for (i, &s) in self.pcm8[..m].iter().enumerate() {
            let s = i32::from(s);
            for k in 0..6 {
                self.pcm48[i * 6 + k] = (prev + (s - prev) * (k as i32 + 1) / 6) as i16;
            }
            prev = s;
        }
        self.last8 = prev as i16;
        out.clear();
        out.resize(1500, 0);
        let n = self.enc.encode(&self.pcm48[..m * 6], out).ok()?;
        out.truncate(n);
        Some(self.ts_to_browser(ts8))
    }

    /// A 48 kHz timestamp from the browser on the leg's 8 kHz clock.
    pub fn ts_to_leg(&mut self, ts48: u32) -> u32 {
        let (b48, b8) = *self.rx_base.get_or_insert((ts48, ts48 / RATIO));
        b8.wrapping_add(ts48.wrapping_sub(b48) / RATIO)
    }

    /// An 8 kHz timestamp from the leg on the browser's 48 kHz clock.
    pub fn ts_to_browser(&mut self, ts8: u32) -> u32 {
        let (b8, b48) = *self.tx_base.get_or_insert((ts8, ts8.wrapping_mul(RATIO)));
        b48.wrapping_add(ts8.wrapping_sub(b8).wrapping_mul(RATIO))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn tone(hz: f64, n: usize, rate: f64, phase0: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * hz * (phase0 + i) as f64 / rate).sin())
                    as i16
            })
            .collect()
    }

    /// The amplitude of `hz` in samples at `rate` (Goertzel); the browser tests use it too.
    pub(crate) fn goertzel(samples: &[i16], hz: f64, rate: f64) -> f64 {
        let k = 2.0 * (2.0 * std::f64::consts::PI * hz / rate).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in samples {
            let s0 = f64::from(x) + k * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - k * s1 * s2).max(0.0).sqrt() / samples.len() as f64 * 2.0
    }

    fn level(samples: &[i16], hz: f64) -> f64 {
        goertzel(samples, hz, 8000.0)
    }

    #[test]
    fn a_tone_survives_the_round_trip_through_opus() {
        let mut edge = OpusEdge::new().expect("opus");
        let mut far = OpusEdge::new().expect("opus");
        let (mut opus_pkt, mut codes, mut back) = (Vec::new(), Vec::new(), Vec::new());
        let mut heard = Vec::new();
        for f in 0..25 {
            let pcm = tone(1000.0, FRAME_8K, 8000.0, f * FRAME_8K);
            let mut g711 = vec![0u8; FRAME_8K];
            Law::Pcmu.encode(&pcm, &mut g711).expect("encode");
            let ts48 = edge
                .to_browser(
                    1000 + (f * FRAME_8K) as u32,
                    &g711,
                    Law::Pcmu,
                    &mut opus_pkt,
                )
                .expect("opus out");
            assert_eq!(ts48 % 6, 0);
            // the far end decodes (as the browser would) and its reply comes back the same way
            let ts8 = far
                .to_leg(ts48, &opus_pkt, Law::Pcmu, &mut codes)
                .expect("opus in");
            assert_eq!(codes.len(), FRAME_8K);
            assert_eq!(ts8.wrapping_sub(far.ts_to_leg(ts48)), 0);
            back.resize(FRAME_8K, 0);
            Law::Pcmu.decode(&codes, &mut back).expect("decode");
            heard.extend_from_slice(&back);
        }
        // after the codec's start-up, the tone is there, and a tone not sent is not
        let tail = &heard[heard.len() - 2400..];
        assert!(level(tail, 1000.0) > 2000.0, "{}", level(tail, 1000.0));
        assert!(level(tail, 440.0) < 300.0, "{}", level(tail, 440.0));
    }

    #[test]
    fn timestamps_map_between_clocks_across_wrap_around() {
        let mut edge = OpusEdge::new().expect("opus");
        let start = u32::MAX - 960 * 2;
        let first = edge.ts_to_leg(start);
        assert_eq!(
            edge.ts_to_leg(start.wrapping_add(960)),
            first.wrapping_add(160)
        );
        assert_eq!(
            edge.ts_to_leg(start.wrapping_add(960 * 3)),
            first.wrapping_add(480)
        );
        let b = edge.ts_to_browser(u32::MAX - 160);
        assert_eq!(
            edge.ts_to_browser((u32::MAX - 160).wrapping_add(320)),
            b.wrapping_add(1920)
        );
    }
}
