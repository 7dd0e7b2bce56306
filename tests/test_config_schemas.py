"""The config's shape: each setting's groups in its own namespace (old override spellings still select
them), and methods as capabilities a setting declares (one of another family is refused in one line
naming the setting and the family, from the declaration)."""
import json
import os

import pytest

from lossmooth import runner, settings
from lossmooth.core.config import FAMILIES, parse_methods
from lossmooth.errors import ConfigError
from lossmooth.runner.namespaces import translate
from tests.conftest import TINY, compose

# -- namespaced groups


def test_old_group_spellings_select_within_the_setting_namespace():
    assert translate(["setting=online_rl", "shift=mass", "task=hopper", "algo=[td3]"]) == [
        "setting=online_rl", "online_rl/shift=mass", "online_rl/task=hopper", "online_rl/algo=[td3]"]
    assert translate(["shift=blur,contrast", "+sequence=three", "shift.severity=0.5"]) == [
        "supervised/shift=blur,contrast", "+supervised/sequence=three", "shift.severity=0.5"]
    assert translate(["setting=lm", "lm_model=olmo_1b", "judge=none"]) == ["setting=lm", "lm/model=olmo_1b", "lm/judge=none"]
    assert translate(["task=hopper"], "collect") == ["offline_to_online/task=hopper"]
    # the resolved keys stay where they were: shift, lm_model, task
    cfg = compose(["setting=lm", "lm_model=olmo_1b", "lm_model.path=/ckpt"])
    assert cfg["lm_model"]["name"] == "olmo-1b" and "lm" not in cfg
    assert compose(["setting=online_rl", "shift=mass"])["shift"]["name"] == "mass"


def test_an_option_of_another_setting_fails_in_one_line_naming_the_group_and_choices():
    with pytest.raises(ConfigError) as e:
        compose(["setting=online_rl", "shift=blur"])
    assert str(e.value) == ("shift: unknown option 'blur' for setting online_rl (online_rl/shift); choose one of "
                            "backwards, friction, gravity, mass, none, obs_noise, obs_permutation, target_velocity")
    with pytest.raises(ConfigError, match=r"^dataset: not a config group of setting supervised .*conf/offline_to_online/dataset/$"):
        compose(["dataset=own"])


# -- methods as capabilities


def test_every_declared_capability_is_a_known_family():
    for name in settings.names():
        assert settings.get(name).capabilities <= set(FAMILIES), name


def test_a_family_the_setting_does_not_declare_is_refused_from_the_declaration():
    cfg = compose(["method=[hard_switch,l2_init]"])

    class Plain(type(settings.get("supervised"))):  # the supervised setting without its regularizers
        name = "plain"
        capabilities = frozenset({"linear_probe"})

    with pytest.raises(ConfigError) as e:
        parse_methods(cfg["method"], offers=Plain())
    assert str(e.value) == ("method.l2_init: the plain setting does not offer regularizers (reg: l2 | kl, as in "
                            "l2_init, kl_init); its method families: linear_probe")
    assert parse_methods(cfg["method"], offers=settings.get("supervised"))["l2_init"].reg == "l2"
    with pytest.raises(ConfigError, match="^method.l2_init: the lm setting does not offer regularizers"):
        parse_methods(cfg["method"], offers=settings.get("lm"))  # once run silently as the hard switch


def test_a_supported_family_runs_and_is_not_the_hard_switch(tmp_path, cache_dir):
    """l2_init in the supervised setting: its runs pull towards the switch point, so they differ from
    the hard switch's after the switch (the regularizer is applied, not dropped)."""
    cfg = compose(TINY + ["method=[hard_switch,l2_init]", "method.l2_init.reg_coef=10.0", "num_seeds=1"])
    cfg.update(results_dir=str(tmp_path), cache_dir=cache_dir)
    run_dir = runner.run_config(cfg, {}, progress=False)
    final = {r["method"]: r["summary"]["final_target_acc"] for r in json.load(open(os.path.join(run_dir, "runs.json")))}
    assert set(final) == {"hard_switch", "l2_init"} and final["l2_init"] != final["hard_switch"]
