"""Host work between compiled chunks, as hooks with a period (levanter's ``trainer.add_hook(fn, every=N)``).

A hook is ``fn(chunk, state, metrics)``: ``chunk`` the index of the chunk just run (from 0), ``state``
the padded state after it, ``metrics`` its metrics (``{name: [runs, evaluations of the chunk]}``, with
the phase's derived ones). A hook registered with ``every=N`` runs after chunks ``N - 1, 2N - 1, ...``
(``(chunk + 1) % N == 0``), in the order the hooks were added. :func:`lossmooth.runner.phase.run_phase`
calls a phase's hooks after every chunk; :func:`recording` builds the ones every phase of a run has.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lossmooth.runner.records import check_finite


@dataclass(frozen=True)
class Hook:
    fn: Callable
    every: int = 1

    def due(self, chunk: int) -> bool:
        return (chunk + 1) % self.every == 0


class Hooks:
    """An ordered list of :class:`Hook`; calling it runs those due after ``chunk``."""

    def __init__(self, hooks=()):
        self.hooks: list[Hook] = []
        for fn in hooks:
            self.add_hook(fn)

    def add_hook(self, fn: Callable, every: int = 1) -> "Hooks":
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"a hook's period must be a positive integer, got {every!r}")
        self.hooks.append(Hook(fn, every))
        return self

    def __call__(self, chunk: int, state, metrics: dict) -> None:
        for h in self.hooks:
            if h.due(chunk):
                h.fn(chunk, state, metrics)

    def __len__(self) -> int:
        return len(self.hooks)


def recording(sink, ids: list[dict], names: list[str], eval_every: int, bar) -> Hooks:
    """The hooks of one phase of a run, after every chunk: its metric rows to the sink
    (:meth:`lossmooth.runner.sink.RowSink.chunk`), the warning for a run whose metrics turned
    non-finite, one tick of the progress bar."""
    return (Hooks()
            .add_hook(lambda c, s, m: sink.chunk(ids, eval_every, c, m))
            .add_hook(lambda c, s, m: check_finite(m, names, bar))
            .add_hook(lambda c, s, m: bar.update(1)))
