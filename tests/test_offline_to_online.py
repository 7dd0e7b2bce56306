"""The offline-to-online setting through the CLI: dataset collection, a tiny run end to end (bad input:
tests/test_bad_input.py)."""
import json
import os

import numpy as np
import pytest

from lossmooth import cli
from lossmooth.offline import datasets as D
from lossmooth.results import store

O2O = ["setting=offline_to_online", "logger=jsonl", "progress=false"]
TINY_COLLECT = ["task=hopper", "task.episode_length=40", "train.timesteps=2048", "train.eval_every=512",
                "train.overrides.num_envs=8", "train.overrides.num_epochs=4", "train.overrides.fill_buffer=256",
                "train.overrides.buffer_size=4096", "steps_per_dataset=400", "ref_episodes=8", "rollout_envs=8",
                "kinds=[random,medium,expert]"]
TINY_RUN = ["task=hopper", "task.episode_length=40", "num_seeds=2", "setting.source_steps=128", "setting.source_eval_every=64",
            "setting.adapt_steps=256", "setting.eval_every=64", "td3.num_envs=4", "td3.num_epochs=4",
            "td3.fill_buffer=32", "td3.buffer_size=1024", "td3.batch_size=32", "td3.hidden_layer_sizes=[16,16]",
            "setting.eval_episodes=2", "setting.smoothing_T=24", "setting.gap_window=128",
            "method=[hard_switch,loss_smoothing,scratch,batch_mix]"]


@pytest.fixture(scope="module")
def collected(tmp_path_factory, cache_dir):
    """Our own hopper datasets, collected by the CLI with a tiny budget (module-shared)."""
    root = tmp_path_factory.mktemp("datasets")
    from lossmooth.core import engine

    engine.enable_compilation_cache(cache_dir)
    assert cli.main(["data", "collect", f"root={root}"] + TINY_COLLECT) == 0
    return str(root)


@pytest.mark.slow  # about 1.5 min on 2 cores (TD3 trained on brax hopper); CI checks the Minari files' format
# (tests/test_offline_data.py) and `data collect`'s bad input (tests/test_bad_input.py)
def test_collected_datasets_are_minari_datasets_with_our_references(collected):
    med = D.load_minari("lossmooth/hopper-medium-v0", collected)
    rnd = D.load_minari("lossmooth/hopper-random-v0", collected)
    exp = D.load_minari("lossmooth/hopper-expert-v0", collected)
    assert med.ref_scores == rnd.ref_scores == exp.ref_scores
    lo, hi = med.ref_scores
    assert hi > lo
    for t in (med, rnd, exp):
        assert len(t) >= 400 and t.obs_dim == 11 and t.act_dim == 3
        assert np.abs(t.actions).max() <= 1.0
        # every episode ends once, by a terminal state or by the 40-step time limit
        ends = np.flatnonzero(t.terminals | t.timeouts)
        assert ends[-1] == len(t) - 1 and not (t.terminals & t.timeouts).any()
        lengths = np.diff(np.concatenate([[-1], ends]))
        assert lengths.max() <= 40 and np.all(lengths[t.timeouts[ends]] == 40)
        # consecutive transitions chain within an episode
        inner = np.setdiff1d(np.arange(len(t) - 1), ends)
        np.testing.assert_array_equal(t.next_observations[inner], t.observations[inner + 1])
    # the random dataset's mean return is the random reference's level, the expert's above it
    assert abs(rnd.episode_returns().mean() - lo) < abs(exp.episode_returns().mean() - lo)


@pytest.mark.slow  # about 13 min on 2 cores: TD3 on brax hopper compiles a program per method kind
def test_a_tiny_offline_to_online_run_lands_complete(collected, tmp_path, capsys, cache_dir):
    results = tmp_path / "results"
    rc = cli.main(["run", f"results_dir={results}", f"cache_dir={cache_dir}", f"dataset.root={collected}"]
                  + O2O + TINY_RUN)
    assert rc == 0
    out = capsys.readouterr().out
    assert "final score" in out and "min-ACC (worst score after switch)" in out
    (run_dir,) = [p for p, _, _ in store.complete_runs(str(results))]
    meta = json.load(open(os.path.join(run_dir, "meta.json")))
    assert meta["stand_in"] is True and "td3.hidden_layer_sizes" in meta["assumed"]
    # the data itself is named: its content hash and references in the metadata, every row and the table
    data = D.load_minari("lossmooth/hopper-medium-v0", collected)
    assert meta["data"]["dataset_sha256"] == data.content_hash()
    assert meta["data"]["ref_scores"] == list(data.ref_scores)
    assert meta["data"]["dataset_returns"]["episodes"] == len(data.episode_returns())
    lo, hi = data.ref_scores
    assert f"| offline_to_online | lossmooth/hopper-medium-v0 (sha256 {data.content_hash()[:8]}; refs {lo:.0f}, {hi:.0f}) | td3 |" in out
    assert meta["assumed"]["td3.network_init"]["value"] == "torch" and meta["data"]["td3"]["actor_critic"] == "first"
    runs = json.load(open(os.path.join(run_dir, "runs.json")))
    assert all(r["dataset_sha256"] == data.content_hash() for r in runs)
    assert sorted({r["method"] for r in runs}) == ["batch_mix", "hard_switch", "loss_smoothing", "scratch"]
    by = {(r["method"], r["seed"]): r for r in runs}
    for s in (0, 1):  # every switching method starts from the same offline agent
        assert by[("hard_switch", s)]["offline_score"] == pytest.approx(by[("loss_smoothing", s)]["offline_score"])
        assert by[("hard_switch", s)]["offline_score"] == pytest.approx(by[("batch_mix", s)]["offline_score"])
    assert by[("batch_mix", 0)]["hparams"]["source_loss"] == "td3"
    metrics = store.read_metrics(run_dir)
    off = [m for m in metrics if m["phase"] == "source"]  # the offline phase, its steps in critic updates
    assert {m["step"] for m in off} == {0, 64, 128} and all("target_score" in m for m in off)
    lam = [m["lam"] for m in metrics if m.get("method") == "loss_smoothing" and m["phase"] == "adapt"]
    assert min(lam) == 0.0 and max(lam) == 1.0
    assert all(m["lam"] == 0.5 for m in metrics if m.get("method") == "batch_mix" and m["phase"] == "adapt")
    png = tmp_path / "c.png"
    assert cli.main(["plot", "--results-dir", str(results), "--out", str(png)]) == 0
