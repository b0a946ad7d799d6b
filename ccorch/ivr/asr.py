"""Spoken digits (the IVR's ``recognize`` node): PocketSphinx with a grammar of digits,
offline, nothing downloaded. Two acoustic models, the first found is used:

- ``tidigits``: CMU's connected-digits model trained on TIDIGITS with its filter bank
  ending at 4 kHz, so it fits telephone audio; Debian ships it in ``pocketsphinx-testdata``
  (``/usr/share/pocketsphinx/test/data/tidigits``), which the set-up installs;
- ``en-us``: the general US English model inside the ``pocketsphinx`` wheel, trained on
  16 kHz audio up to 6.8 kHz: on the telephone band it loses much of its accuracy.

Calls are 8 kHz; both models take 16 kHz, so the audio is upsampled with an FIR low-pass
(the band above 4 kHz stays empty). Accuracy is in ``benches/README.md`` ("Spoken digits"):
the flow reads the number back for the caller to confirm, and a recognition below the
node's confidence falls back to the keypad.

Only English: I found no package on these registries with a Russian or Chinese model
(PocketSphinx's wheel and Debian carry English only; Vosk, sherpa-onnx, faster-whisper and
openai-whisper download their models at run time).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ccorch.ivr.flow import SPEECH_LANGUAGES as LANGUAGES

WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_GRAMMAR = (
    "#JSGF V1.0;\ngrammar digits;\npublic <digits> = <digit>+;\n<digit> = "
    + " | ".join(WORDS)
    + ";\n"
)


@dataclass(frozen=True)
class Heard:
    digits: str  # "" when nothing was recognized
    confidence: float  # 0..100: the decoder's posterior probability of the whole string, in %


TIDIGITS = Path("/usr/share/pocketsphinx/test/data/tidigits")


@dataclass(frozen=True)
class Model:
    name: str
    hmm: Path
    dictionary: Path


def models() -> list[Model]:
    """The acoustic models installed, best for the telephone first."""
    found: list[Model] = []
    if (TIDIGITS / "hmm" / "mdef").is_file():
        found.append(Model("tidigits", TIDIGITS / "hmm", TIDIGITS / "lm" / "tidigits.dic"))
    try:
        import pocketsphinx
    except ImportError:
        return found
    wheel = Path(pocketsphinx.get_model_path()) / "en-us"
    if (wheel / "en-us" / "mdef").is_file():
        found.append(Model("en-us", wheel / "en-us", wheel / "cmudict-en-us.dict"))
    return found


def available(language: str) -> bool:
    return language in LANGUAGES and bool(models())


class Recognizer:
    """One decoder (building it reads the model: ~0.3 s); decodes one utterance at a time."""

    def __init__(self, model: Model) -> None:
        from pocketsphinx import Config, Decoder

        self.model = model
        config = Config(hmm=str(model.hmm), dict=str(model.dictionary), loglevel="FATAL")
        self.decoder = Decoder(config)
        self.decoder.add_jsgf_string("digits", _GRAMMAR)
        self.decoder.activate_search("digits")
        self.lock = threading.Lock()

    def digits(self, pcm16k: bytes) -> Heard:
        with self.lock:
            d: Any = self.decoder
            d.start_utt()
            d.process_raw(pcm16k, full_utt=True)
            d.end_utt()
            hyp = d.hyp()
        if hyp is None or not hyp.hypstr:
            return Heard("", 0.0)
        said = "".join(WORDS.get(w, "") for w in hyp.hypstr.split())
        return Heard(said, round(100.0 * float(hyp.prob), 2))


@cache
def _recognizer() -> Recognizer:
    found = models()
    if not found:
        raise RuntimeError("no speech model: install pocketsphinx (and pocketsphinx-testdata)")
    return Recognizer(found[0])


def upsample(pcm8k: bytes) -> bytes:
    """8 kHz PCM16 to 16 kHz (soxr: the band above 4 kHz stays empty)."""
    import soxr

    x = np.frombuffer(pcm8k[: len(pcm8k) // 2 * 2], dtype="<i2")
    return bytes(soxr.resample(x, 8000, 16000).astype("<i2").tobytes())


SPEECH_RMS = 200  # a 20 ms frame louder than this is speech (PCM16 RMS; ~-44 dBFS)


def recognize_digits(pcm8k: bytes, recognizer: Recognizer | None = None) -> Heard:
    """The digits said in 8 kHz PCM16 speech (blocking: call it from a thread). Only the
    part from 200 ms before the first loud frame to 300 ms after the last is decoded: the
    decoder hears digits in long silences."""
    rms = _frame_rms(pcm8k)
    loud = np.nonzero(rms > SPEECH_RMS)[0]
    if len(loud) < 5:  # under 100 ms of speech: nothing said
        return Heard("", 0.0)
    first, last = max(0, int(loud[0]) - 10), min(len(rms), int(loud[-1]) + 16)
    return (recognizer or _recognizer()).digits(upsample(pcm8k[first * 320 : last * 320]))


def speech_ended(pcm8k: bytes, silence_ms: int = 800) -> bool:
    """Whether the caller spoke and has been quiet since for ``silence_ms``: the end of
    what they said."""
    rms = _frame_rms(pcm8k)
    loud = np.nonzero(rms > SPEECH_RMS)[0]
    if len(loud) < 5:  # 100 ms of speech at least
        return False
    return bool(len(rms) - 1 - int(loud[-1]) >= silence_ms // 20)


def _frame_rms(pcm8k: bytes) -> Any:
    x = np.frombuffer(pcm8k[: len(pcm8k) // 320 * 320], dtype="<i2").astype(np.float64)
    if len(x) == 0:
        return np.zeros(0)
    return np.sqrt((x.reshape(-1, 160) ** 2).mean(axis=1))
