"""Checkpoint and resume (the supervised and the online RL setting): a run killed with SIGKILL at an
arbitrary moment and started again with the same command ends with exactly the metrics of an
uninterrupted run; SIGTERM saves a checkpoint and exits cleanly (143), and the same command then
finishes the run."""
import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import TINY
from tests.test_online_rl import TINY_RL

COMMANDS = {
    "supervised": TINY + ["setting.adapt_steps=200", "setting.source_steps=60", "checkpoint_every_s=0"],
    # three compiled batches (a constant mix and an adaptive schedule are programs of their own): the
    # first batch's rows at the switch are written once, whichever batch the kill interrupts; the
    # source guard's state (its dual, references, averages) is part of the checkpointed train state
    "supervised_groups": TINY + ["setting.adapt_steps=60", "setting.source_steps=20", "checkpoint_every_s=0",
                                 "method=[hard_switch,replay_mix,source_guard]"],
    # a sequence of two switches: the second resumes from its own checkpoint, the first's result (every
    # run's model at its end) from the first's final checkpoint
    "supervised_sequence": TINY + ["setting.adapt_steps=60", "setting.source_steps=20", "checkpoint_every_s=0",
                                   "sequence=three", "sequence.shifts=[{name:blur,severity:1},{name:contrast,severity:1}]"],
    # PPO on brax hopper: the environments' state is part of the agent's state, so it is checkpointed
    "online_rl": ["setting=online_rl", "logger=jsonl", "progress=false", "checkpoint_every_s=0"] + TINY_RL,
    # PPO through two switches: the second switch's source is the first's environments, checkpointed
    "online_rl_sequence": ["setting=online_rl", "logger=jsonl", "progress=false", "checkpoint_every_s=0"]
    + [o for o in TINY_RL if not o.startswith("method=")] + ["method=[hard_switch,loss_smoothing]", "sequence=pendulum_three",
       "sequence.shifts=[{name:obs_permutation,severity:1,seed:0},{name:gravity,severity:1,max_scale:1.5}]"],
}


def _cmd(results, cache_dir, setting="supervised"):
    return ([sys.executable, "-m", "lossmooth.cli", "run", f"results_dir={results}", f"cache_dir={cache_dir}"]
            + COMMANDS[setting])


def _folder(setting: str) -> str:
    return setting.removesuffix("_groups").removesuffix("_sequence")


def _only_run(results, setting="supervised"):
    (d,) = [p for p in (results / _folder(setting)).iterdir() if not p.name.startswith(".")]
    return d


def _outputs(run_dir):
    return (open(run_dir / "metrics.jsonl").read(), json.load(open(run_dir / "runs.json")))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir):
    """The uninterrupted run's outputs, per setting (run once, when first asked for)."""
    done = {}

    def get(setting):
        if setting not in done:
            results = tmp_path_factory.mktemp("whole-" + setting)
            subprocess.run(_cmd(results, cache_dir, setting), check=True, capture_output=True)
            done[setting] = _outputs(_only_run(results, setting))
        return done[setting]

    return get


def _interrupt(results, cache_dir, wait_for: str, sig, setting="supervised") -> subprocess.CompletedProcess:
    """Start the run, wait until checkpoint ``wait_for`` is saved, send ``sig``."""
    proc = subprocess.Popen(_cmd(results, cache_dir, setting), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 600
    try:
        while not list(results.glob(f"{_folder(setting)}/*/checkpoints/{wait_for}/done.json")):
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


SLOW = pytest.mark.slow  # 2-6 min each on 2 cores: out of CI, `pytest -m slow` runs them


@pytest.mark.parametrize("setting, wait_for", [("supervised", "source"),
                                               pytest.param("supervised", "adapt0", marks=SLOW),
                                               pytest.param("supervised_groups", "adapt1", marks=SLOW),
                                               pytest.param("supervised_sequence", "adapt0-switch2", marks=SLOW),
                                               # killed while adapting: resumes the finished source
                                               # phase from its checkpoint and adaptation mid-way
                                               pytest.param("online_rl", "ppo-adapt0", marks=SLOW),
                                               pytest.param("online_rl_sequence", "ppo-adapt0-switch2", marks=SLOW)])
def test_sigkill_then_the_same_command_gives_the_uninterrupted_metrics(uninterrupted, setting, wait_for, tmp_path,
                                                                          cache_dir):
    r = _interrupt(tmp_path, cache_dir, wait_for, signal.SIGKILL, setting)
    assert r.returncode == -signal.SIGKILL
    run_dir = _only_run(tmp_path, setting)
    assert not (run_dir / "summary.json").exists() and (run_dir / "checkpoints").is_dir()
    again = subprocess.run(_cmd(tmp_path, cache_dir, setting), check=True, capture_output=True, text=True)
    assert f"lossmooth: resuming {run_dir} from its checkpoints" in again.stdout  # one line says so
    assert _only_run(tmp_path, setting) == run_dir  # resumed in place, no second directory
    assert _outputs(run_dir) == uninterrupted(setting)
    assert not (run_dir / "checkpoints").exists()  # dropped once the run is complete


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=SLOW)])
def test_sigterm_and_ctrl_c_save_and_exit_cleanly_then_resume(uninterrupted, tmp_path, cache_dir, sig, status):
    r = _interrupt(tmp_path, cache_dir, "adapt0", sig)
    assert r.returncode == status, r.stderr
    last = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith(f"lossmooth: stopped by {signal.Signals(sig).name}; checkpoint saved"), r.stderr
    assert "Traceback" not in r.stderr
    run_dir = _only_run(tmp_path)
    assert not (run_dir / "summary.json").exists()
    subprocess.run(_cmd(tmp_path, cache_dir), check=True, capture_output=True)
    assert _outputs(run_dir) == uninterrupted("supervised")
    wall = json.load(open(run_dir / "summary.json"))["wall_s"]  # both processes' time
    assert wall["total"] > wall["this_process"] > 0
