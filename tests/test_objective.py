import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lossmooth.core.objective import (RUN_AXIS, kl_to_anchor, l2_to_anchor, smoothed_loss,
                                      source_needed)
from lossmooth.models.classifiers import MLP

MODEL = MLP(num_classes=5, hidden=(16,))
KEY = jax.random.key(0)
XS, XT = jax.random.uniform(jax.random.key(1), (2, 8, 4, 4, 1))
YS, YT = jax.random.randint(jax.random.key(2), (2, 8), 0, 5)
PARAMS = MODEL.init(KEY, XS)["params"]


def xent(p, x, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(MODEL.apply({"params": p}, x), y))


def smoothed_grad(lam, params=PARAMS):
    lam = jnp.float32(lam)
    return jax.grad(lambda p: smoothed_loss(p, lam, source_needed(lam, None),
                                            lambda q: xent(q, XT, YT), lambda q: xent(q, XS, YS))[0])(params)


def tree_equal(a, b):
    """Equal up to float32 rounding (1e-6 of each leaf's largest entry): the two sides are different XLA
    programs (one inside a ``lax.cond``), whose reductions XLA may order differently on some CPUs (a few
    ulps, more on entries that cancel). Mixing in the other loss's gradient with a weight of even 1e-4
    is far outside this."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or np.max(np.abs(x - y)) > 1e-6 * np.max(np.abs(y)):
            return False
    return True


def test_lam0_gives_exactly_the_source_gradient():
    assert not tree_equal(smoothed_grad(1e-4), jax.grad(xent)(PARAMS, XS, YS))  # the check can tell
    assert tree_equal(smoothed_grad(0.0), jax.grad(xent)(PARAMS, XS, YS))


def test_lam1_gives_exactly_the_target_gradient():
    assert tree_equal(smoothed_grad(1.0), jax.grad(xent)(PARAMS, XT, YT))


def test_intermediate_lam_is_the_interpolation():
    g = smoothed_grad(0.3)
    gs, gt = jax.grad(xent)(PARAMS, XS, YS), jax.grad(xent)(PARAMS, XT, YT)
    for a, s, t in zip(jax.tree.leaves(g), jax.tree.leaves(gs), jax.tree.leaves(gt)):
        np.testing.assert_allclose(a, 0.7 * s + 0.3 * t, rtol=1e-5, atol=1e-7)


def _counting_objective():
    calls = []

    def source_loss(p):
        jax.debug.callback(lambda: calls.append(1))
        return xent(p, XS, YS)

    def loss(p, lam):
        return smoothed_loss(p, lam, source_needed(lam), lambda q: xent(q, XT, YT), source_loss)[0]

    return calls, loss


def test_source_branch_is_not_executed_once_lam_is_one():
    calls, loss = _counting_objective()
    step = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0), axis_name=RUN_AXIS))
    jax.block_until_ready(step(PARAMS, jnp.array([1.0, 1.0])))
    assert calls == []  # every run at lam = 1: the branch never ran
    jax.block_until_ready(step(PARAMS, jnp.array([1.0, 0.5])))
    assert len(calls) >= 1  # one run still ramping: the batch computes it


def test_a_run_at_lam_one_batched_with_a_ramping_run_gets_exactly_the_target_gradient():
    # the same compiled batch with and without a ramping neighbour: run 0 must not notice it
    _, loss = _counting_objective()
    step = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0), axis_name=RUN_AXIS))
    alone = jax.tree.map(lambda g: g[0], step(PARAMS, jnp.array([1.0, 1.0])))
    mixed = jax.tree.map(lambda g: g[0], step(PARAMS, jnp.array([1.0, 0.5])))
    assert tree_equal(mixed, alone)
    for a, t in zip(jax.tree.leaves(alone), jax.tree.leaves(jax.grad(xent)(PARAMS, XT, YT))):
        np.testing.assert_allclose(a, t, rtol=1e-5, atol=1e-7)


def test_info_reports_both_losses_and_lam():
    lam = jnp.float32(0.25)
    _, info = smoothed_loss(PARAMS, lam, source_needed(lam, None), lambda q: xent(q, XT, YT),
                            lambda q: xent(q, XS, YS))
    np.testing.assert_allclose(info["loss_source"], xent(PARAMS, XS, YS), rtol=1e-6)
    np.testing.assert_allclose(info["loss_target"], xent(PARAMS, XT, YT), rtol=1e-6)
    assert float(info["lam"]) == 0.25


def test_l2_pull_is_zero_at_the_anchor_and_its_gradient_is_the_displacement():
    moved = jax.tree.map(lambda p: p + 0.1, PARAMS)
    assert float(l2_to_anchor(PARAMS, PARAMS)) == 0.0
    g = jax.grad(l2_to_anchor)(moved, PARAMS)
    for x in jax.tree.leaves(g):
        np.testing.assert_allclose(x, 0.1, rtol=1e-5)


def test_kl_pull_is_zero_at_the_anchor_and_positive_elsewhere():
    logits = MODEL.apply({"params": PARAMS}, XT)
    assert abs(float(kl_to_anchor(logits, logits))) < 1e-6
    assert float(kl_to_anchor(logits * 2.0, logits)) > 0.0


@pytest.mark.parametrize("lam,want", [(1.0, False), (0.999, True), (0.0, True)])
def test_source_needed_outside_a_vmap(lam, want):
    assert bool(source_needed(jnp.float32(lam), None)) is want
