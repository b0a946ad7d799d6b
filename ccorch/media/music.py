"""Music on hold: what callers hear while they wait in a queue or an operator holds them."""

from __future__ import annotations

_MUSIC: bytes | None = None


def default_music() -> bytes:
    """A quiet four-second tune (8 kHz PCM) looped while callers wait, when the flow names
    no music file: a few soft sine notes with gentle fades, so it never clicks on the loop."""
    global _MUSIC
    if _MUSIC is None:
        import array
        import math

        notes = [523.25, 659.25, 783.99, 659.25, 587.33, 698.46, 880.0, 698.46]
        out = array.array("h")
        per = 4000  # 0.5 s a note
        for f in notes:
            for i in range(per):
                env = min(1.0, i / 400, (per - i) / 400)
                out.append(int(3000 * env * math.sin(2 * math.pi * f * i / 8000)))
        _MUSIC = out.tobytes()
    return _MUSIC
