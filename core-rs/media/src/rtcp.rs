//! Reception statistics (RFC 3550 A.3 loss, A.8 jitter), RTCP SR/RR building and parsing,
//! and an E-model (ITU-T G.107) MOS estimate for a leg.

use crate::rtp::SeqExtender;

/// What one leg knows about the stream it receives.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    seq: SeqExtender,
    base: Option<u64>,
    pub received: u64,
    pub octets: u64,
    /// Interarrival jitter in timestamp units (1/8 ms), ×16 as RFC 3550 A.8 keeps it.
    jitter_x16: u64,
    last_transit: Option<i64>,
    expected_prior: u64,
    received_prior: u64,
}

impl ReceiveStats {
    pub fn on_packet(&mut self, arrival_ms: u64, seq: u16, timestamp: u32, payload_len: usize) {
        let previous = self.seq.highest();
        let mut ext = self.seq.extend(seq);
        // A jump beyond RFC 3550's MAX_DROPOUT is a restarted source, not 3,000 losses.
        if previous.is_some_and(|h| h.abs_diff(ext) > 3000) {
            self.restart_sequence();
            ext = self.seq.extend(seq);
        }
        if self.base.is_none_or(|b| ext < b) {
            self.base = Some(ext);
        }
        self.received += 1;
        self.octets += payload_len as u64;
        let transit = (arrival_ms * 8) as i64 - i64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs().min(1 << 20);
            // J += (|D| - J) / 16, kept scaled by 16 (RFC 3550 A.8).
            self.jitter_x16 = self.jitter_x16 + d - ((self.jitter_x16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// A new source (SSRC change): sequence numbering restarts, totals carry on.
    pub fn restart_sequence(&mut self) {
        let (expected, received) = (self.expected(), self.received);
        self.seq.reset();
        self.base = None;
        self.last_transit = None;
        self.expected_prior = self.expected_prior.saturating_sub(expected);
        self.received_prior = self.received_prior.saturating_sub(received);
    }

    pub fn expected(&self) -> u64 {
        match (self.base, self.seq.highest()) {
            (Some(b), Some(h)) => h - b + 1,
            _ => 0,
        }
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    pub fn jitter_ms(&self) -> f64 {
        (self.jitter_x16 >> 4) as f64 / 8.0
    }

    pub fn highest_ext_seq(&self) -> u32 {
        self.seq.highest().map_or(0, |h| (h - (1 << 16)) as u32)
    }

    /// The RFC 3550 report-block fields for the interval since the last call.
    pub fn report_block(&mut self, ssrc: u32, lsr: u32, dlsr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().min(0x7f_ffff) as u32,
            highest_seq: self.highest_ext_seq(),
            jitter: (self.jitter_x16 >> 4) as u32,
            lsr,
            dlsr,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    pub cumulative_lost: u32,
    pub highest_seq: u32,
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from this source.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// Sender information of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

/// What a received compound RTCP packet said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtcpReport {
    pub sender_ssrc: Option<u32>,
    pub sender_info: Option<SenderInfo>,
    pub blocks: Vec<ReportBlock>,
    pub bye: bool,
}

fn push_block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    out.push(b.fraction_lost);
    out.extend_from_slice(&b.cumulative_lost.to_be_bytes()[1..]);
    out.extend_from_slice(&b.highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.lsr.to_be_bytes());
    out.extend_from_slice(&b.dlsr.to_be_bytes());
}

/// Build a compound RTCP packet: an SR (with `sender`) or an RR, then SDES with the CNAME.
pub fn build_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    sender: Option<SenderInfo>,
    block: Option<ReportBlock>,
    cname: &str,
) {
    out.clear();
    let rc = u8::from(block.is_some());
    let words: u16 = 1 + if sender.is_some() { 5 } else { 0 } + if block.is_some() { 6 } else { 0 };
    out.push(0x80 | rc);
    out.push(if sender.is_some() { 200 } else { 201 });
    out.extend_from_slice(&words.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(s) = sender {
        out.extend_from_slice(&s.ntp.to_be_bytes());
        out.extend_from_slice(&s.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&s.packets.to_be_bytes());
        out.extend_from_slice(&s.octets.to_be_bytes());
    }
    if let Some(b) = block {
        push_block(out, &b);
    }
    // SDES: one chunk, CNAME item, null terminator, padded to a word.
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let chunk_len = 4 + 2 + cname.len() + 1;
    let padded = chunk_len.div_ceil(4) * 4;
    out.push(0x81);
    out.push(202);
    out.extend_from_slice(&u16::try_from(padded / 4).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.resize(out.len() + padded - chunk_len + 1, 0);
}

/// Parse a compound RTCP packet; unknown packet types are skipped, malformed input is None.
pub fn parse_report(d: &[u8]) -> Option<RtcpReport> {
    let mut report = RtcpReport::default();
    let mut at = 0;
    while at + 4 <= d.len() {
        if d[at] >> 6 != 2 {
            return None;
        }
        let count = usize::from(d[at] & 0x1f);
        let pt = d[at + 1];
        let len = (usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]])) + 1) * 4;
        let body = d.get(at + 4..at + len)?;
        let word = |i: usize| {
            body.get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match pt {
            200 | 201 => {
                report.sender_ssrc = Some(word(0)?);
                let mut off = 4;
                if pt == 200 {
                    let ntp = (u64::from(word(4)?) << 32) | u64::from(word(8)?);
                    report.sender_info = Some(SenderInfo {
                        ntp,
                        rtp_timestamp: word(12)?,
                        packets: word(16)?,
                        octets: word(20)?,
                    });
                    off = 24;
                }
                for i in 0..count {
                    let b = off + 24 * i;
                    let fl = word(b + 4)?;
                    report.blocks.push(ReportBlock {
                        ssrc: word(b)?,
                        fraction_lost: (fl >> 24) as u8,
                        cumulative_lost: fl & 0x00ff_ffff,
                        highest_seq: word(b + 8)?,
                        jitter: word(b + 12)?,
                        lsr: word(b + 16)?,
                        dlsr: word(b + 20)?,
                    });
                }
            }
            203 => report.bye = true,
            _ => {}
        }
        at += len;
    }
    (at == d.len()).then_some(report)
}

/// The middle 32 bits of an NTP timestamp, as LSR and round-trip arithmetic use them.
pub fn ntp_mid32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Round-trip time from a report block about our stream, received at `now_ntp`.
pub fn round_trip_ms(now_ntp: u64, block: &ReportBlock) -> Option<f64> {
    if block.lsr == 0 {
        return None;
    }
    let rtt = ntp_mid32(now_ntp)
        .wrapping_sub(block.lsr)
        .wrapping_sub(block.dlsr);
    (rtt < 0x8000_0000).then(|| f64::from(rtt) * 1000.0 / 65536.0)
}

/// E-model (G.107) MOS for G.711 with packet-loss concealment: `loss_percent` of packets
/// lost or late, `one_way_delay_ms` from mouth to ear (network + jitter buffer + packetizing).
pub fn mos_estimate(loss_percent: f64, one_way_delay_ms: f64) -> f64 {
    let d = one_way_delay_ms.max(0.0);
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = loss_percent.clamp(0.0, 100.0);
    let ie_eff = 95.0 * ppl / (ppl + 25.1); // G.711 Ie = 0, Bpl = 25.1 with PLC (G.113)
    let r = (93.2 - id - ie_eff).clamp(0.0, 100.0);
    if r <= 0.0 {
        1.0
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_jitter_follow_rfc3550() {
        let mut s = ReceiveStats::default();
        // 100 packets, every 10th lost, perfectly timed: 10 lost, no jitter.
        for i in 0..100u16 {
            if i % 10 != 3 {
                s.on_packet(
                    u64::from(i) * 20,
                    i.wrapping_add(65_500),
                    u32::from(i) * 160,
                    160,
                );
            }
        }
        assert_eq!((s.expected(), s.received, s.lost()), (100, 90, 10));
        assert_eq!(s.jitter_ms(), 0.0);
        let b = s.report_block(1, 0, 0);
        assert_eq!(b.fraction_lost, (10 * 256 / 100) as u8);
        assert_eq!(b.highest_seq, 65_500 + 99);
        // Constant ±10 ms alternation converges to J ≈ 20 ms (|D| = 20 ms each packet).
        let mut s = ReceiveStats::default();
        for i in 0..2000u64 {
            s.on_packet(i * 20 + (i % 2) * 20, i as u16, (i * 160) as u32, 160);
        }
        assert!((s.jitter_ms() - 20.0).abs() < 0.5, "{}", s.jitter_ms());
    }

    #[test]
    fn a_sequence_jump_restarts_counting_instead_of_counting_loss() {
        let mut s = ReceiveStats::default();
        for i in 0..10u16 {
            s.on_packet(u64::from(i) * 20, i, 0, 160);
        }
        for i in 0..10u16 {
            s.on_packet(200 + u64::from(i) * 20, 40_000 + i, 0, 160);
        }
        assert_eq!((s.received, s.lost()), (20, 0));
    }

    #[test]
    fn report_round_trip_and_rtt() {
        let mut buf = Vec::new();
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 12,
            cumulative_lost: 345,
            highest_seq: 70_000,
            jitter: 80,
            lsr: 0x1234_0000,
            dlsr: 0x0001_0000,
        };
        let sender = SenderInfo {
            ntp: 0xaaaa_bbbb_cccc_dddd,
            rtp_timestamp: 5,
            packets: 6,
            octets: 7,
        };
        build_report(&mut buf, 99, Some(sender), Some(block), "ccorch@127.0.0.1");
        assert_eq!(buf.len() % 4, 0);
        let r = parse_report(&buf).expect("valid");
        assert_eq!(r.sender_ssrc, Some(99));
        assert_eq!(r.sender_info, Some(sender));
        assert_eq!(r.blocks, vec![block]);
        // RTT: now is LSR + DLSR + 0.25 s.
        let now_ntp = (u64::from(0x1234_0000u32 + 0x0001_0000 + 0x4000)) << 16;
        assert_eq!(round_trip_ms(now_ntp, &block), Some(250.0));
        build_report(&mut buf, 99, None, None, "x");
        assert_eq!(parse_report(&buf).expect("rr").blocks.len(), 0);
        assert!(parse_report(&buf[..buf.len() - 1]).is_none());
        assert!(parse_report(&[0x80, 200, 0, 50, 1, 2]).is_none());
    }

    #[test]
    fn mos_drops_with_loss_and_delay() {
        let clean = mos_estimate(0.0, 40.0);
        assert!(clean > 4.3 && clean < 4.5, "{clean}");
        assert!(mos_estimate(5.0, 40.0) < 3.9);
        assert!(mos_estimate(0.0, 400.0) < 3.7);
        assert!(mos_estimate(100.0, 1000.0) >= 1.0);
    }
}
