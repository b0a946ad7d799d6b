//! G.711 μ-law (PCMU) and A-law (PCMA), table-driven.
//!
//! The tables are built at compile time from the ITU-T G.191 Software Tool Library
//! reference algorithms (`g711.c`: `ulaw_compress`, `ulaw_expand`, `alaw_compress`,
//! `alaw_expand`), which are kept below as `const fn`s so the tests can compare every
//! one of the 65,536 linear inputs and 256 codes against them.
//!
//! Linear audio is signed 16-bit PCM. μ-law uses the 14 most significant bits, A-law
//! the 13 most significant bits, so the encode tables are indexed by the sample shifted
//! right by 2 (μ-law, 16,384 entries) or by 4 (A-law, 4,096 entries).

use std::fmt;

/// The two G.711 laws, with their static RTP payload types (RFC 3551).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Law {
    /// μ-law, RTP payload type 0.
    Pcmu,
    /// A-law, RTP payload type 8.
    Pcma,
}

impl Law {
    /// The static RTP payload type of this law.
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::Pcmu => 0,
            Law::Pcma => 8,
        }
    }

    /// The law for a static RTP payload type, if it is a G.711 one.
    pub const fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::Pcmu),
            8 => Some(Law::Pcma),
            _ => None,
        }
    }

    /// Code of silence (linear zero) in this law.
    pub const fn silence(self) -> u8 {
        match self {
            Law::Pcmu => 0xFF,
            Law::Pcma => 0xD5,
        }
    }

    #[inline]
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Law::Pcmu => ulaw_encode_sample(sample),
            Law::Pcma => alaw_encode_sample(sample),
        }
    }

    #[inline]
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Law::Pcmu => ULAW_DECODE[code as usize],
            Law::Pcma => ALAW_DECODE[code as usize],
        }
    }

    /// Encode `pcm` into `out`; `out` must be exactly as long as `pcm`.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) -> Result<(), G711Error> {
        check_len(pcm.len(), out.len())?;
        match self {
            Law::Pcmu => out
                .iter_mut()
                .zip(pcm)
                .for_each(|(o, &s)| *o = ulaw_encode_sample(s)),
            Law::Pcma => out
                .iter_mut()
                .zip(pcm)
                .for_each(|(o, &s)| *o = alaw_encode_sample(s)),
        }
        Ok(())
    }

    /// Decode `codes` into `out`; `out` must be exactly as long as `codes`.
    pub fn decode(self, codes: &[u8], out: &mut [i16]) -> Result<(), G711Error> {
        check_len(codes.len(), out.len())?;
        let table = self.decode_table();
        out.iter_mut()
            .zip(codes)
            .for_each(|(o, &c)| *o = table[c as usize]);
        Ok(())
    }

    /// Encode little-endian PCM16 bytes (as in a WAV file or a Python `bytes`) into codes.
    pub fn encode_le_bytes(self, pcm_le: &[u8], out: &mut Vec<u8>) -> Result<(), G711Error> {
        if !pcm_le.len().is_multiple_of(2) {
            return Err(G711Error::OddPcmLength(pcm_le.len()));
        }
        out.clear();
        out.reserve(pcm_le.len() / 2);
        let pairs = pcm_le.chunks_exact(2);
        match self {
            Law::Pcmu => {
                out.extend(pairs.map(|p| ulaw_encode_sample(i16::from_le_bytes([p[0], p[1]]))))
            }
            Law::Pcma => {
                out.extend(pairs.map(|p| alaw_encode_sample(i16::from_le_bytes([p[0], p[1]]))))
            }
        }
        Ok(())
    }

    /// Decode codes into little-endian PCM16 bytes.
    pub fn decode_to_le_bytes(self, codes: &[u8], out: &mut Vec<u8>) {
        let table = self.decode_table();
        out.clear();
        out.reserve(codes.len() * 2);
        for &c in codes {
            out.extend_from_slice(&table[c as usize].to_le_bytes());
        }
    }

    /// Transcode codes of this law into `to` (decode, then encode: the path
    /// Asterisk and most media servers take; A→μ→A is not bit-transparent for
    /// every code, as G.711's own conversion tables are not either).
    pub fn transcode(self, to: Law, codes: &[u8], out: &mut Vec<u8>) {
        out.clear();
        if self == to {
            out.extend_from_slice(codes);
            return;
        }
        let table = match self {
            Law::Pcmu => &ULAW_TO_ALAW,
            Law::Pcma => &ALAW_TO_ULAW,
        };
        out.extend(codes.iter().map(|&c| table[c as usize]));
    }

    fn decode_table(self) -> &'static [i16; 256] {
        match self {
            Law::Pcmu => &ULAW_DECODE,
            Law::Pcma => &ALAW_DECODE,
        }
    }
}

/// Errors of buffer-level G.711 calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum G711Error {
    /// Little-endian PCM16 input must have an even number of bytes.
    OddPcmLength(usize),
    /// Output buffer length differs from the input's sample count.
    LengthMismatch { input: usize, output: usize },
}

impl fmt::Display for G711Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            G711Error::OddPcmLength(n) => write!(
                f,
                "PCM16 input has {n} bytes; 16-bit samples need an even number of bytes"
            ),
            G711Error::LengthMismatch { input, output } => {
                write!(f, "output holds {output} samples, input has {input}")
            }
        }
    }
}

impl std::error::Error for G711Error {}

fn check_len(input: usize, output: usize) -> Result<(), G711Error> {
    if input == output {
        Ok(())
    } else {
        Err(G711Error::LengthMismatch { input, output })
    }
}

#[inline]
pub fn ulaw_encode_sample(sample: i16) -> u8 {
    ULAW_ENCODE[((sample >> 2) as u16 & 0x3FFF) as usize]
}

#[inline]
pub fn alaw_encode_sample(sample: i16) -> u8 {
    ALAW_ENCODE[((sample >> 4) as u16 & 0x0FFF) as usize]
}

#[inline]
pub fn ulaw_decode_sample(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

#[inline]
pub fn alaw_decode_sample(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

// ---- G.191 reference algorithms (used to build the tables, and as the tests' oracle) ----

/// G.191 `ulaw_compress` for one 16-bit sample.
pub const fn ulaw_compress_reference(sample: i16) -> u8 {
    let lin = sample as i32;
    // Magnitude in 14 bits plus the bias of 33 (132 in 16-bit units).
    let mut absno = if lin < 0 {
        ((!lin) >> 2) + 33
    } else {
        (lin >> 2) + 33
    };
    if absno > 0x1FFF {
        absno = 0x1FFF;
    }
    let mut i = absno >> 6;
    let mut segno = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high_nibble = 0x0008 - segno;
    let low_nibble = 0x000F - ((absno >> segno) & 0x000F);
    let mut code = (high_nibble << 4) | low_nibble;
    if lin >= 0 {
        code |= 0x0080;
    }
    code as u8
}

/// G.191 `ulaw_expand` for one code.
pub const fn ulaw_expand_reference(code: u8) -> i16 {
    let log = code as i32;
    let sign = if log < 0x0080 { -1 } else { 1 };
    let mantissa = !log;
    let exponent = (mantissa >> 4) & 0x07;
    let segment = exponent + 1;
    let mantissa = mantissa & 0x0F;
    let step = 4 << segment;
    (sign * ((0x0080 << exponent) + step * mantissa + step / 2 - 4 * 33)) as i16
}

/// G.191 `alaw_compress` for one 16-bit sample.
pub const fn alaw_compress_reference(sample: i16) -> u8 {
    let lin = sample as i32;
    // 1's complement for negative values, then 12 bits of magnitude.
    let mut ix = if lin < 0 { (!lin) >> 4 } else { lin >> 4 };
    if ix > 15 {
        let mut iexp = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            iexp += 1;
        }
        ix -= 16;
        ix += iexp << 4;
    }
    if lin >= 0 {
        ix |= 0x0080;
    }
    (ix ^ 0x0055) as u8
}

/// G.191 `alaw_expand` for one code.
pub const fn alaw_expand_reference(code: u8) -> i16 {
    let ix = (code as i32 ^ 0x0055) & 0x007F;
    let iexp = ix >> 4;
    let mut mant = ix & 0x000F;
    if iexp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 0x0008;
    if iexp > 1 {
        mant <<= iexp - 1;
    }
    (if code > 127 { mant } else { -mant }) as i16
}

// ---- tables ----

static ULAW_DECODE: [i16; 256] = build_decode(Law::Pcmu);
static ALAW_DECODE: [i16; 256] = build_decode(Law::Pcma);
static ULAW_ENCODE: [u8; 16384] = build_ulaw_encode();
static ALAW_ENCODE: [u8; 4096] = build_alaw_encode();
static ULAW_TO_ALAW: [u8; 256] = build_transcode(Law::Pcmu);
static ALAW_TO_ULAW: [u8; 256] = build_transcode(Law::Pcma);

const fn build_decode(law: Law) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match law {
            Law::Pcmu => ulaw_expand_reference(c as u8),
            Law::Pcma => alaw_expand_reference(c as u8),
        };
        c += 1;
    }
    t
}

const fn build_ulaw_encode() -> [u8; 16384] {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        // Index i is a 14-bit two's-complement value; rebuild a 16-bit sample with it.
        let sample = ((i as u16) << 2) as i16;
        t[i] = ulaw_compress_reference(sample);
        i += 1;
    }
    t
}

const fn build_alaw_encode() -> [u8; 4096] {
    let mut t = [0u8; 4096];
    let mut i = 0;
    while i < 4096 {
        let sample = ((i as u16) << 4) as i16;
        t[i] = alaw_compress_reference(sample);
        i += 1;
    }
    t
}

const fn build_transcode(from: Law) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match from {
            Law::Pcmu => alaw_compress_reference(ulaw_expand_reference(c as u8)),
            Law::Pcma => ulaw_compress_reference(alaw_expand_reference(c as u8)),
        };
        c += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_reference_for_every_input() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(
                ulaw_encode_sample(s),
                ulaw_compress_reference(s),
                "μ-law {s}"
            );
            assert_eq!(
                alaw_encode_sample(s),
                alaw_compress_reference(s),
                "A-law {s}"
            );
        }
        for c in 0..=255u8 {
            assert_eq!(ulaw_decode_sample(c), ulaw_expand_reference(c));
            assert_eq!(alaw_decode_sample(c), alaw_expand_reference(c));
        }
    }

    #[test]
    fn itu_reference_values() {
        // Decoder outputs from G.711 tables 2a/2b (16-bit scaling as in G.191).
        assert_eq!(ulaw_decode_sample(0x00), -32124);
        assert_eq!(ulaw_decode_sample(0x80), 32124);
        assert_eq!(ulaw_decode_sample(0xFF), 0);
        assert_eq!(ulaw_decode_sample(0x7F), 0);
        assert_eq!(ulaw_decode_sample(0xFE), 8);
        assert_eq!(ulaw_decode_sample(0xEF), 132);
        assert_eq!(alaw_decode_sample(0xD5), 8);
        assert_eq!(alaw_decode_sample(0x55), -8);
        assert_eq!(alaw_decode_sample(0xAA), 32256);
        assert_eq!(alaw_decode_sample(0x2A), -32256);
        // Encoder: zero, full scale, and the sign bit convention (1 = positive).
        assert_eq!(ulaw_encode_sample(0), 0xFF);
        assert_eq!(ulaw_encode_sample(i16::MAX), 0x80);
        assert_eq!(ulaw_encode_sample(i16::MIN), 0x00);
        assert_eq!(alaw_encode_sample(0), 0xD5);
        assert_eq!(alaw_encode_sample(i16::MAX), 0xAA);
        assert_eq!(alaw_encode_sample(i16::MIN), 0x2A);
        assert_eq!(Law::Pcmu.silence(), ulaw_encode_sample(0));
        assert_eq!(Law::Pcma.silence(), alaw_encode_sample(0));
    }

    #[test]
    fn decode_then_encode_is_identity_on_codes() {
        // Every code's decoded value encodes back to the same code (except μ-law's
        // negative zero 0x7F, which encodes as positive zero 0xFF).
        for c in 0..=255u8 {
            let back = ulaw_encode_sample(ulaw_decode_sample(c));
            if c == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, c, "μ-law code {c:#04x}");
            }
            assert_eq!(
                alaw_encode_sample(alaw_decode_sample(c)),
                c,
                "A-law {c:#04x}"
            );
        }
    }

    #[test]
    fn quantisation_error_is_within_half_a_step() {
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_decode_sample(ulaw_encode_sample(s)) as i32;
            let a = alaw_decode_sample(alaw_encode_sample(s)) as i32;
            let mag = (s as i32).abs();
            // Largest step: 1024 (μ-law) and 1024 (A-law) in the top segment.
            let bound = 512.max(mag / 16);
            assert!((u - s as i32).abs() <= bound + 132, "μ-law {s} -> {u}");
            assert!((a - s as i32).abs() <= bound, "A-law {s} -> {a}");
        }
    }

    #[test]
    fn buffers_and_le_bytes() {
        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i * 997) % 65536 - 32768) as i16)
            .collect();
        let mut codes = vec![0u8; pcm.len()];
        Law::Pcma.encode(&pcm, &mut codes).unwrap();
        let mut back = vec![0i16; pcm.len()];
        Law::Pcma.decode(&codes, &mut back).unwrap();
        let le: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut codes2 = Vec::new();
        Law::Pcma.encode_le_bytes(&le, &mut codes2).unwrap();
        assert_eq!(codes, codes2);
        let mut le_back = Vec::new();
        Law::Pcma.decode_to_le_bytes(&codes, &mut le_back);
        let back2: Vec<i16> = le_back
            .chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]))
            .collect();
        assert_eq!(back, back2);
        assert_eq!(
            Law::Pcmu.encode_le_bytes(&[1, 2, 3], &mut codes2),
            Err(G711Error::OddPcmLength(3))
        );
        assert_eq!(
            Law::Pcmu.encode(&pcm, &mut codes[..10]),
            Err(G711Error::LengthMismatch {
                input: 160,
                output: 10
            })
        );
    }

    #[test]
    fn transcoding_matches_decode_then_encode() {
        let codes: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        Law::Pcmu.transcode(Law::Pcma, &codes, &mut out);
        for (&c, &o) in codes.iter().zip(&out) {
            assert_eq!(o, alaw_encode_sample(ulaw_decode_sample(c)));
        }
        Law::Pcma.transcode(Law::Pcma, &codes, &mut out);
        assert_eq!(out, codes);
    }

    #[test]
    fn payload_types() {
        assert_eq!(Law::from_payload_type(0), Some(Law::Pcmu));
        assert_eq!(Law::from_payload_type(8), Some(Law::Pcma));
        assert_eq!(Law::from_payload_type(18), None);
        assert_eq!(Law::Pcma.payload_type(), 8);
    }
}
