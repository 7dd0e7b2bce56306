"""Flax linen image classifiers: a small CNN (the default), an MLP, a CIFAR ResNet-18, and the
ImageNet-pretrained EfficientNet-Lite0 and ResNet-50 (:class:`Pretrained`).

Inputs are float images in [0, 1], [N, H, W, C]; outputs are logits [N, K]. All models are pure
functions of their params (no batch statistics): the smoothed objective evaluates two independent
batches per step, and batch statistics would mix them, so the ResNet uses GroupNorm and the
pretrained networks keep their BatchNorm layers on the pretrained running statistics. Convolutions
are chosen by ``conv_impl`` (:func:`lossmooth.models.conv.conv_fn`): ``auto`` (the pretrained
networks' default) is im2col on CPU and XLA's native convolution on GPU/TPU; the CNN and ResNet-18
configs set ``im2col``.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lossmooth.errors import ConfigError
from lossmooth.models.conv import CONV_IMPLS, conv_fn

MODELS = ("cnn", "mlp", "resnet18", "efficientnet_lite0", "resnet50")
HEAD = "head"  # the params subtree of the classifier head (LP-FT trains it alone first)
HEADED = ("efficientnet_lite0", "resnet50")


class CNN(nn.Module):
    """Stride-2 3x3 convolutions (widths), then a dense hidden layer and the classifier."""

    num_classes: int
    widths: Sequence[int] = (32, 64)
    hidden: int = 128
    conv_impl: str = "im2col"

    @nn.compact
    def __call__(self, x):
        x = 2.0 * x - 1.0
        conv = conv_fn(self.conv_impl)
        for w in self.widths:
            x = nn.relu(nn.Conv(w, (3, 3), strides=(2, 2), padding="SAME", conv_general_dilated=conv)(x))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes)(x)


class MLP(nn.Module):
    num_classes: int
    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, x):
        x = (2.0 * x - 1.0).reshape(x.shape[0], -1)
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(self.num_classes)(x)


class BasicBlock(nn.Module):
    features: int
    strides: int = 1
    groups: int = 8
    conv_impl: str = "im2col"

    @nn.compact
    def __call__(self, x):
        conv = conv_fn(self.conv_impl)
        y = nn.Conv(self.features, (3, 3), strides=self.strides, padding="SAME", use_bias=False,
                    conv_general_dilated=conv)(x)
        y = nn.relu(nn.GroupNorm(num_groups=self.groups)(y))
        y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, conv_general_dilated=conv)(y)
        y = nn.GroupNorm(num_groups=self.groups)(y)
        if x.shape[-1] != self.features or self.strides != 1:
            x = nn.Conv(self.features, (1, 1), strides=self.strides, use_bias=False,
                        conv_general_dilated=conv)(x)
            x = nn.GroupNorm(num_groups=self.groups)(x)
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """The CIFAR ResNet-18 (3x3 stem, no max-pool, [2, 2, 2, 2] basic blocks), GroupNorm."""

    num_classes: int
    width: int = 64
    groups: int = 8
    conv_impl: str = "im2col"

    @nn.compact
    def __call__(self, x):
        x = (x - 0.5) / 0.25
        x = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False,
                    conv_general_dilated=conv_fn(self.conv_impl))(x)
        x = nn.relu(nn.GroupNorm(num_groups=self.groups)(x))
        for i, n_blocks in enumerate((2, 2, 2, 2)):
            for b in range(n_blocks):
                x = BasicBlock(self.width * 2**i, strides=2 if (i > 0 and b == 0) else 1,
                               groups=self.groups, conv_impl=self.conv_impl)(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


class Pretrained:
    """A torch-pretrained network (``params['backbone']`` + ``params['head']``) used like the linen
    models here: ``init(key, x)`` gives the pretrained backbone with a fresh head drawn from ``key``,
    ``apply({'params': p}, x)`` the logits.

    BatchNorm stays in inference mode on the pretrained running statistics, held as constants of
    the program [assumed, ``model.bn: frozen``: the usual choice when fine-tuning with small batches,
    and the only one under which the two batches of the smoothed objective do not interact];
    dropout and drop-connect are off.
    """

    def __init__(self, net, variables):
        self.net = net
        self.backbone = variables["params"]["backbone"]
        self.stats = variables["batch_stats"]
        self.feature_dim = variables["params"][HEAD]["kernel"].shape[0]

    def init(self, key, x):
        fresh = self.net.init(key, jnp.zeros((1, self.feature_dim), x.dtype), method=lambda m, f: m.head(f))
        return {"params": {"backbone": self.backbone, HEAD: fresh["params"][HEAD]}}

    def apply(self, variables, x):
        return self.net.apply({"params": variables["params"], "batch_stats": self.stats}, x, train=False)


def _pretrained(name: str, num_classes: int, weights: str | None = None, bn: str = "frozen",
                conv_impl: str = "auto"):
    if bn != "frozen":
        raise ConfigError(f"model.bn: only 'frozen' is supported (BatchNorm on the pretrained statistics), got {bn!r}")
    if name == "efficientnet_lite0":
        from lossmooth.models import efficientnet as E

        net = E.EfficientNetLite0(num_classes=num_classes, conv_impl=conv_impl)
        return Pretrained(net, E.pretrained_lite0(net, jax.random.PRNGKey(0), weights))
    from lossmooth.models import resnet50 as R

    if not weights:
        raise ConfigError("model.weights: resnet50 needs a torchvision-format ResNet-50 state_dict file; set "
                          "model.weights=/path/to/resnet50.pth")
    net = R.ResNet50(num_classes=num_classes, conv_impl=conv_impl)
    return Pretrained(net, R.pretrained_resnet50(net, jax.random.PRNGKey(0), weights))


def min_image_size(name: str) -> int:
    """The smallest image side a model takes (1 for the small models: any)."""
    return 32 if name in HEADED else 1


def build(name: str, num_classes: int, **kwargs):
    """A model by name; ``kwargs`` are its fields (e.g. ``widths`` for the CNN)."""
    if kwargs.get("conv_impl", "auto") not in CONV_IMPLS:
        raise ConfigError(f"model.conv_impl: unknown '{kwargs['conv_impl']}'; choose one of "
                          f"{', '.join(CONV_IMPLS)}")
    if name in HEADED:
        extra = set(kwargs) - {"weights", "bn", "conv_impl"}
        if extra:
            raise ConfigError(f"model: unknown field(s) {sorted(extra)} for '{name}'; see conf/supervised/model/{name}.yaml")
        return _pretrained(name, num_classes, **kwargs)
    classes = {"cnn": CNN, "mlp": MLP, "resnet18": ResNet18}
    for k in ("widths", "hidden", "width", "groups"):  # layer sizes: positive integers (one or a list)
        v = kwargs.get(k)
        vals = v if isinstance(v, (list, tuple)) else [v]
        if v is not None and (not vals or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in vals)):
            raise ConfigError(f"model.{k}: layer sizes must be positive integers, got {v!r}")
    if name not in classes:
        raise ConfigError(f"model.name: unknown model '{name}'; choose one of {', '.join(MODELS)}")
    try:
        return classes[name](num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model: bad field for '{name}' ({e}); see conf/supervised/model/{name}.yaml")
