"""Running one :class:`~lossmooth.settings.contract.Phase`: the part of the shared runner that touches
the engine.

Per phase: pad the run axis to a multiple of the device count (repeating the last run) and shard it
over the mesh (a phase that splits its batch: over a ``(runs, shard)`` mesh, each run spread over the
devices its runs leave over, :mod:`lossmooth.core.sharding`); start compiling what the phase needs later; evaluate the state at the phase's start;
run the chunks (:func:`lossmooth.core.engine.run_loop`, resuming from the phase's checkpoint); drop the
padding; put the start's evaluation in front of the curves as step 0 (``lam`` there is each run's
schedule at t = 0; a training metric has no value before the first update: NaN); add the phase's
host-side metrics. After every chunk the engine calls the phase's hooks (:mod:`lossmooth.runner.hooks`).
Nothing here writes files: :mod:`lossmooth.runner.sink` does.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time

import jax
import numpy as np

from lossmooth.core import engine, sharding
from lossmooth.core.objective import RUN_AXIS
from lossmooth.runner.hooks import Hooks
from lossmooth.runner.memory import trim_heap
from lossmooth.settings.contract import Phase, PhaseResult


def blowups(metrics: dict, names: tuple, factor: float, offset: int, reference: dict | None = None) -> np.ndarray:
    """Per run, the first evaluation (an index into the chunks' evaluations: column ``offset`` of the
    curves is the first) where a loss in ``names`` exceeds ``factor`` times its value at the phase's
    start: ``reference[name][run]`` where given (a phase that records no start evaluation), else the
    loss's first finite value (its value at the switch where the phase evaluated it): a finite
    blow-up; -1 where none."""
    n = len(next(iter(metrics.values())))
    first = np.full((n,), -1, np.int64)
    for name in names:
        if name not in metrics:
            continue
        v = np.asarray(metrics[name], np.float64)
        ref = None if reference is None or name not in reference else np.asarray(reference[name], np.float64)
        for i in range(n):
            finite = np.flatnonzero(np.isfinite(v[i]))
            start = ref[i] if ref is not None and np.isfinite(ref[i]) else (v[i, finite[0]] if len(finite) else np.nan)
            if not np.isfinite(start) or start <= 0:
                continue
            over = np.flatnonzero(np.isfinite(v[i]) & (v[i] > factor * start))
            over = over[over >= offset] - offset
            if len(over) and (first[i] < 0 or over[0] < first[i]):
                first[i] = over[0]
    return first


def place_phase(phase: Phase, n: int, mesh=None, shard: int | str = "auto", lanes: int = 1):
    """``(state, hp, mesh)`` as the phase's programs take them. A phase whose setting splits its batch
    (``phase.split``) gets a ``(runs, shard)`` mesh (:func:`lossmooth.core.sharding.phase_mesh`): its
    runs over ``runs``, each run's large state leaves and batch rows over ``shard``; its programs run
    with that mesh set. Other phases shard their run axis over the devices as before (mesh None:
    their programs set none). ``lanes``: on one device the run axis is padded to a multiple of it
    (:data:`lossmooth.core.engine.LANES`)."""
    state, hp = phase.state, phase.hp
    if mesh is not None and phase.split:
        pmesh = sharding.phase_mesh(mesh.devices.flat, n, shard, pad_runs=phase.shard)
        target = engine.padded_size(n, pmesh.shape[RUN_AXIS])
        state, hp = engine.pad_runs(state, n, target), engine.pad_runs(hp, n, target)
        return sharding.place(state, pmesh), sharding.place(hp, pmesh, shard_leaves=False), pmesh
    if phase.shard:
        state, hp = engine.place_runs(state, n, mesh, lanes), engine.place_runs(hp, n, mesh, lanes)
    return state, hp, None


def run_phase(phase: Phase, mesh=None, callbacks=(), checkpoints=None, tag: str = "loop",
              lam0: np.ndarray | None = None, diverge: tuple | None = None, on_start=None,
              shard: int | str = "auto", trim: bool = False, lanes: int = 1) -> PhaseResult:
    """Run ``phase``; ``callbacks`` (a :class:`~lossmooth.runner.hooks.Hooks`, or callables run after
    every chunk) get ``(chunk index, padded state, chunk metrics)`` (the metrics with the phase's
    derived ones added); ``lam0``: each run's lam at t = 0;
    ``diverge = (loss names, factor)``: a run whose loss exceeds ``factor`` times its value at the
    phase's start (the switch; a source phase: ``phase.reference``'s evaluation of its start) is
    diverged from there, as a run whose metrics turn non-finite is. ``on_start`` gets the
    evaluation at the phase's start (``{metric: [runs]}``, with ``lam`` at t = 0) before the chunks run.
    ``shard``: devices per run of a phase that splits its batch (:func:`place_phase`). ``trim`` (a
    setting that :attr:`~lossmooth.settings.contract.Setting.returns_memory`): the heap's free pages go
    back to the OS after the evaluation at the start, after compiling the first chunk's program (compiled
    before it runs, so the compiler's leftovers are gone before its buffers are allocated) and after
    every chunk (:func:`lossmooth.runner.memory.trim_heap`)."""
    t0 = time.time()
    n = int(jax.tree.leaves(phase.state)[0].shape[0])
    if lanes > 1 and phase.later is not None:
        # the source-free program starts where every run of the batch is past its ramp: a point the
        # batch's other runs would move (its evaluations round differently in the last bit); the chunk
        # program skips the source branch by itself once no run needs it (lax.cond), so it runs throughout
        phase = dataclasses.replace(phase, later=None, ahead=None)
    state, hp, pmesh = place_phase(phase, n, mesh, shard, lanes)
    hooks = after_chunk(phase, callbacks if isinstance(callbacks, Hooks) else Hooks(callbacks), trim)
    with contextlib.nullcontext() if pmesh is None else jax.set_mesh(pmesh):
        start, reference = _start(phase, n, state, hp, lam0, diverge, on_start, trim)
        try:
            res = engine.run_loop(phase.chunk, state, hp, phase.data, phase.n_chunks, [hooks], later=phase.later,
                                  checkpoints=checkpoints, tag=tag, save=phase.checkpoint, first=phase.first)
        finally:
            if phase.close is not None:
                phase.close()
        return _result(phase, n, res, start, reference, lam0, diverge, t0)


def after_chunk(phase: Phase, hooks: Hooks, trim: bool) -> Hooks:
    """What the engine calls after every chunk, in order: the phase's own ``on_chunk``, ``hooks`` on
    the chunk's metrics with the phase's derived ones added, the heap trim (``trim``)."""
    out = Hooks()
    if phase.on_chunk is not None:
        out.add_hook(lambda c, s, m: phase.on_chunk(c, s))
    out.add_hook(lambda c, s, m: hooks(c, s, phase.derive(m) if phase.derive is not None else m))
    if trim:
        out.add_hook(lambda c, s, m: trim_heap())
    return out


def _start(phase, n, state, hp, lam0, diverge, on_start, trim) -> tuple:
    """Before the chunks: start compiling what comes later, evaluate the phase's start (and, for the
    divergence check only, ``phase.reference``'s losses), compile the first chunk's program and trim
    the heap where ``trim``, hand the start's evaluation to ``on_start``. Returns ``(start, reference)``."""
    if phase.ahead is not None:
        phase.ahead(state, hp)
    start = None if phase.evaluate is None else engine.to_host(phase.evaluate(state, hp, phase.data))
    reference = None
    if diverge is not None and phase.reference is not None:  # the start's losses, compared with, never recorded
        reference = {k: np.asarray(v)[:n] for k, v in engine.to_host(phase.reference(state, hp, phase.data)).items()
                     if k in diverge[0]}
    if trim:
        program = phase.first or (phase.later[1] if phase.later is not None and phase.later[0] == 0 else phase.chunk)
        if hasattr(program, "lower"):  # compiled now (and kept in jit's cache), not inside the first call
            program.lower(state, hp, phase.data).compile()
        trim_heap()
    if start is not None and on_start is not None:
        first = {k: np.asarray(v)[:n] for k, v in start.items()}
        on_start(first if lam0 is None else {**first, "lam": np.asarray(lam0)})
    return start, reference


def _with_start(metrics: dict, n: int, start: dict | None, lam0) -> dict:
    """The chunks' curves of the ``n`` runs, with the start's evaluation in front where there is one
    (``lam``: ``lam0``; a metric the start lacks: NaN)."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v)[:n]
        if start is not None:
            if k in start:
                first = np.asarray(start[k])[:n]
            elif k == "lam" and lam0 is not None:
                first = np.asarray(lam0)
            else:
                first = np.full((n,), np.nan, v.dtype if np.issubdtype(v.dtype, np.floating) else np.float32)
            v = np.concatenate([first.reshape(n, 1).astype(v.dtype), v], axis=1)
        out[k] = v
    return out


def _result(phase, n, res, start, reference, lam0, diverge, t0) -> PhaseResult:
    """The loop's result unpadded, the start in front of its curves, each run's first diverged
    evaluation: non-finite (the engine's) or a blow-up over the factor, whichever comes first."""
    metrics = _with_start(res.metrics, n, start, lam0)
    if phase.derive is not None:
        metrics = phase.derive(metrics)
    n_evals = phase.n_chunks * phase.evals_per_chunk
    steps = np.arange(1, n_evals + 1, dtype=np.int64) * phase.eval_every
    if start is not None:
        steps = np.concatenate([[0], steps])
    nonfinite = np.asarray(res.diverged_at)[:n]
    diverged, blown = nonfinite, np.full((n,), -1, np.int64)
    if diverge is not None and metrics:
        blown = blowups(metrics, diverge[0], diverge[1], 1 if start is not None else 0, reference)
        diverged = np.where((nonfinite < 0) | ((blown >= 0) & (blown < nonfinite)), blown, nonfinite)
    return PhaseResult(state=engine.unpad_runs(res.state, n), metrics=metrics, steps=steps,
                       diverged_at=diverged, seconds=time.time() - t0,
                       blown_up=(blown >= 0) & ((nonfinite < 0) | (blown < nonfinite)),
                       dense={k: np.asarray(v)[:n] for k, v in res.extra["dense"].items()}
                       if res.extra.get("dense") else None)
