"""The no-root install path of the docs' recipe: Fashion-MNIST's IDX files copied into the user's data
folder (``$LOSSMOOTH_DATA/fashion-mnist``, what ``scripts/install.sh`` fills without root) are found
and read, in preference to Debian's folder; small files written in the real IDX format."""
import gzip
import struct

import numpy as np
import pytest

from lossmooth.data import images
from lossmooth.errors import ConfigError


def write_idx(path, array: np.ndarray) -> None:
    """IDX: two zero bytes, type 0x08 (unsigned byte), the number of dimensions, each dimension as a
    big-endian uint32, then the data, row-major; gzipped as the distributed files are."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fill(folder, n_train=6, n_test=4):
    rng = np.random.default_rng(0)
    data = {"train": (rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train)),
            "test": (rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test))}
    folder.mkdir(parents=True, exist_ok=True)
    for split, (img, lab) in images.FASHION_MNIST_FILES.items():
        write_idx(folder / img, data[split][0])
        write_idx(folder / lab, data[split][1])
    return data


def test_idx_files_in_the_data_folder_are_the_default_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "USER_DATA_DIR", str(tmp_path / "data"))
    data = fill(tmp_path / "data" / "fashion-mnist")
    assert images.fashion_mnist_dir() == str(tmp_path / "data" / "fashion-mnist")
    splits = images.load("fashion_mnist")
    assert splits.source == str(tmp_path / "data" / "fashion-mnist") and not splits.paper_data
    assert splits.x_train.shape == (6, 28, 28, 1) and splits.x_test.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(splits.x_train[..., 0], data["train"][0])
    np.testing.assert_array_equal(splits.y_test, data["test"][1])


def test_a_data_folder_missing_a_file_is_passed_over_and_its_absence_named(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "USER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(images, "FASHION_MNIST_DIR", str(tmp_path / "no-debian"))
    fill(tmp_path / "data" / "fashion-mnist")
    (tmp_path / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert images.fashion_mnist_dir() == str(tmp_path / "no-debian")  # incomplete: not taken
    with pytest.raises(ConfigError, match="not found.*install.sh without root.*fashion-mnist"):
        images.load("fashion_mnist")
