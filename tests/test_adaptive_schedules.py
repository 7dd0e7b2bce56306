"""Adaptive schedules (``guard``, ``progress``): each one's defining property on a problem where it can
be computed exactly, their numbers as vmapped leaves, and their state inside a supervised run.

The small problem: theta in R^2, L_S = 1 + ||theta - a||^2 and L_T = ||theta - b||^2, trained from
theta = a (the source optimum) by gradient descent on lam_t L_T + (1 - lam_t) L_S with the schedule's
state moved on from the exact losses after every step.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.core.objective import Method
from lossmooth.core.runs import expand_runs, groups_of, method_hparams
from lossmooth.core.schedules import Schedule, advance, init_state, lam_of, measures_source
from lossmooth.errors import ConfigError

A = jnp.array([0.0, 0.0])


def _train(schedule, b, steps=400, lr=0.05):
    """(source losses, target losses, lams) of gradient descent from theta = a, one jitted scan."""
    b = jnp.asarray(b, jnp.float32)
    loss_s = lambda th: 1.0 + jnp.sum((th - A) ** 2)  # noqa: E731
    loss_t = lambda th: jnp.sum((th - b) ** 2)  # noqa: E731

    def step(carry, t):
        theta, state = carry
        lam = lam_of(schedule, state, t)
        ls, lt = loss_s(theta), loss_t(theta)
        grad = jax.grad(lambda th: lam * loss_t(th) + (1 - lam) * loss_s(th))(theta)
        return (theta - lr * grad, advance(schedule, state, t, ls, lt)), (ls, lt, lam)

    _, out = jax.jit(lambda s: jax.lax.scan(step, (A, s), jnp.arange(steps)))(init_state(schedule))
    return [np.asarray(x) for x in out]


def test_guard_keeps_the_source_loss_within_eps_where_the_hard_switch_breaks_it():
    eps = 0.05
    guard = Schedule.make("guard", T=10_000, eps=eps, eta=2.0, mu0=19.0, patience=20, beta=0.0)
    b = [1.0, 1.0]  # the target optimum costs the source loss 2 / 1 = +200%
    ls, lt, lam = _train(guard, b)
    hard_ls, hard_lt, _ = _train(Schedule.make("hard"), b)
    assert hard_ls.max() > 2.5  # the hard switch breaks the constraint ...
    # ... the guard keeps it (starting near the source objective, lam = 0.05, the dual keeps up)
    assert ls.max() <= 1 + eps + 0.01 * eps
    # and it is active where it ends up: the source loss sits at its bound and the target improved
    assert abs(ls[-1] - (1 + eps)) < 0.01 * eps
    assert lt[-1] < 0.75 * lt[0]
    # the constrained optimum: theta on the segment a-b at distance sqrt(eps) from a
    np.testing.assert_allclose(lt[-1], (np.sqrt(2) - np.sqrt(eps)) ** 2, rtol=1e-3)
    assert 0 < lam[-1] < 1


def test_guard_ends_where_the_constraint_is_slack():
    """A target whose optimum keeps the source loss within eps: mu falls to 0, lam to 1, and after
    ``patience`` slack updates the guard ends (its source loss is no longer needed)."""
    guard = Schedule.make("guard", T=10_000, eps=0.05, eta=2.0, mu0=1.0, patience=20, beta=0.0)
    ls, _, lam = _train(guard, [0.1, 0.1], steps=200)
    assert ls.max() <= 1.05
    at_one = int(np.argmax(lam == 1.0))
    assert 0 < at_one < 200 and np.all(lam[at_one:] == 1.0)
    # a source loss that never rises: slack throughout; mu falls by eta * eps = 0.1 per update from 1,
    # reaches 0 after about 10 updates, and 20 (patience) slack updates later the guard ends
    state, done_after = init_state(guard), None
    for t in range(60):
        state = advance(guard, state, t, 1.0, 0.5)
        if done_after is None and float(state["done"]):
            done_after = t + 1
    assert 29 <= done_after <= 31 and float(lam_of(guard, state, 60)) == 1.0
    assert float(measures_source(guard, state, 1.0)) == 1.0            # ended: no source branch
    assert float(measures_source(guard, init_state(guard), 1.0)) == 0.0  # running: measured at lam = 1


def test_progress_follows_the_fall_of_the_target_loss():
    prog = Schedule.make("progress", T=10_000, lam0=0.2, rho=0.5, beta=0.0)
    state, lams = init_state(prog), []
    target = [2.0, 1.8, 1.9, 1.5, 1.6, 1.2, 1.0, 0.9, 2.0]
    for t, lt in enumerate(target):
        lams.append(float(lam_of(prog, state, t)))
        state = advance(prog, state, t, 1.0, lt)
    # lam_{t+1} = max over s <= t of lam0 + (1 - lam0) clip((2 - L_T(s)) / (0.5 * 2), 0, 1)
    want = [0.2] + list(np.maximum.accumulate([0.2 + 0.8 * min(max((2 - x) / 1.0, 0), 1) for x in target]))[:-1]
    np.testing.assert_allclose(lams, want, rtol=1e-6)
    assert lams[-1] == 1.0 and float(state["done"]) == 1.0  # halved at t = 6: ended, stays 1
    # a target loss that never falls leaves lam at lam0 until the maximum length T
    flat = Schedule.make("progress", T=5, lam0=0.2, rho=0.5, beta=0.0)
    state = init_state(flat)
    for t in range(5):
        assert float(lam_of(flat, state, t)) == pytest.approx(0.2)
        state = advance(flat, state, t, 1.0, 2.0)
    assert float(lam_of(flat, state, 5)) == 1.0


def test_adaptive_numbers_are_leaves_a_vmap_sweeps_in_one_compile():
    methods = {"source_guard": Method.make("source_guard", Schedule.make("guard", T=50))}
    runs = expand_runs(methods, {"eps": [0.01, 0.1], "eta": [0.5, 1.0]}, num_seeds=2, seed=0)
    assert len(runs) == 8 and len(groups_of(runs)) == 1
    assert {(round(r["hparams"]["eps"], 6), r["hparams"]["eta"]) for r in runs} == {
        (0.01, 0.5), (0.01, 1.0), (0.1, 0.5), (0.1, 1.0)}
    assert "lam0" not in method_hparams(runs[0]["method"])
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *[r["method"].schedule for r in runs])
    traces = []

    @jax.jit
    def run(s):
        traces.append(1)
        return jax.vmap(lambda one: advance(one, init_state(one), 1, 1.5, 1.0)["mu"])(s)

    mu = np.asarray(run(stacked))
    # at t = 1 the reference is still unset (0): an infinite violation puts all weight on the source
    assert np.all(mu > 1e6)
    run(stacked.replace(eps=stacked.eps * 2))
    assert len(traces) == 1


@pytest.mark.parametrize("kwargs,field", [
    ({"kind": "guard", "T": 0}, "schedule.T"),
    ({"kind": "guard", "T": 10, "eps": -0.1}, "schedule.eps"),
    ({"kind": "guard", "T": 10, "eta": 0}, "schedule.eta"),
    ({"kind": "guard", "T": 10, "patience": 2.5}, "schedule.patience"),
    ({"kind": "progress", "T": 10, "rho": 0}, "schedule.rho"),
    ({"kind": "progress", "T": 10, "beta": 1.5}, "schedule.beta"),
    ({"kind": "guard", "T": 10, "delta": 1}, "schedule.delta"),
])
def test_bad_adaptive_numbers_fail_in_one_line(kwargs, field):
    with pytest.raises(ConfigError) as e:
        Schedule.make(**kwargs)
    assert str(e.value).startswith(field) and "\n" not in str(e.value)
