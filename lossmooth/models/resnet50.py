"""ResNet-50 in Flax linen, loading a torchvision-format state_dict file the user provides.

Architecture (He et al. 2016, torchvision's ``resnet50``, i.e. stride on the 3x3 convolution):

    stem    7x7 conv, stride 2, padding 3, 64 ch -> BN -> ReLU -> 3x3 max-pool, stride 2, padding 1
    layers  [3, 4, 6, 3] bottlenecks of width w = 64, 128, 256, 512, output 4w:
            1x1 conv w -> BN -> ReLU -> 3x3 conv w (stride 2 in the first block of layers 2-4,
            padding 1) -> BN -> ReLU -> 1x1 conv 4w -> BN, plus the shortcut (a 1x1 conv with the
            block's stride -> BN on each layer's first block, the identity otherwise) -> ReLU
    head    global mean over H, W (= ``features``, 2048-d) -> dense, ``num_classes`` (= logits)

Convolutions have no bias and pad symmetrically as torch does (not TF "SAME"); the max-pool pads
with -inf. BatchNorm: epsilon 1e-5, running-average momentum 0.9 (torch's 0.1).

Input: float RGB images in [0, 1], ``[N, H, W, 3]``, any H, W >= 32 px (the total stride, as for
:mod:`lossmooth.models.efficientnet`); the model normalises them with the ImageNet mean and std
that torchvision's weights were trained with.

Weights: ``torch.save(model.state_dict())`` of a torchvision ResNet-50 (``resnet50-*.pth``: keys
``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ..., ``layer1.0.downsample.0.weight``,
``fc.weight``), read without torch. Variables: ``params['backbone']``, ``batch_stats['backbone']``
and ``params['head']`` (loaded when ``num_classes`` equals the file's classifier outputs).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from lossmooth.models.conv import conv_fn
from lossmooth.models.pretrained import check_images, pretrained_variables, torch_batch_norm

LAYERS = ((3, 64), (4, 128), (6, 256), (3, 512))  # (blocks, width) per layer
EXPANSION, FEATURE_DIM, MIN_IMAGE_SIZE = 4, 2048, 32
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _bn(train: bool, name: str):
    return torch_batch_norm(train, name, torch_momentum=0.1, epsilon=1e-5)  # torchvision's defaults


class Bottleneck(nn.Module):
    width: int
    stride: int
    downsample: bool
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool):
        conv = conv_fn(self.conv_impl)
        y = nn.relu(_bn(train, "bn1")(nn.Conv(self.width, (1, 1), use_bias=False, conv_general_dilated=conv,
                                              name="conv1")(x)))
        y = nn.Conv(self.width, (3, 3), strides=self.stride, padding=((1, 1), (1, 1)), use_bias=False,
                    conv_general_dilated=conv, name="conv2")(y)
        y = nn.relu(_bn(train, "bn2")(y))
        y = _bn(train, "bn3")(nn.Conv(self.width * EXPANSION, (1, 1), use_bias=False, conv_general_dilated=conv,
                                      name="conv3")(y))
        if self.downsample:
            x = nn.Conv(self.width * EXPANSION, (1, 1), strides=self.stride, use_bias=False,
                        conv_general_dilated=conv, name="downsample_conv")(x)
            x = _bn(train, "downsample_bn")(x)
        return nn.relu(x + y)


class ResNet50Backbone(nn.Module):
    """[N, H, W, 3] images in [0, 1] -> [N, 2048] pooled features."""

    conv_impl: str = "auto"  # lossmooth.models.conv.conv_fn

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_images(x, "ResNet-50", MIN_IMAGE_SIZE)
        x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        x = nn.Conv(64, (7, 7), strides=2, padding=((3, 3), (3, 3)), use_bias=False,
                    conv_general_dilated=conv_fn(self.conv_impl), name="conv1")(x)
        x = nn.relu(_bn(train, "bn1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for layer, (blocks, width) in enumerate(LAYERS, start=1):
            for b in range(blocks):
                stride = 2 if (b == 0 and layer > 1) else 1
                x = Bottleneck(width, stride, downsample=b == 0, conv_impl=self.conv_impl,
                               name=f"layer{layer}_{b}")(x, train)
        return jnp.mean(x, axis=(1, 2))


class ResNet50(nn.Module):
    """ResNet-50: ``__call__`` gives logits, ``features`` the pooled 2048-d features, ``classify``
    the logits of given features (as :class:`lossmooth.models.efficientnet.EfficientNetLite0`).

    Training (``train=True``) normalises with batch statistics; apply with ``mutable=['batch_stats']``.
    """

    num_classes: int = 1000
    conv_impl: str = "auto"  # lossmooth.models.conv.conv_fn: im2col on CPU, XLA's convolution on GPU/TPU

    def setup(self):
        self.backbone = ResNet50Backbone(self.conv_impl)
        self.head = nn.Dense(self.num_classes)

    def features(self, x, train: bool = False):
        return self.backbone(x, train)

    def classify(self, features, train: bool = False):
        return self.head(features)

    def __call__(self, x, train: bool = False):
        return self.classify(self.backbone(x, train), train)


def torch_module_names() -> dict[str, str]:
    """Flax module path -> module prefix in a torchvision ResNet-50 state_dict."""
    names = {"backbone/conv1": "conv1", "backbone/bn1": "bn1", "head": "fc"}
    for layer, (blocks, _) in enumerate(LAYERS, start=1):
        for b in range(blocks):
            flax_block, torch_block = f"backbone/layer{layer}_{b}", f"layer{layer}.{b}"
            for name in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3"):
                names[f"{flax_block}/{name}"] = f"{torch_block}.{name}"
            if b == 0:
                names[f"{flax_block}/downsample_conv"] = f"{torch_block}.downsample.0"
                names[f"{flax_block}/downsample_bn"] = f"{torch_block}.downsample.1"
    return names


def pretrained_resnet50(model: ResNet50, rng, weights_path):
    """``{'params', 'batch_stats'}`` for ``model`` from a torchvision ResNet-50 state_dict file.

    Raises :class:`lossmooth.errors.ConfigError` naming the file when it is missing, is not a
    state_dict, or does not map one to one onto the model.
    """
    return pretrained_variables(model, rng, weights_path, torch_module_names(), MIN_IMAGE_SIZE)
