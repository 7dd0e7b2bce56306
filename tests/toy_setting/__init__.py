"""A setting built through the public contract alone (``lossmooth.settings`` and the core), its phases
as pure functions: ``theta`` in R^d learns a mean. With samples ``x ~ N(mu_S, 1)`` and ``y ~ N(mu_T, 1)``,

    L_S(theta) = mean_i ||theta - x_i||^2     L_T(theta) = mean_i ||theta - y_i||^2

trained by SGD from ``theta = 3`` (source phase: rate 0.1 on L_S; adaptation: the run's rate on
``(1 - lam_t) L_S + lam_t L_T``); evaluation: ``source_loss = ||theta - mu_S||^2`` and
``target_loss = ||theta - mu_T||^2``, with ``mu_S = 0`` and ``mu_T = shift`` in every coordinate.
Registered with ``LOSSMOOTH_SETTINGS=tests.toy_setting:SETTING``; its config is ``conf/setting/toy.yaml``.
"""
import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lossmooth.core.config import integer, number
from lossmooth.core.objective import smoothed_loss, source_needed
from lossmooth.settings import Curves, Line, Loaded, RunSpec, Setting, Steps, common


@dataclass(frozen=True)
class Spec(RunSpec):
    dim: int
    shift: float


def loss(theta, key, mean):
    return jnp.mean(jnp.sum((theta - mean - jax.random.normal(key, (8, theta.shape[0]))) ** 2, -1))


def evaluate(state, hp, data):
    return {f"{d}_loss": jnp.sum((state["theta"] - data[d]) ** 2) for d in ("source", "target")}


def init(hp, data, start):  # the source phase from theta = 3; the adaptation from the run's source model
    return {"theta": jnp.full_like(data["source"], 3.0) if start is None else start["theta"], "t": jnp.int32(0)}


def step(state, hp, data, with_source):
    lam = hp["method"].schedule(state["t"]) if "method" in hp else jnp.float32(0.0)  # the source phase: L_S alone
    k_t, k_s = jax.random.split(jax.random.fold_in(hp["key"], state["t"]))
    l_s = (lambda p: loss(p, k_s, data["source"])) if with_source else None
    g, info = jax.grad(lambda p: smoothed_loss(p, lam, source_needed(lam), lambda p: loss(p, k_t, data["target"]), l_s),
                       has_aux=True)(state["theta"])
    theta = state["theta"] - hp.get("lr", 0.1) * g
    return {"theta": theta, "t": state["t"] + 1}, {k: info[k] for k in ("lam", "loss_target", "loss_source")}


class Toy(Setting):
    name = "toy"
    curves = Curves(kind="loss", target="target_loss", source="source_loss")
    conf_dir = os.path.join(os.path.dirname(__file__), "conf")

    def parse(self, cfg):
        s = cfg["setting"]
        return Spec(**common(cfg), dim=integer(s, "dim", 1, "setting.dim"),
                    shift=number(s, "shift", field="setting.shift"))

    def load(self, spec, cfg, choices):
        data = {"source": jnp.zeros((spec.dim,)), "target": jnp.full((spec.dim,), spec.shift)}
        return Loaded(data, info={}, source=Steps(init, step, evaluate), adapt=Steps(init, step, evaluate))

    def describe(self, spec, loaded, line):
        return Line("gauss", f"mean-{spec.dim}", "mean", spec.shift, **spec.policies())


SETTING = Toy()
