"""Text to speech for the IVR: espeak-ng (Debian) rendered to 8 kHz 16-bit mono WAV, cached
by voice and text, so the media engine plays it as any other prompt (and encodes it to the
caller's G.711 law). Numbers, money, dates and times are written out so each language
speaks them right: "50 гривен", "21 гривна", "1 hryvnia", "50 格里夫纳", "двадцать третье
ноября две тысячи двадцать шестого года", "November 23rd, 2026", "14 часов 5 минут".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import io
import os
import shutil
import subprocess
import uuid
import warnings
import wave
from decimal import Decimal, InvalidOperation
from pathlib import Path

with warnings.catch_warnings():  # audioop: deprecated in 3.11, still the fast resampler here
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

VOICES = {"ru": "ru", "en": "en-us", "zh": "cmn"}
RATE = 8000


class TtsError(RuntimeError):
    """espeak-ng is missing, lacks the voice, or failed on a text."""


@functools.cache
def voice_problem(language: str) -> str | None:
    """None if the language's voice can speak, else why not (for flow checks at load)."""
    voice = VOICES.get(language)
    if voice is None:
        return f"no TTS voice for language {language!r}"
    exe = shutil.which("espeak-ng")
    if exe is None:
        return "TTS: espeak-ng is not installed (Debian package espeak-ng)"
    out = subprocess.run([exe, f"--voices={voice}"], capture_output=True, text=True, timeout=10)
    listed = [line.split()[1] for line in out.stdout.splitlines()[1:] if len(line.split()) > 1]
    if voice not in listed:
        return f"TTS: espeak-ng has no voice {voice!r} for language {language!r}"
    return None


def render(text: str, language: str, cache_dir: Path) -> Path:
    """The prompt as an 8 kHz WAV file, rendered once per (voice, text). Blocking: call it
    off the event loop (``asyncio.to_thread``)."""
    voice = VOICES[language]
    key = hashlib.sha256(f"{voice}\x00{text}".encode()).hexdigest()[:32]
    path = cache_dir / language / f"{key}.wav"
    if path.is_file():
        return path
    problem = voice_problem(language)
    if problem:
        raise TtsError(problem)
    exe = shutil.which("espeak-ng") or "espeak-ng"
    # the text on stdin, never as an argument: one starting with "-" would be an option
    p = subprocess.run(
        [exe, "-v", voice, "-s", "150", "--stdout", "--stdin"],
        input=text.encode(),
        capture_output=True,
        timeout=60,
    )
    if p.returncode != 0 or not p.stdout:
        raise TtsError(
            f"espeak-ng failed ({p.returncode}): {p.stderr.decode(errors='replace')[:200]}"
        )
    with wave.open(io.BytesIO(p.stdout)) as w:
        src_rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
        frames = w.readframes(w.getnframes())
    if channels != 1 or width != 2:
        raise TtsError(f"espeak-ng gave {channels} channels of {8 * width} bits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pcm, _ = audioop.ratecv(frames, 2, 1, src_rate, RATE, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own: two calls may render the same new prompt at the same moment
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        tmp.unlink()
    return path


# --- numbers and money in words the voices speak right -------------------------------------

# currency -> language -> (one, few, many) [, gender for ru]
_CURRENCY = {
    "UAH": {
        "ru": (("гривна", "гривны", "гривен"), "f", ("копейка", "копейки", "копеек"), "f"),
        "en": (("hryvnia", "hryvnias", "hryvnias"), "", ("kopeck", "kopecks", "kopecks"), ""),
        "zh": (("格里夫纳",) * 3, "", ("戈比",) * 3, ""),
    },
    "RUB": {
        "ru": (("рубль", "рубля", "рублей"), "m", ("копейка", "копейки", "копеек"), "f"),
        "en": (("rouble", "roubles", "roubles"), "", ("kopeck", "kopecks", "kopecks"), ""),
        "zh": (("卢布",) * 3, "", ("戈比",) * 3, ""),
    },
    "CNY": {
        "ru": (("юань", "юаня", "юаней"), "m", ("фэнь", "фэня", "фэней"), "m"),
        "en": (("yuan", "yuan", "yuan"), "", ("fen", "fen", "fen"), ""),
        "zh": (("元",) * 3, "", ("分",) * 3, ""),
    },
}


def _ru_form(n: int) -> int:
    if n % 10 == 1 and n % 100 != 11:
        return 0
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return 1
    return 2


def _ru_number(n: int, gender: str) -> str:
    """Digits espeak-ng reads, with the last word in the noun's gender (одна/две гривны)."""
    if gender == "f" and n % 10 in (1, 2) and n % 100 not in (11, 12):
        head = n - n % 10
        word = "одна" if n % 10 == 1 else "две"
        return f"{head} {word}" if head else word
    return str(n)


def money(amount: object, currency: str, language: str) -> str:
    """``50.00 UAH`` → "50 гривен" / "50 hryvnias" / "50 格里夫纳"; kopecks when not zero;
    a negative balance is said as a debt-free "minus"."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return str(amount)
    sign = "-" if value < 0 else ""
    value = abs(value).quantize(Decimal("0.01"))
    units, cents = int(value), int((value - int(value)) * 100)
    names = _CURRENCY.get(currency.upper(), {}).get(language)
    if names is None:
        return f"{sign}{value} {currency}"
    (u_forms, u_gender, c_forms, c_gender) = names
    minus = {"ru": "минус ", "en": "minus ", "zh": "负"}[language] if sign else ""
    if language == "ru":
        text = f"{_ru_number(units, u_gender)} {u_forms[_ru_form(units)]}"
        if cents:
            text += f" {_ru_number(cents, c_gender)} {c_forms[_ru_form(cents)]}"
    elif language == "en":
        text = f"{units} {u_forms[0 if units == 1 else 1]}"
        if cents:
            text += f" and {cents} {c_forms[0 if cents == 1 else 1]}"
    else:
        text = f"{units}{u_forms[0]}" + (f"{cents}{c_forms[0]}" if cents else "")
    return minus + text


def number(value: object, language: str) -> str:
    """A number as digits the voice reads as a number (espeak-ng does the words)."""
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    text = format(d.normalize(), "f")
    if language == "ru":
        text = text.replace(".", ",")
    return text


_RU_GENITIVE = {
    1: "одной", 2: "двух", 3: "трёх", 4: "четырёх", 5: "пяти", 6: "шести", 7: "семи",
    8: "восьми", 9: "девяти", 10: "десяти", 15: "пятнадцати", 20: "двадцати",
    25: "двадцати пяти", 30: "тридцати", 35: "тридцати пяти", 40: "сорока",
    45: "сорока пяти", 50: "пятидесяти", 55: "пятидесяти пяти",
}  # fmt: skip


def wait(seconds: float, language: str) -> str:
    """An estimated wait as a caller should hear it: "less than a minute" below one, the
    nearest minute up to ten, the nearest five minutes up to an hour, then "more than an
    hour" (an estimate is no promise). Russian says it after "около", in the genitive."""
    if seconds < 60:
        return {"ru": "меньше минуты", "en": "less than a minute", "zh": "不到一分钟"}[language]
    minutes = max(1, round(seconds / 60)) if seconds < 570 else 5 * round(seconds / 300)
    if minutes >= 60:
        return {"ru": "больше часа", "en": "more than an hour", "zh": "超过一个小时"}[language]
    if language == "ru":
        return f"около {_RU_GENITIVE[minutes]} {'минуты' if minutes == 1 else 'минут'}"
    if language == "en":
        return f"about {minutes} minute{'' if minutes == 1 else 's'}"
    return f"大约{minutes}分钟"


def digits(value: object) -> str:
    """Each digit separately (contract numbers, PINs): "1 0 0 1"."""
    return " ".join(str(value))


# --- dates and times ---------------------------------------------------------------------------

_RU_MONTHS = (
    "января", "февраля", "марта", "апреля", "мая", "июня",
    "июля", "августа", "сентября", "октября", "ноября", "декабря",
)  # fmt: skip
_EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
# Russian ordinals: (neuter nominative, genitive) stems for 1..19 and the tens.
_RU_ORD_UNITS = (
    "перв", "втор", "трет", "четвёрт", "пят", "шест", "седьм", "восьм", "девят",
    "десят", "одиннадцат", "двенадцат", "тринадцат", "четырнадцат", "пятнадцат",
    "шестнадцат", "семнадцат", "восемнадцат", "девятнадцат",
)  # fmt: skip
_RU_ORD_TENS = ("", "", "двадцат", "тридцат", "сороков", "пятидесят", "шестидесят",
                "семидесят", "восьмидесят", "девяност")  # fmt: skip
_RU_TENS = ("", "", "двадцать", "тридцать", "сорок", "пятьдесят", "шестьдесят",
            "семьдесят", "восемьдесят", "девяносто")  # fmt: skip


def _ru_ordinal(n: int, case: str) -> str:
    """1..99 as a Russian ordinal: ``case`` "nom" (neuter: двадцать третье) or "gen"
    (двадцать третьего)."""

    def ending(stem: str) -> str:
        if case == "gen":
            return stem + "его" if stem == "трет" else stem + "ого"
        if stem == "трет":
            return "третье"
        return stem + "ое"

    tens, unit = divmod(n, 10)
    if n < 20:
        return ending(_RU_ORD_UNITS[n - 1])
    if unit == 0:
        return ending(_RU_ORD_TENS[tens])
    return f"{_RU_TENS[tens]} {ending(_RU_ORD_UNITS[unit - 1])}"


def _as_datetime(value: object) -> dt.datetime | dt.date | None:
    if isinstance(value, dt.datetime | dt.date):
        return value
    try:
        text = str(value).strip()
        return (
            dt.datetime.fromisoformat(text)
            if "T" in text or ":" in text
            else dt.date.fromisoformat(text)
        )
    except ValueError:
        return None


def date(value: object, language: str) -> str:
    """A date (a ``date``, a ``datetime`` or ISO text) as each voice says it right:
    "двадцать третье ноября две тысячи двадцать шестого года", "November 23rd, 2026",
    "2026年11月23日". Text that is not a date is said as it is."""
    d = _as_datetime(value)
    if d is None:
        return str(value)
    if language == "ru":
        year = d.year
        if 2000 <= year <= 2099:
            said_year = (
                "двухтысячного" if year == 2000 else f"две тысячи {_ru_ordinal(year - 2000, 'gen')}"
            )
        else:
            said_year = str(year)
        return f"{_ru_ordinal(d.day, 'nom')} {_RU_MONTHS[d.month - 1]} {said_year} года"
    if language == "en":
        suffix = (
            "th" if 10 <= d.day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(d.day % 10, "th")
        )
        return f"{_EN_MONTHS[d.month - 1]} {d.day}{suffix}, {d.year}"
    return f"{d.year}年{d.month}月{d.day}日"


def time(value: object, language: str) -> str:
    """A time of day (``HH:MM``, a ``time`` or a ``datetime``): "14 часов 5 минут",
    "2:05 PM", "14点05分"."""
    if isinstance(value, dt.datetime):
        t = value.time()
    elif isinstance(value, dt.time):
        t = value
    else:
        try:
            t = dt.time.fromisoformat(str(value).strip())
        except ValueError:
            return str(value)
    h, m = t.hour, t.minute
    if language == "ru":
        hours = f"{h} {('час', 'часа', 'часов')[_ru_form(h)]}"
        if m == 0:
            return hours + " ровно"
        return f"{hours} {_ru_number(m, 'f')} {('минута', 'минуты', 'минут')[_ru_form(m)]}"
    if language == "en":
        h12 = h % 12 or 12
        ampm = "AM" if h < 12 else "PM"
        return f"{h12} {ampm}" if m == 0 else f"{h12}:{m:02d} {ampm}"
    return f"{h}点" + (f"{m:02d}分" if m else "整")
