"""SDP (RFC 4566) for audio calls, and the offer/answer rules of RFC 3264 we need.

We speak G.711 (PCMU 0, PCMA 8) with telephone-event (RFC 4733) on one audio stream.
Other media lines in an offer are answered with port 0 (declined), as §6 requires.

SRTP keyed by SDES (RFC 4568): ``a=crypto`` lines with AES_CM_128_HMAC_SHA1_80, on
RTP/SAVP streams, or on RTP/AVP ones ("best effort", as many phones offer it). A leg's
policy says what it takes: ``off`` (plain RTP; crypto lines of an AVP offer are ignored),
``optional`` (SRTP when the peer offers or accepts it) or ``required`` (no SRTP, no call).
"""

from __future__ import annotations

import base64
import binascii
import itertools
from dataclasses import dataclass, field

LAWS = {"PCMU": 0, "PCMA": 8}
_STATIC = {0: "PCMU", 8: "PCMA"}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_REVERSE = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
_session_ids = itertools.count(1)
SUITE = "AES_CM_128_HMAC_SHA1_80"
KEY_LEN = 30  # master key (16) and salt (14)
SRTP_POLICIES = ("off", "optional", "required")


@dataclass(frozen=True, slots=True)
class Crypto:
    """One side's SDES key for the stream: the offer's tag and 30 bytes of key and salt."""

    tag: int
    key: bytes

    def line(self) -> str:
        return f"a=crypto:{self.tag} {SUITE} inline:{base64.b64encode(self.key).decode()}"

    def __repr__(self) -> str:
        return f"Crypto(tag={self.tag}, key=...)"  # keys stay out of logs


def _crypto(value: str) -> Crypto | None:
    """An ``a=crypto`` value we can use (our suite, a single inline key), else None."""
    parts = value.split()
    if len(parts) < 3 or not parts[0].isdigit() or parts[1] != SUITE:
        return None
    for param in parts[2].split(";"):
        if not param.startswith("inline:"):
            return None
        key_text = param[7:].split("|")[0]  # lifetime and MKI after '|' are not used
        try:
            key = base64.b64decode(key_text + "=" * (-len(key_text) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(key) == KEY_LEN:
            return Crypto(int(parts[0]), key)
    return None


class SdpError(ValueError):
    """An SDP body we cannot use; the reason says why."""


@dataclass(slots=True)
class MediaLine:
    kind: str
    port: int
    proto: str
    formats: list[str]
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> "PCMU/8000"
    direction: str | None = None
    conn: str | None = None
    ptime: int | None = None
    rtcp_port: int | None = None
    crypto: list[Crypto] = field(default_factory=list)  # usable a=crypto lines, in order


@dataclass(slots=True)
class Sdp:
    origin: str
    conn: str | None
    media: list[MediaLine]
    direction: str = "sendrecv"  # session level

    @classmethod
    def parse(cls, body: bytes) -> Sdp:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not UTF-8") from None
        origin = ""
        conn: str | None = None
        media: list[MediaLine] = []
        direction = "sendrecv"
        seen_v = False
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue
            if len(line) < 2 or line[1] != "=":
                raise SdpError(f"bad SDP line {line[:40]!r}")
            t, v = line[0], line[2:]
            if t == "v":
                seen_v = True
            elif t == "o":
                origin = v
            elif t == "c":
                parts = v.split()
                if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
                    raise SdpError(f"bad c= line {v[:40]!r}")
                addr = parts[2].split("/")[0]
                if media:
                    media[-1].conn = addr
                else:
                    conn = addr
            elif t == "m":
                parts = v.split()
                if len(parts) < 4:
                    raise SdpError(f"bad m= line {v[:40]!r}")
                port_text = parts[1].split("/")[0]
                if not port_text.isdigit() or int(port_text) > 65535:
                    raise SdpError(f"bad m= port {parts[1][:10]!r}")
                media.append(MediaLine(parts[0], int(port_text), parts[2], parts[3:]))
            elif t == "a":
                name, _, value = v.partition(":")
                target = media[-1] if media else None
                if name in DIRECTIONS:
                    if target is not None:
                        target.direction = name
                    else:
                        direction = name
                elif name == "rtpmap" and target is not None:
                    pt, _, enc = value.partition(" ")
                    if pt.isdigit():
                        target.rtpmap[int(pt)] = enc.strip()
                elif name == "ptime" and target is not None and value.strip().isdigit():
                    target.ptime = int(value.strip())
                elif name == "crypto" and target is not None:
                    c = _crypto(value)
                    if c is not None:
                        target.crypto.append(c)
                elif name == "rtcp" and target is not None:
                    p = value.split()[0] if value.split() else ""
                    if p.isdigit():
                        target.rtcp_port = int(p)
        if not seen_v:
            raise SdpError("SDP without v= line")
        return cls(origin, conn, media, direction)

    def audio_direction(self) -> str:
        """The first audio line's direction, else the session's (a browser's re-offer,
        which the media engine answers: only its hold state is read here)."""
        audio = next((m for m in self.media if m.kind == "audio"), None)
        return (audio.direction if audio is not None else None) or self.direction


@dataclass(frozen=True, slots=True)
class AudioAnswer:
    """What we agreed for the audio stream: where to send, which law, DTMF payload type."""

    host: str
    port: int
    rtcp_port: int | None
    law: str
    pt: int
    dtmf_pt: int | None
    direction: str  # the peer's direction (sendonly from the peer means we are put on hold)
    ptime: int | None
    crypto: Crypto | None = None  # the peer's SRTP key: the stream is SRTP
    savp: bool = False  # the stream's profile is RTP/SAVP


def choose_audio(
    offer: Sdp, prefer: tuple[str, ...] = ("PCMU", "PCMA"), srtp: str = "optional"
) -> tuple[int, AudioAnswer]:
    """Pick the first acceptable audio stream and the first offered codec we support, under
    the leg's SRTP policy (see the module's text).

    Returns the index of the media line and the agreement; raises SdpError (→ 488) if none.
    """
    srtp_missing = False
    for idx, m in enumerate(offer.media):
        if m.kind != "audio" or m.port == 0 or m.proto not in ("RTP/AVP", "RTP/SAVP"):
            continue
        savp = m.proto == "RTP/SAVP"
        crypto = m.crypto[0] if m.crypto and (savp or srtp != "off") else None
        if (savp or srtp == "required") and crypto is None:
            srtp_missing = True
            continue
        law = None
        pt = None
        dtmf = None
        for f in m.formats:
            if not f.isdigit():
                continue
            p = int(f)
            enc = m.rtpmap.get(p, _STATIC.get(p, ""))
            name, _, rate = enc.partition("/")
            name = name.upper()
            if name in prefer and law is None and (not rate or rate.startswith("8000")):
                law, pt = name, p
            elif name == "TELEPHONE-EVENT" and rate.startswith("8000") and dtmf is None:
                dtmf = p
        if law is None or pt is None:
            continue
        host = m.conn or offer.conn
        if host is None:
            raise SdpError("no c= connection address for the audio stream")
        return idx, AudioAnswer(
            host,
            m.port,
            m.rtcp_port,
            law,
            pt,
            dtmf,
            m.direction or offer.direction,
            m.ptime,
            crypto,
            savp,
        )
    if srtp_missing:
        raise SdpError(f"SRTP required: no audio stream with a=crypto {SUITE}")
    raise SdpError("no audio stream with PCMU or PCMA at 8000 Hz")


def build(
    ip: str,
    port: int,
    *,
    codecs: list[tuple[int, str]],
    dtmf_pt: int | None,
    direction: str = "sendrecv",
    session: tuple[int, int] | None = None,
    declined: list[MediaLine] | None = None,
    audio_index: int = 0,
    crypto: Crypto | None = None,
    savp: bool = False,
) -> bytes:
    """An SDP body for one audio stream (plus ``declined`` lines with port 0, in order)."""
    sid, ver = session or (next(_session_ids), 1)
    fam = "IP6" if ":" in ip else "IP4"
    lines = [
        "v=0",
        f"o=ccorch {sid} {ver} IN {fam} {ip}",
        "s=ccorch",
        f"c=IN {fam} {ip}",
        "t=0 0",
    ]
    audio = [
        f"m=audio {port} {'RTP/SAVP' if savp else 'RTP/AVP'} "
        + " ".join(str(pt) for pt, _ in codecs)
        + (f" {dtmf_pt}" if dtmf_pt is not None else ""),
    ]
    for pt, name in codecs:
        audio.append(f"a=rtpmap:{pt} {name}/8000")
    if dtmf_pt is not None:
        audio.append(f"a=rtpmap:{dtmf_pt} telephone-event/8000")
        audio.append(f"a=fmtp:{dtmf_pt} 0-16")
    audio.append("a=ptime:20")
    audio.append(f"a={direction}")
    if crypto is not None:
        audio.append(crypto.line())
    blocks: list[list[str]] = [
        [f"m={d.kind} 0 {d.proto} {' '.join(d.formats)}"] for d in declined or []
    ]
    blocks.insert(min(audio_index, len(blocks)), audio)
    for b in blocks:
        lines.extend(b)
    return ("\r\n".join(lines) + "\r\n").encode()


def answer_direction(offered: str, want_hold: bool = False) -> str:
    d = _REVERSE.get(offered, "sendrecv")
    if want_hold:
        return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(d, d)
    return d


def offer(
    ip: str,
    port: int,
    *,
    session: tuple[int, int] | None = None,
    direction: str = "sendrecv",
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    srtp_key: bytes | None = None,
    savp: bool = False,
) -> bytes:
    """Our offer to a phone or trunk: G.711 in ``codecs`` order, and telephone-event 101;
    with ``srtp_key``, our SDES key (tag 1), on RTP/SAVP when ``savp``."""
    return build(
        ip,
        port,
        codecs=[(LAWS[c], c) for c in codecs],
        dtmf_pt=101,
        direction=direction,
        session=session,
        crypto=Crypto(1, srtp_key) if srtp_key is not None else None,
        savp=savp and srtp_key is not None,
    )


def answer(
    ip: str,
    port: int,
    offer_sdp: Sdp,
    *,
    session: tuple[int, int] | None = None,
    hold: bool = False,
    srtp: str = "optional",
    srtp_key: bytes | None = None,
) -> tuple[bytes, AudioAnswer]:
    """Our answer to ``offer_sdp``: the chosen codec, DTMF if offered, the reverse direction;
    for an SRTP stream our key ``srtp_key`` under the offer's tag, in its profile."""
    idx, agreed = choose_audio(offer_sdp, srtp=srtp)
    if agreed.crypto is not None and (srtp_key is None or len(srtp_key) != KEY_LEN):
        raise SdpError("an SRTP stream needs our 30-byte key")
    declined = [m for i, m in enumerate(offer_sdp.media) if i != idx]
    body = build(
        ip,
        port,
        codecs=[(agreed.pt, agreed.law)],
        dtmf_pt=agreed.dtmf_pt,
        direction=answer_direction(agreed.direction, hold),
        session=session,
        declined=declined,
        audio_index=idx,
        crypto=Crypto(agreed.crypto.tag, srtp_key)
        if agreed.crypto is not None and srtp_key is not None
        else None,
        savp=agreed.savp,
    )
    return body, agreed
