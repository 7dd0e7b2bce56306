"""The setting contract: what a setting provides, and what the shared runner does with it.

A *setting* is one of the paper's experiments (supervised shifts, pretrained vision, online RL,
offline-to-online RL, LM fine-tuning): a source objective ``L_S``, a target objective ``L_T`` and the
data and models they need. Every setting trains the same way: a source phase (skipped where the model
arrives pretrained), then adaptation from that model with ``(1 - lam_t) L_S + lam_t L_T`` for every
(method, swept numbers, seed) run, in batches that share one compiled program
(:func:`lossmooth.core.engine.make_chunk`). A setting is a package ``lossmooth/settings/<name>/``
whose ``objective.py`` states its ``L_S`` and ``L_T``, and one :class:`Setting` subclass registered
in :mod:`lossmooth.settings` (its config: ``conf/setting/<name>.yaml``, or a folder the setting names
in :attr:`Setting.conf_dir`; docs/extending.md adds one from outside).

What a setting provides (methods of :class:`Setting`; those with a default may be left out):

| hook | what it returns | called |
|---|---|---|
| ``parse(cfg)`` | the validated spec, a :class:`RunSpec` (one-line :class:`ConfigError` on bad input; reads no data) | first, and for every point of a multirun before any runs |
| ``load(spec, cfg, choices)`` | the loaded data and models (:class:`Loaded`: ``data``, ``info`` (provenance), and the phases as pure functions) | once, before the run directory exists |
| ``lines(spec, loaded)`` | names of independent lines of one run (online RL: its algorithms); default ``[""]`` | once |
| ``describe(spec, loaded, line)`` | a :class:`Line`: the table's context columns, what identifies the data, the switches, the phases' :class:`~lossmooth.settings.programs.Policy` (chunks, updates) | per line |
| ``source_phase(ctx, line)`` | a :class:`Phase` for every seed, or None (a pretrained model); default: from ``loaded.source`` | once per line |
| ``adapt_phase(ctx, line, runs, source, switch)`` | a :class:`Phase` for one batch of runs from the source phase's :class:`PhaseResult` (switch 0), or from the same runs' result at the previous switch (index s > 0: the sequence's switch s + 1, counted from 1); default: from ``loaded.adapt`` | per batch and switch |
| ``run_fields(spec, loaded, line, run, curves)`` | extra per-run fields of ``runs.json``; default none | per run |
| ``after_group(ctx, line, index, runs, result)`` | nothing (e.g. the LM's replies from the trained weights) | per batch |
| ``finish(ctx, rows, sources)`` | extra ``summary.json`` fields; may add fields to the rows (e.g. the LM judge) | once, at the end |

and as class attributes its ``name``, ``curves`` (:class:`Curves`: which evaluations make the
summaries), ``step_unit`` (the unit of ``source_steps``, ``adapt_steps``, ``eval_every`` and
``gap_window``: ``updates`` or ``env_steps``; ``smoothing_T`` counts gradient updates everywhere),
``line_key`` and ``lr_key``. The runs are not a hook: every (method, swept numbers, seed) run comes
from the spec (:meth:`Setting.runs`: its methods, sweep, seeds, learning rate, initial states and
per-method fields), and runs of one compiled structure share a batch (:func:`batches`).

**Phases as pure functions.** A setting whose phases are a plain per-run update, evaluation and
initial state gives them as :class:`~lossmooth.settings.programs.Steps` (``loaded.source``,
``loaded.adapt``) with a :class:`~lossmooth.settings.programs.Policy` per phase (in its
:class:`Line`); :mod:`lossmooth.settings.programs` compiles them, keeps the programs, builds the
per-run numbers (seed key, method, learning rate), and derives the source-free program from the
schedules' ends: the supervised and pretrained-vision settings, and settings from outside. Three
built-in settings build their :class:`Phase` themselves, because the pure form cannot state their
loops: online RL (rejax's own agents: a chunk is rejax's training iteration with its environments,
replay buffer and normalizer inside the agent state, and rejax's evaluation), offline-to-online RL
(the same agents, and gymnasium environments stepped on the host, outside JAX and any checkpoint)
and the LM (gradient accumulation over micro-batches in one update, one-run donated programs, and the
pretrained model's evaluation computed once for every run).

**The ramp's length.** Every schedule's ``T`` reads ``setting.smoothing_T`` (``conf/schedule/*.yaml``:
``T: ${setting.smoothing_T}``), the ramp's length in gradient updates: a setting's config sets it
under ``setting:`` (a config without it is refused with one line naming it), and the spec keeps it
(:attr:`RunSpec.smoothing_T`).

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
from typing import Any, ClassVar

from lossmooth.core import runs as R
from lossmooth.core.config import integer, number, parse_methods, parse_sweep
from lossmooth.core.engine import LANES
from lossmooth.errors import ConfigError
from lossmooth.settings import programs
from lossmooth.settings.programs import Phase, PhaseResult, Policy, Steps, check_data

STEP_UNITS = ("updates", "env_steps")
SUMMARY_KINDS = ("acc", "return", "score", "loss")


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """What the runner reads from every setting's validated spec (a setting's ``Spec`` extends it):
    the seeds (``seed`` .. ``seed + num_seeds - 1``), the methods (name -> ``Method``), the numbers
    swept inside one compiled call (name -> values) and the gap window (in the setting's step unit);
    what makes the runs (:meth:`Setting.runs`): ``lr``, the adaptation's learning rate (None where the
    setting has none of its own: rejax's presets), ``inits`` (method -> ``switch`` | ``scratch``:
    where its adaptation starts), ``method_fields`` (method -> fields each of its runs carries, e.g.
    per-run numbers of the objective; a ``hparams`` entry joins the run's recorded hyperparameters);
    and the budget most settings share: ``source_steps``, ``adapt_steps``, ``eval_every`` (the step
    unit), ``smoothing_T`` (the ramp's length in gradient updates: the config's ``setting.smoothing_T``,
    which every schedule's ``T`` reads) and ``dense_steps`` (config ``dense_eval.steps``)."""

    num_seeds: int
    seed: int
    methods: dict
    sweep: dict
    gap_window: int
    lr: float | None = None
    inits: dict = field(default_factory=dict)
    method_fields: dict = field(default_factory=dict)
    source_steps: int = 0
    adapt_steps: int = 0
    eval_every: int = 1
    smoothing_T: int | None = None
    dense_steps: int = 0

    def policies(self) -> dict:
        """``source`` and ``adapt`` :class:`Policy` of the common budget (an evaluation every
        ``eval_every`` steps, one per chunk; no source phase where ``source_steps`` is 0): a
        :class:`Line`'s ``Line(..., **spec.policies())``."""
        return {"source": Policy(self.source_steps, self.eval_every) if self.source_steps else None,
                "adapt": Policy(self.adapt_steps, self.eval_every)}


def common(cfg: dict, sweepable: tuple = ("T", "lam0", "value", "lr"), **method_options) -> dict:
    """The :class:`RunSpec` fields of a config read the way every setting names them (``num_seeds``,
    ``seed``, ``method``, ``sweep``; under ``setting``: ``lr``, ``source_steps``, ``adapt_steps``,
    ``eval_every``, ``gap_window``, ``smoothing_T``), validated: ``Spec(**common(cfg), ...)``.
    ``method_options``: passed to :func:`lossmooth.core.config.parse_methods` (the method families
    the setting offers)."""
    s = cfg["setting"]
    steps = {k: integer(s, k, lo, f"setting.{k}") for k, lo in (("source_steps", 0), ("adapt_steps", 1),
                                                                 ("eval_every", 1), ("gap_window", 1),
                                                                 ("smoothing_T", 0))}
    for k in ("source_steps", "adapt_steps"):
        if steps[k] % steps["eval_every"]:
            raise ConfigError(f"setting.{k}: {steps[k]} is not a multiple of setting.eval_every = "
                              f"{steps['eval_every']}; make it one")
    return dict(num_seeds=integer(cfg, "num_seeds", 1), seed=integer(cfg, "seed", 0),
                methods=parse_methods(cfg.get("method"), **method_options), sweep=parse_sweep(cfg, sweepable),
                lr=number(s, "lr", 0.0, None, "setting.lr", lo_open=True), **steps)


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


@dataclass(frozen=True)
class Line:
    """What the runner knows of one line before running it: its rows' context columns (``dataset``,
    ``model``, ``shift``, ``severity``), ``identity`` (what identifies the data beyond the config, e.g.
    a dataset collected on this machine: its content hash; joins the pair key), its ``switches``
    (``(None,)`` for one switch; a sequence's as ``{"switch": i, "shift": ..., "severity": ...}``, i
    from 1, which become context columns of their rows) and the policies of its phases (``source``:
    None where there is no source phase; ``adapt``), which give the progress bar's chunks and the
    adaptation's gradient updates (a ramp longer than them is marked)."""

    dataset: str
    model: str
    shift: str
    severity: float | None
    adapt: Policy
    source: Policy | None = None
    identity: dict = field(default_factory=dict)
    switches: tuple = (None,)

    @property
    def context(self) -> dict:
        return {"dataset": self.dataset, "model": self.model, "shift": self.shift, "severity": self.severity}

    @property
    def chunks(self) -> tuple[int, int]:
        """(source-phase chunks, adaptation chunks per batch and switch)."""
        return (0 if self.source is None else self.source.n_chunks), self.adapt.n_chunks


@dataclass
class Loaded:
    """What a setting's ``load`` gives: ``data`` (arrays shared by every run: every leaf an array,
    checked here, before anything is written), ``info`` (provenance, :mod:`lossmooth.provenance`) and
    the phases as pure functions (``source``: None for no source phase; ``adapt``) where the setting
    gives them so (:mod:`lossmooth.settings.programs`)."""

    data: Any
    info: dict
    source: Steps | None = None
    adapt: Steps | None = None

    def __post_init__(self):
        check_data(self.data, "loaded.data")


def batches(setting: "Setting", runs: list[dict]) -> list[list[int]]:
    """Indices of the runs that share a compiled batch: one structure (schedule kind, regularizer)
    each, or one run each for a setting with :attr:`Setting.one_run_batches`."""
    return [[i] for i in range(len(runs))] if setting.one_run_batches else R.groups_of(runs)


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
    # switch at the same learning rate is each run's partner); :func:`common` reads ``setting.lr``
    lr_key: ClassVar[str | None] = "setting.lr"
    # losses a run has diverged on once they exceed ``diverge_factor`` (config) times their value at the
    # switch (non-finite metrics always diverge a run)
    diverge_on: ClassVar[tuple] = ()
    # whether the setting evaluates after every update just after the switch when config ``dense_eval.steps``
    # asks it to (its spec's ``dense_steps``; its adaptation phase's :attr:`Phase.first`)
    dense_eval: ClassVar[bool] = False
    # whether the setting runs a sequence of switches (config ``sequence.shifts``; :attr:`Line.switches`)
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
    # batches of one run each (the LM: a model with its AdamW moments per run), instead of one batch per
    # compiled structure (:func:`batches`)
    one_run_batches: ClassVar[bool] = False
    # the method families the setting offers beyond the fixed schedules (names of
    # :data:`lossmooth.core.config.FAMILIES`: ``regularizers``, ``adaptive_schedules``, ``linear_probe``,
    # ``scratch``, ``offline_batches``); a method of another family is refused at parse time in one line
    capabilities: ClassVar[frozenset[str]] = frozenset()

    # -- config and data
    def parse(self, cfg: dict) -> RunSpec:
        raise NotImplementedError

    def load(self, spec, cfg: dict, choices: dict) -> Loaded:
        raise NotImplementedError

    # -- lines and phases
    def lines(self, spec, loaded) -> list[str]:
        return [""]

    def describe(self, spec, loaded, line: str) -> Line:
        raise NotImplementedError

    def source_phase(self, ctx: Context, line: str) -> Phase | None:
        """From ``loaded.source`` (:mod:`lossmooth.settings.programs`); None where it is None or absent."""
        steps = getattr(ctx.loaded, "source", None)
        if steps is None:
            return None
        return programs.source_phase(steps, self.describe(ctx.spec, ctx.loaded, line).source, ctx.spec,
                                     ctx.loaded.data)

    def adapt_phase(self, ctx: Context, line: str, runs: list[dict], source: PhaseResult | None,
                    switch: int = 0) -> Phase:
        """From ``loaded.adapt``; a sequence's later switch ``s`` trains on ``loaded.data.at(s)``."""
        data = ctx.loaded.data.at(switch) if switch else ctx.loaded.data
        return programs.adapt_phase(ctx.loaded.adapt, self.describe(ctx.spec, ctx.loaded, line).adapt, ctx.spec,
                                    runs, source, data, switch)

    # -- results
    def run_fields(self, spec, loaded, line: str, run: dict, curves: dict) -> dict:
        return {}

    def after_group(self, ctx: Context, line: str, index: list[int], runs: list[dict], result: PhaseResult) -> None:
        """After a batch: ``index`` holds its runs' ``run_index`` values."""
        return None

    def finish(self, ctx: Context, rows: list[dict], sources: dict) -> dict:
        return {}

    # -- not a hook: the runs every setting makes from its spec
    def runs(self, spec: RunSpec, loaded=None) -> list[dict]:
        """Every (method, swept numbers, seed) run (:func:`lossmooth.core.runs.expand_runs`) with its
        learning rate and initial state from the spec, and its method's ``method_fields``."""
        out = R.expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, spec.lr, spec.inits)
        for r in out:
            extra = dict(spec.method_fields.get(r["name"], {}))
            r["hparams"] = {**r["hparams"], **extra.pop("hparams", {})}
            r.update(extra)
        return out


def check_setting(setting: Setting) -> Setting:
    """A registered setting's class attributes are well-formed (a programming error otherwise)."""
    if not isinstance(setting, Setting) or not setting.name:
        raise ConfigError(f"setting: {setting!r} is not a named lossmooth Setting")
    if not isinstance(getattr(setting, "curves", None), Curves):
        raise ConfigError(f"setting: {setting.name} declares no Curves")
    if setting.step_unit not in STEP_UNITS:
        raise ConfigError(f"setting: {setting.name}.step_unit must be one of {', '.join(STEP_UNITS)}")
    return setting
