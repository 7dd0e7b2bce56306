"""The supervised-shift setting on real Fashion-MNIST at tiny sizes (compiled once per session)."""
import numpy as np
import pytest

from lossmooth.core.runs import groups_of
from lossmooth.data import shifts
from lossmooth.settings.supervised.config import parse
from lossmooth.settings.supervised.data import build_data
from lossmooth.settings.supervised.setting import Loaded, Programs


@pytest.fixture(scope="session")
def adapted(tiny):
    """hard_switch + loss_smoothing adapted from the same source models, one compiled batch."""
    runs = tiny.runs()
    assert len(groups_of(runs)) == 1  # hard switch = a ramp with T = 0: same program
    out = tiny.adapt(runs)
    return runs, out


def test_source_phase_learns(tiny):
    spec, metrics = tiny.spec, tiny.source.metrics
    acc = metrics["source_acc"]
    assert acc.shape == (spec.num_seeds, spec.source_steps // spec.eval_every)
    assert np.all(acc[:, -1] > 0.2)  # above chance (0.1) after 20 tiny steps
    assert np.all(acc[:, -1] > acc[:, 0])
    assert tiny.loaded.info["paper_data"] is False


def test_every_method_starts_from_the_same_model(adapted):
    runs, (state, metrics, diverged) = adapted
    for seed in {r["seed"] for r in runs}:
        idx = [i for i, r in enumerate(runs) if r["seed"] == seed]
        for k in ("target_acc", "source_acc", "target_loss", "source_loss"):
            vals = metrics[k][idx, 0]  # evaluation at the switch
            assert np.all(vals == vals[0]), k


def test_lam_follows_each_method_and_source_loss_vanishes_at_lam_one(adapted, tiny):
    spec = tiny.spec
    runs, (_, metrics, _) = adapted
    for i, r in enumerate(runs):
        lam = metrics["lam"][i]
        steps = np.arange(len(lam)) * spec.eval_every
        want = [float(r["method"].schedule(max(int(s) - 1, 0))) for s in steps]
        np.testing.assert_allclose(lam[1:], want[1:], rtol=1e-6)
        if r["name"] == "hard_switch":
            assert np.all(lam == 1.0)
        else:
            assert lam[1] < 1.0 and lam[-1] == 1.0
            # after the ramp ended (T=10) every interval's source loss is exactly zero: not computed
            assert np.all(metrics["loss_source"][i][steps > 10 + spec.eval_every] == 0.0)


def test_same_config_and_seed_give_identical_metrics(adapted, tiny):
    runs, (_, metrics, _) = adapted
    _, again, _ = tiny.adapt(tiny.runs())
    for k in metrics:
        assert np.array_equal(metrics[k], again[k], equal_nan=True), k


def test_hard_switch_is_unaffected_by_its_batch_neighbours(adapted, tiny):
    """pmax over the run axis keeps the source branch alive for the batch; the hard switch run must
    still get exactly its own result (compared within the same compiled batch shape)."""
    runs, (_, metrics, _) = adapted
    hard = [r for r in runs if r["name"] == "hard_switch"]
    _, alone, _ = tiny.adapt(hard + hard)
    for j, r in enumerate(hard):
        i = runs.index(r)
        np.testing.assert_allclose(alone["target_acc"][j], metrics["target_acc"][i], atol=1e-6)
        np.testing.assert_allclose(alone["loss_target"][j], metrics["loss_target"][i], rtol=1e-5)


def test_sweep_multiplies_only_the_methods_it_affects(tiny, tiny_cfg):
    cfg = dict(tiny_cfg, sweep={"T": [5, 10, 20]})
    runs = tiny.setting.runs(tiny.setting.parse(cfg), None)
    names = [r["name"] for r in runs]
    assert names.count("hard_switch") == 2 and names.count("loss_smoothing") == 6
    Ts = sorted({r["hparams"]["T"] for r in runs if r["name"] == "loss_smoothing"})
    assert Ts == [5.0, 10.0, 20.0]


def test_every_registered_method_runs_one_step(tiny, tiny_cfg):
    from lossmooth.settings import Context
    from tests.conftest import compose, TINY

    cfg = compose(TINY + ["method=[replay_mix,l2_init,kl_init]", "setting.adapt_steps=10",
                          "setting.evals_per_chunk=1", "setting.eval_every=10"])
    spec = parse(cfg)
    ld = tiny.loaded
    loaded = Loaded(ld.data, ld.info, ld.model, Programs(spec, ld.model, ld.info["num_classes"]))
    ctx = Context(spec=spec, loaded=loaded)
    runs = [r for r in tiny.setting.runs(spec, loaded) if r["seed_index"] == 0]
    for g in groups_of(runs):
        _, m, div = tiny.adapt([runs[i] for i in g], ctx)
        assert np.all(np.isfinite(m["target_acc"])) and np.all(div == -1)
        name = runs[g[0]]["name"]
        if name == "replay_mix":
            assert np.all(m["lam"] == 0.5) and np.all(m["loss_source"][:, 1:] > 0)
        else:
            assert np.all(m["reg"][:, 1:] > 0)  # moved away from the switch point: pull is active


def test_adaptive_schedules_carry_their_state_through_a_run(tiny):
    """source_guard and progress_ramp in the supervised setting: their state lives in the train state,
    lam starts where the schedule says, the guard measures the source loss until it ends, and the
    progress ramp's lam never decreases."""
    from lossmooth.core.schedules import lam_of
    from lossmooth.settings import Context
    from tests.conftest import compose, TINY

    spec = parse(compose(TINY + ["method=[source_guard,progress_ramp]"]))
    ld = tiny.loaded
    loaded = Loaded(ld.data, ld.info, ld.model, Programs(spec, ld.model, ld.info["num_classes"]))
    runs = tiny.setting.runs(spec, loaded)
    assert len(groups_of(runs)) == 2  # one program per adaptive kind
    for g in groups_of(runs):
        batch = [runs[i] for i in g]
        state, m, div = tiny.adapt(batch, Context(spec=spec, loaded=loaded))
        assert np.all(div == -1) and set(state["sched"]) >= {"lam", "mu", "done"}
        lam, name = m["lam"], batch[0]["name"]
        if name == "source_guard":  # lam = 1 / (1 + mu0) at the switch, then moved by the dual
            np.testing.assert_allclose(lam[:, 0], 0.05, rtol=1e-6)
            assert np.all((lam > 0) & (lam <= 1)) and np.any(lam[:, 1:] != 0.05)
            running = np.asarray(state["sched"]["done"]) == 0
            assert np.all(m["loss_source"][running, 1:] > 0)
        else:
            np.testing.assert_allclose(lam[:, 0], 0.0)
            assert np.all(np.diff(lam, axis=1) >= 0) and np.any(lam[:, -1] > 0)
        # an ended schedule gives lam = 1 for good
        final = np.asarray([float(lam_of(r["method"].schedule, {k: v[j] for k, v in state["sched"].items()}, 0))
                            for j, r in enumerate(batch)])
        ended = np.asarray(state["sched"]["done"]) > 0
        assert np.all(final[ended] == 1.0) and np.all(final <= 1.0)


# ----------------------------------------------------------------------------- shifts


IMGS = np.random.default_rng(0).random((6, 8, 8, 1), dtype=np.float32)


@pytest.mark.parametrize("name", shifts.COVARIATE[:-1])
def test_covariate_shifts_keep_shape_and_range_and_vanish_at_zero(name):
    out = shifts.apply_covariate(name, 0.7, IMGS, 0, 1)
    assert out.shape == IMGS.shape and out.dtype == np.float32
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    assert not np.allclose(out, IMGS)
    assert np.array_equal(shifts.apply_covariate(name, 0.0, IMGS, 0, 1), IMGS)


def test_pixel_permutation_is_the_same_for_train_and_test_but_noise_is_not():
    a = shifts.apply_covariate("pixel_permutation", 1.0, IMGS, 0, noise_seed=1)
    b = shifts.apply_covariate("pixel_permutation", 1.0, IMGS, 0, noise_seed=2)
    assert np.array_equal(a, b)
    assert np.array_equal(np.sort(a.reshape(6, -1), 1), np.sort(IMGS.reshape(6, -1), 1))
    n1 = shifts.apply_covariate("gaussian_noise", 1.0, IMGS, 0, noise_seed=1)
    n2 = shifts.apply_covariate("gaussian_noise", 1.0, IMGS, 0, noise_seed=2)
    assert not np.array_equal(n1, n2)


def test_label_shifts():
    src, tgt = shifts.label_priors("class_prior", 1.0, 10)
    assert np.isclose(src.sum(), 1) and np.all(src[5:] == 0) and np.all(tgt[:5] == 0)
    table = shifts.label_map("label_permutation", 0.5, 10)
    assert sorted(table) == list(range(10)) and np.sum(table != np.arange(10)) == 5
    y = np.repeat(np.arange(4), 100)
    keep = shifts.subsample_to_prior(y, np.array([0.4, 0.4, 0.1, 0.1]), np.random.default_rng(0))
    assert list(np.bincount(y[keep])) == [100, 100, 25, 25]


def test_class_prior_shift_builds_disjoint_pools_with_weighted_eval(tiny_cfg):
    cfg = dict(tiny_cfg, shift={"name": "class_prior", "severity": 0.9})
    spec = parse(cfg)
    data, info = build_data(spec)
    ys, yt = np.asarray(data.source_y), np.asarray(data.target_y)
    assert np.bincount(ys, minlength=10)[5:].sum() < 0.2 * np.bincount(ys, minlength=10)[:5].sum()
    assert np.bincount(yt, minlength=10)[:5].sum() < 0.2 * np.bincount(yt, minlength=10)[5:].sum()
    np.testing.assert_allclose(float(np.asarray(data.target_test_w).sum()), 1.0, rtol=1e-5)
