//! The hot part of SIP parsing for `ccorch.sip.message.parse`: cutting the header section
//! into the start line and (name, value) pairs. Only the common, well-formed case is handled
//! here (CRLF line ends, UTF-8, no folded lines, token names); for anything else this returns
//! None and the Python parser, which knows every rule and error message, takes over. So both
//! give the same answer whenever this one answers (a property test checks it).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

const MAX_HEADERS: usize = 128;

/// Python's `str.strip()` whitespace: Unicode White_Space plus the ASCII separators 0x1c–0x1f.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn compact(name: &str) -> Option<&'static str> {
    Some(match name {
        "i" => "call-id",
        "m" => "contact",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        "o" => "event",
        "r" => "refer-to",
        "b" => "referred-by",
        "x" => "session-expires",
        "u" => "allow-events",
        "a" => "accept-contact",
        "j" => "reject-contact",
        "d" => "request-disposition",
        "y" => "identity",
        _ => return None,
    })
}

type Split<'py> = (String, Vec<(String, String)>, Bound<'py, PyBytes>);

/// `(start_line, [(name, value), ...], body)` of a well-formed message, else None.
#[pyfunction]
pub fn sip_split<'py>(py: Python<'py>, data: &[u8]) -> Option<Split<'py>> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&data[..end]).ok()?;
    let body = &data[end + 4..];
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    if start.trim_matches(py_space).is_empty() || start.contains('\n') {
        return None;
    }
    let mut headers: Vec<(String, String)> = Vec::with_capacity(16);
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.contains('\n') || line.starts_with([' ', '\t']) {
            return None; // bare LF or a folded line: the Python parser's job
        }
        let (name, value) = line.split_once(':')?;
        let name = name.trim_matches(py_space);
        if name.is_empty() || !name.bytes().all(is_token) {
            return None;
        }
        let lower = name.to_ascii_lowercase();
        let name = match compact(&lower) {
            Some(full) => full.to_string(),
            None => lower,
        };
        headers.push((name, value.trim_matches(py_space).to_string()));
        if headers.len() > MAX_HEADERS {
            return None;
        }
    }
    Some((start.to_string(), headers, PyBytes::new(py, body)))
}

/// What a node shedding load sends for a new INVITE, built straight from the datagram.
pub struct Refusal {
    /// The server transaction key `ccorch.sip.transaction` would give this INVITE: if such a
    /// transaction is under way, this is a retransmission of an accepted call, never refused.
    pub key: String,
    pub response: Vec<u8>,
    /// Where the response goes: None = the source address (rport), else the Via's port.
    pub port: Option<u16>,
}

/// What a refusal answers: status, reason phrase, and the Retry-After seconds.
pub struct Answer<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub retry_after: u32,
}

/// The prefix of the To-tag of a refusal, so its ACK is known without a transaction.
pub const REFUSAL_TAG: &str = "ovl";

struct TopVia<'a> {
    host: &'a str,
    port: Option<&'a str>,
    branch: &'a str,
    rport: bool,
    maddr: bool,
}

/// The first value of the first Via: `SIP/2.0/UDP host[:port];params`.
fn top_via(value: &str) -> Option<TopVia<'_>> {
    let first = value.split(',').next()?.trim_matches(py_space);
    let (proto, rest) = first.split_once(' ')?;
    if !proto.to_ascii_uppercase().starts_with("SIP/2.0/") || first.contains('"') {
        return None; // a quoted parameter: the Python parser's job
    }
    let mut parts = rest.trim_matches(py_space).split(';');
    let sent_by = parts.next()?.trim_matches(py_space);
    if sent_by.starts_with('[') {
        return None; // IPv6: the Python path
    }
    let (host, port) = match sent_by.split_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h, Some(p.trim_start_matches('0')))
        }
        Some(_) => return None,
        None => (sent_by, None),
    };
    if host.is_empty() || port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return None;
    }
    let (mut branch, mut rport, mut maddr) = (None, false, false);
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim_matches(py_space), Some(v.trim_matches(py_space))),
            None => (p.trim_matches(py_space), None),
        };
        match name.to_ascii_lowercase().as_str() {
            "branch" => branch = value,
            "rport" => rport = true,
            "maddr" => maddr = true,
            _ => {}
        }
    }
    Some(TopVia {
        host,
        port,
        branch: branch?,
        rport,
        maddr,
    })
}

fn has_tag(to: &str) -> bool {
    to.split(';').skip(1).any(|p| {
        p.trim_matches(py_space)
            .to_ascii_lowercase()
            .starts_with("tag=")
    })
}

/// FNV-1a: a refusal's To-tag is the same for every retransmission of its INVITE.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The response refusing a new INVITE (no To-tag, RFC 3261 branch), or None for anything
/// else (in-dialog requests, other methods, what the fast cut declines): those take the
/// full path. The top Via gets `received` and `rport` as §18.2.1 and RFC 3581 ask.
pub fn refuse_new_invite(data: &[u8], source: (&str, u16), answer: &Answer) -> Option<Refusal> {
    let (source_host, source_port) = source;
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(data.get(..end)?).ok()?;
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    let mut words = start.split(' ');
    if words.next()? != "INVITE" || words.nth(1)? != "SIP/2.0" || start.contains('\n') {
        return None;
    }
    let (mut vias, mut from, mut to, mut call_id, mut cseq) = (Vec::new(), None, None, None, None);
    for line in lines {
        if line.contains('\n') || line.starts_with([' ', '\t']) {
            return None;
        }
        let (name, value) = line.split_once(':')?;
        let lower = name.trim_matches(py_space).to_ascii_lowercase();
        let value = value.trim_matches(py_space);
        match compact(&lower).unwrap_or(lower.as_str()) {
            "via" => vias.push(value),
            "from" => from = Some(value),
            "to" => to = Some(value),
            "call-id" => call_id = Some(value),
            "cseq" => cseq = Some(value),
            _ => {}
        }
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    let top = top_via(vias.first()?)?;
    let cseq_method = cseq.split_whitespace().nth(1)?;
    if has_tag(to) || top.maddr || !top.branch.starts_with("z9hG4bK") || cseq_method != "INVITE" {
        return None;
    }
    let port_key = top.port.map_or("None", |p| p);
    let key = format!("{}|{}:{}|INVITE", top.branch, top.host, port_key);
    let mut out = String::with_capacity(end + 128);
    out.push_str(&format!("SIP/2.0 {} {}\r\n", answer.status, answer.reason));
    for (i, via) in vias.iter().enumerate() {
        out.push_str("Via: ");
        if i > 0 {
            out.push_str(via);
        } else {
            // Stamp the first value only; the rest of the header stays as it came.
            let (first, rest) = match via.split_once(',') {
                Some((f, r)) => (f.trim_matches(py_space), Some(r)),
                None => (*via, None),
            };
            let mut stamped = String::with_capacity(first.len() + 40);
            for (j, part) in first.split(';').enumerate() {
                if j > 0 {
                    stamped.push(';');
                }
                if part.trim_matches(py_space).eq_ignore_ascii_case("rport") {
                    stamped.push_str(&format!("rport={source_port}"));
                } else {
                    stamped.push_str(part);
                }
            }
            if top.host != source_host {
                stamped.push_str(&format!(";received={source_host}"));
            }
            out.push_str(&stamped);
            if let Some(rest) = rest {
                out.push(',');
                out.push_str(rest);
            }
        }
        out.push_str("\r\n");
    }
    let tag = format!("{REFUSAL_TAG}{:08x}", fnv(top.branch) ^ fnv(call_id));
    out.push_str(&format!(
        "From: {from}\r\nTo: {to};tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n\
         Retry-After: {}\r\nContent-Length: 0\r\n\r\n",
        answer.retry_after
    ));
    let port = if top.rport {
        None
    } else {
        Some(top.port.and_then(|p| p.parse().ok()).unwrap_or(5060))
    };
    Some(Refusal {
        key,
        response: out.into_bytes(),
        port,
    })
}

/// Whether `data` is the ACK of a refusal made by [`refuse_new_invite`] (its To-tag says
/// so): nothing is left to do for it, so it is dropped before it is parsed.
pub fn is_ack_of_refusal(data: &[u8]) -> bool {
    if !data.starts_with(b"ACK ") {
        return false;
    }
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let Ok(head) = std::str::from_utf8(&data[..end]) else {
        return false;
    };
    head.split("\r\n").skip(1).any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        let name = name.trim_matches(py_space);
        (name.eq_ignore_ascii_case("to") || name.eq_ignore_ascii_case("t"))
            && value.split(';').skip(1).any(|p| {
                let p = p.trim_matches(py_space);
                p.len() > 4
                    && p[..4].eq_ignore_ascii_case("tag=")
                    && p[4..].starts_with(REFUSAL_TAG)
            })
    })
}

/// Python: `(key, response, port)` refusing a new INVITE, else None (see
/// [`refuse_new_invite`]).
#[pyfunction]
#[pyo3(signature = (data, source_host, source_port, status, reason, retry_after))]
pub fn sip_refuse_new_invite<'py>(
    py: Python<'py>,
    data: &[u8],
    source_host: &str,
    source_port: u16,
    status: u16,
    reason: &str,
    retry_after: u32,
) -> Option<(String, Bound<'py, PyBytes>, Option<u16>)> {
    let answer = Answer {
        status,
        reason,
        retry_after,
    };
    let r = refuse_new_invite(data, (source_host, source_port), &answer)?;
    Some((r.key, PyBytes::new(py, &r.response), r.port))
}

/// Python: whether `data` is the ACK of a refusal (see [`is_ack_of_refusal`]).
#[pyfunction]
pub fn sip_is_ack_of_refusal(data: &[u8]) -> bool {
    is_ack_of_refusal(data)
}
