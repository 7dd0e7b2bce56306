"""Checkpoint and resume (supervised setting): a run killed with SIGKILL at an arbitrary moment and
started again with the same command ends with exactly the metrics of an uninterrupted run; SIGTERM
saves a checkpoint and exits cleanly (143), and the same command then finishes the run."""
import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import TINY

LONG = TINY + ["setting.adapt_steps=200", "setting.source_steps=60", "checkpoint_every_s=0"]


def _cmd(results, cache_dir):
    return [sys.executable, "-m", "lossmooth.cli", "run", f"results_dir={results}", f"cache_dir={cache_dir}"] + LONG


def _only_run(results):
    (d,) = list((results / "supervised").iterdir())
    return d


def _outputs(run_dir):
    return (open(run_dir / "metrics.jsonl").read(), json.load(open(run_dir / "runs.json")))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir):
    results = tmp_path_factory.mktemp("whole")
    subprocess.run(_cmd(results, cache_dir), check=True, capture_output=True)
    return _outputs(_only_run(results))


def _interrupt(results, cache_dir, wait_for: str, sig) -> subprocess.CompletedProcess:
    """Start the run, wait until checkpoint ``wait_for`` is saved, send ``sig``."""
    proc = subprocess.Popen(_cmd(results, cache_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    try:
        while not list(results.glob(f"supervised/*/checkpoints/{wait_for}/done.json")):
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.time() < deadline
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("wait_for", ["source", "adapt0"])
def test_sigkill_then_the_same_command_gives_the_uninterrupted_metrics(uninterrupted, wait_for, tmp_path,
                                                                          cache_dir):
    r = _interrupt(tmp_path, cache_dir, wait_for, signal.SIGKILL)
    assert r.returncode == -signal.SIGKILL
    run_dir = _only_run(tmp_path)
    assert not (run_dir / "summary.json").exists() and (run_dir / "checkpoints").is_dir()
    subprocess.run(_cmd(tmp_path, cache_dir), check=True, capture_output=True)
    assert _only_run(tmp_path) == run_dir  # resumed in place, no second directory
    assert _outputs(run_dir) == uninterrupted
    assert not (run_dir / "checkpoints").exists()  # dropped once the run is complete


def test_sigterm_saves_and_exits_cleanly_then_resumes(uninterrupted, tmp_path, cache_dir):
    r = _interrupt(tmp_path, cache_dir, "adapt0", signal.SIGTERM)
    assert r.returncode == 143, r.stderr
    assert "stopped by SIGTERM; checkpoint saved" in r.stderr
    run_dir = _only_run(tmp_path)
    assert not (run_dir / "summary.json").exists()
    subprocess.run(_cmd(tmp_path, cache_dir), check=True, capture_output=True)
    assert _outputs(run_dir) == uninterrupted
