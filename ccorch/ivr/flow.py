"""IVR flows: one YAML file per service, checked at load with file, line and reason.

A flow file::

    flow: abc-internet            # its name
    dnis: ["100"]                 # service numbers that select it
    language: ru                  # ru | en | zh: the TTS voice and how numbers are spoken
    start: greeting               # the first node
    nodes:
      greeting:
        type: menu
        prompt: "Press 1 for ..., 3 for your balance."
        options: {"1": tech, "3": contract}
        timeout: 5                # seconds to wait for a key after the prompt
        retries: 3                # prompts before on_fail
        invalid: "Wrong choice."  # said after a wrong key or silence
        on_fail: goodbye
      ...

Node types and their keys (``next`` is the node that follows; targets must exist, every node
must be reachable from ``start``):

- ``say``: ``text`` (TTS; ``{var}``, ``{var:money}``, ``{var:number}``, ``{var:digits}``,
  ``{var:date}``, ``{var:time}`` are filled in, spoken the language's way), ``next``
- ``play``: ``file`` (WAV, 8 kHz, relative to the flow file), ``next``
- ``menu``: ``prompt`` or ``prompt_file``, ``options`` (key → node), ``timeout``, ``retries``,
  ``invalid``, ``on_fail``
- ``collect``: ``prompt`` or ``prompt_file``, ``var``, ``min``, ``max``, ``terminator``
  (default ``#``), ``timeout``, ``retries``, ``invalid``, ``next``, ``on_fail``
- ``recognize``: ``prompt`` or ``prompt_file``, then the caller is listened to for spoken
  digits (at most ``max_seconds``, default 8; English flows only: ``ccorch.ivr.asr``), or
  may type them (``#`` ends); ``var`` gets them (and ``{var}_confidence``, 0-100) → ``next``
  when ``min``..``max`` digits were heard with at least ``min_confidence``; otherwise →
  ``fallback`` (e.g. a ``collect`` node)
- ``authorize``: ``contract`` and ``pin`` (variable names), ``ok``, ``fail``, ``locked``;
  on success sets ``balance``, ``currency``, ``contract_no``
- ``set``: ``vars`` (name → template), ``next``
- ``lookup``: data from outside into variables, then ``next``; ``on_fail`` on a timeout, an
  error or a missing field. Either ``url`` (HTTP GET of a JSON object; ``{var}`` filled in
  and URL-encoded) or ``crm`` (``customer``: the caller identified by ANI, or ``account``:
  the contract in ``{contract}``, by default the variable ``contract_no``;
  ``service_point``: that account's service point, else the identified caller's, with
  ``contract_no``, ``address``, ``zones``, ``tariff``, ``meter``, ``last_day``,
  ``last_night``, ``last_taken_at``; ``connection_request``: the request whose number is
  in ``{key}``, default ``request_no``, with ``stage``, ``stage_name`` said in the flow's
  language, ``stage_since``, ``submitted_at``, ``due_on``). ``vars`` maps a
  variable to a field (``plan.name`` for nested ones); ``timeout`` seconds (default 2, at
  most 10)
- ``branch``: ``cases`` (list of ``{if: expression, goto: node}``), ``else``; expressions
  compare variables with literals: ``segment == 'vip' and balance < 0``
- ``transfer``: ``to`` (an extension, or an outside number rung through the outbound trunk;
  ``{var}`` allowed), ``on_fail``; to a queue, use a ``queue`` node
- ``queue``: ``queue`` (a queue of the ACD's queues file), ``priority`` (0-100, higher
  waits ahead; a number or a ``"{var}"`` holding one, e.g. set for VIPs), ``prefer_seconds``
  (the identified customer's manager, then the operator who last served them, get the call
  alone for so long each before anyone skilled; default 0, off), ``busy_text`` (said
  when no operator is free, with ``{ewt}``, the estimated wait as said in the flow's
  language ("less than a minute", "about 3 minutes", "more than an hour"), ``{ewt_min}``
  (minutes, to the half) and ``{position}``; again every ``announce_every`` seconds),
  ``busy_unknown_text`` (said instead when the wait is unknown because nobody works the
  queue; without it nothing is announced then, and the ``options`` are offered), ``music`` (a WAV looped while waiting; default a built-in
  tune), ``on_fail`` (the queue timed out or overflowed), ``options`` (keys a waiting caller
  may press to leave the queue for another node, e.g. a voicemail or a callback request;
  it leaves as "withdrawn", not an abandon), ``options_text`` (said after ``busy_text``),
  ``options_after`` (offer them only when the estimated wait is at least so many seconds)
- ``voicemail``: ``prompt`` or ``prompt_file``, then a beep; the caller speaks until ``#``,
  ``max_seconds`` (default 60) or hanging up; the message is kept as a WAV with an
  interaction (channel voicemail) and a case with a callback task; ``next``, ``on_fail``
- ``callback``: a callback request (a case and a callback task) for ``number`` (a variable;
  default the caller's ``ani``); ``next``, ``on_fail``
- ``hours``: ``open`` (e.g. ``"mon-fri 09:00-18:00; sat 10:00-14:00"``), ``timezone``
  (default Europe/Kyiv), ``holidays`` (the calendar: dates closed all day, ``2026-05-01``
  once or ``01-07`` every year), ``open_next``, ``closed_next``, ``holiday_next`` (default
  ``closed_next``)
- ``meter_reading``: the reading in the variables ``day`` (and ``night`` for a day/night
  tariff) for the account in ``contract`` (default ``contract_no``) is checked against the
  meter's last one and stored (channel ivr; voice when the digits were spoken) → ``ok``;
  refused → ``rejected`` with ``reading_error`` (``lower``, ``implausible``,
  ``night_missing``), ``previous_day``, ``previous_night``, ``previous_date`` (the day in
  ``timezone``, default Europe/Kyiv), ``used`` and ``limit`` (kWh) set for the
  explanation; no meter or no CRM → ``on_fail``
- ``outage``: the outages at the address of the account's service point (the account in
  ``contract``, else the caller's): one on now → ``affected``, one starting within
  ``ahead_hours`` (default 72) → ``planned`` (default ``clear``), none → ``clear``, no
  address known → ``on_fail``; sets ``outage_kind``, ``outage_start_date``,
  ``outage_start_time``, ``outage_end_date``, ``outage_end_time`` (local to ``timezone``,
  default Europe/Kyiv, for ``{var:date}`` and ``{var:time}``) and ``outage_reason``
- ``hangup``: optional ``text`` said before hanging up
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ccorch.errors import CcorchError
from ccorch.ivr.schema import NODE_TYPES
from ccorch.yaml_lines import LineMap, LineSeq, YamlProblems, compose

LANGUAGES = ("ru", "en", "zh")
SPEECH_LANGUAGES = frozenset({"en"})  # what ccorch.ivr.asr recognizes (here: no numpy to load)

_COMMON = {"type"}
# type: (required keys, optional keys), and the keys that name another node: from the
# node types' schema (ccorch.ivr.schema), which the flow editor is given too
_KEYS: dict[str, tuple[set[str], set[str]]] = {
    name: (t.required, t.optional) for name, t in NODE_TYPES.items()
}
_TARGETS = {f.key for t in NODE_TYPES.values() for f in t.fields if f.kind == "node"}


_VAR_ONLY = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


class FlowError(CcorchError):
    """A flow file that cannot be used; ``problems`` are (file, line, reason)."""

    def __init__(self, problems: list[tuple[str, int, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{f}:{line}: {r}" for f, line, r in problems))


@dataclass(frozen=True)
class Node:
    name: str
    type: str
    spec: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Flow:
    name: str
    dnis: tuple[str, ...]
    language: str
    start: str
    nodes: dict[str, Node]
    path: str
    digest: str  # sha256 of the file's text: versions are told apart by it
    version: int = 0
    vars: dict[str, str] = field(default_factory=dict)
    source: str = field(default="", repr=False, compare=False)  # the file's text


# --- YAML with line numbers ------------------------------------------------------------------


def _compose(text: str, path: str) -> Any:
    try:
        return compose(text, path)
    except YamlProblems as e:
        raise FlowError(e.problems) from None


def node_at_lines(text: str, path: str) -> list[tuple[int, str]]:
    """Where each node's block starts in a flow's text, (line, node) in order, to say which
    node a problem's line concerns (empty when the text has no nodes to find)."""
    try:
        doc = compose(text, path)
    except YamlProblems:
        return []
    nodes = doc.get("nodes") if isinstance(doc, LineMap) else None
    if not isinstance(nodes, LineMap):
        return []
    return sorted((nodes.lines[n], str(n)) for n in nodes)


def node_of(starts: list[tuple[int, str]], line: int) -> str | None:
    """The node whose block holds ``line`` (by :func:`node_at_lines`), or None."""
    found = None
    for start, name in starts:
        if start > line:
            break
        found = name
    return found


# --- checking --------------------------------------------------------------------------------


def parse_flow(
    text: str,
    path: str,
    *,
    base_dir: Path | None = None,
    check_voice: Any = None,
    queues: set[str] | None = None,
) -> Flow:
    """Check a flow file's text; every problem found is reported, not just the first."""
    doc = _compose(text, path)
    problems: list[tuple[str, int, str]] = []

    def bad(line: int, reason: str) -> None:
        problems.append((path, line, reason))

    if not isinstance(doc, LineMap):
        raise FlowError([(path, 1, "a flow is a mapping with flow, dnis, language, start, nodes")])
    for k in doc:
        if k not in ("flow", "dnis", "language", "start", "nodes", "vars"):
            bad(doc.lines[k], f"unknown key {k!r}")
    name = doc.get("flow")
    if not isinstance(name, str) or not name.strip():
        bad(doc.lines.get("flow", doc.line), "flow: a name is required")
        name = path
    dnis = doc.get("dnis", [])
    if not isinstance(dnis, list) or not all(isinstance(d, str | int) for d in dnis):
        bad(doc.lines.get("dnis", doc.line), "dnis: a list of service numbers")
        dnis = []
    language = doc.get("language", "ru")
    if language not in LANGUAGES:
        bad(doc.lines.get("language", doc.line), f"language: one of {', '.join(LANGUAGES)}")
        language = "ru"
    elif check_voice is not None:
        missing = check_voice(language)
        if missing:
            bad(doc.lines.get("language", doc.line), missing)
    nodes_doc = doc.get("nodes")
    if not isinstance(nodes_doc, LineMap) or not nodes_doc:
        bad(doc.lines.get("nodes", doc.line), "nodes: a mapping of node name to node")
        raise FlowError(problems)
    start = doc.get("start")
    if not isinstance(start, str) or start not in nodes_doc:
        bad(doc.lines.get("start", doc.line), f"start: {start!r} is not a node")

    nodes: dict[str, Node] = {}
    edges: dict[str, list[str]] = {}
    for nname, spec in nodes_doc.items():
        nline = nodes_doc.lines[nname]
        if not isinstance(spec, LineMap):
            bad(nline, f"node {nname!r}: a mapping with a type")
            continue
        ntype = spec.get("type")
        if ntype not in _KEYS:
            bad(
                spec.lines.get("type", nline),
                f"node {nname!r}: unknown type {ntype!r} (known: {', '.join(sorted(_KEYS))})",
            )
            continue
        required, optional = _KEYS[ntype]
        for k in required - set(spec):
            bad(nline, f"node {nname!r} ({ntype}): {k!r} is required")
        for k in set(spec) - required - optional - _COMMON:
            bad(spec.lines[k], f"node {nname!r} ({ntype}): unknown key {k!r}")
        targets = _check_node(nname, ntype, spec, bad, base_dir)
        if ntype == "recognize" and language not in SPEECH_LANGUAGES:
            bad(
                spec.lines.get("type", nline),
                f"node {nname!r}: no speech recognizer for {language} here (English only)",
            )
        if ntype == "queue" and queues is not None and spec.get("queue") not in queues:
            bad(
                spec.lines.get("queue", nline),
                f"node {nname!r}: unknown queue {spec.get('queue')!r} (known: {', '.join(sorted(queues)) or 'none'})",
            )
        for t, tline in targets:
            if t not in nodes_doc:
                bad(tline, f"node {nname!r}: target {t!r} is not a node")
        edges[nname] = [t for t, _ in targets]
        nodes[nname] = Node(nname, ntype, dict(spec), nline)

    if isinstance(start, str) and start in nodes_doc:
        seen = {start}
        todo = [start]
        while todo:
            for t in edges.get(todo.pop(), []):
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        for nname in nodes_doc:
            if nname not in seen:
                bad(nodes_doc.lines[nname], f"node {nname!r} is unreachable from {start!r}")
    if problems:
        raise FlowError(sorted(problems, key=lambda p: p[1]))
    assert isinstance(start, str)
    variables = doc.get("vars") or {}
    return Flow(
        name=str(name),
        dnis=tuple(str(d) for d in dnis),
        language=str(language),
        start=start,
        nodes=nodes,
        path=path,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        vars={str(k): str(v) for k, v in dict(variables).items()},
        source=text,
    )


def _check_key_options(name: str, spec: LineMap, bad: Any, targets: list[tuple[str, int]]) -> None:
    """``options`` of a menu or a queue: phone keys, each naming a node (a target)."""
    opts = spec.get("options")
    if not isinstance(opts, LineMap) or not opts:
        bad(spec.lines.get("options", spec.line), f"node {name!r}: options map keys to nodes")
        return
    for key, target in opts.items():
        if key not in "0123456789*#" or len(key) != 1:
            bad(opts.lines[key], f"node {name!r}: option {key!r} is not a phone key")
        if isinstance(target, str):
            targets.append((target, opts.lines[key]))
        else:
            bad(opts.lines[key], f"node {name!r}: option {key!r} must name a node")


def _check_node(
    name: str, ntype: str, spec: LineMap, bad: Any, base_dir: Path | None
) -> list[tuple[str, int]]:
    """Type checks of one node's keys; returns its targets with their lines."""
    targets: list[tuple[str, int]] = []
    for k in _TARGETS & set(spec):
        v = spec[k]
        if isinstance(v, str):
            targets.append((v, spec.lines[k]))
        else:
            bad(spec.lines[k], f"node {name!r}: {k} must name a node")
    # the fields' kinds and bounds, from the schema
    for f in NODE_TYPES[ntype].fields:
        if f.key not in spec:
            continue
        if f.kind in ("seconds", "integer"):
            why = f.out_of_bounds(spec[f.key])
            if why:
                bad(spec.lines[f.key], f"node {name!r}: {why}")
        elif f.kind == "text" and not isinstance(spec[f.key], str):
            bad(spec.lines[f.key], f"node {name!r}: {f.key} is text")
        elif f.kind == "choice" and spec[f.key] not in f.choices:
            bad(
                spec.lines[f.key],
                f"node {name!r}: {f.key} is one of {', '.join(repr(c) for c in f.choices)}",
            )
    if "priority" in spec and not (
        (isinstance(spec["priority"], int) and 0 <= spec["priority"] <= 100)
        or (isinstance(spec["priority"], str) and _VAR_ONLY.fullmatch(spec["priority"]))
    ):
        bad(
            spec.lines["priority"],
            f'node {name!r}: priority is 0 to 100, or a variable as "{{name}}"',
        )
    for k in ("file", "prompt_file", "music"):
        if k in spec:
            f = spec[k]
            if not isinstance(f, str):
                bad(spec.lines[k], f"node {name!r}: {k} is a path")
            elif base_dir is not None and not (base_dir / f).is_file():
                bad(spec.lines[k], f"node {name!r}: prompt file {f!r} does not exist")
    if ntype == "queue" and "options" in spec:
        _check_key_options(name, spec, bad, targets)
    if ntype == "callback" and "number" in spec and not isinstance(spec["number"], str):
        bad(spec.lines["number"], f"node {name!r}: number names a variable")
    if ntype == "menu":
        _check_key_options(name, spec, bad, targets)
        if "prompt" not in spec and "prompt_file" not in spec:
            bad(spec.line, f"node {name!r}: a menu needs prompt or prompt_file")
    if ntype in ("collect", "recognize"):
        if "prompt" not in spec and "prompt_file" not in spec:
            bad(spec.line, f"node {name!r}: {ntype} needs prompt or prompt_file")
        lo, hi = spec.get("min", 1), spec.get("max", 20)
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            bad(spec.line, f"node {name!r}: min {lo} is more than max {hi}")
    if ntype == "branch":
        cases = spec.get("cases")
        if not isinstance(cases, LineSeq):
            bad(spec.lines.get("cases", spec.line), f"node {name!r}: cases is a list")
        else:
            for c in cases:
                if not isinstance(c, LineMap) or set(c) != {"if", "goto"}:
                    bad(
                        getattr(c, "line", spec.line),
                        f"node {name!r}: a case is {{if: ..., goto: ...}}",
                    )
                    continue
                err = check_expression(str(c["if"]))
                if err:
                    bad(c.lines["if"], f"node {name!r}: {err}")
                if isinstance(c["goto"], str):
                    targets.append((c["goto"], c.lines["goto"]))
    if ntype == "hours":
        try:
            parse_hours(str(spec.get("open", "")))
        except ValueError as e:
            bad(spec.lines.get("open", spec.line), f"node {name!r}: open: {e}")
        _check_timezone(name, spec, bad)
        if "holidays" in spec:
            days = spec["holidays"]
            if not isinstance(days, LineSeq):
                bad(spec.lines["holidays"], f"node {name!r}: holidays is a list of dates")
            else:
                for d in days:
                    try:
                        parse_holiday(d)
                    except ValueError as e:
                        bad(spec.lines["holidays"], f"node {name!r}: holidays: {e}")
    if ntype == "lookup":
        if ("url" in spec) == ("crm" in spec):
            bad(spec.line, f"node {name!r}: a lookup has either url or crm")
        url = spec.get("url")
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            bad(spec.lines["url"], f"node {name!r}: url is http:// or https://")
        fields = spec.get("vars")
        if not isinstance(fields, LineMap) or not fields:
            bad(spec.lines.get("vars", spec.line), f"node {name!r}: vars maps names to fields")
    if ntype in ("outage", "meter_reading"):
        _check_timezone(name, spec, bad)
    for f in NODE_TYPES[ntype].fields:
        if (
            f.kind == "variable"
            and f.key in spec
            and not (isinstance(spec[f.key], str) and _NAME.fullmatch(spec[f.key]))
        ):
            bad(spec.lines[f.key], f"node {name!r}: {f.key} names a variable")
    if ntype == "set" and not isinstance(spec.get("vars"), LineMap):
        bad(spec.lines.get("vars", spec.line), f"node {name!r}: vars maps names to values")
    if ntype == "transfer" and not isinstance(spec.get("to"), str | int):
        bad(spec.lines.get("to", spec.line), f"node {name!r}: to is an extension")
    return targets


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_timezone(name: str, spec: LineMap, bad: Any) -> None:
    tz = spec.get("timezone", "Europe/Kyiv")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        bad(spec.lines.get("timezone", spec.line), f"node {name!r}: unknown time zone {tz!r}")


# --- business hours --------------------------------------------------------------------------

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hours(text: str) -> list[tuple[int, int, int]]:
    """``"mon-fri 09:00-18:00; sat 10:00-14:00"`` → [(weekday, start_min, end_min), ...]."""
    out: list[tuple[int, int, int]] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        days, _, span = part.partition(" ")
        d0, _, d1 = days.lower().partition("-")
        if d0 not in _DAYS or (d1 and d1 not in _DAYS):
            raise ValueError(f"{part!r}: days are mon..sun, e.g. mon-fri")
        first, last = _DAYS.index(d0), _DAYS.index(d1 or d0)
        t0, _, t1 = span.strip().partition("-")
        start, end = _minutes(t0), _minutes(t1)
        if start >= end:
            raise ValueError(f"{part!r}: the time range ends before it starts")
        for d in (
            range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)]
        ):
            out.append((d, start, end))
    if not out:
        raise ValueError("no opening hours given")
    return out


def _minutes(hhmm: str) -> int:
    h, sep, m = hhmm.strip().partition(":")
    if (
        not sep
        or not h.isdigit()
        or not m.isdigit()
        or not (0 <= int(h) <= 24 and 0 <= int(m) < 60)
    ):
        raise ValueError(f"{hhmm!r} is not HH:MM")
    return int(h) * 60 + int(m)


def is_open(text: str, tz: str, when: dt.datetime) -> bool:
    local = when.astimezone(ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    return any(d == local.weekday() and a <= minute < b for d, a, b in parse_hours(text))


def parse_holiday(value: object) -> tuple[int | None, int, int]:
    """``2026-05-01`` (that day) or ``01-07`` (every year) -> (year or None, month, day)."""
    text = value.isoformat() if isinstance(value, dt.date) else str(value)  # YAML dates
    parts = text.strip().split("-")
    try:
        if len(parts) == 3:
            d = dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
            return d.year, d.month, d.day
        if len(parts) == 2:
            dt.date(2024, int(parts[0]), int(parts[1]))  # a leap year: 02-29 is a date
            return None, int(parts[0]), int(parts[1])
    except ValueError:
        pass
    raise ValueError(f"{text!r} is not a date (YYYY-MM-DD, or MM-DD for every year)")


def is_holiday(days: list[object], tz: str, when: dt.datetime) -> bool:
    local = when.astimezone(ZoneInfo(tz)).date()
    for d in days:
        year, month, day = parse_holiday(d)
        if (month, day) == (local.month, local.day) and year in (None, local.year):
            return True
    return False


# --- branch expressions ----------------------------------------------------------------------

_OPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.Compare,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Tuple,
    ast.List,
    *_OPS,
)


def check_expression(text: str) -> str | None:
    """None if ``text`` is a comparison we evaluate, else why not."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        return f"expression {text!r}: {e.msg}"
    for n in ast.walk(tree):
        if not isinstance(n, _ALLOWED):
            return f"expression {text!r}: only comparisons of variables with values"
    return None


def evaluate(text: str, variables: dict[str, Any]) -> bool:
    """Evaluate a checked expression; unknown variables are None, and a comparison that
    cannot be made (None < 5) is false rather than an error."""
    tree = ast.parse(text, mode="eval")
    return bool(_eval(tree.body, variables))


def _eval(n: ast.AST, v: dict[str, Any]) -> Any:
    if isinstance(n, ast.BoolOp):
        vals = (_eval(x, v) for x in n.values)
        return all(vals) if isinstance(n.op, ast.And) else any(vals)
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
        return not _eval(n.operand, v)
    if isinstance(n, ast.Compare):
        left = _eval(n.left, v)
        for op, right_n in zip(n.ops, n.comparators, strict=True):
            right = _eval(right_n, v)
            try:
                ok = _compare(op, left, right)
            except TypeError:
                return False
            if not ok:
                return False
            left = right
        return True
    if isinstance(n, ast.Name):
        return _coerce(v.get(n.id))
    if isinstance(n, ast.Constant):
        return n.value
    if isinstance(n, ast.Tuple | ast.List):
        return [_eval(x, v) for x in n.elts]
    raise ValueError("unchecked expression")


def _coerce(x: Any) -> Any:
    """Variables collected from keys are text: numbers compare as numbers."""
    if isinstance(x, str):
        try:
            return float(x) if "." in x else int(x)
        except ValueError:
            return x
    return x


def _compare(op: ast.cmpop, a: Any, b: Any) -> bool:
    if isinstance(op, ast.Eq):
        return bool(a == b or str(a) == str(b))
    if isinstance(op, ast.NotEq):
        return not (a == b or str(a) == str(b))
    if isinstance(op, ast.Lt):
        return bool(a < b)
    if isinstance(op, ast.LtE):
        return bool(a <= b)
    if isinstance(op, ast.Gt):
        return bool(a > b)
    if isinstance(op, ast.GtE):
        return bool(a >= b)
    if isinstance(op, ast.In):
        return a in b or str(a) in [str(x) for x in b]
    if isinstance(op, ast.NotIn):
        return not (a in b or str(a) in [str(x) for x in b])
    raise ValueError("operator")


def load_flow(path: Path, *, check_voice: Any = None, queues: set[str] | None = None) -> Flow:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FlowError([(str(path), 1, f"cannot read: {e}")]) from None
    return parse_flow(text, str(path), base_dir=path.parent, check_voice=check_voice, queues=queues)
