"""Distribution shifts that turn a source image distribution into a target one.

Each shift has a ``severity`` s in [0, 1] (0 = no shift) and acts on float images in [0, 1],
[N, H, W, C]. Covariate shifts change x; label shifts change p(y) or the labelling y -> pi(y).

Covariate (``apply_covariate``):
- ``gaussian_noise``:    x' = clip(x + 0.5 s eps), eps ~ N(0, 1) fixed per example
- ``blur``:              x' = G_sigma * x, a Gaussian blur with sigma = 3 s pixels
- ``contrast``:          x' = m + (1 - 0.9 s)(x - m), m the image mean
- ``pixel_permutation``: a fixed random permutation of round(s * H * W) pixel positions
- ``inversion``:         x' = (1 - s) x + s (1 - x)
- ``colour``:            x' = (1 - s) x + s * (x[..., perm]), a channel rotation (RGB only)

Label (``label_priors`` / ``label_map``), K classes, lower half L = {0..K/2-1}, upper half U:
- ``class_prior``:       source keeps all of L and a fraction (1 - s) of U; the target the reverse
                         (s = 1: the target's common classes are missing from the source)
- ``label_permutation``: the first max(2, round(s K)) classes are relabelled cyclically in the target

``none`` is the identity (target = source distribution on disjoint examples).
"""
from __future__ import annotations

import numpy as np

from lossmooth.errors import ConfigError

COVARIATE = ("gaussian_noise", "blur", "contrast", "pixel_permutation", "inversion", "colour")
LABEL = ("class_prior", "label_permutation")
SHIFTS = ("none",) + COVARIATE + LABEL


def validate(name: str, severity) -> None:
    if name not in SHIFTS:
        raise ConfigError(f"shift.name: unknown shift '{name}'; choose one of {', '.join(SHIFTS)}")
    try:
        s = float(severity)
    except (TypeError, ValueError):
        s = float("nan")
    if isinstance(severity, bool) or not 0.0 <= s <= 1.0:
        raise ConfigError(f"shift.severity: must be a number in [0, 1], got {severity!r}")


def apply_covariate(name: str, severity: float, x: np.ndarray, shift_seed: int,
                    noise_seed: int) -> np.ndarray:
    """The target version of float images ``x`` in [0, 1]; identity for label shifts and ``none``.

    ``shift_seed`` fixes the shift itself (the pixel permutation), identical for train and test;
    ``noise_seed`` draws per-example noise, so train and test get their own.
    """
    s = float(severity)
    rng = np.random.default_rng(shift_seed)
    noise_rng = np.random.default_rng(noise_seed)
    if name not in COVARIATE or s == 0.0:
        return x
    if name == "gaussian_noise":
        return np.clip(x + 0.5 * s * noise_rng.standard_normal(x.shape, dtype=np.float32), 0.0, 1.0)
    if name == "blur":
        from scipy.ndimage import gaussian_filter

        return gaussian_filter(x, sigma=(0, 3.0 * s, 3.0 * s, 0)).astype(np.float32)
    if name == "contrast":
        m = x.mean(axis=(1, 2, 3), keepdims=True)
        return (m + (1.0 - 0.9 * s) * (x - m)).astype(np.float32)
    if name == "pixel_permutation":
        n, h, w, c = x.shape
        k = int(round(s * h * w))
        pos = rng.permutation(h * w)[:k]
        perm = np.arange(h * w)
        perm[pos] = pos[rng.permutation(k)]
        return x.reshape(n, h * w, c)[:, perm].reshape(x.shape)
    if name == "inversion":
        return ((1.0 - s) * x + s * (1.0 - x)).astype(np.float32)
    if name == "colour":
        if x.shape[-1] != 3:
            raise ConfigError(f"shift.name: 'colour' needs RGB images, this dataset has {x.shape[-1]} "
                              "channel(s); pick another shift")
        return ((1.0 - s) * x + s * x[..., [1, 2, 0]]).astype(np.float32)
    raise AssertionError(name)


def label_priors(name: str, severity: float, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(source prior, target prior) over classes, each summing to 1."""
    uniform = np.full(num_classes, 1.0 / num_classes)
    if name != "class_prior":
        return uniform, uniform
    half = num_classes // 2
    keep = 1.0 - float(severity)
    src = np.where(np.arange(num_classes) < half, 1.0, keep)
    tgt = np.where(np.arange(num_classes) < half, keep, 1.0)
    return src / src.sum(), tgt / tgt.sum()


def label_map(name: str, severity: float, num_classes: int) -> np.ndarray:
    """The target labelling as a lookup table: y_target = table[y]."""
    table = np.arange(num_classes)
    if name == "label_permutation" and severity > 0:
        k = min(num_classes, max(2, int(round(float(severity) * num_classes))))
        table[:k] = np.roll(np.arange(k), -1)
    return table


def subsample_to_prior(y: np.ndarray, prior: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a subset of ``y`` whose class frequencies follow ``prior`` (keep-rate per class).

    The most frequent class (relative to its prior) is kept whole; others are thinned.
    """
    counts = np.bincount(y, minlength=len(prior)).astype(np.float64)
    scale = np.min(np.where(prior > 0, counts / np.maximum(prior, 1e-12), np.inf))
    keep = []
    for c in range(len(prior)):
        idx = np.flatnonzero(y == c)
        n = int(round(prior[c] * scale))
        keep.append(rng.permutation(idx)[:n])
    return np.sort(np.concatenate(keep))
