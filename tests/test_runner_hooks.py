"""Hooks with a period (:mod:`lossmooth.runner.hooks`): a hook added with ``every=N`` runs after
chunks N - 1, 2N - 1, ..., in the order the hooks were added, and the phase's own work comes first."""
import numpy as np
import pytest

from lossmooth.runner.hooks import Hooks
from lossmooth.runner.phase import after_chunk
from lossmooth.settings.contract import Phase


def test_periods_and_order():
    calls = []
    hooks = Hooks().add_hook(lambda c, s, m: calls.append(("a", c)))
    hooks.add_hook(lambda c, s, m: calls.append(("b", c)), every=2)
    for c in range(5):
        hooks(c, None, {})
    assert calls == [("a", 0), ("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 3), ("a", 4)]
    with pytest.raises(ValueError, match="positive integer"):
        hooks.add_hook(print, every=0)


def test_a_phase_runs_its_on_chunk_then_the_hooks_on_derived_metrics():
    calls = []
    phase = Phase(state=None, hp=None, chunk=None, n_chunks=2, eval_every=1,
                  on_chunk=lambda c, s: calls.append(("on_chunk", c)),
                  derive=lambda m: {**m, "double": 2 * m["x"]})
    seen = Hooks().add_hook(lambda c, s, m: calls.append(("hook", c, sorted(m), float(m["double"][0, 0]))))
    after_chunk(phase, seen, trim=False)(0, None, {"x": np.ones((1, 1))})
    assert calls == [("on_chunk", 0), ("hook", 0, ["double", "x"], 2.0)]
