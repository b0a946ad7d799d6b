"""SIP messages (RFC 3261 §7, §25): parse, inspect, build, serialize.

Parsing never raises anything but ``ParseError``, which says what was wrong and, when the
start line and the headers a response needs were readable, carries enough of the request
for the caller to answer ``400 Bad Request`` with that reason (§8.2, §21.4.1).

Header values are kept as text exactly as received (decoded as UTF-8 with surrogate escapes,
so re-encoding gives the same bytes); the body is kept as bytes and never touched. Names are
kept in lower case with compact forms expanded (``i`` → ``call-id``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ccorch._core import sip_split

SIP_VERSION = "SIP/2.0"
MAX_MESSAGE_BYTES = 65_535  # one UDP datagram; TCP messages are held to the same limit
MAX_HEADERS = 128
MAGIC_COOKIE = "z9hG4bK"

COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "u": "allow-events",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
}

_DISPLAY = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rseq": "RSeq",
    "rack": "RAck",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
}

# Headers whose value is a comma-separated list (§7.3.1); others may contain bare commas
# (dates, auth challenges) and are never split.
_LIST_HEADERS = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "in-reply-to",
    }
)

REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_BAD_HOST = re.compile(r'[ <>"]')


def display_name(lname: str) -> str:
    d = _DISPLAY.get(lname)
    if d is None:
        d = _DISPLAY[lname] = "-".join(p.capitalize() for p in lname.split("-"))
    return d


class ParseError(Exception):
    """A message that cannot be used. ``request`` is set when a 400 can be sent back."""

    def __init__(self, reason: str, request: Request | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request = request  # the request as far as it was readable, for the 400


# --- values inside headers ----------------------------------------------------------------


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas in quotes and <...>."""
    if "," not in value:
        return [value.strip()]
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return [v for v in out if v]


def parse_params(text: str) -> dict[str, str | None]:
    """``;a=1;b;c="x;y"`` → {"a": "1", "b": None, "c": "x;y"}; names lower-cased."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    quoted = '"' in text
    for part in _split_unquoted(text, ";") if quoted else text.split(";"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if eq:
            v: str | None = value.strip()
            if quoted and v and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                v = unquote(v)
        else:
            v = None
        params[name.strip().lower()] = v
    return params


def _split_unquoted(text: str, sep: str) -> list[str]:
    if '"' not in text:
        return text.split(sep)
    out: list[str] = []
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def unquote(s: str) -> str:
    """``"a \\"b\\""`` → ``a "b"`` (§25.1 quoted-pair)."""
    inner = s[1:-1]
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner):
            i += 1
        out.append(inner[i])
        i += 1
    return "".join(out)


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_params(params: dict[str, str | None]) -> str:
    out = []
    for k, v in params.items():
        if v is None:
            out.append(";" + k)
        elif (
            v == "" or _TOKEN.match(v) or ((":" in v or "." in v) and '"' not in v and " " not in v)
        ):
            out.append(f";{k}={v}")
        else:
            out.append(f";{k}={quote(v)}")
    return "".join(out)


def _unescape_uri(s: str) -> str:
    if "%" not in s:
        return s
    out = bytearray()
    b = s.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(b):
        if b[i] == 0x25 and i + 2 < len(b):
            try:
                out.append(int(b[i + 1 : i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(b[i])
        i += 1
    return out.decode("utf-8", "surrogateescape")


@dataclass(slots=True)
class Uri:
    """A sip: / sips: / tel: URI. ``user`` is unescaped; ``text`` is the form as written."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> Uri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in ("sip", "sips", "tel"):
            raise ValueError(f"unsupported URI scheme in {text[:60]!r}")
        if scheme == "tel":
            number, _, params = rest.partition(";")
            return cls("tel", number, "", None, parse_params(params))
        rest, _, headers = rest.partition("?")
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            hostpart = rest
            userinfo = ""
        hostport, _, params = hostpart.partition(";")
        user: str | None = None
        password: str | None = None
        if at:
            u, c, p = userinfo.partition(":")
            user = _unescape_uri(u)
            password = _unescape_uri(p) if c else None
        if hostport.startswith("["):
            end = hostport.find("]")
            if end < 0:
                raise ValueError(f"unterminated IPv6 reference in {text[:60]!r}")
            host = hostport[: end + 1]
            portpart = hostport[end + 1 :]
            if portpart and not portpart.startswith(":"):
                raise ValueError(f"bad host in {text[:60]!r}")
            portpart = portpart[1:]
        else:
            host, _, portpart = hostport.partition(":")
        if not host or _BAD_HOST.search(host):
            raise ValueError(f"bad host in {text[:60]!r}")
        port: int | None = None
        if portpart:
            if not portpart.isdigit() or not 0 < int(portpart) < 65536:
                raise ValueError(f"bad port in {text[:60]!r}")
            port = int(portpart)
        return cls(scheme, user, host.lower(), port, parse_params(params), headers, password)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        s = self.scheme + ":"
        if self.user is not None:
            s += _escape_user(self.user)
            if self.password is not None:
                s += ":" + self.password
            s += "@"
        s += self.host
        if self.port is not None:
            s += f":{self.port}"
        s += format_params(self.params)
        if self.headers:
            s += "?" + self.headers
        return s

    def hostport(self) -> tuple[str, int]:
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host, self.port or (5061 if self.scheme == "sips" else 5060)


_USER_OK = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/]*$")


def _escape_user(user: str) -> str:
    if _USER_OK.match(user):
        return user
    out = []
    for ch in user:
        if _USER_OK.match(ch):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


class NameAddr:
    """From, To, Contact, Route, Refer-To: ``"Display" <uri>;params`` or ``uri;params``.

    The URI is parsed when first asked for: most messages only need the tag."""

    __slots__ = ("_uri", "display", "params", "star", "uri_text")

    def __init__(
        self,
        uri: Uri | str,
        display: str | None = None,
        params: dict[str, str | None] | None = None,
        star: bool = False,
    ) -> None:
        self._uri: Uri | None = uri if isinstance(uri, Uri) else None
        self.uri_text = uri if isinstance(uri, str) else ""
        self.display = display
        self.params = params if params is not None else {}
        self.star = star  # Contact: *

    @property
    def uri(self) -> Uri:
        u = self._uri
        if u is None:
            u = self._uri = Uri.parse(self.uri_text)
        return u

    @uri.setter
    def uri(self, value: Uri) -> None:
        self._uri = value

    def __repr__(self) -> str:
        return f"NameAddr({self!s})"

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if text == "*":
            return cls(Uri("sip", None, "*"), star=True)
        display: str | None = None
        if text[:1] == '"':
            i = 1
            while i < len(text):
                if text[i] == "\\":
                    i += 2
                    continue
                if text[i] == '"':
                    break
                i += 1
            else:
                raise ValueError("unterminated quoted display name")
            display = unquote(text[: i + 1])
            text = text[i + 1 :].lstrip()
            if not text.startswith("<"):
                raise ValueError("display name without <URI>")
        lt = text.find("<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise ValueError("unterminated <URI>")
            if display is None and lt > 0:
                display = text[:lt].strip() or None
            uri_text = text[lt + 1 : gt]
            params = parse_params(text[gt + 1 :])
        else:
            # addr-spec: parameters after the URI belong to the header (§20.10)
            uri_text, _, ptext = text.partition(";")
            params = parse_params(ptext)
        if uri_text[:4].lower() not in ("sip:", "sips", "tel:"):
            raise ValueError(f"unsupported URI scheme in {uri_text[:60]!r}")
        return cls(uri_text.strip(), display, params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.star:
            return "*"
        d = quote(self.display) + " " if self.display else ""
        u = self._uri if self._uri is not None else self.uri_text
        return f"{d}<{u}>{format_params(self.params)}"


@dataclass(slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @classmethod
    def parse(cls, text: str) -> Via:
        proto, _, rest = text.strip().partition(" ")
        parts = proto.split("/")
        if len(parts) != 3 or parts[0].strip().upper() != "SIP":
            raise ValueError(f"bad Via protocol {proto[:40]!r}")
        rest = rest.strip()
        sent_by, _, ptext = rest.partition(";")
        sent_by = sent_by.strip()
        if sent_by.startswith("["):
            end = sent_by.find("]")
            host, portpart = sent_by[: end + 1], sent_by[end + 2 :]
        else:
            host, _, portpart = sent_by.partition(":")
        if not host:
            raise ValueError("Via without sent-by host")
        port = None
        if portpart:
            portpart = portpart.strip()
            if not portpart.isdigit() or not 0 < int(portpart) < 65536:
                raise ValueError(f"bad Via port {portpart[:10]!r}")
            port = int(portpart)
        return cls(parts[2].strip().upper(), host, port, parse_params(ptext))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {hp}{format_params(self.params)}"


# --- messages ----------------------------------------------------------------------------


# what a response copies from its request (§8.2.6) and what transactions match on (§17)
_ESSENTIAL_HEADERS = frozenset(("via", "from", "to", "call-id", "cseq"))


class Message:
    __slots__ = ("_cache", "body", "headers")

    def __init__(self, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body
        self._cache: dict[str, object] = {}

    # headers
    def get(self, name: str) -> str | None:
        first: dict[str, str] | None = self._cache.get("_first")  # type: ignore[assignment]
        if first is None:
            first = {}
            for k, v in self.headers:
                if k not in first:
                    first[k] = v
            self._cache["_first"] = first
        return first.get(name)

    def get_all(self, name: str) -> list[str]:
        """Every value of the header, lists split (Via, Contact, Route...)."""
        out: list[str] = []
        split = name in _LIST_HEADERS
        for k, v in self.headers:
            if k == name:
                if split:
                    out.extend(split_list(v))
                else:
                    out.append(v)
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by one, in the first one's place."""
        self._cache.clear()
        for i, (k, _) in enumerate(self.headers):
            if k == name:
                self.headers[i] = (name, value)
                self.headers[i + 1 :] = [h for h in self.headers[i + 1 :] if h[0] != name]
                return
        self.headers.append((name, value))

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        self._cache.clear()
        if first:
            self.headers.insert(0, (name, value))
        else:
            self.headers.append((name, value))

    def remove(self, name: str) -> None:
        self._cache.clear()
        self.headers = [h for h in self.headers if h[0] != name]

    # common fields, parsed once
    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        c = self._cache.get("cseq")
        if c is None:
            num, _, method = (self.get("cseq") or "").strip().partition(" ")
            c = (int(num), method.strip().upper())
            self._cache["cseq"] = c
        return c  # type: ignore[return-value]

    @property
    def from_(self) -> NameAddr:
        c = self._cache.get("from")
        if c is None:
            c = self._cache["from"] = NameAddr.parse(self.get("from") or "")
        return c  # type: ignore[return-value]

    @property
    def to(self) -> NameAddr:
        c = self._cache.get("to")
        if c is None:
            c = self._cache["to"] = NameAddr.parse(self.get("to") or "")
        return c  # type: ignore[return-value]

    @property
    def vias(self) -> list[Via]:
        c = self._cache.get("vias")
        if c is None:
            c = self._cache["vias"] = [Via.parse(v) for v in self.get_all("via")]
        return c  # type: ignore[return-value]

    @property
    def top_via(self) -> Via:
        return self.vias[0]

    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.get_all("contact")]

    def _head(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        lines = [self._head()]
        for k, v in self.headers:
            if k != "content-length":
                lines.append(f"{display_name(k)}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


class Request(Message):
    __slots__ = ("_uri", "method", "uri_text")

    def __init__(
        self,
        method: str,
        uri: Uri | str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self._uri: Uri | None
        if isinstance(uri, str):
            self.uri_text = uri
            self._uri = None
        else:
            self._uri = uri
            self.uri_text = str(uri)

    def essentials(self) -> Request:
        """This request with only what a response to it or a match on it needs (Via, From,
        To, Call-ID, CSeq), nothing parsed yet: what a transaction keeps once its final
        response is out. A parsed INVITE takes ~5 KiB, and transactions live 32 s after it."""
        kept = [(k, v) for k, v in self.headers if k in _ESSENTIAL_HEADERS]
        return Request(self.method, self.uri_text, kept)

    @property
    def uri(self) -> Uri:
        """The Request-URI, parsed when first asked for (ACKs and BYEs never need it)."""
        u = self._uri
        if u is None:
            u = self._uri = Uri.parse(self.uri_text)
        return u

    @uri.setter
    def uri(self, value: Uri) -> None:
        self._uri = value
        self.uri_text = str(value)

    def _head(self) -> str:
        return f"{self.method} {self.uri_text} {SIP_VERSION}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text} {self.call_id}>"


class Response(Message):
    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason if reason is not None else REASONS.get(status, "Unknown")

    def _head(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} {self.call_id}>"


def make_response(
    req: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> Response:
    """A response to ``req`` (§8.2.6): Via, From, To, Call-ID and CSeq copied; a To-tag
    added when given and the request had none."""
    headers: list[tuple[str, str]] = []
    for k, v in req.headers:
        if k == "via" or k == "from" or k == "call-id" or k == "cseq":
            headers.append((k, v))
        elif k == "to":
            if to_tag is not None and ";tag=" not in v.replace(" ", "").lower():
                v = f"{v};tag={to_tag}"
            headers.append((k, v))
        elif k == "record-route" and 100 < status < 300:
            headers.append((k, v))
    return Response(status, reason, headers)


# --- parsing -----------------------------------------------------------------------------

_REQUIRED = ("via", "from", "to", "call-id", "cseq")
# Out-of-dialog requests whose Request-URI is routed on: parsed and checked at once.
_URI_CHECKED = frozenset({"INVITE", "REGISTER", "OPTIONS", "SUBSCRIBE", "MESSAGE", "REFER"})
_KNOWN_NAMES = frozenset(
    {
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "contact",
        "max-forwards",
        "content-type",
        "content-length",
        "route",
        "record-route",
        "allow",
        "supported",
        "user-agent",
        "server",
        "expires",
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "subject",
        "session-expires",
        "min-se",
        "require",
        "event",
        "refer-to",
        "referred-by",
        "date",
    }
)


def parse(data: bytes, *, fast: bool = True) -> Request | Response:
    """One message from a datagram, or from a stream framed by ``StreamFramer``.

    The header section of a well-formed message is cut in Rust (``_core.sip_split``); any
    message it declines (bare LFs, folded lines, bad header lines, not UTF-8) takes the
    Python path below, which knows every rule. ``fast=False`` forces the Python path."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ParseError("message too large")
    split = sip_split(data) if fast else None
    lines: list[str] | None = None
    headers: list[tuple[str, str]] | None = None
    if split is not None:
        start, headers, body = split
    else:
        start, lines, body = _split_slow(data)
    msg: Request | Response
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2 or parts[0] != SIP_VERSION:
            raise ParseError(f"bad status line {start[:60]!r}")
        if not parts[1].isdigit() or len(parts[1]) != 3 or not 100 <= int(parts[1]) <= 699:
            raise ParseError(f"bad status code {parts[1][:10]!r}")
        msg = Response(int(parts[1]), parts[2] if len(parts) > 2 else "")
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not _TOKEN.match(parts[0]):
            raise ParseError(f"bad request line {start[:60]!r}")
        if parts[2] != SIP_VERSION:
            raise ParseError(f"unsupported version {parts[2][:20]!r}")
        msg = Request(parts[0].upper(), parts[1])
        if msg.method in _URI_CHECKED:
            try:
                msg.uri  # noqa: B018 - checked now where routing will read it
            except ValueError as e:
                _fill(msg, headers, lines, lenient=True)
                raise ParseError(f"bad Request-URI: {e}", _if_answerable(msg)) from None
        elif parts[1][:4].lower() not in ("sip:", "sips", "tel:"):
            _fill(msg, headers, lines, lenient=True)
            raise ParseError("bad Request-URI: unsupported scheme", _if_answerable(msg))

    _fill(msg, headers, lines, lenient=False)

    missing = [h for h in _REQUIRED if msg.get(h) is None]
    if missing:
        raise ParseError(
            "missing " + ", ".join(display_name(h) for h in missing) + " header",
            _if_answerable(msg),
        )
    try:
        num, method = msg.cseq
    except ValueError:
        raise ParseError("bad CSeq header", _if_answerable(msg)) from None
    if not 0 <= num < 2**31 or not method:
        raise ParseError("bad CSeq header", _if_answerable(msg))
    if isinstance(msg, Request) and method != msg.method:
        raise ParseError("CSeq method does not match the request method", _if_answerable(msg))
    try:
        msg.vias  # noqa: B018 - parsed now so a bad Via is refused here
        if isinstance(msg, Request) and msg.method in _URI_CHECKED:
            msg.from_.uri  # noqa: B018
            msg.to.uri  # noqa: B018
        else:
            msg.from_  # noqa: B018
            msg.to  # noqa: B018
    except ValueError as e:
        raise ParseError(str(e), _if_answerable(msg)) from None

    clen = msg.get("content-length")
    if clen is not None:
        clen = clen.strip()
        if not clen.isdigit():
            raise ParseError("bad Content-Length", _if_answerable(msg))
        n = int(clen)
        if n > len(body):
            raise ParseError(
                f"Content-Length {n} is more than the {len(body)} body bytes received",
                _if_answerable(msg),
            )
        body = body[:n]  # §18.3: on UDP extra bytes after Content-Length are discarded
    msg.body = body
    return msg


def _split_slow(data: bytes) -> tuple[str, list[str], bytes]:
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body = data[:end], data[end + 4 :]
        sep = "\r\n"
    else:
        end = data.find(b"\n\n")  # bare LF line ends: tolerated on input (§7.5 robustness)
        if end < 0:
            head, body = data, b""
        else:
            head, body = data[:end], data[end + 2 :]
        sep = "\n"
    text = head.decode("utf-8", "surrogateescape")
    if sep == "\r\n" and text.count("\n") != text.count("\r\n"):
        text = text.replace("\r\n", "\n")
        sep = "\n"
    lines = text.split(sep)
    # RFC 3261 §7.5: CRLFs before the start line are ignored.
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise ParseError("empty message")
    return lines[0], lines, body


def _fill(
    msg: Message, headers: list[tuple[str, str]] | None, lines: list[str] | None, *, lenient: bool
) -> None:
    if headers is not None:
        msg.headers = headers
        msg._cache.clear()
    elif lines is not None:
        _fill_headers(msg, lines, lenient=lenient)


def _if_answerable(msg: Message) -> Request | None:
    """The request, if a 400 can be addressed back (it has a usable Via and the rest)."""
    if not isinstance(msg, Request) or msg.method == "ACK":
        return None
    try:
        if not msg.vias or msg.get("call-id") is None:
            return None
        msg.cseq  # noqa: B018
    except ValueError:
        return None
    if msg.get("from") is None or msg.get("to") is None:
        return None
    return msg


def _fill_headers(msg: Message, lines: list[str], *, lenient: bool) -> None:
    headers = msg.headers
    bad: str | None = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not headers:
                if lenient:
                    continue
                raise ParseError("continuation line before any header")
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip())  # §7.3.1: folding is one SP
            continue
        if not line:
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or (name not in _KNOWN_NAMES and (not name or not _TOKEN.match(name))):
            # read on, so that the 400 can carry the headers that come after this line
            bad = bad or f"bad header line {line[:40]!r}"
            continue
        if len(name) == 1:
            name = COMPACT.get(name, name)
        headers.append((name, value.strip()))
        if len(headers) > MAX_HEADERS:
            raise ParseError("too many headers")
    if bad is not None and not lenient:
        raise ParseError(bad, _if_answerable(msg))


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (§18.3), keep-alive CRLFs skipped.

    ``feed`` returns whole messages as bytes; a framing error (no or bad Content-Length,
    oversize) raises ParseError and the connection must be closed, as the stream has lost
    its place.
    """

    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.buf = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out: list[bytes] = []
        while True:
            # keep-alives (RFC 5626 §3.5.1): CRLF pairs between messages
            while self.buf[:2] == b"\r\n":
                del self.buf[:2]
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > self.limit:
                    raise ParseError("header section too large")
                return out
            head = bytes(self.buf[:end])
            m = _CLEN.search(head)
            if m is None:
                raise ParseError("message on a stream without Content-Length")
            n = int(m.group(1))
            total = end + 4 + n
            if total > self.limit:
                raise ParseError("message too large")
            if len(self.buf) < total:
                return out
            out.append(bytes(self.buf[:total]))
            del self.buf[:total]


_CLEN = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d{1,9})[ \t]*$")
