"""One run over two processes joined by ``jax.distributed`` over CPU collectives (gloo) on loopback,
as on two hosts of a SLURM job: each process has one CPU device, the mesh spans both, and the single
run of the tiny supervised config is spread over them (its state FSDP-style, its batches
data-parallel). Its metrics equal the one-process run's within float rounding, and equal bit for bit
a one-process run over two devices (the same program, partitioned the same way)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lossmooth.runner import distributed
from lossmooth.errors import ConfigError
from tests.conftest import TINY

# four runs in fresh processes (about 2 min on 2 cores): out of CI, `pytest -m slow` runs them; one
# process over several devices is checked in CI by tests/test_sharding.py
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ARGS = [*TINY, "num_seeds=1", "method=[loss_smoothing]", "model.hidden=64", "cache_dir=null"]


def _env(devices: int = 1) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _metrics(results: Path) -> list[dict]:
    (run,) = [d for d in (results / "supervised").iterdir() if not d.name.startswith(".")]
    assert (run / "summary.json").exists()
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    cli = [sys.executable, "-m", "lossmooth.cli", "run"]
    port = _free_port()
    joined = [f"distributed.enabled=true", f"distributed.coordinator=127.0.0.1:{port}",
              "distributed.num_processes=2"]
    procs = [subprocess.Popen([*cli, *ARGS, *joined, f"distributed.process_id={i}", f"results_dir={root / 'two'}"],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    for name, devices in (("one", 1), ("one_two_devices", 2)):
        out = subprocess.run([*cli, *ARGS, f"results_dir={root / name}"], env=_env(devices), capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    return root


def _values(rows):
    return {(r["phase"], r.get("run_index", r.get("seed")), r["step"], k): v for r in rows for k, v in r.items()
            if isinstance(v, float)}


def test_two_processes_give_the_one_process_run(runs):
    two, one = _values(_metrics(runs / "two")), _values(_metrics(runs / "one"))
    assert two.keys() == one.keys() and len(two) > 40
    for k, v in one.items():
        assert np.isclose(two[k], v, rtol=2e-5, atol=1e-6, equal_nan=True), (k, two[k], v)


def test_two_processes_equal_one_process_over_two_devices_bit_for_bit(runs):
    assert _metrics(runs / "two") == _metrics(runs / "one_two_devices")


def test_the_other_process_writes_its_own_copy_not_the_run_folder(runs):
    other = runs / "two" / ".processes" / "1"
    assert _metrics(other) == _metrics(runs / "two")


@pytest.mark.parametrize("section,fragment", [
    ({"enabled": "yes"}, "distributed.enabled: must be true or false"),
    ({"enabled": True, "coordinator": "127.0.0.1:1234"}, "distributed.num_processes: set coordinator"),
    ({"enabled": True, "coordinator": "nohost", "num_processes": 2, "process_id": 0}, "must be host:port"),
    ({"enabled": True, "coordinator": "h:1", "num_processes": 2, "process_id": 2}, "process_id: must be an integer in [0, 1]"),
    ({"enabled": True, "collectives": "nccl"}, "collectives: must be gloo or mpi"),
    ({"enabled": False, "typo": 1}, "distributed.typo: unknown key")])
def test_a_bad_distributed_section_is_refused_in_one_line(section, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        distributed.parse(section)
