"""Setting 1, controlled supervised shifts, behind the setting contract.

Protocol (per seed, paired across methods): the source phase trains a classifier on the source
distribution (``source_steps`` updates), every seed in one ``jit(vmap(...))`` batch; then, from that
same source model, every method adapts on the shifted target distribution for ``adapt_steps`` updates
with the smoothed objective (:mod:`.objective`). All (method, swept numbers, seed) runs that share a
compiled structure run as one batch; once every run of a batch is past its ramp the runner swaps in
the program compiled without the source branch.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lossmooth.core import engine
from lossmooth.core.objective import Method
from lossmooth.core.schedules import ADAPTIVE, init_state
from lossmooth.core.runs import expand_runs
from lossmooth.models import classifiers
from lossmooth.settings.contract import Context, Curves, Phase, PhaseResult, Setting
from lossmooth.settings.supervised import objective as O
from lossmooth.settings.supervised.config import Spec, parse
from lossmooth.settings.supervised.data import Data, build_data, build_sequence_data


class Programs:
    """The compiled per-run functions of one spec (built once, reused across chunks and batches)."""

    def __init__(self, spec: Spec, model, num_classes: int):
        self.spec, self.model, self.k = spec, model, num_classes
        self._chunks = {}

    def init_source(self, seed_key, sample_x):
        params = self.model.init(jax.random.fold_in(seed_key, 0), sample_x[:1])["params"]
        opt = O.optimizer(self.spec.optimizer, self.spec.source_lr)
        return {"params": params, "opt_state": opt.init(params), "step": jnp.zeros((), jnp.int32)}

    def init_adapt(self, source_state, hp, reg: str):
        """The state at the switch: the source model, a fresh optimizer state (or the source phase's
        with ``reset_optimizer: false``; Adam's and SGD's states do not depend on the learning
        rate), the step counter at 0, for a pull to the switch point that point, and for an adaptive
        schedule its state (:func:`lossmooth.core.schedules.init_state`)."""
        params = source_state["params"]
        if self.spec.reset_optimizer:
            opt_state = O.optimizer(self.spec.optimizer, hp["lr"]).init(params)
        else:
            opt_state = source_state["opt_state"]
        state = {"params": params, "opt_state": opt_state, "step": jnp.zeros((), jnp.int32)}
        if reg != "none":
            state["anchor"] = params
        if hp["method"].schedule.kind in ADAPTIVE:
            state["sched"] = init_state(hp["method"].schedule)
        return state

    def evaluate(self, state, hp, data: Data):
        return O.evaluate(self.model, state, data)

    def source_step(self, state, hp, data: Data):
        return O.source_step(self.model, self.spec, state, hp, data)

    def adapt_step(self, state, hp, data: Data, with_source: bool = True):
        return O.adapt_step(self.model, self.spec, state, hp, data, with_source)

    def source_chunk(self):
        if "source" not in self._chunks:
            self._chunks["source"] = engine.make_chunk(
                self.source_step, lambda s, h, d: {k: v for k, v in self.evaluate(s, h, d).items()
                                                   if k.startswith("source")},
                self.spec.eval_every, self.spec.source_evals_per_chunk)
        return self._chunks["source"]

    def dense_evaluate(self, state, hp, data: Data):
        """The dense evaluation (config ``dense_eval``): accuracy and loss on its evaluation sets."""
        return O.evaluate(self.model, state, data.dense_view())

    def adapt_chunk(self, signature, with_source: bool = True, dense: bool = False):
        """The adaptation chunk; ``with_source=False`` compiles the source branch out entirely;
        ``dense``: the first chunk's program with an evaluation after each of the first
        ``dense_steps`` updates."""
        key = ("adapt", signature, with_source, dense)
        if key not in self._chunks:
            step = self.adapt_step if with_source else (
                lambda s, h, d: self.adapt_step(s, h, d, with_source=False))
            extra = (self.spec.dense_steps // self.spec.eval_every, self.dense_evaluate) if dense else None
            self._chunks[key] = engine.make_chunk(step, self.evaluate, self.spec.eval_every,
                                                  self.spec.evals_per_chunk, dense=extra)
        return self._chunks[key]

    def source_free_from(self, methods: list[Method]) -> int | None:
        """The first chunk from which every run has lam = 1 for good (None: never, a constant mix).

        Chunk c covers steps [c S, (c + 1) S); a ramp gives lam = 1 for every t >= T.
        """
        ends = [m.schedule.ends_at for m in methods]
        if any(e is None for e in ends):
            return None
        per_chunk = self.spec.eval_every * self.spec.evals_per_chunk
        return int(-(-max(ends) // per_chunk))

    def eval_batch(self):
        if "eval" not in self._chunks:
            self._chunks["eval"] = engine.make_eval(self.evaluate)
        return self._chunks["eval"]


@dataclass
class Loaded:
    """The data (device arrays), its provenance, the model and its compiled programs."""

    data: Data
    info: dict
    model: object
    programs: Programs


def seed_keys(spec: Spec) -> jnp.ndarray:
    return jnp.stack([jax.random.key_data(jax.random.key(spec.seed + i)) for i in range(spec.num_seeds)])


class Supervised(Setting):
    """Controlled supervised shifts: covariate and label shifts on image classification."""

    name = "supervised"
    capabilities = frozenset({"regularizers", "adaptive_schedules", "linear_probe"})
    curves = Curves(kind="acc", target="target_acc", source="source_acc")
    step_unit = "updates"
    lr_key = "setting.lr"
    diverge_on = ("target_loss", "source_loss", "loss_target")
    dense_eval = True
    sequences = True

    parse = staticmethod(parse)  # the config, validated (config.py)

    def load(self, spec: Spec, cfg: dict, choices: dict) -> Loaded:
        data, info = (build_sequence_data if spec.sequence else build_data)(spec)
        model = classifiers.build(spec.model_name, info["num_classes"], **spec.model_kwargs)
        return Loaded(data, info, model, Programs(spec, model, info["num_classes"]))

    def runs(self, spec: Spec, loaded) -> list[dict]:
        return expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, spec.lr)

    def chunks(self, spec: Spec, loaded, line: str) -> tuple[int, int]:
        return (spec.source_steps // spec.eval_every // spec.source_evals_per_chunk,
                spec.adapt_steps // spec.eval_every // spec.evals_per_chunk)

    def source_phase(self, ctx: Context, line: str) -> Phase:
        spec, progs, data = ctx.spec, ctx.loaded.programs, ctx.loaded.data
        keys = seed_keys(spec)
        state = jax.vmap(lambda k: progs.init_source(k, data.source_x))(keys)
        return Phase(state=state, hp={"key": keys}, chunk=progs.source_chunk(), data=data,
                     n_chunks=self.chunks(spec, ctx.loaded, line)[0], eval_every=spec.eval_every,
                     evals_per_chunk=spec.source_evals_per_chunk, split=True, reference=progs.eval_batch())

    def switches(self, spec: Spec, loaded, line: str) -> list[dict | None]:
        """One switch, or a sequence's: switch i (1-based) trains task i with task i - 1 as its source."""
        if not spec.sequence:
            return [None]
        return [{"switch": i + 1, "shift": name, "severity": sev} for i, (name, sev) in enumerate(spec.sequence)]

    def adapt_phase(self, ctx: Context, line: str, runs: list[dict], source: PhaseResult,
                    switch: int = 0) -> Phase:
        spec, progs, data = ctx.spec, ctx.loaded.programs, ctx.loaded.data
        methods = [r["method"] for r in runs]
        reg = methods[0].reg
        seed_idx = jnp.asarray([r["seed_index"] for r in runs])
        hp = {"key": seed_keys(spec)[seed_idx], "method": engine.stack_runs(methods),
              "lr": jnp.asarray([r["lr"] for r in runs], jnp.float32)}
        if switch:  # a later switch of a sequence: each run goes on from its own model at the last one,
            # with a data order of its own
            src, data = source.state, data.at(switch)
            hp["key"] = jax.vmap(lambda k: jax.random.fold_in(k, 1000 + switch))(hp["key"])
        else:
            src = jax.tree.map(lambda x: x[seed_idx], source.state)
        state = jax.vmap(lambda s, h: progs.init_adapt(s, h, reg))(src, hp)
        n_chunks = self.chunks(spec, ctx.loaded, line)[1]
        first_free = progs.source_free_from(methods)
        later = None
        if first_free is not None and first_free < n_chunks:
            later = (first_free, progs.adapt_chunk(methods[0].signature, with_source=False))
        first = None
        if spec.dense_steps:  # chunk 0 with the program it would run, evaluated after every update
            first = progs.adapt_chunk(methods[0].signature, with_source=later is None or later[0] > 0, dense=True)
        return Phase(state=state, hp=hp, chunk=progs.adapt_chunk(methods[0].signature), data=data,
                     n_chunks=n_chunks, eval_every=spec.eval_every, evals_per_chunk=spec.evals_per_chunk,
                     later=later, evaluate=progs.eval_batch(), first=first, split=True)

    def context(self, spec: Spec, loaded, line: str) -> dict:
        return {"dataset": loaded.info["dataset"], "model": spec.model_name, "shift": spec.shift,
                "severity": spec.severity}

    def run_fields(self, spec: Spec, loaded, line: str, run: dict, curves: dict) -> dict:
        return {"source_acc_at_switch": float(curves["source_acc"][0])}

    def finish(self, ctx: Context, rows: list[dict], sources: dict) -> dict:
        return {"source_acc_final": [float(x) for x in sources[""].metrics["source_acc"][:, -1]]}
