"""How a campaign dials (stored with it, checked when it is created): ring time, the line
ceiling, the pace of power mode, the abandon and answering-machine messages, the number
shown to the customer, and the flow a voice broadcast plays.

The abandon message is what a person hears when they answered and no operator was free
within 2 seconds of the end of their greeting (Ofcom's rule): say who called and that
the call was not a sales call, then hang up.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_ABANDON = {
    "ru": "Здравствуйте! Вам звонила компания ABC Интернет. Все операторы сейчас заняты,"
    " мы перезвоним вам позже. Это не рекламный звонок.",
    "en": "Hello, this was ABC Internet calling. All our operators are busy; we will call"
    " you back later. This is not a sales call.",
    "zh": "您好，这里是ABC互联网。所有客服人员正忙，我们稍后会给您回电。这不是推销电话。",
}


class DialingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ring_seconds: Annotated[float, Field(ge=5, le=120)] = 25
    max_lines: Annotated[int, Field(ge=1, le=2000)] = 60  # calls in flight at most
    ratio: Annotated[float, Field(ge=1, le=10)] | None = None  # power mode: lines per operator
    language: Literal["ru", "en", "zh"] = "ru"
    abandon_message: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    machine_message: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    caller_id: Annotated[str, Field(pattern=r"^\+?[0-9]{3,16}$")] | None = None
    queue_priority: Annotated[int, Field(ge=0, le=100)] = 10  # ahead of inbound callers
    detect_machines: bool | None = None  # default: predictive and broadcast detect
    flow: Annotated[str, Field(min_length=1, max_length=100)] | None = None  # broadcast
    # a callback campaign: it takes the callback tasks callers leave in its queue
    callbacks: bool = False
    # an SMS campaign's text: {name} and the list's columns ({address}, ...) are filled in
    sms_text: Annotated[str, Field(min_length=1, max_length=1600)] | None = None
    sms_per_second: Annotated[float, Field(gt=0, le=1000)] = 5.0

    def sms_for(self, variables: dict[str, Any]) -> str:
        """The SMS text for a contact: each ``{column}`` the list has, filled in."""
        return re.sub(
            r"\{(\w+)\}",
            lambda m: str(variables.get(m.group(1), m.group(0))),
            self.sms_text or "",
        )

    def abandon_text(self) -> str:
        return self.abandon_message or DEFAULT_ABANDON[self.language]

    def detects(self, mode: str) -> bool:
        if self.detect_machines is not None:
            return self.detect_machines
        return mode in ("predictive", "broadcast")


__all__ = ["DEFAULT_ABANDON", "DialingSettings"]
