"""Outbound campaigns' pacing, from the Rust dialer core (``core-rs/dialer``).

``DialerPacer`` is what the campaign manager asks, at least every 250 ms, how many numbers
to dial now, after feeding it the campaign's events (operators free or busy, calls placed,
answered by a person or a machine, connected, abandoned). Modes: preview, progressive,
power (fixed ratio) and predictive, which keeps the abandon rate under the legal ceiling
(3%: abandoned over live answers, 24 hours with detection false positives counted in, and
30 days) and falls back to one call per free operator when that budget is spent.

``simulate_campaign`` runs seeded campaign days of a scenario under a pacer. Scenario keys
(all optional; the defaults are the standard 50-operator, 8-hour day): agents, day_hours,
p_live, p_machine, p_busy, ring_mean, ring_sd, no_answer_after (≥ 15 s), talk_mean and
talk_sd (log-normal) or talk_min and talk_max (uniform), wrap, amd_detects_machine,
amd_false_positive, connect_window, detect_seconds (answer to detection's verdict), drift
(answer-rate multipliers applied in turn), drift_every (seconds).
"""

from ccorch._core import DialerPacer, simulate_campaign

__all__ = ["DialerPacer", "simulate_campaign"]
