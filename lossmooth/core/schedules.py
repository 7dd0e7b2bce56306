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

import jax.numpy as jnp
from flax import struct

from lossmooth.errors import ConfigError

KINDS = ("hard", "linear", "cosine", "exponential", "step", "constant")


@struct.dataclass
class Schedule:
    """A lam schedule: ``kind`` is static, the numbers are leaves (see the module docstring)."""

    kind: str = struct.field(pytree_node=False, default="linear")
    T: jnp.ndarray | float = 0.0
    lam0: jnp.ndarray | float = 0.0
    value: jnp.ndarray | float = 1.0
    sharpness: jnp.ndarray | float = 5.0
    stairs: jnp.ndarray | float = 4.0

    @classmethod
    def make(cls, kind: str, T=0, lam0=0.0, value=1.0, sharpness=5.0, stairs=4, field="schedule"):
        """Validate plain numbers and build a schedule whose leaves are float32 arrays."""
        validate(kind, T, lam0, value, sharpness, stairs, field=field)
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return cls(kind=kind, T=f(T), lam0=f(lam0), value=f(value), sharpness=f(sharpness),
                   stairs=f(stairs))

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
    else:  # validated at construction; kept for direct construction
        raise ConfigError(f"schedule.kind: unknown schedule '{s.kind}'; choose one of {', '.join(KINDS)}")
    # ramps end at exactly 1.0 so `lam == 1` can switch the source branch off
    if s.kind not in ("hard", "constant"):
        lam = jnp.where(t >= T, 1.0, lam)
    return jnp.clip(lam, 0.0, 1.0)


def validate(kind, T, lam0, value, sharpness, stairs, field="schedule") -> None:
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


def _is_number(v) -> bool:
    try:
        return not isinstance(v, bool) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _is_int(v) -> bool:
    return _is_number(v) and float(v) == int(float(v))
