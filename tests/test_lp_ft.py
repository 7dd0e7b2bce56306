"""LP-FT in the supervised objective, on a two-part model small enough to compile in a second: during
the probe (t < probe_steps) the backbone's gradient is zeroed, so with Adam it stays exactly where it
was while the head trains; from the probe's end, and for the hard switch throughout, the backbone
moves. (The same through the pretrained-vision setting with the ImageNet EfficientNet-Lite0:
tests/test_pretrained_vision.py, marked slow.)"""
from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lossmooth.core.objective import Method
from lossmooth.core.schedules import Schedule
from lossmooth.models.classifiers import HEAD
from lossmooth.settings.supervised.objective import adapt_step
from tests.conftest import same_tree


class Headed(nn.Module):
    """A backbone and a classifier head named as the pretrained classifiers name theirs."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name=HEAD)(nn.relu(nn.Dense(8, name="backbone")(x.reshape(x.shape[0], -1))))


def _sample(x, y):
    def sample(key, n):
        i = jax.random.randint(key, (n,), 0, len(x))
        return x[i], y[i]

    return sample


def _run(probe_steps: int, steps: int = 4):
    model, spec = Headed(), SimpleNamespace(optimizer="adam", target_batch=4, source_batch=4)
    x = jax.random.uniform(jax.random.PRNGKey(1), (16, 2, 2, 1))
    y = jnp.arange(16) % 3
    data = SimpleNamespace(target_sample=_sample(x, y), replay_sample=_sample(x[::-1], y))
    params = model.init(jax.random.PRNGKey(0), x[:1])["params"]
    state = {"params": params, "opt_state": optax.adam(1e-2).init(params), "step": jnp.asarray(0)}
    hp = {"method": Method.make("lp_ft", Schedule.make("linear", T=0), probe_steps=probe_steps),
          "key": jax.random.PRNGKey(2), "lr": 1e-2}
    step = jax.jit(lambda s: adapt_step(model, spec, s, hp, data)[0])
    trail = [state["params"]]
    for _ in range(steps):
        state = step(state)
        trail.append(state["params"])
    return trail



def test_the_backbone_is_frozen_bit_for_bit_during_the_probe_and_moves_after_it():
    trail = _run(probe_steps=2)
    assert same_tree(trail[2]["backbone"], trail[0]["backbone"])  # the probe: steps 0 and 1
    assert not same_tree(trail[1][HEAD], trail[0][HEAD]) and not same_tree(trail[2][HEAD], trail[1][HEAD])
    assert not same_tree(trail[3]["backbone"], trail[2]["backbone"])  # fine-tuning from step 2


def test_without_a_probe_the_backbone_trains_from_the_first_step():
    trail = _run(probe_steps=0, steps=1)
    assert not same_tree(trail[1]["backbone"], trail[0]["backbone"])
