"""One run over several devices: its batch split data-parallel and its parameters and optimizer state
sharded FSDP-style, over a two-axis device mesh ``(runs, shard)``.

The engine's first axis is the *run* axis: a batch of runs is split over the ``runs`` mesh axis, each
device holding whole runs. When there are more devices than runs, the devices the run axis leaves
over form the ``shard`` axis, and each run is spread over ``shard`` devices:

- every state leaf with at least :data:`MIN_SHARDED` elements per run is split along its largest axis
  that ``shard`` divides (the weights, the gradient-shaped optimizer moments); a device holds
  ``1 / shard`` of it. Smaller leaves (norm scales, biases, counters) are kept whole on every device:
  splitting them saves less memory than the collectives cost;
- the rows of each batch a setting draws are split over ``shard`` (:func:`split_batch`), so each device
  computes the loss and gradient of ``1 / shard`` of the rows.

Nothing here writes a collective: the placements are ``jax.sharding`` annotations and XLA's SPMD
partitioner inserts the all-gathers of weights before their use and the reduce-scatters of gradients
(FSDP's communication). Splitting changes only the order of floating-point sums: the numbers equal a
one-device run's within float tolerance.

The annotations inside a compiled program read the mesh set around its call (``jax.set_mesh``, done
by the runner for a phase whose setting splits its batch); without one (a single device, or a phase
whose runs fill the devices) they are no-ops, so those programs are unchanged.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lossmooth.core.objective import RUN_AXIS

SHARD_AXIS = "shard"
MIN_SHARDED = 2 ** 14  # elements per run: smaller leaves are kept whole on every device


def mesh_shape(n_devices: int, n_runs: int, shard: int | str = "auto", pad_runs: bool = True) -> tuple[int, int]:
    """``(runs, shard)`` with ``runs * shard == n_devices``.

    ``shard="auto"``: ``runs`` is the largest divisor of ``n_devices`` not above ``n_runs`` (the run
    axis is padded as little as possible), the rest shard each run; ``shard=k`` (a divisor of
    ``n_devices``): each run over ``k`` devices. ``pad_runs=False`` (a phase that never pads its run
    axis): ``runs = 1`` and ``shard`` is every device (``auto``) or ``k``, of which only ``k`` are used.
    """
    if shard != "auto" and (isinstance(shard, bool) or not isinstance(shard, int) or shard < 1
                            or n_devices % shard):
        raise ValueError(f"shard: must be 'auto' or a divisor of the device count {n_devices}, got {shard!r}")
    if not pad_runs:
        return 1, n_devices if shard == "auto" else shard
    if shard == "auto":
        runs = max(d for d in range(1, n_devices + 1) if n_devices % d == 0 and d <= max(n_runs, 1))
        return runs, n_devices // runs
    return n_devices // shard, shard


def phase_mesh(devices, n_runs: int, shard: int | str = "auto", pad_runs: bool = True) -> Mesh:
    """The ``(runs, shard)`` mesh of a phase of ``n_runs`` runs over ``devices`` (:func:`mesh_shape`)."""
    devices = list(devices)
    r, s = mesh_shape(len(devices), n_runs, shard, pad_runs)
    return Mesh(np.asarray(devices[:r * s]).reshape(r, s), (RUN_AXIS, SHARD_AXIS))


def shard_size(mesh) -> int:
    """The size of ``mesh``'s shard axis (1 where it has none); ``mesh`` may be abstract."""
    if mesh is None or SHARD_AXIS not in (mesh.axis_names or ()):
        return 1
    return int(dict(zip(mesh.axis_names, mesh.axis_sizes))[SHARD_AXIS])


def leaf_spec(shape: tuple, k: int, min_elements: int = MIN_SHARDED) -> tuple:
    """The partition of one run's leaf of ``shape`` over a shard axis of size ``k``: its largest axis
    that ``k`` divides (the first of equal ones), or none (kept whole) where the leaf is small or no
    axis divides."""
    spec = [None] * len(shape)
    if k <= 1 or math.prod(shape) < min_elements:
        return tuple(spec)
    for a in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[a] % k == 0:
            spec[a] = SHARD_AXIS
            break
    return tuple(spec)


def state_shardings(tree, mesh: Mesh, min_elements: int = MIN_SHARDED):
    """Per leaf of a batch of runs (leading run axis), its ``NamedSharding``: the run axis over
    ``runs``, the rest by :func:`leaf_spec`."""
    k = shard_size(mesh)
    return jax.tree.map(lambda x: NamedSharding(mesh, P(RUN_AXIS, *leaf_spec(tuple(x.shape[1:]), k, min_elements))),
                        tree)


def place(tree, mesh: Mesh, shard_leaves: bool = True):
    """Put a batch of runs (run axis a multiple of the mesh's ``runs``) on ``mesh``: runs over ``runs``,
    and (``shard_leaves``) each run's large leaves over ``shard``; otherwise replicated over ``shard``."""
    if shard_leaves:
        return jax.tree.map(jax.device_put, tree, state_shardings(tree, mesh))
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, P(RUN_AXIS))), tree)


def _constrain(x, spec: tuple):
    return jax.lax.with_sharding_constraint(x, P(*spec)) if any(s is not None for s in spec) else x


def keep_sharded(tree):
    """Inside a compiled program (one run, under the engine's vmap): hold each leaf of a state to its
    :func:`leaf_spec` placement, so the state a program returns stays sharded as it came in. A no-op
    without a mesh that has a shard axis."""
    k = shard_size(jax.sharding.get_abstract_mesh())
    if k <= 1:
        return tree
    return jax.tree.map(lambda x: _constrain(x, leaf_spec(tuple(x.shape), k)), tree)


def split_batch(tree):
    """Inside a compiled program (one run): split each leaf's first axis (the rows of a batch) over the
    shard axis, data-parallel. A leaf whose rows the shard axis does not divide is left to XLA. A no-op
    without a mesh that has a shard axis."""
    k = shard_size(jax.sharding.get_abstract_mesh())
    if k <= 1:
        return tree
    return jax.tree.map(lambda x: _constrain(x, (SHARD_AXIS,) if x.ndim and x.shape[0] % k == 0 else ()), tree)


def bytes_per_device(tree) -> int:
    """The bytes of ``tree``'s arrays held by its first device (the largest share where unequal)."""
    dev = None
    total = 0
    for x in jax.tree.leaves(tree):
        shards = x.addressable_shards
        dev = shards[0].device if dev is None else dev
        total += sum(s.data.nbytes for s in shards if s.device == dev)
    return total
