"""Pretrained vision adaptation through the supervised engine: an ImageNet EfficientNet-Lite0 with a
fresh head trains on one digit domain, then adapts to another. LP-FT really freezes the backbone
during its probe (bit for bit) and trains the head; afterwards, and for the hard switch, the
backbone moves. Every run starts from the same source model (paired)."""
import jax
import numpy as np
import pytest

from tests.conftest import compose, same_tree

# about 2 min on 2 cores (EfficientNet-Lite0's programs compile); CI checks LP-FT's freeze on a small
# two-part model (tests/test_lp_ft.py) and the ImageNet weights' loading (tests/test_efficientnet.py)
pytestmark = pytest.mark.slow

TINY_PV = ["setting=pretrained_vision", "num_seeds=1", "logger=jsonl", "progress=false",
           "data.source_domain=uci", "data.target_domain=fonts", "data.fonts_per_class=8",
           "setting.source_steps=5", "setting.adapt_steps=10", "setting.eval_every=5",
           "setting.evals_per_chunk=2", "setting.source_evals_per_chunk=1", "setting.target_batch=8",
           "setting.source_batch=8", "setting.replay_pool=32", "setting.eval_size=16", "setting.gap_window=5",
           "method=[hard_switch,lp_ft]", "method.lp_ft.probe_steps=10"]


@pytest.fixture(scope="module")
def adapted():
    from lossmooth import settings
    from tests.conftest import Tiny

    cfg = compose(TINY_PV)
    cfg["method"]["lp_ft_short"] = {**cfg["method"]["lp_ft"], "probe_steps": 5}  # the probe ends mid-way
    t = Tiny(settings.get("pretrained_vision"), cfg)
    runs = t.runs()
    state, metrics, diverged = t.adapt(runs)
    return (t.spec, t.loaded.info, runs, t.source.state["params"], state["params"], metrics, diverged,
            t.loaded.model)



def test_the_source_model_starts_from_the_imagenet_backbone(adapted):
    spec, info, runs, src, _, _, _, model = adapted
    assert info["dataset"] == "digits/uci -> digits/fonts" and info["num_classes"] == 10
    assert src["head"]["kernel"].shape[-2:] == (1280, 10)
    # the source phase fine-tuned the whole network away from the ImageNet weights
    assert not same_tree(jax.tree.map(lambda x: x[0], src["backbone"]), model.backbone)


def test_lp_ft_freezes_the_backbone_during_its_probe_and_trains_the_head(adapted):
    _, _, runs, src, params, metrics, diverged, _ = adapted
    by = {r["name"]: i for i, r in enumerate(runs)}
    one = lambda tree, i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
    src0 = one(src, 0)
    probe_all = one(params, by["lp_ft"])  # probe_steps = adapt_steps: the backbone never trains
    assert same_tree(probe_all["backbone"], src0["backbone"])
    assert not same_tree(probe_all["head"], src0["head"])
    for name in ("lp_ft_short", "hard_switch"):  # the probe ended at step 5 / there is none
        assert not same_tree(one(params, by[name])["backbone"], src0["backbone"])
    assert (diverged < 0).all() and np.isfinite(metrics["target_acc"]).all()
    # every method is evaluated from the same source model at the switch (paired runs)
    np.testing.assert_array_equal(metrics["target_acc"][:, 0], metrics["target_acc"][0, 0])
