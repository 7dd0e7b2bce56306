"""The user's surface: every conf file composes, a run lands complete in the results store, and
table/plot read it back. Bad input (one error line, nothing written) is tests/test_bad_input.py."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from lossmooth import cli
from lossmooth.provenance import CONF_DIR
from lossmooth.results import aggregate as agg
from lossmooth.results import store, summaries
from lossmooth.app import collect
from lossmooth import settings
from tests.conftest import TINY, compose

GROUPS = ("setting", "method", "schedule", "logger")  # shared by every setting; the rest live in a setting's folder
NAMESPACES = ("supervised", "online_rl", "offline_to_online", "lm")
# what an LM option needs besides itself: the files a user names, a target with a paper budget
LM_EXTRA = {"olmo_1b": ["lm_model.path=/ckpt/OLMo-1B-hf"], "hf": ["lm_model.path=/ckpt/OLMo-2-0425-1B"], "dolma": ["lm_replay.paths=/data/dolma"],
            "text_files": ["lm_replay.paths=/data/text"], "paper": ["lm_target=hh"], "pretraining": ["lm_model=own"]}


def _options(group):
    return sorted(f[:-5] for f in os.listdir(os.path.join(CONF_DIR, group)) if f.endswith(".yaml"))


def _choices():
    """(override, the other overrides it needs) for every option file of conf/: the shared groups under
    the default setting (or the one the option needs), a setting's groups by their short name under it."""
    for group in GROUPS:
        for opt in _options(group):
            extra = []
            if group == "method" and opt in ("batch_mix", "bc_decay"):
                extra = ["setting=offline_to_online"]
            elif group == "method" and opt == "scratch":
                extra = ["setting=online_rl"]
            elif group == "method" and opt == "lp_ft":  # a linear probe needs a classifier head
                extra = ["setting=pretrained_vision"]
            yield (f"{group}=[{opt}]" if group == "method" else f"{group}={opt}"), extra
    for ns in NAMESPACES:
        for short in sorted(os.listdir(os.path.join(CONF_DIR, ns))):
            for opt in _options(f"{ns}/{short}"):
                extra = [f"setting={ns}"]
                if ns == "lm":
                    extra += LM_EXTRA.get(opt, [])
                if ns == "offline_to_online" and short == "task" and opt == "gymnasium":  # our own datasets are brax ones
                    extra.append("dataset=minari")
                if ns == "online_rl" and short == "shift" and opt in ("friction", "backwards", "target_velocity"):
                    extra.append("task=hopper")  # the default task (pendulum) has no friction or forward reward
                if opt == "d4rl":  # the file's path is the user's to give
                    extra.append("dataset.path=/data/hopper_medium-v2.hdf5")
                yield (f"{short}=[{opt}]" if short == "algo" else f"{short}={opt}"), extra


def test_every_conf_file_composes_and_validates():
    seen = 0
    for ov, extra in _choices():
        cfg = compose([ov] + (extra if not ov.startswith("setting=") else []))
        name = cfg["setting"]["name"]
        settings.get(name).parse(cfg)  # online RL: validates against rejax's preset files too
        seen += 1
    for opt in _options("hydra/launcher"):
        cfg = compose([f"hydra/launcher={opt}"], return_hydra_config=True)
        assert cfg.hydra.launcher._target_.startswith("hydra_plugins.")
        seen += 1
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from lossmooth.app import pretrain

    with initialize_config_dir(CONF_DIR, version_base="1.3"):  # the data-collection config
        collect.parse(OmegaConf.to_container(hydra_compose("collect"), resolve=True))
        seen += 1
        pretrain.parse(OmegaConf.to_container(hydra_compose("pretrain"), resolve=True))  # lossmooth lm pretrain's
        seen += 1
    n_files = sum(len([f for f in fs if f.endswith(".yaml")]) for _, _, fs in os.walk(CONF_DIR))
    assert seen == n_files - 1  # every file but config.yaml, which every compose uses


def test_assumed_values_are_listed_in_the_metadata():
    from lossmooth.provenance import assumed_fields

    cfg = compose(["schedule.T=50"])
    a = assumed_fields({"setting": "supervised", "schedule": "linear", "supervised/shift": "pixel_permutation",
                        "supervised/model": "cnn", "method": "[hard_switch, loss_smoothing]"}, cfg)
    assert a["schedule.T"]["value"] == 50  # the final (overridden) value
    assert a["setting.adapt_steps"]["why"]
    assert "setting.source_batch" not in a  # 256 is the paper's value, not an assumption
    assert "shift.severity" in a and "model.widths" in a


def test_assumed_list_entries_are_listed_in_the_metadata_too():
    """A list's entries marked ``# assumed:`` (a sequence's shifts) are listed as ``key[i]``."""
    from lossmooth.provenance import assumed_fields

    a = assumed_fields({"setting": "supervised", "supervised/sequence": "three"}, compose(["sequence=three"]))
    assert a["sequence.shifts[1]"]["value"] == {"name": "label_permutation", "severity": 1.0}
    assert a["sequence.shifts[1]"]["why"] and a["sequence.shifts[1]"]["file"] == "supervised/sequence/three.yaml"
    assert sorted(k for k in a if k.startswith("sequence.")) == [f"sequence.shifts[{i}]" for i in range(3)]


def test_a_run_lands_complete_and_table_and_plot_read_it(tmp_path, capsys, cache_dir):
    results = tmp_path / "results"
    rc = cli.main(["run", f"results_dir={results}", f"cache_dir={cache_dir}"] + TINY)
    assert rc == 0
    out = capsys.readouterr().out
    assert "Paired difference vs hard switch" in out and "stand-in data" in out
    (run_dir,) = [p for p, _, _ in store.complete_runs(str(results))]
    files = set(os.listdir(run_dir))
    assert {"config.yaml", "meta.json", "metrics.jsonl", "runs.json", "summary.json"} <= files
    meta = json.load(open(os.path.join(run_dir, "meta.json")))
    assert meta["stand_in"] is True and meta["versions"]["jax"] and meta["devices"]["backend"] == "cpu"
    # the CPU kind: runs repeat bit for bit only on the same model and vector extensions
    assert meta["devices"]["cpu"]["machine"] and isinstance(meta["devices"]["cpu"]["vector"], list)
    assert "schedule.T" in meta["assumed"] and meta["assumed"]["schedule.T"]["value"] == 10
    # peak resident memory per phase of the run (Linux): each at least the interpreter's own few MiB
    peaks = json.load(open(os.path.join(run_dir, "summary.json")))["peak_rss_bytes"]
    assert {"load", "source", "adapt", "after_group", "finish"} <= set(peaks)
    assert all(peaks[k] > 2 ** 20 for k in ("load", "source", "adapt", "after_group", "finish"))
    runs = json.load(open(os.path.join(run_dir, "runs.json")))
    assert len(runs) == 4 and {r["method"] for r in runs} == {"hard_switch", "loss_smoothing"}
    for r in runs:
        assert set(r["summary"]) >= {"final_target_acc", "forgetting", "stability_gap", "auc_target",
                                     "min_acc", "wc_acc", "windowed_forgetting", "windowed_plasticity", "lca"}
        assert r["summary_params"] == {"window": 10, "lca_beta": 10}

    # a run made before the field's metrics existed gets them from its stored curves, equal to the
    # runner's (computed from the curves in memory)
    old = tmp_path / "old" / "supervised" / os.path.basename(run_dir)
    shutil.copytree(run_dir, old)
    for r in runs:
        r["summary"] = {k: v for k, v in r["summary"].items() if k not in summaries.FIELD_METRICS}
        del r["summary_params"]
    (old / "runs.json").write_text(json.dumps(runs))
    refilled = {(r["method"], r["seed"]): r for r in agg.collect(str(tmp_path / "old"))}
    for r in agg.collect(str(results)):
        again = refilled[(r["method"], r["seed"])]
        for m in summaries.FIELD_METRICS:
            assert abs(again["summary"][m] - r["summary"][m]) < 1e-6, m

    # an incomplete run (no summary.json) is never tabulated
    os.makedirs(results / "supervised" / "incomplete-run")
    (results / "supervised" / "incomplete-run" / "runs.json").write_text("[]")

    csv_path = tmp_path / "t.csv"
    assert cli.main(["table", "--results-dir", str(results), "--csv", str(csv_path), "--reps", "200"]) == 0
    table = capsys.readouterr().out
    assert table.count("| supervised |") == 2
    assert "loss_smoothing" in csv_path.read_text()
    assert cli.main(["table", "--results-dir", str(results), "--where", "method=loss_smoothing",
                     "--reps", "200"]) == 0
    assert capsys.readouterr().out.count("| supervised |") == 1
    png = tmp_path / "curves.png"
    assert cli.main(["plot", "--results-dir", str(results), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["table", "--results-dir", str(tmp_path / "nothing")]) == 2


def _run_cli(args, cwd, timeout=600):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "lossmooth.cli"] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("launcher", ["local", "submitit_local_jobs"])
def test_multirun_through_hydra_launchers(launcher, tmp_path, cache_dir):
    """-m over shifts: one job per shift (seeds vmapped inside each), via joblib and submitit."""
    results = tmp_path / "results"
    out = _run_cli(["run", "-m", f"hydra/launcher={launcher}", "shift=none,blur",
                    f"results_dir={results}", f"cache_dir={cache_dir}", "method=[hard_switch]",
                    f"hydra.sweep.dir={tmp_path}/sweep"] + TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    done = list(store.complete_runs(str(results)))
    assert len(done) == 2
    assert sorted(json.load(open(os.path.join(p, "runs.json")))[0]["shift"] for p, _, _ in done) == ["blur", "none"]


SHARDED_RUN = """
import json, os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
sys.path.insert(0, sys.argv[1])
import jax
from lossmooth.runner import run_config
from tests.conftest import TINY, compose
assert len(jax.devices()) == 2
out = {}
for devices in ("all", 1):
    cfg = compose(TINY + ["num_seeds=3", f"devices={devices}"])  # 3 seeds: padded to 4 when sharded
    cfg["results_dir"] = os.path.join(sys.argv[2], str(devices))
    cfg["cache_dir"] = sys.argv[3]
    d = run_config(cfg, {}, progress=False)
    out[str(devices)] = json.load(open(os.path.join(d, "runs.json")))
print(json.dumps(out))
"""


@pytest.mark.slow  # about 1 min on 2 cores; tests/test_sharding.py checks the same claim for every setting in CI
def test_supervised_run_sharded_over_two_devices_matches_unsharded(tmp_path, cache_dir):
    script = tmp_path / "sharded_run.py"
    script.write_text(SHARDED_RUN)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, str(script), root, str(tmp_path), cache_dir], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu", "WANDB_MODE": "disabled"})
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(r["all"]) == len(r["1"]) == 6
    for a, b in zip(r["all"], r["1"]):
        assert (a["method"], a["seed"]) == (b["method"], b["seed"])
        for k, v in a["summary"].items():
            assert abs(v - b["summary"][k]) < 1e-5, (k, a["method"], a["seed"])


def test_an_interrupted_file_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def killed(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.atomic_write(str(target), "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["summary.json"]


def test_a_run_killed_midway_is_incomplete_and_never_tabulated(tmp_path, cache_dir):
    """SIGKILL during training: the run directory stays without summary.json, ``status`` calls it
    incomplete and ``table`` does not read it."""
    import signal
    import time

    results = tmp_path / "results"
    args = [sys.executable, "-m", "lossmooth.cli", "run", f"results_dir={results}", f"cache_dir={cache_dir}",
            "setting.adapt_steps=400"] + TINY
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and not list(results.rglob("metrics.jsonl")):
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    (run_dir,) = [p for p in (results / "supervised").iterdir() if not p.name.startswith(".")]
    assert not (run_dir / "summary.json").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".tmp-")]
    out = subprocess.run([sys.executable, "-m", "lossmooth.cli", "status", "--results-dir", str(results)],
                         capture_output=True, text=True).stdout
    assert "| incomplete |" in out and "0 complete, 0 diverged, 1 incomplete" in out
    r = subprocess.run([sys.executable, "-m", "lossmooth.cli", "table", "--results-dir", str(results)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no complete runs" in r.stderr


def test_a_bare_assumed_marker_is_recorded_too():
    """``# assumed`` without a reason is a marker as well (its reason is empty); ``# assumed:`` gives one."""
    from lossmooth.provenance import assumed_fields

    cfg = compose(["setting=lm", "lm_budget=own"])
    a = assumed_fields({"setting": "lm", "lm/budget": "own"}, cfg)
    assert a["lm_budget.weight_decay"] == {"value": 0.0, "why": "", "file": "lm/budget/own.yaml"}
    assert a["lm_budget.micro_batch"]["why"].startswith("8 target rows")
    pre = assumed_fields({}, compose([], "pretrain"), primary="pretrain.yaml")
    assert pre["train.lr"]["file"] == "pretrain.yaml" and "model.num_layers" in pre and "name" not in pre


# ----------------------------------------------------------------------------- help and the reading folder

HELP_COMMANDS = (["run"], ["reproduce"], ["table"], ["plot"], ["status"], ["seeds"], ["data", "collect"],
                 ["lm", "pretrain"], ["serve"])


def _help(args, capsys) -> str:
    try:
        rc = cli.main(args + ["--help"])
    except SystemExit as e:  # argparse's -h
        rc = e.code
    assert rc in (0, None), args
    return capsys.readouterr().out


def test_the_main_help_lists_experiments_apart_from_setup(capsys):
    out = _help([], capsys)
    experiments, setup = out.split("\nexperiments:\n")[1].split("\nsetup:\n")
    assert [ln.split()[0] for ln in experiments.strip().splitlines()] == [
        "run", "reproduce", "table", "plot", "status", "seeds"]
    assert [ln.strip().split("  ")[0] for ln in setup.split("\n\n")[0].strip().splitlines()] == [
        "data collect", "lm pretrain", "serve"]
    assert cli.main(["tabel"]) == 2 and "choose one of" in capsys.readouterr().err


@pytest.mark.parametrize("args", HELP_COMMANDS, ids=" ".join)
def test_every_help_has_the_same_shape(args, capsys):
    """usage, one description paragraph, the options, an example."""
    out = _help(args, capsys)
    assert out.startswith(f"usage: lossmooth {' '.join(args)}"), out[:80]
    blocks = out.strip().split("\n\n")
    assert not blocks[1].startswith(("options:", "usage:")) and len(blocks[1].split()) >= 20  # the paragraph
    assert blocks[2].startswith(("options:", "positional arguments:")) and any(b.startswith("example:\n  lossmooth ") for b in blocks[3:])


def test_run_help_says_when_to_use_reproduce_and_lists_every_config_group(capsys):
    out = _help(["run"], capsys)
    assert "lossmooth reproduce" in out and "--list" in out and "runs/" in out
    groups = out.split("config groups")[1].split("\nexample:")[0]
    for root, _, files in os.walk(CONF_DIR):  # every folder of conf/ with options, however nested
        options = sorted(f[:-5] for f in files if f.endswith(".yaml"))
        group = os.path.relpath(root, CONF_DIR).replace(os.sep, "/")
        if group == "." or not options or group.endswith("_logging"):
            continue
        entry = re.search(rf"\n  {re.escape(group)} +(.*(?:\n {{4,}}.*)*)", groups)
        assert entry and " ".join(entry.group(1).split()).split(", ") == options, group


def test_run_help_imports_no_jax():
    """`lossmooth run --help` answers before any config is composed: JAX is never imported (its wall
    time: python benchmarks/cli_help.py)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "lossmooth.cli", "run", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "config groups" in r.stdout
    imported = [ln.split("|")[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")]
    assert imported and not [m for m in imported if m.split(".")[0] in ("jax", "jaxlib", "flax", "hydra")]


@pytest.mark.parametrize("args", [["--hf", "nope"], ["--gguf", "nope.gguf"], ["--max-prompt-tokens", "2"]])
def test_serve_refuses_bad_arguments_before_loading_jax(args, tmp_path):
    """A typo in `lossmooth serve` answers in one line before the model code (and JAX) load."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "lossmooth.cli", "serve", *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("import time:")]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("lossmooth: error: --")
    imported = [ln.split("|")[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")]
    assert imported and not [m for m in imported if m.split(".")[0] in ("jax", "jaxlib", "flax")]


@pytest.mark.parametrize("command", ["table", "plot", "status"])
def test_reading_commands_read_runs_by_default_and_say_so(command, tmp_path):
    extra = ["--out", str(tmp_path / "c.png")] if command == "plot" else []
    r = subprocess.run([sys.executable, "-m", "lossmooth.cli", command, *extra], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "--results-dir: runs does not exist" in r.stderr and "--results-dir results" in r.stderr
    r = subprocess.run([sys.executable, "-m", "lossmooth.cli", command, *extra, "--results-dir", "nowhere/x"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == (
        "lossmooth: error: --results-dir: nowhere/x does not exist; point it at a results folder")
    (tmp_path / "runs").mkdir()
    r = subprocess.run([sys.executable, "-m", "lossmooth.cli", command, *extra], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert f"lossmooth {command}: reading runs/ (your runs" in r.stderr.splitlines()[0]
    assert (r.returncode == 0) == (command == "status")  # an empty folder: nothing to tabulate or draw


def test_runs_go_to_the_ignored_runs_folder_and_reproduce_keeps_results():
    cfg = compose([])
    assert cfg["results_dir"] == "runs"
    ignored = subprocess.run(["git", "-C", os.path.dirname(CONF_DIR), "check-ignore", "-q", "runs/x"])
    assert ignored.returncode == 0
    # reproduce keeps the committed reference runs: it reads (and would write) results/
    r = subprocess.run([sys.executable, "-m", "lossmooth.cli", "reproduce", "supervised_default", "--dry-run"],
                       cwd=os.path.dirname(CONF_DIR), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "1 of 1 run(s) exist under results" in r.stdout, r.stdout + r.stderr
