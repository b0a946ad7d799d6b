//! Reading a UDP socket's queued datagrams in batches (`recvmmsg`), each with the kernel's
//! arrival time (`SO_TIMESTAMPNS`).
//!
//! The shard's tick reads every plain RTP leg's socket itself with this: a packet then costs
//! no task wake-up and no readiness bookkeeping, and its arrival time is when it reached the
//! host, not when the tick got round to it (the jitter buffer and RTCP jitter need the former).

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};
use nix::sys::time::TimeSpec;

/// Datagrams read per system call; a leg has one or two queued per tick, a late tick more.
pub const BATCH: usize = 16;
/// Larger than any RTP packet a phone sends (a truncated one fails to parse and is counted).
const MAX_DATAGRAM: usize = 2048;

/// Ask the kernel to stamp every datagram this socket receives.
pub fn enable_timestamps(sock: &UdpSocket) -> io::Result<()> {
    setsockopt(sock, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

#[derive(Clone, Copy)]
struct Received {
    len: usize,
    src: Option<SocketAddr>,
    arrived: Option<SystemTime>,
}

/// Buffers for one batch, reused from call to call (no allocation per read).
pub struct BatchReceiver {
    bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    headers: MultiHeaders<SockaddrStorage>,
    got: [Received; BATCH],
    count: usize,
}

impl Default for BatchReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchReceiver {
    pub fn new() -> Self {
        BatchReceiver {
            bufs: Box::new([[0; MAX_DATAGRAM]; BATCH]),
            headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec))),
            got: [Received {
                len: 0,
                src: None,
                arrived: None,
            }; BATCH],
            count: 0,
        }
    }

    /// Read what is queued on `sock`, up to [`BATCH`] datagrams, without waiting: how many
    /// (0 when nothing is queued). An error is the socket's (e.g. an ICMP error of an
    /// earlier send); the socket stays usable.
    pub fn receive(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        self.count = 0;
        let mut slices = self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let results = match recvmmsg(
            sock.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(r) => r,
            Err(Errno::EAGAIN) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        for (slot, msg) in self.got.iter_mut().zip(results) {
            let arrived = msg.cmsgs().ok().and_then(|mut cmsgs| {
                cmsgs.find_map(|c| match c {
                    ControlMessageOwned::ScmTimestampns(ts) => Some(to_system_time(ts)),
                    _ => None,
                })
            });
            *slot = Received {
                len: msg.bytes.min(MAX_DATAGRAM),
                src: msg.address.as_ref().and_then(socket_addr),
                arrived,
            };
            self.count += 1;
        }
        Ok(self.count)
    }

    /// The `i`th datagram of the last batch: payload, sender, kernel arrival time.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, Option<SystemTime>)> {
        if i >= self.count {
            return None;
        }
        let r = self.got.get(i)?;
        let src = r.src?;
        Some((self.bufs.get(i)?.get(..r.len)?, src, r.arrived))
    }
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

fn to_system_time(ts: TimeSpec) -> SystemTime {
    let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_every_queued_datagram_with_its_sender_and_arrival_time() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_nonblocking(true).expect("nonblocking");
        enable_timestamps(&rx).expect("timestamps");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut r = BatchReceiver::new();
        assert_eq!(r.receive(&rx).expect("empty is not an error"), 0);
        let before = SystemTime::now();
        for i in 0..(BATCH + 3) {
            tx.send_to(&[i as u8; 172], rx.local_addr().expect("addr"))
                .expect("send");
        }
        let after = SystemTime::now();
        assert_eq!(r.receive(&rx).expect("batch"), BATCH);
        for i in 0..BATCH {
            let (data, src, at) = r.get(i).expect("datagram");
            assert_eq!(data, &[i as u8; 172][..]);
            assert_eq!(src, tx.local_addr().expect("addr"));
            let at = at.expect("kernel timestamp");
            assert!(
                at >= before - Duration::from_millis(5) && at <= after + Duration::from_millis(5),
                "{before:?} {at:?} {after:?}"
            );
        }
        assert!(r.get(BATCH).is_none());
        assert_eq!(r.receive(&rx).expect("rest"), 3);
        assert_eq!(r.get(2).expect("last").0[0], (BATCH + 2) as u8);
        assert_eq!(r.receive(&rx).expect("drained"), 0);
    }
}
