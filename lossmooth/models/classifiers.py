"""Flax linen image classifiers: a small CNN (the default), an MLP and a CIFAR ResNet-18.

Inputs are float images in [0, 1], [N, H, W, C]; outputs are logits [N, K]. All models are pure
functions of their params (no batch statistics): the smoothed objective evaluates two independent
batches per step, and batch statistics would mix them, so the ResNet uses GroupNorm. Convolutions
default to :func:`lossmooth.models.conv.im2col_conv` (``conv_impl: native`` for XLA's own).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lossmooth.errors import ConfigError
from lossmooth.models.conv import im2col_conv

CONV_IMPLS = {"im2col": im2col_conv, "native": jax.lax.conv_general_dilated}

MODELS = ("cnn", "mlp", "resnet18")


class CNN(nn.Module):
    """Stride-2 3x3 convolutions (widths), then a dense hidden layer and the classifier."""

    num_classes: int
    widths: Sequence[int] = (32, 64)
    hidden: int = 128
    conv_impl: str = "im2col"

    @nn.compact
    def __call__(self, x):
        x = 2.0 * x - 1.0
        conv = CONV_IMPLS[self.conv_impl]
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
        conv = CONV_IMPLS[self.conv_impl]
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
                    conv_general_dilated=CONV_IMPLS[self.conv_impl])(x)
        x = nn.relu(nn.GroupNorm(num_groups=self.groups)(x))
        for i, n_blocks in enumerate((2, 2, 2, 2)):
            for b in range(n_blocks):
                x = BasicBlock(self.width * 2**i, strides=2 if (i > 0 and b == 0) else 1,
                               groups=self.groups, conv_impl=self.conv_impl)(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


def build(name: str, num_classes: int, **kwargs) -> nn.Module:
    """A model by name; ``kwargs`` are its fields (e.g. ``widths`` for the CNN)."""
    classes = {"cnn": CNN, "mlp": MLP, "resnet18": ResNet18}
    if kwargs.get("conv_impl", "im2col") not in CONV_IMPLS:
        raise ConfigError(f"model.conv_impl: unknown '{kwargs['conv_impl']}'; choose one of "
                          f"{', '.join(CONV_IMPLS)}")
    if name not in classes:
        raise ConfigError(f"model.name: unknown model '{name}'; choose one of {', '.join(MODELS)}")
    try:
        return classes[name](num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model: bad field for '{name}' ({e}); see conf/model/{name}.yaml")
