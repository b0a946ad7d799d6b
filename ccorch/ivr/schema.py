"""The node types of an IVR flow, as data: each type's fields (key, kind, required, bounds,
help) and its exits (the fields that name the next node).

The loader (``ccorch.ivr.flow``) takes its key sets and targets from here, and the API
publishes it (``GET /api/flows/schema``) for the flow editor's palette and property
panels, so the editor and the loader cannot disagree on what a node has. Checks that
involve more than one field (a menu needs a prompt or a prompt file, min ≤ max, a lookup
has url or crm) stay in the loader.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal[
    "node",  # the name of another node: an exit (an arrow in the editor)
    "text",  # said by TTS; {var}, {var:money|number|digits|date|time} filled in
    "file",  # a WAV file, relative to the flow's folder
    "seconds",  # a number of seconds within min..max
    "integer",  # a whole number within min..max
    "keys",  # key (0-9, *, #) → node: one exit per key
    "templates",  # variable name → text template
    "fields",  # variable name → field of the looked-up record (a.b for nested)
    "cases",  # a list of {if: expression, goto: node}: one exit per case
    "variable",  # the name of a variable
    "choice",  # one of ``choices``
    "url",  # http:// or https://, {var} filled in
    "queue",  # a queue of the ACD's queues file
    "destination",  # an extension or an outside number; {var} allowed
    "hours",  # opening hours: "mon-fri 09:00-18:00; sat 10:00-14:00"
    "timezone",  # an IANA time zone
    "dates",  # a list of dates: 2026-05-01 once, 01-07 every year
    "priority",  # 0..100, or "{var}" holding it
]


@dataclass(frozen=True)
class FieldSpec:
    key: str
    kind: Kind
    required: bool = False
    help: str = ""
    min: float | None = None
    max: float | None = None
    default: Any = None
    choices: tuple[str, ...] = ()
    above_min: bool = False  # min itself is not allowed (a timeout of 0)

    def out_of_bounds(self, value: Any) -> str | None:
        """Why a number field's value is refused (None when it is fine)."""
        whole = self.kind == "integer"
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            return f"{self.key} is {'a whole number' if whole else 'a number of seconds'}"
        lo, hi = self.min, self.max
        if (lo is not None and (value <= lo if self.above_min else value < lo)) or (
            hi is not None and value > hi
        ):
            unit = "" if whole else " seconds"
            if self.above_min:
                return f"{self.key} is more than {lo:g} and at most {hi:g}{unit}"
            return f"{self.key} is {lo:g} to {hi:g}{unit}"
        return None


@dataclass(frozen=True)
class NodeType:
    name: str
    help: str
    fields: tuple[FieldSpec, ...]
    icon: str = ""  # a short symbol the editor shows on the box
    # at least one of these keys is required (e.g. a menu's prompt or prompt_file)
    one_of: tuple[str, ...] = field(default=())

    @property
    def required(self) -> set[str]:
        return {f.key for f in self.fields if f.required}

    @property
    def optional(self) -> set[str]:
        return {f.key for f in self.fields if not f.required}

    @property
    def exits(self) -> tuple[str, ...]:
        """The keys whose values lead to other nodes, in the order shown."""
        return tuple(f.key for f in self.fields if f.kind in ("node", "keys", "cases"))


def _f(key: str, kind: Kind, required: bool = False, help: str = "", **more: Any) -> FieldSpec:
    return FieldSpec(key, kind, required, help, **more)


_PROMPT = (
    _f("prompt", "text", help="said before waiting for keys"),
    _f("prompt_file", "file", help="a recorded prompt instead of the text"),
)
_RETRY = (
    _f("timeout", "seconds", help="seconds to wait for a key after the prompt", min=0, max=300,
       default=5, above_min=True),
    _f("retries", "integer", help="prompts before on_fail", min=0, max=64, default=3),
    _f("invalid", "text", help="said after a wrong key or silence"),
)  # fmt: skip

NODE_TYPES: dict[str, NodeType] = {
    t.name: t
    for t in (
        NodeType("say", "Say a text (TTS), then go on", (
            _f("text", "text", True, "what is said"),
            _f("next", "node", True),
        ), icon="“"),
        NodeType("play", "Play a recorded WAV, then go on", (
            _f("file", "file", True, "a WAV file (8 kHz), beside the flow"),
            _f("next", "node", True),
        ), icon="▶"),
        NodeType("menu", "Say a prompt and go where the key pressed leads", (
            *_PROMPT,
            _f("options", "keys", True, "key → node"),
            *_RETRY,
            _f("on_fail", "node", help="after the last retry"),
        ), icon="☰", one_of=("prompt", "prompt_file")),
        NodeType("collect", "Collect digits into a variable", (
            *_PROMPT,
            _f("var", "variable", True, "the variable the digits go into"),
            _f("min", "integer", help="fewest digits", min=0, max=64, default=1),
            _f("max", "integer", help="most digits", min=0, max=64, default=20),
            _f("terminator", "choice", help="the key that ends the entry", default="#",
               choices=("#", "*", "")),
            *_RETRY,
            _f("next", "node", True),
            _f("on_fail", "node", help="after the last retry"),
        ), icon="#", one_of=("prompt", "prompt_file")),
        NodeType("recognize", "Listen for spoken digits (English flows); the caller may "
                 "type them instead. Not understood, nothing said, or below min_confidence: "
                 "the fallback (e.g. the keypad)", (
            *_PROMPT,
            _f("var", "variable", True, "the variable the digits go into "
               "({var}_confidence: 0-100)"),
            _f("min", "integer", help="fewest digits", min=1, max=64, default=1),
            _f("max", "integer", help="most digits", min=1, max=64, default=20),
            _f("max_seconds", "seconds", help="the longest the caller is listened to", min=2,
               max=30, default=8),
            _f("min_confidence", "integer", help="the least confidence (0-100) taken",
               min=0, max=100, default=0),
            _f("next", "node", True),
            _f("fallback", "node", True, "not understood: e.g. a collect node (the keypad)"),
        ), icon="◎", one_of=("prompt", "prompt_file")),
        NodeType("authorize", "Check a contract number and PIN in the CRM; on success "
                 "balance, currency and contract_no are set", (
            _f("contract", "variable", True, "the variable holding the contract number"),
            _f("pin", "variable", True, "the variable holding the PIN"),
            _f("ok", "node", True),
            _f("fail", "node", True),
            _f("locked", "node", help="after too many wrong PINs"),
        ), icon="✔"),
        NodeType("lookup", "Read data from the CRM or a URL into variables", (
            _f("crm", "choice", help="the caller by ANI; the account in {contract}; the "
               "service point of that account (else of the caller); a connection request",
               choices=("customer", "account", "service_point", "connection_request")),
            _f("url", "url", help="HTTP GET of a JSON object; {var} filled in"),
            _f("contract", "variable", help="the variable with the account (default contract_no)"),
            _f("key", "variable", help="connection_request: the variable with its number "
               "(default request_no)"),
            _f("vars", "fields", True, "variable → field"),
            _f("timeout", "seconds", help="seconds to wait", min=0, max=10, default=2,
               above_min=True),
            _f("next", "node", True),
            _f("on_fail", "node", True, "on a timeout, an error or a missing field"),
        ), icon="⌕", one_of=("crm", "url")),
        NodeType("set", "Set variables", (
            _f("vars", "templates", True, "variable → value ({var} allowed)"),
            _f("next", "node", True),
        ), icon="="),
        NodeType("branch", "Go by conditions on variables", (
            _f("cases", "cases", True, "if expression → node, the first true one"),
            _f("else", "node", True),
        ), icon="◇"),
        NodeType("transfer", "Transfer to an extension or an outside number", (
            _f("to", "destination", True, "extension or number; {var} allowed"),
            _f("on_fail", "node"),
        ), icon="↗"),
        NodeType("queue", "Wait for an operator in an ACD queue", (
            _f("queue", "queue", True),
            _f("priority", "priority", help="0-100, higher waits ahead", min=0, max=100),
            _f("prefer_seconds", "integer", help="the customer's own operators first, so long",
               min=0, max=600, default=0),
            _f("busy_text", "text", help="said when nobody is free: {ewt}, {ewt_min}, {position}"),
            _f("busy_unknown_text", "text", help="said when the wait is unknown"),
            _f("announce_every", "seconds", help="say it again every", min=5, max=3600),
            _f("music", "file", help="a WAV looped while waiting"),
            _f("options", "keys", help="keys a waiting caller may press to leave"),
            _f("options_text", "text", help="said after busy_text"),
            _f("options_after", "seconds", help="offer them from this estimated wait", min=0,
               max=3600, default=0),
            _f("on_fail", "node", help="the queue timed out or overflowed"),
        ), icon="☎"),
        NodeType("voicemail", "Record a message (a case and a callback task)", (
            *_PROMPT,
            _f("max_seconds", "integer", help="longest message", min=5, max=600, default=60),
            _f("next", "node", True),
            _f("on_fail", "node"),
        ), icon="✉"),
        NodeType("callback", "Leave a callback request (a case and a callback task)", (
            _f("number", "variable", help="the variable with the number (default ani)"),
            _f("next", "node", True),
            _f("on_fail", "node"),
        ), icon="↩"),
        NodeType("hours", "Go by opening hours and holidays", (
            _f("open", "hours", True, "e.g. mon-fri 09:00-18:00; sat 10:00-14:00"),
            _f("timezone", "timezone", default="Europe/Kyiv"),
            _f("holidays", "dates", help="closed all day: 2026-05-01 once, 01-07 every year"),
            _f("open_next", "node", True),
            _f("closed_next", "node", True),
            _f("holiday_next", "node", help="default closed_next"),
        ), icon="◷"),
        NodeType("meter_reading", "Check a meter reading against the last one and store "
                 "it; a refusal sets reading_error (lower, implausible, night_missing) and "
                 "previous_day, previous_night, previous_date, used, limit", (
            _f("contract", "variable", help="the variable with the account (default contract_no)"),
            _f("day", "variable", True, "the variable with the reading (a one-zone meter's "
               "only one)"),
            _f("night", "variable", help="the variable with the night zone's reading"),
            _f("timezone", "timezone", default="Europe/Kyiv", help="previous_date's"),
            _f("ok", "node", True, "stored"),
            _f("rejected", "node", True, "refused: say why from reading_error"),
            _f("on_fail", "node", True, "no meter for the account, or the CRM did not answer"),
        ), icon="⚡"),
        NodeType("outage", "Outages at the address of the account's service point (else the "
                 "caller's); sets outage_kind, outage_start_date/time, outage_end_date/time, "
                 "outage_reason", (
            _f("contract", "variable", help="the variable with the account (default contract_no)"),
            _f("timezone", "timezone", default="Europe/Kyiv"),
            _f("ahead_hours", "integer", help="a planned outage starting within this many "
               "hours counts", min=0, max=720, default=72),
            _f("affected", "node", True, "power is off there now"),
            _f("planned", "node", help="an outage starts there soon (default clear)"),
            _f("clear", "node", True, "no outage there"),
            _f("on_fail", "node", True, "no address known, or the CRM did not answer"),
        ), icon="⚠"),
        NodeType("hangup", "Say a text (optional) and hang up", (
            _f("text", "text"),
        ), icon="✕"),
    )
}  # fmt: skip


def _unset(v: Any) -> bool:
    return v is None or v is False or (isinstance(v, str | tuple) and not v)


def as_json() -> dict[str, Any]:
    """The schema as the API publishes it."""
    return {
        "types": [
            {
                "name": t.name,
                "help": t.help,
                "icon": t.icon,
                "one_of": list(t.one_of),
                "exits": list(t.exits),
                "fields": [
                    {k: v for k, v in asdict(f).items() if not _unset(v)}
                    | {"required": f.required, "choices": list(f.choices)}
                    for f in t.fields
                ],
            }
            for t in NODE_TYPES.values()
        ],
        "languages": ["ru", "en", "zh"],
    }
