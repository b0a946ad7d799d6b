"""A campaign's contact list from a file: CSV or XLSX, with a mapping of its columns.

Every row is checked, and a refused row is reported with its line and the reason while
the others are kept:
- the phone number becomes E.164 with the tenant's country code for national forms
  (``ccorch.phones``);
- the time zone (for calling windows in the contact's own time) comes from a column when
  the mapping names one (an IANA name), else from the number's country: Ukraine
  Europe/Kyiv, China Asia/Shanghai, Russia Europe/Moscow (Russia spans eleven zones: give
  a column for lists beyond Moscow's);
- a number twice in the file, already in the campaign, or on a do-not-call list is refused.

Sans-IO: the caller reads the file's bytes and looks up what is known (numbers already in
the campaign, the do-not-call list); :func:`check` decides.

Mapping: ``{"phone": "<column>", "name": "<column>", "time_zone": "<column>",
"variables": {"<name>": "<column>", ...}}``; only ``phone`` is required. Line numbers are
the file's: the header is line 1.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ccorch.phones import PhoneError, normalize

COUNTRY_ZONES = {"380": "Europe/Kyiv", "86": "Asia/Shanghai", "7": "Europe/Moscow"}
MAX_ROWS = 200_000


class ListError(ValueError):
    """The file as a whole cannot be read (not the format said, no such column)."""


@dataclass(frozen=True)
class Contact:
    line: int
    phone: str
    name: str | None
    time_zone: str
    variables: dict[str, str]


@dataclass(frozen=True)
class Refused:
    line: int
    reason: str
    value: str = ""


@dataclass
class Checked:
    accepted: list[Contact] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def rows(kind: str, content: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: text}) of each data row of a CSV (UTF-8, a BOM allowed; comma or
    semicolon) or XLSX (the first sheet) file. Empty rows are skipped."""
    if kind == "csv":
        yield from _csv_rows(content)
    elif kind == "xlsx":
        yield from _xlsx_rows(content)
    else:
        raise ListError(f"format {kind!r}: csv or xlsx")


def _csv_rows(content: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ListError(f"the CSV file is not UTF-8 (byte {e.start})") from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise ListError("the file is empty")
    names = [h.strip() for h in header]
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        yield reader.line_num, dict(zip(names, (v.strip() for v in values), strict=False))


def _xlsx_rows(content: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    from openpyxl import load_workbook  # only when a spreadsheet comes

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as e:  # not a zip, not a workbook: the library says which
        raise ListError(f"not an XLSX workbook ({type(e).__name__}: {e})") from None
    try:
        sheet = book.worksheets[0]
        it = sheet.iter_rows(values_only=True)
        header = next(it, None)
        if header is None:
            raise ListError("the first sheet is empty")
        names = [_text(h) for h in header]
        for n, values in enumerate(it, start=2):
            texts = [_text(v) for v in values]
            if not any(texts):
                continue
            yield n, dict(zip(names, texts, strict=False))
    finally:
        book.close()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a number typed in a cell: 380671234567.0
    return str(value).strip()


def check(
    found: Iterable[tuple[int, Mapping[str, str]]],
    mapping: Mapping[str, Any],
    *,
    country: str,
    in_campaign: set[str],
    do_not_call: set[str],
) -> Checked:
    """Each row accepted as a contact or refused with its line and reason."""
    phone_col = mapping.get("phone")
    if not isinstance(phone_col, str) or not phone_col:
        raise ListError("the mapping must name the phone column")
    variables: Mapping[str, str] = mapping.get("variables") or {}
    out = Checked()
    seen: dict[str, int] = {}
    first = True
    for line, row in found:
        if first:
            missing = [
                c
                for c in (
                    phone_col,
                    mapping.get("name"),
                    mapping.get("time_zone"),
                    *variables.values(),
                )
                if c and c not in row
            ]
            if missing:
                raise ListError(f"no column {', '.join(map(repr, missing))} in the file")
            first = False
        if len(out.accepted) + len(out.refused) >= MAX_ROWS:
            raise ListError(f"more than {MAX_ROWS} rows: split the file")
        raw = row.get(phone_col, "")
        try:
            phone = normalize(raw, country)
        except PhoneError as e:
            out.refused.append(Refused(line, str(e), raw))
            continue
        if phone in seen:
            out.refused.append(Refused(line, f"the same number as line {seen[phone]}", raw))
            continue
        seen[phone] = line
        if phone in in_campaign:
            out.refused.append(Refused(line, "already in the campaign", raw))
            continue
        if phone in do_not_call:
            out.refused.append(Refused(line, "on the do-not-call list", raw))
            continue
        zone = _zone(row, mapping.get("time_zone"), phone)
        if isinstance(zone, Refused):
            out.refused.append(Refused(line, zone.reason, zone.value or raw))
            continue
        name_col = mapping.get("name")
        out.accepted.append(
            Contact(
                line,
                phone,
                (row.get(name_col) or None) if isinstance(name_col, str) else None,
                zone,
                {var: row.get(col, "") for var, col in variables.items()},
            )
        )
    return out


def _zone(row: Mapping[str, str], column: Any, phone: str) -> str | Refused:
    given = row.get(column, "").strip() if isinstance(column, str) and column else ""
    if given:
        try:
            ZoneInfo(given)
        except (ZoneInfoNotFoundError, ValueError):
            return Refused(0, "not a time zone (e.g. Europe/Kyiv)", given)
        return given
    for code in sorted(COUNTRY_ZONES, key=len, reverse=True):
        if phone.startswith(code):
            return COUNTRY_ZONES[code]
    return Refused(0, "no time zone known for this country: give a time zone column")


__all__ = ["Checked", "Contact", "ListError", "Refused", "check", "rows"]
