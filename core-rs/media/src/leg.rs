//! One call leg's media, sans-IO: datagrams and ticks in; frames, packets and events out.
//!
//! Receiving: RTP is parsed, counted (loss, jitter), telephone-events go to the RFC 4733
//! receiver, audio is decoded (by its payload type, so a peer switching law still plays)
//! into the jitter buffer. Each 20 ms tick pulls one frame, runs in-band DTMF and AMD on it
//! and checks the media timeout. Sending: queued DTMF wins, then prompts (mixed over the
//! room's audio), then the room's audio, else silence; one packet per tick.
//! Pass-through: when nothing needs this leg's audio, [`Leg::forward_from`] re-stamps a
//! peer's packet with this leg's SSRC, sequence and timestamp base without decoding.

use std::net::SocketAddr;

use crate::amd::{AmdConfig, AmdDecision, AmdDetector};
use crate::dtmf::{
    DtmfDigit, InBandConfig, InBandDetector, Rfc4733Receiver, Rfc4733Sender, ToneGenerator,
};
use crate::g711::Law;
use crate::jitter::{Frame, JitterBuffer, JitterConfig, JitterStats};
use crate::player::{Finished, Player, Prompt};
use crate::record_tap::{RecordTap, TapStats};
use crate::rtcp::{self, ReceiveStats, ReportBlock, SenderInfo};
use crate::rtp::{build_rtp, looks_like_rtcp, RtpPacket};

pub const FRAME: usize = 160;
/// RTCP report interval (RFC 3550 minimum for small sessions).
pub const RTCP_INTERVAL_MS: u64 = 5000;

#[derive(Debug, Clone, Copy)]
pub struct LegConfig {
    pub law: Law,
    /// Negotiated telephone-event payload type, None when the peer has none.
    pub dtmf_pt: Option<u8>,
    pub inband_dtmf: bool,
    /// No RTP for this long raises [`LegEvent::MediaTimeout`] (0: never).
    pub media_timeout_ms: u32,
    /// Send to where packets come from (callers behind NAT).
    pub symmetric: bool,
    pub jitter: JitterConfig,
}

impl Default for LegConfig {
    fn default() -> Self {
        LegConfig {
            law: Law::Pcmu,
            dtmf_pt: Some(101),
            inband_dtmf: false,
            media_timeout_ms: 30_000,
            symmetric: true,
            jitter: JitterConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LegEvent {
    Dtmf(DtmfDigit),
    MediaTimeout {
        silent_ms: u64,
    },
    Amd(AmdDecision),
    Played(Finished),
    /// The peer's RTCP said goodbye.
    RtcpBye,
}

/// What a datagram was, for the engine's forwarding decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Audio,
    Event,
    Rtcp,
    Ignored,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LegStats {
    pub packets_received: u64,
    pub packets_lost: u64,
    pub jitter_ms: f64,
    pub jitter_buffer: JitterStats,
    pub packets_sent: u64,
    pub malformed: u64,
    pub rtt_ms: Option<f64>,
    /// Loss fraction the peer reported for our stream, 0–1.
    pub remote_fraction_lost: f64,
    /// The recording's view (by RTP timestamp) while the leg is recorded.
    pub recording: TapStats,
    pub mos: f64,
}

#[derive(Debug)]
pub struct Leg {
    cfg: LegConfig,
    pub remote: Option<SocketAddr>,
    pub remote_rtcp: Option<SocketAddr>,
    stats: ReceiveStats,
    rx_ssrc: Option<u32>,
    jb: JitterBuffer,
    rfc4733: Rfc4733Receiver,
    inband: Option<InBandDetector>,
    amd: Option<AmdDetector>,
    last_rx_ms: Option<u64>,
    created_ms: u64,
    timeout_reported: bool,
    malformed: u64,
    // Sending side.
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker_next: bool,
    sent_packets: u32,
    sent_octets: u32,
    dtmf_tx: Rfc4733Sender,
    inband_tx: Option<(ToneGenerator, u32, u32)>, // generator, tone samples left, pause samples left
    inband_queue: std::collections::VecDeque<(char, u32)>,
    player: Player,
    // Pass-through re-stamping.
    fwd_src: Option<u32>,
    fwd_ts_offset: u32,
    // RTCP.
    last_sr: Option<(u32, u64)>, // LSR, local ms when received
    rtt_ms: Option<f64>,
    remote_fraction_lost: f64,
    next_rtcp_ms: u64,
    /// What this leg's party said in the current tick (after the jitter buffer).
    pub heard: [i16; FRAME],
    pub heard_audio: bool,
    /// Set by the engine when the leg's audio is needed (mixing, recording): decode it.
    pub decode: bool,
    /// While recorded: the party's audio placed by RTP timestamp, for the recorder.
    tap: Option<RecordTap>,
    tap_stats: TapStats,
    encode_buf: [u8; FRAME],
}

impl Leg {
    pub fn new(cfg: LegConfig, ssrc: u32, now_ms: u64) -> Self {
        Leg {
            cfg,
            remote: None,
            remote_rtcp: None,
            stats: ReceiveStats::default(),
            rx_ssrc: None,
            jb: JitterBuffer::new(cfg.jitter),
            rfc4733: Rfc4733Receiver::default(),
            inband: cfg
                .inband_dtmf
                .then(|| InBandDetector::new(InBandConfig::default())),
            amd: None,
            last_rx_ms: None,
            created_ms: now_ms,
            timeout_reported: false,
            malformed: 0,
            ssrc,
            seq: (ssrc >> 7) as u16,
            ts: ssrc.rotate_left(13),
            marker_next: true,
            sent_packets: 0,
            sent_octets: 0,
            dtmf_tx: Rfc4733Sender::default(),
            inband_tx: None,
            inband_queue: Default::default(),
            player: Player::default(),
            fwd_src: None,
            fwd_ts_offset: 0,
            last_sr: None,
            rtt_ms: None,
            remote_fraction_lost: 0.0,
            next_rtcp_ms: now_ms + RTCP_INTERVAL_MS,
            heard: [0; FRAME],
            heard_audio: false,
            decode: true,
            tap: None,
            tap_stats: TapStats::default(),
            encode_buf: [0; FRAME],
        }
    }

    /// Keep a recording's view of this leg's audio (see [`RecordTap`]) or stop keeping it.
    pub fn set_recorded(&mut self, on: bool) {
        match (on, self.tap.is_some()) {
            (true, false) => self.tap = Some(RecordTap::new()),
            (false, true) => {
                if let Some(t) = self.tap.take() {
                    self.tap_stats = self.tap_stats + t.stats();
                }
            }
            _ => {}
        }
    }

    /// Frames of this leg's audio its recording has not read yet (see [`RecordTap`]).
    pub fn recorded_pending_frames(&self) -> usize {
        self.tap.as_ref().map_or(0, RecordTap::pending_frames)
    }

    /// The recording's next frame of this leg (silence when it is not recorded).
    pub fn pull_recorded(&mut self, out: &mut [i16; FRAME]) {
        match self.tap.as_mut() {
            Some(t) => t.pull(out),
            None => out.fill(0),
        }
    }

    pub fn config(&self) -> LegConfig {
        self.cfg
    }

    pub fn law(&self) -> Law {
        self.cfg.law
    }

    pub fn set_codec(&mut self, law: Law, dtmf_pt: Option<u8>) {
        self.cfg.law = law;
        self.cfg.dtmf_pt = dtmf_pt;
    }

    pub fn set_inband_dtmf(&mut self, on: bool) {
        self.cfg.inband_dtmf = on;
        self.inband = on.then(|| InBandDetector::new(InBandConfig::default()));
    }

    pub fn set_media_timeout(&mut self, ms: u32, now_ms: u64) {
        self.cfg.media_timeout_ms = ms;
        self.timeout_reported = false;
        self.last_rx_ms = self.last_rx_ms.map(|_| now_ms);
        self.created_ms = now_ms;
    }

    /// Point the leg at a new peer address (re-INVITE); takes effect on the next packet.
    pub fn set_remote(&mut self, rtp: SocketAddr, rtcp: Option<SocketAddr>) {
        self.remote = Some(rtp);
        self.remote_rtcp = rtcp.or_else(|| {
            rtp.port()
                .checked_add(1)
                .map(|p| SocketAddr::new(rtp.ip(), p))
        });
    }

    pub fn start_amd(&mut self, cfg: AmdConfig) {
        self.amd = Some(AmdDetector::new(cfg));
    }

    pub fn enqueue_prompt(&mut self, p: Prompt) {
        self.player.enqueue(p);
    }

    pub fn stop_playback(&mut self, events: &mut Vec<LegEvent>) {
        let mut done = Vec::new();
        self.player.stop(&mut done);
        events.extend(done.into_iter().map(LegEvent::Played));
    }

    pub fn queue_dtmf(&mut self, digits: &str, duration_ms: u32) -> Result<(), char> {
        if self.cfg.dtmf_pt.is_some() {
            self.dtmf_tx.queue_digits(digits, duration_ms)
        } else {
            for c in digits.chars() {
                ToneGenerator::for_digit(c, 1.0).ok_or(c)?;
            }
            let samples = duration_ms.clamp(40, 5000) * 8;
            self.inband_queue
                .extend(digits.chars().map(|c| (c, samples)));
            Ok(())
        }
    }

    /// Decode (and buffer) received audio or not; the buffer restarts when decoding resumes.
    pub fn set_decode(&mut self, on: bool) {
        if on && !self.decode {
            self.jb.reset();
            self.end_forwarding();
        }
        self.decode = on;
    }

    /// Whether the leg needs its own audio handled this tick (blocks pass-through).
    pub fn needs_audio_path(&self) -> bool {
        self.cfg.inband_dtmf
            || self.amd.as_ref().is_some_and(|a| a.decision().is_none())
            || self.player.is_playing()
            || self.dtmf_tx.is_active()
            || self.inband_tx.is_some()
            || !self.inband_queue.is_empty()
    }

    /// Handle one datagram from `src` arriving at `now_ms`.
    pub fn on_datagram(
        &mut self,
        now_ms: u64,
        src: SocketAddr,
        data: &[u8],
        events: &mut Vec<LegEvent>,
    ) -> Received {
        if looks_like_rtcp(data) {
            self.on_rtcp(now_ms, data, events);
            return Received::Rtcp;
        }
        let Ok(p) = RtpPacket::parse(data) else {
            self.malformed += 1;
            return Received::Ignored;
        };
        let is_event = self.cfg.dtmf_pt == Some(p.payload_type);
        let law = Law::from_payload_type(p.payload_type);
        if !is_event && law.is_none() {
            return Received::Ignored; // comfort noise, unknown payload types
        }
        if self.cfg.symmetric && self.remote != Some(src) {
            self.set_remote(src, None);
        }
        if self.rx_ssrc != Some(p.ssrc) {
            if self.rx_ssrc.is_some() {
                self.stats.restart_sequence();
            }
            self.rx_ssrc = Some(p.ssrc);
        }
        self.stats
            .on_packet(now_ms, p.sequence, p.timestamp, p.payload.len());
        self.last_rx_ms = Some(now_ms);
        self.timeout_reported = false;
        if is_event {
            let mut digits = Vec::new();
            self.rfc4733
                .on_packet(now_ms, p.ssrc, p.timestamp, p.payload, &mut digits);
            self.digits_heard(digits, events);
            return Received::Event;
        }
        if self.decode {
            if let Some(law) = law {
                let mut pcm = [0i16; 480];
                let n = p.payload.len().min(pcm.len());
                let _ = law.decode(&p.payload[..n], &mut pcm[..n]); // equal lengths
                self.jb.push(now_ms, p.ssrc, p.timestamp, &pcm[..n]);
                if let Some(t) = self.tap.as_mut() {
                    t.push(p.ssrc, law, p.timestamp, p.payload);
                }
            }
        }
        Received::Audio
    }

    fn digits_heard(&mut self, digits: Vec<DtmfDigit>, events: &mut Vec<LegEvent>) {
        for d in digits {
            let mut done = Vec::new();
            self.player.on_dtmf(&mut done);
            events.push(LegEvent::Dtmf(d));
            events.extend(done.into_iter().map(LegEvent::Played));
        }
    }

    fn on_rtcp(&mut self, now_ms: u64, data: &[u8], events: &mut Vec<LegEvent>) {
        let Some(r) = rtcp::parse_report(data) else {
            self.malformed += 1;
            return;
        };
        if let Some(si) = r.sender_info {
            self.last_sr = Some((rtcp::ntp_mid32(si.ntp), now_ms));
        }
        for b in r.blocks.iter().filter(|b| b.ssrc == self.ssrc) {
            self.remote_fraction_lost = f64::from(b.fraction_lost) / 256.0;
            let now_ntp = crate::leg::ntp_now();
            if let Some(rtt) = rtcp::round_trip_ms(now_ntp, b) {
                self.rtt_ms = Some(rtt);
            }
        }
        if r.bye {
            events.push(LegEvent::RtcpBye);
        }
    }

    /// Pull this tick's frame from the jitter buffer into [`Leg::heard`], run the detectors.
    pub fn pull_frame(&mut self, now_ms: u64, events: &mut Vec<LegEvent>) {
        let kind = if self.decode {
            self.jb.pop(now_ms, &mut self.heard)
        } else {
            Frame::Silence
        };
        if kind == Frame::Silence {
            self.heard.fill(0);
        }
        self.heard_audio = kind != Frame::Silence;
        let mut digits = Vec::new();
        self.rfc4733.poll(now_ms, &mut digits);
        if let Some(det) = self.inband.as_mut() {
            digits.extend(det.push_frame(&self.heard));
        }
        self.digits_heard(digits, events);
        if let Some(amd) = self.amd.as_mut() {
            if let Some(d) = amd.push_frame(&self.heard) {
                events.push(LegEvent::Amd(d));
            }
        }
        self.check_timeout(now_ms, events);
    }

    /// The media timeout alone (pass-through legs skip [`Leg::pull_frame`]).
    pub fn check_timeout(&mut self, now_ms: u64, events: &mut Vec<LegEvent>) {
        if self.cfg.media_timeout_ms == 0 || self.timeout_reported {
            return;
        }
        let since = now_ms.saturating_sub(self.last_rx_ms.unwrap_or(self.created_ms));
        if since >= u64::from(self.cfg.media_timeout_ms) {
            self.timeout_reported = true;
            events.push(LegEvent::MediaTimeout { silent_ms: since });
        }
    }

    /// Build this tick's outgoing packet into `out` from the room's `mixed` audio (if any).
    /// Returns false when nothing is to be sent (no remote address yet).
    pub fn build_packet(
        &mut self,
        mixed: Option<&[i16; FRAME]>,
        out: &mut Vec<u8>,
        events: &mut Vec<LegEvent>,
    ) -> bool {
        let frame_ts = self.ts;
        self.ts = self.ts.wrapping_add(FRAME as u32);
        if let (Some(pt), Some(ev)) = (self.cfg.dtmf_pt, self.dtmf_tx.tick(frame_ts, FRAME as u32))
        {
            if !ev.repeat_sequence {
                self.seq = self.seq.wrapping_add(1);
            }
            build_rtp(
                out,
                ev.marker,
                pt,
                self.seq,
                ev.timestamp,
                self.ssrc,
                &ev.payload,
            );
            return self.count_sent(out);
        }
        let mut frame = [0i16; FRAME];
        let mut have = false;
        if let Some(m) = mixed {
            frame = *m;
            have = true;
        }
        if self.inband_tx.is_none() {
            if let Some((c, samples)) = self.inband_queue.pop_front() {
                self.inband_tx = ToneGenerator::for_digit(c, 7000.0).map(|g| (g, samples, 800));
            }
        }
        if let Some((gen, tone_left, pause_left)) = self.inband_tx.as_mut() {
            let mut tone = [0i16; FRAME];
            if *tone_left > 0 {
                gen.fill(&mut tone);
                *tone_left = tone_left.saturating_sub(FRAME as u32);
            } else {
                *pause_left = pause_left.saturating_sub(FRAME as u32);
            }
            let finished = *tone_left == 0 && *pause_left == 0;
            frame = tone;
            have = true;
            if finished {
                self.inband_tx = None;
            }
        } else if self.player.is_playing() {
            let mut prompt = [0i16; FRAME];
            let mut done = Vec::new();
            self.player.next_frame(&mut prompt, &mut done);
            events.extend(done.into_iter().map(LegEvent::Played));
            for (f, p) in frame.iter_mut().zip(prompt) {
                *f = f.saturating_add(p);
            }
            have = true;
        }
        let law = self.cfg.law;
        if have {
            // Same length on both sides: this cannot fail.
            let _ = law.encode(&frame, &mut self.encode_buf);
        } else {
            self.encode_buf.fill(law.silence());
        }
        self.seq = self.seq.wrapping_add(1);
        let marker = std::mem::take(&mut self.marker_next);
        build_rtp(
            out,
            marker,
            law.payload_type(),
            self.seq,
            frame_ts,
            self.ssrc,
            &self.encode_buf,
        );
        self.count_sent(out)
    }

    fn count_sent(&mut self, out: &[u8]) -> bool {
        self.sent_packets = self.sent_packets.wrapping_add(1);
        self.sent_octets = self
            .sent_octets
            .wrapping_add((out.len() - crate::rtp::RTP_HEADER_LEN) as u32);
        self.remote.is_some()
    }

    /// Re-stamp a packet received on the peer leg for sending on this one (pass-through).
    /// `law_ok` says the peer's audio law equals ours; events are mapped to our payload type.
    pub fn forward_from(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let Ok(p) = RtpPacket::parse(data) else {
            return false;
        };
        let pt = match Law::from_payload_type(p.payload_type) {
            Some(l) if l == self.cfg.law => p.payload_type,
            Some(_) => return false,
            None => match self.cfg.dtmf_pt {
                Some(pt) => pt,
                None => return false,
            },
        };
        if self.fwd_src != Some(p.ssrc) {
            // A new source: continue our timeline from where it is now.
            self.fwd_src = Some(p.ssrc);
            self.fwd_ts_offset = self.ts.wrapping_sub(p.timestamp);
            self.marker_next = true;
        }
        let ts = p.timestamp.wrapping_add(self.fwd_ts_offset);
        self.seq = self.seq.wrapping_add(1);
        let marker = p.marker || std::mem::take(&mut self.marker_next);
        build_rtp(out, marker, pt, self.seq, ts, self.ssrc, p.payload);
        if Law::from_payload_type(p.payload_type).is_some() {
            let n = p.payload.len() as u32;
            // Keep our clock where the stream is, so mixing can resume seamlessly.
            if ts.wrapping_add(n).wrapping_sub(self.ts) < 0x8000_0000 {
                self.ts = ts.wrapping_add(n);
            }
        }
        self.count_sent(out)
    }

    /// The tick path was used after pass-through: forget the forwarding offset.
    pub fn end_forwarding(&mut self) {
        self.fwd_src = None;
    }

    /// An RTCP report due at `now_ms` (every 5 s), built into `out`.
    pub fn rtcp_due(&mut self, now_ms: u64, out: &mut Vec<u8>) -> bool {
        if now_ms < self.next_rtcp_ms || self.remote_rtcp.is_none() {
            return false;
        }
        self.next_rtcp_ms = now_ms + RTCP_INTERVAL_MS;
        let ntp = ntp_now();
        let sender = (self.sent_packets > 0).then_some(SenderInfo {
            ntp,
            rtp_timestamp: self.ts,
            packets: self.sent_packets,
            octets: self.sent_octets,
        });
        let block: Option<ReportBlock> = self.rx_ssrc.map(|ssrc| {
            let (lsr, dlsr) = match self.last_sr {
                Some((lsr, at)) => (lsr, ((now_ms - at) * 65536 / 1000) as u32),
                None => (0, 0),
            };
            self.stats.report_block(ssrc, lsr, dlsr)
        });
        rtcp::build_report(out, self.ssrc, sender, block, "ccorch");
        true
    }

    pub fn stats(&self) -> LegStats {
        let jb = self.jb.stats();
        let expected = self.stats.expected().max(1) as f64;
        let loss_pct = (self.stats.lost() + jb.late) as f64 * 100.0 / expected;
        let delay = f64::from(jb.delay_ms) + 20.0 + self.rtt_ms.unwrap_or(0.0) / 2.0;
        LegStats {
            packets_received: self.stats.received,
            packets_lost: self.stats.lost(),
            jitter_ms: self.stats.jitter_ms(),
            jitter_buffer: jb,
            packets_sent: u64::from(self.sent_packets),
            malformed: self.malformed,
            rtt_ms: self.rtt_ms,
            remote_fraction_lost: self.remote_fraction_lost,
            recording: self.tap_stats + self.tap.as_ref().map(RecordTap::stats).unwrap_or_default(),
            mos: rtcp::mos_estimate(loss_pct.max(self.remote_fraction_lost * 100.0), delay),
        }
    }
}

/// Wall-clock NTP timestamp (seconds since 1900 in the high 32 bits).
pub fn ntp_now() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + 2_208_988_800;
    (secs << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::DtmfSource;
    use std::sync::Arc;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Two legs wired back to back in virtual time: A's packets go into B and vice versa.
    #[test]
    fn audio_crosses_two_legs_sample_exact_through_g711() {
        let mut a = Leg::new(LegConfig::default(), 1, 0);
        let mut b = Leg::new(
            LegConfig {
                law: Law::Pcma,
                ..LegConfig::default()
            },
            2,
            0,
        );
        a.set_remote(addr(2000), None);
        let mut ev = Vec::new();
        let mut buf = Vec::new();
        // A plays a ramp; B decodes it through its jitter buffer.
        let ramp: Vec<i16> = (0..16_000)
            .map(|i| ((i * 37) % 20_000 - 10_000) as i16)
            .collect();
        a.enqueue_prompt(Prompt {
            id: 1,
            samples: Arc::from(ramp.clone()),
            looping: false,
            barge_in: false,
        });
        let mut got = Vec::new();
        for tick in 0..120u64 {
            let now = tick * 20;
            assert!(a.build_packet(None, &mut buf, &mut ev));
            b.on_datagram(now, addr(1000), &buf, &mut ev);
            b.pull_frame(now, &mut ev);
            if b.heard_audio {
                got.extend_from_slice(&b.heard);
            }
        }
        let expect: Vec<i16> = ramp
            .iter()
            .map(|&s| Law::Pcmu.decode_sample(Law::Pcmu.encode_sample(s)))
            .collect();
        // The jitter buffer's 20 ms of delay comes first as silence.
        let start = got.iter().position(|&s| s != 0).expect("audio arrived");
        let window = &got[start..start + 16_000];
        let first_diff = window.iter().zip(&expect).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "start {start}");
        assert_eq!(
            ev,
            vec![LegEvent::Played(Finished {
                id: 1,
                reason: crate::player::EndReason::Done
            })]
        );
        // Symmetric RTP: B now answers to where A's packets came from.
        assert_eq!(b.remote, Some(addr(1000)));
        let s = b.stats();
        assert_eq!((s.packets_received, s.packets_lost), (120, 0));
    }

    #[test]
    fn dtmf_sent_by_one_leg_is_heard_once_by_the_other_with_barge_in() {
        for dtmf_pt in [Some(101), None] {
            let cfg = LegConfig {
                dtmf_pt,
                inband_dtmf: dtmf_pt.is_none(),
                ..LegConfig::default()
            };
            let mut a = Leg::new(cfg, 1, 0);
            let mut b = Leg::new(cfg, 2, 0);
            a.set_remote(addr(2000), None);
            b.enqueue_prompt(Prompt {
                id: 7,
                samples: Arc::from(vec![100i16; 80_000]),
                looping: false,
                barge_in: true,
            });
            a.queue_dtmf("12#", 120).expect("digits");
            let mut ev = Vec::new();
            let mut buf = Vec::new();
            let mut sink = Vec::new();
            for tick in 0..150u64 {
                if a.build_packet(None, &mut buf, &mut sink) {
                    b.on_datagram(tick * 20, addr(1000), &buf, &mut ev);
                }
                b.pull_frame(tick * 20, &mut ev);
                b.build_packet(None, &mut buf, &mut ev);
            }
            let digits: Vec<DtmfDigit> = ev
                .iter()
                .filter_map(|e| {
                    if let LegEvent::Dtmf(d) = e {
                        Some(*d)
                    } else {
                        None
                    }
                })
                .collect();
            assert_eq!(
                digits.iter().map(|d| d.digit).collect::<String>(),
                "12#",
                "{dtmf_pt:?}"
            );
            let source = if dtmf_pt.is_some() {
                DtmfSource::Rfc4733
            } else {
                DtmfSource::InBand
            };
            assert!(
                digits
                    .iter()
                    .all(|d| d.source == source && (100..=140).contains(&d.duration_ms)),
                "{digits:?}"
            );
            assert!(ev.contains(&LegEvent::Played(Finished {
                id: 7,
                reason: crate::player::EndReason::BargeIn
            })));
        }
    }

    #[test]
    fn media_timeout_fires_once_and_rearms_on_rtp() {
        let mut leg = Leg::new(
            LegConfig {
                media_timeout_ms: 1000,
                ..LegConfig::default()
            },
            1,
            0,
        );
        let mut ev = Vec::new();
        for tick in 0..100u64 {
            leg.pull_frame(tick * 20, &mut ev);
        }
        assert_eq!(ev, vec![LegEvent::MediaTimeout { silent_ms: 1000 }]);
        let mut buf = Vec::new();
        build_rtp(&mut buf, false, 0, 1, 0, 9, &[0xff; 160]);
        leg.on_datagram(2000, addr(1), &buf, &mut ev);
        for tick in 100..160u64 {
            leg.pull_frame(tick * 20, &mut ev);
        }
        assert_eq!(ev.len(), 2);
    }

    #[test]
    fn pass_through_restamps_and_keeps_the_timeline() {
        let mut b = Leg::new(LegConfig::default(), 2, 0);
        b.set_remote(addr(3000), None);
        let mut out = Vec::new();
        let mut pkt = Vec::new();
        let mut ev = Vec::new();
        b.build_packet(None, &mut out, &mut ev);
        let ts0 = RtpPacket::parse(&out).expect("rtp").timestamp;
        for i in 0..3u32 {
            build_rtp(
                &mut pkt,
                false,
                0,
                i as u16,
                5000 + i * 160,
                77,
                &[i as u8; 160],
            );
            assert!(b.forward_from(&pkt, &mut out));
            let p = RtpPacket::parse(&out).expect("rtp");
            assert_eq!(
                (p.ssrc, p.timestamp, p.payload[0]),
                (2, ts0 + 160 + i * 160, i as u8)
            );
            assert_eq!(p.marker, i == 0);
        }
        // Back to the tick path: the next frame follows on.
        b.build_packet(None, &mut out, &mut ev);
        assert_eq!(
            RtpPacket::parse(&out).expect("rtp").timestamp,
            ts0 + 4 * 160
        );
        // A different law cannot pass through.
        build_rtp(&mut pkt, false, 8, 9, 0, 77, &[0; 160]);
        assert!(!b.forward_from(&pkt, &mut out));
    }

    #[test]
    fn rtcp_reports_flow_and_give_round_trip() {
        let mut a = Leg::new(LegConfig::default(), 1, 0);
        let mut b = Leg::new(LegConfig::default(), 2, 0);
        a.set_remote(addr(2000), None);
        b.set_remote(addr(1000), None);
        let mut ev = Vec::new();
        let mut buf = Vec::new();
        for tick in 0..600u64 {
            let now = tick * 20;
            a.build_packet(None, &mut buf, &mut ev);
            b.on_datagram(now, addr(1000), &buf, &mut ev);
            b.build_packet(None, &mut buf, &mut ev);
            a.on_datagram(now, addr(2000), &buf, &mut ev);
            if a.rtcp_due(now, &mut buf) {
                b.on_datagram(now, addr(1001), &buf, &mut ev);
            }
            if b.rtcp_due(now, &mut buf) {
                a.on_datagram(now, addr(2001), &buf, &mut ev);
            }
        }
        let s = a.stats();
        assert!(s.rtt_ms.is_some_and(|r| r < 50.0), "{s:?}");
        assert!(s.mos > 4.0, "{s:?}");
        assert_eq!(s.remote_fraction_lost, 0.0);
    }
}
