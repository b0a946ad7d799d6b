"""Classification rules for a new e-mail thread, without I/O: the first rule (in order)
whose pattern is found in its field gives the case its topic, kind and confidentiality; no
rule matching leaves the case an unclassified instant answer for the operator to classify.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from ccorch.api.validation import Body, Id, ValidationFailed, parse
from ccorch.email.message import ParsedMail

KINDS = ("instant", "escalation", "dispatch")


class RuleBody(Body):
    field: Literal["subject", "body", "from", "any"]
    pattern: Annotated[str, Field(min_length=1, max_length=500)]
    topic_id: Id | None = None
    kind: Literal["instant", "escalation", "dispatch"] = "instant"
    confidential: bool = False


class RulesBody(Body):
    rules: Annotated[list[dict[str, Any]], Field(max_length=200)]


@dataclass(frozen=True)
class Rule:
    field: str
    pattern: str
    topic_id: int | None = None
    kind: str = "instant"
    confidential: bool = False

    @property
    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.I)


def checked_rules(body: Any) -> list[Rule]:
    """The rules of a request, each checked: a bad one is refused with its index and reason
    (``rules[2].pattern``) and none of them is taken."""
    rules = parse(RulesBody, body)["rules"]
    out: list[Rule] = []
    for i, raw in enumerate(rules):
        try:
            data = parse(RuleBody, raw)
        except ValidationFailed as e:
            raise ValidationFailed({f"rules[{i}].{k}": v for k, v in e.fields.items()}) from None
        try:
            re.compile(data["pattern"], re.I)
        except re.error as e:
            raise ValidationFailed(
                {f"rules[{i}].pattern": f"not a regular expression: {e}"}
            ) from None
        out.append(Rule(**data))
    return out


def classify(rules: list[Rule], mail: ParsedMail) -> Rule | None:
    fields = {"subject": mail.subject, "body": mail.text, "from": mail.from_addr}
    for rule in rules:
        texts = fields.values() if rule.field == "any" else (fields[rule.field],)
        if any(rule.compiled.search(t) for t in texts):
            return rule
    return None
