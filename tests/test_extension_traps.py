"""Mistakes a setting written from outside the project makes fail loudly: one line naming the field and
the fix, a non-zero exit, and no run folder left behind."""
import os
import subprocess
import sys

import jax.numpy as jnp
import pytest

from lossmooth import settings
from lossmooth.errors import ConfigError
from lossmooth.settings import Loaded, Phase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_YAML = os.path.join(REPO, "tests", "toy_setting", "conf", "setting", "toy.yaml")


def _run(tmp_path, module: str, *overrides):
    """``lossmooth run`` with the setting of ``module`` (a file written to ``tmp_path``, the toy setting's
    variant) as the only one from outside; returns the process and the results folder."""
    (tmp_path / "ext.py").write_text(module)
    env = {**os.environ, "LOSSMOOTH_SETTINGS": "./ext.py:SETTING", "PYTHONPATH": REPO, "WANDB_MODE": "disabled"}
    results = tmp_path / "results"
    p = subprocess.run([sys.executable, "-m", "lossmooth.cli", "run", f"results_dir={results}", "logger=jsonl",
                        "progress=false", "cache_dir=null", *overrides], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    return p, results


def _one_line_error(p) -> str:
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("lossmooth: error: "), p.stderr[-2000:]
    return lines[0]


def _no_run_folder(results) -> None:
    """No ``<results>/toy/<run id>/`` (a run folder) was made."""
    where = results / "toy"
    assert not where.exists() or not [d.name for d in where.iterdir() if not d.name.startswith(".")]


# -- data that is not arrays


@pytest.mark.parametrize("value", [0.5, 3, "mean", True])
def test_loaded_data_with_a_non_array_leaf_is_one_line_naming_the_leaf(value):
    with pytest.raises(ConfigError) as e:
        Loaded({"source": jnp.zeros(2), "target": value}, info={})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("loaded.data['target']: ") and "jnp.asarray" in msg


def test_a_phase_with_a_python_number_in_its_data_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^Phase\.data\['steps'\]: a int .*make it one"):
        Phase(state={}, hp={}, chunk=lambda s, h, d: (s, {}), n_chunks=1, eval_every=1,
              data={"x": jnp.ones(3), "steps": 10})


def test_a_setting_whose_data_holds_a_float_fails_in_one_line_before_anything_is_written(tmp_path):
    p, results = _run(tmp_path, """
from tests.toy_setting import Toy, evaluate, init, step
from lossmooth.settings import Loaded, Steps


class FloatData(Toy):
    def load(self, spec, cfg, choices):
        return Loaded({"source": 0.0, "target": spec.shift}, info={}, source=Steps(init, step, evaluate),
                      adapt=Steps(init, step, evaluate))


SETTING = FloatData()
""", "setting=toy")
    line = _one_line_error(p)
    assert "loaded.data['source']: a float" in line and "jnp.asarray" in line
    _no_run_folder(results)


# -- the ramp's length


def test_a_setting_config_without_smoothing_T_is_one_line_naming_it(tmp_path):
    conf = tmp_path / "conf" / "setting"
    conf.mkdir(parents=True)
    (conf / "toy.yaml").write_text("".join(ln for ln in open(TOY_YAML) if "smoothing_T" not in ln))
    p, results = _run(tmp_path, """
import os
from tests.toy_setting import Toy


class NoRampLength(Toy):
    conf_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")


SETTING = NoRampLength()
""", "setting=toy")
    line = _one_line_error(p)
    assert line == "lossmooth: error: " + settings.NO_SMOOTHING_T
    assert "setting.smoothing_T" in line and "under `setting:`" in line
    _no_run_folder(results)


def test_the_common_spec_names_a_missing_smoothing_T():
    from lossmooth.settings import common

    cfg = {"num_seeds": 1, "seed": 0, "method": {"hard_switch": {"schedule": {"kind": "linear", "T": 0}}},
           "setting": {"lr": 0.1, "source_steps": 0, "adapt_steps": 10, "eval_every": 5, "gap_window": 5}}
    with pytest.raises(ConfigError, match=r"^setting\.smoothing_T: must be an integer >= 0, got None$"):
        common(cfg)
    ok = {**cfg, "setting": {**cfg["setting"], "smoothing_T": 4}}
    assert common(ok)["smoothing_T"] == 4
    with pytest.raises(ConfigError, match=r"^setting\.adapt_steps: 12 is not a multiple of setting\.eval_every = 5"):
        common({**ok, "setting": {**ok["setting"], "adapt_steps": 12}})


# -- a setting nobody registered


def test_an_unknown_setting_names_the_built_ins_and_how_to_register_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != settings.ENV}
    p = subprocess.run([sys.executable, "-m", "lossmooth.cli", "run", "setting=foo"], cwd=tmp_path,
                       env={**env, "WANDB_MODE": "disabled"}, capture_output=True, text=True, timeout=600)
    line = _one_line_error(p)
    assert "unknown option 'foo'" in line and all(name in line for name in settings.BUILTIN)
    assert "LOSSMOOTH_SETTINGS=module:SETTING" in line and "'lossmooth.settings'" in line


def test_the_registry_names_the_built_ins_and_how_to_register_one(monkeypatch):
    monkeypatch.delenv(settings.ENV, raising=False)
    with pytest.raises(ConfigError) as e:
        settings.get("foo")
    msg = str(e.value)
    assert "\n" not in msg and all(name in msg for name in settings.BUILTIN) and settings.REGISTER in msg


def test_a_setting_file_is_registered_by_its_path_without_pythonpath(tmp_path, monkeypatch):
    (tmp_path / "lone.py").write_text(
        "from lossmooth.settings import Curves, Setting\n\n\n"
        "class Lone(Setting):\n    name = 'lone'\n    curves = Curves(kind='loss', target='target_loss')\n\n\n"
        "SETTING = Lone()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(settings.ENV, "./lone.py:SETTING")
    assert settings.get("lone").name == "lone" and "lone" in settings.names()
    monkeypatch.setenv(settings.ENV, "./missing.py:SETTING")
    with pytest.raises(ConfigError, match=r"cannot load setting '\./missing\.py:SETTING' \(no file .*missing\.py\)"):
        settings.get("lone")
