"""The IVR interpreter, sans-IO: one caller's walk through a flow.

Inputs: ``start``, ``on_digit``, ``on_prompts_done``, ``on_timeout`` (at ``next_timeout``),
``on_authorized``, ``on_transfer_failed``, each with the current time. Output: the actions
to carry out (play prompts, stop them, look up the CRM, transfer, hang up). The runner in
``ccorch.ivr.runner`` does the I/O; tests drive this class directly.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ccorch.ivr import tts
from ccorch.ivr.flow import Flow, Node, evaluate, is_holiday, is_open

LISTEN_GRACE = 5.0  # seconds past max_seconds before a silent recognizer means "not heard"

# what a menu says after a wrong key or silence when the flow does not say
DEFAULT_INVALID = {
    "ru": "Неверный выбор.",
    "en": "That is not a valid choice.",
    "zh": "您的选择无效。",
}


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str | None = None  # TTS
    file: str | None = None  # a WAV next to the flow file


@dataclass(frozen=True, slots=True)
class Play:
    prompts: tuple[Prompt, ...]
    barge_in: bool  # a key stops it (menus and digit collection)


@dataclass(frozen=True, slots=True)
class StopPrompts:
    pass


@dataclass(frozen=True, slots=True)
class Authorize:
    contract: str
    pin: str


@dataclass(frozen=True, slots=True)
class Transfer:
    to: str


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Wait in an ACD queue for an operator (the runner plays music and announcements)."""

    queue: str
    priority: int
    busy_text: str | None  # a template: {ewt} ("about 3 minutes"), {ewt_min}, {position}
    announce_every: float
    music: str | None
    prefer_seconds: float = 0.0  # the customer's manager / last operator first, each so long
    options_text: str | None = None  # said after busy_text: the keys that leave the queue
    options_after: float = 0.0  # ... when the estimated wait is at least this (seconds)
    # said instead of busy_text when the wait is unknown (nobody works the queue); without
    # it, no announcement then
    busy_unknown_text: str | None = None


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str


@dataclass(frozen=True, slots=True)
class Visited:
    """A node was entered (for the call's history and the flow's statistics)."""

    node: str
    type: str


@dataclass(frozen=True, slots=True)
class Lookup:
    """Fetch data: ``url`` (HTTP GET, JSON) or ``crm`` (customer | account), then
    ``fields`` (variable → field path) go into the variables."""

    url: str | None
    crm: str | None
    key: str  # the CRM lookup's key: the customer id, the contract or the request number
    fields: tuple[tuple[str, str], ...]
    timeout: float
    customer: str = ""  # the identified caller (service_point without an account)
    language: str = "en"  # what the CRM says in words (a connection request's stage)


@dataclass(frozen=True, slots=True)
class Listen:
    """Listen to the caller for spoken digits, at most ``max_seconds`` (``on_recognized``
    follows)."""

    max_seconds: float


@dataclass(frozen=True, slots=True)
class StopListening:
    """The caller typed instead: stop listening (no ``on_recognized`` is expected)."""


@dataclass(frozen=True, slots=True)
class SubmitReading:
    """Check the meter reading and store it (``on_reading`` follows)."""

    contract: str
    day: str
    night: str | None
    channel: str  # ivr (keys) or voice (the digits were spoken)
    timezone: str = "Europe/Kyiv"  # the day of the previous reading is said in it


@dataclass(frozen=True, slots=True)
class CheckOutage:
    """The outages at the service point's address (``on_outage`` follows)."""

    contract: str
    customer: str
    timezone: str
    ahead_hours: float


@dataclass(frozen=True, slots=True)
class RecordVoicemail:
    """Beep, then record what the caller says (at most ``max_seconds``)."""

    max_seconds: float


@dataclass(frozen=True, slots=True)
class StopVoicemail:
    """The caller pressed # or the time is up: keep the message (then ``on_request_done``)."""


@dataclass(frozen=True, slots=True)
class RequestCallback:
    number: str


@dataclass(frozen=True, slots=True)
class LeaveQueue:
    """The waiting caller chose one of the queue's options: leave it (withdrawn)."""


Action = (
    Play
    | StopPrompts
    | Authorize
    | Lookup
    | Transfer
    | Enqueue
    | Hangup
    | Visited
    | RecordVoicemail
    | StopVoicemail
    | RequestCallback
    | LeaveQueue
    | SubmitReading
    | CheckOutage
    | Listen
    | StopListening
)

_URL_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(money|number|digits|date|time))?\}")


@dataclass
class Session:
    flow: Flow
    vars: dict[str, Any] = field(default_factory=dict)
    node: Node | None = None
    phase: str = "idle"  # prompting, waiting, listening, recording, queued, busy (I/O), done
    option: str | None = None  # the node a waiting caller chose, once the queue lets go
    tries: int = 0
    buffer: str = ""
    deadline: float | None = None
    history: list[str] = field(default_factory=list)
    max_steps: int = 1000  # a flow looping on itself without waiting for the caller
    # wall clock for business hours (the only thing here that needs one; tests set it)
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    spoken: set[str] = field(default_factory=set)  # variables the caller said, not keyed

    def __post_init__(self) -> None:
        for k, v in self.flow.vars.items():
            self.vars.setdefault(k, v)

    @property
    def next_timeout(self) -> float | None:
        return self.deadline

    # --- inputs ---

    def start(self, now: float) -> list[Action]:
        return self._goto(now, self.flow.start)

    def on_prompts_done(self, now: float) -> list[Action]:
        n = self.node
        if n is None or self.phase != "prompting":
            return []
        if n.type in ("say", "play"):
            return self._goto(now, n.spec["next"])
        if n.type == "hangup":
            self.phase = "done"
            return [Hangup("flow")]
        if n.type in ("menu", "collect"):
            self.phase = "waiting"
            self.deadline = now + float(n.spec.get("timeout", 5 if n.type == "menu" else 10))
        if n.type == "recognize":
            self.phase = "listening"
            most = float(n.spec.get("max_seconds", 8))
            self.deadline = now + most + LISTEN_GRACE  # the recognizer did not answer
            return [Listen(most)]
        if n.type == "voicemail":
            self.phase = "recording"
            most = float(n.spec.get("max_seconds", 60))
            self.deadline = now + most
            return [RecordVoicemail(most)]
        return []

    def on_digit(self, now: float, digit: str) -> list[Action]:
        n = self.node
        if n is not None and self.phase == "recording" and digit == "#":
            self.phase, self.deadline = "busy", None
            return [StopVoicemail()]
        if n is not None and self.phase == "queued" and self.option is None:
            target = n.spec.get("options", {}).get(digit)
            if target is None:
                return []
            self.option = target
            return [LeaveQueue()]
        if n is None or self.phase not in ("prompting", "waiting", "listening"):
            return []
        if n.type == "menu":
            target = n.spec["options"].get(digit)
            out: list[Action] = [StopPrompts()] if self.phase == "prompting" else []
            if target is not None:
                return out + self._goto(now, target)
            return out + self._retry(now)
        if n.type in ("collect", "recognize"):
            out = [StopPrompts()] if self.phase == "prompting" else []
            if self.phase == "listening":
                out.append(StopListening())  # typed instead of said: the keypad it is
            self.phase = "waiting"
            term = n.spec.get("terminator", "#")
            hi = int(n.spec.get("max", 20))
            if term and digit == term:
                return out + self._collected(now)
            if digit in "0123456789" or (digit in "*#" and digit != term):
                self.buffer += digit
            if len(self.buffer) >= hi:
                return out + self._collected(now)
            # the next key may take as long as the first
            self.deadline = now + float(n.spec.get("timeout", 10))
            return out
        return []

    def on_timeout(self, now: float) -> list[Action]:
        if self.deadline is None or now < self.deadline:
            return []
        self.deadline = None
        n = self.node
        if n is not None and self.phase == "recording":
            self.phase = "busy"
            return [StopVoicemail()]
        if n is not None and self.phase == "listening":
            return self._goto(now, n.spec["fallback"])
        if n is None or self.phase != "waiting":
            return []
        if n.type in ("collect", "recognize") and len(self.buffer) >= int(n.spec.get("min", 1)):
            return self._collected(now)
        return self._retry(now)

    def on_recognized(self, now: float, digits: str, confidence: float) -> list[Action]:
        """What the recognizer heard ("" for nothing) and its confidence (0-100)."""
        n = self.node
        if n is None or n.type != "recognize" or self.phase != "listening":
            return []
        self.deadline = None
        var = str(n.spec["var"])
        self.vars[f"{var}_confidence"] = confidence
        lo, hi = int(n.spec.get("min", 1)), int(n.spec.get("max", 20))
        if (
            digits.isdigit()
            and lo <= len(digits) <= hi
            and confidence >= float(n.spec.get("min_confidence", 0))
        ):
            self.vars[var] = digits
            self.spoken.add(var)
            return self._goto(now, n.spec["next"])
        return self._goto(now, n.spec["fallback"])

    def on_authorized(self, now: float, outcome: str, values: dict[str, Any]) -> list[Action]:
        """``outcome``: ok, fail or locked (from the CRM's PIN check)."""
        n = self.node
        if n is None or n.type != "authorize" or self.phase != "busy":
            return []
        self.vars.update(values)
        target = n.spec["ok"] if outcome == "ok" else n.spec.get("locked", n.spec["fail"])
        if outcome == "fail":
            target = n.spec["fail"]
        return self._goto(now, target)

    def on_lookup(self, now: float, values: dict[str, Any] | None) -> list[Action]:
        """The lookup's fields (every one found), or None (timeout, error, a field missing)."""
        n = self.node
        if n is None or n.type != "lookup" or self.phase != "busy":
            return []
        if values is None:
            return self._goto(now, n.spec["on_fail"])
        self.vars.update(values)
        return self._goto(now, n.spec["next"])

    def on_reading(self, now: float, outcome: str, values: dict[str, Any]) -> list[Action]:
        """``outcome``: ok (stored), rejected (``values`` say why) or failed (no meter, no
        CRM)."""
        n = self.node
        if n is None or n.type != "meter_reading" or self.phase != "busy":
            return []
        self.vars.update(values)
        exits = {"ok": "ok", "rejected": "rejected"}
        return self._goto(now, n.spec[exits.get(outcome, "on_fail")])

    def on_outage(self, now: float, outcome: str, values: dict[str, Any]) -> list[Action]:
        """``outcome``: affected, planned, clear or failed (no address known, no CRM)."""
        n = self.node
        if n is None or n.type != "outage" or self.phase != "busy":
            return []
        self.vars.update(values)
        if outcome == "planned":
            return self._goto(now, n.spec.get("planned", n.spec["clear"]))
        target = {"affected": "affected", "clear": "clear"}.get(outcome, "on_fail")
        return self._goto(now, n.spec[target])

    def on_request_done(self, now: float, ok: bool) -> list[Action]:
        """A voicemail or callback request was kept (or the CRM could not take it)."""
        n = self.node
        if n is None or n.type not in ("voicemail", "callback") or self.phase != "busy":
            return []
        return self._goto(now, n.spec["next"] if ok else n.spec.get("on_fail", n.spec["next"]))

    def on_queue_left(self, now: float, outcome: str) -> list[Action]:
        """The call left its queue without an operator (timed out, overflowed, no queue), or
        for the option the caller chose (withdrawn)."""
        n = self.node
        if n is None or n.type != "queue":
            return []
        self.vars["queue_outcome"] = outcome
        if outcome == "withdrawn" and self.option is not None:
            target, self.option = self.option, None
            return self._goto(now, target)
        if "on_fail" in n.spec:
            return self._goto(now, n.spec["on_fail"])
        self.phase = "done"
        return [Hangup(f"queue-{outcome}")]

    def on_transfer_failed(self, now: float) -> list[Action]:
        n = self.node
        if n is None or n.type != "transfer":
            return []
        if "on_fail" in n.spec:
            return self._goto(now, n.spec["on_fail"])
        self.phase = "done"
        return [Hangup("transfer-failed")]

    # --- walking ---

    def _goto(self, now: float, name: str) -> list[Action]:
        out: list[Action] = []
        while True:
            if len(self.history) >= self.max_steps:
                self.phase = "done"
                return [*out, Hangup("flow-loop")]
            n = self.flow.nodes[name]
            self.node, self.tries, self.buffer, self.deadline = n, 0, "", None
            self.history.append(name)
            out.append(Visited(n.name, n.type))
            s = n.spec
            if n.type == "set":
                for k, v in s["vars"].items():
                    self.vars[k] = self.fill(str(v))
                name = s["next"]
                continue
            if n.type == "hours":
                tz = str(s.get("timezone", "Europe/Kyiv"))
                when = self.clock()
                if is_holiday(list(s.get("holidays", [])), tz, when):
                    name = s.get("holiday_next", s["closed_next"])
                else:
                    name = s["open_next"] if is_open(str(s["open"]), tz, when) else s["closed_next"]
                continue
            if n.type == "branch":
                name = s["else"]
                for case in s["cases"]:
                    if evaluate(str(case["if"]), self.vars):
                        name = case["goto"]
                        break
                continue
            break
        if n.type == "say":
            self.phase = "prompting"
            return [*out, Play((Prompt(text=self.fill(s["text"])),), barge_in=False)]
        if n.type == "play":
            self.phase = "prompting"
            return [*out, Play((Prompt(file=s["file"]),), barge_in=False)]
        if n.type in ("menu", "collect", "recognize"):
            self.phase = "prompting"
            return [*out, Play(self._prompt(n), barge_in=True)]
        if n.type == "authorize":
            self.phase = "busy"
            contract = str(self.vars.get(s["contract"], ""))
            pin = str(self.vars.get(s["pin"], ""))
            return [*out, Authorize(contract, pin)]
        if n.type == "lookup":
            self.phase = "busy"
            url = s.get("url")
            if url is not None:
                url = _URL_FIELD.sub(
                    lambda m: quote(str(self.vars.get(m.group(1), "")), safe=""), url
                )
            crm = s.get("crm")
            key = ""
            customer = str(self.vars.get("customer_id", "") or "")
            if crm == "customer":
                key = customer
            elif crm in ("account", "service_point"):
                key = str(self.vars.get(str(s.get("contract", "contract_no")), "") or "")
            elif crm == "connection_request":
                key = str(self.vars.get(str(s.get("key", "request_no")), "") or "")
            fields = tuple((str(k), str(v)) for k, v in s["vars"].items())
            return [
                *out,
                Lookup(url, crm, key, fields, float(s.get("timeout", 2)), customer,
                       self.flow.language),
            ]  # fmt: skip
        if n.type == "meter_reading":
            self.phase = "busy"
            day_var, night_var = str(s["day"]), s.get("night")
            spoken = day_var in self.spoken or (night_var is not None and night_var in self.spoken)
            return [
                *out,
                SubmitReading(
                    str(self.vars.get(str(s.get("contract", "contract_no")), "") or ""),
                    str(self.vars.get(day_var, "") or ""),
                    None if night_var is None else str(self.vars.get(night_var, "") or ""),
                    "voice" if spoken else "ivr",
                    str(s.get("timezone", "Europe/Kyiv")),
                ),
            ]
        if n.type == "outage":
            self.phase = "busy"
            return [
                *out,
                CheckOutage(
                    str(self.vars.get(str(s.get("contract", "contract_no")), "") or ""),
                    str(self.vars.get("customer_id", "") or ""),
                    str(s.get("timezone", "Europe/Kyiv")),
                    float(s.get("ahead_hours", 72)),
                ),
            ]
        if n.type == "transfer":
            self.phase = "busy"
            return [*out, Transfer(self.fill(str(s["to"])))]
        if n.type == "voicemail":
            if "prompt" in s or "prompt_file" in s:
                self.phase = "prompting"
                return [*out, Play(self._prompt(n), barge_in=False)]
            self.phase = "recording"
            most = float(s.get("max_seconds", 60))
            self.deadline = now + most
            return [*out, RecordVoicemail(most)]
        if n.type == "callback":
            self.phase = "busy"
            number = str(self.vars.get(str(s.get("number", "ani")), ""))
            return [*out, RequestCallback(number)]
        if n.type == "queue":
            self.phase, self.option = "queued", None
            return [
                *out,
                Enqueue(
                    str(s["queue"]),
                    self._priority(s.get("priority", 0)),
                    s.get("busy_text"),
                    float(s.get("announce_every", 30)),
                    s.get("music"),
                    float(s.get("prefer_seconds", 0)),
                    s.get("options_text") if s.get("options") else None,
                    float(s.get("options_after", 0)),
                    s.get("busy_unknown_text"),
                ),
            ]
        if n.type == "hangup":
            if s.get("text"):
                self.phase = "prompting"
                return [*out, Play((Prompt(text=self.fill(s["text"])),), barge_in=False)]
            self.phase = "done"
            return [*out, Hangup("flow")]
        raise AssertionError(f"node type {n.type} reached the interpreter unchecked")

    def _prompt(self, n: Node) -> tuple[Prompt, ...]:
        s = n.spec
        if "prompt_file" in s:
            return (Prompt(file=s["prompt_file"]),)
        return (Prompt(text=self.fill(s["prompt"])),)

    def _retry(self, now: float) -> list[Action]:
        n = self.node
        assert n is not None
        self.tries += 1
        self.buffer = ""
        self.deadline = None
        if n.type == "recognize":  # too few keys typed: the node's own fallback
            return self._goto(now, n.spec["fallback"])
        if self.tries >= int(n.spec.get("retries", 3)):
            if "on_fail" in n.spec:
                return self._goto(now, n.spec["on_fail"])
            self.phase = "done"
            return [Hangup("no-input")]
        self.phase = "prompting"
        invalid = n.spec.get("invalid", DEFAULT_INVALID[self.flow.language])
        return [Play((Prompt(text=self.fill(invalid)), *self._prompt(n)), barge_in=True)]

    def _collected(self, now: float) -> list[Action]:
        n = self.node
        assert n is not None
        lo = int(n.spec.get("min", 1))
        if len(self.buffer) < lo:
            return self._retry(now)
        self.vars[n.spec["var"]] = self.buffer
        self.spoken.discard(n.spec["var"])  # keyed, this time
        return self._goto(now, n.spec["next"])

    def _priority(self, value: object) -> int:
        """A number, or a ``"{var}"`` holding one (unset or not a number: 0)."""
        if isinstance(value, int):
            return value
        try:
            return max(0, min(100, int(self.fill(str(value)) or 0)))
        except ValueError:
            return 0

    def fill(self, template: str) -> str:
        """``{var}``, ``{var:money}`` (with ``currency``), ``{var:number}``, ``{var:digits}``,
        ``{var:date}``, ``{var:time}`` (ISO text or date/time values)."""
        lang = self.flow.language

        def one(m: re.Match[str]) -> str:
            value = self.vars.get(m.group(1), "")
            kind = m.group(2)
            if kind == "money":
                return tts.money(value, str(self.vars.get("currency", "UAH")), lang)
            if kind == "number":
                return tts.number(value, lang)
            if kind == "digits":
                return tts.digits(value)
            if kind == "date":
                return tts.date(value, lang)
            if kind == "time":
                return tts.time(value, lang)
            return str(value)

        return _FIELD.sub(one, template)
