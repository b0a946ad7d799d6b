//! `ccorch._core`: the thin pyo3 binding over the pure core crates.
//!
//! It converts types, maps each core error once into the Python exception tree rooted at
//! `ccorch.errors.CcorchError`, and releases the GIL (one choke point: [`detach_if_large`])
//! for work that loops over large buffers.
#![forbid(unsafe_code)]

mod acd;
mod dialer;
mod media;
mod sip;

use ccorch_media::{G711Error, Law};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

pyo3::import_exception!(ccorch.errors, CodecError);

/// Buffers smaller than this are converted with the GIL held: releasing and re-taking it
/// costs more than converting one 20 ms frame.
const DETACH_THRESHOLD: usize = 16 * 1024;

fn detach_if_large<T, F>(py: Python<'_>, len: usize, work: F) -> T
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    if len >= DETACH_THRESHOLD {
        py.detach(work)
    } else {
        work()
    }
}

pub(crate) fn parse_law(name: &str) -> PyResult<Law> {
    match name.to_ascii_uppercase().as_str() {
        "PCMU" | "ULAW" | "MULAW" => Ok(Law::Pcmu),
        "PCMA" | "ALAW" => Ok(Law::Pcma),
        _ => Err(CodecError::new_err(format!(
            "unknown G.711 law {name:?}: expected \"PCMU\" or \"PCMA\""
        ))),
    }
}

fn codec_error(e: G711Error) -> PyErr {
    CodecError::new_err(e.to_string())
}

/// Encode little-endian signed 16-bit PCM into G.711 codes of `law` ("PCMU" or "PCMA").
#[pyfunction]
fn g711_encode<'py>(
    py: Python<'py>,
    pcm: PyBackedBytes,
    law: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let law = parse_law(law)?;
    let out = detach_if_large(py, pcm.len(), || {
        let mut out = Vec::new();
        law.encode_le_bytes(&pcm, &mut out).map(|()| out)
    })
    .map_err(codec_error)?;
    Ok(PyBytes::new(py, &out))
}

/// Decode G.711 codes of `law` into little-endian signed 16-bit PCM.
#[pyfunction]
fn g711_decode<'py>(
    py: Python<'py>,
    codes: PyBackedBytes,
    law: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let law = parse_law(law)?;
    let out = detach_if_large(py, codes.len(), || {
        let mut out = Vec::new();
        law.decode_to_le_bytes(&codes, &mut out);
        out
    });
    Ok(PyBytes::new(py, &out))
}

/// Convert G.711 codes from one law to the other.
#[pyfunction]
fn g711_transcode<'py>(
    py: Python<'py>,
    codes: PyBackedBytes,
    src: &str,
    dst: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let (src, dst) = (parse_law(src)?, parse_law(dst)?);
    let out = detach_if_large(py, codes.len(), || {
        let mut out = Vec::new();
        src.transcode(dst, &codes, &mut out);
        out
    });
    Ok(PyBytes::new(py, &out))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(g711_encode, m)?)?;
    m.add_function(wrap_pyfunction!(g711_decode, m)?)?;
    m.add_function(wrap_pyfunction!(g711_transcode, m)?)?;
    m.add_class::<acd::PyAcd>()?;
    m.add_function(wrap_pyfunction!(acd::erlang_b, m)?)?;
    m.add_function(wrap_pyfunction!(acd::erlang_c, m)?)?;
    m.add_function(wrap_pyfunction!(acd::erlang_c_forecast, m)?)?;
    m.add_function(wrap_pyfunction!(acd::erlang_a, m)?)?;
    m.add_function(wrap_pyfunction!(acd::staffing_erlang_c, m)?)?;
    m.add_function(wrap_pyfunction!(acd::staffing_erlang_a, m)?)?;
    m.add_class::<dialer::PyDialerPacer>()?;
    m.add_class::<media::PyMediaEngine>()?;
    m.add_function(wrap_pyfunction!(dialer::simulate_campaign, m)?)?;
    m.add_function(wrap_pyfunction!(sip::sip_split, m)?)?;
    m.add_function(wrap_pyfunction!(sip::sip_refuse_new_invite, m)?)?;
    m.add_function(wrap_pyfunction!(sip::sip_is_ack_of_refusal, m)?)?;
    Ok(())
}
