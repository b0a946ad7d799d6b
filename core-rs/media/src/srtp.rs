//! SRTP and SRTCP for legs keyed by SDES (RFC 3711, RFC 4568): the two directions' contexts
//! of one leg, keyed by the 30 bytes (16 key + 14 salt) each side puts in its `a=crypto`
//! line. Pure: packets in, packets out; the cryptography is webrtc-rs's `rtc-srtp` over
//! ring. One suite, the one every SDES peer offers: AES_CM_128_HMAC_SHA1_80.

use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;
use std::fmt;

/// Master key and salt as SDES carries them (`inline:` base64 of these 30 bytes).
pub const KEY_LEN: usize = 30;
const MASTER_KEY: usize = 16;
/// Packets up to this far behind the newest are accepted once (RFC 3711 §3.3.2).
const REPLAY_WINDOW: usize = 128;
/// SRTCP trailer: the E flag and 31-bit index, then the 80-bit tag (RFC 3711 §3.4).
const SRTCP_INDEX: usize = 4;
const AUTH_TAG: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrtpError {
    Key(String),
    /// Authentication failed, a replay, or a packet too short to be SRTP.
    Rejected(String),
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SrtpError::Key(e) => write!(f, "SRTP key: {e}"),
            SrtpError::Rejected(e) => write!(f, "SRTP packet rejected: {e}"),
        }
    }
}

impl std::error::Error for SrtpError {}

/// One leg's SRTP: what we send is protected with our key, what we receive is checked and
/// decrypted with the peer's.
pub struct Srtp {
    tx: Context,
    rx: Context,
}

impl fmt::Debug for Srtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Srtp { .. }") // keys stay out of logs
    }
}

fn context(key: &[u8; KEY_LEN], inbound: bool) -> Result<Context, SrtpError> {
    let provider = rtc_crypto::default_provider().map_err(|e| SrtpError::Key(e.to_string()))?;
    let (master, salt) = key.split_at(MASTER_KEY);
    let (rtp, rtcp) = if inbound {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(
        master,
        salt,
        ProtectionProfile::Aes128CmHmacSha1_80,
        rtp,
        rtcp,
        provider.crypto(),
    )
    .map_err(|e| SrtpError::Key(e.to_string()))
}

/// RTCP's packet types (200-204) put 192..=223 in the second byte (RFC 5761 §4).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (192..=223).contains(&packet[1])
}

impl Srtp {
    pub fn new(local: &[u8; KEY_LEN], remote: &[u8; KEY_LEN]) -> Result<Self, SrtpError> {
        Ok(Srtp {
            tx: context(local, false)?,
            rx: context(remote, true)?,
        })
    }

    /// Protect an RTP or RTCP packet of ours.
    pub fn protect(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let out = if is_rtcp(packet) {
            self.tx.encrypt_rtcp(packet)
        } else {
            self.tx.encrypt_rtp(packet)
        };
        out.map(|b| b.to_vec())
            .map_err(|e| SrtpError::Rejected(e.to_string()))
    }

    /// Check and decrypt a packet from the peer: the plain RTP or RTCP packet.
    pub fn unprotect(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if packet.len() < 12 {
            return Err(SrtpError::Rejected("shorter than an RTP header".into()));
        }
        let out = if is_rtcp(packet) {
            // rtc-srtp 0.21.1 returns an SRTCP packet whose E flag is 0 ("not encrypted")
            // without checking its tag at all, so anyone could inject RTCP (a BYE) into an
            // SRTP leg. We never agree to unencrypted SRTCP (RFC 4568 UNENCRYPTED_SRTCP):
            // such a packet is refused here, before the library sees it. Found by fuzzing.
            let e_flag = packet
                .len()
                .checked_sub(SRTCP_INDEX + AUTH_TAG)
                .and_then(|at| packet.get(at))
                .map(|b| b & 0x80 != 0);
            if e_flag != Some(true) {
                return Err(SrtpError::Rejected("SRTCP without encryption".into()));
            }
            self.rx.decrypt_rtcp(packet)
        } else {
            self.rx.decrypt_rtp(packet)
        };
        out.map(|b| b.to_vec())
            .map_err(|e| SrtpError::Rejected(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn pair() -> (Srtp, Srtp) {
        let (a, b) = ([7u8; KEY_LEN], [9u8; KEY_LEN]);
        (
            Srtp::new(&a, &b).expect("valid keys"),
            Srtp::new(&b, &a).expect("valid keys"),
        )
    }

    #[test]
    fn each_side_reads_what_the_other_protected_and_nothing_else() {
        let (mut us, mut peer) = pair();
        for seq in 0..50u16 {
            let plain = rtp(seq, &[seq as u8; 160]);
            let wire = us.protect(&plain).expect("protect");
            assert_eq!(wire.len(), plain.len() + 10); // the 80-bit tag
            assert_ne!(&wire[12..172], &plain[12..]); // the payload is encrypted
            assert_eq!(peer.unprotect(&wire).expect("unprotect"), plain);
            let back = peer.protect(&plain).expect("protect");
            assert_eq!(us.unprotect(&back).expect("unprotect"), plain);
        }
    }

    #[test]
    fn a_forged_or_replayed_or_plain_packet_is_rejected() {
        let (mut us, mut peer) = pair();
        let wire = us.protect(&rtp(1, &[1; 160])).expect("protect");
        assert!(peer.unprotect(&wire).is_ok());
        assert!(peer.unprotect(&wire).is_err(), "a replay");
        let mut forged = us.protect(&rtp(2, &[2; 160])).expect("protect");
        forged[20] ^= 1;
        assert!(peer.unprotect(&forged).is_err(), "a flipped bit");
        assert!(peer.unprotect(&rtp(3, &[3; 160])).is_err(), "plain RTP");
        assert!(peer.unprotect(&[0x80, 0]).is_err(), "too short");
        let (_, mut stranger) = (0, Srtp::new(&[1; KEY_LEN], &[2; KEY_LEN]).expect("keys"));
        let wire = us.protect(&rtp(4, &[4; 160])).expect("protect");
        assert!(stranger.unprotect(&wire).is_err(), "another key");
    }

    #[test]
    fn srtcp_that_claims_to_be_unencrypted_is_not_taken_unauthenticated() {
        // What the fuzzer found: [0x80, 200+, zeros] with E = 0 was returned as valid RTCP.
        let (_, mut peer) = pair();
        let mut forged = vec![0x80, 203, 0, 1, 0x12, 0x34, 0x56, 0x78]; // an RTCP BYE
        forged.extend_from_slice(&[0, 0, 0, 1]); // E = 0, index 1
        forged.extend_from_slice(&[0; 10]); // any tag
        assert!(peer.unprotect(&forged).is_err());
        assert!(peer
            .unprotect(&[0x80, 192, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .is_err());
    }

    #[test]
    fn rtcp_goes_through_srtcp() {
        let (mut us, mut peer) = pair();
        // a receiver report with no blocks: V=2, PT=201, length 1, SSRC
        let rr = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
        let wire = us.protect(&rr).expect("protect");
        assert!(wire.len() > rr.len() + 4); // E flag + index, then the tag
        assert_eq!(peer.unprotect(&wire).expect("unprotect"), rr.to_vec());
    }
}
