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


def test_every_committed_run_composes_again_from_its_own_command_line():
    """The override spellings in every committed run's command line (results/*/*/meta.json: shift=...,
    task=..., dataset=..., lm_model=..., algo=[...]) still compose, and the groups they name select the
    options that run had (the same ``name`` / ``kind``; defaults may have moved since)."""
    import glob

    import yaml

    from lossmooth.provenance import CONF_DIR

    metas = sorted(glob.glob(os.path.join(os.path.dirname(CONF_DIR), "results", "*", "*", "meta.json")))
    assert metas
    for meta in metas:
        argv = json.load(open(meta)).get("argv") or []
        committed = yaml.safe_load(open(os.path.join(os.path.dirname(meta), "config.yaml")))
        overrides = [a for a in argv[1:] if "=" in a and not a.startswith(("hydra", "-"))]
        cfg = compose(overrides)
        assert cfg["setting"]["name"] == committed["setting"]["name"], meta
        chosen = {o.split("=", 1)[0] for o in overrides}  # the groups the command line selects
        for group in chosen & {"shift", "task", "dataset", "data", "model", "lm_model", "lm_target", "lm_replay", "judge"}:
            for field in ("name", "kind"):
                if field in (committed.get(group) or {}):
                    assert cfg[group][field] == committed[group][field], (meta, group)
        if "algo" in chosen:
            assert sorted(cfg["algo"]) == sorted(committed["algo"]), meta


# -- schemas: types and bounds from the dataclass, values from conf/


def _schemas():
    import importlib

    for name, package in settings.BUILTIN.items():
        try:
            module = importlib.import_module(f"{package}.schema")
        except ModuleNotFoundError:
            continue
        yield name, module.SCHEMA


@pytest.mark.parametrize("name,schema", list(_schemas()))
def test_a_schema_names_exactly_the_keys_its_setting_config_has(name, schema):
    import dataclasses

    from lossmooth.core.config import validate

    cfg = compose([f"setting={name}"] + (["judge=none"] if name == "lm" else []))
    for node, cls in schema.items():
        assert list(cfg[node]) == [f.name for f in dataclasses.fields(cls)], node  # same keys, same order
        validate(cfg[node], cls, node)  # and every committed default passes its bounds


@pytest.mark.parametrize("name,schema", list(_schemas()))
def test_a_bad_value_of_any_schema_field_is_one_line_naming_it(name, schema):
    """The generic validator reads each field's type and bounds: a value of the wrong type (or past a
    bound) fails with ``<node>.<field>: must be ...`` / ``unknown value``, as every hand-written check did."""
    import dataclasses
    import typing

    from lossmooth.core.config import validate

    cfg = compose([f"setting={name}"] + (["judge=none"] if name == "lm" else []))
    for node, cls in schema.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            bad = 7 if str in (hints[f.name], *typing.get_args(hints[f.name])) else "x"
            if f.metadata["lo"] is not None:  # under its lower bound
                bad = [0] if typing.get_origin(hints[f.name]) is list else f.metadata["lo"] - 1
            with pytest.raises(ConfigError) as e:
                validate({**cfg[node], f.name: bad}, cls, node)
            assert str(e.value).startswith(f"{node}.{f.name}: ") and "\n" not in str(e.value)
            assert ("must be" in str(e.value) or "unknown value" in str(e.value)), str(e.value)


def test_the_setting_node_takes_no_key_its_schema_lacks():
    with pytest.raises(ConfigError, match="setting.nonsense"):
        compose(["setting=online_rl", "setting.nonsense=1"])
    with pytest.raises(ConfigError, match="td3.nonsense"):
        compose(["setting=offline_to_online", "td3.nonsense=1"])


def test_the_schema_rejects_wrong_types_with_the_same_line_as_before():
    from lossmooth.settings.supervised.config import parse

    for override, line in [("setting.adapt_steps=2.5", "setting.adapt_steps: must be an integer >= 1, got 2.5"),
                           ("setting.reset_optimizer=maybe", "setting.reset_optimizer: must be true or false, got 'maybe'"),
                           ("setting.lr=-1", "setting.lr: must be in (0.0, inf], got -1"),
                           ("setting.optimizer=lion", "setting.optimizer: unknown value 'lion'; choose one of adam, sgd")]:
        with pytest.raises(ConfigError) as e:
            parse(compose([override]))
        assert str(e.value) == line


def test_assumed_values_stay_recorded_with_their_namespaced_files():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from lossmooth.provenance import CONF_DIR, assumed_fields
    from lossmooth.runner.compose import hydra_overrides

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        c = hydra_compose("config", overrides=hydra_overrides(["setting=online_rl", "task=hopper", "shift=mass"]),
                          return_hydra_config=True)
    choices = dict(c.hydra.runtime.choices)
    assert choices["online_rl/shift"] == "mass" and choices["online_rl/task"] == "hopper"
    OmegaConf.set_struct(c, False)
    del c["hydra"]
    a = assumed_fields(choices, OmegaConf.to_container(c, resolve=True))
    assert a["shift.max_scale"] == {"value": 2.0, "why": "", "file": "online_rl/shift/mass.yaml"}
    assert a["task.backend"]["file"] == "online_rl/task/hopper.yaml" and a["setting.smoothing_T"]["why"]
