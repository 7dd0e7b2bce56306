"""The CIFAR paper path: a tiny CIFAR-10 look-alike written by tfds itself in the array_record format
(``<tmp>/cifar10/3.0.2/``), read back by ``lossmooth.data.images.load``. No TensorFlow, no network.
A missing or unfinished dataset (one error line naming the preparation command): tests/test_bad_input.py."""
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")
PIL_Image = pytest.importorskip("PIL.Image")

from lossmooth.data import images  # noqa: E402

SIZES = {"train": 40, "test": 20}


def fake_split(split):
    """Deterministic pseudo-random (ids, images uint8 [N,32,32,3], labels) of one split."""
    n = SIZES[split]
    rng = np.random.default_rng(0 if split == "train" else 1)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int32)
    ids = [f"{split}_{i:05d}" for i in range(n)]
    return ids, x, y


with tfds.core.registered.skip_registration():  # must not shadow the stock "cifar10" builder

    class Cifar10(tfds.core.GeneratorBasedBuilder):
        """Same name, version and features as the stock builder; tiny made-up content."""

        VERSION = tfds.core.Version("3.0.2")

        def _info(self):
            # DatasetInfo directly: dataset_info_from_configs looks for metadata next to this file
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "id": tfds.features.Text(),
                    "image": tfds.features.Image(shape=(32, 32, 3)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in SIZES}

        def _generate_examples(self, split):
            ids, x, y = fake_split(split)
            for key, img, label in zip(ids, x, y):
                # a PIL image: tfds encodes it to PNG with PIL (a NumPy array would need tf.image)
                yield key, {"id": key, "image": PIL_Image.fromarray(img), "label": int(label)}


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = Cifar10(data_dir=str(data_dir), file_format="array_record")
    assert builder.name == "cifar10"
    builder.download_and_prepare()
    assert (data_dir / "cifar10" / "3.0.2" / "dataset_info.json").exists()
    assert list((data_dir / "cifar10" / "3.0.2").glob("cifar10-train.array_record-*"))
    return str(data_dir)


def _by_pixels(x, y):
    """Examples sorted by their pixel bytes, so that comparisons ignore tfds' record shuffling."""
    order = sorted(range(len(x)), key=lambda i: x[i].tobytes())
    return x[order], y[order]


@pytest.mark.parametrize("batch", [None, 7])  # default batch (one read per split), and many reads
def test_load_tfds_cifar10(cifar_dir, monkeypatch, batch):
    if batch is not None:
        monkeypatch.setattr(images, "_TFDS_BATCH", batch)
    d = images.load("cifar10", data_dir=cifar_dir)
    assert d.name == "cifar10" and d.num_classes == 10 and d.paper_data is True
    assert d.source.endswith("cifar10/3.0.2")
    for split, x, y in (("train", d.x_train, d.y_train), ("test", d.x_test, d.y_test)):
        n = SIZES[split]
        assert x.shape == (n, 32, 32, 3) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int32
        _, x_ref, y_ref = fake_split(split)
        x_got, y_got = _by_pixels(x, y)
        x_ref, y_ref = _by_pixels(x_ref, y_ref)
        np.testing.assert_array_equal(x_got, x_ref)
        np.testing.assert_array_equal(y_got, y_ref)


def test_load_keeps_data_source_order(cifar_dir):
    """Example i of the arrays is record i of the tfds data source (read by ``id``)."""
    d = images.load("cifar10", data_dir=cifar_dir)
    builder = tfds.builder_from_directory(f"{cifar_dir}/cifar10/3.0.2")
    ids = [r["id"] for r in builder.as_data_source("test")]
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
    ref_ids, x_ref, y_ref = fake_split("test")
    pos = [ref_ids.index(i) for i in ids]
    np.testing.assert_array_equal(d.x_test, x_ref[pos])
    np.testing.assert_array_equal(d.y_test, y_ref[pos])
