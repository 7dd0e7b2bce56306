"""Phases from pure functions: a setting gives per-run functions (:class:`Steps`) and a
:class:`Policy`; this module compiles them with the engine (:func:`lossmooth.core.engine.make_chunk`),
keeps the compiled programs, and makes the :class:`Phase` the runner runs.

Per run (``state``, ``hp``: one run's, no run axis; ``data``: shared by every run):

    init(hp, data, start) -> state              start: the run's state at the switch (None: a source phase)
    step(state, hp, data, with_source) -> (state, train metrics)      one update
    evaluate(state, hp, data) -> metrics

``hp`` holds ``key`` (the seed's PRNG key), and in an adaptation ``method`` (the run's
:class:`~lossmooth.core.objective.Method`) and ``lr`` (the run's learning rate). The adaptation's
``step`` with ``with_source=False`` is the update of a run whose ``lam`` is 1 for good (no source
branch); the source-free program is derived here from the schedules' ends (``Schedule.ends_at``):
chunk c covers steps ``[c S, (c + 1) S)`` with ``S = eval_every x evals_per_chunk``, so from chunk
``ceil(max_runs ends_at / S)`` on no run needs the source loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lossmooth.core import engine
from lossmooth.errors import ConfigError


@dataclass(frozen=True)
class Policy:
    """How a phase goes through the engine: ``steps`` steps (the setting's step unit) in chunks of
    ``evals_per_chunk`` x (``eval_every`` steps, then an evaluation), so ``n_chunks = steps /
    (eval_every evals_per_chunk)``; ``updates``: the gradient updates it makes (what ``smoothing_T``
    counts; None: ``steps``, for a setting whose steps are updates); ``checkpoint``: whether the
    state between chunks is all in JAX (False: a loop that restarts from its start)."""

    steps: int
    eval_every: int
    evals_per_chunk: int = 1
    updates: int | None = None
    checkpoint: bool = True

    @property
    def n_chunks(self) -> int:
        return self.steps // (self.eval_every * self.evals_per_chunk)

    @property
    def n_updates(self) -> int:
        return self.steps if self.updates is None else self.updates


@dataclass
class Phase:
    """One batch of runs through the engine, as the runner runs it (a :class:`Steps` setting gets it
    from :func:`source_phase` / :func:`adapt_phase`; a setting whose loop the pure form cannot state
    builds it itself).

    ``state`` and ``hp`` have a leading run axis (unpadded); ``data`` is shared by every run. ``chunk``
    runs ``evals_per_chunk`` x (``eval_every`` steps of training, then an evaluation) and returns the
    metrics ``[runs, evals_per_chunk]``; ``later = (first chunk, program)`` runs a program compiled for
    a phase the host knows has begun (every run past its ramp: no source branch). ``evaluate`` (same
    signature as an engine evaluation) gives the values at the phase's start (step 0). ``ahead``
    starts compiling programs needed later, given the padded state and numbers; ``on_chunk`` is called
    after each chunk with the chunk index and the padded state; ``derive`` adds host-side metrics
    to each chunk's (and to the step-0 values). ``checkpoint=False`` where part of the state lives
    outside JAX (host-stepped simulators: such a loop restarts from its start); ``shard=False`` keeps
    the run axis unpadded and on one device; ``close`` runs after the loop, however it ends.
    ``split=True``: the setting's steps pass their batches through
    :func:`lossmooth.core.sharding.split_batch`, so where runs are fewer than devices each run is
    spread over several (its batch data-parallel, its state FSDP-style; with ``shard=False`` the run
    axis stays unpadded and every device shards the one run).
    ``reference``: an evaluation of the phase's start (same signature as ``evaluate``) for a phase that
    records none (a source phase): used only as the value a loss is compared with to mark a run
    diverged, never recorded.
    ``first``: the program for chunk 0 with dense evaluation (:func:`lossmooth.core.engine.make_chunk`'s
    ``dense``): its curves, one evaluation per update from the switch, come back as
    :attr:`PhaseResult.dense`.
    """

    state: Any
    hp: Any
    chunk: Callable
    n_chunks: int
    eval_every: int
    data: Any = None
    evals_per_chunk: int = 1
    later: tuple | None = None
    evaluate: Callable | None = None
    ahead: Callable | None = None
    on_chunk: Callable | None = None
    derive: Callable | None = None
    checkpoint: bool = True
    shard: bool = True
    close: Callable | None = None
    split: bool = False
    first: Callable | None = None
    reference: Callable | None = None

    def __post_init__(self):
        check_data(self.data, "Phase.data")


@dataclass
class PhaseResult:
    """What a phase leaves: the final state and metrics of every run (unpadded), the step of every
    evaluation (0 first where the phase evaluated its start), the first diverged evaluation per run
    (an index into the chunks' evaluations; -1: none), whether that divergence is a finite blow-up of
    a loss (rather than a non-finite metric) and the wall time; ``dense``: the dense evaluation's
    curves (name -> ``[runs, W + 1]``, at updates 0, 1, ..., W) where the phase had one."""

    state: Any
    metrics: dict
    steps: np.ndarray
    diverged_at: np.ndarray
    seconds: float = 0.0
    blown_up: Any = None
    dense: dict | None = None


def check_data(data, where: str) -> None:
    """Every leaf of a phase's shared data is an array (one line naming the leaf and the fix otherwise):
    the engine passes ``data`` to compiled programs as an argument, which takes arrays only."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        if not isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            raise ConfigError(f"{where}{jax.tree_util.keystr(path)}: a {type(leaf).__name__} ({leaf!r:.40}), not an "
                              "array; make it one (jnp.asarray(...)), or keep a fixed number in the spec instead")


@dataclass(eq=False)
class Steps:
    """A phase as pure per-run functions (the module docstring gives their signatures). ``dense``: the
    dense evaluation after every update just after the switch (config ``dense_eval.steps``; the
    spec's ``dense_steps``), absent where the setting has none; ``log``: the metric names of
    ``evaluate`` a source phase records (None: all); ``split``: see :attr:`Phase.split`. The compiled
    programs are kept here, so one ``Steps`` compiles each program once however many batches use it."""

    init: Callable
    step: Callable
    evaluate: Callable
    dense: Callable | None = None
    log: tuple | None = None
    split: bool = False
    _compiled: dict = field(default_factory=dict, repr=False)

    def program(self, key: tuple, make: Callable):
        if key not in self._compiled:
            self._compiled[key] = make()
        return self._compiled[key]

    def chunk(self, policy: Policy, source: bool, signature=None, with_source: bool = True, dense: int = 0):
        """The compiled chunk: of a source phase (``evaluate`` limited to ``log``), or of an adaptation
        of methods of ``signature`` (``with_source=False``: no source branch; ``dense``: the first
        chunk's program with ``dense`` evaluation intervals evaluated after every update)."""
        def make():
            if source:
                ev = self.evaluate if self.log is None else (
                    lambda s, h, d: {k: v for k, v in self.evaluate(s, h, d).items() if k.startswith(self.log)})
                return engine.make_chunk(lambda s, h, d: self.step(s, h, d, True), ev, policy.eval_every,
                                         policy.evals_per_chunk)
            return engine.make_chunk(lambda s, h, d: self.step(s, h, d, with_source), self.evaluate, policy.eval_every,
                                     policy.evals_per_chunk, dense=(dense, self.dense) if dense else None)
        return self.program(("chunk", policy, source, signature, with_source, dense), make)

    def evaluation(self):
        return self.program(("eval",), lambda: engine.make_eval(self.evaluate))


def seed_keys(spec) -> jnp.ndarray:
    """Every seed's PRNG key data (``seed`` .. ``seed + num_seeds - 1``), [num_seeds, 2]."""
    return jnp.stack([jax.random.key_data(jax.random.key(spec.seed + i)) for i in range(spec.num_seeds)])


def source_free_from(runs: list[dict], policy: Policy) -> int | None:
    """The first chunk from which every run has lam = 1 for good (None: never, a constant mix)."""
    ends = [r["method"].schedule.ends_at for r in runs]
    if any(e is None for e in ends):
        return None
    return int(-(-max(ends) // (policy.eval_every * policy.evals_per_chunk)))


def init_runs(steps: Steps, hp: dict, data, start) -> dict:
    """Every run's initial state ``vmap(init)(hp, start)``, as one compiled program. Run op by op, each
    operation compiles on its own for its shapes (a truncated normal per parameter shape takes seconds
    of XLA's time on CPU); compiled whole, the same operations give the same bits in a fraction of it."""
    return jax.jit(jax.vmap(steps.init, in_axes=(0, None, 0)))(hp, data, start)


def source_phase(steps: Steps, policy: Policy, spec, data) -> Phase:
    """Every seed from ``init`` through the source phase; its start is evaluated only as the
    divergence reference."""
    hp = {"key": seed_keys(spec)}
    state = init_runs(steps, hp, data, None)
    return Phase(state=state, hp=hp, chunk=steps.chunk(policy, True), data=data, n_chunks=policy.n_chunks,
                 eval_every=policy.eval_every, evals_per_chunk=policy.evals_per_chunk, checkpoint=policy.checkpoint,
                 split=steps.split, reference=steps.evaluation())


def adapt_phase(steps: Steps, policy: Policy, spec, runs: list[dict], source, data, switch: int = 0) -> Phase:
    """One batch of ``runs`` (one compiled structure) from the source models of their seeds (switch 0),
    or from their own states at the previous switch (a sequence's later switch, with a data order of
    its own: the seed key folded with ``1000 + switch``). The source-free program takes over from the
    chunk :func:`source_free_from` gives; with dense evaluation, chunk 0 runs the program it would
    run, evaluated after every update."""
    methods = [r["method"] for r in runs]
    seed_idx = jnp.asarray([r["seed_index"] for r in runs])
    hp = {"key": seed_keys(spec)[seed_idx], "method": engine.stack_runs(methods)}
    if runs[0]["lr"] is not None:
        hp["lr"] = jnp.asarray([r["lr"] for r in runs], jnp.float32)
    if switch:
        start = source.state
        hp["key"] = jax.vmap(lambda k: jax.random.fold_in(k, 1000 + switch))(hp["key"])
    else:
        start = None if source is None else jax.tree.map(lambda x: x[seed_idx], source.state)
    state = init_runs(steps, hp, data, start)
    sig = methods[0].signature
    free = source_free_from(runs, policy)
    later = None
    if free is not None and free < policy.n_chunks:
        later = (free, steps.chunk(policy, False, sig, with_source=False))
    first = None
    if spec.dense_steps and steps.dense is not None:
        first = steps.chunk(policy, False, sig, with_source=later is None or later[0] > 0,
                            dense=spec.dense_steps // policy.eval_every)
    return Phase(state=state, hp=hp, chunk=steps.chunk(policy, False, sig), data=data, n_chunks=policy.n_chunks,
                 eval_every=policy.eval_every, evals_per_chunk=policy.evals_per_chunk, later=later,
                 evaluate=steps.evaluation(), first=first, checkpoint=policy.checkpoint, split=steps.split)
