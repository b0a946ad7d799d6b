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
