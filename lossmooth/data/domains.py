"""Source and target *domains* with shared classes, for pretrained vision adaptation.

Three sources, one interface (:func:`load_pair`), every image uint8 RGB [N, S, S, 3] at the
configured size S:

- ``digits`` (the embedded default): the digit domains of :mod:`lossmooth.data.digits`;
- ``domain_net`` (the paper path): DomainNet's six domains (clipart, infograph, painting, quickdraw,
  real, sketch; 345 classes) prepared by tensorflow-datasets in the array_record format under
  ``<data_dir>/domain_net/<domain>/<version>/`` (``python scripts/prepare_data.py domain_net/<domain>``),
  read without TensorFlow and resized;
- ``image_folder``: a plain directory of images, ``<data_dir>/<domain>/<class>/*.{jpg,jpeg,png}``
  (optionally ``<data_dir>/<domain>/{train,test}/<class>/...``), the layout DomainNet's own archives
  unpack to; the class folders must be the same in both domains.
"""
from __future__ import annotations

import os

import numpy as np

from lossmooth.data import digits
from lossmooth.data.images import ImageSplits, _tfds_version_dir
from lossmooth.errors import ConfigError

KINDS = ("digits", "domain_net", "image_folder")
DOMAIN_NET = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def domains_of(kind: str) -> tuple[str, ...] | None:
    """The valid domain names of ``kind`` (None: any folder name, for ``image_folder``)."""
    return {"digits": digits.DOMAINS, "domain_net": DOMAIN_NET}.get(kind)


def validate(kind: str, source: str, target: str, size) -> None:
    if kind not in KINDS:
        raise ConfigError(f"data.name: unknown domain dataset '{kind}'; choose one of {', '.join(KINDS)}")
    valid = domains_of(kind)
    for field, d in (("source_domain", source), ("target_domain", target)):
        if not isinstance(d, str) or (valid is not None and d not in valid):
            raise ConfigError(f"data.{field}: unknown {kind} domain {d!r}; choose one of "
                              f"{', '.join(valid or ['a folder under data.data_dir'])}")
    if source == target:
        raise ConfigError(f"data.target_domain: equals data.source_domain ('{source}'); adaptation needs two "
                          "different domains")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"data.image_size: must be a positive integer, got {size!r}")


def load_pair(kind: str, source: str, target: str, size: int, data_dir: str | None = None,
              seed: int = 0, **options) -> tuple[ImageSplits, ImageSplits]:
    """(source domain, target domain) at ``size`` px; their class counts must agree."""
    validate(kind, source, target, size)
    src, tgt = (_load(kind, d, size, data_dir, seed, options) for d in (source, target))
    if src.num_classes != tgt.num_classes:
        raise ConfigError(f"data: domain '{source}' has {src.num_classes} classes but '{target}' has "
                          f"{tgt.num_classes}; adaptation needs the same classes in both domains")
    return src, tgt


def _load(kind, domain, size, data_dir, seed, options) -> ImageSplits:
    if kind == "digits":
        x, y, xt, yt = digits.load(domain, size, data_dir, seed=seed, **options)
        return ImageSplits(f"digits/{domain}", x, y, xt, yt, digits.NUM_CLASSES, paper_data=False,
                           source=f"digits/{domain} (registry packages)")
    if kind == "domain_net":
        return _domain_net(domain, size, data_dir or "~/tensorflow_datasets")
    if not data_dir:
        raise ConfigError("data.data_dir: image_folder needs the folder holding <domain>/<class>/ images")
    return _image_folder(domain, size, data_dir, seed, options.get("test_fraction", 0.2))


def _domain_net(domain: str, size: int, data_dir: str) -> ImageSplits:
    """tfds ``domain_net/<domain>``: records {"image": HxWx3 uint8 (any size), "label": int}."""
    name = f"domain_net/{domain}"
    fix = f"python scripts/prepare_data.py {name} --data-dir {data_dir}"
    path = _tfds_version_dir(data_dir, name)
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder_from_directory(path)
        features = builder.info.features
        splits = builder.info.splits
    except Exception as e:  # a corrupt or foreign dataset_info.json / features.json
        raise ConfigError(f"{name}: cannot read the prepared dataset in {path} ({type(e).__name__}); "
                          f"re-prepare it with: {fix}") from None
    out = {}
    for split in ("train", "test"):
        if split not in splits:
            raise ConfigError(f"{name}: split '{split}' missing in {path}; re-prepare it with: {fix}")
        try:
            source = builder.as_data_source(split=split)
        except (NotImplementedError, ValueError):
            raise ConfigError(f"{name}: {path} is not in the array_record format; prepare it with: {fix}") from None
        n = len(source)
        x = np.empty((n, size, size, 3), np.uint8)
        y = np.empty((n,), np.int32)
        for k in range(n):
            rec = source[k]
            x[k] = _resize_rgb(np.asarray(rec["image"]), size)
            y[k] = rec["label"]
        out[split] = (x, y)
    return ImageSplits(name, *out["train"], *out["test"], num_classes=int(features["label"].num_classes),
                       paper_data=True, source=path)


def _image_folder(domain: str, size: int, data_dir: str, seed: int, test_fraction: float) -> ImageSplits:
    from PIL import Image, UnidentifiedImageError

    root = os.path.join(os.path.expanduser(data_dir), domain)
    if not os.path.isdir(root):
        raise ConfigError(f"data: domain folder {root} not found; put the images at "
                          f"{data_dir}/{domain}/<class>/*.jpg or fix data.data_dir / the domain name")
    split_dirs = {s: os.path.join(root, s) for s in ("train", "test") if os.path.isdir(os.path.join(root, s))}
    parts = split_dirs if len(split_dirs) == 2 else {"all": root}
    classes = None
    arrays = {}
    for split, d in parts.items():
        names = sorted(c for c in os.listdir(d) if os.path.isdir(os.path.join(d, c)))
        if not names:
            raise ConfigError(f"data: {d} holds no class folders; expected {d}/<class>/*.jpg")
        if classes is not None and names != classes:
            raise ConfigError(f"data: {d} has other class folders than {parts['train']}; use the same classes")
        classes = names
        xs, ys = [], []
        for label, c in enumerate(names):
            for f in sorted(os.listdir(os.path.join(d, c))):
                if not f.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                p = os.path.join(d, c, f)
                try:
                    with Image.open(p) as img:
                        xs.append(_resize_rgb(np.asarray(img.convert("RGB")), size))
                except (OSError, UnidentifiedImageError):
                    raise ConfigError(f"data: {p} is not a readable image; remove or replace it") from None
                ys.append(label)
        if not xs:
            raise ConfigError(f"data: no .jpg/.jpeg/.png images under {d}")
        arrays[split] = (np.stack(xs), np.asarray(ys, np.int32))
    if "all" in arrays:  # one folder: a fixed split per seed
        x, y = arrays.pop("all")
        perm = np.random.default_rng(seed).permutation(len(y))
        n_test = max(1, int(round(test_fraction * len(y))))
        arrays = {"test": (x[perm[:n_test]], y[perm[:n_test]]), "train": (x[perm[n_test:]], y[perm[n_test:]])}
    return ImageSplits(f"image_folder/{domain}", *arrays["train"], *arrays["test"], num_classes=len(classes),
                       paper_data=True, source=root)


def _resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.shape[:2] == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))

