"""A run's numbers are a function of its config, its seed and the machine kind, not of the runs that
share its compiled batch: on one device every batch is padded to a multiple of
:data:`lossmooth.core.engine.LANES` and run block by block, each block the same program."""
import json
import os

import jax
import numpy as np
import pytest

from lossmooth.core import engine
from lossmooth.runner import run_config
from tests.conftest import TINY, compose

pytestmark = pytest.mark.skipif(jax.device_count() > 1, reason="blocks of lanes are a one-device layout")


def _rows(run_dir: str, method: str, seed: int) -> list[str]:
    """The run's metric rows (adaptation) and its source model's (source phase) as JSON text, without
    the run index (which numbers the runs of a job)."""
    runs = json.load(open(os.path.join(run_dir, "runs.json")))
    (index,) = [r["run_index"] for r in runs if r["method"] == method and r["seed"] == seed]
    out = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("run_index") == index or (r["phase"] == "source" and r["seed"] == seed):
                r.pop("run_index", None)
                out.append(json.dumps(r, sort_keys=True))
    return out


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("lanes")
    out = {}
    for name, extra in (("alone", ["method=hard_switch", "num_seeds=1"]),
                        ("beside_methods", ["num_seeds=1"]),
                        ("beside_seeds", ["method=hard_switch", "num_seeds=3"]),
                        ("two_blocks", ["num_seeds=5", "seed=0"])):  # 10 runs: two blocks of 8 lanes
        cfg = compose(TINY + extra)
        cfg["results_dir"], cfg["cache_dir"] = str(tmp / name), cache_dir
        out[name] = run_config(cfg, {}, progress=False)
    return out


def test_a_run_is_byte_identical_alone_beside_other_methods_and_beside_other_seeds(jobs):
    alone = _rows(jobs["alone"], "hard_switch", 0)
    assert alone and any('"phase": "adapt"' in r for r in alone) and any('"phase": "source"' in r for r in alone)
    for name in ("beside_methods", "beside_seeds", "two_blocks"):
        assert _rows(jobs[name], "hard_switch", 0) == alone, name
    assert _rows(jobs["two_blocks"], "loss_smoothing", 0) == _rows(jobs["beside_methods"], "loss_smoothing", 0)


def test_blocks_are_one_program_and_padding_is_to_the_lanes():
    # at least two blocks: XLA compiles a one-block batch as straight-line code, rounded otherwise
    assert engine.padded_size(2, 1, 8) == 16 and engine.padded_size(10, 1, 8) == 16
    assert engine.padded_size(17, 1, 8) == 24 and engine.padded_size(3, 1, 1) == 3
    assert engine.padded_size(3, 2, 8) == 4  # several devices: the device count alone
    f = engine.run_vmap(lambda s, h, d: s * h + d, lanes=4)
    x = np.arange(8.0)
    assert np.array_equal(np.asarray(f(x, x, 1.0)), x * x + 1.0)
    assert np.array_equal(np.asarray(f(x[:3], x[:3], 1.0)), x[:3] * x[:3] + 1.0)  # not a multiple: plain vmap
