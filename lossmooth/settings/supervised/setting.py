"""Setting 1, controlled supervised shifts, behind the setting contract.

Protocol (per seed, paired across methods): the source phase trains a classifier on the source
distribution (``source_steps`` updates), every seed in one ``jit(vmap(...))`` batch; then, from that
same source model, every method adapts on the shifted target distribution for ``adapt_steps`` updates
with the smoothed objective (:mod:`.objective`). The phases are pure functions
(:class:`~lossmooth.settings.programs.Steps`): :mod:`lossmooth.settings.programs` compiles them, runs
of one compiled structure share a batch, and the program without the source branch takes over once
every run of a batch is past its ramp.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lossmooth.core.schedules import ADAPTIVE, init_state
from lossmooth.models import classifiers
from lossmooth.settings.contract import Context, Curves, Line, Setting
from lossmooth.settings.programs import Policy, Steps, seed_keys  # noqa: F401 (seed_keys: the benchmarks')
from lossmooth.settings.supervised import objective as O
from lossmooth.settings.supervised.config import Spec, parse
from lossmooth.settings.supervised.data import Data, build_data, build_sequence_data


def policies(spec: Spec) -> tuple[Policy, Policy]:
    """(source phase, adaptation): steps count updates."""
    return (Policy(spec.source_steps, spec.eval_every, spec.source_evals_per_chunk),
            Policy(spec.adapt_steps, spec.eval_every, spec.evals_per_chunk))


class Programs:
    """The per-run functions of one spec and its model, and its phases as :class:`Steps` (``source``,
    ``adapt``: each compiles its programs once)."""

    def __init__(self, spec: Spec, model, num_classes: int):
        self.spec, self.model, self.k = spec, model, num_classes
        self.source = Steps(init=lambda hp, data, _: self.init_source(hp["key"], data.source_x),
                            step=lambda s, h, d, _: O.source_step(model, spec, s, h, d), evaluate=self.evaluate,
                            log=("source",), split=True)
        self.adapt = Steps(init=lambda hp, data, start: self.init_adapt(start, hp, hp["method"].reg),
                           step=self.adapt_step, evaluate=self.evaluate,
                           dense=lambda s, h, d: O.evaluate(model, s, d.dense_view()), split=True)

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

    def adapt_step(self, state, hp, data: Data, with_source: bool = True):
        return O.adapt_step(self.model, self.spec, state, hp, data, with_source)

    def adapt_chunk(self, signature, with_source: bool = True, dense: bool = False):
        """The adaptation chunk of methods of ``signature`` (``dense``: the first chunk's program with
        dense evaluation)."""
        policy = policies(self.spec)[1]
        return self.adapt.chunk(policy, False, signature, with_source,
                                self.spec.dense_steps // policy.eval_every if dense else 0)


@dataclass
class Loaded:
    """The data (device arrays), its provenance, the model and its programs."""

    data: Data
    info: dict
    model: object
    programs: Programs

    @property
    def source(self) -> Steps:
        return self.programs.source

    @property
    def adapt(self) -> Steps:
        return self.programs.adapt


class Supervised(Setting):
    """Controlled supervised shifts: covariate and label shifts on image classification."""

    name = "supervised"
    capabilities = frozenset({"regularizers", "adaptive_schedules", "linear_probe"})
    curves = Curves(kind="acc", target="target_acc", source="source_acc")
    step_unit = "updates"
    diverge_on = ("target_loss", "source_loss", "loss_target")
    dense_eval = True
    sequences = True

    parse = staticmethod(parse)  # the config, validated (config.py)

    def load(self, spec: Spec, cfg: dict, choices: dict) -> Loaded:
        data, info = (build_sequence_data if spec.sequence else build_data)(spec)
        model = classifiers.build(spec.model_name, info["num_classes"], **spec.model_kwargs)
        return Loaded(data, info, model, Programs(spec, model, info["num_classes"]))

    def describe(self, spec: Spec, loaded, line: str) -> Line:
        """One switch, or a sequence's: switch i (1-based) trains task i with task i - 1 as its source."""
        source, adapt = policies(spec)
        switches = tuple({"switch": i + 1, "shift": name, "severity": sev}
                         for i, (name, sev) in enumerate(spec.sequence)) or (None,)
        return Line(dataset=loaded.info["dataset"], model=spec.model_name, shift=spec.shift, severity=spec.severity,
                    source=source, adapt=adapt, switches=switches)

    def run_fields(self, spec: Spec, loaded, line: str, run: dict, curves: dict) -> dict:
        return {"source_acc_at_switch": float(curves["source_acc"][0])}

    def finish(self, ctx: Context, rows: list[dict], sources: dict) -> dict:
        return {"source_acc_final": [float(x) for x in sources[""].metrics["source_acc"][:, -1]]}


SETTING = Supervised()
