"""The one objective combinator every setting trains with.

    L(theta) = lam * L_T(theta; b_T) + (1 - lam) * L_S(theta; b_S) + c * R(theta)

``b_T`` and ``b_S`` are independent batches (target data, source data); both losses are computed
first and interpolated after. ``R`` is an optional pull toward the model at the switch:

- ``l2``: R = 1/2 ||theta - theta_0||^2                       (L2-init)
- ``kl``: R = KL(p_theta0(.|x) || p_theta(.|x)) on the target batch  (KL-init / distillation)

The methods that tables compare are configurations of this one objective (:class:`Method`):

| method           | schedule                  | regularizer |
|------------------|---------------------------|-------------|
| hard_switch      | ``hard`` (lam = 1)        | none        |
| loss_smoothing   | a ramp (linear: the paper)| none        |
| replay_mix       | ``constant`` lam = value  | none        |
| l2_init          | ``hard``                  | l2          |
| kl_init          | ``hard``                  | kl          |
| lp_ft            | ``hard``                  | none; only the head trains for the first ``probe_steps`` |

LP-FT (linear probe, then fine-tune) is the hard switch whose gradient outside the classifier head
is zeroed for ``t < probe_steps``; with Adam (zero moments at the switch) the backbone then stays
exactly where it was until the probe ends.

Once lam = 1 the source branch is inside a ``lax.cond`` whose predicate is false, so neither the
source batch nor its forward/backward pass is computed. Under ``vmap`` a per-run predicate would
become a ``select`` that runs both branches, so :func:`source_needed` reduces it over the named run
axis: the source branch is skipped as soon as every run in the batch has reached lam = 1.

Where one backward pass through both losses costs too much memory (the LM setting: differentiating
through the ``lax.cond`` keeps buffers for the residuals of both forward passes), a setting may
accumulate the gradient of the two terms apart, ``grad(lam L_T) + grad(source_term(lam, L_S))``: the
same objective (:func:`source_term` is its source term), summed in another float order.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from lossmooth.core.schedules import Schedule
from lossmooth.errors import ConfigError

REGULARIZERS = ("none", "l2", "kl")
RUN_AXIS = "runs"


@struct.dataclass
class Method:
    """A method = a lam schedule + an optional pull to the switch point (``reg`` is static).

    The method's name is not part of the pytree: differently named methods with the same structure
    (hard_switch is a linear ramp with T = 0) stack into one vmapped batch.
    """

    schedule: Schedule
    reg: str = struct.field(pytree_node=False, default="none")
    reg_coef: jnp.ndarray | float = 0.0
    probe_steps: jnp.ndarray | float = 0.0  # LP-FT: steps at the start where only the head trains

    @classmethod
    def make(cls, name: str, schedule: Schedule, reg: str = "none", reg_coef: float = 0.0,
             probe_steps: int = 0):
        if reg not in REGULARIZERS:
            raise ConfigError(f"method.{name}.reg: unknown regularizer '{reg}'; choose one of "
                              f"{', '.join(REGULARIZERS)}")
        try:
            coef = float(reg_coef)
        except (TypeError, ValueError):
            coef = -1.0
        if coef < 0:
            raise ConfigError(f"method.{name}.reg_coef: must be a number >= 0, got {reg_coef!r}")
        if isinstance(probe_steps, bool) or not isinstance(probe_steps, int) or probe_steps < 0:
            raise ConfigError(f"method.{name}.probe_steps: must be an integer >= 0, got {probe_steps!r}")
        return cls(schedule=schedule, reg=reg, reg_coef=jnp.asarray(coef, jnp.float32),
                   probe_steps=jnp.asarray(probe_steps, jnp.float32))

    def trains_backbone(self, t) -> jnp.ndarray:
        """False while LP-FT's linear probe runs (t < probe_steps): only the head is updated."""
        return t >= self.probe_steps

    @property
    def signature(self) -> tuple:
        """The static structure: methods with equal signatures share one compiled program."""
        return (self.schedule.kind, self.reg)


def source_needed(lam: jnp.ndarray, axis_name: str | None = RUN_AXIS) -> jnp.ndarray:
    """True while some run still needs the source loss (lam < 1).

    Reduced over ``axis_name`` when called under ``vmap(..., axis_name=axis_name)`` so the
    predicate is unbatched and ``lax.cond`` really skips the branch; pass None outside a vmap.
    """
    need = (lam < 1.0).astype(jnp.float32)
    if axis_name is not None:
        try:
            need = jax.lax.pmax(need, axis_name)
        except NameError:  # not under a vmap with that axis name
            pass
    return need > 0


def own_branch(need: jnp.ndarray, new, old):
    """``new`` where this run itself needs the source branch (``need``: its own lam < 1, before the
    reduction over the batch of :func:`source_needed`), else ``old``: what a branch that ran only because
    another run in the batch needed it computed is dropped, so a run's numbers do not depend on the runs
    beside it (a pytree: leaf by leaf)."""
    return jax.tree.map(lambda a, b: jnp.where(need, a, b), new, old)


def source_term(lam: jnp.ndarray, ls: jnp.ndarray) -> jnp.ndarray:
    """``(1 - lam) * L_S``, exactly 0 once ``lam >= 1``: where(), not a plain product, so a run at
    lam = 1 contributes 0 (and a zero cotangent) even while another run in the batch keeps the source
    branch alive, and even if its source loss were not finite."""
    return jnp.where(lam < 1.0, (1.0 - lam) * ls, 0.0)


def smoothed_loss(
    params,
    lam: jnp.ndarray,
    run_source: jnp.ndarray,
    target_loss: Callable,
    source_loss: Callable | None,
    regularizer: Callable | None = None,
    reg_coef: jnp.ndarray | float = 0.0,
):
    """``lam * target_loss(params) + (1 - lam) * source_loss(params) + reg_coef * regularizer(params)``.

    ``target_loss``/``source_loss`` map params to a scalar loss, each on its own batch (the source
    one gathers its batch itself, so a skipped branch gathers nothing). ``run_source`` (from
    :func:`source_needed`) gates the source branch; ``source_loss=None`` removes it from the program
    (the engine compiles such a program for the chunks that start after every run's ramp). Returns ``(loss, info)`` with both losses,
    ``lam`` and the regularizer value for logging; use with ``jax.grad(..., has_aux=True)``.
    """
    lt = target_loss(params)
    if source_loss is None:  # statically source-free (every run is past its ramp): no cond at all
        ls = jnp.zeros((), lt.dtype)
    else:
        ls = jax.lax.cond(run_source, source_loss, lambda p: jnp.zeros((), lt.dtype), params)
    src_term = source_term(lam, ls)
    loss = lam * lt + src_term
    reg = jnp.zeros((), lt.dtype)
    if regularizer is not None:
        reg = regularizer(params)
        loss = loss + reg_coef * reg
    info = {"loss_target": lt, "loss_source": ls, "lam": lam, "reg": reg}
    return loss, info


def l2_to_anchor(params, anchor) -> jnp.ndarray:
    """R = 1/2 sum ||theta - theta_0||^2 over every leaf."""
    sq = jax.tree.map(lambda p, a: jnp.sum(jnp.square(p - jax.lax.stop_gradient(a))), params, anchor)
    return 0.5 * sum(jax.tree.leaves(sq))


def kl_to_anchor(logits: jnp.ndarray, anchor_logits: jnp.ndarray) -> jnp.ndarray:
    """Mean over the batch of KL(softmax(anchor_logits) || softmax(logits))."""
    p0 = jax.nn.log_softmax(jax.lax.stop_gradient(anchor_logits), axis=-1)
    p = jax.nn.log_softmax(logits, axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(p0) * (p0 - p), axis=-1))
