"""A ramp that cannot end: ``T`` against the number of gradient updates the adaptation makes.

A ramp longer than the adaptation never reaches ``lam = 1``: such a run is not the method it is named
after for part of its length, so the run warns in one line and its rows are marked (``runs.json``:
``ramp_unfinished``; the tables say so). A ramp more than :data:`MAX_RATIO` times longer than the
adaptation stays near its start throughout (``schedule.T=1e12`` makes "loss smoothing" pure replay):
it cannot be meant and is refused. An adaptive schedule's ``T`` is only its longest length (it ends
when the training says so), so neither applies to it.
"""
from __future__ import annotations

import numpy as np

from lossmooth.core.schedules import ADAPTIVE
from lossmooth.errors import ConfigError

MAX_RATIO = 100.0


def ends(spec) -> list[tuple[str, float]]:
    """``(method, T)`` for every fixed ramp of the config, swept lengths included."""
    out = []
    for name, m in spec.methods.items():
        if not m.schedule.is_ramp or m.schedule.kind in ADAPTIVE:
            continue
        Ts = spec.sweep.get("T") or [float(m.schedule.T)]
        out += [(name, float(T)) for T in Ts]
    return out


def check(updates: dict[str, int], spec, warn=print) -> dict[str, int]:
    """Refuse a ramp that cannot be meant, warn about one that does not end within the adaptation;
    ``updates``: ``{line: gradient updates of its adaptation}`` (returned)."""
    for line, u in updates.items():
        where = f" ({line})" if line else ""
        for name, T in ends(spec):
            if T > MAX_RATIO * max(u, 1):
                raise ConfigError(f"method.{name}.schedule.T: a ramp of {T:g} updates in an adaptation of {u} "
                                  f"updates{where} stays near its start (lam reaches at most {u / T:.2g} of the way); "
                                  f"use a T of at most {MAX_RATIO:g} x the adaptation, or a constant mix (replay_mix)")
            if T > u:
                warn(f"lossmooth: warning: method {name}'s ramp (T={T:g} updates) outlasts the adaptation "
                     f"({u} updates{where}): lam never reaches 1; its rows are marked ramp_unfinished")
    return updates


def unfinished(method, updates: int) -> bool:
    """Whether ``method``'s fixed ramp ends after the adaptation's ``updates`` updates (T > updates)."""
    return (bool(method.schedule.is_ramp) and method.schedule.kind not in ADAPTIVE
            and float(np.asarray(method.schedule.T)) > updates)
