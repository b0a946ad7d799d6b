"""Type stubs for the native extension built from core-rs/py (checked in CI by mypy and stubtest)."""

__all__ = ["__version__", "g711_decode", "g711_encode", "g711_transcode"]

__version__: str

def g711_encode(pcm: bytes | bytearray, law: str) -> bytes:
    """Encode little-endian signed 16-bit PCM into G.711 codes of ``law`` ("PCMU" or "PCMA").

    Raises ``ccorch.errors.CodecError`` for an odd byte count or an unknown law.
    """

def g711_decode(codes: bytes | bytearray, law: str) -> bytes:
    """Decode G.711 codes of ``law`` into little-endian signed 16-bit PCM."""

def g711_transcode(codes: bytes | bytearray, src: str, dst: str) -> bytes:
    """Convert G.711 codes from law ``src`` to law ``dst``."""
