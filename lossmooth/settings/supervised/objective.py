"""The supervised settings' objectives and per-run updates.

With ``f_theta`` the classifier and ``CE`` the mean cross-entropy over a batch,

    L_S(theta) = CE(f_theta(x_S), y_S)     x_S: a batch of the *replay pool* of source examples
                                            (``setting.source_batch`` of them; 256 is the paper's finding)
    L_T(theta) = CE(f_theta(x_T), y_T)     x_T: a batch of the shifted target pool (``setting.target_batch``)

    L_t(theta) = lam_t L_T + (1 - lam_t) L_S + c R(theta)    (:func:`lossmooth.core.objective.smoothed_loss`)

with ``R`` the pull to the model at the switch of ``l2_init`` / ``kl_init`` (KL on the target batch).
The two batches are drawn independently; their indices depend only on the seed and the step, so
every method sees the same data order (paired comparisons). The source phase minimizes
``CE(f_theta(x), y)`` on batches of the whole source pool. LP-FT keeps only the head's gradient for
the first ``probe_steps`` updates.

Evaluation on both domains' test sets: accuracy and loss weighted by each domain's class prior
(``w_i = prior[y_i] / count[y_i]``), so a label-prior shift is measured on its own distribution.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lossmooth.core.sharding import split_batch
from lossmooth.core.objective import Method, kl_to_anchor, l2_to_anchor, own_branch, smoothed_loss, source_needed
from lossmooth.core.schedules import advance, lam_of, measures_source
from lossmooth.models import classifiers
from lossmooth.settings.supervised.data import SequenceData, sample, to_float


def xent(logits, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def optimizer(name: str, lr):
    return optax.adam(lr) if name == "adam" else optax.sgd(lr, momentum=0.9)


def _weighted(model, params, x, y, w):
    """(prior-weighted accuracy, prior-weighted loss) on one evaluation set (its examples split over
    the devices of a sharded run)."""
    x, y, w = split_batch((x, y, w))
    logits = model.apply({"params": params}, to_float(x))
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(w * (jnp.argmax(logits, -1) == y)), jnp.sum(w * nll)


def evaluate(model, state, data) -> dict:
    """Prior-weighted accuracy and loss on both domains' test sets; for a sequence, on every task's
    (``task<j>_acc``, ``task<j>_loss``), the switch's source (task s) and target (task s + 1) among them."""
    if isinstance(data, SequenceData):
        accs, losses = zip(*(_weighted(model, state["params"], data.test_x[j], data.test_y[j], data.test_w[j])
                             for j in range(data.tasks)))
        accs, losses = jnp.stack(accs), jnp.stack(losses)
        out = {f"task{j}_{m}": v[j] for j in range(data.tasks) for m, v in (("acc", accs), ("loss", losses))}
        for dom, j in (("source", data.switch), ("target", data.switch + 1)):
            out[f"{dom}_acc"], out[f"{dom}_loss"] = accs[j], losses[j]
        return out
    out = {}
    for dom in ("source", "target"):
        x, y, w = (getattr(data, f"{dom}_test_{s}") for s in ("x", "y", "w"))
        out[f"{dom}_acc"], out[f"{dom}_loss"] = _weighted(model, state["params"], x, y, w)
    return out


def source_step(model, spec, state, hp, data):
    """One source-phase update: ``CE`` on a batch of the source pool."""
    key = jax.random.fold_in(jax.random.fold_in(hp["key"], 1), state["step"])
    x, y = sample(key, data.source_x, data.source_y, spec.target_batch)
    loss, grads = jax.value_and_grad(lambda p: xent(model.apply({"params": p}, x), y))(state["params"])
    opt = optimizer(spec.optimizer, spec.source_lr)
    updates, opt_state = opt.update(grads, state["opt_state"], state["params"])
    new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
           "step": state["step"] + 1}
    return new, {"loss_source": loss}


def adapt_step(model, spec, state, hp, data, with_source: bool = True):
    """One adaptation update with the smoothed objective ``L_t`` (``with_source=False``: the program
    without the source branch, for runs all past their ramp)."""
    method: Method = hp["method"]
    t = state["step"]
    sched = state.get("sched")  # an adaptive schedule's state (absent for a fixed schedule)
    lam = lam_of(method.schedule, sched, t)
    # the data order depends on the seed and step only, never on the method: runs are paired
    key = jax.random.fold_in(jax.random.fold_in(hp["key"], 2), t)
    k_tgt, k_src = jax.random.split(key)
    xt, yt = data.target_sample(k_tgt, spec.target_batch)
    apply = lambda p, x: model.apply({"params": p}, x)  # noqa: E731

    def target_loss(p):
        return xent(apply(p, xt), yt)

    def source_loss(p):
        xs, ys = data.replay_sample(k_src, spec.source_batch)
        return xent(apply(p, xs), ys)

    reg = None
    if method.reg == "l2":
        reg = lambda p: l2_to_anchor(p, state["anchor"])  # noqa: E731
    elif method.reg == "kl":
        reg = lambda p: kl_to_anchor(apply(p, xt), apply(state["anchor"], xt))  # noqa: E731

    own = measures_source(method.schedule, sched, lam) < 1.0  # this run's own need of the source loss
    run_source = source_needed(measures_source(method.schedule, sched, lam))
    grads, info = jax.grad(
        lambda p: smoothed_loss(p, lam, run_source, target_loss,
                                source_loss if with_source else None, reg, method.reg_coef),
        has_aux=True)(state["params"])
    if classifiers.HEAD in grads:  # LP-FT: during the probe only the head's gradient is kept
        train = method.trains_backbone(t)
        grads = {k: g if k == classifiers.HEAD else jax.tree.map(lambda x: jnp.where(train, x, 0.0), g)
                 for k, g in grads.items()}
    opt = optimizer(spec.optimizer, hp["lr"])
    updates, opt_state = opt.update(grads, state["opt_state"], state["params"])
    new = dict(state, params=optax.apply_updates(state["params"], updates), opt_state=opt_state, step=t + 1)
    # the source loss of a run that does not need it is 0, as when no run of its batch does
    loss_source = own_branch(own, info["loss_source"], jnp.zeros_like(info["loss_source"]))
    if sched is not None:
        new["sched"] = advance(method.schedule, sched, t, loss_source, info["loss_target"])
    return new, {"loss_target": info["loss_target"], "loss_source": loss_source,
                 "lam": info["lam"], "reg": info["reg"]}
