//! WAV files: the 44-byte header the recorder rewrites at every flush (so a crash leaves a
//! playable file up to the last flush), and a reader for prompts (8 kHz mono PCM16, A-law
//! or μ-law).

use crate::g711::Law;
use std::fmt;

pub const HEADER_LEN: usize = 44;

/// A canonical RIFF/WAVE header for 8 kHz PCM16 with `channels` and `data_len` bytes of data.
pub fn pcm16_header(channels: u16, data_len: u32) -> [u8; HEADER_LEN] {
    let rate = 8000u32;
    let block = channels * 2;
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WavError {
    NotRiffWave,
    MissingChunk(&'static str),
    Unsupported(String),
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WavError::NotRiffWave => f.write_str("not a RIFF/WAVE file"),
            WavError::MissingChunk(c) => write!(f, "WAV file has no {c:?} chunk"),
            WavError::Unsupported(why) => write!(
                f,
                "unsupported WAV format: {why}; prompts must be 8 kHz mono PCM16, A-law or μ-law"
            ),
        }
    }
}

impl std::error::Error for WavError {}

/// Decode a WAV prompt to 8 kHz mono samples.
pub fn read_prompt(bytes: &[u8]) -> Result<Vec<i16>, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotRiffWave);
    }
    let mut at = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        let body_start = at + 8;
        // A streaming writer killed before its first header update says 0: take the rest.
        let body_end = if id == b"data" && (len == 0 || body_start + len > bytes.len()) {
            bytes.len()
        } else {
            body_start.saturating_add(len).min(bytes.len())
        };
        let body = &bytes[body_start..body_end];
        if id == b"fmt " {
            if body.len() < 16 {
                return Err(WavError::Unsupported("fmt chunk too short".into()));
            }
            let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            fmt = Some((
                u16_at(0),
                u16_at(2),
                u32::from_le_bytes([body[4], body[5], body[6], body[7]]),
                u16_at(14),
            ));
        } else if id == b"data" {
            let (format, channels, rate, bits) = fmt.ok_or(WavError::MissingChunk("fmt "))?;
            if channels != 1 || rate != 8000 {
                return Err(WavError::Unsupported(format!(
                    "{channels} channel(s) at {rate} Hz"
                )));
            }
            return match (format, bits) {
                (1, 16) => Ok(body
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect()),
                (6, 8) => Ok(body.iter().map(|&c| Law::Pcma.decode_sample(c)).collect()),
                (7, 8) => Ok(body.iter().map(|&c| Law::Pcmu.decode_sample(c)).collect()),
                _ => Err(WavError::Unsupported(format!(
                    "format tag {format} with {bits} bits per sample"
                ))),
            };
        }
        at = body_start + len + (len & 1);
    }
    Err(WavError::MissingChunk("data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_then_data_reads_back() {
        let samples: Vec<i16> = (0..100).map(|i| i * 300 - 15_000).collect();
        let mut f = pcm16_header(1, 200).to_vec();
        for s in &samples {
            f.extend_from_slice(&s.to_le_bytes());
        }
        assert_eq!(read_prompt(&f), Ok(samples));
        let stereo = pcm16_header(2, 0);
        assert_eq!(
            read_prompt(&stereo),
            Err(WavError::Unsupported("2 channel(s) at 8000 Hz".into()))
        );
        assert_eq!(read_prompt(b"RIFX...."), Err(WavError::NotRiffWave));
    }

    #[test]
    fn g711_wav_prompts_decode() {
        let mut f =
            b"RIFF\0\0\0\0WAVEfmt \x12\0\0\0\x07\0\x01\0\x40\x1f\0\0\x40\x1f\0\0\x01\0\x08\0\0\0"
                .to_vec();
        f.extend_from_slice(b"fact\x04\0\0\0\x02\0\0\0data\x02\0\0\0\xff\x00");
        assert_eq!(read_prompt(&f), Ok(vec![0, Law::Pcmu.decode_sample(0)]));
    }
}
