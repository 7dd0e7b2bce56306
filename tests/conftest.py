"""Shared fixtures: one tiny composed config, its data, programs and trained source models, built
once per session so compiled functions are reused across tests."""
import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402

# a tiny but real configuration: every test that trains uses these shapes (compiled once)
TINY = [
    "num_seeds=2", "logger=jsonl", "progress=false",
    "setting.source_steps=20", "setting.adapt_steps=20", "setting.steps_per_eval=5",
    "setting.evals_per_chunk=2", "setting.source_evals_per_chunk=2",
    "setting.target_batch=16", "setting.source_batch=32", "setting.replay_pool=256", "setting.source_lr=0.01",
    "setting.eval_size=64", "setting.gap_window=10", "schedule.T=10",
    "model.widths=[4,8]", "model.hidden=16",
]


def compose(overrides=(), return_hydra_config=False):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from lossmooth.provenance import CONF_DIR

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = hcompose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
    if return_hydra_config:
        return cfg
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """A JAX compilation cache shared by every subprocess the tests start."""
    return str(tmp_path_factory.mktemp("jax-cache"))


@pytest.fixture(scope="session")
def tiny_cfg(tmp_path_factory):
    cfg = compose(TINY)
    cfg["results_dir"] = str(tmp_path_factory.mktemp("results"))
    cfg["cache_dir"] = None
    return cfg


@pytest.fixture(scope="session")
def tiny(tiny_cfg):
    """(spec, data, info, programs, source_state, source_metrics) for the tiny config."""
    from lossmooth.models import classifiers
    from lossmooth.settings import supervised as S

    spec = S.parse(tiny_cfg)
    data, info = S.build_data(spec)
    model = classifiers.build(spec.model_name, info["num_classes"], **spec.model_kwargs)
    progs = S.Programs(spec, model, info["num_classes"])
    state, metrics = S.train_source(progs, data, spec)
    return spec, data, info, progs, state, metrics
