"""The supervised settings' data: disjoint source and target pools of one dataset with a generated
shift (supervised), or two domains' own train sets (pretrained vision), the replay pool, and the
evaluation sets of both domains, as uint8 device arrays shared by every run.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lossmooth.data import domains, images, shifts
from lossmooth.errors import ConfigError
from lossmooth.settings.supervised.config import Spec


@struct.dataclass
class Data:
    """Device arrays shared by every run (uint8 images; float conversion happens per batch)."""

    source_x: jnp.ndarray
    source_y: jnp.ndarray
    replay_x: jnp.ndarray
    replay_y: jnp.ndarray
    target_x: jnp.ndarray
    target_y: jnp.ndarray
    source_test_x: jnp.ndarray
    source_test_y: jnp.ndarray
    source_test_w: jnp.ndarray
    target_test_x: jnp.ndarray
    target_test_y: jnp.ndarray
    target_test_w: jnp.ndarray
    # the dense evaluation's sets (config dense_eval.size): the first examples of each evaluation set,
    # with the weights of those examples (None: dense evaluation uses the whole evaluation sets)
    dense_source_test_x: jnp.ndarray | None = None
    dense_source_test_y: jnp.ndarray | None = None
    dense_source_test_w: jnp.ndarray | None = None
    dense_target_test_x: jnp.ndarray | None = None
    dense_target_test_y: jnp.ndarray | None = None
    dense_target_test_w: jnp.ndarray | None = None

    def dense_view(self) -> "Data":
        """The data as the dense evaluation sees it: its evaluation sets in place of the full ones."""
        if self.dense_source_test_x is None:
            return self
        return self.replace(**{f"{d}_test_{s}": getattr(self, f"dense_{d}_test_{s}")
                               for d in ("source", "target") for s in ("x", "y", "w")})


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _subset_weights(w: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """The weights of the first ``size`` examples of an evaluation set weighted ``w`` (per class,
    ``prior / count``): each class keeps its prior, spread over the examples it has in the subset."""
    k = int(y.max()) + 1
    full = np.bincount(y, minlength=k).astype(np.float64)
    sub = np.bincount(y[:size], minlength=k).astype(np.float64)
    v = w[:size] * full[y[:size]] / sub[y[:size]]
    return (v / v.sum()).astype(np.float32)


def _with_dense_sets(data: Data, size: int | None) -> Data:
    """``data`` with the dense evaluation's sets (the first ``size`` examples of each evaluation set)."""
    if size is None or size >= max(len(data.source_test_y), len(data.target_test_y)):
        return data
    dense = {}
    for d in ("source", "target"):
        y, w = getattr(data, f"{d}_test_y"), getattr(data, f"{d}_test_w")
        dense.update({f"dense_{d}_test_x": getattr(data, f"{d}_test_x")[:size], f"dense_{d}_test_y": y[:size],
                      f"dense_{d}_test_w": _subset_weights(w, y, size)})
    return data.replace(**dense)


def _eval_weights(y: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """w_i = prior[y_i] / count[y_i]: sum_i w_i correct_i is the prior-weighted per-class accuracy."""
    counts = np.bincount(y, minlength=len(prior)).astype(np.float64)
    w = prior[y] / np.maximum(counts[y], 1.0)
    return (w / w.sum()).astype(np.float32)


def build_data(spec: Spec) -> tuple[Data, dict]:
    """Split train into disjoint source / target pools (or, for a domain pair, take each domain's
    train set), apply the shift, and put arrays on device."""
    rng = np.random.default_rng(spec.split_seed)
    if spec.domains is not None:
        d = spec.domains
        src, tgt = domains.load_pair(d["kind"], d["source"], d["target"], d["size"], spec.data_dir,
                                     spec.split_seed, **d["options"])
        raw = src
        src_idx, tgt_idx = np.arange(len(src.y_train)), np.arange(len(tgt.y_train))
    else:
        raw = tgt = images.load(spec.data_name, spec.data_dir)
        perm = rng.permutation(len(raw.y_train))
        n_src = int(round(spec.train_fraction_source * len(perm)))
        src_idx, tgt_idx = perm[:n_src], perm[n_src:]
    k = raw.num_classes
    p_src, p_tgt = shifts.label_priors(spec.shift, spec.severity, k)
    src_idx = src_idx[shifts.subsample_to_prior(raw.y_train[src_idx], p_src, rng)]
    tgt_idx = tgt_idx[shifts.subsample_to_prior(tgt.y_train[tgt_idx], p_tgt, rng)]
    if len(src_idx) < spec.replay_pool:
        raise ConfigError(f"setting.replay_pool: {spec.replay_pool} is larger than the source pool "
                          f"({len(src_idx)} examples); lower it")
    relabel = shifts.label_map(spec.shift, spec.severity, k)

    def target_version(x_u8, noise_seed):
        x = x_u8.astype(np.float32) / 255.0
        return _to_uint8(shifts.apply_covariate(spec.shift, spec.severity, x, spec.split_seed, noise_seed))

    test_idx = rng.permutation(len(raw.y_test))[: spec.eval_size]
    x_test, y_test = raw.x_test[test_idx], raw.y_test[test_idx]
    if tgt is raw:  # one dataset: source and target test sets are the same images, the target shifted
        xt_test, yt_test = x_test, y_test
    else:
        t_idx = rng.permutation(len(tgt.y_test))[: spec.eval_size]
        xt_test, yt_test = tgt.x_test[t_idx], tgt.y_test[t_idx]
    replay_idx = src_idx[rng.permutation(len(src_idx))[: spec.replay_pool]]
    data = Data(
        source_x=raw.x_train[src_idx], source_y=raw.y_train[src_idx],
        replay_x=raw.x_train[replay_idx], replay_y=raw.y_train[replay_idx],
        target_x=target_version(tgt.x_train[tgt_idx], spec.split_seed + 1),
        target_y=relabel[tgt.y_train[tgt_idx]].astype(np.int32),
        source_test_x=x_test, source_test_y=y_test, source_test_w=_eval_weights(y_test, p_src),
        target_test_x=target_version(xt_test, spec.split_seed + 2),
        target_test_y=relabel[yt_test].astype(np.int32),
        target_test_w=_eval_weights(relabel[yt_test], p_tgt),  # p_tgt is uniform unless labels keep their names
    )
    info = {"dataset": raw.name if tgt is raw else f"{raw.name} -> {tgt.name}",
            "paper_data": raw.paper_data and tgt.paper_data,
            "data_source": raw.source if tgt is raw else [raw.source, tgt.source],
            "num_classes": k, "source_pool": int(len(src_idx)), "target_pool": int(len(tgt_idx)),
            "replay_pool": int(spec.replay_pool), "eval_size": int(len(test_idx)),
            "image_shape": list(raw.x_train.shape[1:])}
    if spec.dense_steps:
        data = _with_dense_sets(data, spec.dense_size)
        info["dense_eval_size"] = int(len(data.dense_view().source_test_y))
    return jax.device_put(jax.tree.map(jnp.asarray, data)), info
