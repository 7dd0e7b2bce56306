"""Image classification datasets, as in-memory arrays: ``x`` uint8 [N, H, W, C], ``y`` int32 [N].

Two paths:

- embedded default: Fashion-MNIST's four IDX ``.gz`` files, from the user's data folder
  (``$LOSSMOOTH_DATA/fashion-mnist``, default ``~/.cache/lossmooth/data``: no root needed) or Debian's
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``); any directory holding them works;
- paper path: CIFAR-10 / CIFAR-100 prepared by tensorflow-datasets in the ``array_record`` format
  (``python scripts/prepare_data.py cifar10 --data-dir DIR``), read through
  ``tfds.builder_from_directory(...).as_data_source(split)`` which needs no TensorFlow.

A missing dataset raises a one-line :class:`ConfigError` naming it, where we looked and the command
that prepares it.
"""
from __future__ import annotations

import gzip
import os
import re
import struct as _struct
from dataclasses import dataclass

import numpy as np

from lossmooth.errors import ConfigError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist (needs root)
# the user's data folder (no root needed): scripts/install.sh copies or downloads the IDX files there
USER_DATA_DIR = os.environ.get("LOSSMOOTH_DATA", os.path.expanduser("~/.cache/lossmooth/data"))
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
TFDS_DATASETS = {"cifar10": 10, "cifar100": 100}
DATASETS = ("fashion_mnist",) + tuple(TFDS_DATASETS)


@dataclass(frozen=True)
class ImageSplits:
    """Train and test arrays of one dataset; ``paper_data`` is False for a stand-in."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    paper_data: bool
    source: str  # where the files were read from


def load(name: str, data_dir: str | None = None) -> ImageSplits:
    """Load dataset ``name`` (see :data:`DATASETS`) from ``data_dir`` (its default when None)."""
    if name == "fashion_mnist":
        return load_fashion_mnist(data_dir or fashion_mnist_dir())
    if name in TFDS_DATASETS:
        return load_tfds_images(name, data_dir or os.path.expanduser("~/tensorflow_datasets"))
    raise ConfigError(f"data.name: unknown dataset '{name}'; choose one of {', '.join(DATASETS)}")


# ----------------------------------------------------------------------------- IDX (Fashion-MNIST)


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000 <dtype> <ndim>, big-endian dims, data."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ConfigError(f"{path}: cannot read IDX file ({e.__class__.__name__}: {e}); "
                          "reinstall it with: apt-get install --reinstall dataset-fashion-mnist")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ConfigError(f"{path}: not an unsigned-byte IDX file (bad magic); "
                          "reinstall it with: apt-get install --reinstall dataset-fashion-mnist")
    ndim = raw[3]
    dims = _struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ConfigError(f"{path}: truncated IDX file ({data.size} of {int(np.prod(dims))} values); "
                          "reinstall it with: apt-get install --reinstall dataset-fashion-mnist")
    return data.reshape(dims)


def fashion_mnist_dir() -> str:
    """The default folder of the Fashion-MNIST IDX files: ``<user data folder>/fashion-mnist`` where it
    holds all four files, else Debian's folder (whose absence the loader reports)."""
    mine = os.path.join(USER_DATA_DIR, "fashion-mnist")
    if all(os.path.exists(os.path.join(mine, f)) for pair in FASHION_MNIST_FILES.values() for f in pair):
        return mine
    return FASHION_MNIST_DIR


def load_fashion_mnist(data_dir: str) -> ImageSplits:
    arrays = {}
    for split, (img, lab) in FASHION_MNIST_FILES.items():
        for fname in (img, lab):
            if not os.path.exists(os.path.join(data_dir, fname)):
                raise ConfigError(
                    f"fashion_mnist: {os.path.join(data_dir, fname)} not found; install it with: "
                    "apt-get install dataset-fashion-mnist, or bash scripts/install.sh without root (or copy the IDX files "
                    f"to {os.path.join(USER_DATA_DIR, 'fashion-mnist')} or set data.data_dir to their folder)")
        x = read_idx(os.path.join(data_dir, img))
        y = read_idx(os.path.join(data_dir, lab))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ConfigError(f"fashion_mnist: {data_dir} holds mismatched image/label files for '{split}'")
        arrays[split] = (x[..., None], y.astype(np.int32))
    return ImageSplits("fashion_mnist", *arrays["train"], *arrays["test"], num_classes=10,
                       paper_data=False, source=data_dir)


# ----------------------------------------------------------------------------- tfds (CIFAR)


_TFDS_BATCH = 4096  # records read and decoded per ``__getitems__`` call (bounds the decoded dicts held)


def load_tfds_images(name: str, data_dir: str) -> ImageSplits:
    """Read a tfds image dataset prepared as array_record under ``data_dir/name/<version>/``.

    Records are read in batches through the random-access data source (``__getitems__``), in its
    order; images are decoded by tfds with NumPy/PIL (or OpenCV), never TensorFlow.
    """
    fix = f"python scripts/prepare_data.py {name} --data-dir {data_dir}"
    path = _tfds_version_dir(data_dir, name)
    try:
        import tensorflow_datasets as tfds  # heavy import: only on the paper path
    except ImportError as e:
        raise ConfigError(f"{name}: tensorflow-datasets is not importable ({e}); install it with: "
                          "pip install tensorflow-datasets array_record")

    try:
        builder = tfds.builder_from_directory(path)
        info = builder.info
        features = info.features
    except Exception as e:  # corrupt/foreign dataset_info.json or features.json
        raise ConfigError(f"{name}: cannot read the prepared dataset in {path} "
                          f"({e.__class__.__name__}: {e}); re-prepare it with: {fix}")
    if "image" not in features or "label" not in features:
        raise ConfigError(f"{name}: {path} has no 'image'/'label' features; re-prepare it with: {fix}")
    image_shape = tuple(features["image"].shape)
    if len(image_shape) != 3 or None in image_shape:
        raise ConfigError(f"{name}: {path} stores images of unfixed shape {image_shape}; "
                          f"re-prepare it with: {fix}")
    out = {}
    for split in ("train", "test"):
        if split not in info.splits:
            raise ConfigError(f"{name}: split '{split}' missing in {path}; re-prepare it with: {fix}")
        try:
            source = builder.as_data_source(split=split)
        except (NotImplementedError, ValueError) as e:  # e.g. prepared as tfrecord, not array_record
            raise ConfigError(f"{name}: {path} is not readable by random access "
                              f"(file format {info.file_format}, need array_record: {e}); "
                              f"prepare an array_record copy in another folder with: {fix}")
        n = len(source)
        if n == 0:
            raise ConfigError(f"{name}: split '{split}' in {path} is empty; re-prepare it with: {fix}")
        x = np.empty((n,) + image_shape, np.uint8)
        y = np.empty((n,), np.int32)
        get_batch = getattr(source, "__getitems__", None)
        for start in range(0, n, _TFDS_BATCH):
            keys = list(range(start, min(start + _TFDS_BATCH, n)))
            records = get_batch(keys) if get_batch is not None else [source[k] for k in keys]
            for k, rec in zip(keys, records):
                x[k] = rec["image"]
                y[k] = rec["label"]
        out[split] = (x, y)
    num_classes = int(features["label"].num_classes)
    return ImageSplits(name, *out["train"], *out["test"], num_classes=num_classes, paper_data=True,
                       source=path)


def _tfds_version_dir(data_dir: str, name: str) -> str:
    """The newest ``data_dir/name/<X.Y.Z>/`` holding a finished ``dataset_info.json``."""
    root = os.path.join(os.path.expanduser(data_dir), name)
    versions = sorted(
        (d for d in (os.listdir(root) if os.path.isdir(root) else [])
         if re.fullmatch(r"\d+\.\d+\.\d+", d)  # skips tfds' "incomplete.*" work folders
         and os.path.exists(os.path.join(root, d, "dataset_info.json"))),
        key=lambda v: tuple(int(p) for p in v.split(".")))
    if not versions:
        raise ConfigError(
            f"{name}: no prepared tensorflow-datasets copy under {root}; prepare it with: "
            f"python scripts/prepare_data.py {name} --data-dir {data_dir}")
    return os.path.join(root, versions[-1])
