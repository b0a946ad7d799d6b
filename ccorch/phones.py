"""Phone numbers to E.164 (digits only, no '+'), as callers and operators type them.

Accepted: international forms (``+380 44 123 4567``, ``00380…``), national forms with the
trunk prefix of the default country (``044 123 4567`` in Ukraine, ``8 495 …`` in Russia,
``010 …`` in China) and bare national numbers. Separators (spaces, dashes, dots,
parentheses) are ignored; anything else is an error with the reason.
"""

from __future__ import annotations

import re

# Country code -> (trunk prefix, national significant number lengths).
COUNTRIES: dict[str, tuple[str, tuple[int, ...]]] = {
    "380": ("0", (9,)),
    "7": ("8", (10,)),
    "86": ("0", (9, 10, 11)),
}

_SEPARATORS = re.compile(r"[\s\-.()/]")


class PhoneError(ValueError):
    """A string that is not a usable phone number (the message says why)."""


def normalize(raw: str, default_country: str = "380") -> str:
    """The E.164 digits of ``raw``; ``default_country`` (a calling code) for national forms."""
    s = _SEPARATORS.sub("", raw.strip())
    if not s:
        raise PhoneError("empty phone number")
    international = False
    if s.startswith("+"):
        s, international = s[1:], True
    elif s.startswith("00"):
        s, international = s[2:], True
    if not s.isdigit() or not s.isascii():
        raise PhoneError(f"{raw!r} has characters other than digits, '+' and separators")
    if not international:
        trunk, lengths = COUNTRIES.get(default_country, ("0", ()))
        if s.startswith(default_country) and len(s) - len(default_country) in lengths:
            pass  # already has the country code, written without '+'
        elif trunk and s.startswith(trunk) and len(s) - len(trunk) in lengths:
            s = default_country + s[len(trunk) :]
        elif len(s) in lengths:
            s = default_country + s
        elif default_country == "7" and len(s) == 11 and s.startswith("8"):
            s = "7" + s[1:]
    if s.startswith("0"):
        raise PhoneError(f"{raw!r}: a country code cannot start with 0")
    if not 7 <= len(s) <= 15:
        raise PhoneError(f"{raw!r}: E.164 numbers have 7 to 15 digits, this has {len(s)}")
    return s


def prefixes_of(e164: str) -> list[str]:
    """Every leading part of the number up to 10 digits, longest first (for prefix lookup)."""
    return [e164[:n] for n in range(min(len(e164), 10), 0, -1)]
