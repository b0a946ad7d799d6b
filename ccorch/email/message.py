"""E-mail messages, without I/O: what a received message says (addresses, threading headers,
its text, its attachments) and the reply the center sends (RFC 5322 threading: In-Reply-To
and References, the case's tag in the subject).

Parsing uses the standard library's ``email`` package with its modern policy (it decodes
encoded words, charsets and transfer encodings). A message that has no text part gets the
text of its HTML part (tags dropped, paragraphs kept as lines).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid, parsedate_to_datetime
from html.parser import HTMLParser

# "[#123]" in a subject names the case; a reply carries it, and a customer's answer to
# that reply keeps it even when their client drops the threading headers.
CASE_TAG = re.compile(r"\[#(\d{1,18})\]")
REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv|ответ|回复|答复)\s*(\[\d+\])?\s*[:：]\s*)+", re.I)
MAX_TEXT = 200_000  # characters of a body kept as text (the raw message keeps the rest)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class ParsedMail:
    message_id: str
    in_reply_to: str | None
    references: list[str]
    from_addr: str
    from_name: str
    to_addrs: list[str]
    cc_addrs: list[str]
    subject: str
    text: str
    sent_at: dt.datetime | None
    attachments: list[Attachment] = field(default_factory=list)
    auto_reply: bool = False  # an out-of-office or a bounce: never answered automatically

    @property
    def case_tag(self) -> int | None:
        m = CASE_TAG.search(self.subject)
        return int(m.group(1)) if m else None

    @property
    def thread_ids(self) -> list[str]:
        """The Message-IDs this one answers, the nearest first."""
        ids = ([self.in_reply_to] if self.in_reply_to else []) + self.references[::-1]
        return list(dict.fromkeys(ids))


class MailError(ValueError):
    """A message that cannot be read as e-mail at all."""


def _ids(value: str | None) -> list[str]:
    return re.findall(r"<([^<>\s]+)>", value or "")


class _Text(HTMLParser):
    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    p = _Text()
    p.feed(html)
    p.close()
    lines = [" ".join(line.split()) for line in "".join(p.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _address(value: str | None) -> tuple[str, str]:
    pairs = getaddresses([value or ""])
    for name, addr in pairs:
        if "@" in addr:
            return name.strip(), addr.strip().lower()
    return "", ""


def _addresses(values: list[str]) -> list[str]:
    return [a.strip().lower() for _, a in getaddresses(values) if "@" in a]


def parse(raw: bytes) -> ParsedMail:
    """A received message's parts; a message with no usable sender is refused (MailError)."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as e:  # the parser is lenient; this is for what it still cannot take
        raise MailError(f"not an e-mail message: {e}") from None
    assert isinstance(msg, EmailMessage)
    name, sender = _address(_header(msg, "From"))
    if not sender:
        raise MailError("no sender address in From")
    ids = _ids(_header(msg, "Message-ID"))
    # a message without a Message-ID is still kept once: its id is its bytes' digest
    message_id = ids[0] if ids else f"{hashlib.sha256(raw).hexdigest()[:32]}@no-message-id"
    in_reply = _ids(_header(msg, "In-Reply-To"))
    sent_at: dt.datetime | None = None
    date = _header(msg, "Date")
    if date:
        try:
            sent_at = parsedate_to_datetime(date)
            if sent_at.tzinfo is None:
                sent_at = sent_at.replace(tzinfo=dt.UTC)
        except (TypeError, ValueError):
            sent_at = None
    text = ""
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        content = _content(body)
        text = html_to_text(content) if body.get_content_subtype() == "html" else content
    attachments = []
    for part in msg.iter_attachments():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        attachments.append(
            Attachment(
                filename=safe_filename(part.get_filename() or ""),
                content_type=part.get_content_type(),
                data=data,
            )
        )
    auto = (
        (_header(msg, "Auto-Submitted") or "no").lower() != "no"
        or msg.get_content_type() == "multipart/report"
        or bool(_header(msg, "X-Autoreply"))
    )
    return ParsedMail(
        message_id=message_id[:500],
        in_reply_to=in_reply[0] if in_reply else None,
        references=_ids(_header(msg, "References"))[-50:],
        from_addr=sender,
        from_name=name[:200],
        to_addrs=_addresses(msg.get_all("To", []) or []),
        cc_addrs=_addresses(msg.get_all("Cc", []) or []),
        subject=" ".join((_header(msg, "Subject") or "").split())[:998],
        text=text.replace("\r\n", "\n").replace("\x00", "")[:MAX_TEXT],
        sent_at=sent_at,
        attachments=attachments,
        auto_reply=auto,
    )


def _header(msg: EmailMessage, name: str) -> str | None:
    try:
        value = msg.get(name)
    except Exception:  # a header the policy cannot decode: read as absent
        return None
    return None if value is None else str(value)


def _content(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset: the bytes as Latin-1
        payload = part.get_payload(decode=True)
        return payload.decode("latin-1") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def safe_filename(name: str) -> str:
    """A file name for display and download: no directories, no control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    return name[:200] or "attachment"


def reply_subject(subject: str, case_id: int) -> str:
    """ "Re: <subject> [#case]": one "Re:", one tag, whatever the thread has gathered."""
    bare = CASE_TAG.sub("", REPLY_PREFIX.sub("", subject)).strip() or "(no subject)"
    return f"Re: {bare} [#{case_id}]"


def compose(
    *,
    sender: str,
    sender_name: str,
    to: str,
    subject: str,
    text: str,
    in_reply_to: str | None,
    references: Sequence[str] = (),
    attachments: Sequence[Attachment] = (),
    now: dt.datetime,
) -> EmailMessage:
    """A message from the center, threaded under ``in_reply_to`` (the message it answers)
    after ``references`` (the chain that one carried), so the whole chain goes along."""
    msg = EmailMessage(policy=policy.SMTP)
    user, _, domain = sender.partition("@")
    msg["From"] = Address(sender_name, user, domain)
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=domain)
    if in_reply_to is not None:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        chain = list(dict.fromkeys([*references, in_reply_to]))
        msg["References"] = " ".join(f"<{i}>" for i in chain[-20:])
    msg.set_content(text)
    for a in attachments:
        main, _, sub = a.content_type.partition("/")
        msg.add_attachment(a.data, maintype=main or "application",
                           subtype=sub or "octet-stream", filename=a.filename)  # fmt: skip
    return msg
