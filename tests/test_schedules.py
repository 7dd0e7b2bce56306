import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.core.schedules import ADAPTIVE, KINDS, Schedule
from lossmooth.errors import ConfigError

STEPS = np.arange(0, 30)


def reference(kind, t, T, lam0, value=0.3, k=5.0, n=4):
    u = 1.0 if t >= T else t / max(T, 1)
    if kind == "hard":
        return 1.0
    if kind == "constant":
        return value
    if t >= T:
        return 1.0
    if kind == "linear":
        return lam0 + (1 - lam0) * u
    if kind == "cosine":
        return lam0 + (1 - lam0) * (1 - np.cos(np.pi * u)) / 2
    if kind == "exponential":
        return 1 - (1 - lam0) * (np.exp(-k * u) - np.exp(-k)) / (1 - np.exp(-k))
    if kind == "step":
        return lam0 + (1 - lam0) * np.floor(n * u) / n
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ADAPTIVE])  # adaptive: test_adaptive_schedules
@pytest.mark.parametrize("T,lam0", [(0, 0.0), (10, 0.0), (20, 0.25), (1, 0.5)])
def test_schedule_equals_formula(kind, T, lam0):
    s = Schedule.make(kind, T=T, lam0=lam0, value=0.3, sharpness=5.0, stairs=4)
    got = np.asarray(jax.vmap(s)(jnp.asarray(STEPS)))
    want = np.array([reference(kind, t, T, lam0) for t in STEPS])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.all((got >= 0) & (got <= 1))


@pytest.mark.parametrize("kind", ["linear", "cosine", "exponential", "step"])
def test_ramps_reach_exactly_one_at_T(kind):
    s = Schedule.make(kind, T=17, lam0=0.1)
    assert float(s(16)) < 1.0
    assert float(s(17)) == 1.0 and float(s(10_000)) == 1.0


def test_numbers_are_leaves_a_vmap_sweeps_in_one_compile():
    from lossmooth.core.engine import stack_runs

    Ts, lam0s = [0, 5, 10], [0.0, 0.2, 0.5]
    stacked = stack_runs([Schedule.make("linear", T=T, lam0=l) for T, l in zip(Ts, lam0s)])
    traces = []

    @jax.jit
    def f(s, t):
        traces.append(1)
        return jax.vmap(lambda s: s(t))(s)

    got = np.asarray(f(stacked, 4))
    want = [reference("linear", 4, T, l) for T, l in zip(Ts, lam0s)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    f(stacked.replace(T=stacked.T + 1), 4)
    assert len(traces) == 1  # new numbers, same compiled program


@pytest.mark.parametrize("kwargs,field", [
    ({"kind": "sawtooth"}, "schedule.kind"),
    ({"kind": "linear", "T": -3}, "schedule.T"),
    ({"kind": "linear", "T": 2.5}, "schedule.T"),
    ({"kind": "linear", "lam0": 1.5}, "schedule.lam0"),
    ({"kind": "linear", "lam0": -0.1}, "schedule.lam0"),
    ({"kind": "constant", "value": 2}, "schedule.value"),
    ({"kind": "step", "stairs": 0}, "schedule.stairs"),
])
def test_bad_schedule_numbers_fail_in_one_line(kwargs, field):
    with pytest.raises(ConfigError) as e:
        Schedule.make(**kwargs)
    msg = str(e.value)
    assert msg.startswith(field) and "\n" not in msg
