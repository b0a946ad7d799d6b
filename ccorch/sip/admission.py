"""Admission of new calls by queue delay. Pure: times in, a decision out.

Each UDP datagram carries the kernel's arrival time; the time it waited before the node read
it is its queue delay. A node that takes more calls than it can set up builds a standing
queue: every request, retransmissions and BYEs included, waits behind the backlog, callers
retransmit (T1 = 500 ms), and the load doubles exactly when there is no room for it (the
collapse measured before). Refusing new INVITEs early keeps the queue short, so the calls
already accepted keep their answers in time.

The rule follows CoDel's: a queue is *standing* when even its shortest delay over an
interval stayed above the target (a burst drains within an interval; a standing queue does
not). While it stands, new INVITEs get 503 with Retry-After; the first datagram that waited
less than the target ends it. An INVITE that waited longer than ``stale`` is refused on its
own (its caller has retransmitted it already or is about to). Retransmissions of accepted
INVITEs, and every in-dialog request, are never refused here (the caller of this class
decides what a new call is).
"""

from __future__ import annotations


class Admission:
    def __init__(self, *, target: float = 0.05, interval: float = 0.1, stale: float = 0.25) -> None:
        self.target = target
        self.interval = interval
        self.stale = stale
        self.standing = False
        self._window_start: float | None = None  # since when every datagram waited long
        self.last_delay = 0.0
        self.refused = 0

    def observe(self, now: float, queued: float) -> None:
        """A datagram that waited ``queued`` seconds in the kernel was read at ``now``."""
        self.last_delay = queued
        if queued < self.target:
            # the queue emptied at least once: whatever stood has drained
            self.standing = False
            self._window_start = None
            return
        # every datagram since the window began waited at least the target
        if self._window_start is None:
            self._window_start = now
        elif now - self._window_start >= self.interval:
            self.standing = True

    def refuses(self, queued: float) -> bool:
        """Would a new call whose INVITE waited ``queued`` seconds be refused? (No count.)"""
        return self.standing or queued > self.stale

    def admit(self, queued: float) -> bool:
        """May a new call whose INVITE waited ``queued`` seconds start now?"""
        if self.refuses(queued):
            self.refused += 1
            return False
        return True
