"""Shared fixtures: one tiny composed config, its data, programs and trained source models, built
once per session so compiled functions are reused across tests."""
import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402

CACHE_ENV = "LOSSMOOTH_TEST_JAX_CACHE"


def pytest_configure(config):
    """One JAX persistent compilation cache for the whole test run, as ``lossmooth run`` has by default
    (``cache_dir``): both xdist workers and every subprocess a test starts inherit it through the
    environment (set here, before the workers start), so a program that two test files build from
    different Python objects compiles once. A run with ``cache_dir=null`` leaves it on; a test that
    needs its own cache passes ``cache_dir``."""
    import shutil
    import tempfile

    if os.environ.get(CACHE_ENV):
        return
    folder = tempfile.mkdtemp(prefix="lossmooth-test-jax-")
    os.environ[CACHE_ENV] = folder
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def same_tree(a, b) -> bool:
    """Two pytrees of arrays equal leaf by leaf, bit for bit."""
    import jax
    import numpy as np

    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


# a tiny but real configuration: every test that trains uses these shapes (compiled once)
TINY = [
    "num_seeds=2", "logger=jsonl", "progress=false",
    "setting.source_steps=20", "setting.adapt_steps=20", "setting.eval_every=5",
    "setting.evals_per_chunk=2", "setting.source_evals_per_chunk=2",
    "setting.target_batch=16", "setting.source_batch=32", "setting.replay_pool=256", "setting.source_lr=0.01",
    "setting.eval_size=64", "setting.gap_window=10", "schedule.T=10",
    "model.widths=[4,8]", "model.hidden=16",
]


def compose(overrides=(), return_hydra_config=False):
    """The resolved config of ``overrides`` (as ``lossmooth run`` composes it); with
    ``return_hydra_config`` Hydra's own config object, its ``hydra`` node included."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    from lossmooth.provenance import CONF_DIR
    from lossmooth.runner.compose import compose as run_compose

    if not return_hydra_config:
        return run_compose(list(overrides))
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return hcompose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.fixture(scope="session")
def cache_dir():
    """The run's JAX compilation cache (:func:`pytest_configure`), for tests that pass ``cache_dir``."""
    return os.environ[CACHE_ENV]


@pytest.fixture(scope="session")
def tiny_cfg(tmp_path_factory):
    cfg = compose(TINY)
    cfg["results_dir"] = str(tmp_path_factory.mktemp("results"))
    cfg["cache_dir"] = None
    return cfg


class Tiny:
    """A setting's spec, loaded data, phase context and source phase, for tests that run phases
    through the setting contract (:func:`adapt` runs a batch of adaptation runs)."""

    def __init__(self, setting, cfg):
        from lossmooth.runner.phase import run_phase
        from lossmooth.settings import Context

        self.setting, self.cfg = setting, cfg
        self.spec = setting.parse(cfg)
        self.loaded = setting.load(self.spec, cfg, {})
        self.ctx = Context(spec=self.spec, loaded=self.loaded, cfg=cfg)
        phase = setting.source_phase(self.ctx, "")
        self.source = None if phase is None else run_phase(phase)

    def runs(self):
        return self.setting.runs(self.spec, self.loaded)

    def adapt(self, runs, ctx=None):
        """``(state, metrics, diverged_at)`` of one batch of ``runs`` adapted from the source phase
        (the evaluation at the switch first, as the runner records it)."""
        from lossmooth.runner.execute import lam_at_switch
        from lossmooth.runner.phase import run_phase

        res = run_phase(self.setting.adapt_phase(ctx or self.ctx, "", runs, self.source), lam0=lam_at_switch(runs))
        return res.state, res.metrics, res.diverged_at


@pytest.fixture(scope="session")
def tiny(tiny_cfg):
    """The supervised setting on the tiny config, its source models trained (:class:`Tiny`)."""
    from lossmooth import settings

    return Tiny(settings.get("supervised"), tiny_cfg)
