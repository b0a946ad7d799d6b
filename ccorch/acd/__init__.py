"""Python face of the skill-based ACD that lives in Rust (``ccorch._core.Acd``).

The engine is sans-IO: every call passes ``now_ms`` from the caller's monotonic clock, and
decisions come back from ``Acd.poll_actions()`` as tuples. This module names what the
tuples mean (typed events for the platform's one event stream) and the not-ready reasons
a center uses (the seed's «На обед», «Перерыв», «Не готов»).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from ccorch._core import (
    Acd,
    erlang_a,
    erlang_b,
    erlang_c,
    erlang_c_forecast,
    staffing_erlang_a,
    staffing_erlang_c,
)

__all__ = [
    "DEFAULT_REASONS",
    "FIRST_CENTER_REASON",
    "Acd",
    "AcdEvent",
    "AgentChanged",
    "CallLeft",
    "Moved",
    "Offer",
    "Reason",
    "RevokeOffer",
    "decode",
    "erlang_a",
    "erlang_b",
    "erlang_c",
    "erlang_c_forecast",
    "staffing_erlang_a",
    "staffing_erlang_c",
]


class Reason(IntEnum):
    """Not-ready reason codes set by the ACD and the node itself. The reasons operators
    choose (lunch, break, …) are the center's (``[acd] not_ready_reasons``), numbered from
    ``FIRST_CENTER_REASON`` in the order configured."""

    LOGIN = 0
    MISSED_OFFER = 1
    SUPERVISOR = 2
    DEVICE_LOST = 3  # the phone unregistered while the operator was logged in
    OUTBOUND = 4  # held for a call the node places for them (a preview, a personal callback)


FIRST_CENTER_REASON = 10
# The seed's «На обед», «Перерыв», «Не готов», and two more every center has.
DEFAULT_REASONS = ("lunch", "break", "not_ready", "training", "meeting")


AgentStateName = Literal["logged_out", "ready", "not_ready", "offered", "busy", "wrap_up"]
OutcomeName = Literal["answered", "abandoned", "overflowed", "timed_out", "withdrawn"]


@dataclass(frozen=True, slots=True)
class Offer:
    """Ring ``agent`` with ``call`` until ``deadline_ms``."""

    call: int
    agent: int
    queue: int
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class RevokeOffer:
    """Stop ringing: the offer timed out or the caller hung up."""

    call: int
    agent: int


@dataclass(frozen=True, slots=True)
class Moved:
    """The call overflowed into another queue and keeps waiting there."""

    call: int
    from_queue: int
    to_queue: int


@dataclass(frozen=True, slots=True)
class CallLeft:
    """The call left the queues for good: answered (detail = agent), abandoned,
    overflowed (detail = external target code) or timed out."""

    call: int
    queue: int
    outcome: OutcomeName
    detail: int | None
    waited_ms: int


@dataclass(frozen=True, slots=True)
class AgentChanged:
    """An agent's new state; detail is the reason (not_ready), the call (offered, busy) or
    the end of wrap-up in ms (wrap_up)."""

    agent: int
    state: AgentStateName
    detail: int | None


AcdEvent = Offer | RevokeOffer | Moved | CallLeft | AgentChanged


def decode(action: tuple[object, ...]) -> AcdEvent:
    """Turn one tuple from ``Acd.poll_actions()`` into its typed event."""
    kind, *rest = action
    if kind == "offer":
        return Offer(*rest)  # type: ignore[arg-type]
    if kind == "revoke":
        return RevokeOffer(*rest)  # type: ignore[arg-type]
    if kind == "moved":
        return Moved(*rest)  # type: ignore[arg-type]
    if kind == "left":
        return CallLeft(*rest)  # type: ignore[arg-type]
    if kind == "agent":
        return AgentChanged(*rest)  # type: ignore[arg-type]
    raise ValueError(f"unknown ACD action {action!r}")
