"""The setting contract: what a setting provides, and what the shared runner does with it.

A *setting* is one of the paper's experiments (supervised shifts, pretrained vision, online RL,
offline-to-online RL, LM fine-tuning): a source objective ``L_S``, a target objective ``L_T`` and the
data and models they need. Every setting trains the same way: a source phase (skipped where the model
arrives pretrained), then adaptation from that model with ``(1 - lam_t) L_S + lam_t L_T`` for every
(method, swept numbers, seed) run, in batches that share one compiled program
(:func:`lossmooth.core.engine.make_chunk`). A setting is a package ``lossmooth/settings/<name>/``
whose ``objective.py`` states its ``L_S`` and ``L_T``, and one :class:`Setting` subclass registered
in :mod:`lossmooth.settings` (its config: ``conf/setting/<name>.yaml``, or a folder the setting names
in :attr:`Setting.conf_dir`).

What a setting provides (methods of :class:`Setting`):

| hook | what it returns | called |
|---|---|---|
| ``parse(cfg)`` | the validated spec (one-line :class:`ConfigError` on bad input; reads no data) | first, and for every point of a multirun before any runs |
| ``load(spec, cfg, choices)`` | the loaded data and models, with ``info`` (provenance) | once, before the run directory exists |
| ``lines(spec, loaded)`` | names of independent lines of one run (online RL: its algorithms) | once |
| ``runs(spec, loaded)`` | the (method, swept numbers, seed) runs (:func:`lossmooth.core.runs.expand_runs`) | once |
| ``groups(spec, runs)`` | batches of runs that share a compiled program | once |
| ``chunks(spec, loaded, line)`` | (source-phase chunks, adaptation chunks per batch): the progress bar | once per line |
| ``adapt_updates(spec, loaded, line)`` | gradient updates of the adaptation (a ramp longer than it is marked) | once per line |
| ``source_phase(ctx, line)`` | a :class:`Phase` for every seed, or None (a pretrained model) | once per line |
| ``switches(spec, loaded, line)`` | ``[None]`` (one switch), or for a sequence of shifts one dict per switch (``switch``, ``shift``, ``severity``) | once per line |
| ``adapt_phase(ctx, line, runs, source, switch)`` | a :class:`Phase` for one batch of runs from the source phase's :class:`PhaseResult` (switch 0), or from the same runs' result at the previous switch (index s > 0: the sequence's switch s + 1, counted from 1) | per batch and switch |
| ``context(spec, loaded, line)`` | the table's context columns: ``dataset``, ``model``, ``shift``, ``severity`` | per line |
| ``run_fields(spec, loaded, line, run, curves)`` | extra per-run fields of ``runs.json`` | per run |
| ``data_identity(spec, loaded, line)`` | what identifies the data beyond the config (joins the pair key; default none) | per line |
| ``after_group(ctx, line, index, runs, result)`` | nothing (e.g. the LM's replies from the trained weights) | per batch |
| ``finish(ctx, rows, sources)`` | extra ``summary.json`` fields; may add fields to the rows (e.g. the LM judge) | once, at the end |

and as class attributes its ``name``, ``curves`` (:class:`Curves`: which evaluations make the
summaries), ``step_unit`` (the unit of ``source_steps``, ``adapt_steps``, ``eval_every`` and
``gap_window``: ``updates`` or ``env_steps``; ``smoothing_T`` counts gradient updates everywhere),
``line_key`` and ``lr_key``.

What the shared runner (:mod:`lossmooth.runner`) does for every setting: validates the config, opens
(or resumes) the run directory under a per-config lock and removes it again if bad input is found
late; expands the runs; per phase pads the run axis to the device count, shards it, evaluates at the
phase's start (prepended as step 0; ``lam`` at step 0 from each run's schedule), runs the chunks with
the source-free program from the chunk the phase names, and unpads; writes one metric row per run and
evaluation, feeds the loggers, the progress bar and the non-finite check between chunks; checkpoints
every loop so a killed or preempted run resumes bit-identically; keys each run's pairing context
(:func:`pair key <lossmooth.runner.records.pair_key>`); summarizes each run's curves
(:mod:`lossmooth.results.summaries`) and writes ``runs.json`` and, last, ``summary.json``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from lossmooth.core import runs as R
from lossmooth.core.engine import LANES
from lossmooth.errors import ConfigError

STEP_UNITS = ("updates", "env_steps")
SUMMARY_KINDS = ("acc", "return", "score", "loss")


@dataclass(frozen=True)
class RunSpec:
    """What the runner reads from every setting's validated spec (a setting's ``Spec`` extends it):
    the seeds (``seed`` .. ``seed + num_seeds - 1``), the methods (name -> ``Method``), the numbers
    swept inside one compiled call (name -> values) and the gap window (in the setting's step unit)."""

    num_seeds: int
    seed: int
    methods: dict
    sweep: dict
    gap_window: int


@dataclass(frozen=True)
class Curves:
    """The evaluations a run's summaries are computed from (metric names of the setting's evaluation).

    ``kind`` names the family of summaries (:mod:`lossmooth.results.summaries`): ``acc`` and
    ``return`` (higher is better, a source curve measures forgetting), ``score`` (higher is better, no
    source curve: a normalized RL score), ``loss`` (lower is better, the source curve a loss or a
    perplexity). ``success`` names a success-rate curve (goal tasks) where there is one.
    ``source_perplexity``: the source curve is a perplexity (the exponential of a per-token negative
    log-likelihood), so the WC-ACC analogue takes its log; a plain loss (e.g. an MSE) is used as it is.
    """

    kind: str
    target: str
    source: str | None = None
    success: str | None = None
    source_perplexity: bool = False

    def __post_init__(self):
        if self.kind not in SUMMARY_KINDS:
            raise ValueError(f"Curves.kind must be one of {SUMMARY_KINDS}, got {self.kind!r}")


@dataclass
class Phase:
    """One batch of runs through the engine, as a setting builds it for the runner.

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


@dataclass
class Context:
    """What a setting's hooks see during a run: the spec, the loaded data, the device mesh (None: one
    device), the run directory (for files a setting keeps beside the results, e.g. LM replies), the
    resolved config and the runs."""

    spec: Any
    loaded: Any
    mesh: Any = None
    run_dir: str = ""
    cfg: dict = field(default_factory=dict)
    runs: list = field(default_factory=list)


class Setting:
    """Base class of every setting (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    curves: ClassVar[Curves]
    step_unit: ClassVar[str] = "updates"
    # a config node whose entries are independent lines of one run (online RL: ``algo``); its value
    # is recorded in every row under this key
    line_key: ClassVar[str | None] = None
    # the dotted config key of the default learning rate, left out of the pairing context (the hard
    # switch at the same learning rate is each run's partner)
    lr_key: ClassVar[str | None] = None
    # losses a run has diverged on once they exceed ``diverge_factor`` (config) times their value at the
    # switch (non-finite metrics always diverge a run)
    diverge_on: ClassVar[tuple] = ()
    # whether the setting evaluates after every update just after the switch when config ``dense_eval.steps``
    # asks it to (its spec's ``dense_steps``; its adaptation phase's :attr:`Phase.first`)
    dense_eval: ClassVar[bool] = False
    # whether the setting runs a sequence of switches (config ``sequence.shifts``; :meth:`switches`)
    sequences: ClassVar[bool] = False
    # whether the process hands freed large blocks back to the OS at once (a setting whose state is a
    # model of hundreds of MB, built and dropped per run: :func:`lossmooth.runner.memory.return_freed_memory`)
    returns_memory: ClassVar[bool] = False
    # XLA flags the setting's programs want, set for the process before JAX starts its backend
    # (:func:`lossmooth.runner.memory.apply_xla_flags`); a process whose backend is already up (several
    # runs in one process) compiles without them: they change buffers and schedules, not numbers
    xla_flags: ClassVar[tuple[str, ...]] = ()
    # runs per block of a compiled batch on one device (:data:`lossmooth.core.engine.LANES`): the runner pads
    # every batch to a multiple of it, so a run's numbers do not depend on the runs beside it; 1 for a
    # setting whose batches hold one run each (the LM)
    lanes: ClassVar[int] = LANES
    # a folder with ``setting/<name>.yaml`` (and any other groups) added to Hydra's search path;
    # None: the setting's config lives in lossmooth's own ``conf/``
    conf_dir: ClassVar[str | None] = None
    # the method families the setting offers beyond the fixed schedules (names of
    # :data:`lossmooth.core.config.FAMILIES`: ``regularizers``, ``adaptive_schedules``, ``linear_probe``,
    # ``scratch``, ``offline_batches``); a method of another family is refused at parse time in one line
    capabilities: ClassVar[frozenset[str]] = frozenset()

    # -- config and data
    def parse(self, cfg: dict):
        raise NotImplementedError

    def load(self, spec, cfg: dict, choices: dict):
        raise NotImplementedError

    # -- runs
    def lines(self, spec, loaded) -> list[str]:
        return [""]

    def runs(self, spec, loaded) -> list[dict]:
        return R.expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed)

    def groups(self, spec, runs: list[dict]) -> list[list[int]]:
        return R.groups_of(runs)

    def chunks(self, spec, loaded, line: str) -> tuple[int, int]:
        raise NotImplementedError

    def adapt_updates(self, spec, loaded, line: str) -> int:
        """Gradient updates the adaptation makes (what ``smoothing_T`` counts); by default
        ``spec.adapt_steps``, for settings whose steps are updates."""
        return spec.adapt_steps

    # -- phases
    def source_phase(self, ctx: Context, line: str) -> Phase | None:
        return None

    def switches(self, spec, loaded, line: str) -> list[dict | None]:
        """The switches of one line: ``[None]`` for the one switch of most settings; a sequence's
        switches as ``{"switch": i, "shift": ..., "severity": ...}`` (i from 1), which become context
        columns of their rows."""
        return [None]

    def adapt_phase(self, ctx: Context, line: str, runs: list[dict], source: PhaseResult | None,
                    switch: int = 0) -> Phase:
        raise NotImplementedError

    # -- results
    def context(self, spec, loaded, line: str) -> dict:
        raise NotImplementedError

    def run_fields(self, spec, loaded, line: str, run: dict, curves: dict) -> dict:
        return {}

    def data_identity(self, spec, loaded, line: str) -> dict:
        """What identifies the data beyond the config (e.g. a dataset collected on this machine: its
        content hash), joined to the pair key; ``{}`` where the config says it all."""
        return {}

    def after_group(self, ctx: Context, line: str, index: list[int], runs: list[dict], result: PhaseResult) -> None:
        """After a batch: ``index`` holds its runs' ``run_index`` values."""
        return None

    def finish(self, ctx: Context, rows: list[dict], sources: dict) -> dict:
        return {}


def check_setting(setting: Setting) -> Setting:
    """A registered setting's class attributes are well-formed (a programming error otherwise)."""
    if not isinstance(setting, Setting) or not setting.name:
        raise ConfigError(f"setting: {setting!r} is not a named lossmooth Setting")
    if not isinstance(getattr(setting, "curves", None), Curves):
        raise ConfigError(f"setting: {setting.name} declares no Curves")
    if setting.step_unit not in STEP_UNITS:
        raise ConfigError(f"setting: {setting.name}.step_unit must be one of {', '.join(STEP_UNITS)}")
    return setting
