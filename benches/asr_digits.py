"""Spoken digits: how often the IVR's ``recognize`` node hears a digit string right.

    .venv/bin/python benches/asr_digits.py [--strings 30] [--seed 1]

For each acoustic model installed (``ccorch.ivr.asr.models()``), each voice available here
(flite's awb, rms, slt, kal, kal16; espeak-ng's en-us and en) and each condition, the same
random digit strings (4 to 7 digits) are spoken, made telephone audio (8 kHz, G.711 μ-law,
as the node records a caller) and recognized through the node's own path
(``asr.recognize_digits``). Conditions: clean; noise (white, 15 dB below the speech);
slow and fast (tempo 0.8 and 1.25 by the voice's own duration setting).

Reported per row: strings right, digits right (aligned position by position, strings of a
wrong length count every digit wrong), and with the demo flow's threshold
(``--min-confidence``, default 10): how many were taken and how many of those were wrong.

Real speech: Debian's ``pocketsphinx-testdata`` ships TIDIGITS material, 30 utterances as
feature files (the TIDIGITS model's own front end, so they test the models, not our
telephone path) and one as audio (``dhd.2934z.raw``, 16 kHz, run through our path).

What this does not prove: synthetic voices are not callers. They are cleaner than a
phone in a street and more uniform than people; flite and espeak-ng voices are few, all
adult, mostly American English. Real callers' accuracy is to be measured on calls.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr

from ccorch._core import g711_decode, g711_encode
from ccorch.ivr import asr

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TIDIGITS = Path("/usr/share/pocketsphinx/test/data/tidigits")


def flite(voice: str) -> Callable[[str, float], bytes]:
    def say(text: str, tempo: float) -> bytes:
        out = subprocess.run(
            ["flite", "-voice", voice, "--setf", f"duration_stretch={1 / tempo:.3f}",
             "-t", text, "-o", "/dev/stdout"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        return _telephone(out)

    return say


def espeak(voice: str) -> Callable[[str, float], bytes]:
    def say(text: str, tempo: float) -> bytes:
        out = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(int(160 * tempo)), "--stdout", text],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        return _telephone(out)

    return say


def _telephone(wav_bytes: bytes) -> bytes:
    """A WAV as a caller's audio reaches the node: 8 kHz, through μ-law."""
    with wave.open(io.BytesIO(wav_bytes)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        rate = w.getframerate()
    y = soxr.resample(x, rate, 8000).astype("<i2").tobytes()
    return bytes(g711_decode(g711_encode(y, "PCMU"), "PCMU"))


def _noisy(pcm: bytes, snr_db: float, rng: np.random.Generator) -> bytes:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    loud = x[np.abs(x) > 100]
    power = float(np.mean(loud**2)) if len(loud) else 1.0
    noise = rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr_db / 10))
    return bytes(np.clip(x + noise, -32768, 32767).astype("<i2").tobytes())


def _digits_right(want: str, got: str) -> int:
    return sum(a == b for a, b in zip(want, got, strict=False)) if len(want) == len(got) else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strings", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-confidence", type=float, default=10.0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    strings = [
        "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 7)))
        for _ in range(args.strings)
    ]
    voices: dict[str, Callable[[str, float], bytes]] = {}
    if shutil.which("flite"):
        voices |= {f"flite {v}": flite(v) for v in ("awb", "rms", "slt", "kal", "kal16")}
    if shutil.which("espeak-ng"):
        voices |= {f"espeak-ng {v}": espeak(v) for v in ("en-us", "en")}
    conditions = {"clean": (1.0, None), "noise 15 dB": (1.0, 15.0), "slow 0.8": (0.8, None),
                  "fast 1.25": (1.25, None)}  # fmt: skip
    print(f"{len(strings)} strings of 4-7 digits, seed {args.seed}; threshold "
          f"{args.min_confidence:g}")  # fmt: skip
    print("| model | voice | condition | strings right | digits right | taken | wrong of taken |")
    print("|---|---|---|---|---|---|---|")
    for model in asr.models():
        recognizer = asr.Recognizer(model)
        totals = [0, 0, 0, 0, 0, 0]
        started = time.process_time()
        for voice, say in voices.items():
            for cond, (tempo, snr) in conditions.items():
                noise = np.random.default_rng(args.seed)
                right = digits = ndigits = taken = wrong = 0
                for s in strings:
                    pcm = say(" ".join(WORDS[int(c)] for c in s), tempo)
                    if snr is not None:
                        pcm = _noisy(pcm, snr, noise)
                    pcm = b"\0\0" * 4000 + pcm + b"\0\0" * 8000  # the pauses around it
                    heard = asr.recognize_digits(pcm, recognizer)
                    right += heard.digits == s
                    digits += _digits_right(s, heard.digits)
                    ndigits += len(s)
                    if heard.digits and heard.confidence >= args.min_confidence:
                        taken += 1
                        wrong += heard.digits != s
                n = len(strings)
                print(f"| {model.name} | {voice} | {cond} | {right}/{n} ({100 * right / n:.0f}%) "
                      f"| {100 * digits / ndigits:.0f}% | {taken}/{n} | {wrong}/{taken} |",
                      flush=True)  # fmt: skip
                for i, v in enumerate((right, n, digits, ndigits, taken, wrong)):
                    totals[i] += v
        right, n, digits, ndigits, taken, wrong = totals
        print(f"| {model.name} | all | all | {right}/{n} ({100 * right / n:.0f}%) | "
              f"{100 * digits / ndigits:.0f}% | {taken}/{n} | {wrong}/{taken} |")  # fmt: skip
        print(f"  ({model.name}: {time.process_time() - started:.1f} s of CPU with the voices)")
    _real_speech()


def _real_speech() -> None:
    """The TIDIGITS material Debian ships: the feature files through each model that can
    read them (the TIDIGITS model's front end), and the one audio file through ours."""
    if not TIDIGITS.is_dir():
        print("real speech: pocketsphinx-testdata is not installed")
        return
    raw = (TIDIGITS / "dhd.2934z.raw").read_bytes()
    pcm8k = soxr.resample(np.frombuffer(raw, dtype="<i2"), 16000, 8000).astype("<i2").tobytes()
    pcm8k = bytes(g711_decode(g711_encode(pcm8k, "PCMU"), "PCMU"))
    for model in asr.models():
        heard = asr.recognize_digits(pcm8k, asr.Recognizer(model))
        print(f"real speech, dhd.2934z.raw (2934z) by {model.name}: {heard.digits!r}")
    tid = next((m for m in asr.models() if m.name == "tidigits"), None)
    if tid is None:
        return
    decoder = asr.Recognizer(tid).decoder
    lines = (TIDIGITS / "tidigits.lsn").read_text().splitlines()
    right = 0
    for line in lines:
        words, _, name = line.rpartition(" (")
        feats = _mfc(TIDIGITS / f"{name.rstrip(')')}.mfc")
        decoder.start_utt()
        decoder.process_cep(feats.tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        said = "".join(asr.WORDS.get(w, "?") for w in hyp.hypstr.split()) if hyp else ""
        right += said == "".join(asr.WORDS.get(w, "?") for w in words.split())
    print(f"real speech, TIDIGITS feature files by tidigits: {right}/{len(lines)} strings right")


def _mfc(path: Path) -> np.ndarray:
    """A Sphinx feature file: a count, then 13 float32 cepstra per frame (either endian)."""
    data = path.read_bytes()
    for order in ("<", ">"):
        n = int(np.frombuffer(data[:4], dtype=f"{order}i4")[0])
        if n * 4 == len(data) - 4:
            return np.frombuffer(data[4:], dtype=f"{order}f4").astype("<f4").reshape(-1, 13)
    raise ValueError(f"{path}: not a feature file")


if __name__ == "__main__":
    main()
