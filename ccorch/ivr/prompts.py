"""Recorded prompts uploaded for flows: any common WAV (8 to 48 kHz, 8/16/24/32-bit PCM,
mono or stereo) checked and converted to what the IVR plays (8 kHz, 16-bit, mono), kept
in the flows folder under ``prompts/`` where a flow's ``file``, ``prompt_file`` and
``music`` name it (e.g. ``prompts/greeting-ru.wav``)."""

from __future__ import annotations

import io
import re
import wave
from pathlib import Path

import numpy as np
import soxr

PROMPTS = "prompts"  # under the flows folder
RATE = 8000
MAX_SECONDS = 600
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.wav$")


class PromptError(ValueError):
    """The upload is not a prompt the IVR can play (the reason is the message)."""


def convert(data: bytes) -> tuple[bytes, float, int]:
    """A WAV file's bytes as 8 kHz 16-bit mono PCM; also its length in seconds and the rate
    it came at. Raises ``PromptError`` saying what is wrong."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise PromptError(f"not a PCM WAV file ({e})") from None
    if not 8000 <= rate <= 48000:
        raise PromptError(f"a sample rate of {rate} Hz: 8000 to 48000 are taken")
    if channels not in (1, 2):
        raise PromptError(f"{channels} channels: mono or stereo are taken")
    if width not in (1, 2, 3, 4):
        raise PromptError(f"{8 * width}-bit samples: 8, 16, 24 or 32 are taken")
    samples = _floats(frames, width).reshape(-1, channels).mean(axis=1)
    seconds = len(samples) / rate
    if seconds < 0.1:
        raise PromptError("shorter than 0.1 s: nothing to play")
    if seconds > MAX_SECONDS:
        raise PromptError(f"longer than {MAX_SECONDS} s")
    out: np.ndarray = soxr.resample(samples, rate, RATE, quality="HQ") if rate != RATE else samples
    pcm = np.clip(np.round(out * 32767), -32768, 32767).astype("<i2").tobytes()
    return pcm, seconds, rate


def _floats(frames: bytes, width: int) -> np.ndarray:
    if width == 1:  # unsigned 8-bit
        return (np.frombuffer(frames, np.uint8).astype(np.float32) - 128) / 128
    if width == 3:  # 24-bit little-endian: widen each sample to 32 bits
        raw = np.frombuffer(frames, np.uint8).reshape(-1, 3)
        wide = np.zeros((len(raw), 4), np.uint8)
        wide[:, 1:] = raw
        return wide.view("<i4").ravel().astype(np.float32) / 2**31
    kind = "<i2" if width == 2 else "<i4"
    scaled: np.ndarray = np.frombuffer(frames, kind).astype(np.float32) / 2 ** (8 * width - 1)
    return scaled


def save(folder: Path, name: str, data: bytes) -> dict[str, object]:
    """Check and convert an upload, then keep it as ``prompts/<name>`` in the flows folder;
    what a flow names it by, its length and the rate it came at."""
    if not _NAME.match(name):
        raise PromptError("a prompt's name is letters, digits, dots, dashes, ending in .wav")
    pcm, seconds, rate = convert(data)
    target = folder / PROMPTS / name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".saving")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    tmp.replace(target)
    return {"file": f"{PROMPTS}/{name}", "seconds": round(seconds, 2), "uploaded_rate": rate}


def listed(folder: Path) -> list[dict[str, object]]:
    out = []
    for f in sorted((folder / PROMPTS).glob("*.wav")):
        with wave.open(str(f)) as w:
            seconds = w.getnframes() / w.getframerate()
        out.append({"file": f"{PROMPTS}/{f.name}", "seconds": round(seconds, 2)})
    return out
