//! A browser's media transport, sans-IO: ICE-lite, DTLS-SRTP and WebRTC's SDP offer/answer,
//! by str0m in RTP mode.
//!
//! The leg's RTP (G.711 and RFC 4733 telephone-events, built and parsed by
//! [`crate::leg::Leg`] exactly as for a SIP phone) passes through it: packets the leg builds
//! go in plain and leave encrypted, packets from the browser come out decrypted. So a
//! browser leg is mixed, recorded, played to and DTMF-detected by the same code as an RTP
//! leg, on the same shard and 20 ms tick; only its wire is different. RTCP is str0m's
//! (muxed on the one port), never the leg's.
//!
//! Security: no plain RTP ever (str0m speaks SRTP only), the peer's DTLS certificate must
//! match the SDP's `a=fingerprint`, and an offer without one is refused before str0m sees
//! it. A session that is not connected (ICE and DTLS) within [`CONNECT_DEADLINE`] fails
//! with a reason.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event as RtcEvent, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::g711::Law;
use crate::opus_edge::OpusEdge;
use crate::rtp::{build_rtp, RtpPacket, SeqExtender};

/// ICE and DTLS must be done within this after the SDP exchange.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// The telephone-event payload type we offer (the browser's own number is used when it
/// offers).
pub const OFFERED_DTMF_PT: u8 = 101;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebRtcError {
    /// The SDP is not one a browser leg can take (the text says why).
    Sdp(String),
    /// The session broke (ICE, DTLS, or str0m's own error).
    Session(String),
}

impl fmt::Display for WebRtcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebRtcError::Sdp(e) => write!(f, "WebRTC SDP refused: {e}"),
            WebRtcError::Session(e) => write!(f, "WebRTC session failed: {e}"),
        }
    }
}

impl std::error::Error for WebRtcError {}

/// What one call into the transport produced: datagrams to send (to their destination) and
/// decrypted RTP packets for the leg. Reused from call to call.
#[derive(Debug, Default)]
pub struct WebRtcIo {
    pub transmit: Vec<(SocketAddr, Vec<u8>)>,
    pub rtp: Vec<Vec<u8>>,
    spare: Vec<Vec<u8>>,
}

impl WebRtcIo {
    /// Empty the transmit list, keeping the buffers for the next call.
    pub fn clear_transmit(&mut self) {
        for (_, b) in self.transmit.drain(..) {
            self.spare.push(b);
        }
    }

    /// Hand back the list taken from `rtp`, once handled: its packets' buffers and the
    /// list itself are kept for the next datagram.
    pub fn recycle(&mut self, mut packets: Vec<Vec<u8>>) {
        self.spare.append(&mut packets);
        self.rtp = packets;
    }

    fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b
    }
}

/// The connection state a browser leg reports once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebRtcState {
    Connecting,
    Connected,
    Failed(String),
}

pub struct WebRtc {
    rtc: Rtc,
    local: SocketAddr,
    mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    /// The negotiated audio payload type and its law, and telephone-event's payload type.
    audio: Option<(u8, Law)>,
    dtmf_pt: Option<u8>,
    /// The browser's Opus payload type and the transcoder, when Opus was agreed.
    opus: Option<(u8, Box<OpusEdge>)>,
    /// Scratch for transcoded payloads.
    scratch: Vec<u8>,
    tx_seq: SeqExtender,
    next_timeout: Option<Instant>,
    /// Set when the SDP exchange is complete; the connection must follow by the deadline.
    connect_by: Option<Instant>,
    state: WebRtcState,
}

impl fmt::Debug for WebRtc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebRtc")
            .field("local", &self.local)
            .field("mid", &self.mid)
            .field("audio", &self.audio)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl WebRtc {
    /// A transport answering on `local` (the leg's UDP socket): its one host candidate.
    /// `opus`: offer and accept Opus (transcoded at the edge) before G.711.
    pub fn new(local: SocketAddr, now: Instant, opus: bool) -> Result<Self, WebRtcError> {
        let mut cfg = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_fingerprint_verification(true)
            .clear_codecs()
            // Opus first (browsers' own codec), transcoded at the edge; G.711 as is
            .enable_opus(opus, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .set_stats_interval(None);
        cfg.codec_config().add_config(
            Pt::from(OFFERED_DTMF_PT),
            None,
            Codec::Tele,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams {
                telephone_event_max: Some(15),
                ..Default::default()
            },
        );
        let mut rtc = cfg.build(now);
        let candidate = Candidate::host(local, Protocol::Udp)
            .map_err(|e| WebRtcError::Session(format!("no ICE candidate for {local}: {e}")))?;
        rtc.add_local_candidate(candidate);
        Ok(WebRtc {
            rtc,
            local,
            mid: None,
            pending: None,
            audio: None,
            dtmf_pt: None,
            opus: None,
            scratch: Vec::new(),
            tx_seq: SeqExtender::default(),
            next_timeout: None,
            connect_by: None,
            state: WebRtcState::Connecting,
        })
    }

    /// Answer the browser's offer (a first one, or a re-offer such as hold).
    pub fn accept_offer(&mut self, sdp: &str, now: Instant) -> Result<String, WebRtcError> {
        check_secure(sdp)?;
        let offer = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| WebRtcError::Sdp(format!("unparsable SDP: {e}")))?;
        self.pending = None;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        let answer = answer.to_sdp_string();
        self.negotiated(&answer)?;
        self.connect_by.get_or_insert(now + CONNECT_DEADLINE);
        Ok(answer)
    }

    /// Our offer: a new audio line the first time, else the current one with `direction`
    /// (`sendonly` puts the browser on hold: it hears what we send).
    pub fn create_offer(&mut self, direction: &str) -> Result<String, WebRtcError> {
        let dir = match direction {
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => Direction::SendRecv,
        };
        let mut api = self.rtc.sdp_api();
        match self.mid {
            None => {
                self.mid = Some(api.add_media(MediaKind::Audio, dir, None, None, None));
            }
            Some(mid) => api.set_direction(mid, dir),
        }
        let Some((offer, pending)) = api.apply() else {
            // nothing changed (same direction): offer the session as it stands
            return Err(WebRtcError::Sdp("no change to offer".into()));
        };
        self.pending = Some(pending);
        Ok(offer.to_sdp_string())
    }

    /// The browser's answer to [`WebRtc::create_offer`].
    pub fn accept_answer(&mut self, sdp: &str, now: Instant) -> Result<(), WebRtcError> {
        check_secure(sdp)?;
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| WebRtcError::Sdp(format!("unparsable SDP: {e}")))?;
        let pending = self
            .pending
            .take()
            .ok_or_else(|| WebRtcError::Sdp("an answer without an offer".into()))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        self.negotiated(sdp)?;
        self.connect_by.get_or_insert(now + CONNECT_DEADLINE);
        Ok(())
    }

    /// Which law and telephone-event payload type the leg must use.
    pub fn codec(&self) -> Option<(Law, Option<u8>)> {
        self.audio.map(|(_, law)| (law, self.dtmf_pt))
    }

    pub fn state(&self) -> &WebRtcState {
        &self.state
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    fn negotiated(&mut self, sdp: &str) -> Result<(), WebRtcError> {
        let mid =
            audio_mid(sdp).ok_or_else(|| WebRtcError::Sdp("no audio line with a=mid".into()))?;
        let media = self
            .rtc
            .media(mid)
            .ok_or_else(|| WebRtcError::Sdp("the audio line was not accepted".into()))?;
        let remote: Vec<Pt> = media.remote_pts().to_vec();
        self.mid = Some(mid);
        let mut audio = None;
        let mut dtmf = None;
        let mut opus_pt = None;
        // the peer's order is its preference
        for pt in remote {
            let Some(p) = self
                .rtc
                .codec_config()
                .params()
                .iter()
                .find(|p| p.pt() == pt)
            else {
                continue;
            };
            let n = *pt;
            match p.spec().codec {
                Codec::Opus if audio.is_none() => {
                    // the leg hears and speaks G.711 (PCMU); the edge speaks Opus
                    audio = Some((n, Law::Pcmu));
                    opus_pt = Some(n);
                }
                Codec::PCMU if audio.is_none() => audio = Some((n, Law::Pcmu)),
                Codec::PCMA if audio.is_none() => audio = Some((n, Law::Pcma)),
                Codec::Tele if p.spec().clock_rate == Frequency::EIGHT_KHZ => dtmf = Some(n),
                _ => {}
            }
        }
        if audio.is_none() {
            return Err(WebRtcError::Sdp(
                "no common codec (Opus, PCMU or PCMA)".into(),
            ));
        }
        match (opus_pt, self.opus.take()) {
            (Some(pt), Some((_, edge))) => self.opus = Some((pt, edge)), // a re-offer: same edge
            (Some(pt), None) => {
                let edge = OpusEdge::new().map_err(WebRtcError::Session)?;
                self.opus = Some((pt, Box::new(edge)));
            }
            (None, _) => {}
        }
        self.audio = audio;
        self.dtmf_pt = dtmf;
        Ok(())
    }

    /// A datagram from the browser (STUN, DTLS or SRTP) arriving on our socket.
    pub fn receive(&mut self, now: Instant, src: SocketAddr, data: &[u8], io: &mut WebRtcIo) {
        let Ok(r) = Receive::new(Protocol::Udp, src, self.local, data) else {
            return; // not STUN, DTLS or (S)RTP: nothing a browser sends
        };
        if let Err(e) = self.rtc.handle_input(Input::Receive(now, r)) {
            self.fail(e.to_string());
            return;
        }
        self.poll(io);
    }

    /// Our leg's plain RTP packet, to be sent encrypted.
    pub fn send_rtp(&mut self, now: Instant, packet: &[u8], io: &mut WebRtcIo) {
        if self.state != WebRtcState::Connected {
            return; // nothing leaves before DTLS is done (or after it failed)
        }
        let (Some(mid), Ok(p)) = (self.mid, RtpPacket::parse(packet)) else {
            return;
        };
        let (mut pt, mut ts, mut payload) = (p.payload_type, p.timestamp, p.payload);
        if let Some((opus_pt, edge)) = self.opus.as_mut() {
            ts = edge.ts_to_browser(p.timestamp);
            if let Some(law) = Law::from_payload_type(p.payload_type) {
                match edge.to_browser(p.timestamp, p.payload, law, &mut self.scratch) {
                    Some(_) => (pt, payload) = (*opus_pt, &self.scratch[..]),
                    None => return,
                }
            }
        }
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        let write = RtpWrite::new(
            Pt::from(pt),
            // str0m wants the extended number (SRTP's rollover counter follows it); the
            // extender starts one cycle up, and the browser expects a rollover count of 0
            self.tx_seq
                .extend(p.sequence)
                .saturating_sub(1 << 16)
                .into(),
            ts,
            now,
            payload.to_vec(),
        )
        .marker(p.marker);
        tx.write_rtp(write);
        self.poll(io);
    }

    /// Timers (ICE consent, DTLS retransmission, RTCP) and the connect deadline.
    pub fn tick(&mut self, now: Instant, io: &mut WebRtcIo) {
        if let Some(by) = self.connect_by {
            if self.state == WebRtcState::Connecting && now >= by {
                self.fail(format!(
                    "ICE/DTLS not connected within {} s",
                    CONNECT_DEADLINE.as_secs()
                ));
                return;
            }
        }
        if self.next_timeout.is_some_and(|t| now >= t) {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                self.fail(e.to_string());
                return;
            }
            self.poll(io);
        }
    }

    fn fail(&mut self, reason: String) {
        if !matches!(self.state, WebRtcState::Failed(_)) {
            self.state = WebRtcState::Failed(reason);
        }
        self.rtc.disconnect();
    }

    fn poll(&mut self, io: &mut WebRtcIo) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = Some(t);
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    let mut b = io.buffer();
                    b.extend_from_slice(&t.contents);
                    io.transmit.push((t.destination, b));
                }
                Ok(Output::Event(e)) => match e {
                    RtcEvent::Connected if self.state == WebRtcState::Connecting => {
                        self.state = WebRtcState::Connected;
                    }
                    RtcEvent::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        self.fail("ICE disconnected (no consent from the browser)".into());
                    }
                    RtcEvent::RtpPacket(p) => {
                        let (mut pt, mut ts) = (*p.header.payload_type, p.header.timestamp);
                        let mut payload: &[u8] = &p.payload;
                        if let Some((opus_pt, edge)) = self.opus.as_mut() {
                            // Opus in: G.711 for the leg, on its 8 kHz clock
                            ts = edge.ts_to_leg(ts);
                            if pt == *opus_pt {
                                let law = Law::Pcmu;
                                let ts48 = p.header.timestamp;
                                if edge
                                    .to_leg(ts48, &p.payload, law, &mut self.scratch)
                                    .is_none()
                                {
                                    continue; // not a decodable Opus packet: dropped
                                }
                                (pt, payload) = (law.payload_type(), &self.scratch[..]);
                            }
                        }
                        let mut b = io.buffer();
                        build_rtp(
                            &mut b,
                            p.header.marker,
                            pt,
                            p.header.sequence_number,
                            ts,
                            *p.header.ssrc,
                            payload,
                        );
                        io.rtp.push(b);
                    }
                    RtcEvent::Closed => self.fail("closed".into()),
                    _ => {}
                },
                Err(e) => {
                    self.fail(e.to_string());
                    return;
                }
            }
            if !self.rtc.is_alive() {
                return;
            }
        }
    }
}

/// Refuse what str0m would take but a browser leg must not: no DTLS fingerprint.
fn check_secure(sdp: &str) -> Result<(), WebRtcError> {
    if !sdp.contains("a=fingerprint:") {
        return Err(WebRtcError::Sdp(
            "no a=fingerprint: browser legs are DTLS-SRTP only".into(),
        ));
    }
    Ok(())
}

/// The `a=mid` of the first audio line.
fn audio_mid(sdp: &str) -> Option<Mid> {
    let mut in_audio = false;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
        } else if in_audio {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                return Some(Mid::from(mid.trim()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opus_edge::tests::goertzel;
    use str0m::net::Receive;

    /// A browser, as far as the wire goes: str0m with full ICE (the controlling side), PCMU
    /// and telephone-events, in RTP mode so the test can write and read packets.
    struct Browser {
        rtc: Rtc,
        addr: SocketAddr,
        mid: Mid,
        received: Vec<(u16, Vec<u8>)>,
    }

    fn browser(now: Instant) -> (Browser, String, SdpPendingOffer) {
        browser_with(now, false)
    }

    /// A browser offering PCMU only, or Opus only.
    fn browser_with(now: Instant, opus: bool) -> (Browser, String, SdpPendingOffer) {
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_pcmu(!opus, false)
            .enable_opus(opus, false)
            .build(now);
        let addr: SocketAddr = "127.0.0.1:2000".parse().expect("address");
        let c = Candidate::host(addr, Protocol::Udp).expect("candidate");
        rtc.add_local_candidate(c);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let text = offer.to_sdp_string();
        let b = Browser {
            rtc,
            addr,
            mid,
            received: Vec::new(),
        };
        (b, text, pending)
    }

    /// Run both ends for `ms` of virtual time; datagrams cross at once.
    fn run(ours: &mut WebRtc, b: &mut Browser, now: &mut Instant, ms: u64, io: &mut WebRtcIo) {
        let ours_addr = ours.local();
        for _ in 0..ms / 5 {
            *now += Duration::from_millis(5);
            ours.tick(*now, io);
            b.rtc
                .handle_input(Input::Timeout(*now))
                .expect("browser timeout");
            for _ in 0..100 {
                let mut moved = false;
                while let Ok(out) = b.rtc.poll_output() {
                    match out {
                        Output::Transmit(t) => {
                            ours.receive(*now, b.addr, &t.contents, io);
                            moved = true;
                        }
                        Output::Event(RtcEvent::RtpPacket(p)) => {
                            b.received
                                .push((p.header.sequence_number, p.payload.to_vec()));
                        }
                        Output::Event(_) => {}
                        Output::Timeout(_) => break,
                    }
                }
                let sent: Vec<_> = io.transmit.drain(..).collect();
                for (to, data) in sent {
                    assert_eq!(to, b.addr);
                    let r = Receive::new(Protocol::Udp, ours_addr, b.addr, &data).expect("dgram");
                    b.rtc
                        .handle_input(Input::Receive(*now, r))
                        .expect("browser input");
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
        }
    }

    fn connected_pair() -> (WebRtc, Browser, Instant, WebRtcIo) {
        connected_pair_with(false)
    }

    fn connected_pair_with(opus: bool) -> (WebRtc, Browser, Instant, WebRtcIo) {
        let mut now = Instant::now();
        let (mut b, offer, pending) = browser_with(now, opus);
        let mut ours =
            WebRtc::new("127.0.0.1:1000".parse().expect("address"), now, true).expect("new");
        let answer = ours.accept_offer(&offer, now).expect("offer accepted");
        // the leg is G.711 either way: Opus is the edge's business
        assert_eq!(ours.codec(), Some((Law::Pcmu, None)));
        assert_eq!(ours.opus.is_some(), opus);
        let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        b.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        let mut io = WebRtcIo::default();
        run(&mut ours, &mut b, &mut now, 2000, &mut io);
        assert_eq!(ours.state(), &WebRtcState::Connected);
        (ours, b, now, io)
    }

    #[test]
    fn an_offer_without_a_fingerprint_is_refused_with_the_reason() {
        let now = Instant::now();
        let (_b, offer, _) = browser(now);
        let stripped: String = offer
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        let mut ours =
            WebRtc::new("127.0.0.1:1000".parse().expect("address"), now, true).expect("new");
        let err = ours.accept_offer(&stripped, now).expect_err("refused");
        assert!(err.to_string().contains("no a=fingerprint"), "{err}");
        let plain = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(ours.accept_offer(plain, now).is_err());
    }

    #[test]
    fn rtp_crosses_both_ways_encrypted_and_across_the_sequence_wrap() {
        let (mut ours, mut b, mut now, mut io) = connected_pair();
        // ours -> browser: sequence numbers across 65535 (SRTP's rollover counter follows)
        let mut packet = Vec::new();
        for i in 0..20u16 {
            let seq = 65_530u16.wrapping_add(i);
            build_rtp(
                &mut packet,
                false,
                0,
                seq,
                u32::from(i) * 160,
                7,
                &[0x55; 160],
            );
            ours.send_rtp(now, &packet, &mut io);
            run(&mut ours, &mut b, &mut now, 20, &mut io);
        }
        let seqs: Vec<u16> = b.received.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs.len(),
            20,
            "the browser decrypted every packet: {seqs:?}"
        );
        assert!(seqs.contains(&65_535) && seqs.contains(&0) && seqs.contains(&13));
        // browser -> ours: plain RTP comes out for the leg
        let mut api = b.rtc.direct_api();
        let tx = api.stream_tx_by_mid(b.mid, None).expect("browser's stream");
        tx.write_rtp(RtpWrite::new(
            Pt::from(0),
            100u64.into(),
            1600,
            now,
            vec![0x11; 160],
        ));
        run(&mut ours, &mut b, &mut now, 40, &mut io);
        let got = io
            .rtp
            .iter()
            .find_map(|p| RtpPacket::parse(p).ok().filter(|r| r.sequence == 100));
        let got = got.expect("the browser's packet reached the leg");
        assert_eq!((got.payload_type, got.payload.len()), (0, 160));
    }

    #[test]
    fn a_session_that_never_connects_fails_with_a_reason() {
        let mut now = Instant::now();
        let (_b, offer, _) = browser(now);
        let mut ours =
            WebRtc::new("127.0.0.1:1000".parse().expect("address"), now, true).expect("new");
        ours.accept_offer(&offer, now).expect("offer accepted");
        let mut io = WebRtcIo::default();
        now += CONNECT_DEADLINE + Duration::from_millis(1);
        ours.tick(now, &mut io);
        match ours.state() {
            WebRtcState::Failed(reason) => assert!(reason.contains("not connected"), "{reason}"),
            s => panic!("still {s:?}"),
        }
        // and sends nothing afterwards, plain or not
        let mut packet = Vec::new();
        build_rtp(&mut packet, false, 0, 1, 160, 7, &[0; 160]);
        ours.send_rtp(now, &packet, &mut io);
        assert!(io.transmit.is_empty());
    }

    #[test]
    fn a_browser_in_opus_talks_with_a_g711_leg_through_the_edge() {
        let (mut ours, mut b, mut now, mut io) = connected_pair_with(true);
        let tone = |hz: f64, f: usize| -> Vec<i16> {
            (0..160)
                .map(|i| {
                    let t = (f * 160 + i) as f64 / 8000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
                })
                .collect()
        };
        // the leg's PCMU 1 kHz goes out as Opus: the browser decodes a 1 kHz tone
        let mut packet = Vec::new();
        let mut codes = [0u8; 160];
        for f in 0..25 {
            Law::Pcmu
                .encode(&tone(1000.0, f), &mut codes)
                .expect("encode");
            build_rtp(&mut packet, false, 0, f as u16, (f * 160) as u32, 7, &codes);
            ours.send_rtp(now, &packet, &mut io);
            run(&mut ours, &mut b, &mut now, 20, &mut io);
        }
        assert!(b.received.len() >= 20, "{}", b.received.len());
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
        let mut pcm = vec![0i16; 960];
        let mut energy_1k = 0.0;
        for (_, payload) in &b.received[10..] {
            let n = dec
                .decode(payload, &mut pcm, false)
                .expect("Opus from the edge");
            assert_eq!(n, 960);
            energy_1k += goertzel(&pcm[..n], 1000.0, 48_000.0);
        }
        assert!(
            energy_1k / (b.received.len() - 10) as f64 > 2000.0,
            "{energy_1k}"
        );
        // the browser's Opus 440 Hz reaches the leg as PCMU
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .expect("encoder");
        let mut out = vec![0u8; 1500];
        for f in 0..10u16 {
            let up: Vec<i16> = tone(440.0, usize::from(f))
                .iter()
                .flat_map(|&x| [x; 6])
                .collect();
            let n = enc.encode(&up, &mut out).expect("encode");
            let mut api = b.rtc.direct_api();
            let tx = api.stream_tx_by_mid(b.mid, None).expect("browser's stream");
            let pt = Pt::from(111);
            tx.write_rtp(RtpWrite::new(
                pt,
                u64::from(f + 1).into(),
                u32::from(f) * 960,
                now,
                out[..n].to_vec(),
            ));
            run(&mut ours, &mut b, &mut now, 20, &mut io);
        }
        let got: Vec<_> = io
            .rtp
            .iter()
            .filter_map(|p| RtpPacket::parse(p).ok())
            .collect();
        assert!(
            got.len() >= 8
                && got
                    .iter()
                    .all(|p| p.payload_type == 0 && p.payload.len() == 160)
        );
    }

    #[test]
    fn without_opus_a_browser_offering_both_gets_g711() {
        let now = Instant::now();
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .build(now);
        let c = Candidate::host("127.0.0.1:2000".parse().expect("addr"), Protocol::Udp);
        rtc.add_local_candidate(c.expect("candidate"));
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, _pending) = api.apply().expect("an offer");
        let addr = "127.0.0.1:1000".parse().expect("address");
        let mut ours = WebRtc::new(addr, now, false).expect("new");
        let answer = ours
            .accept_offer(&offer.to_sdp_string(), now)
            .expect("accepted");
        assert!(ours.opus.is_none() && !answer.contains("opus"), "{answer}");
        assert_eq!(ours.codec(), Some((Law::Pcmu, None)));
        let mut with_opus = WebRtc::new(addr, now, true).expect("new");
        with_opus
            .accept_offer(&offer.to_sdp_string(), now)
            .expect("accepted");
        assert!(with_opus.opus.is_some());
    }
}
