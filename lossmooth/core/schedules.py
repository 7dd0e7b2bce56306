"""Schedules for lam_t, the weight on the target objective.

The smoothed objective is ``L_t = (1 - lam_t) * L_source + lam_t * L_target``; a schedule maps the
adaptation step ``t`` (0 = the first step after the switch) to ``lam_t`` in [0, 1].

Every schedule is a :class:`Schedule` pytree: ``kind`` is static structure (it picks the formula and
so the compiled program), the numbers (``T``, ``lam0``, ``value``, ``sharpness``, ``stairs``) are
array leaves, so ``jax.vmap`` sweeps them inside one compile.

Formulas, with ``u = clip(t / T, 0, 1)`` (and ``u = 1`` when ``T = 0``):

- ``hard``:        lam_t = 1                                   (the hard switch)
- ``linear``:      lam_t = lam0 + (1 - lam0) * u               (the paper's ramp)
- ``cosine``:      lam_t = lam0 + (1 - lam0) * (1 - cos(pi u)) / 2
- ``exponential``: lam_t = 1 - (1 - lam0) * (exp(-k u) - exp(-k)) / (1 - exp(-k)),  k = sharpness
- ``step``:        lam_t = lam0 + (1 - lam0) * floor(stairs * u) / stairs   (a staircase)
- ``constant``:    lam_t = value for every t                    (a fixed mix: the replay baseline)

Every ramp reaches exactly 1 at ``t = T`` so the source branch can be skipped from then on.

Adaptive schedules (``guard``, ``progress``) choose lam_t from the training itself: their state
(:func:`init_state`, a dict of float32 scalars) lives in the run's train state and is moved on after
every update by :func:`advance` from that update's two batch losses (``L_S``, ``L_T``, measured at the
parameters before the update, so they are known before lam_t is used). ``T`` is their maximum length:
lam = 1 for good from ``t = T`` at the latest (``ends_at``). With ``ema_t`` an exponential moving average
(decay ``beta``) of a batch loss, started at its first value, and ``ref`` the first batch loss (at the
switch):

- ``guard`` (a source guard): minimize L_T subject to L_S <= (1 + eps) L_S(switch), by the
  Lagrangian ``L_T + mu (L_S - (1 + eps) ref_S)`` rescaled to a convex mix, lam = 1 / (1 + mu);
  ``mu`` (from ``mu0``) follows projected ascent on the relative violation,
  ``mu <- max(0, mu + eta (ema_S / ref_S - (1 + eps)))``. The guard ends once the constraint has been
  slack with ``mu = 0`` for ``patience`` updates in a row (or at ``T``); until it ends the source loss
  is measured every update, even at lam = 1.
- ``progress``: lam follows the target's own progress,
  ``lam_t = max(lam_{t-1}, lam0 + (1 - lam0) clip((ref_T - ema_T) / (rho ref_T), 0, 1))``: the weight
  moves to the target as fast as the target loss falls, reaching 1 once it has fallen by a fraction
  ``rho``. Rationale: the harm a hard switch does comes from the target's large early gradients;
  they shrink as the target loss falls, so a fast-learnt target gets a short ramp and a slow one a long
  ramp without choosing T per shift. Never decreasing, it ends at lam = 1 (or at ``T``).
optax's own schedules take the transition length as a Python int (and branch on it in Python), which
would bake T into the compiled program; these formulas keep T an array leaf so T itself can be swept.

>>> import jax.numpy as jnp
>>> s = Schedule.make("linear", T=4, lam0=0.0)
>>> [float(s(t)) for t in range(6)]
[0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
>>> [float(Schedule.make("hard")(t)) for t in range(2)]
[1.0, 1.0]
>>> round(float(Schedule.make("cosine", T=4)(2)), 6)
0.5
>>> [float(Schedule.make("step", T=4, stairs=2)(t)) for t in range(5)]
[0.0, 0.0, 0.5, 0.5, 1.0]
>>> float(Schedule.make("constant", value=0.5)(1000))
0.5
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from lossmooth.errors import ConfigError

KINDS = ("hard", "linear", "cosine", "exponential", "step", "constant", "guard", "progress")
ADAPTIVE = ("guard", "progress")  # kinds whose lam depends on the training state (see the module docstring)
# the numbers of the adaptive kinds: name -> (default, lower bound, lower bound allowed?, upper bound or None)
ADAPTIVE_NUMBERS = {"eps": (0.05, 0.0, True, None), "eta": (2.0, 0.0, False, None), "mu0": (19.0, 0.0, True, None),
                    "patience": (20.0, 1.0, True, None), "rho": (0.5, 0.0, False, 1.0),
                    "beta": (0.9, 0.0, True, 1.0)}


@struct.dataclass
class Schedule:
    """A lam schedule: ``kind`` is static, the numbers are leaves (see the module docstring)."""

    kind: str = struct.field(pytree_node=False, default="linear")
    T: jnp.ndarray | float = 0.0
    lam0: jnp.ndarray | float = 0.0
    value: jnp.ndarray | float = 1.0
    sharpness: jnp.ndarray | float = 5.0
    stairs: jnp.ndarray | float = 4.0
    eps: jnp.ndarray | float = 0.05
    eta: jnp.ndarray | float = 2.0
    mu0: jnp.ndarray | float = 19.0
    patience: jnp.ndarray | float = 20.0
    rho: jnp.ndarray | float = 0.5
    beta: jnp.ndarray | float = 0.9

    @classmethod
    def make(cls, kind: str, T=0, lam0=0.0, value=1.0, sharpness=5.0, stairs=4, field="schedule", **adaptive):
        """Validate plain numbers and build a schedule whose leaves are float32 arrays; ``adaptive``:
        the numbers of ``ADAPTIVE_NUMBERS`` (eps, eta, mu0, patience, rho, beta)."""
        validate(kind, T, lam0, value, sharpness, stairs, field=field, **adaptive)
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        numbers = {k: f(adaptive.get(k, d[0])) for k, d in ADAPTIVE_NUMBERS.items()}
        return cls(kind=kind, T=f(T), lam0=f(lam0), value=f(value), sharpness=f(sharpness),
                   stairs=f(stairs), **numbers)

    def __call__(self, step) -> jnp.ndarray:
        return lam_at(self, step)

    @property
    def is_ramp(self) -> bool:
        """True for a ramp of positive length (host-side; a ramp with T = 0 is the hard switch)."""
        return self.kind not in ("hard", "constant") and float(self.T) > 0

    @property
    def ends_at(self) -> float | None:
        """The first step from which lam = 1 for good (host-side); None for a constant mix."""
        if self.kind == "constant":
            return None
        return float(self.T) if self.is_ramp else 0.0


def lam_at(s: Schedule, step) -> jnp.ndarray:
    """lam_t for the adaptation step ``step`` (int or array); see the module docstring."""
    t = jnp.asarray(step, jnp.float32)
    T = jnp.asarray(s.T, jnp.float32)
    lam0 = jnp.asarray(s.lam0, jnp.float32)
    # u = 1 once t >= T (this also covers T = 0 without dividing by zero)
    u = jnp.where(t >= T, 1.0, t / jnp.maximum(T, 1.0))
    if s.kind == "hard":
        lam = jnp.ones_like(t)
    elif s.kind == "linear":
        lam = lam0 + (1.0 - lam0) * u
    elif s.kind == "cosine":
        lam = lam0 + (1.0 - lam0) * 0.5 * (1.0 - jnp.cos(jnp.pi * u))
    elif s.kind == "exponential":
        k = jnp.asarray(s.sharpness, jnp.float32)
        lam = 1.0 - (1.0 - lam0) * (jnp.exp(-k * u) - jnp.exp(-k)) / (1.0 - jnp.exp(-k))
    elif s.kind == "step":
        n = jnp.asarray(s.stairs, jnp.float32)
        lam = lam0 + (1.0 - lam0) * jnp.floor(n * u) / n
    elif s.kind == "constant":
        lam = jnp.broadcast_to(jnp.asarray(s.value, jnp.float32), t.shape)
    elif s.kind in ADAPTIVE:  # without its state: the value at the switch (lam_of gives the rest)
        lam = jnp.broadcast_to(_lam_at_switch(s), t.shape)
    else:  # validated at construction; kept for direct construction
        raise ConfigError(f"schedule.kind: unknown schedule '{s.kind}'; choose one of {', '.join(KINDS)}")
    # ramps end at exactly 1.0 so `lam == 1` can switch the source branch off
    if s.kind not in ("hard", "constant"):
        lam = jnp.where(t >= T, 1.0, lam)
    return jnp.clip(lam, 0.0, 1.0)


def _lam_at_switch(s: Schedule) -> jnp.ndarray:
    if s.kind == "guard":
        return 1.0 / (1.0 + jnp.asarray(s.mu0, jnp.float32))
    return jnp.asarray(s.lam0, jnp.float32)


def init_state(s: Schedule) -> dict:
    """An adaptive schedule's state at the switch (float32 scalars; nothing is measured yet)."""
    zero = jnp.zeros((), jnp.float32)
    return {"lam": _lam_at_switch(s) + zero, "mu": jnp.asarray(s.mu0, jnp.float32) + zero,
            "ref_source": zero, "ref_target": zero, "ema_source": zero, "ema_target": zero,
            "slack": zero, "done": zero}


def lam_of(s: Schedule, state: dict | None, step) -> jnp.ndarray:
    """lam_t: :func:`lam_at` for a fixed schedule, the state's lam (1 once it has ended) for an adaptive one."""
    if s.kind not in ADAPTIVE:
        return lam_at(s, step)
    return jnp.where(state["done"] > 0, 1.0, state["lam"])


def measures_source(s: Schedule, state: dict | None, lam: jnp.ndarray) -> jnp.ndarray:
    """A lam-like number that is < 1 while the source loss must be computed (give it to
    :func:`lossmooth.core.objective.source_needed`): lam itself, or for an adaptive schedule 0 until
    it has ended (the guard measures L_S even at lam = 1)."""
    if s.kind not in ADAPTIVE:
        return lam
    return jnp.where(state["done"] > 0, 1.0, 0.0)


def advance(s: Schedule, state: dict | None, step, loss_source, loss_target) -> dict | None:
    """The adaptive state after the update at ``step``, from that update's batch losses (module
    docstring); an ended state stays as it is. ``None`` (a fixed schedule) stays None."""
    if s.kind not in ADAPTIVE:
        return state
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    t, ls, lt, beta = f(step), f(loss_source), f(loss_target), f(s.beta)
    first = t == 0
    ref_s = jnp.where(first, ls, state["ref_source"])
    ref_t = jnp.where(first, lt, state["ref_target"])
    ema_s = jnp.where(first, ls, beta * state["ema_source"] + (1 - beta) * ls)
    ema_t = jnp.where(first, lt, beta * state["ema_target"] + (1 - beta) * lt)
    mu, slack = state["mu"], state["slack"]
    if s.kind == "guard":
        violation = ema_s / jnp.maximum(ref_s, 1e-12) - (1.0 + f(s.eps))
        mu = jnp.maximum(0.0, mu + f(s.eta) * violation)
        slack = jnp.where((violation <= 0) & (mu == 0), slack + 1, 0.0)
        lam = 1.0 / (1.0 + mu)
        ended = slack >= f(s.patience)
    else:
        fall = jnp.clip((ref_t - ema_t) / (f(s.rho) * jnp.maximum(ref_t, 1e-12)), 0.0, 1.0)
        lam = jnp.maximum(state["lam"], f(s.lam0) + (1.0 - f(s.lam0)) * fall)
        ended = lam >= 1.0
    done = (state["done"] > 0) | ended | (t + 1 >= f(s.T))
    new = {"lam": lam, "mu": mu, "ref_source": ref_s, "ref_target": ref_t, "ema_source": ema_s,
           "ema_target": ema_t, "slack": slack, "done": done.astype(jnp.float32)}
    # an ended schedule is frozen (its source loss is no longer computed: it reads 0)
    return jax.tree.map(lambda old, upd: jnp.where(state["done"] > 0, old, upd), state, new)


def validate(kind, T, lam0, value, sharpness, stairs, field="schedule", **adaptive) -> None:
    """Raise a one-line :class:`ConfigError` naming the field and the fix."""
    if kind not in KINDS:
        raise ConfigError(f"{field}.kind: unknown schedule '{kind}'; choose one of {', '.join(KINDS)}")
    if isinstance(T, bool) or not _is_int(T) or int(T) < 0:
        raise ConfigError(f"{field}.T: must be a non-negative integer number of steps, got {T!r}")
    for name, v in (("lam0", lam0), ("value", value)):
        if not _is_number(v) or not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"{field}.{name}: must be a number in [0, 1], got {v!r}")
    if not _is_number(sharpness) or float(sharpness) <= 0:
        raise ConfigError(f"{field}.sharpness: must be a positive number, got {sharpness!r}")
    if isinstance(stairs, bool) or not _is_int(stairs) or int(stairs) < 1:
        raise ConfigError(f"{field}.stairs: must be an integer >= 1, got {stairs!r}")
    for name, v in adaptive.items():
        if name not in ADAPTIVE_NUMBERS:
            raise ConfigError(f"{field}.{name}: unknown schedule number; allowed: {', '.join(ADAPTIVE_NUMBERS)}")
        _, lo, closed, hi = ADAPTIVE_NUMBERS[name]
        ok = _is_number(v) and (float(v) >= lo if closed else float(v) > lo) and (hi is None or float(v) <= hi)
        if name == "patience":
            ok = ok and _is_int(v)
        if not ok:
            bounds = f"{'>=' if closed else '>'} {lo:g}" + ("" if hi is None else f" and <= {hi:g}")
            raise ConfigError(f"{field}.{name}: must be a{'n integer' if name == 'patience' else ' number'} "
                              f"{bounds}, got {v!r}")
    if kind in ADAPTIVE and _is_int(T) and int(T) == 0:
        raise ConfigError(f"{field}.T: the {kind} schedule needs a maximum length T >= 1 (updates)")


def _is_number(v) -> bool:
    try:
        return not isinstance(v, bool) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _is_int(v) -> bool:
    return _is_number(v) and float(v) == int(float(v))
