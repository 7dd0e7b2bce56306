"""A setting built through the public contract alone (``lossmooth.settings``, the core and the engine):
``theta`` in R^d learns a mean. With samples ``x ~ N(mu_S, 1)`` and ``y ~ N(mu_T, 1)``,

    L_S(theta) = mean_i ||theta - x_i||^2     L_T(theta) = mean_i ||theta - y_i||^2

trained by SGD; evaluation: ``source_loss = ||theta - mu_S||^2`` and ``target_loss = ||theta - mu_T||^2``.
Registered with ``LOSSMOOTH_SETTINGS=tests.toy_setting:SETTING``; its config is ``conf/setting/toy.yaml``.
"""
import os
from dataclasses import dataclass
from types import SimpleNamespace

import jax
import jax.numpy as jnp

from lossmooth.core import engine
from lossmooth.core.config import integer, number, parse_methods, parse_sweep
from lossmooth.core.objective import smoothed_loss, source_needed
from lossmooth.core.runs import expand_runs
from lossmooth.settings import Curves, Phase, RunSpec, Setting


@dataclass(frozen=True)
class Spec(RunSpec):
    dim: int
    shift: float
    source_steps: int
    adapt_steps: int
    eval_every: int
    lr: float


def _loss(theta, key, mean):
    x = mean + jax.random.normal(key, (8, theta.shape[0]))
    return jnp.mean(jnp.sum((theta - x) ** 2, -1))


def _evaluate(state, hp, data):
    return {"source_loss": jnp.sum((state["theta"] - data["mu_s"]) ** 2),
            "target_loss": jnp.sum((state["theta"] - data["mu_t"]) ** 2)}


def _source_step(state, hp, data):
    key = jax.random.fold_in(hp["key"], state["t"])
    loss, g = jax.value_and_grad(_loss)(state["theta"], key, data["mu_s"])
    return {"theta": state["theta"] - 0.1 * g, "t": state["t"] + 1}, {"loss_source": loss}


def _adapt_step(state, hp, data):
    lam = hp["method"].schedule(state["t"])
    k_t, k_s = jax.random.split(jax.random.fold_in(hp["key"], 1000 + state["t"]))
    g, info = jax.grad(lambda th: smoothed_loss(th, lam, source_needed(lam), lambda p: _loss(p, k_t, data["mu_t"]),
                                                lambda p: _loss(p, k_s, data["mu_s"])), has_aux=True)(state["theta"])
    return {"theta": state["theta"] - hp["lr"] * g, "t": state["t"] + 1}, {
        "lam": info["lam"], "loss_target": info["loss_target"], "loss_source": info["loss_source"]}


class Toy(Setting):
    name = "toy"
    curves = Curves(kind="loss", target="target_loss", source="source_loss")
    lr_key = "setting.lr"
    diverge_on = ("target_loss",)
    conf_dir = os.path.join(os.path.dirname(__file__), "conf")

    def parse(self, cfg):
        s = cfg["setting"]
        return Spec(num_seeds=integer(cfg, "num_seeds", 1), seed=integer(cfg, "seed", 0),
                    methods=parse_methods(cfg.get("method")), sweep=parse_sweep(cfg, ("T", "lam0", "lr")),
                    dim=integer(s, "dim", 1, "setting.dim"), shift=number(s, "shift", field="setting.shift"),
                    **{k: integer(s, k, 1, f"setting.{k}") for k in ("source_steps", "adapt_steps", "eval_every",
                                                                     "gap_window")},
                    lr=number(s, "lr", 0.0, lo_open=True, field="setting.lr"))

    def load(self, spec, cfg, choices):
        mu_s = jnp.zeros((spec.dim,))
        return SimpleNamespace(data={"mu_s": mu_s, "mu_t": mu_s + spec.shift}, info={"paper_data": False})

    def runs(self, spec, loaded):
        return expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, spec.lr)

    def chunks(self, spec, loaded, line):
        return spec.source_steps // spec.eval_every, spec.adapt_steps // spec.eval_every

    def _keys(self, spec):
        return jnp.stack([jax.random.PRNGKey(spec.seed + i) for i in range(spec.num_seeds)])

    def source_phase(self, ctx, line):
        spec = ctx.spec
        state = {"theta": jnp.full((spec.num_seeds, spec.dim), 3.0), "t": jnp.zeros((spec.num_seeds,), jnp.int32)}
        chunk = engine.make_chunk(_source_step, _evaluate, spec.eval_every, 1)
        return Phase(state=state, hp={"key": self._keys(spec)}, chunk=chunk, data=ctx.loaded.data,
                     n_chunks=self.chunks(spec, None, line)[0], eval_every=spec.eval_every)

    def adapt_phase(self, ctx, line, runs, source):
        spec = ctx.spec
        idx = jnp.asarray([r["seed_index"] for r in runs])
        state = {"theta": source.state["theta"][idx], "t": jnp.zeros((len(runs),), jnp.int32)}
        hp = {"key": self._keys(spec)[idx], "method": engine.stack_runs([r["method"] for r in runs]),
              "lr": jnp.asarray([r["lr"] for r in runs], jnp.float32)}
        return Phase(state=state, hp=hp, chunk=engine.make_chunk(_adapt_step, _evaluate, spec.eval_every, 1),
                     data=ctx.loaded.data, n_chunks=self.chunks(spec, None, line)[1], eval_every=spec.eval_every,
                     evaluate=engine.make_eval(_evaluate))

    def context(self, spec, loaded, line):
        return {"dataset": "gauss", "model": f"mean-{spec.dim}", "shift": "mean", "severity": spec.shift}


SETTING = Toy()
