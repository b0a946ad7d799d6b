//! RTP packets (RFC 3550 §5): parsing without copying, building into a caller's buffer,
//! and extension of the 16-bit sequence number and 32-bit timestamp across wrap-around.

use std::fmt;

/// The fixed header is 12 bytes; CSRCs and one header extension may follow.
pub const RTP_HEADER_LEN: usize = 12;

/// Why a datagram is not an RTP packet we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    TooShort(usize),
    BadVersion(u8),
    /// CSRC list, extension or padding run past the end of the datagram.
    Truncated,
    /// Padding length of zero or longer than the payload.
    BadPadding,
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtpError::TooShort(n) => write!(
                f,
                "RTP datagram of {n} bytes is shorter than the 12-byte header"
            ),
            RtpError::BadVersion(v) => write!(f, "RTP version {v}, expected 2"),
            RtpError::Truncated => {
                f.write_str("RTP CSRC list or header extension runs past the datagram")
            }
            RtpError::BadPadding => {
                f.write_str("RTP padding length is zero or exceeds the payload")
            }
        }
    }
}

impl std::error::Error for RtpError {}

/// A parsed view of one RTP packet; `payload` borrows from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// True when the second byte says RTCP (payload types 200–204 once the marker bit is
/// folded in), so RTP and RTCP can share a port (RFC 5761 §4).
pub fn looks_like_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (192..=223).contains(&datagram[1]) && datagram[0] >> 6 == 2
}

impl<'a> RtpPacket<'a> {
    pub fn parse(d: &'a [u8]) -> Result<Self, RtpError> {
        if d.len() < RTP_HEADER_LEN {
            return Err(RtpError::TooShort(d.len()));
        }
        let version = d[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let padding = d[0] & 0x20 != 0;
        let extension = d[0] & 0x10 != 0;
        let csrc_count = usize::from(d[0] & 0x0f);
        let mut start = RTP_HEADER_LEN + 4 * csrc_count;
        if extension {
            if d.len() < start + 4 {
                return Err(RtpError::Truncated);
            }
            let words = usize::from(u16::from_be_bytes([d[start + 2], d[start + 3]]));
            start += 4 + 4 * words;
        }
        if start > d.len() {
            return Err(RtpError::Truncated);
        }
        let mut end = d.len();
        if padding {
            let pad = usize::from(d[end - 1]);
            if pad == 0 || start + pad > end {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }
        Ok(RtpPacket {
            marker: d[1] & 0x80 != 0,
            payload_type: d[1] & 0x7f,
            sequence: u16::from_be_bytes([d[2], d[3]]),
            timestamp: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
            payload: &d[start..end],
        })
    }
}

/// Write a 12-byte RTP header followed by `payload` into `out` (cleared first).
pub fn build_rtp(
    out: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.clear();
    out.reserve(RTP_HEADER_LEN + payload.len());
    out.push(0x80);
    out.push((u8::from(marker) << 7) | (payload_type & 0x7f));
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Extends 16-bit sequence numbers to 64 bits (RFC 3550 A.1 style): a number within
/// half the space of the highest seen is taken as the nearest one, across wrap-around.
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    pub fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            None => u64::from(seq) + (1 << 16), // headroom so a slightly older packet stays positive
            Some(h) => nearest(h, u64::from(seq), 1 << 16),
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
    pub fn reset(&mut self) {
        self.highest = None;
    }
}

/// Extends 32-bit RTP timestamps to 64 bits, like [`SeqExtender`].
#[derive(Debug, Clone, Default)]
pub struct TsExtender {
    highest: Option<u64>,
}

impl TsExtender {
    pub fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.highest {
            None => u64::from(ts) + (1 << 32),
            Some(h) => nearest(h, u64::from(ts), 1 << 32),
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }
    pub fn reset(&mut self) {
        self.highest = None;
    }
}

/// The value congruent to `low` modulo `space` (a power of two) nearest to `reference`.
fn nearest(reference: u64, low: u64, space: u64) -> u64 {
    let half = space / 2;
    let candidate = (reference & !(space - 1)) | low;
    if candidate > reference + half && candidate >= space {
        candidate - space
    } else if candidate + half < reference {
        candidate + space
    } else {
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_fields() {
        let mut buf = Vec::new();
        build_rtp(
            &mut buf,
            true,
            8,
            65535,
            0xffff_ff00,
            0xdead_beef,
            &[1, 2, 3],
        );
        let p = RtpPacket::parse(&buf).expect("valid");
        assert!(p.marker);
        assert_eq!(
            (p.payload_type, p.sequence, p.timestamp, p.ssrc),
            (8, 65535, 0xffff_ff00, 0xdead_beef)
        );
        assert_eq!(p.payload, &[1, 2, 3]);
        assert!(!looks_like_rtcp(&buf));
    }

    #[test]
    fn csrc_extension_and_padding_are_skipped() {
        // V=2 P=1 X=1 CC=1, PT 0; one CSRC, extension of one word, payload [9,9], padding 2.
        let mut d = vec![0xb1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        d.extend_from_slice(&[0, 0, 0, 4]); // CSRC
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension
        d.extend_from_slice(&[9, 9, 0, 2]); // payload + padding
        let p = RtpPacket::parse(&d).expect("valid");
        assert_eq!(p.payload, &[9, 9]);
    }

    #[test]
    fn malformed_packets_are_refused() {
        assert_eq!(RtpPacket::parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
        assert_eq!(
            RtpPacket::parse(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Truncated)
        );
        let mut d = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::BadPadding));
        d.push(9);
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::BadPadding));
    }

    #[test]
    fn sequence_extension_survives_wrap_and_reordering() {
        let mut x = SeqExtender::default();
        let first = x.extend(65534);
        assert_eq!(x.extend(65535), first + 1);
        assert_eq!(x.extend(1), first + 3); // 0 lost, wrapped
        assert_eq!(x.extend(0), first + 2); // late packet from before the wrap
        assert_eq!(x.extend(65533), first - 1); // older than the first: still below it
        assert_eq!(x.highest(), Some(first + 3));
    }

    #[test]
    fn timestamp_extension_survives_wrap() {
        let mut x = TsExtender::default();
        let a = x.extend(u32::MAX - 79);
        assert_eq!(x.extend(80), a + 160);
        assert_eq!(x.extend(u32::MAX - 239), a - 160);
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: every short prefix of many byte patterns.
        let mut state = 0x1234_5678_u32;
        for _ in 0..20_000 {
            let len = (state % 40) as usize;
            let d: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state & 0xff) as u8
                })
                .collect();
            if let Ok(p) = RtpPacket::parse(&d) {
                assert!(p.payload.len() <= d.len());
            }
        }
    }
}
