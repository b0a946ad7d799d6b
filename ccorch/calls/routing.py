"""Where a new call goes: the router's decision (ring a phone, a trunk, run a flow, refuse).

The IVR and the ACD take over routing in ``ccorch.ivr``; :class:`DirectRouter` is the
plain PBX part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ccorch.ivr.flow import Flow
from ccorch.ivr.store import FlowStore
from ccorch.sip.service import SipService

if TYPE_CHECKING:
    from ccorch.calls.call import Call


@dataclass(frozen=True, slots=True)
class RingUser:
    """Ring the registered phones of this SIP account."""

    user: str


@dataclass(frozen=True, slots=True)
class Reject:
    status: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RingTrunk:
    """Call ``number`` outside, through the trunk named ``trunk``."""

    trunk: str
    number: str


@dataclass(frozen=True, slots=True)
class RunFlow:
    """Answer and run this IVR flow."""

    flow: Flow


Decision = RingUser | RingTrunk | RunFlow | Reject


class Router(Protocol):
    async def route(self, call: Call) -> Decision: ...


class DirectRouter:
    """The DNIS (or dialled extension) is an agent's SIP account: ring it. Otherwise 404.
    The IVR and the ACD take over routing in ``ccorch.ivr``; this is the plain PBX part."""

    def __init__(self, service: SipService, flows: FlowStore | None = None) -> None:
        self.service = service
        self.flows = flows

    async def route(self, call: Call) -> Decision:
        if self.flows is not None and call.origin.trunk is not None:
            flow = self.flows.for_dnis(call.dnis)
            if flow is not None:
                return RunFlow(flow)
        if call.dnis in self.service.accounts:
            return RingUser(call.dnis)
        if call.origin.agent is not None and call.dnis.lstrip("+").isdigit():
            for t in self.service.trunks:
                if t.outbound and t.up is not False:
                    return RingTrunk(t.name, call.dnis)
            return Reject(503, "Service Unavailable (no trunk for outside calls)")
        return Reject(404, "Not Found (no such number)")
