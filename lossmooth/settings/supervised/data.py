"""The supervised settings' data: disjoint source and target pools of one dataset with a generated
shift (supervised), or two domains' own train sets (pretrained vision), the replay pool, and the
evaluation sets of both domains, as uint8 device arrays shared by every run; for a sequence of
shifts (config ``sequence``), every task's pool, replay pool and evaluation set (:class:`SequenceData`).

Both kinds draw batches the same way (:meth:`Data.target_sample`, :meth:`Data.replay_sample`): the
indices depend only on the key, so every method sees the same data order.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lossmooth.core.sharding import split_batch
from lossmooth.data import domains, images, shifts
from lossmooth.errors import ConfigError
from lossmooth.settings.supervised.config import Spec


def to_float(x_u8):
    """uint8 images as floats in [0, 1]."""
    return x_u8.astype(jnp.float32) / 255.0


def sample(key, x, y, batch):
    """``batch`` examples drawn uniformly with replacement, as floats in [0, 1]."""
    idx = jax.random.randint(key, (batch,), 0, x.shape[0])
    return split_batch((to_float(x[idx]), y[idx]))  # over the devices of a sharded run


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

    def target_sample(self, key, batch):
        """A batch of the target pool."""
        return sample(key, self.target_x, self.target_y, batch)

    def replay_sample(self, key, batch):
        """A batch of the replay pool of source examples."""
        return sample(key, self.replay_x, self.replay_y, batch)

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


@struct.dataclass
class SequenceData:
    """A sequence of k switches over tasks 0..k (task 0: the unshifted data; task i: shift i applied to
    it). ``switch`` (a traced scalar, so one compiled program serves every switch) is the index s of
    the switch being trained, 0-based: its target is task s + 1, its source task s. The source phase
    trains task 0 (``source_x``). ``replay_all``: the source objective replays tasks 0..s (each
    example's task uniform among them) instead of task s only."""

    source_x: jnp.ndarray  # task 0's pool [N0, H, W, C]
    source_y: jnp.ndarray
    task_x: jnp.ndarray  # tasks 1..k's pools [k, N, H, W, C]
    task_y: jnp.ndarray  # [k, N]
    replay_x: jnp.ndarray  # tasks 0..k-1's replay pools [k, P, H, W, C]
    replay_y: jnp.ndarray
    test_x: jnp.ndarray  # tasks 0..k's evaluation sets [k + 1, E, H, W, C]
    test_y: jnp.ndarray
    test_w: jnp.ndarray  # each task's prior-weighting of its evaluation set [k + 1, E]
    switch: jnp.ndarray  # int32 scalar
    replay_all: bool = struct.field(pytree_node=False, default=False)

    @property
    def tasks(self) -> int:
        """k + 1: the number of tasks."""
        return int(self.test_y.shape[0])

    def at(self, switch: int) -> "SequenceData":
        """The data of switch ``switch`` (0-based)."""
        return self.replace(switch=jnp.asarray(switch, jnp.int32))

    def target_sample(self, key, batch):
        idx = jax.random.randint(key, (batch,), 0, self.task_x.shape[1])
        return split_batch((to_float(self.task_x[self.switch, idx]), self.task_y[self.switch, idx]))

    def replay_sample(self, key, batch):
        k_task, k_idx = jax.random.split(key)
        idx = jax.random.randint(k_idx, (batch,), 0, self.replay_x.shape[1])
        if self.replay_all:
            task = jax.random.randint(k_task, (batch,), 0, self.switch + 1)
        else:
            task = jnp.full((batch,), self.switch)
        return split_batch((to_float(self.replay_x[task, idx]), self.replay_y[task, idx]))


def shift_seed(split_seed: int, task: int) -> int:
    """The seed of task ``task``'s shift (its pixel permutation); task 1's is the one-switch setting's."""
    return split_seed + 7919 * (task - 1)


def build_sequence_data(spec: Spec) -> tuple[SequenceData, dict]:
    """Split train into k + 1 equal disjoint pools, one per task (each thinned to its class prior;
    tasks 1..k's then cut to the shortest so they stack);
    task i's pool, replay pool and evaluation set carry shift i (its own permutation and noise)."""
    rng = np.random.default_rng(spec.split_seed)
    raw = images.load(spec.data_name, spec.data_dir)
    k_cls, k = raw.num_classes, len(spec.sequence)
    pools = list(np.array_split(rng.permutation(len(raw.y_train)), k + 1))
    tasks = [("none", 0.0)] + list(spec.sequence)
    priors = [shifts.label_priors(n, s, k_cls)[1] if i else np.full(k_cls, 1.0 / k_cls)
              for i, (n, s) in enumerate(tasks)]
    pools = [p[shifts.subsample_to_prior(raw.y_train[p], prior, rng)] for p, prior in zip(pools, priors)]
    for i, p in enumerate(pools[:-1]):
        if len(p) < spec.replay_pool:
            raise ConfigError(f"setting.replay_pool: {spec.replay_pool} is larger than task {i}'s pool "
                              f"({len(p)} examples); lower it")
    n_task = min(len(p) for p in pools[1:])
    test_idx = rng.permutation(len(raw.y_test))[: spec.eval_size]
    x_test, y_test = raw.x_test[test_idx], raw.y_test[test_idx]
    replay_idx = [p[rng.permutation(len(p))[: spec.replay_pool]] for p in pools[:-1]]

    def version(i, x_u8, noise):
        name, sev = tasks[i]
        if i == 0:
            return x_u8
        x = x_u8.astype(np.float32) / 255.0
        seed = shift_seed(spec.split_seed, i)
        return _to_uint8(shifts.apply_covariate(name, sev, x, seed, seed + noise))

    relabel = [shifts.label_map(n, s, k_cls) for n, s in tasks]
    task_x, task_y, rep_x, rep_y, test_x, test_y, test_w = [], [], [], [], [], [], []
    for i in range(k + 1):
        if i:
            idx = pools[i][:n_task]
            task_x.append(version(i, raw.x_train[idx], 1))
            task_y.append(relabel[i][raw.y_train[idx]].astype(np.int32))
        if i < k:
            rep_x.append(version(i, raw.x_train[replay_idx[i]], 3))
            rep_y.append(relabel[i][raw.y_train[replay_idx[i]]].astype(np.int32))
        test_x.append(version(i, x_test, 2))
        test_y.append(relabel[i][y_test].astype(np.int32))
        test_w.append(_eval_weights(test_y[-1], priors[i]))
    data = SequenceData(
        source_x=raw.x_train[pools[0]], source_y=raw.y_train[pools[0]].astype(np.int32),
        task_x=np.stack(task_x), task_y=np.stack(task_y), replay_x=np.stack(rep_x), replay_y=np.stack(rep_y),
        test_x=np.stack(test_x), test_y=np.stack(test_y), test_w=np.stack(test_w),
        switch=np.zeros((), np.int32), replay_all=spec.sequence_replay == "all")
    info = {"dataset": raw.name, "paper_data": raw.paper_data, "data_source": raw.source, "num_classes": k_cls,
            "source_pool": int(len(pools[0])), "target_pool": int(n_task), "replay_pool": int(spec.replay_pool),
            "eval_size": int(len(test_idx)), "image_shape": list(raw.x_train.shape[1:]),
            "sequence": [{"task": i, "shift": n, "severity": s} for i, (n, s) in enumerate(tasks)]}
    return jax.device_put(jax.tree.map(jnp.asarray, data)), info
