"""G.711 through the extension: reference values, round trips, and an independent oracle."""

from __future__ import annotations

import math
import struct
import warnings

import pytest

from ccorch import _core
from ccorch.errors import CcorchError, CodecError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # CPython's own G.711 (Sun's implementation): an independent oracle


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


ALL_SAMPLES = pcm(*range(-32768, 32768))


def test_itu_reference_values() -> None:
    assert _core.g711_encode(pcm(0, 32767, -32768), "PCMU") == bytes([0xFF, 0x80, 0x00])
    assert _core.g711_encode(pcm(0, 32767, -32768), "PCMA") == bytes([0xD5, 0xAA, 0x2A])
    assert samples(_core.g711_decode(bytes([0x00, 0x80, 0xFF, 0xFE]), "PCMU")) == [
        -32124,
        32124,
        0,
        8,
    ]
    assert samples(_core.g711_decode(bytes([0xD5, 0x55, 0xAA, 0x2A]), "PCMA")) == [
        8,
        -8,
        32256,
        -32256,
    ]


def _audioop(name: str, data: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        out: bytes = getattr(audioop, name)(data, 2)
        return out


def test_alaw_matches_cpython_audioop_for_every_sample_and_code() -> None:
    assert _core.g711_encode(ALL_SAMPLES, "PCMA") == _audioop("lin2alaw", ALL_SAMPLES)
    assert _core.g711_decode(bytes(range(256)), "PCMA") == _audioop("alaw2lin", bytes(range(256)))


def test_ulaw_matches_cpython_audioop_up_to_its_negative_rounding() -> None:
    # audioop (Sun's code) takes the magnitude of a negative sample as -x; the ITU-T G.191
    # reference takes ~x (one's complement), so for x < 0 the reference's code for x is
    # audioop's code for x + 4, and -4..-1 are "negative zero" (0x7F).
    assert _core.g711_decode(bytes(range(256)), "PCMU") == _audioop("ulaw2lin", bytes(range(256)))
    ours = _core.g711_encode(ALL_SAMPLES, "PCMU")
    theirs = _audioop("lin2ulaw", ALL_SAMPLES)
    zero = 32768  # index of sample 0
    assert ours[zero:] == theirs[zero:]
    assert ours[: zero - 4] == theirs[4:zero]
    assert ours[zero - 4 : zero] == b"\x7f" * 4


@pytest.mark.parametrize("law", ["PCMU", "PCMA"])
def test_tone_round_trip_keeps_signal_to_noise(law: str) -> None:
    # One second of a 1 kHz tone at -10 dBFS: G.711 keeps SNR near 38 dB.
    tone = [round(10362 * math.sin(2 * math.pi * 1000 * n / 8000 + 0.3)) for n in range(8000)]
    back = samples(_core.g711_decode(_core.g711_encode(pcm(*tone), law), law))
    signal = sum(s * s for s in tone)
    noise = sum((a - b) ** 2 for a, b in zip(tone, back, strict=True))
    assert 10 * math.log10(signal / noise) > 35


def test_large_buffers_take_the_same_path_as_small_ones() -> None:
    # Above 16 KiB the GIL is released; results must not depend on it.
    big = ALL_SAMPLES * 2
    assert _core.g711_encode(big, "PCMA") == _core.g711_encode(ALL_SAMPLES, "PCMA") * 2
    assert _core.g711_encode(bytearray(ALL_SAMPLES[:320]), "pcmu") == _core.g711_encode(
        ALL_SAMPLES[:320], "PCMU"
    )


def test_transcode_matches_decode_then_encode() -> None:
    codes = bytes(range(256))
    via_linear = _core.g711_encode(_core.g711_decode(codes, "PCMU"), "PCMA")
    assert _core.g711_transcode(codes, "PCMU", "PCMA") == via_linear
    assert _core.g711_transcode(codes, "PCMA", "PCMA") == codes


def test_bad_input_is_a_typed_error() -> None:
    with pytest.raises(CodecError, match="3 bytes"):
        _core.g711_encode(b"abc", "PCMU")
    with pytest.raises(CodecError, match=r'unknown G\.711 law "G729"'):
        _core.g711_decode(b"\x00", "G729")
    # Callers can catch the root of the tree, or ValueError as for any bad argument.
    with pytest.raises(CcorchError):
        _core.g711_transcode(b"", "PCMU", "opus")
    with pytest.raises(ValueError):
        _core.g711_encode(b"\x00", "PCMA")
    assert _core.g711_encode(b"", "PCMA") == b""
