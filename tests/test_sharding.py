"""One run spread over several devices (lossmooth.core.sharding): the mesh a phase gets, which leaves
are split, that one device's programs are unchanged, and, in a process with 4 CPU devices, that the
supervised and LM phases spread over 4 devices give the one-device metrics within float tolerance
while each device holds and computes about a quarter."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.core import sharding

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("n_dev,n_runs,shard,pad,want", [
    (4, 1, "auto", True, (1, 4)), (4, 2, "auto", True, (2, 2)), (4, 3, "auto", True, (2, 2)),
    (4, 8, "auto", True, (4, 1)), (8, 6, "auto", True, (4, 2)), (4, 8, 2, True, (2, 2)),
    (4, 8, "auto", False, (1, 4)), (4, 1, 2, False, (1, 2)), (1, 5, "auto", True, (1, 1))])
def test_a_phase_gets_the_runs_it_has_and_shards_each_over_the_rest(n_dev, n_runs, shard, pad, want):
    assert sharding.mesh_shape(n_dev, n_runs, shard, pad) == want


def test_a_shard_count_that_does_not_divide_the_devices_is_refused():
    with pytest.raises(ValueError, match="divisor of the device count 4"):
        sharding.mesh_shape(4, 1, 3)


def test_large_leaves_split_along_their_largest_divisible_axis_small_ones_stay_whole():
    assert sharding.leaf_spec((512, 64), 4) == ("shard", None)
    assert sharding.leaf_spec((64, 512), 4) == (None, "shard")
    assert sharding.leaf_spec((510, 64), 4) == (None, "shard")  # 510 is not a multiple of 4
    assert sharding.leaf_spec((64,), 4) == (None,)  # small: kept whole
    assert sharding.leaf_spec((), 4) == ()
    assert sharding.leaf_spec((513, 33), 4) == (None, None)  # no axis divides
    assert sharding.leaf_spec((512, 64), 1) == (None, None)


def test_without_a_mesh_the_annotations_leave_a_program_unchanged():
    """One device (or runs filling the devices): split_batch and keep_sharded add nothing to the
    program, so the numbers of every run made without a shard axis are those of the code before it."""
    def plain(x):
        return jnp.tanh(x @ x.T)

    def annotated(x):
        return jnp.tanh(sharding.split_batch(sharding.keep_sharded(x)) @ x.T)

    x = jnp.ones((256, 128))
    assert str(jax.make_jaxpr(plain)(x)) == str(jax.make_jaxpr(annotated)(x))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    work = tmp_path_factory.mktemp("sharded")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(REPO / "tests" / "sharded_runs.py"), str(work)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("SHARDED "))
    return json.loads(line[len("SHARDED "):])


CASES = [("supervised", "source"), ("supervised", "adapt"), ("lm", "adapt")]


@pytest.mark.parametrize("setting,phase", CASES)
def test_a_run_over_4_devices_gives_the_one_device_metrics(sharded, setting, phase):
    got = sharded[setting][phase]
    assert got["mesh"] == {"runs": 1, "shard": 4}
    assert set(got["one"]) == set(got["four"])
    for name in got["one"]:
        one, four = np.asarray(got["one"][name]), np.asarray(got["four"][name])
        assert one.shape == four.shape
        # only the order of floating-point sums differs
        np.testing.assert_allclose(four, one, rtol=2e-5, atol=1e-6, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("setting,phase", CASES)
def test_each_device_holds_its_share_of_the_state_and_computes_a_quarter(sharded, setting, phase):
    got = sharded[setting][phase]
    b = got["bytes"]
    # every leaf large enough is split 4 ways, the rest is whole on every device
    assert b["per_device"] == b["expected_per_device"] < 0.5 * b["whole"]
    # the batch is split data-parallel: XLA counts about a quarter of the FLOPs per device
    assert got["flops"]["four"] < 0.3 * got["flops"]["one"]
